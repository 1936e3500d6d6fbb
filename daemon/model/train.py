"""Training the V2A network with conditional flow matching:

    python -m daemon.model.train --config tiny --data SPEC --steps N --batch B --out DIR [--resume]

`--data` is a folder of precomputed features, a folder of videos, or ``module:factory?k=v``
returning a dataset (see daemon.model.data.open_dataset). Datasets are run through the front
ends once and the features kept in DIR/features, so every later run (and --resume) starts
training at once.

Each step draws a batch, drops the picture (clip + sync together) and, independently, the text
for a fraction of examples (the network learns text-only, picture-only and unconditional
velocities, which guidance and negative prompts need), and takes an AdamW step on the flow
matching loss (daemon.model.flow.training_loss); bf16 autocast on CUDA. An exponential moving
average (EMA) of the weights is what gets exported.

DIR/checkpoint.pt holds everything to resume exactly (model, EMA, optimizer, step, every
random state); DIR/<config>.safetensors (+ .json) the EMA weights for the engine; DIR/log.jsonl
one line per logging interval (step, loss, learning rate, steps/s).

The empty-text condition is the text encoder's encoding of "" (stored in the network as
`empty_string_feat`, not trained); latent statistics are the codec's fixed constants.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from daemon.model.checkpoint import save_network
from daemon.model.codec import AudioCodec, MelCodec
from daemon.model.config import NetworkConfig, preset
from daemon.model.data import DatasetError, FeatureSet, open_dataset, precompute
from daemon.model.engine import pick_device
from daemon.model.flow import TrainingSettings, autocast_for, make_generator, training_loss
from daemon.model.network import V2ANetwork, build_network
from daemon.model.text import MiniLMText, TextEncoder
from daemon.model.visual import MotionFeatures, VisualEncoder

log = logging.getLogger("daemon.model.train")


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch: int = 16
    lr: float = 3e-4
    warmup: int = 200
    min_lr_fraction: float = 0.1  # cosine decay to this fraction of lr at the last step
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    picture_dropout: float = 0.1
    text_dropout: float = 0.1
    low_t_fraction: float = 0.0  # share of samples with t < low_t_max (see TrainingSettings)
    low_t_max: float = TrainingSettings.low_t_max
    seed: int = 0
    log_every: int = 50
    save_every: int = 500


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_fraction * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * cosine_decay(progress, cfg.min_lr_fraction)


def cosine_decay(progress: float, floor: float) -> float:
    """The rate's factor at `progress` (0..1) of a cosine decay from 1 to `floor`."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def update_ema(ema: V2ANetwork, network: V2ANetwork, step: int, decay: float) -> None:
    # Early on the average follows the weights closely (it would otherwise hold the random
    # initialisation for thousands of steps).
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), network.parameters(), strict=True):
        e.lerp_(p.detach(), 1 - d)


def prepare_network(config: NetworkConfig, text: TextEncoder, codec: AudioCodec,
                    device: torch.device) -> V2ANetwork:
    """A fresh network with the fixed parts set: the empty-string text features and the
    codec's latent statistics."""
    network = build_network(config)
    with torch.no_grad():
        network.empty_string_feat.copy_(text.encode([""]).tokens[0])
        network.latent_mean.copy_(codec.latent_mean.view_as(network.latent_mean))
        network.latent_std.copy_(codec.latent_std.view_as(network.latent_std))
    network.empty_string_feat.requires_grad_(False)
    return network.to(device)


