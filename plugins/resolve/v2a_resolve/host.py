"""Everything the script asks of Resolve: the current timeline, its OTIO export, the media pool
import, new audio tracks, and placing sound with `MediaPool.AppendToTimeline`.

Resolve's pitfalls, handled here: `recordFrame` is an absolute timeline frame (the timeline's
start frame, 86400 at 01:00:00:00 / 24 fps, must be added to a relative position); `endFrame` is
exclusive; an append that overlaps an item on its track is dropped without an error (so each sound
goes in its own call and the track is read back afterwards); appends go to the CURRENT timeline.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction

from .errors import ExportFailed, NoProjectOpen, NoTimelineOpen, PlacementFailed
from .rates import as_fraction, frames_between_rates, parse_frame_rate

AUDIO_ONLY = 2  # AppendToTimeline mediaType: 1 video only, 2 audio only
UNTRUSTED_COLOR = "Orange"
"""The clip colour of a sound not to be trusted: the editor sees it on the timeline at a glance,
where a line in the dialog is read once and gone."""


@dataclass
class Edit:
    """The project and timeline a generation works on."""

    project: object
    timeline: object
    media_pool: object
    name: str
    rate: Fraction  # the timeline's frame rate
    start_frame: int  # the timeline's first frame (absolute, e.g. 86400 at 01:00:00:00 / 24)


@dataclass
class Placement:
    """One generated sound to put on the timeline, in the timeline's frames.

    `record_frame` is absolute; the sound plays `source_in` .. `source_in + duration` (exclusive)
    of `file`; `track` is 1-based among the audio tracks this generation adds; `unfamiliar`: the
    daemon judged the sound not to be trusted.
    """

    file: str
    track: int
    record_frame: int
    duration: int
    source_in: int
    clip: str
    take: int
    unfamiliar: bool = False


@dataclass
class PlacedSound:
    clip: str
    file: str
    audio_track: int  # Resolve's audio track index
    record_frame: int
    duration: int
    take: int
    unfamiliar: bool = False  # not to be trusted: its item is coloured UNTRUSTED_COLOR
    marked: bool = False  # Resolve took that colour (a refusal leaves the sound placed)


@dataclass
class MissedSound:
    clip: str
    file: str
    reason: str
    unfamiliar: bool = False  # the daemon judged the sound not to be trusted


def current_edit(resolve) -> Edit:
    manager = resolve.GetProjectManager() if resolve is not None else None
    project = manager.GetCurrentProject() if manager is not None else None
    if project is None:
        raise NoProjectOpen()
    timeline = project.GetCurrentTimeline()
    if timeline is None:
        raise NoTimelineOpen()
    rate = parse_frame_rate(timeline.GetSetting("timelineFrameRate")
                            or project.GetSetting("timelineFrameRate"))
    return Edit(project, timeline, project.GetMediaPool(), timeline.GetName(), rate,
                int(timeline.GetStartFrame()))


def export_otio(resolve, timeline, path: str) -> str:
    """The timeline as OTIO JSON text, through Resolve's own exporter (Resolve 18.5+)."""
    kind = getattr(resolve, "EXPORT_OTIO", None)
    if kind is None:
        raise ExportFailed("This Resolve cannot export OTIO (Timeline.Export with EXPORT_OTIO "
                           "needs Resolve 18.5 or later): update Resolve, or export the timeline "
                           "another way and use `v2a timeline` by hand.")
    if not timeline.Export(path, kind) or not os.path.isfile(path):
        raise ExportFailed(f"Resolve could not export the timeline to {path}: check that the "
                           "folder is writable and has space, then try again.")
    with open(path, encoding="utf-8") as f:
        return f.read()


def safe_file_name(name: str) -> str:
    """A timeline name usable as a folder name on every OS."""
    cleaned = re.sub(r'[<>:"/\\|?*\x00-\x1f]+', "_", name).strip(" .")
    return cleaned or "Timeline"


