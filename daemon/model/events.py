"""A small learned detector of visible contacts: on which 25 fps frame something hits.

The weight-free sync features (`visual.MotionFeatures`) show flashes and door slams on their
exact frame, but a foot plant or a small object landing barely moves their grid averages: a
walking figure keeps moving at the same speed, and only its legs say when a foot lands: their
spread peaks and the swinging foot stops, a pixel or so a frame at 128x72. So this detector
looks at the luminance at 128x72, twice the size the weight-free features use, and at the
frames around each output frame (the shipped build: 13 before it to 12 after, a whole stride
of a slow walk): a small convolutional network over each frame, then convolutions over time
and space, pooled over the whole picture (max and mean), so it finds a contact wherever it is
in the frame. It gives one probability per
family of contact (impact, footsteps, flash, door) for every frame of the sync stream; the
network sees them as extra sync channels.

Its channels carry the mean of what it says of the picture and of the picture's mirror image
(`EventDetector.probabilities`). It is trained on world clips with known contact frames, apart
from the flow model's own training clips, and stored next to the network's weights; the shipped
(fourth) build in two runs, the second on mirrored and re-lit clips (one command line each):

    python -m daemon.model.events train --width 32 --blocks 3 --clips 1600 --steps 7000
        --out third.safetensors
    python -m daemon.model.events train --init third.safetensors --clips 3200 --steps 3000
        --lr 1e-3 --augment --out daemon/model/weights/event_detector.safetensors

A third run on clips moved by up to three pixels too (`--augment --shift`) raised the held-out
footsteps AP to 0.861 but not the sync on clips it had not been chosen on; it is not shipped
(model card, "A fifth build").

A detector of luminance is blind to a figure as bright as the ground behind it (a pale walker
on sand). `--colour` trains one that looks at RGB (`planes` 3; a detector of luminance given to
`--init` starts as the same function of RGB, `EventDetector.coloured`, and the colour planes are
shuffled per clip): 2,500 steps from the shipped build took held-out footsteps AP 0.839 ->
0.872, but the sync on fresh clips moved within chance (onset F1 0.800 -> 0.807), so it is not
shipped either (model card, "The detector and colour"). The picture features make the detail
a detector reads (`planes`), so such a build beside the weights is read in colour.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from daemon.media import BT709, luminance
from daemon.model.checkpoint import file_metadata

FAMILIES = ("impact", "footsteps", "flash", "door")
"""Contact families, one output each (world classes: impact_*, footsteps_*, zap/click,
door_slam)."""
DETECTOR_FILE = "event_detector.safetensors"
"""Its name beside the network weights trained with its channels."""
REACH = 3  # frames each side of each convolution over time
CONTEXT = 3 * REACH + 1
"""Frames each side that an output frame of the default build (two blocks) depends on: a reach
per block and the head's, and the change from the frame before adds one."""
SCALE = 4.0  # a certain contact is 4.0 in the sync stream, like a strong motion feature
SHARPNESS = 2.0
"""The sync channels carry each probability sharpened to this power (`sharpened`): what the
detector is fairly sure of reads surer, and a faint stir (a stray peak of a quarter, a shadow
crossing) fainter. On three sets of 96 held-out clips the network then makes fewer sounds where
there was no contact (false onsets 102 -> 82, 103 -> 88, 129 -> 106) and nearly every contact it
made before: onset F1 +0.017, +0.007 and +0.006, for about 3 points of prompt adherence (the
sharper hits make a few prompted footsteps knocks; model card, "The detector's channels
sharpened"). At 4 the network lost nearly a quarter of the contacts it made."""
DETECTOR_SEEDS = range(500_000, 600_000)
"""Training seeds of the detector: inside the world's training range, apart from the flow
model's own training clips (0..~10 000) and the audio classifier's (600 000..)."""


def sharpened(probability: torch.Tensor, power: float = SHARPNESS) -> torch.Tensor:
    """p^k / (p^k + (1 - p)^k) for k = `power`: the odds raised to the power, so 0, 1/2 and 1
    stay where they are, 0.75 becomes 0.9 (k = 2) and 0.25 becomes 0.1. The same as scaling the
    detector's logit by k, and exact for a probability of 0 or 1."""
    high, low = probability.pow(power), (1.0 - probability).pow(power)
    return high / (high + low)


