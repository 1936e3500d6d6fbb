"""Reading picture (and sound) out of editors' media files, at reduced size, by seeking.

Everything PyAV's FFmpeg opens is readable: H.264/H.265 in MP4/MOV, ProRes, DNxHD/DNxHR, image
sequences through FFmpeg's image2 demuxer (a printf pattern such as ``shot.%04d.png`` with its
frame rate and first frame number). Only the frames a range needs are decoded: the container
seeks to the keyframe before the range and decodes forward from there.

Time is kept rational (`fractions.Fraction` seconds of media time, 0 = the file's first frame)
from the packet timestamps to the moment a frame is picked, so a 23.976 fps (24000/1001) source
lands on the same frames every time. Float seconds from the engine boundary are converted once.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from daemon.engine import MediaError, Segment

PICTURE_SIZE = (64, 36)
"""Width and height the visual front end looks at: small enough to cost nothing after decoding,
large enough for a 4x4 grid of 16x9-pixel cells (16:9 footage keeps its shape)."""

TIME_SLACK = Fraction(1, 1_000_000)
"""One microsecond: float seconds from the planner are rounded versions of rational frame times,
so "the frame shown at t" tolerates that much rounding rather than flipping to the previous
frame on an exact frame boundary."""

_SEEK_BACKOFF = (Fraction(0), Fraction(1), Fraction(5), None)  # seconds before start; None = file start

END_SLACK = Fraction(1, 2)
"""How far, in frames, a range may run past the last frame's end and still be read (that frame
held): a timeline's rounding, or a clip whose rate does not divide the file's, asks for a
little more than the file holds."""


@dataclass
class DecodedFrames:
    """Source frames of one media range, in display order.

    `times[j]` is frame j's presentation time in media seconds (rational); `images[j]` its
    picture at reduced size, (height, width, 3) uint8 RGB. The list starts with the frame before
    the one shown at the range's start (when the file has one) and holds every frame that
    starts by the range's end.
    """

    times: list[Fraction]
    images: np.ndarray  # (F, H, W, 3) uint8
    frame_duration: Fraction
    """Nominal duration of one frame (1 / frame rate), for the last frame's display end."""
    detail: np.ndarray | None = None
    """When asked for: each frame at twice the size, what the contact detector looks at: its
    luminance, (F, 2H, 2W) uint8, or RGB, (F, 2H, 2W, 3) (`detail` 1 or 3 planes)."""

    def shown_at(self, media_time: Fraction) -> int:
        """Index of the frame on screen at `media_time` (the last one that started by then)."""
        return max(0, bisect_right(self.times, media_time + TIME_SLACK) - 1)


def to_fraction(seconds: float | Fraction) -> Fraction:
    """Seconds from the engine boundary as an exact fraction (floats are binary-exact already;
    limiting the denominator recovers the rational frame time they were rounded from)."""
    if isinstance(seconds, Fraction):
        return seconds
    return Fraction(seconds).limit_denominator(10_000_000)


