"""How far a filter alone moves the class guide. Prints a table.

    python benchmarks/class_guide_filter.py [--guide daemon/model/weights/class_guide.safetensors]
        [--clips 200] [--sizes 0.1,0.25,0.5] [--steps 5]

The sampler steers by the guide's gradient averaged over the latent's frames: the same change
at every frame, a filter on the sound (`guide.ClassGuide.direction`). This asks how large a
filter has to be to make the guide hear a class the clip does not have. On the guide's held-out
examples (the first `--clips` of `guide.GUIDE_SEEDS`, which its training holds out), noised to
t, it finds the filter of RMS size s (normalised latent units; the latent's own spread is 1)
that most raises the guide's loss (`--steps` steps of projected gradient ascent) and counts
how often the guide's most likely class is still one the clip has.

For scale: over the 15 steps it steers, the sampler's class term moves the latent by about
15 x 0.04 x 0.3 = 0.18 times the guided velocity's RMS size.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from daemon.model.guide import GUIDE_FILE, GUIDE_SEEDS, ClassGuide, guide_set, noised

TIMES = (0.2, 0.5, 0.9)


def filtered(guide: ClassGuide, x: Tensor, t: Tensor, labels: Tensor, size: float,
             steps: int) -> Tensor:
    """x (B, N, D) moved by the filter of RMS size at most `size`, one change at every frame,
    that most raises the guide's loss: `steps` steps of projected gradient ascent."""
    shift = torch.zeros(x.shape[0], 1, x.shape[2], requires_grad=True)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(guide(x + shift, t), labels)
        (grad,) = torch.autograd.grad(loss, shift)
        with torch.no_grad():
            grad_rms = grad.pow(2).mean((1, 2), keepdim=True).sqrt().clamp_min(1e-12)
            moved = shift + 2.5 * size / steps * grad / grad_rms
            rms = moved.pow(2).mean((1, 2), keepdim=True).sqrt().clamp_min(1e-12)
            shift = (moved * (size / rms).clamp(max=1.0)).requires_grad_(True)
    return x + shift.detach()


def top_class_heard(guide: ClassGuide, data: Tensor, labels: Tensor, t: float, size: float,
                    steps: int) -> float:
    """The share of clips whose most likely class (to the guide) is one they have, at t, after
    the worst filter of RMS `size` (0: none)."""
    times = torch.full((len(data),), t)
    x = noised(data, times, torch.Generator().manual_seed(2))
    if size:
        x = filtered(guide, x, times, labels, size, steps)
    with torch.no_grad():
        return labels.gather(1, guide(x, times).argmax(1, keepdim=True)).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--guide", default=f"daemon/model/weights/{GUIDE_FILE}")
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--sizes", default="0.1,0.25,0.5")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    guide = ClassGuide.load(args.guide)
    started = time.time()
    latents, labels = guide_set(GUIDE_SEEDS[:args.clips], args.workers)
    data = (latents.float() - guide.latent_mean) / guide.latent_std
    print(f"{args.guide}: {args.clips} held-out examples made in {time.time() - started:.0f} s")
    sizes = [0.0] + [float(s) for s in args.sizes.split(",")]
    print("| filter RMS | " + " | ".join(f"t = {t}" for t in TIMES) + " |")
    print("|---|" + "---|" * len(TIMES))
    for size in sizes:
        shares = [top_class_heard(guide, data, labels, t, size, args.steps) for t in TIMES]
        print(f"| {size:g} | " + " | ".join(f"{100 * s:.1f} %" for s in shares) + " |")


if __name__ == "__main__":
    main()
