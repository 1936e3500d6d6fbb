"""The daemon's `generate_timeline` job: plan the edit, generate each clip, write the WAVs, and
return the timeline with its new audio tracks and the placements for hosts.

Runs on the worker thread (see `daemon.jobs.JobContext`). A clip that cannot be generated
(missing media, unreadable picture) goes into `failed`; every other clip is still generated.
Incremental re-runs: each take is keyed by what made it (media content fingerprint, range,
speed, prompts, seed, steps, cfg, model and weights hash); a key already known comes from the
WAV already in `media_dir` or from the daemon's keyed cache without touching the engine.
Files are written whole (temporary name, then rename) so a cancel never leaves half a WAV.
A media_dir that refuses a file (disk full, read-only, no permission, path too long) ends the job
with `output_error`; the clips delivered before it stay there, and the message names them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio

from bridge.atomic_file import renamed_into_place
from bridge.planner import (
    ClipJob,
    PlanOptions,
    TimelineError,
    parse_timeline_json,
    plan_timeline,
    seconds,
)
from bridge.timeline_output import GeneratedClip, Take, build_output
from daemon.engine import RESULT_REVISION, Cancelled, ClipRequest, MediaError, Segment
from daemon.jobs import JobFailed
from daemon.security import SecurityError, safe_filename, safe_join
from daemon.wav import audio_wav_bytes, file_is_unfamiliar, is_unfamiliar

CACHE_VERSION = 1
BATCH_LIMIT = 8
"""Most equal-length requests handed to the engine at once on a GPU."""
_FINGERPRINT_BYTES = 64 * 1024
_NAMED_CLIPS = 8
"""Most clips an `output_error` names (their clip_done events name them all)."""


@dataclass
class _Work:
    """One take of one clip still to be delivered."""

    job: ClipJob
    take: int
    request: ClipRequest
    key: str
    path: Path


@dataclass
class _ClipState:
    job: ClipJob
    takes: dict[int, Take] = field(default_factory=dict)
    cached: bool = True
    failed: bool = False
    delivered: bool = False
    """Every take is in media_dir and its clip_done was sent."""


def run_generate_timeline(ctx) -> dict:
    """The `generate_timeline` job: returns the result body (otio, placements, rate, failed,
    clips) after sending `progress` and `clip_done` events through `ctx`."""
    req = ctx.request
    try:
        timeline = parse_timeline_json(req.otio)
        plan = plan_timeline(
            timeline,
            PlanOptions(
                prompt=req.prompt,
                negative_prompt=req.negative_prompt,
                mode=req.mode,
                track=req.track,
            ),
            media_check=check_media,
            media_probe=_Probe(),
        )
    except TimelineError as exc:
        raise JobFailed("invalid_request", str(exc)) from exc
    media_dir = Path(req.media_dir)
    try:
        media_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JobFailed(
            "output_error",
            f"the media folder {media_dir} cannot be created ({exc.strerror or exc}); "
            f"{_output_advice(exc)}",
        ) from exc

    count = len(plan.jobs)
    failed: list[dict] = []
    states: dict[int, _ClipState] = {}
    work = _takes_to_deliver(ctx, plan, media_dir, states, failed)
    pending = _deliver_known(ctx, work, states, count)
    for group in _batches(pending, on_gpu=ctx.engine.device.startswith("cuda")):
        ctx.check_cancelled()
        _generate(ctx, group, states, failed, count)

    generated = {
        i: GeneratedClip(
            job=s.job,
            takes=[s.takes[t] for t in sorted(s.takes)],
            params={
                "steps": req.steps,
                "cfg": req.cfg,
                "model": ctx.engine.name,
                "weights_hash": ctx.engine.weights_hash,
                "mode": req.mode,
            },
            cached=s.cached,
        )
        for i, s in states.items()
        if not s.failed and len(s.takes) == req.takes
    }
    out, placements = build_output(
        timeline, plan, generated, stems=req.stems, resolve=req.resolve
    )
    return {
        "otio": otio.adapters.write_to_string(out, "otio_json"),
        "placements": placements,
        "rate": float(plan.rate_value),
        "failed": failed,
        "clips": count,
    }


def _takes_to_deliver(ctx, plan, media_dir: Path, states, failed) -> list[_Work]:
    """Every take of every clip that can be made, keyed and named; clips whose media cannot
    be fingerprinted go to `failed`."""
    req = ctx.request
    fingerprints = _Fingerprints()
    work: list[_Work] = []
    for job in plan.jobs:
        if job.error:
            failed.append({"clip": job.label, "code": job.error[0], "message": job.error[1]})
            continue
        try:
            media_key = [fingerprints.of(s) for s in job.segments]
        except MediaError as exc:
            failed.append({"clip": job.label, "code": "media_error", "message": str(exc)})
            continue
        states[job.index] = _ClipState(job)
        stem = safe_filename(job.clip_names[0] if len(job.clip_names) == 1 else job.label)
        for take in range(req.takes):
            request = ClipRequest(
                segments=job.segments,
                prompt=job.prompt,
                negative_prompt=job.negative_prompt,
                seed=req.seed + take,
                steps=req.steps,
                cfg=req.cfg,
            )
            key = _cache_key(ctx.engine, request, media_key)
            try:
                path = safe_join(media_dir, f"{stem[:80]}.{key[:12]}.wav")
            except SecurityError as exc:  # safe_filename prevents it; say so if it happens
                raise JobFailed("invalid_request", str(exc), job.label) from exc
            work.append(_Work(job, take, request, key, path))
    return work


def check_media(media: str, start_number: int | None) -> str | None:
    """None when the daemon can read `media` (a file, or an image sequence's first frame)."""
    path = media % start_number if start_number is not None else media
    if not os.path.exists(path):
        what = "image sequence frame" if start_number is not None else "media file"
        return f"{what} not found: {path}; relink the clip or check the path on the daemon's machine"
    if not os.path.isfile(path):
        return f"media is not a file: {path}"
    if not os.access(path, os.R_OK):
        return f"media file cannot be read (permissions): {path}"
    return None


class _Probe:
    """Start timecode and duration of movie files (PyAV), for references without an
    available_range; one look per file per job."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[Fraction, Fraction | None] | None] = {}

    def __call__(self, path: str):
        if path not in self._known:
            self._known[path] = probe_movie(path)
        return self._known[path]


def probe_movie(path: str) -> tuple[Fraction, Fraction | None] | None:
    """(start timecode, duration) in seconds, from the video stream's (or a tmcd track's)
    `timecode` tag at the stream's frame rate; None when the file cannot be opened."""
    import av

    try:
        with av.open(path) as container:
            video = container.streams.video[0]
            rate = video.average_rate or video.guessed_rate
            tags = [video.metadata, *(s.metadata for s in container.streams), container.metadata]
            timecode = next((t["timecode"] for t in tags if t.get("timecode")), None)
            duration = None
            if video.duration is not None and video.time_base is not None:
                duration = Fraction(video.duration) * video.time_base
            elif container.duration is not None:
                duration = Fraction(container.duration, 1_000_000)
    except (av.error.FFmpegError, IndexError, OSError):
        return None
    origin = Fraction(0)
    if timecode and rate:
        try:
            frames = otio.opentime.from_timecode(timecode, float(rate))
            origin = seconds(frames)
        except ValueError:
            origin = Fraction(0)
    return origin, duration


