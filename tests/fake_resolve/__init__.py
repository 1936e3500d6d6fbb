"""A faithful fake of DaVinci Resolve's documented scripting API, for the Resolve plugin's tests.

Resolve cannot run here, so `plugins/resolve` is tested against this fake. It implements the
objects and methods the scripting README documents (Resolve, ProjectManager, Project, MediaPool,
Folder, MediaPoolItem, Timeline, TimelineItem) with their documented argument shapes and return
values (bool, None, list, dict, str), and models the behaviour the plugin has to cope with:

- `AppendToTimeline([{clipInfo}])`: `recordFrame` is an ABSOLUTE timeline frame (the timeline's
  start frame, 86400 at 01:00:00:00 / 24 fps, included), `endFrame` is EXCLUSIVE, `mediaType` 2
  places audio only, and an append that would overlap an item already on its track is silently
  dropped (left out of the returned list, no error);
- appends go to the project's CURRENT timeline;
- `ImportTimelineFromFile` returns None when a timeline of that name exists, and for an OTIO file
  whose media references are `file://` URLs (Resolve's OTIO import wants bare paths);
- `Timeline.Export(path, resolve.EXPORT_OTIO)` writes real OTIO the way Resolve does: the start
  timecode becomes `global_start_time`, clips reference their media files by bare path with
  absolute source ranges;
- settings are strings (`GetSetting("timelineFrameRate")` -> ``"23.976"``, ``"29.97 DF"``);
- `TimelineItem.SetClipColor(name)` takes the names of Resolve's Clip Color menu ("Orange", ...)
  and returns False for any other; `GetClipColor()` is ``""`` until a colour is set.

Only what the scripting API exposes is modelled; where the README is silent the fake chooses the
conservative behaviour and says so in a comment. `fu`/`bmd` UI objects live in `.ui`.
"""

from .api import (
    EXPORT_OTIO,
    FakeResolve,
    Folder,
    MediaPool,
    MediaPoolItem,
    Project,
    ProjectManager,
    Timeline,
    TimelineItem,
)
from .ui import FakeBmd, FakeFusion, FakeUIManager

__all__ = [
    "EXPORT_OTIO",
    "FakeBmd",
    "FakeFusion",
    "FakeResolve",
    "FakeUIManager",
    "Folder",
    "MediaPool",
    "MediaPoolItem",
    "Project",
    "ProjectManager",
    "Timeline",
    "TimelineItem",
]
