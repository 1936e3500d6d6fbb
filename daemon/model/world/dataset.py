"""World clips as training examples: the network's inputs, precomputed once and stored in shards.

Training on two CPU cores cannot afford to draw pictures, measure motion and run MiniLM for
every step, so `precompute_shards` turns seeds into exactly what the network consumes, through
the same front ends the engine uses at generation time:

- latent (250, 160): the clip's audio through the codec (`MelCodec.encode`),
- clip (64, 64) and sync (200, 64, or 68 with the contact detector): its frames through
  `MotionFeatures.encode_frames`, after an optional real H.264 round trip (footage the engine
  sees has been compressed),
- text (32, 384): MiniLM token states of the caption ("" when the clip has none).

Shards are `shard-00000.pt` files of `shard_size` clips (float16 to halve memory). Training
seeds and evaluation seeds are disjoint ranges (`TRAIN_SEEDS`, `HELD_OUT_SEEDS`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .captions import CLASSES
from .clip import WorldConfig, compress_frames, generate_clip

TRAIN_SEEDS = range(0, 1_000_000)
HELD_OUT_SEEDS = range(1_000_000, 2_000_000)
"""Evaluation only ever draws from HELD_OUT_SEEDS; training only from TRAIN_SEEDS."""


def clip_inputs(clip, visual, codec, compress: bool = False) -> dict:
    """The network inputs of one world clip (text excluded: it is batched per shard)."""
    frames = compress_frames(clip.frames, clip.fps, crf=28) if compress else clip.frames
    features = visual.encode_frames(frames, clip.fps)
    latent = codec.encode(torch.from_numpy(clip.audio)[None])[0]
    return {"latent": latent, "clip": features.clip, "sync": features.sync}


def is_compressed(seed: int, probability: float) -> bool:
    """Whether training seed `seed`'s picture goes through the H.264 round trip."""
    return bool(np.random.default_rng([seed, 7]).random() < probability)


def training_pictures(seeds, visual, config: WorldConfig | None = None,
                      compress_probability: float = 0.3):
    """The picture features of training seeds, as `precompute_shards` makes them (one at a
    time, for measuring the span of what training saw: `PictureRange.spanning`)."""
    config = config or WorldConfig()
    for seed in seeds:
        if seed not in TRAIN_SEEDS:
            raise ValueError(f"seed {seed} is held out for evaluation; train on 0..999999")
        clip = generate_clip(seed, config)
        frames = (compress_frames(clip.frames, clip.fps, crf=28)
                  if is_compressed(seed, compress_probability) else clip.frames)
        yield visual.encode_frames(frames, clip.fps)


def negated_classes(classes: list[str], rng: np.random.Generator) -> tuple[str, ...]:
    """What a negation example's negative caption names: mostly sounds the clip has
    (which it then leaves unheard), sometimes ones it lacks (which changes nothing heard, so
    naming a sound is not learnt as a call to quiet everything); now and then two."""
    pool = (classes if classes and rng.random() < 0.7
            else [c for c in CLASSES if c not in classes])
    count = min(len(pool), 2 if rng.random() < 0.2 else 1)
    return tuple(str(c) for c in rng.choice(pool, size=count, replace=False))


def world_example(seed: int, config: WorldConfig, negation: float = 0.0):
    """The clip a training seed stands for: its clip, or with chance `negation` the same
    picture with a negative caption that names sounds not heard (`negated_classes`)."""
    clip = generate_clip(seed, config)
    rng = np.random.default_rng([seed, 11])
    if rng.random() < negation:
        clip = generate_clip(seed, config, unheard=negated_classes(clip.classes, rng))
    return clip


