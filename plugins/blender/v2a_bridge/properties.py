"""The add-on's settings: per-scene generation settings (saved in the .blend) and the add-on
preferences (how to reach the daemon, saved with Blender's preferences)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .session import Connection

ADDON_ID = __package__


class V2ASceneSettings(bpy.types.PropertyGroup):
    prompt: StringProperty(
        name="Prompt", description="What the sound should be, e.g. 'footsteps on gravel, wind' "
        "(optional: the picture alone drives the sound)")
    negative_prompt: StringProperty(
        name="Negative", description="What the sound should not have, e.g. 'music, speech'")
    seed: IntProperty(
        name="Seed", min=0, max=2**31 - 1, default=0,
        description="Same seed, same settings, same picture: the same sound")
    steps: IntProperty(
        name="Steps", min=1, max=200, default=25,
        description="Sampler steps: more is slower and a little cleaner")
    guidance: FloatProperty(
        name="Guidance", min=0.0, max=50.0, default=4.5, precision=1,
        description="How strongly the picture and the prompts steer the sound (guidance)")
    takes: IntProperty(
        name="Takes", min=1, max=16, default=1,
        description="Variations per strip; the first is heard, the others go in muted on the "
        "channels just above")
    scope: EnumProperty(
        name="Scope",
        items=(("SELECTED", "Selected", "The selected movie and image-sequence strips (and all "
                "inside selected meta strips)"),
               ("ALL", "Whole Timeline", "Every movie and image-sequence strip of the scene")),
        default="SELECTED")
    mode: EnumProperty(
        name="Mode",
        items=(("CLIP", "Per Clip", "One sound per strip"),
               ("CONTINUOUS", "Continuous", "One soundtrack across the cuts, for ambience and "
                "score that must not restart at every cut")),
        default="CLIP")


class V2APreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    endpoint: StringProperty(
        name="Daemon Endpoint", default="tcp://127.0.0.1:5755",
        description="Where the V2A daemon listens (ZeroMQ address)")
    curve_keys_dir: StringProperty(
        name="CURVE Keys Folder", subtype="DIR_PATH", default="",
        description="Folder with the daemon's public key and this computer's key pair (made by "
        "`v2a keys create`); needed only for a daemon on another computer")
    start_daemon: BoolProperty(
        name="Start a local daemon when none answers", default=True,
        description="On a loopback endpoint, start the daemon program in the background")
    daemon_path: StringProperty(
        name="Daemon Program", subtype="FILE_PATH", default="v2a-daemon",
        description="The v2a-daemon program (a name on the PATH or a full path)")
    daemon_arguments: StringProperty(
        name="Daemon Arguments", default="",
        description="Extra command-line options for a daemon started here, e.g. "
        "'--device cuda --keep-alive 600'")
    answer_timeout: FloatProperty(
        name="Answer Timeout", min=0.2, max=60.0, default=3.0, unit="TIME_ABSOLUTE",
        description="Seconds to wait for the daemon's first answer before calling it absent")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "endpoint")
        layout.prop(self, "curve_keys_dir")
        layout.prop(self, "answer_timeout")
        layout.prop(self, "start_daemon")
        column = layout.column()
        column.enabled = self.start_daemon
        column.prop(self, "daemon_path")
        column.prop(self, "daemon_arguments")


def connection(context) -> Connection:
    """The preferences as the plain value the session works with."""
    prefs = context.preferences.addons[ADDON_ID].preferences
    return Connection(
        endpoint=prefs.endpoint.strip(),
        curve_keys_dir=bpy.path.abspath(prefs.curve_keys_dir) if prefs.curve_keys_dir else "",
        start_daemon=prefs.start_daemon,
        daemon_path=prefs.daemon_path.strip(),
        daemon_arguments=prefs.daemon_arguments,
        answer_timeout_s=prefs.answer_timeout,
    )


CLASSES = (V2ASceneSettings, V2APreferences)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.v2a = bpy.props.PointerProperty(type=V2ASceneSettings)


def unregister() -> None:
    del bpy.types.Scene.v2a
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
