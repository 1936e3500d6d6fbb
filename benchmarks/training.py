"""How long one training step of the `tiny` network takes on the CPU, float32 against bf16
autocast, in one run.

A step is what `python -m daemon.model.train_default train` does for a batch: the flow-matching
loss (`flow.training_loss`, with the recipe's low-t share and picture dropout), the backward
pass, gradient clipping and AdamW with the two rate groups. Batches are random tensors of the
world's shapes (8 s: 250 latent tokens, 64 clip and 200 sync frames with the contact
detector's channels, 32 text tokens): the cost does not depend on the values. The two
precisions alternate, step by step, so a change in the machine's load falls on both. Training
uses bf16 autocast on a CPU where `flow.cpu_has_native_bf16()` holds (AMX or AVX-512 BF16),
float32 elsewhere; the table says which this CPU is.

    python benchmarks/training.py [--steps 20] [--batch 16] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from daemon.model import build_network
from daemon.model.config import preset
from daemon.model.flow import TrainingSettings, cpu_has_native_bf16, training_loss
from daemon.model.train_default import _optimiser


def _batch(config, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    n, nc, ns = config.seq_lens_for(8.0)
    shapes = {"latent": (n, config.latent_dim), "clip": (nc, config.clip_dim),
              "sync": (ns, config.sync_dim), "text": (config.text_seq_len, config.text_dim)}
    return {name: torch.randn(batch, *shape, generator=generator)
            for name, shape in shapes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each precision")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for this run (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    network = build_network(preset("tiny").with_(sync_dim=68)).train()
    optimiser = _optimiser(network, 1e-5, 3.0)
    settings = TrainingSettings(picture_dropout=0.2, low_t_fraction=0.35, low_t_max=0.12)
    generator = torch.Generator().manual_seed(0)
    precisions = {
        "float32": contextlib.nullcontext,
        "bf16 autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    }

    def step(context) -> float:
        batch = _batch(network.config, args.batch, generator)
        start = time.perf_counter()
        with context():
            loss = training_loss(network, batch["latent"], batch["clip"], batch["sync"],
                                 batch["text"], settings=settings, generator=generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimiser.step()
        return time.perf_counter() - start

    for context in precisions.values():  # warm-up: allocator, oneDNN kernels
        step(context)
        step(context)
    times: dict[str, list[float]] = {name: [] for name in precisions}
    for _ in range(args.steps):
        for name, context in precisions.items():
            times[name].append(step(context))

    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"native bf16 (AMX / AVX-512 BF16): {'yes' if cpu_has_native_bf16() else 'no'}; "
          f"tiny network, batch {args.batch}, {args.steps} steps each")
    header = f"{'precision':<14} {'median s/step':>13} {'best s/step':>11} {'vs float32':>10}"
    print(header)
    print("-" * len(header))
    base = statistics.median(times["float32"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<14} {median:>13.3f} {min(values):>11.3f} {base / median:>9.2f}x")


if __name__ == "__main__":
    main()
