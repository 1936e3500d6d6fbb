"""Putting the daemon's answer on the scene: sound strips under the picture they were made for.

Runs on Blender's main thread (from a timer), once, on the final result only, so a cancelled or
failed generation never leaves strips behind. Either every sound strip goes in, or none does;
the whole step is one undo step.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import bpy

from .compat import strips_of

MAX_CHANNEL = 128
UNTRUSTED_COLOR = "COLOR_02"
"""The colour tag of a sound the daemon says is not to be trusted (orange in the default theme;
the sequencer shows it when its overlay's colour tags are on, as they are by default)."""


class ApplyError(Exception):
    """The result cannot be placed; nothing was changed. The message says what to do."""


@dataclass(frozen=True)
class SoundPlacement:
    """One WAV at scene frames: `frame` (first frame heard), `duration` frames, `source_in`
    frames into the file; `lane` groups placements sharing a channel (track, take)."""

    file: str
    clip: str
    frame: int
    duration: int
    source_in: int
    track: int
    take: int
    unfamiliar: bool = False  # the daemon judged this sound not to be trusted

    @property
    def lane(self) -> tuple[int, int]:
        return (self.track, self.take)

    @property
    def name(self) -> str:
        strip = editor_name(self.clip)
        return f"{strip} (V2A)" if self.take <= 1 else f"{strip} (V2A take {self.take})"


def editor_name(label: str) -> str:
    """A daemon clip label ("Shot 3 [V2/1]", "A [V1/1] .. C [V1/3] (3 clips)") without the
    track paths, i.e. in the strip names the editor knows."""
    return re.sub(r" \[[^\]]*\]", "", label)


def _frames(value, result_rate: float, scene_rate: float) -> int:
    if abs(result_rate - scene_rate) < 1e-6:
        return round(value)
    return round(value * scene_rate / result_rate)


def placements_on_scene(result: dict, *, origin: int, scene_rate: float) -> list[SoundPlacement]:
    """The result's placements (frames at the result's `rate`, relative to the timeline's first
    frame) in scene frames. Raises ApplyError for a malformed result."""
    try:
        result_rate = float(result["rate"])
        if not result_rate > 0:
            raise ValueError(f"frame rate {result_rate}")
        raw = result["placements"]
        placements = [
            SoundPlacement(
                file=str(p["file"]),
                clip=str(p.get("clip") or os.path.splitext(os.path.basename(p["file"]))[0]),
                frame=origin + _frames(p["record_start"], result_rate, scene_rate),
                duration=_frames(p["duration"], result_rate, scene_rate),
                source_in=_frames(p.get("source_in", 0) or 0, result_rate, scene_rate),
                track=int(p.get("track", 1) or 1),
                take=int(p.get("take", 1) or 1),
                unfamiliar=bool(p.get("unfamiliar", False)),
            )
            for p in raw
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ApplyError(
            f"the daemon's result has no usable placements ({exc!r}); update the daemon and the "
            "add-on to the same version") from None
    return [p for p in placements if p.duration > 0]


def _busy(editor) -> dict[int, list[tuple[int, int]]]:
    busy: dict[int, list[tuple[int, int]]] = {}
    for strip in strips_of(editor):
        busy.setdefault(strip.channel, []).append(
            (int(strip.frame_final_start), int(strip.frame_final_end)))
    return busy


def _fits(spans, wanted) -> bool:
    return all(end <= a or start >= b for a, b in wanted for start, end in spans)


def assign_channels(editor, placements: list[SoundPlacement]) -> dict[tuple[int, int], int]:
    """A channel for each lane (track, take): the lowest free channels above the picture, one
    lane after another, so the takes of a track sit on neighbouring channels."""
    busy = _busy(editor)
    # A muted channel would silence the new sound (unmuting the strip does not help) and a
    # locked one would not let the editor touch it: neither is free.
    closed = {n for n, c in enumerate(editor.channels) if c.mute or c.lock}
    picture_top = max(
        (s.channel for s in strips_of(editor) if s.type != "SOUND"), default=0)
    lanes = sorted({p.lane for p in placements})
    chosen: dict[tuple[int, int], int] = {}
    channel = picture_top
    for lane in lanes:
        wanted = [(p.frame - p.source_in, p.frame + p.duration)
                  for p in placements if p.lane == lane]
        channel += 1
        while channel <= MAX_CHANNEL and (channel in closed
                                          or not _fits(busy.get(channel, []), wanted)):
            channel += 1
        if channel > MAX_CHANNEL:
            raise ApplyError(
                f"no free channel above the picture for {len(lanes)} new sound lanes (Blender has "
                f"{MAX_CHANNEL}); remove unused strips or generate fewer takes")
        chosen[lane] = channel
        busy.setdefault(channel, []).extend(wanted)
    return chosen


def apply_placements(scene, placements: list[SoundPlacement]) -> list[str]:
    """Add one sound strip per placement; alternates (take > 1) go in muted. Returns the new
    strips' names. All or nothing: on any failure the strips added so far are removed again."""
    if not placements:
        return []
    editor = scene.sequence_editor_create()
    missing = [p.file for p in placements if not os.path.isfile(p.file)]
    if missing:
        raise ApplyError(
            f"{len(missing)} generated file(s) are not where the daemon said, e.g. {missing[0]}; "
            "the daemon must run on this computer and write into the folder next to the .blend")
    channels = assign_channels(editor, placements)
    strips = strips_of(editor)
    added = []
    try:
        for p in placements:
            channel = channels[p.lane]
            strip = strips.new_sound(p.name, p.file, channel, p.frame - p.source_in)
            added.append(strip)
            if p.source_in:
                strip.frame_final_start = p.frame
            strip.frame_final_duration = p.duration
            if strip.channel != channel:  # Blender moved it while it still overlapped
                strip.channel = channel
            strip.mute = p.take > 1
            if p.unfamiliar:
                strip.color_tag = UNTRUSTED_COLOR
            strip.select = False
    except (RuntimeError, TypeError, ValueError) as exc:
        for strip in added:
            strips.remove(strip)
        raise ApplyError(f"Blender refused a generated sound file: {exc}") from None
    for strip in added:
        _relative_to_blend(strip.sound)
    names = [s.name for s in added]
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message="V2A: add generated sound")
    return names


def _relative_to_blend(sound) -> None:
    """Keep `//v2a/...` paths relative, so the project folder can move with its sound."""
    if not bpy.data.filepath:
        return
    path = os.path.abspath(bpy.path.abspath(sound.filepath))
    folder = os.path.abspath(os.path.dirname(bpy.data.filepath))
    try:
        inside = os.path.commonpath([path, folder]) == folder
    except ValueError:  # on another drive (Windows)
        return
    if inside:
        sound.filepath = bpy.path.relpath(path)