def default_media_dir(edit: Edit) -> str | None:
    """`V2A Audio/<timeline>` beside the picture: next to the first video clip whose media
    folder exists. None when the timeline has no such clip."""
    for index in range(1, int(edit.timeline.GetTrackCount("video")) + 1):
        for item in edit.timeline.GetItemListInTrack("video", index) or []:
            media = item.GetMediaPoolItem()
            path = media.GetClipProperty("File Path") if media is not None else ""
            if path and os.path.isdir(os.path.dirname(path)):
                return os.path.join(os.path.dirname(path), "V2A Audio",
                                    safe_file_name(edit.name))
    return None


def placements_from_result(result: dict, edit: Edit) -> list[Placement]:
    """The daemon's placements (frames at the result's rate, relative to the timeline's first
    frame) as absolute frames at the timeline's rate."""

    rate = as_fraction(float(result.get("rate") or edit.rate))
    placements = []
    for p in result.get("placements", []):
        record = frames_between_rates(int(p["record_start"]), rate, edit.rate)
        end = frames_between_rates(int(p["record_start"]) + int(p["duration"]), rate, edit.rate)
        placements.append(Placement(
            file=str(p["file"]),
            track=int(p.get("track", 1)),
            record_frame=edit.start_frame + record,
            duration=end - record,
            source_in=frames_between_rates(int(p.get("source_in", 0)), rate, edit.rate),
            clip=str(p.get("clip", "")),
            take=int(p.get("take", 1)),
            unfamiliar=bool(p.get("unfamiliar", False)),
        ))
    return placements


def media_pool_items(edit: Edit, files: list[str], bin_name: str) -> dict[str, object]:
    """Media pool clips for `files`, imported into the bin `bin_name` (made if missing); files
    already in the pool (a second run with cached results) are reused, not imported twice."""
    pool = edit.media_pool
    root = pool.GetRootFolder()
    wanted = {os.path.normcase(os.path.abspath(f)): f for f in files}
    found: dict[str, object] = {}

    def collect(folder) -> None:
        for clip in folder.GetClipList() or []:
            key = os.path.normcase(os.path.abspath(clip.GetClipProperty("File Path") or ""))
            if key in wanted:
                found[wanted[key]] = clip
        for sub in folder.GetSubFolderList() or []:
            collect(sub)

    collect(root)
    missing = [f for f in files if f not in found and os.path.isfile(f)]
    if missing:
        target = next((f for f in root.GetSubFolderList() or [] if f.GetName() == bin_name),
                      None) or pool.AddSubFolder(root, bin_name)
        previous = pool.GetCurrentFolder()
        if target is not None:
            pool.SetCurrentFolder(target)
        try:
            for clip in pool.ImportMedia(missing) or []:
                key = os.path.normcase(os.path.abspath(clip.GetClipProperty("File Path") or ""))
                if key in wanted:
                    found[wanted[key]] = clip
        finally:
            if previous is not None:
                pool.SetCurrentFolder(previous)
    return found


def add_audio_tracks(timeline, count: int) -> list[int]:
    """Adds `count` stereo audio tracks below the existing ones; their indices."""
    indices = []
    for _ in range(count):
        if not timeline.AddTrack("audio", "stereo"):
            raise PlacementFailed("Resolve would not add an audio track to the timeline: check "
                                  "that the timeline is not locked, then try again.")
        indices.append(int(timeline.GetTrackCount("audio")))
    return indices


