"""The VSE edit as the daemon sees it: movie strips → an OpenTimelineIO timeline in JSON text.

Blender has no OTIO library and needs none: the few schemas the planner reads (Timeline, Stack,
Track, Clip, Gap, ExternalReference, LinearTimeWarp, TimeRange, RationalTime) are written here as
plain dicts. Only reading Blender data happens here, on Blender's main thread.

Timing facts this relies on (Blender 4.2–5.0):
- a movie strip shows one movie frame per scene frame; the movie frame shown at scene frame `f`
  is `f - frame_start + animation_offset_start` (the content's own trim);
- `frame_final_start`/`frame_final_end` are the visible handles (end exclusive);
- strips inside a meta strip keep absolute scene frames; the meta's handles clip them;
- a higher channel is drawn over a lower one; a meta draws on its own channel.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import bpy

from .compat import scene_fps, strips_of

_NTSC_BASES = (24, 30, 48, 60, 120)


@dataclass(frozen=True)
class PictureClip:
    """One stretch of a movie strip as it shows on the scene's timeline."""

    strip: str  # the strip's name (unique within a scene)
    movie: str  # absolute path of the movie file
    movie_rate: float
    movie_frames: int  # the whole movie, in its own frames
    content_start: int  # movie frame shown at `record_start`
    record_start: int  # scene frames, end exclusive
    record_end: int
    layer: tuple[int, ...]  # channels from the top level down (meta channel, ..., strip channel)
    enabled: bool  # False when the strip, a meta around it or its channel is muted


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
    """The movie strips of `scene` (also inside meta strips) with their visible timing.

    `selected_only`: only selected movie strips and everything inside selected meta strips."""
    editor = scene.sequence_editor
    if editor is None:
        return [], []
    clips: list[PictureClip] = []
    skipped: list[SkippedStrip] = []
    _walk(editor, editor.channels, (), (-math.inf, math.inf), False, not selected_only,
          clips, skipped)
    clips.sort(key=lambda c: (c.record_start, c.layer))
    return clips, skipped


def _walk(container, channels, path, window, muted, chosen, clips, skipped) -> None:
    for strip in strips_of(container):
        layer = (*path, strip.channel)
        start = max(strip.frame_final_start, window[0])
        end = min(strip.frame_final_end, window[1])
        strip_muted = muted or strip.mute or channels[strip.channel].mute
        strip_chosen = chosen or strip.select
        if strip.type == "META":
            _walk(strip, strip.channels, layer, (start, end), strip_muted, strip_chosen,
                  clips, skipped)
        elif strip.type == "MOVIE" and strip_chosen and end > start:
            clip = _picture_clip(strip, layer, int(start), int(end), not strip_muted, skipped)
            if clip is not None:
                clips.append(clip)


def _picture_clip(strip, layer, start, end, enabled, skipped) -> PictureClip | None:
    movie = os.path.normpath(os.path.abspath(bpy.path.abspath(strip.filepath)))
    if not os.path.isfile(movie):
        skipped.append(SkippedStrip(
            strip.name, f"movie file not found: {movie} (relink the strip to its media)"))
        return None
    if len(getattr(strip, "retiming_keys", ())) > 0:
        skipped.append(SkippedStrip(
            strip.name, "the strip is retimed; V2A needs it at normal speed (reset its retiming "
            "or render it to a new movie first)"))
        return None
    if strip.use_reverse_frames:
        skipped.append(SkippedStrip(
            strip.name, "the strip plays backwards; turn off Reverse Frames or render it first"))
        return None
    fps = _movie_fps(strip)
    if fps <= 0:
        skipped.append(SkippedStrip(
            strip.name, f"Blender cannot read the frame rate of {movie}; is it a movie file?"))
        return None
    anim_start, anim_end = strip.animation_offset_start, strip.animation_offset_end
    return PictureClip(
        strip=strip.name,
        movie=movie,
        movie_rate=media_rate(fps),
        movie_frames=int(strip.frame_duration + anim_start + anim_end),
        content_start=int(start - strip.frame_start + anim_start),
        record_start=start,
        record_end=end,
        layer=layer,
        enabled=enabled,
    )


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


def _clip(clip: PictureClip, rate: float) -> dict:
    frames = clip.record_end - clip.record_start
    effects = []
    if abs(clip.movie_rate - rate) < 1e-6:
        duration = _time(frames, clip.movie_rate)
    else:
        # Blender steps one movie frame per scene frame, so the picture runs at
        # scene_rate / movie_rate speed: record length in scene frames, a time warp for speed.
        duration = _time(frames, rate)
        effects.append({
            "OTIO_SCHEMA": "LinearTimeWarp.1", "metadata": {}, "name": "",
            "effect_name": "LinearTimeWarp", "time_scalar": rate / clip.movie_rate,
        })
    reference = {
        "OTIO_SCHEMA": "ExternalReference.1",
        "metadata": {},
        "name": os.path.basename(clip.movie),
        "target_url": clip.movie,
        "available_range": _range(_time(0, clip.movie_rate),
                                  _time(clip.movie_frames, clip.movie_rate)),
    }
    return {
        "OTIO_SCHEMA": "Clip.2",
        "metadata": {"blender": {"strip": clip.strip, "channel": list(clip.layer)}},
        "name": clip.strip,
        "source_range": _range(_time(clip.content_start, clip.movie_rate), duration),
        "effects": effects,
        "markers": [],
        "enabled": clip.enabled,
        "media_references": {"DEFAULT_MEDIA": reference},
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
