"""V2A Generate for DaVinci Resolve: sound generated from the picture of the current timeline,
placed on new audio tracks under it.

`generate_for_timeline(resolve, prompt, negative_prompt, endpoint, **options)` does the work and
returns a `GenerationReport`; `run_from_menu(resolve, fu, bmd, settings_path)` is what the
Workspace ▸ Scripts ▸ Edit ▸ V2A Generate launcher calls. Needs `bridge.client` (pyzmq + msgpack)
importable from Resolve's Python; no OTIO library, no torch.
"""

from .dialog import GenerateDialog, run_from_menu, run_in_console
from .errors import (
    ExportFailed,
    NoProjectOpen,
    NoTimelineOpen,
    PlacementFailed,
    ResolveScriptError,
    SettingsInvalid,
)
from .generation import GenerationReport, TimelineGeneration, generate_for_timeline
from .settings import GenerateSettings, load_settings

__all__ = [
    "ExportFailed",
    "GenerateDialog",
    "GenerateSettings",
    "GenerationReport",
    "NoProjectOpen",
    "NoTimelineOpen",
    "PlacementFailed",
    "ResolveScriptError",
    "SettingsInvalid",
    "TimelineGeneration",
    "generate_for_timeline",
    "load_settings",
    "run_from_menu",
    "run_in_console",
]