def _deliver_known(ctx, work: list[_Work], states, count) -> list[_Work]:
    """Takes whose key is already known: the WAV is in media_dir, or the daemon's cache holds
    it (written out now). Returns the takes that still need the engine."""
    pending = []
    for w in work:
        if _in_media_dir(ctx, w, states, count):
            _take_done(ctx, w, states, count, cached=True, unfamiliar=_written_unfamiliar(ctx, w))
            continue
        data = ctx.store.get_blob(w.key)
        if data is not None:
            _write_take(ctx, w, data, states, count)
            _take_done(ctx, w, states, count, cached=True, unfamiliar=is_unfamiliar(data))
            continue
        pending.append(w)
    return pending


def _batches(pending: list[_Work], on_gpu: bool) -> list[list[_Work]]:
    """On a GPU, equal-length requests go to the engine together; elsewhere one at a time."""
    if not on_gpu:
        return [[w] for w in pending]
    by_length: dict[tuple, list[_Work]] = {}
    for w in pending:
        shape = (w.request.num_samples, len(w.request.segments))
        by_length.setdefault(shape, []).append(w)
    groups = []
    for same in by_length.values():
        groups += [same[i : i + BATCH_LIMIT] for i in range(0, len(same), BATCH_LIMIT)]
    groups.sort(key=lambda g: (g[0].job.index, g[0].take))
    return groups