def precompute_shards(seeds, out_dir: str | Path, config: WorldConfig | None = None,
                      shard_size: int = 100, compress_probability: float = 0.3,
                      log=print, part: tuple[int, int] = (0, 1),
                      detector: str | Path | None = None, negation: float = 0.0,
                      sharpness: float | None = None) -> list[Path]:
    """Generate the clips of `seeds` and write their network inputs as shards in `out_dir`.
    Shards already present are kept (the run can be resumed). `part` (k, n) writes only every
    n-th shard from the k-th, so n processes can share the work; every shard's path is
    returned either way. With `detector` (an event_detector.safetensors), the sync features
    carry its contact channels, sharpened to `sharpness` (default `events.SHARPNESS`, as the
    engine reads them; 1 for the channels the shipped network was trained on). `negation` is
    each seed's chance of being a negation example (`world_example`)."""
    from daemon.model.codec import MelCodec
    from daemon.model.text import MiniLMText, conditioning_text
    from daemon.model.visual import MotionFeatures

    config = config or WorldConfig()
    seeds = list(seeds)
    bad = [s for s in seeds if s not in TRAIN_SEEDS]
    if bad:
        raise ValueError(f"seeds {bad[:5]} are held out for evaluation; train on 0..999999")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    contacts = None
    if detector is not None:
        from daemon.model.events import EventDetector

        contacts = EventDetector.load(detector, sharpness)
    visual, codec, text = MotionFeatures(contacts=contacts), MelCodec(), MiniLMText(cache_size=4096)
    written = []
    for index in range(0, len(seeds), shard_size):
        path = out / f"shard-{index // shard_size:05d}.pt"
        written.append(path)
        if path.exists() or (index // shard_size) % part[1] != part[0]:
            continue
        started = time.time()
        rows, captions, negatives, meta = [], [], [], []
        for seed in seeds[index:index + shard_size]:
            clip = world_example(seed, config, negation)
            rows.append(clip_inputs(clip, visual, codec, is_compressed(seed, compress_probability)))
            captions.append(clip.caption or "")
            negatives.append(clip.negative_caption or "")
            meta.append({"seed": seed, "caption": clip.caption, "classes": clip.classes,
                         "negative_caption": clip.negative_caption})
        # As the engine conditions a network that reads negation (clips without a negative
        # caption are plain captions either way).
        tokens, _, _ = conditioning_text(text, captions, negatives, reads_negation=True)
        shard = {key: torch.stack([r[key] for r in rows]).to(torch.float16)
                 for key in ("latent", "clip", "sync")}
        shard["text"] = tokens.to(torch.float16)
        shard["meta"] = meta
        shard["negation"] = negation
        tmp = path.with_suffix(".tmp")
        torch.save(shard, tmp)
        tmp.rename(path)  # a shard appears whole or not at all
        log(f"wrote {path.name}: {len(rows)} clips in {time.time() - started:.1f} s")
    return written


class WorldShards:
    """All shards of a folder in memory; `batch(indices)` gives float32 tensors."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.loaded: list[str] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self.has_negation = False
        """Whether any shard holds negation examples (a network trained on it reads them)."""
        self.refresh()

    def refresh(self) -> int:
        """Load shards that appeared since the last call; returns the clip count."""
        new = [p for p in sorted(self.folder.glob("shard-*.pt")) if p.name not in self.loaded]
        for path in new:
            shard = torch.load(path, weights_only=False)
            self.has_negation |= shard.get("negation", 0.0) > 0
            for key in ("latent", "clip", "sync", "text"):
                part = shard[key]
                self.tensors[key] = (torch.cat([self.tensors[key], part])
                                     if key in self.tensors else part)
            self.loaded.append(path.name)
        return len(self)

    def __len__(self) -> int:
        return 0 if not self.tensors else int(self.tensors["latent"].shape[0])

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[indices].float() for k, v in self.tensors.items()}


class WorldDataset:
    """The world as a `daemon.model.data.TrainingDataset` (picture frames in memory, 16 kHz
    audio, caption), for the generic training entry point:

        python -m daemon.model.train --data "daemon.model.world.dataset:WorldDataset?count=2000" ...
    """

    def __init__(self, count: int | str = 2000, first_seed: int | str = 0):
        self.first_seed, self.count = int(first_seed), int(count)
        if self.first_seed + self.count > TRAIN_SEEDS.stop or self.first_seed < 0:
            raise ValueError(f"seeds {self.first_seed}..{self.first_seed + self.count - 1} reach "
                             "into the held-out range; train on seeds 0..999999")
        self.config = WorldConfig()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        from daemon.model.data import FramesPicture, TrainingItem

        if not 0 <= index < self.count:
            raise IndexError(index)
        clip = generate_clip(self.first_seed + index, self.config)
        return TrainingItem(picture=FramesPicture(clip.frames, clip.fps), audio=clip.audio,
                            audio_rate=clip.rate, caption=clip.caption or "")
