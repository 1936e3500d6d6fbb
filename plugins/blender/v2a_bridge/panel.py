"""The V2A tab in the Sequencer's sidebar: settings, Generate/Cancel, progress and errors.

Declarative only: it shows the session's state and the scene's settings; operators do the work.
"""

from __future__ import annotations

import textwrap

import bpy

from ._bridge.client import UNTRUSTED_ADVICE
from .session import RUNNER

_WRAP = 48


def _wrapped(layout, text: str, icon: str = "NONE") -> None:
    follow = "BLANK1" if icon != "NONE" else "NONE"  # keeps wrapped lines aligned
    # Whole words only: a flag such as --max-message-mb or a path must stay readable.
    for i, line in enumerate(textwrap.wrap(text, _WRAP, break_on_hyphens=False) or [""]):
        layout.label(text=line, icon=icon if i == 0 else follow)


class SEQUENCER_PT_v2a(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "V2A"
    bl_label = "Generate Sound"

    def draw(self, context):
        layout = self.layout
        state = RUNNER.state
        settings = context.scene.v2a

        row = layout.row(align=True)
        row.label(text=f"Daemon: {state.daemon}", icon="LINKED")
        row.operator("sequencer.v2a_connect", text="", icon="FILE_REFRESH")

        column = layout.column()
        column.enabled = not RUNNER.busy
        column.prop(settings, "prompt")
        column.prop(settings, "negative_prompt")
        grid = column.grid_flow(columns=2, align=True)
        grid.prop(settings, "seed")
        grid.prop(settings, "steps")
        grid.prop(settings, "guidance")
        grid.prop(settings, "takes")
        column.row().prop(settings, "scope", expand=True)
        column.row().prop(settings, "mode", expand=True)

        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("sequencer.v2a_generate", icon="PLAY_SOUND")
        row.operator("sequencer.v2a_cancel", icon="CANCEL")

        if RUNNER.busy:
            fraction = state.progress or 0.0
            layout.progress(factor=fraction, type="BAR",
                            text=state.progress_text or f"{fraction:.0%}")
        if state.message:
            _wrapped(layout.box(), state.message, icon="INFO")
        if state.untrusted:
            box = layout.box()
            box.label(text="Sound not to be trusted", icon="ERROR")
            _wrapped(box, f"{UNTRUSTED_ADVICE[0].upper()}{UNTRUSTED_ADVICE[1:]}:")
            for name in state.untrusted:
                _wrapped(box, name)
        if state.errors:
            box = layout.box()
            box.label(text="Strips with errors", icon="ERROR")
            for error in state.errors:
                _wrapped(box, f"{error.strip}: {error.message}")


CLASSES = (SEQUENCER_PT_v2a,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
