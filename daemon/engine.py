"""The engine contract: what the daemon's worker asks of whatever generates the audio.

The daemon knows nothing about models. It hands an engine a `ClipRequest` (which picture, which
prompts, which sampler settings) and gets back `GeneratedAudio` at the host rate. The real engine
is the V2A model (`daemon.model.engine.V2AEngine`); tests may plug in a small engine of their own.

Time on this boundary is in seconds of *media* time (0 = the first frame of the file), already
mapped from the editor's rational time by the planner; the audio that comes back has exactly
`round(duration * OUTPUT_RATE)` samples so that it lands sample-accurately under its picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

OUTPUT_RATE = 48_000
"""Every engine returns audio at this rate: what Resolve and Blender mix at."""

RESULT_REVISION = 10
"""Part of every cache key: raised whenever the same request and weights would sound different
(2: guidance in separate terms, `daemon.model.flow.Guidance`; 3: the sampler redraws half the
predicted noise each step, `daemon.model.flow.RENOISE`; 4: 0.7 of it; 5: the predicted sound
is kept within a sound's range, `daemon.model.flow.sound_bounds`; 6: the picture is held within
the range of the training pictures, `daemon.model.visual.PictureRange`; 7: held in stretches,
not whole clips only; 8: guidance toward the detected contacts, `Guidance.contacts`; 9: the
contact channels sharpened, `daemon.model.events.SHARPNESS`; 10: the class guide's push away
from a negative prompt's classes in a direction of its own, `Guidance.away`), so no stale
result is served."""

STAGES = ("load", "decode", "features", "sampling", "decoding_audio", "writing")
"""Progress stages, in the order a clip passes through them."""


@dataclass(frozen=True)
class Segment:
    """A stretch of picture: `duration` seconds of output showing `media` from `start` on.

    `speed` maps output time to media time (media_t = start + speed * t): 1 is normal speed,
    2 is twice as fast, 0 is a freeze frame on `start`. Image sequences are opened through
    FFmpeg's image2 demuxer with `media` a printf pattern (``shot.%04d.exr``), `image_rate` their
    frame rate and `start_number` the first frame number.
    """

    media: str
    start: float
    duration: float
    speed: float = 1.0
    image_rate: float | None = None
    start_number: int | None = None

    @property
    def media_end(self) -> float:
        return self.start + self.speed * self.duration


@dataclass(frozen=True)
class ClipRequest:
    """One generation: the picture (one segment, or several back to back for a continuous
    soundtrack across cuts), the prompts and the sampler settings."""

    segments: tuple[Segment, ...]
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 25
    cfg: float = 4.5
    # Set by the worker when a first attempt ran out of accelerator memory: generate in
    # smaller pieces (shorter windows, batch of one).
    low_memory: bool = False

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def num_samples(self) -> int:
        return round(self.duration * OUTPUT_RATE)

    @property
    def cut_times(self) -> tuple[float, ...]:
        """Output times at which one segment hands over to the next (the cuts)."""
        times, t = [], 0.0
        for s in self.segments[:-1]:
            t += s.duration
            times.append(t)
        return tuple(times)


@dataclass
class GeneratedAudio:
    """Audio at OUTPUT_RATE, shape (channels, samples), float32 in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int = OUTPUT_RATE
    metadata: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def unfamiliar(self) -> bool:
        """The engine judged this sound not to be trusted: the picture was unlike any the model
        learnt from (`metadata["unfamiliar"]`, set by engines that can tell)."""
        return bool(self.metadata.get("unfamiliar", False))


ProgressFn = Callable[[str, int, int], None]
"""progress(stage, step, total): called often; the worker turns it into events with an ETA."""

CancelledFn = Callable[[], bool]
"""cancelled() -> True once the job was cancelled; engines check it at every sampler step."""


class Cancelled(Exception):
    """Raised by an engine that stopped because `cancelled()` turned true."""


class EngineOutOfMemory(Exception):
    """Raised by an engine whose accelerator ran out of memory; the worker frees memory and
    retries once with `low_memory=True`."""


class MediaError(Exception):
    """The picture could not be read: missing file, unreadable stream, range outside it."""


@runtime_checkable
class Engine(Protocol):
    """What the daemon's single worker thread drives. All methods run on that thread."""

    name: str
    """Model identifier reported in `status` and stored in clip metadata (e.g. ``v2a-tiny``)."""

    def load(self, device: str) -> None:
        """Load weights onto `device` ("cpu", "cuda", "mps" or "auto"). Called lazily."""

    def unload(self) -> None:
        """Free the weights and accelerator memory."""

    @property
    def loaded(self) -> bool: ...

    @property
    def device(self) -> str:
        """The device actually in use ("cpu", "cuda:0", ...), or "" when not loaded."""

    @property
    def weights_hash(self) -> str:
        """Content hash of the weights, so results are cached per model version."""

    def memory(self) -> dict:
        """Accelerator memory in bytes: {"allocated": int, "reserved": int, "total": int}."""

    def generate(
        self, request: ClipRequest, progress: ProgressFn, cancelled: CancelledFn
    ) -> GeneratedAudio:
        """Generate audio for `request` (exactly `request.num_samples` samples at OUTPUT_RATE).
        Raises Cancelled, EngineOutOfMemory or MediaError."""

    def generate_batch(
        self, requests: list[ClipRequest], progress: ProgressFn, cancelled: CancelledFn
    ) -> list[GeneratedAudio]:
        """Several requests at once (batched on a GPU when their lengths match); the same
        audio as calling `generate` on each."""
