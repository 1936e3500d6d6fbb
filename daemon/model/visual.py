"""The visual front end: picture -> the two visual token streams the network is conditioned on.

The network takes a semantic stream ("clip", 8 fps: what is on screen) and a sync stream
(25 fps in whole segments of 8 frames: when things change). A `VisualEncoder` turns a request's
picture (segments of media, or frames in memory) into both.

The default, `MotionFeatures`, is weight-free at its core. It decodes the range at 64x36
pixels and describes every output frame with hand-built measurements that mean the same thing
on any footage: motion energy on a 4x4 grid, global frame and histogram differences (cuts,
flashes), the sign of luminance change, a coarse optical flow, colour/luminance statistics and
edge energy; the clip stream adds slower summaries over one second. All of it is normalised
with fixed constants (never per-clip statistics, which would leak the clip into its own
scale). Weights trained with them can add a small learned contact detector (`daemon.model.events`):
its per-frame contact probabilities follow the 64 sync channels. It looks at the luminance at
twice the size (128x72); the range is then scaled once to that size and the 64x36 picture is
its 2x2 means. `default_visual` picks what a network's weights were trained with.

Timing. Output instant k of a stream at rate r is t_k = k / r seconds of output time. The
appearance features of frame k describe the source frame being shown at t_k (picked by
presentation time, exact rational arithmetic, through the segment's speed mapping). Change
features (motion, differences, flow) are events: each time the shown source frame changes, at
output time tau, the change is credited to the output frame floor(tau * r) that contains it, so
a one-frame flash in a 50 fps source still lands in the 25 fps frame where it happens. A cut
between two segments is such a change at the cut. Frames past the request's end (the sync
stream rounds up to whole segments of 8) hold the last picture with no motion.

Published encoders plug in behind the same interface without changes elsewhere: an
`open_clip` ViT-H-14 encoder would set clip_rate 8, clip_dim 1024 and embed the frames
`Picture.frames_at(8, n)` of a picture decoded at 224x224 (``Picture.from_segments(segments,
size=(224, 224))``); Synchformer would take `Picture.frames_at(25, n)`, run its 16-frame windows
with stride 8 and emit 8 features per window: sync_dim 768 at 24 tokens/s (192 per 8 s, the
published sync_seq_len), so its sync_rate is 24. The engine only reads the rates and dimensions
from the encoder and checks them against the network's config. They are not implemented here:
no weights can be downloaded.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import av
import numpy as np
import torch

from daemon.engine import MediaError, Segment
from daemon.media import (
    BT709,
    PICTURE_SIZE,
    TIME_SLACK,
    DecodedFrames,
    FrameShrinker,
    MediaReader,
    decode_range,
    frame_rate,
    halve,
    luminance,
    to_fraction,
)

if TYPE_CHECKING:
    from daemon.model.events import EventDetector

log = logging.getLogger(__name__)

SYNC_SEGMENT = 8
"""The sync stream comes in segments of 8 frames (Synchformer's output layout)."""


@dataclass(frozen=True)
class VisualFeatures:
    """Both visual streams of one picture: clip (Nc, clip_dim), sync (Ns, sync_dim), float32."""

    clip: torch.Tensor
    sync: torch.Tensor


def stream_lengths(
    duration: float | Fraction, clip_rate: Fraction, sync_rate: Fraction
) -> tuple[int, int]:
    """Token counts for `duration` seconds, as NetworkConfig.seq_lens_for counts them: the
    clip stream rounded to the nearest frame, the sync stream's frames that start before the
    end rounded up to whole segments of 8."""
    duration = to_fraction(duration)
    clip_count = max(1, round(duration * clip_rate))
    sync_frames = max(1, math.ceil(duration * sync_rate - TIME_SLACK))
    return clip_count, SYNC_SEGMENT * math.ceil(sync_frames / SYNC_SEGMENT)


@runtime_checkable
class VisualEncoder(Protocol):
    """Turns picture into (clip, sync) feature streams at fixed rates and widths."""

    name: str
    clip_rate: Fraction
    sync_rate: Fraction
    clip_dim: int
    sync_dim: int

    def encode_segments(self, segments: Sequence[Segment]) -> VisualFeatures:
        """Features of the segments played back to back (output order); raises MediaError."""

    def encode_frames(self, frames: np.ndarray, fps: float | Fraction) -> VisualFeatures:
        """Features of in-memory frames (F, H, W, 3) uint8 RGB shown at `fps` from t = 0."""


# ---------------------------------------------------------------------------------------------
# The picture over output time


@dataclass
class _Piece:
    offset: Fraction  # output time at which this segment starts
    duration: Fraction
    start: Fraction  # media time shown at `offset`
    speed: Fraction
    first: int  # index of this piece's first frame in Picture.images
    frames: DecodedFrames


class Picture:
    """What the viewer sees over output time: segments back to back, frames by presentation
    time. Holds the decoded source frames at reduced size and answers "which frame is on screen
    at output time t" and "when does the shown frame change"."""

    def __init__(self, pieces: list[_Piece], images: np.ndarray, detail: np.ndarray | None = None) -> None:
        self.pieces = pieces
        self.images = images  # (F, H, W, 3) uint8, all pieces' frames concatenated
        self.detail = detail  # the same frames at (2H, 2W), uint8, when asked for: `DecodedFrames`
        self.duration = sum((p.duration for p in pieces), Fraction(0))

    @classmethod
    def from_segments(
        cls, segments: Sequence[Segment], size: tuple[int, int] = PICTURE_SIZE, detail: int = 0
    ) -> Picture:
        """The segments' picture at `size`; with `detail`, also at twice the size (one scaling
        makes both): its luminance for 1 or True, RGB for 3 (what the contact detector reads)."""
        if not segments:
            raise MediaError("a request needs at least one segment of picture")
        pieces, offset, first = [], Fraction(0), 0
        with MediaReader() as reader:
            for segment in segments:
                piece = cls._decode_piece(segment, offset, first, size, reader, detail)
                pieces.append(piece)
                offset += piece.duration
                first += len(piece.frames.times)
        images = np.concatenate([piece.frames.images for piece in pieces])
        large = np.concatenate([piece.frames.detail for piece in pieces]) if detail else None
        return cls(pieces, images, large)

    @staticmethod
    def _decode_piece(
        segment: Segment, offset: Fraction, first: int, size: tuple[int, int], reader: MediaReader,
        detail: int,
    ) -> _Piece:

        if segment.duration <= 0:
            raise MediaError(
                f"segment of {segment.media!r} has duration {segment.duration}; give a "
                "positive duration"
            )
        start = to_fraction(segment.start)
        duration = to_fraction(segment.duration)
        speed = to_fraction(segment.speed)
        if reader.is_still(segment):
            # A photo or title card cut in for a while: its one picture, held (editors give
            # stills any source range; a still image file has a single frame at time 0).
            start, speed = Fraction(0), Fraction(0)
        end = start + speed * duration
        frames = decode_range(segment, min(start, end), max(start, end), size, reader, detail)
        return _Piece(offset, duration, start, speed, first, frames)

    @classmethod
    def from_frames(
        cls, frames: np.ndarray, fps: float | Fraction, size: tuple[int, int] = PICTURE_SIZE,
        detail: int = 0,
    ) -> Picture:
        """Frames in memory (F, H, W, 3) uint8, shown at `fps` from media time 0 (made small
        and detailed as `from_segments` makes them)."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise MediaError(f"frames must be (F, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
        rate = fps if isinstance(fps, Fraction) else frame_rate(fps)
        large = None
        if detail:
            twice = (2 * size[0], 2 * size[1])
            shrink = FrameShrinker(twice)
            rgb = np.stack([_shrink(image, twice, shrink) for image in frames])
            small, large = halve(rgb), (rgb if detail == 3 else luminance(rgb))
        else:
            shrink = FrameShrinker(size)
            small = np.stack([_shrink(image, size, shrink) for image in frames])
        times = [Fraction(j) / rate for j in range(len(frames))]
        decoded = DecodedFrames(times=times, images=small, frame_duration=1 / rate, detail=large)
        duration = Fraction(len(frames)) / rate
        return cls([_Piece(Fraction(0), duration, Fraction(0), Fraction(1), 0, decoded)], small, large)

    def _piece_at(self, t: Fraction) -> _Piece:
        for piece in self.pieces:
            if t < piece.offset + piece.duration - TIME_SLACK:
                return piece
        return self.pieces[-1]

    def shown_at(self, t: Fraction) -> int:
        """Index into `images` of the frame on screen at output time t (the last picture
        holds past the end)."""
        piece = self._piece_at(t)
        if t - piece.offset < piece.duration:
            return piece.first + piece.frames.shown_at(piece.start + piece.speed * (t - piece.offset))
        return self._last_shown(piece)

    @staticmethod
    def _last_shown(piece: _Piece) -> int:
        """The frame on screen just before the piece ends (not the one that would start at
        its end)."""
        end = piece.start + piece.speed * piece.duration
        step = 2 * TIME_SLACK * (1 if piece.speed > 0 else -1 if piece.speed < 0 else 0)
        return piece.first + piece.frames.shown_at(end - step)

    def frames_at(self, rate: Fraction, count: int) -> np.ndarray:
        """Indices of the frames on screen at output instants k / rate, k < count."""
        return np.array([self.shown_at(Fraction(k) / rate) for k in range(count)], dtype=np.int64)

    def changes(self) -> list[tuple[Fraction, int, int]]:
        """Every change of the shown frame: (output time, frame before, frame after), in time
        order, including cuts between segments."""
        events: list[tuple[Fraction, int, int]] = []
        previous_last = None
        for piece in self.pieces:
            times = piece.frames.times
            first_shown = piece.first + piece.frames.shown_at(piece.start)
            if previous_last is not None and previous_last != first_shown:
                events.append((piece.offset, previous_last, first_shown))
            if piece.speed != 0:
                end = piece.start + piece.speed * piece.duration
                lo, hi = min(piece.start, end), max(piece.start, end)
                # A change exactly at the segment's first instant belongs to it, except after
                # a cut, where the cut itself is the change.
                first_counts = previous_last is None
                for j in range(1, len(times)):
                    if piece.speed > 0:
                        inside = lo - TIME_SLACK <= times[j] < hi - TIME_SLACK
                        at_start = times[j] <= lo + TIME_SLACK
                    else:
                        inside = lo + TIME_SLACK < times[j] <= hi + TIME_SLACK
                        at_start = times[j] >= hi - TIME_SLACK
                    if not inside or (at_start and not first_counts):
                        continue
                    tau = piece.offset + (times[j] - piece.start) / piece.speed
                    before, after = piece.first + j - 1, piece.first + j
                    if piece.speed < 0:
                        before, after = after, before
                    events.append((tau, before, after))
            previous_last = self._last_shown(piece)
        events.sort(key=lambda e: e[0])
        return events


def _shrink(image: np.ndarray, size: tuple[int, int], shrink: FrameShrinker) -> np.ndarray:
    """Resize with the same FFmpeg scaler the decoder path uses, so in-memory frames and
    decoded files give the same features."""
    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    return shrink(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))


# ---------------------------------------------------------------------------------------------
# Weight-free measurements

GRID = 4

SYNC_LAYOUT = {
    # appearance of the frame on screen at the instant
    "luma_grid": slice(0, 16),
    "chroma_u": slice(16, 20),
    "chroma_v": slice(20, 24),
    "luma_mean": slice(24, 25),
    "luma_spread": slice(25, 26),
    "rgb_mean": slice(26, 29),
    "edge_quadrants": slice(29, 33),
    "edge_x": slice(33, 34),
    "edge_y": slice(34, 35),
    # changes of picture during the frame
    "motion_grid": slice(35, 51),
    "difference": slice(51, 52),
    "histogram_change": slice(52, 53),
    "luma_change": slice(53, 54),
    "flow": slice(54, 56),
    "flow_quadrants": slice(56, 64),
}
"""Which columns of a sync feature vector hold what (names for tests and for reading)."""

CLIP_LAYOUT = {
    **{k: v for k, v in SYNC_LAYOUT.items() if v.stop <= 35},
    "motion_quadrants": slice(35, 39),
    "difference": slice(39, 40),
    "histogram_change": slice(40, 41),
    "luma_change": slice(41, 42),
    "flow": slice(42, 44),
    "motion_grid_1s": slice(44, 60),
    "difference_1s": slice(60, 61),
    "histogram_change_1s": slice(61, 62),
    "flow_1s": slice(62, 64),
}
# Fixed normalisation constants (typical scales on real footage and the procedural world).
LUMA_CENTRE, LUMA_SCALE = 0.45, 0.25
CHROMA_SCALE = 0.1
SPREAD_CENTRE, SPREAD_SCALE = 0.2, 0.1
EDGE_SCALE = 0.02
MOTION_SCALE = 0.01  # mean absolute luminance change of a small movement
FLOW_SCALE = 2.0  # pixels (at 64 px width) per output frame
LIMIT = 8.0


def _luma(images: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (F, H, W) float32 luminance in [0, 1] (BT.709 weights)."""
    rgb = images.astype(np.float32) / 255.0
    return rgb @ BT709


def _grid_mean(x: np.ndarray, n: int) -> np.ndarray:
    """(F, H, W) -> (F, n*n) means over an n x n grid of cells."""
    f, h, w = x.shape
    hs, ws = h // n, w // n
    x = x[:, : hs * n, : ws * n].reshape(f, n, hs, n, ws)
    return x.mean(axis=(2, 4)).reshape(f, n * n)


def _log_energy(x: np.ndarray, scale: float) -> np.ndarray:
    return np.log1p(np.maximum(x, 0.0) / scale)


def _signed_log(x: np.ndarray, scale: float) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x) / scale)


