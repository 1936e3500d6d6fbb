"""The add-on's operators: generate sound, cancel, connect to the daemon. Each one is small:
it reads settings on the main thread and hands the work to the session's timer."""

from __future__ import annotations

import os

import bpy
from bpy.props import StringProperty

from .properties import connection
from .session import RUNNER, TimelineJob
from .timeline import build_timeline


def _setting(operator, settings, name: str) -> str:
    """An operator property when the caller set it, else the panel's value."""
    if operator.properties.is_property_set(name):
        return getattr(operator, name)
    return getattr(settings, name)


class SEQUENCER_OT_v2a_generate(bpy.types.Operator):
    """Generate synchronized sound for the movie and image-sequence strips with the V2A daemon"""

    bl_idname = "sequencer.v2a_generate"
    bl_label = "Generate Sound"
    bl_options = {"REGISTER"}

    prompt: StringProperty(name="Prompt", description="What the sound should be (optional)")
    negative_prompt: StringProperty(
        name="Negative Prompt", description="What the sound should not have (optional)")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not RUNNER.busy

    def execute(self, context):
        scene = context.scene
        settings = scene.v2a
        if not bpy.data.filepath:
            self.report({"ERROR"}, "Save the .blend file first: the generated sound is written "
                        "next to it, into //v2a/")
            return {"CANCELLED"}
        timeline = build_timeline(scene, selected_only=settings.scope == "SELECTED")
        heard = [c for c in timeline.clips if c.enabled]
        if not heard:
            reasons = "; ".join(f"{s.strip}: {s.reason}" for s in timeline.skipped)
            hint = ("select movie or image-sequence strips, or set Scope to Whole Timeline"
                    if settings.scope == "SELECTED"
                    else "add movie or image-sequence strips to the scene")
            self.report({"ERROR"}, "No unmuted movie or image-sequence strips to generate sound "
                        f"for: {hint}" + (f" ({reasons})" if reasons else ""))
            return {"CANCELLED"}
        media_dir = os.path.normpath(bpy.path.abspath("//v2a/"))
        body = {
            "otio": timeline.otio,
            "media_dir": media_dir,
            "prompt": _setting(self, settings, "prompt"),
            "negative_prompt": _setting(self, settings, "negative_prompt"),
            "mode": settings.mode.lower(),
            "takes": settings.takes,
            "seed": settings.seed,
            "steps": settings.steps,
            "cfg": settings.guidance,
            "track": None,
            "stems": False,
            "resolve": False,
        }
        job = TimelineJob(body=body, scene=scene.name, blend=bpy.data.filepath,
                          origin=timeline.origin, rate=timeline.rate, strips=len(heard))
        RUNNER.generate(connection(context), job, timeline.skipped)
        if not RUNNER.busy:
            self.report({"ERROR"}, RUNNER.state.message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"V2A: generating sound for {len(heard)} strip(s)")
        return {"FINISHED"}


class SEQUENCER_OT_v2a_cancel(bpy.types.Operator):
    """Stop the running generation; nothing of it is added to the scene"""

    bl_idname = "sequencer.v2a_cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return RUNNER.state.phase in ("connecting", "starting", "running")

    def execute(self, context):
        RUNNER.cancel()
        return {"FINISHED"}


class SEQUENCER_OT_v2a_connect(bpy.types.Operator):
    """Check that the V2A daemon answers and show its status"""

    bl_idname = "sequencer.v2a_connect"
    bl_label = "Connect to Daemon"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return not RUNNER.busy

    def execute(self, context):
        RUNNER.connect(connection(context))
        return {"FINISHED"}


CLASSES = (SEQUENCER_OT_v2a_generate, SEQUENCER_OT_v2a_cancel, SEQUENCER_OT_v2a_connect)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
