"""Putting generated sound back on the timeline: new audio tracks and host placements.

The input timeline is copied untouched; new audio tracks (`V2A`, or one per prompt when stems
are asked for) are appended. Each generated clip sits at exactly the record range of the
picture it was made for (its trimmed range equals the video clip's), references its WAV by an
`ExternalReference`, and carries the generation parameters under the `v2a` metadata namespace.
Dissolves between two generated clips are mirrored as audio transitions; the WAVs hold the
handles they need. Extra takes are alternate media references of the same clip (OTIO 0.15+).

Tracks this module made carry `metadata["v2a"]["generated"] = True`; a re-run replaces them
instead of stacking a second copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio

from bridge.planner import ClipJob, TimelinePlan
from daemon.engine import OUTPUT_RATE

TRACK_NAME = "V2A"


@dataclass(frozen=True)
class Take:
    file: str  # absolute path of the WAV on the daemon's host
    seed: int
    unfamiliar: bool = False  # the engine judged this sound not to be trusted


@dataclass
class GeneratedClip:
    """What the timeline job made for one ClipJob."""

    job: ClipJob
    takes: list[Take]
    params: dict = field(default_factory=dict)  # prompt, steps, cfg, model, weights_hash, ...
    cached: bool = False


def is_generated_track(track) -> bool:
    meta = track.metadata.get("v2a") if isinstance(track, otio.schema.Track) else None
    return bool(meta is not None and hasattr(meta, "get") and meta.get("generated"))


def strip_generated(timeline: otio.schema.Timeline) -> otio.schema.Timeline:
    """A copy of `timeline` without tracks an earlier run added."""
    out = timeline.deepcopy()
    for i in range(len(out.tracks) - 1, -1, -1):
        if is_generated_track(out.tracks[i]):
            del out.tracks[i]
    return out


def merge_generated_tracks(
    original: otio.schema.Timeline, result: otio.schema.Timeline
) -> otio.schema.Timeline:
    """The `original` timeline (exactly as the editor exported it) plus the generated tracks of
    `result`. The command line sends the daemon a copy with absolute media paths; this puts the
    new tracks back on the untouched original."""
    out = strip_generated(original)
    for track in result.tracks:
        if is_generated_track(track):
            out.tracks.append(track.deepcopy())
    return out


def _frames(x: float) -> int:
    """Hosts place on whole frames; mixed-rate media can end between two (the OTIO keeps the
    exact value)."""
    return round(x)


def build_output(
    original: otio.schema.Timeline,
    plan: TimelinePlan,
    generated: Mapping[int, GeneratedClip],
    *,
    stems: bool = False,
    resolve: bool = False,
) -> tuple[otio.schema.Timeline, list[dict]]:
    """The output timeline and the host placements for the jobs in `generated` (by job index).

    Placements are frames at the timeline rate from its first frame; `source_in` is where the
    clip's sound starts inside the WAV (the head handle). With `resolve`, media are bare paths
    and every range is in timeline frames, and only the active take is referenced (the others
    are listed in metadata), because Resolve's OTIO import wants that.
    """
    out = strip_generated(original)
    rate = plan.rate_value

    def rt(sec: Fraction) -> otio.opentime.RationalTime:
        return otio.opentime.RationalTime(plan.frames(sec), rate)

    groups: dict[str, list[GeneratedClip]] = {}
    for job in plan.jobs:
        if job.index in generated and generated[job.index].takes:
            key = job.prompt if stems else ""
            groups.setdefault(key, []).append(generated[job.index])
    if not groups:
        groups[""] = []
    crossfades = {(x.before, x.after): x for x in plan.crossfades}

    placements: list[dict] = []
    for track_no, (prompt, clips) in enumerate(groups.items(), start=1):
        name = TRACK_NAME if not stems else f"{TRACK_NAME} {prompt or '(no prompt)'}"[:80]
        track = otio.schema.Track(
            name=name,
            kind=otio.schema.TrackKind.Audio,
            metadata={"v2a": {"generated": True, "prompt": prompt if stems else None}},
        )
        cursor = Fraction(0)
        previous: ClipJob | None = None
        for made in sorted(clips, key=lambda g: g.job.record_start):
            job = made.job
            if job.record_start > cursor:
                track.append(
                    otio.schema.Gap(
                        source_range=otio.opentime.TimeRange(
                            rt(Fraction(0)),
                            otio.opentime.RationalTime(
                                plan.frames(job.record_start) - plan.frames(cursor), rate
                            ),
                        )
                    )
                )
            elif previous is not None and (previous.index, job.index) in crossfades:
                x = crossfades[(previous.index, job.index)]
                track.append(
                    otio.schema.Transition(
                        name=x.name,
                        transition_type=x.transition_type,
                        in_offset=rt(x.in_offset),
                        out_offset=rt(x.out_offset),
                    )
                )
            track.append(_audio_clip(made, plan, rt, resolve))
            for n, take in enumerate(made.takes, start=1):
                placements.append(
                    {
                        "file": take.file,
                        "track": track_no,
                        "record_start": _frames(plan.frames(job.record_start)),
                        "duration": _frames(plan.frames(job.record_end))
                        - _frames(plan.frames(job.record_start)),
                        "source_in": _frames(plan.frames(job.head)),
                        "clip": job.label,
                        "take": n,
                        "unfamiliar": take.unfamiliar,
                    }
                )
            cursor = job.record_end
            previous = job
        out.tracks.append(track)
    return out, placements


def _audio_clip(made: GeneratedClip, plan: TimelinePlan, rt, resolve: bool) -> otio.schema.Clip:
    job = made.job
    total = job.head + job.record_duration + job.tail
    if resolve:
        available = otio.opentime.TimeRange(rt(Fraction(0)), rt(total))
    else:
        available = otio.opentime.TimeRange(
            otio.opentime.RationalTime(0, OUTPUT_RATE),
            otio.opentime.RationalTime(job.num_samples, OUTPUT_RATE),
        )

    def reference(take: Take) -> otio.schema.ExternalReference:
        url = take.file if resolve else Path(take.file).as_uri()
        return otio.schema.ExternalReference(target_url=url, available_range=available)

    meta = dict(made.params)
    meta.update(
        {
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "seed": made.takes[0].seed,
            "takes": [{"file": t.file, "seed": t.seed, "unfamiliar": t.unfamiliar}
                      for t in made.takes],
            "video_clips": list(job.clip_names),
            "cached": made.cached,
        }
    )
    clip = otio.schema.Clip(
        name=(job.clip_names[0] if len(job.clip_names) == 1 else job.label) or "V2A",
        source_range=otio.opentime.TimeRange(rt(job.head), rt(job.record_duration)),
        metadata={"v2a": meta},
    )
    if len(made.takes) > 1 and not resolve:
        refs = {f"take{n}": reference(t) for n, t in enumerate(made.takes, start=1)}
        clip.set_media_references(refs, "take1")
    else:
        clip.media_reference = reference(made.takes[0])
    return clip
