"""A small synthetic training set for the training tests: a flash on screen, a click in the
audio at the same instant (the procedural world proper is daemon.model.world)."""

from __future__ import annotations

import numpy as np

from daemon.model.data import FramesPicture, TrainingItem


class FlashClickDataset:
    def __init__(self, count: int = 4, seconds: float = 8.0, fps: int = 25, seed: int = 0):
        self.count, self.seconds, self.fps, self.seed = count, seconds, fps, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> TrainingItem:
        rng = np.random.default_rng([self.seed, index])
        frames = np.full((int(self.seconds * self.fps), 18, 32, 3), 40, np.uint8)
        audio = 0.001 * rng.standard_normal(int(self.seconds * 16_000)).astype(np.float32)
        for _ in range(3):
            frame = int(rng.integers(0, len(frames)))
            frames[frame] = 250
            at = int(frame / self.fps * 16_000)
            click = rng.standard_normal(800) * np.exp(-np.arange(800) / 120.0)
            audio[at : at + 800] += 0.5 * click[: len(audio) - at].astype(np.float32)
        caption = "" if index % 2 else "sharp clicks"
        return TrainingItem(FramesPicture(frames, self.fps), audio, 16_000, caption)
