"""`v2a preview`: the edited picture with the generated sound, as one MP4 a person can watch.

Picture: what the viewer sees (the planner's visible picture: top-most track, nested clips,
speed changes), frame by frame at the timeline rate; dissolves are shown as cuts and missing
media as black. Sound: every generated (`V2A`) audio track mixed, each clip at its record range
with its dissolves as linear crossfades. H.264 + AAC at 48 kHz in an MP4, written whole (an
earlier file of that name is replaced only by a complete preview).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import opentimelineio as otio
import soundfile as sf

from bridge.atomic_file import cannot_write, replacing
from bridge.planner import (
    PictureSpan,
    exact_rate,
    media_path,
    seconds,
    timeline_rate,
    visible_picture,
)
from bridge.timeline_output import is_generated_track
from daemon.engine import OUTPUT_RATE

AAC_FRAME = 1024


class PreviewError(Exception):
    """The preview cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class PreviewOptions:
    width: int = 640  # the height follows the first clip's aspect ratio
    crf: int = 23


def render_preview(
    timeline: otio.schema.Timeline, out_path: str | Path, options: PreviewOptions | None = None
) -> dict:
    """Write the MP4; returns {frames, seconds, audio_clips}."""
    options = options or PreviewOptions()
    rate = exact_rate(timeline_rate(timeline))
    spans = visible_picture(timeline)
    duration = seconds(timeline.tracks.duration())
    n_frames = int(duration * rate)
    if n_frames == 0:
        raise PreviewError("the timeline is empty; there is nothing to preview")
    width, height = _frame_size(spans, options.width)
    mix, audio_clips = mix_generated_audio(timeline, duration)
    if not audio_clips:
        raise PreviewError(
            "the timeline has no generated (V2A) audio track; run `v2a timeline` on it first"
        )
    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        # PyAV writes through our file object, so a failure of the file comes back as the
        # system's OSError, and PyAV's own errors (FFmpegError) stay those of the media it reads.
        with replacing(out_path) as (file, _), av.open(file, "w", format="mp4") as out:
            _encode(out, spans, n_frames, rate, (width, height), mix, options)
    except OSError as exc:
        if isinstance(exc, av.error.FFmpegError):
            raise
        raise PreviewError(cannot_write(out_path, exc)) from exc
    return {"frames": n_frames, "seconds": float(duration), "audio_clips": audio_clips}


def _encode(out, spans, n_frames: int, rate: Fraction, size: tuple[int, int], mix, options) -> None:
    width, height = size
    video = out.add_stream("libx264", rate=rate)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.options = {"crf": str(options.crf), "preset": "veryfast"}
    audio = out.add_stream("aac", rate=OUTPUT_RATE, layout="stereo")
    pictures = _Pictures(width, height)
    try:
        span_index = 0
        for k in range(n_frames):
            t = Fraction(k) / rate
            while span_index < len(spans) and spans[span_index].end <= t:
                span_index += 1
            span = spans[span_index] if span_index < len(spans) else None
            image = pictures.at(span, t)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = k
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    finally:
        pictures.close()
    for start in range(0, mix.shape[1], AAC_FRAME):
        chunk = np.ascontiguousarray(mix[:, start : start + AAC_FRAME])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = OUTPUT_RATE
        frame.pts = start
        for packet in audio.encode(frame):
            out.mux(packet)
    for packet in audio.encode():
        out.mux(packet)


def mix_generated_audio(timeline: otio.schema.Timeline, duration: Fraction) -> tuple[np.ndarray, int]:
    """(2, samples) float32 mix of the generated tracks, and how many clips went into it."""
    total = round(duration * OUTPUT_RATE)
    mix = np.zeros((2, total), np.float32)
    used = 0
    for track in timeline.tracks:
        if not is_generated_track(track):
            continue
        ranges = track.range_of_all_children()
        children = list(track)
        for i, item in enumerate(children):
            if not isinstance(item, otio.schema.Clip):
                continue
            before = children[i - 1] if i > 0 else None
            after = children[i + 1] if i + 1 < len(children) else None
            fade_in = before if isinstance(before, otio.schema.Transition) else None
            fade_out = after if isinstance(after, otio.schema.Transition) else None
            _add_clip(mix, item, ranges[item], fade_in, fade_out)
            used += 1
    np.clip(mix, -1.0, 1.0, out=mix)
    return mix, used


