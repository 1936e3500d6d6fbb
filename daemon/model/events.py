"""A small learned detector of visible contacts: on which 25 fps frame something hits.

The weight-free sync features (`visual.MotionFeatures`) show flashes and door slams on their
exact frame, but a foot plant or a small object landing barely moves their grid averages: a
walking figure keeps moving at the same speed, and only the shape of its legs says when a foot
lands. This detector looks at the luminance of five shown frames around each output frame
(t-2 .. t+2, 64x36) with three convolutions and pools over the whole picture (max and mean), so
it finds a contact wherever it is in the frame. It gives one probability per family of
contact (impact, footsteps, flash, door) for every frame of the sync stream; the network sees
them as extra sync channels.

It is trained on world clips with known contact frames, apart from the flow model's own
training clips, and stored next to the network's weights:

    python -m daemon.model.events train --out daemon/model/weights/event_detector.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

FAMILIES = ("impact", "footsteps", "flash", "door")
"""Contact families, one output each (world classes: impact_*, footsteps_*, zap/click,
door_slam)."""
DETECTOR_FILE = "event_detector.safetensors"
"""Its name beside the network weights trained with its channels."""
REACH = 2  # frames each side of the one judged
SCALE = 4.0  # a certain contact is 4.0 in the sync stream, like a strong motion feature
DETECTOR_SEEDS = range(500_000, 600_000)
"""Training seeds of the detector: inside the world's training range, apart from the flow
model's own training clips (0..~10 000) and the audio classifier's (600 000..)."""


def family_of(cls: str) -> str | None:
    """The contact family of a world event class, or None (whooshes are not contacts)."""
    if cls.startswith("impact_"):
        return "impact"
    if cls.startswith("footsteps_"):
        return "footsteps"
    return {"zap": "flash", "click": "flash", "door_slam": "door"}.get(cls)


class EventDetector(nn.Module):
    """(B, T, H, W) luminance in [0, 1] -> (B, T, len(FAMILIES)) contact logits."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        frames = 2 * REACH + 1
        self.conv = nn.Sequential(
            nn.Conv2d(2 * frames - 1, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, 32, 3, padding=1, stride=2), nn.GELU(),
        )
        self.head = nn.Linear(64, len(FAMILIES))
        self.outputs = len(FAMILIES)

    def forward(self, luma: torch.Tensor) -> torch.Tensor:
        b, t, h, w = luma.shape
        held = torch.cat([luma[:, :1]] * REACH + [luma] + [luma[:, -1:]] * REACH, dim=1)
        window = torch.stack([held[:, i:i + t] for i in range(2 * REACH + 1)], dim=2)
        # Levels relative to each frame's mean (exposure and flashes aside), and the changes
        # between neighbours at a scale where a small movement is about 1.
        window = window - window.mean(dim=(3, 4), keepdim=True)
        changes = 10.0 * (window[:, :, 1:] - window[:, :, :-1])
        x = self.conv(torch.cat([window, changes], dim=2).reshape(b * t, -1, h, w))
        pooled = torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)
        return self.head(pooled).reshape(b, t, len(FAMILIES))

    @torch.no_grad()
    def features(self, images: np.ndarray, shown: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Sync channels of the frames `images[shown]` ((N, H, W, 3) uint8, one index per
        output frame) -> (T, len(FAMILIES)) float32: SCALE x the probability of a contact on
        each frame. Luminance is made a chunk at a time, so long pictures stay small."""
        from daemon.model.visual import _luma

        parts = []
        for start in range(0, len(shown), chunk):
            # Each chunk carries its REACH neighbours so the seams are exact.
            lo, hi = max(0, start - REACH), min(len(shown), start + chunk + REACH)
            luma = torch.from_numpy(_luma(images[shown[lo:hi]]))
            logits = self(luma[None])[0]
            parts.append(logits[start - lo:start - lo + min(chunk, len(shown) - start)])
        return (SCALE * torch.sigmoid(torch.cat(parts))).numpy().astype(np.float32)

    def save(self, path: str | Path, meta: dict) -> None:
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path),
                  metadata={"families": ",".join(FAMILIES), "meta": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> EventDetector:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            families = (f.metadata() or {}).get("families", "")
        if tuple(families.split(",")) != FAMILIES:
            raise ValueError(f"{path} detects {families!r}, this build expects {','.join(FAMILIES)}")
        detector = cls()
        detector.load_state_dict(load_file(str(path)))
        return detector.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Training on the world


def clip_luma_and_labels(seed: int, compress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One world clip as the detector sees it: (T, 36, 64) float16 luminance of its frames
    (through H.264 at crf 20-29 for half of the seeds when `compress` is None, as footage is)
    and (T, families) 0/1 contact labels."""
    from daemon.model.visual import Picture, _luma
    from daemon.model.world import compress_frames, generate_clip

    clip = generate_clip(seed)
    rng = np.random.default_rng([seed, 11])
    if compress if compress is not None else rng.random() < 0.5:
        frames = compress_frames(clip.frames, clip.fps, crf=int(rng.integers(20, 30)))
    else:
        frames = clip.frames
    luma = _luma(Picture.from_frames(frames, clip.fps).images)
    labels = np.zeros((len(luma), len(FAMILIES)), np.float32)
    for event in clip.events:
        family = family_of(event.cls)
        if event.onset and family and 0 <= event.frame < len(luma):
            labels[event.frame, FAMILIES.index(family)] = 1.0
    return luma.astype(np.float16), labels


def _world_set(seeds, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    with Pool(workers) as pool:
        rows = pool.map(clip_luma_and_labels, list(seeds), chunksize=4)
    return (torch.from_numpy(np.stack([luma for luma, _ in rows])),
            torch.from_numpy(np.stack([labels for _, labels in rows])))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean precision at each true frame, frames ranked by score (1.0 is a perfect ranking)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(1.0, hits.sum()))


def evaluate(detector: EventDetector, luma: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Average precision per family over all frames of the clips."""
    with torch.no_grad():
        scores = torch.cat([detector(luma[i:i + 1].float())[0] for i in range(len(luma))]).numpy()
    truth = labels.reshape(-1, len(FAMILIES)).numpy()
    return {family: round(average_precision(scores[:, k], truth[:, k]), 3)
            for k, family in enumerate(FAMILIES) if truth[:, k].any()}


def train(out: Path, clips: int, test_clips: int, steps: int, workers: int, log=None) -> dict:
    log = log or (lambda message: print(message, flush=True))
    torch.manual_seed(0)
    started = time.time()
    luma, labels = _world_set(DETECTOR_SEEDS[:clips], workers)
    test_luma, test_labels = _world_set(range(1_950_000, 1_950_000 + test_clips), workers)
    log(f"{clips} training clips, {test_clips} held-out clips made in {time.time() - started:.0f} s")
    detector = EventDetector()
    optimiser = torch.optim.AdamW(detector.parameters(), 2e-3, weight_decay=1e-2)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / warmup) * (
        0.55 + 0.45 * np.cos(np.pi * min(1.0, s / steps))))
    generator = torch.Generator().manual_seed(0)
    span, batch = 48, 4
    # Contacts are rare (about 2 % of frames per family): weigh them up.
    pos_weight = torch.full((len(FAMILIES),), 5.0)
    for step in range(1, steps + 1):
        pick = torch.randint(len(luma), (batch,), generator=generator)
        start = int(torch.randint(0, luma.shape[1] - span + 1, (1,), generator=generator))
        logits = detector(luma[pick, start:start + span].float())
        loss = F.binary_cross_entropy_with_logits(logits, labels[pick, start:start + span],
                                                  pos_weight=pos_weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 250 == 0 or step == steps:
            detector.eval()
            report = evaluate(detector, test_luma, test_labels)
            detector.train()
            log(f"step {step}: loss {loss.item():.3f} held-out AP {report} "
                f"({time.time() - started:.0f} s)")
    detector.eval()
    meta = {"steps": steps, "clips": clips, "seeds": f"{DETECTOR_SEEDS.start}..",
            "held_out_ap": evaluate(detector, test_luma, test_labels),
            "train_seconds": round(time.time() - started)}
    detector.save(out, meta)
    log(f"wrote {out}: {meta}")
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m daemon.model.events", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("train", help="train the detector on world clips")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--clips", type=int, default=800)
    run.add_argument("--test-clips", type=int, default=60)
    run.add_argument("--steps", type=int, default=2500)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train(args.out, args.clips, args.test_clips, args.steps, args.workers)


if __name__ == "__main__":
    main()
