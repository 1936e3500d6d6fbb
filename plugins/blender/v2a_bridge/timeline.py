"""The VSE edit as the daemon sees it: movie and image-sequence strips → an OpenTimelineIO
timeline in JSON text.

Blender has no OTIO library and needs none: the few schemas the planner reads (Timeline, Stack,
Track, Clip, Gap, ExternalReference, ImageSequenceReference, LinearTimeWarp, TimeRange,
RationalTime) are written here as plain dicts. Only reading Blender data happens here, on
Blender's main thread.

Timing facts this relies on (Blender 4.2–5.0):
- a movie strip shows one movie frame per scene frame; the movie frame shown at scene frame `f`
  is `f - frame_start + animation_offset_start` (the content's own trim);
- an image strip shows one image per scene frame, the same way: at scene frame `f` it shows
  `elements[f - frame_start + animation_offset_start]`, a file in `directory`; `elements` lists
  every image of the strip, the trimmed ones too (`frame_duration` + both animation offsets);
  a strip with a single element is a still image, shown on every frame of its length (it is
  read as a freeze frame where no movie or image sequence shows);
- `frame_final_start`/`frame_final_end` are the visible handles (end exclusive);
- strips inside a meta strip keep absolute scene frames; the meta's handles clip them;
- a higher channel is drawn over a lower one; a meta draws on its own channel.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

import bpy

from .compat import scene_fps, strips_of

_NTSC_BASES = (24, 30, 48, 60, 120)

# Picture V2A cannot read that takes the place of footage: reported wherever it shows.
_UNREAD_FOOTAGE = {
    "SCENE": "scene strips are not read yet; render the scene to a movie and add that",
    "MOVIECLIP": "clip strips are not read; add the clip's movie file as a movie strip",
    "SPEED": "speed strips are not read (the sound would follow the strip under it at normal "
             "speed); render the result to a movie and add that",
}
# Picture with no motion of its own, or that only changes other strips: reported only where no
# strip that is read shows at its frames (a title over footage is heard through the footage).
_UNREAD_OVERLAY = {
    "COLOR": "a colour strip is a flat colour with no motion to sound; V2A reads movie and "
             "image-sequence strips",
    "TEXT": "a text strip has no motion to sound; V2A reads movie and image-sequence strips",
    "MASK": "a mask strip has no footage to sound; V2A reads movie and image-sequence strips",
    "ADJUSTMENT": "an adjustment strip only changes the strips below it, and none of them is "
                  "read here; V2A reads movie and image-sequence strips",
}
# The frame number of an image file: its last run of digits.
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


@dataclass(frozen=True)
class ImageNumbering:
    """How the files of an image sequence are named: `prefix`, the frame number written with at
    least `padding` digits, `suffix`; the strip's first image (element 0) is number `first`."""

    prefix: str
    suffix: str
    first: int
    padding: int

    def name(self, index: int) -> str:
        """The file name of the strip's image `index` (0 = its first element)."""
        return f"{self.prefix}{self.first + index:0{self.padding}d}{self.suffix}"


@dataclass(frozen=True)
class PictureClip:
    """One stretch of a movie or image-sequence strip as it shows on the scene's timeline."""

    strip: str  # the strip's name (unique within a scene)
    media: str  # absolute path of the movie file, or of the image sequence's folder
    media_rate: float  # media frames per second (an image sequence: the scene's rate)
    media_frames: int  # the whole movie or sequence, in its own frames
    content_start: int  # media frame shown at `record_start` (0 = the first movie frame/image)
    record_start: int  # scene frames, end exclusive
    record_end: int
    layer: tuple[int, ...]  # channels from the top level down (meta channel, ..., strip channel)
    enabled: bool  # False when the strip, a meta around it or its channel is muted
    images: ImageNumbering | None = None  # an image sequence: how its files are named
    freeze: bool = False  # a still image (`media` its file): one picture for the whole stretch


@dataclass(frozen=True)
class SkippedStrip:
    strip: str
    reason: str