def _appearance(images: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (F, 35) normalised appearance of each frame."""
    rgb = images.astype(np.float32) / 255.0
    y = _luma(images)
    u = rgb[..., 2] - y
    v = rgb[..., 0] - y
    gx = np.abs(np.diff(y, axis=2))[:, :-1, :]
    gy = np.abs(np.diff(y, axis=1))[:, :, :-1]
    edges = gx + gy
    parts = [
        (_grid_mean(y, GRID) - LUMA_CENTRE) / LUMA_SCALE,  # 16
        _grid_mean(u, 2) / CHROMA_SCALE,  # 4
        _grid_mean(v, 2) / CHROMA_SCALE,  # 4
        ((y.mean(axis=(1, 2)) - LUMA_CENTRE) / LUMA_SCALE)[:, None],  # 1
        ((y.std(axis=(1, 2)) - SPREAD_CENTRE) / SPREAD_SCALE)[:, None],  # 1
        (rgb.mean(axis=(1, 2)) - LUMA_CENTRE) / LUMA_SCALE,  # 3
        _log_energy(_grid_mean(edges, 2), EDGE_SCALE) - 1.0,  # 4
        _log_energy(gx.mean(axis=(1, 2)), EDGE_SCALE)[:, None] - 1.0,  # 1
        _log_energy(gy.mean(axis=(1, 2)), EDGE_SCALE)[:, None] - 1.0,  # 1
    ]
    return np.concatenate(parts, axis=1)


def _histogram(y: np.ndarray, bins: int = 16) -> np.ndarray:
    """(F, H, W) -> (F, bins) luminance histograms summing to 1."""
    index = np.clip((y * bins).astype(np.int64), 0, bins - 1).reshape(y.shape[0], -1)
    counts = np.stack([np.bincount(row, minlength=bins) for row in index])
    return counts / index.shape[1]


def _flow(before: np.ndarray, after: np.ndarray, n: int) -> np.ndarray:
    """Coarse optical flow (Lucas-Kanade over each cell of an n x n grid): (E, H, W) pairs ->
    (E, n*n, 2) displacement in pixels (x right, y down)."""
    mean = 0.5 * (before + after)
    ix = np.gradient(mean, axis=2)
    iy = np.gradient(mean, axis=1)
    it = after - before
    sxx, syy, sxy = _grid_mean(ix * ix, n), _grid_mean(iy * iy, n), _grid_mean(ix * iy, n)
    sxt, syt = _grid_mean(ix * it, n), _grid_mean(iy * it, n)
    # Regularised so flat cells (no texture) report no motion instead of noise.
    reg = 1e-4
    a, b, d = sxx + reg, sxy, syy + reg
    det = a * d - b * b
    vx = -(d * sxt - b * syt) / det
    vy = -(a * syt - b * sxt) / det
    return np.clip(np.stack([vx, vy], axis=-1), -8.0, 8.0)


def _in_chunks(measure, count: int, chunk: int = 1024) -> np.ndarray | dict:
    """measure(slice) over [0, count) in chunks, results joined: frames are turned into float
    a chunk at a time, so memory stays bounded on long clips."""
    parts = [measure(slice(i, min(count, i + chunk))) for i in range(0, count, chunk)]
    if isinstance(parts[0], dict):
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return np.concatenate(parts)


def _changes(images: np.ndarray, hist: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict:
    """Raw measurements of each change of picture (before -> after frame indices)."""
    if len(before) == 0:
        empty = np.zeros((0,), np.float32)
        return {
            "grid": np.zeros((0, GRID * GRID), np.float32),
            "diff": empty,
            "hist": empty,
            "luma": empty,
            "flow": np.zeros((0, 2), np.float32),
            "flow_quad": np.zeros((0, 8), np.float32),
        }
    return _in_chunks(lambda part: _pair_changes(images, hist, before[part], after[part]), len(before))


def _pair_changes(images: np.ndarray, hist: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict:
    ya, yb = _luma(images[before]), _luma(images[after])
    absdiff = np.abs(yb - ya)
    return {
        "grid": _grid_mean(absdiff, GRID),
        "diff": absdiff.mean(axis=(1, 2)),
        "hist": 0.5 * np.abs(hist[after] - hist[before]).sum(axis=1),
        "luma": yb.mean(axis=(1, 2)) - ya.mean(axis=(1, 2)),
        "flow": _flow(ya, yb, 1).reshape(-1, 2),
        "flow_quad": _flow(ya, yb, 2).reshape(-1, 8),
    }


def _per_frame(changes: dict, bins: np.ndarray, count: int) -> dict:
    """Credit each change to its output frame: sums for motion and flow (so the amount per
    frame does not depend on the source frame rate), maxima for cut/flash detectors."""
    out = {}
    for key, values in changes.items():
        width = values.shape[1:] if values.ndim > 1 else ()
        acc = np.zeros((count, *width), np.float32)
        if key in ("diff", "hist"):
            np.maximum.at(acc, bins, values)
        else:
            np.add.at(acc, bins, values)
        out[key] = acc
    return out


def _change_features(per: dict) -> np.ndarray:
    """(T, 29) normalised change features of output frames."""
    return np.concatenate(
        [
            _log_energy(per["grid"], MOTION_SCALE),  # 16 motion energy on the grid
            _log_energy(per["diff"], MOTION_SCALE)[:, None],  # 1 global difference
            (4.0 * per["hist"])[:, None],  # 1 histogram difference (cuts, flashes)
            _signed_log(per["luma"], MOTION_SCALE)[:, None],  # 1 luminance up/down
            per["flow"] / FLOW_SCALE,  # 2 global flow
            per["flow_quad"] / FLOW_SCALE,  # 8 flow per quadrant
        ],
        axis=1,
    )


def _slow_context(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average over `width` frames centred on each frame, edges held. (T, C) -> (T, C)."""
    left = width // 2
    padded = np.concatenate([np.repeat(values[:1], left, 0), values, np.repeat(values[-1:], width - 1 - left, 0)])
    kernel = np.cumsum(np.concatenate([np.zeros((1, values.shape[1]), values.dtype), padded]), axis=0)
    return (kernel[width:] - kernel[:-width]) / width


PICTURE_RANGE_FILE = "picture_range.safetensors"
"""Its name beside the network weights whose training pictures it spans."""

MOTION_RATES = (Fraction(8), Fraction(25))
"""MotionFeatures' clip and sync stream rates, frames per second."""

STRETCH_S = 4.0
"""PictureRange judges a picture in stretches this long (the whole picture when shorter): a
textured shot after a black leader or a title card is held though the clip is not textured
throughout, and an event, a fraction of a second, never fills a stretch."""


@dataclass(frozen=True)
class PictureRange:
    """What a network's training pictures looked like, channel by channel, and how a picture
    unlike them is held within it.

    The world's pictures are flat colour and gradients. Real footage is textured and the camera
    pans: held for a whole clip beyond anything the world shows, a textured picture's edge
    channels (a pan's motion channels) made the shipped network run away into a blast of noise.
    A stretch of `STRETCH_S` seconds is unfamiliar when, in any channel, more than `sustained`
    of its frames lie outside the outer range (every value the training pictures took). Every
    channel of every frame in an unfamiliar stretch, in both streams, is then held within the
    inner range (the central `share` of the training values): held at the world's largest
    values instead, a texture still ran away. The rest of the picture is left exactly as it is,
    its brief extremes included, which are its events: holding every picture within the inner
    range cost the world's impacts and flashes (model card).

    `clip` (4, clip_dim) and `sync` (4, sync_dim) hold the inner low and high ends, then the
    outer low and high ends."""

    clip: torch.Tensor
    sync: torch.Tensor
    sustained: float = 0.9

    @classmethod
    def spanning(cls, features: Sequence[VisualFeatures], share: float = 0.98,
                 sustained: float = 0.9) -> PictureRange:
        """The ranges of every frame of `features` (a sample of the training pictures stands for
        all of them): the inner one the central `share` of each channel's values."""
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must lie in (0, 1], not {share}")
        cut = (1.0 - share) / 2.0

        def ranges(stream: list[torch.Tensor]) -> torch.Tensor:
            values = torch.cat(stream).double()
            inner = torch.quantile(values, torch.tensor([cut, 1.0 - cut], dtype=values.dtype), dim=0)
            return torch.cat([inner, values.min(0, keepdim=True).values,
                              values.max(0, keepdim=True).values]).float()

        return cls(ranges([f.clip for f in features]), ranges([f.sync for f in features]), sustained)

    def unfamiliar_frames(self, features: VisualFeatures,
                          rates: tuple[Fraction, Fraction] = MOTION_RATES) -> tuple[torch.Tensor, torch.Tensor]:
        """Which frames of the clip and sync streams (streams at `rates` frames a second) lie in
        an unfamiliar stretch: two bool tensors, (clip frames,) and (sync frames,). A frame of
        one stream is in it when the frame of the other stream at its time is."""
        clip = self._stretches(features.clip, self.clip, rates[0])
        sync = self._stretches(features.sync, self.sync, rates[1])
        clip_of_sync = _frames_at_times(len(sync), rates[1], len(clip), rates[0])
        sync_of_clip = _frames_at_times(len(clip), rates[0], len(sync), rates[1])
        return clip | sync[sync_of_clip], sync | clip[clip_of_sync]

    def _stretches(self, values: torch.Tensor, ends: torch.Tensor, rate: Fraction) -> torch.Tensor:
        """(frames,) bool: the frames inside some stretch of STRETCH_S seconds (the whole stream
        when shorter) where a channel lies outside the outer range in more than `sustained` of
        the frames."""
        frames = values.shape[0]
        if frames == 0:
            return torch.zeros(0, dtype=torch.bool)
        span = min(frames, max(1, round(STRETCH_S * rate)))
        outside = ((values < ends[2]) | (values > ends[3])).to(torch.int64)
        counts = torch.cat([torch.zeros_like(outside[:1]), outside.cumsum(0)])
        share = (counts[span:] - counts[:-span]).float() / span  # (frames - span + 1, channels)
        flagged = (share > self.sustained).any(1).float()
        # A frame is in a flagged stretch if one starts within span - 1 frames before it.
        covered = torch.nn.functional.max_pool1d(
            torch.nn.functional.pad(flagged[None, None], (span - 1, span - 1)), span, stride=1)
        return covered[0, 0] > 0

    def unfamiliar(self, features: VisualFeatures,
                   rates: tuple[Fraction, Fraction] = MOTION_RATES) -> bool:
        """Whether some stretch of `features` lies outside everything the training pictures
        showed (see the class)."""
        clip, sync = self.unfamiliar_frames(features, rates)
        return bool(clip.any() or sync.any())

    def hold(self, features: VisualFeatures,
             rates: tuple[Fraction, Fraction] = MOTION_RATES) -> VisualFeatures:
        """`features` with their unfamiliar stretches held within the inner range; the same
        object when there are none."""
        clip, sync = self.unfamiliar_frames(features, rates)
        if not (clip.any() or sync.any()):
            return features
        return VisualFeatures(
            clip=torch.where(clip[:, None], features.clip.clamp(self.clip[0], self.clip[1]), features.clip),
            sync=torch.where(sync[:, None], features.sync.clamp(self.sync[0], self.sync[1]), features.sync))

    def save(self, path: str | Path, meta: dict) -> None:
        from safetensors.torch import save_file

        save_file({"clip": self.clip.contiguous(), "sync": self.sync.contiguous()}, str(path),
                  metadata={"sustained": str(self.sustained), "meta": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path, clip_dim: int, sync_dim: int) -> PictureRange:
        from safetensors.torch import load_file

        from daemon.model.checkpoint import file_metadata

        tensors = load_file(str(path))
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        if shapes != {"clip": (4, clip_dim), "sync": (4, sync_dim)}:
            raise ValueError(f"{path} describes pictures of other channels ({shapes}) than these "
                             f"features' {clip_dim} clip and {sync_dim} sync: remove it, or measure "
                             "it again (python -m daemon.model.train_default picture-range)")
        sustained = float(file_metadata(path).get("sustained", cls.sustained))
        return cls(tensors["clip"].float(), tensors["sync"].float(), sustained)

    @staticmethod
    def measured_sharpness(path: str | Path) -> float | None:
        """The sharpness of the contact channels (`events.sharpened`) the range at `path` was
        measured on; None when it was measured without them or before it was recorded."""
        from daemon.model.checkpoint import file_metadata

        sharpness = json.loads(file_metadata(path).get("meta", "{}")).get("sharpness")
        return None if sharpness is None else float(sharpness)


class MotionFeatures:
    """Default visual encoder: 64-d clip at 8 fps, 64-d sync at 25 fps, weight-free; with a
    contact detector (`daemon.model.events`), its channels follow the 64 in the sync stream."""

    name = "motion-features-v1"
    clip_rate, sync_rate = MOTION_RATES
    clip_dim = 64
    sync_dim = 64

    def __init__(self, size: tuple[int, int] = PICTURE_SIZE, contacts: EventDetector | None = None,
                 picture_range: PictureRange | None = None) -> None:
        self.size = size
        self.contacts = contacts
        self.picture_range = picture_range
        if contacts is not None:
            self.name = f"{MotionFeatures.name}+contacts"
            self.sync_dim = MotionFeatures.sync_dim + contacts.outputs
        self._detail = contacts.planes if contacts is not None else 0
        """The planes of the detailed picture the contact detector reads (0: none needed)."""

    def encode_segments(self, segments: Sequence[Segment]) -> VisualFeatures:
        return self.encode_picture(Picture.from_segments(segments, self.size, self._detail))

    def encode_frames(self, frames: np.ndarray, fps: float | Fraction) -> VisualFeatures:
        return self.encode_picture(Picture.from_frames(frames, fps, self.size, self._detail))

    def encode_picture(self, picture: Picture) -> VisualFeatures:
        clip_count, sync_count = stream_lengths(picture.duration, self.clip_rate, self.sync_rate)
        images = picture.images
        hist = _in_chunks(lambda part: _histogram(_luma(images[part])), len(images))
        appearance = _in_chunks(lambda part: _appearance(images[part]), len(images))
        events = picture.changes()
        times = [t for t, _, _ in events]
        before = np.array([b for _, b, _ in events], dtype=np.int64)
        after = np.array([a for _, _, a in events], dtype=np.int64)
        changes = _changes(images, hist, before, after)

        def credited(rate: Fraction, count: int) -> dict:
            # floor(tau * rate) without float rounding; the slack keeps a change exactly on a
            # frame boundary in the frame it starts.
            bins = np.array([math.floor(t * rate + TIME_SLACK) for t in times], dtype=np.int64)
            return _per_frame(changes, np.clip(bins, 0, count - 1), count)

        sync_shown = picture.frames_at(self.sync_rate, sync_count)
        sync = np.concatenate(
            [appearance[sync_shown], _change_features(credited(self.sync_rate, sync_count))], axis=1
        )
        if self.contacts is not None:
            if picture.detail is None:
                raise ValueError("the contact detector needs the picture's detail: make it with detail=True")
            sync = np.concatenate([sync, self.contacts.features(picture.detail, sync_shown)], axis=1)

        clip_shown = picture.frames_at(self.clip_rate, clip_count)
        per = credited(self.clip_rate, clip_count)
        motion = _log_energy(per["grid"], MOTION_SCALE)
        quadrant_motion = motion.reshape(-1, 2, 2, 2, 2).mean(axis=(2, 4)).reshape(-1, 4)
        short = np.concatenate(
            [
                quadrant_motion,  # 4
                _log_energy(per["diff"], MOTION_SCALE)[:, None],  # 1
                (4.0 * per["hist"])[:, None],  # 1
                _signed_log(per["luma"], MOTION_SCALE)[:, None],  # 1
                per["flow"] / FLOW_SCALE,  # 2
            ],
            axis=1,
        )
        # One second of context: what kind of movement this shot has, not just this instant.
        second = int(self.clip_rate)
        slow = _slow_context(np.concatenate([motion, short[:, 4:9]], axis=1), second)  # 21
        clip = np.concatenate([appearance[clip_shown], short, slow[:, :16], slow[:, [16, 17, 19, 20]]], axis=1)

        features = VisualFeatures(
            clip=torch.from_numpy(np.clip(clip, -LIMIT, LIMIT).astype(np.float32)),
            sync=torch.from_numpy(np.clip(sync, -LIMIT, LIMIT).astype(np.float32)),
        )
        if self.picture_range is None:
            return features
        return self.picture_range.hold(features, (self.clip_rate, self.sync_rate))


def _frames_at_times(count: int, rate: Fraction, other_count: int, other_rate: Fraction) -> torch.Tensor:
    """For each of `count` frames at `rate`, the index of the frame at `other_rate` shown at its
    middle (clamped to the other stream's `other_count` frames)."""
    middles = (torch.arange(count, dtype=torch.float64) + 0.5) / float(rate)
    return (middles * float(other_rate)).floor().long().clamp(0, max(0, other_count - 1))


def contact_channels(sync_dim: int) -> int:
    """How many of the `sync_dim` sync channels of a network are the contact detector's (they
    follow the weight-free features' 64): all it detects when it was trained with them, else 0."""
    from daemon.model.events import FAMILIES

    return len(FAMILIES) if sync_dim == MotionFeatures.sync_dim + len(FAMILIES) else 0


def default_visual(sync_dim: int, weights: str | Path) -> MotionFeatures:
    """The picture features a network taking `sync_dim` sync channels was trained with: the
    weight-free features alone, or with the contact detector stored beside its weights; held
    within the range of its training pictures where that is stored beside them too
    (`PictureRange`). A width that fits neither gets the plain features (the engine's check
    then says what the network wants). Raises FileNotFoundError when the network needs a
    detector that is missing."""
    from daemon.model.events import DETECTOR_FILE, EventDetector

    folder = Path(weights).parent
    contacts = None
    if contact_channels(sync_dim):
        path = folder / DETECTOR_FILE
        if not path.exists():
            raise FileNotFoundError(
                f"{Path(weights).name} was trained with the contact detector's sync channels, but "
                f"{path} is missing: keep {DETECTOR_FILE} in the same folder as the weights"
            )
        contacts = EventDetector.load(path)
    elif sync_dim != MotionFeatures.sync_dim:
        return MotionFeatures()
    visual = MotionFeatures(contacts=contacts)
    span = folder / PICTURE_RANGE_FILE
    if span.exists():
        visual.picture_range = PictureRange.load(span, visual.clip_dim, visual.sync_dim)
        measured = PictureRange.measured_sharpness(span)
        if contacts is not None and measured is not None and measured != contacts.sharpness:
            log.warning("%s was measured on contact channels sharpened to %g, the engine reads "
                        "them at %g: measure it again (python -m daemon.model.train_default "
                        "picture-range)", span, measured, contacts.sharpness)
    return visual