def _generate(ctx, group: list[_Work], states, failed, count) -> None:
    first = group[0]
    where = {"clip": first.job.label, "clip_index": first.job.index, "clip_count": count}
    try:
        if len(group) == 1:
            audios = [ctx.generate_audio(first.request, **where)]
        else:
            audios = ctx.generate_audio_batch([w.request for w in group], **where)
    except (Cancelled, JobFailed):
        raise
    except MediaError as exc:
        if len(group) > 1:  # find which clip it was: one by one
            for w in group:
                _generate(ctx, [w], states, failed, count)
            return
        _clip_failed(states, failed, first.job, "media_error", str(exc))
        return
    except Exception as exc:  # an engine failure on one clip must not lose the others
        ctx.log.exception("engine failed on %s", first.job.label)
        for w in group:
            _clip_failed(states, failed, w.job, "engine_error", f"{type(exc).__name__}: {exc}")
        return
    for w, audio in zip(group, audios, strict=True):
        ctx.progress("writing", 0, 1, clip=w.job.label, clip_index=w.job.index, clip_count=count)
        data = audio_wav_bytes(
            audio,
            model=ctx.engine.name,
            seed=w.request.seed,
            extra={"clip": w.job.label, "prompt": w.request.prompt},
        )
        ctx.store.put_blob(w.key, data)  # first: a take media_dir refuses is not made again
        _write_take(ctx, w, data, states, count)
        _take_done(ctx, w, states, count, cached=False, unfamiliar=audio.unfamiliar)


def _clip_failed(states, failed, job: ClipJob, code: str, message: str) -> None:
    state = states[job.index]
    if not state.failed:
        state.failed = True
        failed.append({"clip": job.label, "code": code, "message": message})


def _take_done(ctx, w: _Work, states, count, *, cached: bool, unfamiliar: bool) -> None:
    state = states[w.job.index]
    state.takes[w.take] = Take(file=str(w.path), seed=w.request.seed, unfamiliar=unfamiliar)
    state.cached = state.cached and cached
    if len(state.takes) == ctx.request.takes and not state.failed:
        state.delivered = True
        ctx.progress("writing", 1, 1, clip=w.job.label, clip_index=w.job.index, clip_count=count)
        ctx.emit(
            "clip_done",
            {
                "clip": w.job.label,
                "index": w.job.index,
                "count": count,
                "files": [state.takes[t].file for t in sorted(state.takes)],
                "cached": state.cached,
                "unfamiliar": any(t.unfamiliar for t in state.takes.values()),
            },
        )


def _in_media_dir(ctx, w: _Work, states, count) -> bool:
    """Whether an earlier run already wrote this take into media_dir."""
    try:
        return w.path.is_file() and w.path.stat().st_size > 44
    except OSError as exc:  # a path too long for the file system, a folder it cannot read
        raise _output_failed(ctx, w, exc, states, count) from exc


def _written_unfamiliar(ctx, w: _Work) -> bool:
    """Whether a take an earlier run wrote into media_dir carries the unfamiliar note. A file
    that cannot be read here is not refused for it (the host may still read it): logged."""
    try:
        return file_is_unfamiliar(w.path)
    except OSError as exc:
        ctx.log.warning("cannot read %s to see whether its sound is to be trusted: %s", w.path, exc)
        return False


def _write_take(ctx, w: _Work, data: bytes, states, count) -> None:
    try:
        with renamed_into_place(w.path) as (out, _):  # readable by the editor's host
            out.write(data)
    except OSError as exc:
        raise _output_failed(ctx, w, exc, states, count) from exc