def place_sounds(edit: Edit, placements: list[Placement], items: dict[str, object],
                 tracks: list[int]) -> tuple[list[PlacedSound], list[MissedSound]]:
    """Appends each sound (take 1) in its own call, reads the tracks back (a sound is placed
    only if an item with its file, start and length is on its track), then adds further takes
    to that item's take selector (TimelineItem.AddTake). The item of a sound not to be trusted
    is coloured UNTRUSTED_COLOR (whichever of its takes is untrusted: the editor may pick it)."""
    missed: list[MissedSound] = []
    asked: list[tuple[Placement, int]] = []
    firsts = [p for p in placements if p.take <= 1]
    alternates = [p for p in placements if p.take > 1]
    current = edit.project.GetCurrentTimeline()
    # Appends go to the current timeline; the editor may have switched while the job ran.
    edit.project.SetCurrentTimeline(edit.timeline)
    try:
        for p in firsts:
            clip = items.get(p.file)
            if clip is None:
                missed.append(_missed(p, "Resolve could not import the file"))
                continue
            if not 1 <= p.track <= len(tracks):
                missed.append(_missed(p, f"no new audio track {p.track}"))
                continue
            edit.media_pool.AppendToTimeline([{
                "mediaPoolItem": clip,
                "startFrame": p.source_in,
                "endFrame": p.source_in + p.duration,  # exclusive
                "mediaType": AUDIO_ONLY,
                "trackIndex": tracks[p.track - 1],
                "recordFrame": p.record_frame,  # absolute
            }])
            asked.append((p, tracks[p.track - 1]))
    finally:
        if current is not None and _unique_id(current) != _unique_id(edit.timeline):
            edit.project.SetCurrentTimeline(current)

    on_track = {track: list(edit.timeline.GetItemListInTrack("audio", track) or [])
                for track in {t for _, t in asked}}
    unclaimed = {track: list(items) for track, items in on_track.items()}
    placed: list[PlacedSound] = []
    landed_at: dict[tuple[int, int, int], object] = {}
    for p, track in asked:
        landed = next((item for item in unclaimed[track] if _is(item, p)), None)
        if landed is None:
            missed.append(_missed(p, _why_missing(p, on_track[track])))
            continue
        unclaimed[track].remove(landed)
        landed_at[(p.track, p.record_frame, p.duration)] = landed
        placed.append(_placed(p, track, landed))

    for p in alternates:
        item = landed_at.get((p.track, p.record_frame, p.duration))
        clip = items.get(p.file)
        if item is None or clip is None:
            reason = ("Resolve could not import the file" if clip is None
                      else "its first take was not placed")
            missed.append(_missed(p, f"take {p.take}: {reason}"))
        elif not item.AddTake(clip, p.source_in, p.source_in + p.duration):
            missed.append(_missed(p, f"take {p.take}: Resolve would not add it as a take"))
        else:
            placed.append(_placed(p, int(item.GetTrackTypeAndIndex()[1]), item))
    return placed, missed


def _missed(p: Placement, reason: str) -> MissedSound:
    return MissedSound(p.clip, p.file, reason, unfamiliar=p.unfamiliar)


def _placed(p: Placement, track: int, item) -> PlacedSound:
    """`p` as it landed in `item`, marked there when it is not to be trusted. The colour is only
    a mark, so Resolve refusing it is recorded and the sound stays placed."""
    marked = p.unfamiliar and bool(item.SetClipColor(UNTRUSTED_COLOR))
    return PlacedSound(p.clip, p.file, track, p.record_frame, p.duration, p.take,
                       unfamiliar=p.unfamiliar, marked=marked)


def _unique_id(obj) -> str:
    return obj.GetUniqueId() if hasattr(obj, "GetUniqueId") else str(id(obj))


def _same_file(a: str, b: str) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _is(item, p: Placement) -> bool:
    media = item.GetMediaPoolItem()
    return (media is not None and _same_file(media.GetClipProperty("File Path") or "", p.file)
            and int(item.GetStart()) == p.record_frame
            and int(item.GetEnd()) - int(item.GetStart()) == p.duration)


def _why_missing(p: Placement, items: list) -> str:
    end = p.record_frame + p.duration
    for item in items:
        if int(item.GetStart()) < end and p.record_frame < int(item.GetEnd()):
            return (f"it would overlap {item.GetName()} at frames "
                    f"{item.GetStart()}-{item.GetEnd()} on that track, so Resolve dropped it")
    return (f"Resolve did not place it at frame {p.record_frame} for {p.duration} frames "
            "(the file may be shorter than the shot)")