def moved(luma: torch.Tensor, rows: int, cols: int = 0) -> torch.Tensor:
    """(..., H, W) pictures moved up by `rows` rows and left by `cols` columns, the bottom row
    and the right column repeated into the space they leave."""
    if rows:
        bottom = luma[..., -1:, :].expand(*luma.shape[:-2], rows, luma.shape[-1])
        luma = torch.cat([luma[..., rows:, :], bottom], dim=-2)
    if cols:
        right = luma[..., -1:].expand(*luma.shape[:-1], cols)
        luma = torch.cat([luma[..., cols:], right], dim=-1)
    return luma


def family_of(cls: str) -> str | None:
    """The contact family of a world event class, or None (whooshes are not contacts)."""
    if cls.startswith("impact_"):
        return "impact"
    if cls.startswith("footsteps_"):
        return "footsteps"
    return {"zap": "flash", "click": "flash", "door_slam": "door"}.get(cls)


class EventDetector(nn.Module):
    """(B, T, 72, 128) luminance, or (B, T, 3, 72, 128) RGB for a detector of three `planes`,
    in [0, 1] -> (B, T, len(FAMILIES)) contact logits.

    Each frame first on its own: its levels and its change from the frame before, through two
    convolutions that each halve the size (to 32x18, `width` channels). Then time: `blocks`
    blocks of a 3x3 convolution in space and one over 2 x REACH + 1 frames, and after pooling
    over the picture (max and mean) a last one over frames. A foot plant is where a leg's swing
    turns, and the turn only shows across several frames, hence the reach in time: `context`
    frames before, one fewer after. The file records the width and the blocks."""

    input_size = (128, 72)  # width, height: `Picture.detail` of a 64x36 picture

    def __init__(self, width: int = 24, blocks: int = 2, planes: int = 1) -> None:
        super().__init__()
        if planes not in (1, 3):
            raise ValueError(f"a detector looks at luminance (1 plane) or RGB (3), not {planes} planes")
        self.width, self.blocks, self.planes = width, blocks, planes
        self.context = (blocks + 1) * REACH + 1
        """Frames each side that an output frame depends on."""
        self.frame = nn.Sequential(
            nn.Conv2d(2 * planes, 16, 4, padding=1, stride=2), nn.GELU(),
            nn.Conv2d(16, width, 3, padding=1, stride=2), nn.GELU(),
        )
        self.space = nn.ModuleList(nn.Conv3d(width, width, (1, 3, 3), padding=(0, 1, 1))
                                   for _ in range(blocks))
        self.time = nn.ModuleList(nn.Conv3d(width, width, (2 * REACH + 1, 1, 1), padding=(REACH, 0, 0))
                                  for _ in range(blocks))
        self.head = nn.Conv1d(2 * width, len(FAMILIES), 2 * REACH + 1, padding=REACH)
        self.outputs = len(FAMILIES)
        self.sharpness = SHARPNESS
        """How `features` sharpens the probabilities (1: not at all, as the shipped network's
        training shards had them)."""

    def forward(self, pictures: torch.Tensor) -> torch.Tensor:
        if pictures.dim() == 4:  # (B, T, H, W): one plane
            pictures = pictures[:, :, None]
        b, t, planes, h, w = pictures.shape
        if planes != self.planes:
            raise ValueError(f"this detector looks at {self.planes} planes, not {planes}")
        # Levels relative to each frame's mean (exposure and flashes aside), and the change from
        # the frame before at a scale where a small movement is about 1, for each plane.
        levels = pictures - pictures.mean(dim=(3, 4), keepdim=True)
        changes = 10.0 * torch.diff(levels, dim=1, prepend=levels[:, :1])
        x = self.frame(torch.cat([levels, changes], dim=2).reshape(b * t, 2 * planes, h, w))
        x = x.reshape(b, t, *x.shape[1:]).transpose(1, 2)  # (B, C, T, h, w)
        for space, time_ in zip(self.space, self.time, strict=True):
            x = x + time_(F.gelu(space(x)))
            x = F.gelu(x)
        pooled = torch.cat([x.amax(dim=(3, 4)), x.mean(dim=(3, 4))], dim=1)  # (B, 2C, T)
        return self.head(pooled).transpose(1, 2)

    @torch.no_grad()
    def features(self, detail: np.ndarray, shown: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Sync channels of the frames `detail[shown]` ((N, 72, 128, 3) uint8 RGB, or (N, 72,
        128) uint8 luminance; one index per output frame) -> (T, len(FAMILIES)) float32: SCALE
        x the probability of a contact on each frame, `sharpened` to `self.sharpness`, a chunk
        of frames at a time, so long pictures stay small.

        The probability is the mean of the picture's and its mirror image's (`probabilities`):
        a contact is one whichever way round it is seen. A detector of luminance (the shipped
        one) reads an RGB picture's luminance (`daemon.media.luminance`, as it was trained); a
        detector of colour (`planes` 3, `events train --colour`) reads RGB. Reading each colour
        plane with the detector of luminance was tried and not kept (model card, "The detector
        and colour")."""
        planes = detail.shape[3] if detail.ndim == 4 else 0
        if detail.shape[1:3] != self.input_size[::-1] or planes not in (0, 3):
            got = f"{detail.shape[2]}x{detail.shape[1]}" + (f" x {planes}" if detail.ndim == 4 else "")
            raise ValueError(f"the contact detector looks at {self.input_size[0]}x{self.input_size[1]} "
                             f"RGB or luminance, not {got}")
        if self.planes == 3 and planes != 3:
            raise ValueError("this contact detector looks at RGB: give it the picture's detail in "
                             "colour, (N, 72, 128, 3)")
        if self.planes == 1 and planes:
            detail = luminance(detail)
        parts = []
        for start in range(0, len(shown), chunk):
            # Each chunk carries its context's neighbours so the seams are exact.
            lo = max(0, start - self.context)
            hi = min(len(shown), start + chunk + self.context)
            chance = self.probabilities(_seen(torch.from_numpy(detail[shown[lo:hi]])[None]))[0]
            parts.append(chance[start - lo:start - lo + min(chunk, len(shown) - start)])
        return (SCALE * sharpened(torch.cat(parts), self.sharpness)).numpy().astype(np.float32)

    def probabilities(self, luma: torch.Tensor) -> torch.Tensor:
        """(B, T, 72, 128) luminance (or (B, T, 3, 72, 128) RGB) in [0, 1] -> (B, T,
        len(FAMILIES)) probabilities of a
        contact: the mean of what the detector says of the picture and of its mirror image. A
        contact is one whichever way round it is seen (the fourth build was trained on mirrored
        clips, so a door closing from the right is as familiar as one closing from the left),
        and where one view is unsure of a foot plant the other often is not (held-out footsteps
        AP 0.789 from one view, 0.818 from both, for the third build; 0.81 and 0.839 for the
        fourth)."""
        both = self(torch.cat([luma, luma.flip(-1)]))
        return torch.sigmoid(both).view(2, *luma.shape[:2], -1).mean(0)

    def save(self, path: str | Path, meta: dict) -> None:
        width, height = self.input_size
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path),
                  metadata={"families": ",".join(FAMILIES), "input": f"{width}x{height}",
                            "planes": str(self.planes),
                            "width": str(self.width), "blocks": str(self.blocks),
                            "meta": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path, sharpness: float | None = None) -> EventDetector:
        """The detector saved at `path`, its channels sharpened to `sharpness` (None:
        `SHARPNESS`, as the engine reads them)."""
        metadata = file_metadata(path)
        families = metadata.get("families", "")
        if tuple(families.split(",")) != FAMILIES:
            raise ValueError(f"{path} detects {families!r}, this build expects {','.join(FAMILIES)}")
        size = "{}x{}".format(*cls.input_size)
        if metadata.get("input", "64x36") != size:
            raise ValueError(f"{path} looks at {metadata.get('input', '64x36')} pictures, this build "
                             f"at {size}: retrain it (python -m daemon.model.events train)")
        detector = cls(int(metadata.get("width", 24)), int(metadata.get("blocks", 2)),
                       int(metadata.get("planes", 1)))
        try:
            detector.load_state_dict(load_file(str(path)))
        except RuntimeError as exc:  # the layers of another build of the detector
            raise ValueError(f"{path} was made by another build of the contact detector: retrain it "
                             "(python -m daemon.model.events train)") from exc
        if sharpness is not None:
            detector.sharpness = sharpness
        return detector.eval().requires_grad_(False)

    def coloured(self) -> EventDetector:
        """A detector of RGB that computes on a colour picture what this one computes on its
        luminance (BT.709 weights on its first layer), to be trained further in colour."""
        if self.planes != 1:
            raise ValueError("this detector already looks at colour")
        out = EventDetector(self.width, self.blocks, planes=3)
        state = dict(self.state_dict())
        first = state["frame.0.weight"]  # (16, 2, k, k): levels, changes
        weights = torch.from_numpy(BT709).view(1, 3, 1, 1)
        state["frame.0.weight"] = torch.cat([first[:, :1] * weights, first[:, 1:] * weights], dim=1)
        out.load_state_dict(state)
        out.sharpness = self.sharpness
        return out.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Training on the world


def clip_luma_and_labels(seed: int, compress: bool | None = None,
                         colour: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One world clip as the detector sees it: (T, 72, 128) uint8 luminance of its frames
    ((T, 72, 128, 3) RGB with `colour`)
    (through H.264 at crf 20-29 for half of the seeds when `compress` is None, as footage is)
    and (T, families) 0/1 contact labels."""
    from daemon.model.visual import Picture
    from daemon.model.world import compress_frames, generate_clip

    clip = generate_clip(seed)
    rng = np.random.default_rng([seed, 11])
    if compress if compress is not None else rng.random() < 0.5:
        frames = compress_frames(clip.frames, clip.fps, crf=int(rng.integers(20, 30)))
    else:
        frames = clip.frames
    luma = Picture.from_frames(frames, clip.fps, detail=3 if colour else 1).detail
    return luma, contact_labels(clip.events, len(luma))


def contact_labels(events, frames: int) -> np.ndarray:
    """(frames, families) float32: 1 on the frame of each contact among a world clip's
    `events`, 0 elsewhere; what a perfect detector would say."""
    labels = np.zeros((frames, len(FAMILIES)), np.float32)
    for event in events:
        family = family_of(event.cls)
        if event.onset and family and 0 <= event.frame < frames:
            labels[event.frame, FAMILIES.index(family)] = 1.0
    return labels


def _world_set(seeds, workers: int, colour: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    # Spawned, not forked: a fork of a process whose other threads hold locks (torch's, a
    # tokenizer's) can hang in the child.
    with get_context("spawn").Pool(workers) as pool:
        rows = pool.map(partial(clip_luma_and_labels, colour=colour), list(seeds), chunksize=4)
    return (torch.from_numpy(np.stack([luma for luma, _ in rows])),
            torch.from_numpy(np.stack([labels for _, labels in rows])))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean precision at each true frame, frames ranked by score (1.0 is a perfect ranking)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(1.0, hits.sum()))


def _seen(pictures: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W) luminance or (B, T, H, W, 3) RGB, uint8 -> what the detector takes: floats
    in [0, 1], colour as (B, T, 3, H, W)."""
    seen = pictures.float() / 255.0
    return seen.permute(0, 1, 4, 2, 3) if seen.dim() == 5 else seen


def evaluate(detector: EventDetector, luma: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Average precision per family over all frames of the clips, of the probabilities the
    sync channels carry (both views: `EventDetector.probabilities`). `luma`: uint8 luminance
    (N, T, H, W), or RGB (N, T, H, W, 3) for a detector of colour."""
    with torch.no_grad():
        scores = torch.cat([detector.probabilities(_seen(luma[i:i + 1]))[0]
                            for i in range(len(luma))]).numpy()
    truth = labels.reshape(-1, len(FAMILIES)).numpy()
    return {family: round(average_precision(scores[:, k], truth[:, k]), 3)
            for k, family in enumerate(FAMILIES) if truth[:, k].any()}


def _augmented(luma: torch.Tensor, generator: torch.Generator, shift: bool = False) -> torch.Tensor:
    """(B, T, H, W) luminance (or (B, T, 3, H, W) RGB, its colour planes also put in a random
    order) in [0, 1], each clip mirrored left to right half of the time and
    its contrast about its mean scaled by 0.7..1.3: a contact is one whichever way round and
    however lit. (The third build, trained without, fitted its 1,600 clips to a loss of 0.002-0.007
    with held-out footsteps at AP 0.79, and training it further on 3,200 clips did not move that.)
    With `shift`, each clip is also moved by 0-3 rows and 0-3 columns (`moved`), so that it is
    seen at every phase of the detector's 4-pixel grid (the fourth build trained 3,000 steps so:
    held-out footsteps AP 0.839 -> 0.861; not shipped, see the module's docstring)."""
    b, ones = luma.shape[0], [1] * (luma.dim() - 1)
    mirrored = torch.rand(b, generator=generator) < 0.5
    luma = torch.where(mirrored.view(b, *ones), luma.flip(-1), luma)
    gain = 0.7 + 0.6 * torch.rand(b, *ones, generator=generator)
    mean = luma.mean(dim=tuple(range(1, luma.dim())), keepdim=True)
    luma = (mean + gain * (luma - mean)).clamp(0.0, 1.0)
    if luma.dim() == 5:  # (B, T, 3, H, W): the colours shuffled, so no hue is special
        order = torch.stack([torch.randperm(3, generator=generator) for _ in range(b)])
        luma = torch.stack([clip[:, plan] for clip, plan in zip(luma, order, strict=True)])
    if shift:
        rows = torch.randint(0, 4, (b,), generator=generator).tolist()
        cols = torch.randint(0, 4, (b,), generator=generator).tolist()
        luma = torch.stack([moved(clip, r, c) for clip, r, c in zip(luma, rows, cols, strict=True)])
    return luma


def train(out: Path, clips: int, test_clips: int, steps: int, workers: int, log=None,
          init: Path | None = None, lr: float = 2e-3, width: int = 24, blocks: int = 2,
          augment: bool = False, shift: bool = False, colour: bool = False) -> dict:
    """Train a detector for `steps` steps (a fresh one of `width` channels and `blocks` blocks
    over time, or `init` trained further; the learning rate warms up to `lr` and falls to a
    tenth of it; with `augment`, on mirrored and re-lit clips, and with `shift` too, moved:
    `_augmented`; with `colour`, on RGB pictures, a detector of luminance first made one of
    colour: `EventDetector.coloured`) and write it to `out`."""
    log = log or (lambda message: print(message, flush=True))
    torch.manual_seed(0)
    started = time.time()
    luma, labels = _world_set(DETECTOR_SEEDS[:clips], workers, colour)
    test_luma, test_labels = _world_set(range(1_950_000, 1_950_000 + test_clips), workers, colour)
    log(f"{clips} training clips, {test_clips} held-out clips made in {time.time() - started:.0f} s")
    detector = EventDetector.load(init) if init else EventDetector(width, blocks, 3 if colour else 1)
    if colour and detector.planes == 1:
        detector = detector.coloured()
    detector.train().requires_grad_(True)
    before = json.loads(file_metadata(init).get("meta", "{}")) if init else {}
    optimiser = torch.optim.AdamW(detector.parameters(), lr, weight_decay=1e-2)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / warmup) * (
        0.55 + 0.45 * np.cos(np.pi * min(1.0, s / steps))))
    generator = torch.Generator().manual_seed(before.get("steps", 0))  # a further stage draws anew
    span, batch = 64, 4
    # Contacts are rare (about 2 % of frames per family): weigh them up.
    pos_weight = torch.full((len(FAMILIES),), 5.0)
    for step in range(1, steps + 1):
        pick = torch.randint(len(luma), (batch,), generator=generator)
        start = int(torch.randint(0, luma.shape[1] - span + 1, (1,), generator=generator))
        seen = _seen(luma[pick, start:start + span])
        logits = detector(_augmented(seen, generator, shift) if augment else seen)
        losses = F.binary_cross_entropy_with_logits(logits, labels[pick, start:start + span],
                                                    pos_weight=pos_weight, reduction="none")
        # Frames near a cut made here (not the clip's own ends) miss part of their context.
        lo = 0 if start == 0 else detector.context
        hi = span if start + span == luma.shape[1] else span - detector.context
        loss = losses[:, lo:hi].mean()
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
    meta = {"steps": before.get("steps", 0) + steps, "clips": max(clips, before.get("clips", 0)),
            "seeds": f"{DETECTOR_SEEDS.start}..",
            "held_out_ap": evaluate(detector, test_luma, test_labels),
            "train_seconds": round(time.time() - started)}
    if init:
        meta["stages"] = [*before.get("stages", [{k: before[k] for k in ("steps", "clips") if k in before}]),
                          {"steps": steps, "clips": clips, "lr": lr, **({"augment": True} if augment else {}),
                           **({"shift": True} if augment and shift else {}),
                           **({"colour": True} if colour else {})}]
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
    run.add_argument("--steps", type=int, default=3000)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--threads", type=int, default=2)
    run.add_argument("--init", type=Path, help="train this detector further instead of a fresh one")
    run.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    run.add_argument("--width", type=int, default=24, help="channels of a fresh detector")
    run.add_argument("--blocks", type=int, default=2,
                     help="blocks over time of a fresh detector (each reaches 3 frames further)")
    run.add_argument("--augment", action="store_true",
                     help="mirror half the training clips and vary their contrast")
    run.add_argument("--shift", action="store_true",
                     help="with --augment, also move each clip by 0-3 rows and columns")
    run.add_argument("--colour", action="store_true",
                     help="look at RGB, not luminance (a detector of luminance given to --init "
                          "starts as the same detector of colour)")
    args = parser.parse_args(argv)
    if args.shift and not args.augment:
        parser.error("--shift moves the augmented clips: give --augment too")
    torch.set_num_threads(args.threads)
    train(args.out, args.clips, args.test_clips, args.steps, args.workers, init=args.init, lr=args.lr,
          width=args.width, blocks=args.blocks, augment=args.augment, shift=args.shift,
          colour=args.colour)


if __name__ == "__main__":
    main()