def _output_failed(ctx, w: _Work, exc: OSError, states, count) -> JobFailed:
    """The job's error when media_dir refuses a take: the folder, the reason, what to do, and
    the clips delivered before it, which stay there (a run in that folder reuses them)."""
    written = [s.job.label for s in states.values() if s.delivered]
    if written:
        named = ", ".join(written[:_NAMED_CLIPS])
        if len(written) > _NAMED_CLIPS:
            named += f" and {len(written) - _NAMED_CLIPS} more"
        kept = (
            f"{len(written)} of {count} clips were written there before it and stay (their "
            "clip_done events name the files; running the job again in that folder reuses "
            f"them): {named}"
        )
    else:
        kept = "no clip was written before it"
    return JobFailed(
        "output_error",
        f"could not write the sound of {w.job.label} into the media folder "
        f"{ctx.request.media_dir} ({exc.strerror or exc}); {_output_advice(exc)}. {kept}",
        w.job.label,
    )


def _output_advice(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space on its disk or choose another media folder"
    if exc.errno == errno.ENAMETOOLONG:
        return "choose a media folder with a shorter path"
    return "choose a media folder the daemon can write to"


def _cache_key(engine, request: ClipRequest, media_key: list[str]) -> str:
    """Everything that decides the sound, and nothing else (not the file's path or name)."""
    what = {
        "v": CACHE_VERSION,
        "revision": RESULT_REVISION,
        "model": engine.name,
        "weights": engine.weights_hash,
        "picture": [
            [m, round(s.start, 6), round(s.duration, 6), round(s.speed, 6), s.image_rate, s.start_number]
            for m, s in zip(media_key, request.segments, strict=True)
        ],
        "samples": request.num_samples,
        "prompt": request.prompt,
        "negative": request.negative_prompt,
        "seed": request.seed,
        "steps": request.steps,
        "cfg": round(request.cfg, 6),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


class _Fingerprints:
    """Content fingerprints of media files (size, mtime, head and tail bytes), per job."""

    def __init__(self) -> None:
        self._known: dict[tuple, str] = {}

    def of(self, segment: Segment) -> str:
        if segment.image_rate is not None:
            return self._sequence(segment)
        return self._file(segment.media)

    def _file(self, path: str) -> str:
        if path in self._known:
            return self._known[path]
        try:
            st = os.stat(path)
            digest = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
            with open(path, "rb") as f:
                digest.update(f.read(_FINGERPRINT_BYTES))
                if st.st_size > 2 * _FINGERPRINT_BYTES:
                    f.seek(-_FINGERPRINT_BYTES, os.SEEK_END)
                    digest.update(f.read(_FINGERPRINT_BYTES))
        except FileNotFoundError as exc:
            raise MediaError(
                f"media file not found: {path}; relink the clip or check the path on the "
                "daemon's machine"
            ) from exc
        except OSError as exc:
            raise MediaError(f"media file cannot be read: {path} ({exc.strerror})") from exc
        if not os.path.isfile(path):
            raise MediaError(f"media is not a file: {path}")
        self._known[path] = digest.hexdigest()
        return self._known[path]

    def _sequence(self, segment: Segment) -> str:
        """The frames the segment shows: their sizes and times, and the first one's bytes."""
        rate = segment.image_rate
        first = segment.start_number + int(min(segment.start, segment.media_end) * rate)
        last = segment.start_number + int(max(segment.start, segment.media_end) * rate)
        digest = hashlib.sha256()
        found = 0
        for number in range(first, last + 1):
            frame = segment.media % number
            try:
                st = os.stat(frame)
            except OSError:
                continue
            found += 1
            digest.update(f"{number}:{st.st_size}:{st.st_mtime_ns}".encode())
        if not found:
            raise MediaError(
                f"image sequence {segment.media} has no frames {first}..{last}; relink the clip"
            )
        if os.path.exists(segment.media % first):
            digest.update(self._file(segment.media % first).encode())
        return digest.hexdigest()