def _add_clip(mix, clip, placed, fade_in, fade_out) -> None:
    path = media_path(clip.media_reference.target_url)
    data, sr = sf.read(path, dtype="float32", always_2d=True)  # (n, channels)
    if sr != OUTPUT_RATE:
        raise PreviewError(f"{path} is {sr} Hz; generated audio is {OUTPUT_RATE} Hz")
    data = data.T
    if data.shape[0] == 1:
        data = np.repeat(data, 2, axis=0)
    data = data[:2]
    head = seconds(fade_in.in_offset) if fade_in else Fraction(0)
    tail = seconds(fade_out.out_offset) if fade_out else Fraction(0)
    src0 = round((seconds(clip.source_range.start_time) - head) * OUTPUT_RATE)
    rec0 = round((seconds(placed.start_time) - head) * OUTPUT_RATE)
    n = round((seconds(placed.duration) + head + tail) * OUTPUT_RATE)
    src0, rec0 = max(0, src0), max(0, rec0)
    n = min(n, data.shape[1] - src0, mix.shape[1] - rec0)
    if n <= 0:
        return
    piece = data[:, src0 : src0 + n].copy()
    gain = np.ones(n, np.float32)
    if fade_in is not None:
        length = round((seconds(fade_in.in_offset) + seconds(fade_in.out_offset)) * OUTPUT_RATE)
        length = min(length, n)
        gain[:length] *= np.linspace(0.0, 1.0, length, endpoint=False, dtype=np.float32)
    if fade_out is not None:
        length = round((seconds(fade_out.in_offset) + seconds(fade_out.out_offset)) * OUTPUT_RATE)
        length = min(length, n)
        gain[n - length :] *= np.linspace(1.0, 0.0, length, endpoint=False, dtype=np.float32)
    mix[:, rec0 : rec0 + n] += piece * gain


def _frame_size(spans: list[PictureSpan], width: int) -> tuple[int, int]:
    for span in spans:
        if span.segment is None or span.segment.image_rate is not None:
            continue
        try:
            with av.open(span.segment.media) as probe:
                stream = probe.streams.video[0]
                w, h = stream.codec_context.width, stream.codec_context.height
        except (av.error.FFmpegError, IndexError, OSError):
            continue
        if w and h:
            height = max(2, round(width * h / w / 2) * 2)
            return width - width % 2, height
    return width - width % 2, max(2, round(width * 9 / 16 / 2) * 2)


class _Pictures:
    """Frames of the edit's media at given media times; one open decoder per file, reading
    forward and seeking only for jumps (edits mostly play media forward)."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.black = np.zeros((height, width, 3), np.uint8)
        self._open: dict[str, _Reader] = {}

    def at(self, span: PictureSpan | None, t: Fraction) -> np.ndarray:
        if span is None or span.segment is None or not (span.start <= t < span.end):
            return self.black
        seg = span.segment
        media_t = seg.start + seg.speed * float(t - span.start)
        key = seg.media
        if key not in self._open:
            try:
                self._open[key] = _Reader(seg, self.width, self.height)
            except (av.error.FFmpegError, OSError):
                self._open[key] = None
        reader = self._open[key]
        if reader is None:
            return self.black
        image = reader.frame_at(media_t)
        return self.black if image is None else image

    def close(self) -> None:
        for reader in self._open.values():
            if reader is not None:
                reader.close()


class _Reader:
    def __init__(self, seg, width: int, height: int):
        options = {}
        if seg.image_rate is not None:
            options = {"framerate": str(seg.image_rate), "start_number": str(seg.start_number)}
            self.container = av.open(seg.media, format="image2", options=options)
        else:
            self.container = av.open(seg.media)
        self.stream = self.container.streams.video[0]
        self.width, self.height = width, height
        self._frames = None
        self._current = None  # (time, image)
        self._next = None

    def _restart(self, t: float) -> None:
        if self.stream.time_base is not None and t > 0:
            self.container.seek(int(max(0.0, t - 1.0) / self.stream.time_base), stream=self.stream)
        else:
            self.container.seek(0)
        self._frames = self.container.decode(self.stream)
        self._current = self._next = None

    def _pull(self):
        try:
            frame = next(self._frames)
        except (StopIteration, av.error.FFmpegError):
            return None
        image = frame.to_ndarray(width=self.width, height=self.height, format="rgb24")
        return (float(frame.time or 0.0), image)

    def frame_at(self, t: float) -> np.ndarray | None:
        """The frame showing at media time `t` (the last one starting at or before it)."""
        if self._frames is None or self._current is None or t < self._current[0] - 1e-6 or (
            t - self._current[0] > 2.0
        ):
            self._restart(t)
            self._current = self._pull()
            if self._current is None:
                return None
            self._next = self._pull()
        while self._next is not None and self._next[0] <= t + 1e-6:
            self._current, self._next = self._next, self._pull()
        return self._current[1]

    def close(self) -> None:
        self.container.close()