class Trainer:
    """Owns the network, its EMA, the optimizer and all random state of one run."""

    def __init__(self, network: V2ANetwork, features: FeatureSet, cfg: TrainConfig,
                 out: Path, device: torch.device, preset_name: str) -> None:
        self.network, self.features, self.cfg = network, features, cfg
        self.out, self.device, self.preset_name = out, device, preset_name
        self.ema = copy.deepcopy(network).requires_grad_(False)
        params = [p for p in network.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.95),
        )
        self.step = 0
        self.generator = make_generator(device, cfg.seed)
        self.order = np.random.default_rng(cfg.seed)
        self.settings = TrainingSettings(picture_dropout=cfg.picture_dropout,
                                         text_dropout=cfg.text_dropout,
                                         low_t_fraction=cfg.low_t_fraction,
                                         low_t_max=cfg.low_t_max)

    # -- checkpoints --------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save(self) -> None:
        state = {
            "step": self.step,
            "model": self.network.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "order": self.order.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "config": self.network.config.to_json(),
            "train": asdict(self.cfg),
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)  # never a half-written checkpoint
        save_network(self.ema, self.out / f"{self.preset_name}.safetensors",
                     extra_metadata={"step": self.step, "train": asdict(self.cfg)})

    def resume(self) -> None:
        # Everything onto the CPU first: random-generator states must stay CPU tensors;
        # load_state_dict moves weights and optimizer moments to the network's device.
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        if NetworkConfig.from_json(state["config"]) != self.network.config:
            raise SystemExit(f"{self.checkpoint_path} was trained with another network config; "
                             "use a new --out folder")
        self.network.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.order.bit_generator.state = state["order"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.step = int(state["step"])

    # -- training -----------------------------------------------------------------------------

    def train_step(self) -> float:
        cfg = self.cfg
        indices = torch.from_numpy(self.order.integers(0, len(self.features), cfg.batch))
        latent, clip, sync, text = self.features.batch(indices, self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, cfg)
        self.network.train()
        with autocast_for(self.device, training=True):
            loss = training_loss(self.network, latent, clip, sync, text, settings=self.settings,
                                 generator=self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), cfg.grad_clip)
        self.optimizer.step()
        update_ema(self.ema, self.network, self.step, cfg.ema_decay)
        self.step += 1
        return float(loss.detach())

    def run(self) -> None:
        cfg = self.cfg
        losses: list[float] = []
        started, start_step = time.monotonic(), self.step
        with (self.out / "log.jsonl").open("a") as journal:
            while self.step < cfg.steps:
                losses.append(self.train_step())
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.monotonic() - started
                    rate = (self.step - start_step) / max(elapsed, 1e-9)
                    record = {"step": self.step, "loss": float(np.mean(losses)),
                              "lr": learning_rate(self.step - 1, cfg), "steps_per_s": rate,
                              "elapsed_s": elapsed}
                    journal.write(json.dumps(record) + "\n")
                    journal.flush()
                    eta = (cfg.steps - self.step) / max(rate, 1e-9)
                    log.info("step %d/%d  loss %.4f  lr %.2e  %.2f steps/s  eta %.0f s",
                             self.step, cfg.steps, record["loss"], record["lr"], rate, eta)
                    losses.clear()
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()


def load_features(spec: str, config: NetworkConfig, out: Path, visual: VisualEncoder,
                  text: TextEncoder, codec: AudioCodec) -> FeatureSet:
    """The training examples as features: loaded from DIR/features when this run computed them
    before (same --data), else computed now and kept there."""
    cache = out / "features"
    stamp = cache / "source.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("data") == spec:
        features = FeatureSet.load(cache)
    else:
        dataset = open_dataset(spec, config.window_s)
        if isinstance(dataset, FeatureSet):
            features = dataset
        else:
            log.info("computing features of %d examples (once; kept in %s)", len(dataset), cache)
            features = precompute(dataset, config, visual, text, codec)
            features.save(cache)
            stamp.write_text(json.dumps({"data": spec}) + "\n")
    features.check(config)
    return features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.model.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny", help="network preset (default tiny)")
    parser.add_argument("--data", required=True, help="features folder, video folder or module:factory?k=v")
    parser.add_argument("--steps", type=int, required=True, help="train until this many steps in all")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, weights, log)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay")
    parser.add_argument("--picture-dropout", type=float, default=0.1)
    parser.add_argument("--text-dropout", type=float, default=0.1)
    parser.add_argument("--low-t", type=float, default=0.0,
                        help="share of samples with t < --low-t-max, where the conditions "
                             "decide the overall sound (0.25 for the shipped weights' last stage)")
    parser.add_argument("--low-t-max", type=float, default=TrainingSettings.low_t_max)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|mps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    config = preset(args.config)
    device = pick_device(args.device)
    cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                      ema_decay=args.ema, picture_dropout=args.picture_dropout,
                      text_dropout=args.text_dropout, low_t_fraction=args.low_t,
                      low_t_max=args.low_t_max, seed=args.seed, log_every=args.log_every,
                      save_every=args.save_every)
    args.out.mkdir(parents=True, exist_ok=True)
    if (args.out / "checkpoint.pt").is_file() and not args.resume:
        print(f"{args.out} already holds a run; pass --resume to continue it or choose another --out",
              file=sys.stderr)
        return 2
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    visual, text, codec = MotionFeatures(), MiniLMText(config.text_seq_len), MelCodec()
    try:
        features = load_features(args.data, config, args.out, visual, text, codec)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    network = prepare_network(config, text, codec, device)
    trainer = Trainer(network, features, cfg, args.out, device, args.config)
    if args.resume:
        if not trainer.checkpoint_path.is_file():
            print(f"nothing to resume in {args.out}", file=sys.stderr)
            return 2
        trainer.resume()
        log.info("resumed at step %d", trainer.step)
    log.info("training %s on %s: %d examples, batch %d, %d steps", args.config, device,
             len(features), cfg.batch, cfg.steps)
    trainer.run()
    log.info("weights: %s", args.out / f"{args.config}.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