class FrameShrinker:
    """Scales frames to `size` RGB with FFmpeg's area-averaging scaler. One instance per run
    of frames: it keeps the scaler set up between frames (6x faster on small pictures than
    setting it up per frame; the same pixels)."""

    def __init__(self, size: tuple[int, int] = PICTURE_SIZE) -> None:
        self.size = size
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        """(height, width, 3) uint8 RGB of `frame` at `size`, turned as it is displayed."""
        width, height = self.size
        turns = _quarter_turns(frame)
        if turns % 2:
            width, height = height, width
        small = self._reformatter.reformat(
            frame, width=width, height=height, format="rgb24", interpolation="AREA", threads=1
        )
        return _turn(small.to_ndarray(), turns)

    def with_detail(self, frame: av.VideoFrame, planes: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The frame at `size` and at twice that size (its luminance for `planes` 1, RGB for
        3), from one scaling: the small picture is the 2x2 means of the large one (what the
        area scaler would give, to the rounding)."""
        width, height = self.size
        turns = _quarter_turns(frame)
        if turns % 2:
            width, height = height, width
        large = self._reformatter.reformat(
            frame, width=2 * width, height=2 * height, format="rgb24", interpolation="AREA", threads=1
        ).to_ndarray()
        large = _turn(large, turns)
        return halve(large), (large if planes == 3 else luminance(large))


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counterclockwise quarter turns that show `frame` upright: phones record portrait video
    as landscape pictures with a display matrix (side data) saying how to turn them."""
    try:
        rotation = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return round(rotation / 90) % 4 if rotation else 0


def _turn(image: np.ndarray, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


BT709 = np.array([0.2126, 0.7152, 0.0722], np.float32)
"""Luminance weights of R, G and B (ITU-R BT.709)."""


def luminance(image: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint8 luminance (BT.709 weights)."""
    return np.rint(image.astype(np.float32) @ BT709).astype(np.uint8)


def halve(images: np.ndarray) -> np.ndarray:
    """(..., 2H, 2W, C) uint8 -> (..., H, W, C) uint8: the rounded mean of each 2x2 block."""
    *lead, height, width, channels = images.shape
    blocks = images.reshape(*lead, height // 2, 2, width // 2, 2, channels).astype(np.uint16)
    return ((blocks.sum(axis=(-4, -2)) + 2) // 4).astype(np.uint8)


_FRAME_NUMBER = re.compile(r"(?<!%)%0?\d*d")  # printf's frame number: %d, %04d


def open_container(segment: Segment) -> av.container.InputContainer:
    """Open the segment's media with FFmpeg, or raise MediaError saying what to check.

    A segment with an `image_rate` is an image sequence: `media` is a printf pattern, where a
    literal ``%`` is written ``%%``. Without one, `media` is a file, whatever its name holds."""
    media = segment.media
    is_sequence = segment.image_rate is not None
    if is_sequence:
        if segment.image_rate <= 0:
            raise MediaError(f"image sequence {media!r} needs a frame rate above 0, not "
                             f"{segment.image_rate}")
        folder = os.path.dirname(media).replace("%%", "%") or "."
        if not os.path.isdir(folder):
            raise MediaError(f"image sequence folder {folder!r} does not exist; check the path")
    elif not os.path.isfile(media):
        if _FRAME_NUMBER.search(os.path.basename(media)):
            raise MediaError(
                f"{media!r} looks like an image sequence pattern but no frame rate came with it; "
                "pass the rate the sequence was shot or rendered at (image_rate)"
            )
        raise MediaError(f"media file {media!r} does not exist; relink the clip or check the path")
    options = {}
    if is_sequence:
        options = {"framerate": str(frame_rate(segment.image_rate))}
        if segment.start_number is not None:
            options["start_number"] = str(int(segment.start_number))
    try:
        return av.open(media, format="image2" if is_sequence else None, options=options)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"FFmpeg cannot open {media!r}: {exc}; is it a video file?") from exc


def frame_rate(rate: float | Fraction) -> Fraction:
    """Frame rates as editors mean them: 23.976 is 24000/1001, 29.97 is 30000/1001, 59.94 is
    60000/1001."""
    rate = Fraction(rate).limit_denominator(1001)
    for ntsc in (24, 30, 48, 60, 120):
        exact = Fraction(ntsc * 1000, 1001)
        if abs(rate - exact) < Fraction(1, 1000):
            return exact
    return rate


def _video_stream(container: av.container.InputContainer, media: str) -> av.video.VideoStream:
    if not container.streams.video:
        raise MediaError(f"{media!r} has no picture (no video stream); pick a video clip")
    stream = container.streams.video[0]
    # Frame threads: decoding 1080p H.264 is the wall time of the whole visual front end.
    stream.thread_type = "AUTO"
    # The picture is looked at 30x smaller than it is coded: the deblocking filter and exact
    # rounding are invisible there, and skipping them decodes H.264 ~25 % faster.
    stream.codec_context.options = {"skip_loop_filter": "all", "flags2": "+fast"}
    return stream


def _frame_duration(stream: av.video.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    if not rate:
        return Fraction(1, 25)
    return 1 / frame_rate(Fraction(rate))


class MediaReader:
    """Open media files, kept open for the length of one request: segments of the same file
    (a continuous soundtrack across cuts) open and probe it once. Use as a context manager."""

    def __init__(self) -> None:
        self._open: dict[tuple, tuple[av.container.InputContainer, av.video.VideoStream]] = {}

    def __enter__(self) -> MediaReader:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        for container, _ in self._open.values():
            container.close()
        self._open.clear()

    def is_still(self, segment: Segment) -> bool:
        """Whether `segment.media` is one still image (a PNG, JPEG, TIFF, EXR... file, not a
        sequence): it shows the same picture for as long as an edit holds it."""
        if segment.image_rate is not None:
            return False
        container, _ = self.video(segment)
        return container.format.name.endswith("_pipe") or container.format.name == "image2"

    def video(self, segment: Segment) -> tuple[av.container.InputContainer, av.video.VideoStream]:
        key = (segment.media, segment.image_rate, segment.start_number)
        if key not in self._open:
            container = open_container(segment)
            try:
                self._open[key] = (container, _video_stream(container, segment.media))
            except MediaError:
                container.close()
                raise
        return self._open[key]


def decode_range(
    segment: Segment,
    start: Fraction,
    end: Fraction,
    size: tuple[int, int] = PICTURE_SIZE,
    reader: MediaReader | None = None,
    detail: int = 0,
) -> DecodedFrames:
    """Decode the frames shown during media time [start, end] of `segment.media` at `size`
    (and, with `detail`, at twice that size too: its luminance for 1 or True, RGB for 3).

    Seeks to the keyframe before `start` and decodes forward; stops at the first frame that
    starts after `end`. Raises MediaError when the file is unreadable or the range lies outside
    the picture (more than one frame past the last frame). `reader` keeps files open between
    calls; without one the file is opened and closed here.
    """
    if start < 0:
        raise MediaError(
            f"range starts at {float(start):.3f} s, before the first frame of {segment.media!r}; "
            "trim the clip's start"
        )
    if reader is None:
        with MediaReader() as own:
            return decode_range(segment, start, end, size, own, detail)
    container, stream = reader.video(segment)
    try:
        frame_duration = _frame_duration(stream)
        for backoff in _SEEK_BACKOFF:
            frames = _decode_from_seek(
                container, stream, start, end, size, backoff, frame_duration, detail
            )
            # A seek can land after `start` (sparse index); then try again from further back,
            # unless this pass already decoded from the file's first frame.
            from_file_start = backoff is None or start - backoff - frame_duration <= 0
            if frames and (frames[0][0] < start - TIME_SLACK or from_file_start):
                break
    except av.FFmpegError as exc:
        missing = _missing_image(segment, start, end) if segment.image_rate is not None else None
        if missing is not None:
            raise MediaError(
                f"frame {missing!r} of the image sequence is missing (reading this range needs it "
                "or reads past it); restore or re-render the missing frames"
            ) from exc
        raise MediaError(
            f"FFmpeg failed decoding {segment.media!r}: {exc}; the file may be damaged or "
            "incomplete: copy or render it again"
        ) from exc
    if not frames or start >= frames[-1][0] + frame_duration:
        raise MediaError(
            f"no picture at {float(start):.3f} s in {segment.media!r}: the range is past the end "
            "of the file; check the clip's source range"
        )
    last_end = frames[-1][0] + frame_duration
    if end > last_end + END_SLACK * frame_duration:
        raise MediaError(
            f"range ends at {float(end):.6f} s but the picture of {segment.media!r} ends at "
            f"{float(last_end):.6f} s ({float((end - last_end) / frame_duration):.2f} frames "
            "short); shorten the clip or relink the full-length media"
        )
    times = [t for t, _ in frames]
    if detail:
        images = np.stack([small for _, (small, _) in frames])
        large = np.stack([twice for _, (_, twice) in frames])
        return DecodedFrames(times, images, frame_duration, detail=large)
    images = np.stack([image for _, image in frames])
    return DecodedFrames(times=times, images=images, frame_duration=frame_duration)


_READ_AHEAD = 33
"""Frames a decode may read past the range's end: the one that ends it and what frame threads
(one per core, and more) have in flight."""


def _missing_image(segment: Segment, start: Fraction, end: Fraction) -> str | None:
    """The first file missing from the image sequence's frames that reading [start, end]
    touches: the frames shown, the one before, and those the decoder reads ahead past the end
    (a hole there, not the sequence's end). None when there is none."""
    rate = frame_rate(segment.image_rate)
    first = segment.start_number
    if first is None:  # FFmpeg's image2 starts at the first of numbers 0..4 that exists
        first = next((n for n in range(5) if os.path.isfile(segment.media % n)), 0)
    shown = range(max(0, int(start * rate) - 1), int(end * rate) + 1)
    ahead = range(shown.stop, shown.stop + _READ_AHEAD)
    try:
        exists = {i: os.path.isfile(segment.media % (first + i)) for i in (*shown, *ahead)}
    except (TypeError, ValueError):  # not a pattern Python's % formats the way FFmpeg does
        return None
    for index, found in exists.items():
        if not found and (index in shown or any(exists[i] for i in ahead if i > index)):
            return segment.media % (first + index)
    return None


def _decode_from_seek(
    container: av.container.InputContainer,
    stream: av.video.VideoStream,
    start: Fraction,
    end: Fraction,
    size: tuple[int, int],
    backoff: Fraction | None,
    frame_duration: Fraction,
    detail: int = 0,
) -> list[tuple[Fraction, Any]]:
    time_base = Fraction(stream.time_base)
    origin = stream.start_time or 0
    target = 0 if backoff is None else max(0, start - backoff - frame_duration)
    if target > 0:
        container.seek(origin + int(target / time_base), stream=stream, backward=True)
    else:
        # The file's beginning, in FFmpeg's own time base: seeking a stream to its start_time
        # lands past the first keyframe in MPEG-TS.
        container.seek(0)
    shrinker = FrameShrinker(size)
    shrink = partial(shrinker.with_detail, planes=int(detail)) if detail else shrinker
    kept: list[tuple[Fraction, Any]] = []
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        t = (frame.pts - origin) * time_base
        if t > end + TIME_SLACK and kept:
            break
        # Only the frame shown at `start` and the one before it (so that a change exactly at
        # `start` can be measured) are kept of the frames up to `start`; the rest are dropped
        # before the costly conversion.
        if len(kept) == 2 and t <= start + TIME_SLACK:
            kept.pop(0)
        kept.append((t, shrink(frame)))
    return kept


def read_audio(path: str, start: float, end: float, rate: int = 16_000) -> np.ndarray:
    """Mono float32 audio of media time [start, end) at `rate` Hz, from any file FFmpeg opens.

    Exactly round((end - start) * rate) samples; silence pads what the file does not cover.
    Used for training on real footage (the file's own soundtrack is the target).
    """
    if not os.path.isfile(path):
        raise MediaError(f"media file {path!r} does not exist; check the path")
    count = round((end - start) * rate)
    out = np.zeros(count, np.float32)
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"FFmpeg cannot open {path!r}: {exc}") from exc
    try:
        if not container.streams.audio:
            raise MediaError(f"{path!r} has no sound (no audio stream)")
        stream = container.streams.audio[0]
        origin = stream.start_time or 0
        time_base = Fraction(stream.time_base)
        container.seek(origin + int(max(0.0, start - 1.0) / time_base), stream=stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        position = None  # sample index (at `rate`) of the next resampled sample
        for frame in container.decode(stream):
            if position is None:
                if frame.pts is None:
                    raise MediaError(f"{path!r} has audio without timestamps; remux it")
                position = round((frame.pts - origin) * time_base * rate)
            for piece in resampler.resample(frame):
                data = piece.to_ndarray().reshape(-1)
                _paste(out, data, position - round(start * rate))
                position += data.shape[0]
            if position - round(start * rate) >= count:
                break
    except av.FFmpegError as exc:
        raise MediaError(f"FFmpeg failed decoding audio of {path!r}: {exc}") from exc
    finally:
        container.close()
    return out


def _paste(out: np.ndarray, data: np.ndarray, offset: int) -> None:
    lo, hi = max(0, offset), min(out.shape[0], offset + data.shape[0])
    if hi > lo:
        out[lo:hi] = data[lo - offset : hi - offset]


def lossy_round_trip(samples: np.ndarray, rate: int, *, codec: str = "aac",
                     bit_rate: int = 128_000) -> np.ndarray:
    """(2, n) float32 stereo through a real lossy encoder and back, as a delivery would take it
    (used to check that the provenance watermark survives compression)."""
    import io

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="adts" if codec == "aac" else codec) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        stream.bit_rate = bit_rate
        for i in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]),
                                               format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as decoded:
        return np.concatenate([f.to_ndarray() for f in decoded.decode(audio=0)], axis=1)
