"""The Resolve scripting objects: Resolve, ProjectManager, Project, MediaPool, Folder,
MediaPoolItem, Timeline, TimelineItem (method names, arguments and return shapes as documented).

Method names are Resolve's (CamelCase); helpers that are not part of Resolve's API start with an
underscore. Frames are integers at the timeline's rate; a timeline's frames are absolute (they
include its start frame), as in Resolve.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import opentimelineio as otio

# Resolve exposes its export kinds as attributes of the `resolve` object; the values are opaque.
EXPORT_AAF = 0
EXPORT_DRT = 1
EXPORT_EDL = 2
EXPORT_FCP_7_XML = 3
EXPORT_FCPXML_1_10 = 4
EXPORT_OTIO = 5

TRACK_TYPES = ("video", "audio", "subtitle")
AUDIO_SUB_TYPES = ("mono", "stereo", "5.1", "5.1film", "7.1", "7.1film") + tuple(
    f"adaptive{n}" for n in range(1, 25)
)

# The strings Resolve uses for "timelineFrameRate"; drop-frame rates may carry " DF".
FRAME_RATES = {
    "23.976": Fraction(24000, 1001),
    "24": Fraction(24),
    "25": Fraction(25),
    "29.97": Fraction(30000, 1001),
    "30": Fraction(30),
    "47.952": Fraction(48000, 1001),
    "48": Fraction(48),
    "50": Fraction(50),
    "59.94": Fraction(60000, 1001),
    "60": Fraction(60),
    "119.88": Fraction(120000, 1001),
    "120": Fraction(120),
}
# The clip colours Resolve's Clip Color menu offers. SetClipColor takes these names only, as
# spelt there (the README is silent on case; this is the conservative reading).
CLIP_COLORS = ("Orange", "Apricot", "Yellow", "Lime", "Olive", "Green", "Teal", "Navy", "Blue",
               "Purple", "Violet", "Pink", "Tan", "Beige", "Brown", "Chocolate")
_unique_ids = itertools.count(1)


def _rate_of(setting: str) -> tuple[Fraction, bool]:
    """("29.97 DF") -> (30000/1001, True). Raises KeyError for a string Resolve would not use."""
    text = setting.strip()
    drop = text.endswith(" DF")
    text = text.removesuffix(" DF").removesuffix(" NDF")
    return FRAME_RATES[text], drop


def _rate_string(rate: float) -> str | None:
    for text, exact in FRAME_RATES.items():
        if abs(float(exact) - rate) < 1e-3:
            return text
    return None


def _frames_of_timecode(timecode: str, rate: Fraction, drop: bool) -> int:
    """Timecode -> frame count. Non-drop timecode counts at the nominal (rounded) rate, so
    01:00:00:00 at 23.976 is 86400; drop-frame (29.97/59.94) skips frame numbers per SMPTE."""
    parts = timecode.replace(";", ":").split(":")
    if len(parts) != 4:
        raise ValueError(f"not a timecode: {timecode!r}")
    hours, minutes, seconds, frames = (int(p) for p in parts)
    nominal = round(rate)
    total = ((hours * 60 + minutes) * 60 + seconds) * nominal + frames
    if drop:
        dropped = 2 * (nominal // 30)
        all_minutes = hours * 60 + minutes
        total -= dropped * (all_minutes - all_minutes // 10)
    return total


def _timecode_of_frames(frame: int, rate: Fraction, drop: bool) -> str:
    nominal = round(rate)
    if drop:
        dropped = 2 * (nominal // 30)
        per_10_min = nominal * 600 - dropped * 9
        per_min = nominal * 60 - dropped
        tens, rest = divmod(frame, per_10_min)
        extra = 0 if rest < dropped else dropped * ((rest - dropped) // per_min)
        frame += dropped * 9 * tens + extra
    seconds, frames = divmod(frame, nominal)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    sep = ";" if drop else ":"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{sep}{frames:02d}"


@dataclass
class _MediaInfo:
    has_video: bool
    has_audio: bool
    fps: Fraction | None  # the picture's rate; None for audio-only files
    video_frames: int
    audio_seconds: float
    channels: int
    sample_rate: int


def _probe(path: str) -> _MediaInfo | None:
    """What Resolve learns when it imports a file; None when it cannot read it as media."""
    try:
        with av.open(path) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            if video is None and audio is None:
                return None
            fps = Fraction(video.average_rate) if video is not None else None
            frames = 0
            if video is not None:
                frames = video.frames or sum(1 for _ in container.decode(video=0))
            seconds, channels, sample_rate = 0.0, 0, 0
            if audio is not None:
                channels, sample_rate = audio.channels, audio.sample_rate
                if audio.duration is not None and audio.time_base is not None:
                    seconds = float(audio.duration * audio.time_base)
                else:
                    container.seek(0)
                    seconds = sum(f.samples for f in container.decode(audio=0)) / sample_rate
            return _MediaInfo(video is not None, audio is not None, fps, frames, seconds,
                              channels, sample_rate)
    except (av.error.FFmpegError, OSError):
        return None


class MediaPoolItem:
    """A clip in the media pool. Offline items keep their file path but have no media."""

    def __init__(self, path: str, project_rate: Fraction, info: _MediaInfo | None):
        self._path = os.path.abspath(path)
        self._info = info
        self._id = f"mpi-{next(_unique_ids)}"
        if info is None:
            self._frames, self._fps = 0, project_rate
        elif info.has_video:
            self._frames, self._fps = info.video_frames, info.fps
        else:
            # An audio file has no frames of its own: Resolve counts it at the project's rate,
            # a partial last frame included.
            self._frames = math.ceil(round(info.audio_seconds * project_rate, 6))
            self._fps = project_rate

    @property
    def _online(self) -> bool:
        return self._info is not None

    @property
    def _has_video(self) -> bool:
        return self._info is not None and self._info.has_video

    @property
    def _has_audio(self) -> bool:
        return self._info is not None and self._info.has_audio

    def GetName(self) -> str:
        return os.path.basename(self._path)

    def GetMediaId(self) -> str:
        return self._id

    def GetUniqueId(self) -> str:
        return self._id

    def GetClipProperty(self, propertyName: str | None = None):
        info = self._info
        kind = "" if info is None else (
            "Video + Audio" if info.has_video and info.has_audio
            else "Video" if info.has_video else "Audio")
        props = {
            "Clip Name": self.GetName(),
            "File Name": os.path.basename(self._path),
            "File Path": self._path,
            "Type": kind,
            "FPS": f"{float(self._fps):.3f}".rstrip("0").rstrip("."),
            "Frames": str(self._frames),
            "Start TC": "00:00:00:00",
            "Audio Ch": str(info.channels if info else 0),
            "Sample Rate": str(info.sample_rate if info else ""),
        }
        if propertyName is None or propertyName == "":
            return props
        return props.get(propertyName, "")

    def __repr__(self) -> str:
        return f"MediaPoolItem({self.GetName()!r})"


class Folder:
    """A media pool bin."""

    def __init__(self, name: str):
        self._name = name
        self._clips: list[MediaPoolItem] = []
        self._subfolders: list[Folder] = []
        self._id = f"folder-{next(_unique_ids)}"

    def GetName(self) -> str:
        return self._name

    def GetClipList(self) -> list:
        return list(self._clips)

    def GetSubFolderList(self) -> list:
        return list(self._subfolders)

    def GetUniqueId(self) -> str:
        return self._id

    def GetIsFolderStale(self) -> bool:
        return False

    def _walk(self):
        yield self
        for sub in self._subfolders:
            yield from sub._walk()


class TimelineItem:
    """An item on a timeline track. `GetEnd` is exclusive: GetEnd() - GetStart() == duration."""

    def __init__(self, media: MediaPoolItem, kind: str, track: int, start: int, duration: int,
                 left_offset: int):
        self._media = media
        self._kind = kind
        self._track = track
        self._start = start
        self._duration = duration
        self._left = left_offset
        self._enabled = True
        self._color = ""  # no clip colour until SetClipColor
        self._linked: list[TimelineItem] = []
        self._takes: list[dict] = []  # the take selector; empty until AddTake is used
        self._selected_take = 0
        self._id = f"item-{next(_unique_ids)}"

    @property
    def _end(self) -> int:
        return self._start + self._duration

    def GetName(self) -> str:
        return self._media.GetName()

    def GetStart(self) -> int:
        return self._start

    def GetEnd(self) -> int:
        return self._end

    def GetDuration(self) -> int:
        return self._duration

    def GetLeftOffset(self) -> int:
        return self._left

    def GetRightOffset(self) -> int:
        return max(0, self._media._frames - self._left - self._duration)

    def GetMediaPoolItem(self) -> MediaPoolItem:
        return self._media

    def GetTrackTypeAndIndex(self) -> list:
        return [self._kind, self._track]

    def GetClipEnabled(self) -> bool:
        return self._enabled

    def SetClipEnabled(self, enabled: bool) -> bool:
        self._enabled = bool(enabled)
        return True

    def GetClipColor(self) -> str:
        return self._color

    def SetClipColor(self, colorName: str) -> bool:
        if colorName not in CLIP_COLORS:
            return False
        self._color = colorName
        return True

    def ClearClipColor(self) -> bool:
        self._color = ""
        return True

    def GetLinkedItems(self) -> list:
        return list(self._linked)

    def GetUniqueId(self) -> str:
        return self._id

    # --- take selector: alternates of one item --------------------------------------------
    def AddTake(self, mediaPoolItem, startFrame=None, endFrame=None) -> bool:
        if not isinstance(mediaPoolItem, MediaPoolItem):
            return False
        start = 0 if startFrame is None else round(startFrame)
        end = mediaPoolItem._frames if endFrame is None else round(endFrame)
        if start < 0 or end <= start or end > mediaPoolItem._frames:
            return False
        if not self._takes:  # the item's own media becomes take 1
            self._takes.append({"mediaPoolItem": self._media, "startFrame": self._left,
                                "endFrame": self._left + self._duration})
            self._selected_take = 1
        self._takes.append({"mediaPoolItem": mediaPoolItem, "startFrame": start,
                            "endFrame": end})
        return True

    def GetTakesCount(self) -> int:
        return len(self._takes)

    def GetTakeByIndex(self, idx: int):
        if not isinstance(idx, int) or not 1 <= idx <= len(self._takes):
            return None
        return dict(self._takes[idx - 1])

    def GetSelectedTakeIndex(self) -> int:
        return self._selected_take

    def SelectTakeByIndex(self, idx: int) -> bool:
        if not isinstance(idx, int) or not 1 <= idx <= len(self._takes):
            return False
        take = self._takes[idx - 1]
        self._media, self._left = take["mediaPoolItem"], take["startFrame"]
        self._selected_take = idx
        return True

    def GetProperty(self, propertyKey: str | None = None):
        props = {"Pan": 0.0, "ZoomX": 1.0, "ZoomY": 1.0, "Opacity": 100.0}
        return props if not propertyKey else props.get(propertyKey)

    def __repr__(self) -> str:
        return (f"TimelineItem({self.GetName()!r}, {self._kind}{self._track}, "
                f"{self._start}-{self._end})")


@dataclass
class _Track:
    name: str
    sub_type: str = ""
    enabled: bool = True
    locked: bool = False
    items: list[TimelineItem] = field(default_factory=list)


class Timeline:
    def __init__(self, project: Project, name: str, rate_setting: str,
                 start_timecode: str = "01:00:00:00"):
        self._project = project
        self._name = name
        self._settings = {
            "timelineFrameRate": rate_setting,
            "timelineDropFrameTimecode": "1" if rate_setting.endswith(" DF") else "0",
            "timelineResolutionWidth": project.GetSetting("timelineResolutionWidth"),
            "timelineResolutionHeight": project.GetSetting("timelineResolutionHeight"),
        }
        self._rate, self._drop = _rate_of(rate_setting)
        self._start_timecode = start_timecode
        self._start = _frames_of_timecode(start_timecode, self._rate, self._drop)
        self._tracks: dict[str, list[_Track]] = {
            "video": [_Track("Video 1")],
            "audio": [_Track("Audio 1", "stereo")],
            "subtitle": [],
        }
        self._id = f"timeline-{next(_unique_ids)}"

    # --- identity and settings -----------------------------------------------------------
    def GetName(self) -> str:
        return self._name

    def SetName(self, timelineName: str) -> bool:
        if any(t.GetName() == timelineName for t in self._project._timelines if t is not self):
            return False
        self._name = timelineName
        return True

    def GetUniqueId(self) -> str:
        return self._id

    def GetSetting(self, settingName: str = ""):
        if not settingName:
            return dict(self._settings)
        return self._settings.get(settingName, "")

    def SetSetting(self, settingName: str, settingValue: str) -> bool:
        if settingName == "timelineFrameRate":
            # A timeline's rate cannot change once something is edited into it.
            if any(t.items for tracks in self._tracks.values() for t in tracks):
                return False
            try:
                self._rate, self._drop = _rate_of(settingValue)
            except KeyError:
                return False
            self._start = _frames_of_timecode(self._start_timecode, self._rate, self._drop)
        self._settings[settingName] = str(settingValue)
        return True

    def GetStartFrame(self) -> int:
        return self._start

    def GetEndFrame(self) -> int:
        ends = [i._end for tracks in self._tracks.values() for t in tracks for i in t.items]
        return max(ends, default=self._start)

    def GetStartTimecode(self) -> str:
        return self._start_timecode

    def SetStartTimecode(self, timecode: str) -> bool:
        try:
            start = _frames_of_timecode(timecode, self._rate, self._drop)
        except ValueError:
            return False
        shift = start - self._start
        for tracks in self._tracks.values():
            for track in tracks:
                for item in track.items:
                    item._start += shift
        self._start, self._start_timecode = start, timecode
        return True

    # --- tracks ---------------------------------------------------------------------------
    def GetTrackCount(self, trackType: str) -> int:
        return len(self._tracks.get(trackType, []))

    def AddTrack(self, trackType: str, subTrackType=None) -> bool:
        if trackType not in TRACK_TYPES:
            return False
        options = subTrackType if isinstance(subTrackType, dict) else {"audioType": subTrackType}
        sub = options.get("audioType") or ""
        if trackType == "audio":
            sub = sub or "mono"  # README is silent on the default; mono is the conservative one
            if sub not in AUDIO_SUB_TYPES:
                return False
        elif sub:
            return False
        tracks = self._tracks[trackType]
        name = f"{trackType.capitalize()} {len(tracks) + 1}"
        index = options.get("index")
        if index is None:
            tracks.append(_Track(name, sub))
        else:
            if not 1 <= index <= len(tracks) + 1:
                return False
            tracks.insert(index - 1, _Track(name, sub))
            for n, track in enumerate(tracks, 1):
                for item in track.items:
                    item._track = n
        return True

    def DeleteTrack(self, trackType: str, trackIndex: int) -> bool:
        tracks = self._tracks.get(trackType, [])
        if not 1 <= trackIndex <= len(tracks):
            return False
        del tracks[trackIndex - 1]
        for n, track in enumerate(tracks, 1):
            for item in track.items:
                item._track = n
        return True

    def GetTrackName(self, trackType: str, trackIndex: int) -> str:
        track = self._track(trackType, trackIndex)
        return track.name if track else ""

    def SetTrackName(self, trackType: str, trackIndex: int, name: str) -> bool:
        track = self._track(trackType, trackIndex)
        if track is None:
            return False
        track.name = name
        return True

    def GetTrackSubType(self, trackType: str, trackIndex: int) -> str:
        track = self._track(trackType, trackIndex)
        return track.sub_type if track else ""

    def GetIsTrackEnabled(self, trackType: str, trackIndex: int) -> bool:
        track = self._track(trackType, trackIndex)
        return bool(track and track.enabled)

    def SetTrackEnable(self, trackType: str, trackIndex: int, enabled: bool) -> bool:
        track = self._track(trackType, trackIndex)
        if track is None:
            return False
        track.enabled = bool(enabled)
        return True

    def GetIsTrackLocked(self, trackType: str, trackIndex: int) -> bool:
        track = self._track(trackType, trackIndex)
        return bool(track and track.locked)

    def SetTrackLock(self, trackType: str, trackIndex: int, locked: bool) -> bool:
        track = self._track(trackType, trackIndex)
        if track is None:
            return False
        track.locked = bool(locked)
        return True

    def GetItemListInTrack(self, trackType: str, index: int):
        track = self._track(trackType, index)
        if track is None:
            return None  # the API answers None for a track that does not exist
        return sorted(track.items, key=lambda i: i._start)

    def DeleteClips(self, timelineItems: list, ripple: bool = False) -> bool:
        found = False
        for tracks in self._tracks.values():
            for track in tracks:
                keep = [i for i in track.items if i not in timelineItems]
                found |= len(keep) != len(track.items)
                track.items = keep
        return found

    def _track(self, kind: str, index) -> _Track | None:
        tracks = self._tracks.get(kind)
        if tracks is None or not isinstance(index, int) or not 1 <= index <= len(tracks):
            return None
        return tracks[index - 1]

    # --- editing (called by MediaPool.AppendToTimeline) --------------------------------------
    def _append(self, info: dict) -> list[TimelineItem]:
        media = info.get("mediaPoolItem")
        if not isinstance(media, MediaPoolItem):
            return []
        start = round(info.get("startFrame", 0))
        # endFrame is exclusive; the item is trimmed to the media it has.
        end = min(round(info.get("endFrame", media._frames)), media._frames)
        if start < 0 or end <= start:
            return []
        media_type = info.get("mediaType")
        kinds = {None: ("video", "audio"), 1: ("video",), 2: ("audio",)}.get(media_type)
        if kinds is None:
            return []
        kinds = tuple(k for k in kinds if (media._has_video if k == "video" else media._has_audio))
        track_index = info.get("trackIndex", 1)
        placed: list[TimelineItem] = []
        for kind in kinds:
            track = self._track(kind, track_index)
            if track is None or track.locked:
                continue
            record = info.get("recordFrame")
            if record is None:
                record = max((i._end for i in track.items), default=self._start)
            record = round(record)
            # recordFrame is absolute: a frame before the timeline's start is not on it.
            if record < self._start:
                continue
            duration = end - start
            if any(i._start < record + duration and record < i._end for i in track.items):
                continue  # an overlapping append is dropped without a word
            item = TimelineItem(media, kind, track_index, record, duration, start)
            track.items.append(item)
            placed.append(item)
        for item in placed:
            item._linked = [other for other in placed if other is not item]
        return placed

    # --- interchange --------------------------------------------------------------------------
    def Export(self, fileName: str, exportType: int, exportSubtype=None) -> bool:
        if exportType != EXPORT_OTIO:
            return False  # the fake writes OTIO only
        if not os.path.isdir(os.path.dirname(os.path.abspath(fileName))):
            return False
        otio.adapters.write_to_file(self._to_otio(), fileName, adapter_name="otio_json")
        return True

    def _to_otio(self) -> otio.schema.Timeline:
        rate = float(self._rate)

        def rt(frames: int) -> otio.opentime.RationalTime:
            return otio.opentime.RationalTime(frames, rate)

        timeline = otio.schema.Timeline(name=self._name, global_start_time=rt(self._start))
        for kind, otio_kind in (("video", otio.schema.TrackKind.Video),
                                ("audio", otio.schema.TrackKind.Audio)):
            for track in self._tracks[kind]:
                out = otio.schema.Track(name=track.name, kind=otio_kind)
                out.enabled = track.enabled
                cursor = self._start
                for item in sorted(track.items, key=lambda i: i._start):
                    if item._start > cursor:
                        out.append(otio.schema.Gap(
                            source_range=otio.opentime.TimeRange(rt(0), rt(item._start - cursor))))
                    media = item._media
                    # Media without timecode starts at 0; source ranges are absolute media time.
                    reference = otio.schema.ExternalReference(
                        target_url=media._path,
                        available_range=otio.opentime.TimeRange(rt(0), rt(media._frames)),
                    )
                    clip = otio.schema.Clip(
                        name=media.GetName(), media_reference=reference,
                        source_range=otio.opentime.TimeRange(rt(item._left), rt(item._duration)),
                    )
                    clip.enabled = item._enabled
                    out.append(clip)
                    cursor = item._end
                timeline.tracks.append(out)
        return timeline

    def __repr__(self) -> str:
        return f"Timeline({self._name!r})"


class MediaPool:
    def __init__(self, project: Project):
        self._project = project
        self._root = Folder("Master")
        self._current = self._root
        self._id = f"pool-{next(_unique_ids)}"

    def GetRootFolder(self) -> Folder:
        return self._root

    def GetCurrentFolder(self) -> Folder:
        return self._current

    def SetCurrentFolder(self, folder: Folder) -> bool:
        if not isinstance(folder, Folder) or folder not in list(self._root._walk()):
            return False
        self._current = folder
        return True

    def AddSubFolder(self, folder: Folder, name: str):
        if not isinstance(folder, Folder) or not name:
            return None
        sub = Folder(name)
        folder._subfolders.append(sub)
        return sub

    def GetUniqueId(self) -> str:
        return self._id

    def _all_clips(self) -> list[MediaPoolItem]:
        return [clip for folder in self._root._walk() for clip in folder._clips]

    def _find(self, path: str) -> MediaPoolItem | None:
        path = os.path.abspath(path)
        return next((c for c in self._all_clips() if c._path == path), None)

    def ImportMedia(self, items: list) -> list:
        if not isinstance(items, list):
            return []
        imported = []
        for entry in items:
            if isinstance(entry, dict):
                raise NotImplementedError("the fake does not model image-sequence clipInfo import")
            path = os.path.abspath(str(entry))
            # A file already in the pool is not imported again (the README is silent; this is
            # the conservative reading: the caller must find the existing clip itself).
            if not os.path.isfile(path) or self._find(path) is not None:
                continue
            info = _probe(path)
            if info is None:
                continue
            clip = MediaPoolItem(path, self._project._rate(), info)
            self._current._clips.append(clip)
            imported.append(clip)
        return imported

    def AppendToTimeline(self, *args) -> list:
        timeline = self._project.GetCurrentTimeline()
        if timeline is None:
            return []
        entries = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
        appended = []
        for entry in entries:
            info = {"mediaPoolItem": entry} if isinstance(entry, MediaPoolItem) else entry
            if isinstance(info, dict):
                appended.extend(timeline._append(info))
        return appended

    def CreateEmptyTimeline(self, name: str):
        if not name or self._project._timeline_named(name) is not None:
            return None
        timeline = Timeline(self._project, name, self._project.GetSetting("timelineFrameRate"))
        self._project._add_timeline(timeline)
        return timeline

    def DeleteTimelines(self, timelines: list) -> bool:
        gone = [t for t in timelines if t in self._project._timelines]
        for timeline in gone:
            self._project._timelines.remove(timeline)
            if self._project._current is timeline:
                self._project._current = None
        return bool(gone)

    def ImportTimelineFromFile(self, filePath: str, importOptions: dict | None = None):
        options = importOptions or {}
        if not os.path.isfile(filePath) or not filePath.lower().endswith(".otio"):
            return None  # the fake reads OTIO only
        try:
            source = otio.adapters.read_from_file(filePath)
        except Exception:  # noqa: BLE001 - Resolve answers None for any unreadable file
            return None
        if not isinstance(source, otio.schema.Timeline):
            return None
        clips = list(source.find_clips())
        for clip in clips:
            ref = clip.media_reference
            if isinstance(ref, otio.schema.ExternalReference) and "://" in ref.target_url:
                return None  # Resolve's OTIO import wants bare file paths, not URLs
        name = options.get("timelineName") or source.name or os.path.basename(filePath)
        if self._project._timeline_named(name) is not None:
            return None
        rate = (source.global_start_time.rate if source.global_start_time is not None
                else clips[0].source_range.duration.rate if clips else None)
        rate_setting = _rate_string(rate) if rate else self._project.GetSetting(
            "timelineFrameRate")
        if rate_setting is None:
            return None
        exact, drop = _rate_of(rate_setting)
        start = (round(source.global_start_time.rescaled_to(float(exact)).value)
                 if source.global_start_time is not None else 86400)
        timeline = Timeline(self._project, name, rate_setting,
                            _timecode_of_frames(start, exact, drop))
        timeline._tracks = {"video": [], "audio": [], "subtitle": []}
        import_clips = options.get("importSourceClips", True)
        for otio_track in source.tracks:
            kind = "audio" if otio_track.kind == otio.schema.TrackKind.Audio else "video"
            tracks = timeline._tracks[kind]
            tracks.append(_Track(otio_track.name or f"{kind.capitalize()} {len(tracks) + 1}",
                                 "stereo" if kind == "audio" else "", otio_track.enabled))
            for index, child in enumerate(otio_track):
                if not isinstance(child, otio.schema.Clip):
                    continue
                ref = child.media_reference
                if not isinstance(ref, otio.schema.ExternalReference):
                    continue
                media = self._find(ref.target_url)
                if media is None and import_clips:
                    info = _probe(ref.target_url) if os.path.isfile(ref.target_url) else None
                    media = MediaPoolItem(ref.target_url, exact, info)
                    self._current._clips.append(media)
                if media is None:
                    continue
                record = otio_track.range_of_child_at_index(index).start_time
                source_range = child.source_range
                first = source_range.start_time
                if ref.available_range is not None:
                    first = first - ref.available_range.start_time
                item = TimelineItem(
                    media, kind, len(tracks),
                    start + round(record.rescaled_to(float(exact)).value),
                    round(source_range.duration.rescaled_to(float(exact)).value),
                    round(first.rescaled_to(float(exact)).value))
                item._enabled = child.enabled
                tracks[-1].items.append(item)
        self._project._add_timeline(timeline)
        return timeline


class Project:
    def __init__(self, name: str):
        self._name = name
        self._settings = {
            "timelineFrameRate": "24",
            "timelineDropFrameTimecode": "0",
            "timelineResolutionWidth": "1920",
            "timelineResolutionHeight": "1080",
        }
        self._pool = MediaPool(self)
        self._timelines: list[Timeline] = []
        self._current: Timeline | None = None
        self._id = f"project-{next(_unique_ids)}"

    def GetName(self) -> str:
        return self._name

    def GetUniqueId(self) -> str:
        return self._id

    def GetMediaPool(self) -> MediaPool:
        return self._pool

    def GetSetting(self, settingName: str = ""):
        if not settingName:
            return dict(self._settings)
        return self._settings.get(settingName, "")

    def SetSetting(self, settingName: str, settingValue: str) -> bool:
        if settingName == "timelineFrameRate":
            try:
                _rate_of(str(settingValue))
            except KeyError:
                return False
        self._settings[settingName] = str(settingValue)
        return True

    def GetTimelineCount(self) -> int:
        return len(self._timelines)

    def GetTimelineByIndex(self, idx: int):
        if not isinstance(idx, int) or not 1 <= idx <= len(self._timelines):
            return None
        return self._timelines[idx - 1]

    def GetCurrentTimeline(self):
        return self._current

    def SetCurrentTimeline(self, timeline: Timeline) -> bool:
        if timeline not in self._timelines:
            return False
        self._current = timeline
        return True

    def _rate(self) -> Fraction:
        return _rate_of(self._settings["timelineFrameRate"])[0]

    def _timeline_named(self, name: str) -> Timeline | None:
        return next((t for t in self._timelines if t.GetName() == name), None)

    def _add_timeline(self, timeline: Timeline) -> None:
        # A new timeline (empty or imported) becomes the current one, as in Resolve.
        self._timelines.append(timeline)
        self._current = timeline


class ProjectManager:
    def __init__(self):
        self._projects: dict[str, Project] = {}
        self._current: Project | None = None

    def CreateProject(self, projectName: str):
        if not projectName or projectName in self._projects:
            return None
        project = Project(projectName)
        self._projects[projectName] = project
        self._current = project
        return project

    def LoadProject(self, projectName: str):
        project = self._projects.get(projectName)
        if project is not None:
            self._current = project
        return project

    def GetCurrentProject(self):
        return self._current

    def GetProjectListInCurrentFolder(self) -> list:
        return list(self._projects)

    def SaveProject(self) -> bool:
        return self._current is not None

    def CloseProject(self, project: Project) -> bool:
        if project is not self._current:
            return False
        self._current = None
        return True


class FakeResolve:
    """The `resolve` object a script gets. `fusion` is the `fu` object (None: no Fusion UI)."""

    EXPORT_AAF = EXPORT_AAF
    EXPORT_DRT = EXPORT_DRT
    EXPORT_EDL = EXPORT_EDL
    EXPORT_FCP_7_XML = EXPORT_FCP_7_XML
    EXPORT_FCPXML_1_10 = EXPORT_FCPXML_1_10
    EXPORT_OTIO = EXPORT_OTIO

    def __init__(self, product: str = "DaVinci Resolve Studio", version=(19, 1, 3, 7, ""),
                 fusion=None):
        self._manager = ProjectManager()
        self._product = product
        self._version = list(version)
        self._fusion = fusion

    def GetProjectManager(self) -> ProjectManager:
        return self._manager

    def GetProductName(self) -> str:
        return self._product

    def GetVersion(self) -> list:
        return list(self._version)

    def GetVersionString(self) -> str:
        return ".".join(str(v) for v in self._version[:3])

    def GetCurrentPage(self) -> str:
        return "edit"

    def Fusion(self):
        return self._fusion