@dataclass(frozen=True)
class Timeline:
    """What goes to the daemon, and what is needed to place its answer back on the scene."""

    otio: str  # OTIO JSON text
    origin: int  # scene frame of the timeline's time 0 (placements' record_start 0)
    rate: float  # scene frames per second
    clips: tuple[PictureClip, ...]
    skipped: tuple[SkippedStrip, ...]


@dataclass
class _Reading:
    """One pass over a scene's strips: what it needs and what it finds."""

    rate: float  # scene frames per second
    selected_only: bool
    clips: list[PictureClip] = field(default_factory=list)
    skipped: list[SkippedStrip] = field(default_factory=list)
    # (strip, first frame, end frame): reported only where no clip shows at those frames
    unread: list[tuple[SkippedStrip, int, int]] = field(default_factory=list)
    # still images in scope: (strip, layer, first frame, end frame, enabled)
    stills: list[tuple] = field(default_factory=list)
    listings: dict[str, set[str]] = field(default_factory=dict)  # folder -> its file names


def media_rate(fps: float) -> float:
    """A movie's frame rate as the exact value its float approximates (29.97 → 30000/1001)."""
    for base in _NTSC_BASES:
        ntsc = base * 1000 / 1001
        if abs(fps - ntsc) < 0.005:
            return ntsc
    if abs(fps - round(fps)) < 0.005:
        return float(round(fps))
    return float(fps)


def collect_picture(scene, *, selected_only: bool) -> tuple[list[PictureClip], list[SkippedStrip]]:
    """The movie and image-sequence strips of `scene` (also inside meta strips) with their
    visible timing, still images as freeze frames where neither shows, and the picture strips
    in scope that cannot be read, with the reason.

    `selected_only`: only selected strips and everything inside selected meta strips. Sound
    strips are never reported; see `_unread` for which other strips are."""
    editor = scene.sequence_editor
    if editor is None:
        return [], []
    reading = _Reading(rate=scene_fps(scene), selected_only=selected_only)
    _walk(editor, editor.channels, (), (-math.inf, math.inf), False, not selected_only, reading)
    footage = sorted((c.record_start, c.record_end) for c in reading.clips if c.enabled)
    for still in reading.stills:
        reading.clips += _still_clips(*still, footage, reading)
    clips = sorted(reading.clips, key=lambda c: (c.record_start, c.layer))
    spans = sorted((c.record_start, c.record_end) for c in clips)
    uncovered = [s for s, start, end in reading.unread if _uncovered(spans, start, end)]
    return clips, reading.skipped + uncovered


def _walk(container, channels, path, window, muted, chosen, reading: _Reading) -> None:
    for strip in strips_of(container):
        layer = (*path, strip.channel)
        start = max(strip.frame_final_start, window[0])
        end = min(strip.frame_final_end, window[1])
        strip_muted = muted or strip.mute or channels[strip.channel].mute
        strip_chosen = chosen or strip.select
        if strip.type == "META" and strip.use_reverse_frames and not strip_muted:
            # Everything inside plays backwards; reported where its contents are in scope.
            if end > start and (strip_chosen or _selected_inside(strip)):
                reading.skipped.append(SkippedStrip(
                    strip.name, "the meta strip plays backwards; turn off its Reverse Frames "
                    "or render it first"))
        elif strip.type == "META":
            _walk(strip, strip.channels, layer, (start, end), strip_muted, strip_chosen, reading)
        elif end <= start or strip.type == "SOUND":
            continue
        elif _is_still(strip):
            if strip_chosen:
                reading.stills.append((strip, layer, int(start), int(end), not strip_muted))
        elif strip.type in _READERS:
            if strip_chosen:
                clip = _READERS[strip.type](
                    strip, layer, int(start), int(end), not strip_muted, reading)
                if clip is not None:
                    reading.clips.append(clip)
        elif (strip_chosen and not strip_muted) or (reading.selected_only and strip.select):
            _unread(strip, int(start), int(end), reading)


def _selected_inside(meta) -> bool:
    return any(s.select or (s.type == "META" and _selected_inside(s)) for s in strips_of(meta))


def _is_still(strip) -> bool:
    """An image strip of one image: Blender shows that image on every frame of the strip."""
    return strip.type == "IMAGE" and len(strip.elements) < 2


