"""The recipe that trains the embedded default model (`tiny`) on the procedural world.

Two stages, runnable together or as separate processes (so features are computed while the
network already trains on the first shards):

    # 1. world clips -> network inputs, in shards (resumable)
    python -m daemon.model.train_default precompute --data /tmp/v2a-world --clips 2400
    # 2. flow-matching training on whatever shards exist (picks up new ones as they appear)
    python -m daemon.model.train_default train --data /tmp/v2a-world --work /tmp/v2a-train \
        --steps 6000 --deadline 2026-11-22T00:00 --out daemon/model/weights/tiny.safetensors
    # the mean of two stages' weights (how the shipped file was made), and a running one's
    python -m daemon.model.train_default average a.safetensors b.safetensors --out mean
    python -m daemon.model.train_default export --work /tmp/v2a-train --out now

Training: conditional flow matching (daemon.model.flow.training_loss: logit-normal t, with
`--low-t` of the samples at t < `--low-t-max`; 10 % picture (`--picture-dropout`) and 10 % text
dropout to the learned empty features; with `--onset-weight`, the tokens where a sound starts
weigh more in the loss), AdamW (the caption's path optionally at
`--condition-lr-scale` x the rate), linear warm-up from where each invocation starts, then a
constant or (`--decay`) cosine-decaying rate, gradient clipping, an exponential moving average
of the weights (what is shipped), latent statistics fitted on the data, a gain augmentation (a
constant added to the log-mel latent = the same sound louder or quieter). It checkpoints
every `--save-every` steps and resumes from the checkpoint in `--work`. It stops at `--steps`
or at `--deadline` (UTC), whichever comes first, and records the step count reached in the
weights' metadata.

Why not `python -m daemon.model.train` (which also trains on the world, through
`daemon.model.world.dataset:WorldDataset`)? That entry point computes a dataset's features once
and trains on a fixed FeatureSet with the codec's latent statistics and the encoding of "" as
the empty text. This recipe is the one the shipped weights came from and differs on purpose:
it trains while the world's shards are still being written (picking new ones up), fits the
latent statistics to the world's audio, learns its empty text, augments gain, and stops at a
wall-clock deadline with the rate decayed to it. Both share the loss, the EMA and the network.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import multiprocessing
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from daemon.model import events
from daemon.model.checkpoint import file_metadata, load_network, save_network
from daemon.model.codec import MelCodec
from daemon.model.config import NetworkConfig, preset
from daemon.model.engine import pick_device
from daemon.model.events import DETECTOR_FILE, EventDetector
from daemon.model.flow import (
    TrainingSettings,
    autocast_for,
    fit_latent_statistics,
    make_generator,
    onset_weights,
    precision_name,
    training_loss,
)
from daemon.model.network import build_network
from daemon.model.train import cosine_decay, update_ema
from daemon.model.visual import PICTURE_RANGE_FILE, MotionFeatures, PictureRange, VisualFeatures
from daemon.model.world.clip import WorldConfig
from daemon.model.world.dataset import WorldShards, precompute_shards, training_pictures


def _log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", flush=True)


def precompute(args) -> None:
    if args.workers > 1:
        # Processes, not threads: the world and the front ends are mostly single-threaded
        # numpy and FFmpeg work. Each writes every n-th shard; shards appear whole.
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers) as pool:
            pool.starmap(_precompute_part, [(args, (k, args.workers))
                                            for k in range(args.workers)])
        return
    _precompute_part(args, (0, 1))


def _precompute_part(args, part: tuple[int, int]) -> None:
    torch.set_num_threads(args.threads)
    start = args.first_seed
    precompute_shards(range(start, start + args.clips), args.data, world_config(args.world),
                      shard_size=args.shard_size, log=_log, part=part, detector=args.detector,
                      negation=args.negation, sharpness=args.sharpness)


def world_config(settings: list[str]) -> WorldConfig:
    """WorldConfig() with `name=value` settings (e.g. music_probability=1) changed."""
    fields = {f.name: f for f in dataclasses.fields(WorldConfig)}
    changes = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        if name not in fields or not value:
            raise SystemExit(f"--world {setting!r}: give name=value with a name of WorldConfig "
                             f"({', '.join(fields)})")
        kind = type(getattr(WorldConfig(), name))
        if kind is tuple:
            raise SystemExit(f"--world {name}: a pair cannot be set here")
        changes[name] = kind(float(value)) if kind is int else kind(value)
    return WorldConfig(**changes)


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    deadline = (datetime.fromisoformat(args.deadline).replace(tzinfo=UTC).timestamp()
                if args.deadline else math.inf)

    data = WorldShards(args.data)
    while len(data) < args.min_clips:
        _log(f"waiting for data: {len(data)} clips in {args.data}")
        time.sleep(20)
        data.refresh()

    device = pick_device(args.device)
    # The sync width comes from the data: the weight-free features alone, or with the
    # contact detector's channels (precompute --detector); so does reading negation
    # (precompute --negation).
    network = build_network(preset(args.preset).with_(sync_dim=data.tensors["sync"].shape[-1],
                                                      reads_negation=data.has_negation))
    settings = TrainingSettings(logit_normal_mean=args.t_mean,
                                picture_dropout=args.picture_dropout,
                                low_t_fraction=args.low_t, low_t_max=args.low_t_max)
    fit_latent_statistics(network, data.tensors["latent"].float())
    codec = MelCodec()  # the shards' latents are its log-mel tokens
    network.to(device)
    optimiser = _optimiser(network, args.lr, args.condition_lr_scale)
    ema = copy.deepcopy(network).requires_grad_(False)
    step, spent = 0, 0.0
    checkpoint = work / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False, map_location=device)
        network.load_state_dict(_widened(state["network"], network))
        ema.load_state_dict(_widened(state["ema"], ema))
        _load_optimiser_state(optimiser, state["optimiser"], network)
        step, spent = state["step"], state["seconds"]
        _log(f"resumed at step {step}")
    elif args.init:
        step, spent = _start_from_weights(Path(args.init), network, ema)
        _log(f"started from {args.init} at step {step} (the optimiser's moments start at zero)")

    generator = torch.Generator().manual_seed(args.seed + step)  # batches and gains
    # The noise, t and dropout are drawn where the network is (on the CPU, the same stream).
    noise_generator = (generator if device.type == "cpu"
                       else make_generator(device, args.seed + step))
    losses: list[float] = []
    started = time.time() - spent
    # The rate decays (cosine, to --min-lr x lr) over what this invocation has left: from the
    # step it starts at to --steps, or to --deadline if that comes first.
    first_step, first_time = step, time.time()

    def remaining_fraction_done() -> float:
        by_steps = (step - first_step) / max(1, args.steps - 1 - first_step)  # 1 at the last
        by_time = ((time.time() - first_time) / (deadline - first_time)
                   if math.isfinite(deadline) else 0.0)
        return min(1.0, max(by_steps, by_time))

    while step < args.steps and time.time() < deadline:
        index = torch.randint(len(data), (args.batch,), generator=generator)
        batch = {k: v.to(device, non_blocking=True) for k, v in data.batch(index).items()}
        gain = torch.empty(args.batch, 1, 1).uniform_(-1.0, 0.5, generator=generator).to(device)
        # Warm up from where this invocation starts: a resumed run may bring a new rate.
        rate = args.lr * min(1.0, (step - first_step + 1) / args.warmup)
        if args.decay:
            rate *= cosine_decay(remaining_fraction_done(), args.min_lr)
        for group in optimiser.param_groups:
            group["lr"] = rate * group["lr_scale"]
        weights = (onset_weights(codec.token_onsets(batch["latent"]), args.onset_rise,
                                 args.onset_weight) if args.onset_weight else None)
        with autocast_for(device, training=True):
            loss = training_loss(network, batch["latent"] + gain, batch["clip"], batch["sync"],
                                 batch["text"], settings=settings, generator=noise_generator,
                                 token_weights=weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimiser.step()
        step += 1
        update_ema(ema, network, step, args.ema)  # buffers (latent statistics) never change
        losses.append(loss.item())
        if step % args.log_every == 0:
            elapsed = time.time() - started
            _log(f"step {step} loss {sum(losses) / len(losses):.4f} lr {rate:.2e} clips {len(data)} "
                 f"{elapsed / step:.2f} s/step elapsed {elapsed / 60:.1f} min")
            losses.clear()
        if step % args.save_every == 0:
            _save_checkpoint(checkpoint, network, ema, optimiser, step, time.time() - started)
            data.refresh()
    seconds = time.time() - started
    _save_checkpoint(checkpoint, network, ema, optimiser, step, seconds)
    record = {
        "recipe": "daemon.model.train_default",
        "steps": step, "batch": args.batch, "lr": args.lr, "ema": args.ema,
        "condition_lr_scale": args.condition_lr_scale, "picture_dropout": args.picture_dropout,
        "low_t_fraction": args.low_t, "low_t_max": args.low_t_max,
        **({"onset_weight": args.onset_weight, "onset_rise": args.onset_rise}
           if args.onset_weight else {}),
        "decay": f"cosine to {args.min_lr} x lr from step {first_step}" if args.decay else None,
        "clips": len(data), "train_seconds": round(seconds),
        "hardware": (torch.cuda.get_device_name(device) if device.type == "cuda" else
                     f"{platform.processor() or platform.machine()}, {args.threads} CPU threads"),
        "precision": precision_name(device, training=True),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # Half precision keeps the shipped file under 30 MB (7.9 M parameters); the engine loads
    # it into float32.
    path = save_network(copy.deepcopy(ema).cpu().half(), args.out, extra_metadata={"training": record})
    (work / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    _log(f"saved {path} after {step} steps ({seconds / 60:.1f} min)")


# The path a caption takes into the network (its projections, the summary that modulates every
# block, the text stream of the joint blocks, the learned empty text): a saddle that plain
# training leaves almost untouched on CPU budgets; --condition-lr-scale speeds it up.
CONDITION_PATH = ("text_input_proj.", "text_cond_proj.", "clip_cond_proj.", "global_cond_mlp.",
                  "empty_string_feat")


def _on_condition_path(name: str) -> bool:
    return name.startswith(CONDITION_PATH) or ".text_block." in name


def _optimiser(network, lr: float, condition_lr_scale: float) -> torch.optim.AdamW:
    """AdamW with two groups: the caption's path at `condition_lr_scale` x the rate, the rest
    at the rate (each group's `lr_scale` multiplies the scheduled rate)."""
    named = list(network.named_parameters())
    groups = [
        {"params": [p for n, p in named if not _on_condition_path(n)], "lr_scale": 1.0},
        {"params": [p for n, p in named if _on_condition_path(n)],
         "lr_scale": condition_lr_scale},
    ]
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), weight_decay=0.01)


