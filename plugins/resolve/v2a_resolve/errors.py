"""Errors an editor can meet in Resolve, each with a message that says what to do next.

Daemon-side problems arrive as `bridge.client` errors (DaemonUnavailable, DaemonError); these are
the Resolve-side ones.
"""

from __future__ import annotations


class ResolveScriptError(Exception):
    """Something in Resolve (or in the script's settings) stops the generation."""


class NoProjectOpen(ResolveScriptError):
    def __init__(self):
        super().__init__("No project is open in Resolve: open a project and its timeline, "
                         "then run Workspace ▸ Scripts ▸ Edit ▸ V2A Generate again.")


class NoTimelineOpen(ResolveScriptError):
    def __init__(self):
        super().__init__("The project has no current timeline: open the timeline to score on "
                         "the Edit page, then run V2A Generate again.")


class ExportFailed(ResolveScriptError):
    """Timeline.Export(..., EXPORT_OTIO) failed (Resolve older than 18.5, or no disk space)."""


class SettingsInvalid(ResolveScriptError):
    """A setting (dialog, JSON file or keyword) has the wrong type or value."""


class PlacementFailed(ResolveScriptError):
    """The generated audio could not be put on the timeline at all."""