def _unread(strip, start, end, reading: _Reading) -> None:
    """Note a picture strip in scope that V2A cannot read (shown, or picked by the user).

    Scene, clip and speed strips are footage the sound should follow: always reported. Colour,
    text, mask, adjustment and effect strips have no motion of their own or only change the
    strips they sit on: reported only where nothing that is read shows at their frames (a
    title over footage is heard through the footage)."""
    footage = _UNREAD_FOOTAGE.get(strip.type)
    if footage is not None:
        reading.skipped.append(SkippedStrip(strip.name, footage))
        return
    reason = _UNREAD_OVERLAY.get(strip.type)
    if reason is None:
        kind = strip.type.lower().replace("_", " ")
        reason = (f"{kind} strips only combine or change other strips, and none of them is read "
                  "here; V2A reads movie and image-sequence strips")
    reading.unread.append((SkippedStrip(strip.name, reason), start, end))


def _absolute(path: str) -> str:
    """A strip's file or folder path (Blender's `//` means beside the .blend) made absolute."""
    return os.path.normpath(os.path.abspath(bpy.path.abspath(path)))


def _timing_problem(strip) -> str | None:
    """Why V2A cannot follow the strip's timing, or None (movie and image strips alike)."""
    if len(getattr(strip, "retiming_keys", ())) > 0:
        return ("the strip is retimed; V2A needs it at normal speed (reset its retiming "
                "or render it to a new movie first)")
    if strip.use_reverse_frames:
        return "the strip plays backwards; turn off Reverse Frames or render it first"
    return None


def _movie_clip(strip, layer, start, end, enabled, reading: _Reading) -> PictureClip | None:
    skipped = reading.skipped
    movie = _absolute(strip.filepath)
    if not os.path.isfile(movie):
        skipped.append(SkippedStrip(
            strip.name, f"movie file not found: {movie} (relink the strip to its media)"))
        return None
    problem = _timing_problem(strip)
    if problem is not None:
        skipped.append(SkippedStrip(strip.name, problem))
        return None
    fps = _movie_fps(strip)
    if fps <= 0:
        skipped.append(SkippedStrip(
            strip.name, f"Blender cannot read the frame rate of {movie}; is it a movie file?"))
        return None
    anim_start, anim_end = strip.animation_offset_start, strip.animation_offset_end
    return PictureClip(
        strip=strip.name,
        media=movie,
        media_rate=media_rate(fps),
        media_frames=int(strip.frame_duration + anim_start + anim_end),
        content_start=int(start - strip.frame_start + anim_start),
        record_start=start,
        record_end=end,
        layer=layer,
        enabled=enabled,
    )


def _image_clip(strip, layer, start, end, enabled, reading: _Reading) -> PictureClip | None:
    """An image strip whose files are one numbered sequence (shot_0001.png, shot_0002.png, ...
    in the order the strip shows them). It plays one image per scene frame, so its rate is the
    scene's."""
    skipped = reading.skipped
    names = [element.filename for element in strip.elements]
    folder = _absolute(strip.directory)
    if not os.path.isdir(folder):
        skipped.append(SkippedStrip(
            strip.name, f"image folder not found: {folder} (relink the strip to its media)"))
        return None
    # As for movies: a strip whose timing V2A cannot follow is refused before any listing.
    problem = _timing_problem(strip)
    if problem is not None:
        skipped.append(SkippedStrip(strip.name, problem))
        return None
    numbering, broken = image_numbering(names)
    if numbering is None:
        skipped.append(SkippedStrip(
            strip.name, f"the images are not one numbered sequence ({broken}); render the "
            "strip to a movie first"))
        return None
    content_start = int(start - strip.frame_start + strip.animation_offset_start)
    if content_start < 0 or content_start + end - start > len(names):
        skipped.append(SkippedStrip(
            strip.name, "the strip holds its first or last image past the end of its images (a "
            "handle is dragged beyond them); trim the strip to its images"))
        return None
    missing = _missing_files(folder, names[content_start:content_start + end - start], reading)
    if missing:
        skipped.append(SkippedStrip(
            strip.name, f"{len(missing)} of the strip's images are not in {folder}, e.g. "
            f"{missing[0]} (relink the strip to its media)"))
        return None
    return PictureClip(
        strip=strip.name,
        media=folder,
        media_rate=reading.rate,
        media_frames=len(names),
        content_start=content_start,
        record_start=start,
        record_end=end,
        layer=layer,
        enabled=enabled,
        images=numbering,
    )


