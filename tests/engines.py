"""Small real engines for the daemon's tests: they synthesise sound of exactly the right length
and behave like the real engine towards the worker (lazy load, progress every step, cancel at
the next step, out-of-memory on demand) without any model.

`ToneEngine` makes a stereo tone whose pitch follows the seed with a click at every cut.
Subprocess daemons pick one with ``--engine tests.engines:ToneEngine`` (or a factory below);
settings also come from the environment there: V2A_TONE_STEP_DELAY (seconds per sampler step),
V2A_TONE_OOM ("once" | "always"), V2A_TONE_LOAD_DELAY, V2A_TONE_UNFAMILIAR (a piece of a media
path: pictures whose path holds it come back marked unfamiliar, as the real engine marks a
picture unlike any it learnt from).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from daemon.engine import (
    OUTPUT_RATE,
    Cancelled,
    ClipRequest,
    EngineOutOfMemory,
    GeneratedAudio,
    MediaError,
)


class ToneEngine:
    """Tones and clicks instead of a model. `oom`: None, "once" or "always" (the latter only
    matters in normal mode: low-memory mode succeeds unless oom == "always")."""

    def __init__(
        self,
        *,
        step_delay: float | None = None,
        load_delay: float | None = None,
        oom: str | None = None,
        unfamiliar: str | None = None,
        name: str = "tone-test",
    ):
        env = os.environ
        self.name = name
        self.step_delay = float(env.get("V2A_TONE_STEP_DELAY", 0.0)) if step_delay is None else step_delay
        self.load_delay = float(env.get("V2A_TONE_LOAD_DELAY", 0.0)) if load_delay is None else load_delay
        self.oom = env.get("V2A_TONE_OOM") or None if oom is None else oom
        self.unfamiliar = env.get("V2A_TONE_UNFAMILIAR") or None if unfamiliar is None else unfamiliar
        self._device = ""
        self.loads = 0
        self.unloads = 0
        self.calls: list[ClipRequest] = []
        self.started = threading.Event()
        """Set when a generate call begins (tests wait on it instead of sleeping)."""
        self.release = threading.Event()
        """While `hold` is set, sampling pauses at step 1 until `release` is set."""
        self.hold = False

    @property
    def loaded(self) -> bool:
        return bool(self._device)

    @property
    def device(self) -> str:
        return self._device

    @property
    def weights_hash(self) -> str:
        return f"{self.name}-v1"

    def load(self, device: str) -> None:
        if self.load_delay:
            time.sleep(self.load_delay)
        self._device = "cpu" if device in ("auto", "cpu") else device
        self.loads += 1

    def unload(self) -> None:
        self._device = ""
        self.unloads += 1

    def memory(self) -> dict:
        used = 1024 * 1024 if self.loaded else 0
        return {"allocated": used, "reserved": used, "total": 8 * 1024 * 1024}

    def generate(self, request: ClipRequest, progress, cancelled) -> GeneratedAudio:
        self.calls.append(request)
        self.started.set()
        for segment in request.segments:
            if "%" not in segment.media and not os.path.exists(segment.media):
                raise MediaError(f"cannot open {segment.media}: no such file")
        if self.oom == "always" or (self.oom == "once" and not request.low_memory):
            if self.oom == "once":
                self.oom = None
            raise EngineOutOfMemory("simulated: CUDA out of memory (tried to allocate 2.00 GiB)")
        progress("decode", 1, 1)
        progress("features", 1, 1)
        for step in range(request.steps):
            if cancelled():
                raise Cancelled("cancelled")
            if self.hold and step == 1:
                while not self.release.wait(0.01):
                    if cancelled():
                        raise Cancelled("cancelled")
            if self.step_delay:
                time.sleep(self.step_delay)
            progress("sampling", step + 1, request.steps)
        progress("decoding_audio", 1, 1)
        unfamiliar = bool(self.unfamiliar) and any(self.unfamiliar in s.media for s in request.segments)
        return GeneratedAudio(self._synthesise(request), OUTPUT_RATE,
                              {"engine": self.name, "unfamiliar": unfamiliar})

    def generate_batch(self, requests, progress, cancelled):
        return [self.generate(r, progress, cancelled) for r in requests]

    @staticmethod
    def _synthesise(request: ClipRequest) -> np.ndarray:
        n = request.num_samples
        t = np.arange(n, dtype=np.float64) / OUTPUT_RATE
        pitch = 220.0 + (request.seed % 24) * 20.0
        tone = 0.2 * np.sin(2 * np.pi * pitch * t)
        for cut in request.cut_times:
            at = round(cut * OUTPUT_RATE)
            tone[at:at + 48] += 0.5
        left = tone.astype(np.float32)
        right = (0.8 * tone).astype(np.float32)
        return np.stack([left, right])  # (2, n)


def slow_tone_engine() -> ToneEngine:
    """0.2 s per step: long enough to cancel or signal a running job."""
    return ToneEngine(step_delay=0.2)


class BrokenEngine:
    """Cannot even be constructed: the daemon must say so at startup."""

    def __init__(self):
        raise RuntimeError("weights file is corrupt")