def _load_optimiser_state(optimiser: torch.optim.AdamW, saved: dict, network) -> None:
    """Resume the moments of every parameter, whatever grouping the checkpoint was saved with
    (checkpoints from before the two groups have one), and of a network whose sync input grew
    (the new channels' moments start at zero)."""
    if len(saved["param_groups"]) == len(optimiser.param_groups):
        scales = [g["lr_scale"] for g in optimiser.param_groups]
        optimiser.load_state_dict(saved)
        for group, scale in zip(optimiser.param_groups, scales, strict=True):
            group["lr_scale"] = scale
    else:
        # Saved ids number the parameters in the order of the saved groups; a single group
        # holds them in network.parameters() order.
        order = [i for g in saved["param_groups"] for i in g["params"]]
        parameters = list(network.parameters())
        for index, parameter in zip(order, parameters, strict=True):
            if index in saved["state"]:
                optimiser.state[parameter] = dict(saved["state"][index])
    for parameter in network.parameters():
        moments = optimiser.state.get(parameter, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in moments and moments[key].shape != parameter.shape:
                moments[key] = _zero_padded(moments[key], parameter.shape)


def _zero_padded(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`tensor` grown to `shape` with zeros after its own values in every dimension."""
    if len(shape) != tensor.dim() or any(new < old for new, old in zip(shape, tensor.shape, strict=True)):
        raise ValueError(f"cannot grow {tuple(tensor.shape)} to {tuple(shape)}")
    grown = tensor.new_zeros(shape)
    grown[tuple(slice(0, n) for n in tensor.shape)] = tensor
    return grown


def _widened(state: dict[str, torch.Tensor], network) -> dict[str, torch.Tensor]:
    """A checkpoint trained on fewer sync channels, fitted to `network`: the new channels'
    weights start at zero, so the resumed network computes exactly what it did and learns to
    use them from there."""
    own = network.state_dict()
    widened = dict(state)
    for name in SYNC_INPUTS:
        if name in state and state[name].shape != own[name].shape:
            widened[name] = _zero_padded(state[name], own[name].shape)
    return widened


# The parameters that take sync features in (their last input dimension is sync_dim).
SYNC_INPUTS = ("sync_input_proj.0.weight", "sync_pos_emb", "empty_sync_feat")


def _start_from_weights(path: Path, network, ema) -> tuple[int, float]:
    """Fill a new run's network and EMA from shipped weights (the EMA of a checkpoint, in half
    precision) when no checkpoint is left to resume: training goes on from them with fresh
    optimiser moments. Returns the steps and seconds the file's training record counts."""
    from daemon.model.checkpoint import file_metadata, read_state_dict

    state, _ = read_state_dict(path)
    state = {k: v.float() for k, v in _widened(state, network).items()}
    for model in (network, ema):
        model.load_state_dict(state, strict=True)
        model.reset_derived_buffers()
    record = json.loads(file_metadata(path).get("training", "{}"))
    return int(record.get("steps", 0)), float(record.get("train_seconds", 0.0))


def export(args) -> None:
    """Write the EMA weights of the latest checkpoint in `--work` (e.g. to evaluate a run
    while it is still training)."""
    state = torch.load(Path(args.work) / "checkpoint.pt", weights_only=False, map_location="cpu")
    if "config" in state:
        network = build_network(NetworkConfig.from_json(state["config"]))
    else:  # checkpoints from before they named their config
        sync_dim = state["ema"]["empty_sync_feat"].shape[-1]
        network = build_network(preset(args.preset).with_(sync_dim=sync_dim))
    network.load_state_dict(state["ema"])
    record = {"recipe": "daemon.model.train_default", "steps": state["step"],
              "train_seconds": round(state["seconds"]), "exported_from": "checkpoint"}
    path = save_network(network.half(), args.out, extra_metadata={"training": record})
    _log(f"exported step {state['step']} to {path}")


def average(args) -> None:
    """Write the mean, parameter by parameter, of networks of one config (float16, like the
    shipped file). The shipped weights are such a mean of two stages: one keeps what the other
    unlearnt (model card). The record is the last network's training, with the parts named."""
    paths = [Path(p) for p in args.weights]
    shares = args.share or [1.0 / len(paths)] * len(paths)
    if len(paths) < 2 or len(shares) != len(paths) or min(shares) < 0 or sum(shares) <= 0:
        raise SystemExit("average needs two or more weights files and, with --share, one "
                         "non-negative share each (they are scaled to sum to 1)")
    shares = [w / sum(shares) for w in shares]
    networks = [load_network(p) for p in paths]
    for path, network in zip(paths[1:], networks[1:], strict=True):
        if network.config != networks[0].config:
            raise SystemExit(f"cannot average {paths[0].name} and {path.name}: their network "
                             "configs differ")
    states = [n.state_dict() for n in networks]
    mean = {k: (sum(w * s[k].float() for w, s in zip(shares, states, strict=True))
                if v.is_floating_point() else v) for k, v in states[0].items()}
    networks[0].load_state_dict(mean)
    records = [json.loads(file_metadata(p).get("training", "{}")) for p in paths]
    record = {**records[-1], "averaged": [{"file": p.name, "share": round(w, 6),
                                           "steps": r.get("steps")}
                                          for p, w, r in zip(paths, shares, records, strict=True)]}
    path = save_network(networks[0].half(), args.out, extra_metadata={"training": record})
    _log("saved " + str(path) + ": " + " + ".join(f"{w:.3g} x {p.name}"
                                                     for p, w in zip(paths, shares, strict=True)))


def picture_range(args) -> None:
    """Measure the range of the training pictures' features and write it beside the weights
    (`visual.PictureRange`): the engine holds the unfamiliar stretches of a picture within it."""
    seeds = list(range(args.first_seed, args.first_seed + args.clips))
    parts = [seeds[k::args.workers] for k in range(args.workers)]
    sharpness = (args.sharpness if args.sharpness is not None else events.SHARPNESS) \
        if args.detector else None
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            features = pool.starmap(training_picture_features,
                                    [(args.detector, part, sharpness) for part in parts])
    else:
        features = [training_picture_features(args.detector, seeds, sharpness)]
    span = PictureRange.spanning([f for part in features for f in part], args.share,
                                 args.sustained)
    span.save(args.out, {"seeds": f"{seeds[0]}-{seeds[-1]}", "share": args.share,
                         "detector": Path(args.detector).name if args.detector else None,
                         "sharpness": sharpness})
    _log(f"wrote {args.out}: the ranges of {len(seeds)} training pictures' values (inner: the "
         f"central {args.share:g})")


def training_picture_features(detector: str | None, seeds: list[int],
                              sharpness: float | None = None) -> list[VisualFeatures]:
    """The picture features of training seeds as the engine reads them, with the contact
    detector at `detector` (None: without it), its channels sharpened to `sharpness` (None:
    `events.SHARPNESS`); one thread, for one worker process."""
    torch.set_num_threads(1)
    contacts = EventDetector.load(detector, sharpness) if detector else None
    return list(training_pictures(seeds, MotionFeatures(contacts=contacts)))


def _save_checkpoint(path: Path, network, ema, optimiser, step: int, seconds: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"network": network.state_dict(), "ema": ema.state_dict(),
                "optimiser": optimiser.state_dict(), "step": step, "seconds": seconds,
                "config": network.config.to_json()}, tmp)
    tmp.rename(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("precompute", help="world clips -> network input shards")
    p.add_argument("--data", required=True)
    p.add_argument("--clips", type=int, default=2400)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--detector", default=None,
                   help="event_detector.safetensors: add its contact channels to the sync features")
    p.add_argument("--sharpness", type=float, default=None,
                   help="sharpen the contact channels to this power (default: as the engine "
                        "reads them, daemon.model.events.SHARPNESS; 1 for the channels the "
                        "shipped network was trained on)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes writing shards side by side (e.g. one per CPU core)")
    p.add_argument("--negation", type=float, default=0.0,
                   help="each clip's chance of a negative caption naming sounds it then "
                        "leaves out of the mix (the picture still shows them); a network "
                        "trained on such shards reads negative prompts in its text")
    p.add_argument("--world", nargs="*", default=[], metavar="NAME=VALUE",
                   help="draw the clips from a changed world, e.g. music_probability=1 "
                        "max_event_sources=1 (names of daemon.model.world.WorldConfig)")
    t = sub.add_parser("train", help="train on the shards")
    t.add_argument("--data", required=True)
    t.add_argument("--work", required=True)
    t.add_argument("--out", default="daemon/model/weights/tiny.safetensors")
    t.add_argument("--preset", default="tiny")
    t.add_argument("--steps", type=int, default=6000)
    t.add_argument("--init", default=None,
                   help="start a new --work from these weights (e.g. the shipped ones) when it "
                        "holds no checkpoint; a checkpoint there wins")
    t.add_argument("--deadline", default=None, help="UTC, e.g. 2026-11-22T00:00")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup", type=int, default=150)
    t.add_argument("--decay", action="store_true",
                   help="cosine-decay the rate over the rest of this run (to --steps or --deadline)")
    t.add_argument("--min-lr", type=float, default=0.1, help="final rate as a fraction of --lr")
    t.add_argument("--t-mean", type=float, default=0.0,
                   help="mean of the logit-normal t; below 0 trains more where the sound is mostly "
                        "noise, which is where the picture and caption carry the most")
    t.add_argument("--low-t", type=float, default=0.0,
                   help="fraction of samples with t drawn from [0, --low-t-max): where the "
                        "caption and picture decide the clip's overall sound")
    t.add_argument("--low-t-max", type=float, default=TrainingSettings.low_t_max,
                   help="upper end of those samples' t; 25 Euler steps evaluate 0, 0.04, 0.08, "
                        "0.12 before the noisy latent shows the clip's overall spectrum")
    t.add_argument("--picture-dropout", type=float, default=0.1,
                   help="chance a sample's picture is replaced by the empty features; the "
                        "caption then has to carry the whole sound")
    t.add_argument("--condition-lr-scale", type=float, default=1.0,
                   help="rate multiplier for the caption's path into the network")
    t.add_argument("--onset-weight", type=float, default=0.0,
                   help="extra weight in the loss on the tokens where a sound starts and the "
                        "token after (1 + this; 0: every token alike)")
    t.add_argument("--onset-rise", type=float, default=0.5,
                   help="mean log-mel rise over the bands, in nats, from which a token counts as "
                        "a start (0.5: about the loudest 7 %% of the world's tokens)")
    t.add_argument("--ema", type=float, default=0.998)
    t.add_argument("--min-clips", type=int, default=300)
    t.add_argument("--log-every", type=int, default=25)
    t.add_argument("--save-every", type=int, default=200)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--device", default="auto",
                   help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps")
    e = sub.add_parser("export", help="EMA weights of the latest checkpoint -> safetensors")
    e.add_argument("--work", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--preset", default="tiny")
    a = sub.add_parser("average", help="the mean of several weights files -> safetensors")
    a.add_argument("weights", nargs="+", help="weights files of one network config")
    a.add_argument("--out", required=True)
    a.add_argument("--share", type=float, nargs="+", default=None,
                   help="each file's share of the mean (default: equal)")
    r = sub.add_parser("picture-range",
                       help="the range of the training pictures' features -> safetensors")
    r.add_argument("--out", default=f"daemon/model/weights/{PICTURE_RANGE_FILE}")
    r.add_argument("--clips", type=int, default=800)
    r.add_argument("--first-seed", type=int, default=0)
    r.add_argument("--detector", default=f"daemon/model/weights/{DETECTOR_FILE}",
                   help="the contact detector whose channels the network reads ('' for none)")
    r.add_argument("--sharpness", type=float, default=None,
                   help="the contact channels' sharpness (default: as the engine reads them, "
                        "daemon.model.events.SHARPNESS)")
    r.add_argument("--share", type=float, default=0.98,
                   help="the central share of each channel's values that the inner range, "
                        "where an unfamiliar picture is held, keeps")
    r.add_argument("--sustained", type=float, default=0.9,
                   help="a stretch of the picture (visual.STRETCH_S) with a channel outside "
                        "every training value for more than this share of its frames is "
                        "unfamiliar")
    r.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    {"precompute": precompute, "train": train, "export": export, "average": average,
     "picture-range": picture_range}[args.command](args)


if __name__ == "__main__":
    main()