def _still_clips(strip, layer, start, end, enabled, footage, reading: _Reading) -> list[PictureClip]:
    """A still image as freeze frames, only where no movie or image sequence shows: a logo or
    a title card over footage is heard through the footage; a photo on its own gets sound."""
    free = _uncovered(footage, start, end)
    if not free:
        return []
    path = _absolute(os.path.join(strip.directory, strip.elements[0].filename))
    if not os.path.isfile(path):
        reading.skipped.append(SkippedStrip(
            strip.name, f"image file not found: {path} (relink the strip to its media)"))
        return []
    return [PictureClip(strip=strip.name, media=path, media_rate=reading.rate, media_frames=1,
                        content_start=0, record_start=a, record_end=b, layer=layer,
                        enabled=enabled, freeze=True)
            for a, b in free]


def _uncovered(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of [start, end) that none of the sorted `spans` covers."""
    free, at = [], start
    for a, b in spans:
        if b <= at:
            continue
        if a >= end:
            break
        if a > at:
            free.append((at, a))
        at = max(at, b)
    if at < end:
        free.append((at, end))
    return free


def image_numbering(names: list[str]) -> tuple[ImageNumbering | None, str]:
    """How `names` (an image strip's files, in the order it shows them) are numbered, when
    they are one sequence: the last run of digits of each name counts up by one from image to
    image, with the same text before and after it. Otherwise None and where it breaks."""
    match = _NUMBERED.match(names[0])
    if match is None:
        return None, f"{names[0]} has no frame number"
    prefix, digits, suffix = match.groups()
    numbering = ImageNumbering(prefix, suffix, int(digits), len(digits))
    for index, name in enumerate(names):
        if name != numbering.name(index):
            return None, f"{names[index - 1]} is followed by {name}"
    return numbering, ""


def _missing_files(folder: str, names: list[str], reading: _Reading) -> list[str]:
    """The names that are no file in `folder` (one directory listing per folder and pass; names
    it does not list are looked up one by one, for case-insensitive file systems)."""
    if folder not in reading.listings:
        try:
            reading.listings[folder] = set(os.listdir(folder))
        except OSError:
            reading.listings[folder] = set()
    listed = reading.listings[folder]
    return [n for n in names
            if n not in listed and not os.path.isfile(os.path.join(folder, n))]


_READERS = {"MOVIE": _movie_clip, "IMAGE": _image_clip}


def _movie_fps(strip) -> float:
    """The movie's frame rate as Blender stored it when it loaded the movie (`MovieStrip.fps`
    reopens the file on every read: milliseconds per strip; only asked when nothing is stored)."""
    elements = strip.elements
    if len(elements) and elements[0].orig_fps > 0:
        return elements[0].orig_fps
    return strip.fps


def build_timeline(scene, *, selected_only: bool) -> Timeline:
    """The scene's picture as an OTIO timeline whose time 0 is scene frame `origin`."""
    clips, skipped = collect_picture(scene, selected_only=selected_only)
    rate = scene_fps(scene)
    origin = min([scene.frame_start, *(c.record_start for c in clips)])
    text = otio_json(clips, rate=rate, origin=origin, name=scene.name)
    return Timeline(text, origin, rate, tuple(clips), tuple(skipped))


# --- OTIO as plain data -------------------------------------------------------------------------

def _time(value: float, rate: float) -> dict:
    return {"OTIO_SCHEMA": "RationalTime.1", "rate": float(rate), "value": float(value)}


def _range(start: dict, duration: dict) -> dict:
    return {"OTIO_SCHEMA": "TimeRange.1", "start_time": start, "duration": duration}


def _gap(frames: int, rate: float) -> dict:
    return {
        "OTIO_SCHEMA": "Gap.1", "metadata": {}, "name": "", "effects": [], "markers": [],
        "enabled": True, "source_range": _range(_time(0, rate), _time(frames, rate)),
    }


def _media_reference(clip: PictureClip) -> dict:
    """The clip's ExternalReference (a movie) or ImageSequenceReference (numbered images, whose
    time is the frame number: the strip's first image is at `images.first`)."""
    if clip.images is None:
        return {
            "OTIO_SCHEMA": "ExternalReference.1",
            "metadata": {},
            "name": os.path.basename(clip.media),
            "target_url": clip.media,
            "available_range": _range(_time(0, clip.media_rate),
                                      _time(clip.media_frames, clip.media_rate)),
        }
    images = clip.images
    return {
        "OTIO_SCHEMA": "ImageSequenceReference.1",
        "metadata": {},
        "name": f"{images.prefix}{'#' * images.padding}{images.suffix}",
        "available_range": _range(_time(images.first, clip.media_rate),
                                  _time(clip.media_frames, clip.media_rate)),
        "target_url_base": os.path.join(clip.media, ""),
        "name_prefix": images.prefix,
        "name_suffix": images.suffix,
        "start_frame": images.first,
        "frame_step": 1,
        "rate": float(clip.media_rate),
        "frame_zero_padding": images.padding,
        "missing_frame_policy": "error",
    }


def _clip(clip: PictureClip, rate: float) -> dict:
    frames = clip.record_end - clip.record_start
    effects = []
    if clip.freeze:
        # OTIO's freeze frame: a time warp of 0 holds the source range's first frame.
        duration = _time(frames, rate)
        effects.append({
            "OTIO_SCHEMA": "LinearTimeWarp.1", "metadata": {}, "name": "",
            "effect_name": "FreezeFrame", "time_scalar": 0.0,
        })
    elif abs(clip.media_rate - rate) < 1e-6:
        duration = _time(frames, clip.media_rate)
    else:
        # Blender steps one movie frame per scene frame, so the picture runs at
        # scene_rate / movie_rate speed: record length in scene frames, a time warp for speed.
        duration = _time(frames, rate)
        effects.append({
            "OTIO_SCHEMA": "LinearTimeWarp.1", "metadata": {}, "name": "",
            "effect_name": "LinearTimeWarp", "time_scalar": rate / clip.media_rate,
        })
    first = clip.images.first if clip.images is not None else 0
    return {
        "OTIO_SCHEMA": "Clip.2",
        "metadata": {"blender": {"strip": clip.strip, "channel": list(clip.layer)}},
        "name": clip.strip,
        "source_range": _range(_time(first + clip.content_start, clip.media_rate), duration),
        "effects": effects,
        "markers": [],
        "enabled": clip.enabled,
        "media_references": {"DEFAULT_MEDIA": _media_reference(clip)},
        "active_media_reference_key": "DEFAULT_MEDIA",
    }


def _track_name(layer: tuple[int, ...]) -> str:
    return " › ".join(f"Channel {c}" for c in layer)


def otio_json(clips: list[PictureClip], *, rate: float, origin: int, name: str) -> str:
    """OTIO JSON text: one video track per channel (lowest first, so the top-most channel is
    the top-most track, as in OTIO's stack order), clips at their record frames with gaps
    between them."""
    tracks = []
    for layer in sorted({c.layer for c in clips}):
        children, at = [], origin
        for clip in sorted((c for c in clips if c.layer == layer), key=lambda c: c.record_start):
            if clip.record_start > at:
                children.append(_gap(clip.record_start - at, rate))
            children.append(_clip(clip, rate))
            at = clip.record_end
        tracks.append({
            "OTIO_SCHEMA": "Track.1", "metadata": {"blender": {"channel": list(layer)}},
            "name": _track_name(layer), "source_range": None, "effects": [], "markers": [],
            "enabled": True, "kind": "Video", "children": children,
        })
    timeline = {
        "OTIO_SCHEMA": "Timeline.1",
        "metadata": {"blender": {"scene": name, "origin_frame": origin}},
        "name": name,
        "global_start_time": _time(origin, rate),
        "tracks": {
            "OTIO_SCHEMA": "Stack.1", "metadata": {}, "name": "tracks", "source_range": None,
            "effects": [], "markers": [], "enabled": True, "children": tracks,
        },
    }
    return json.dumps(timeline, ensure_ascii=False)
