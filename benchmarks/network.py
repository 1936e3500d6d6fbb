"""How long the network takes to sample 8 s of audio latents (25 Euler steps, guidance on).

Times `daemon.model.flow.sample` with MMAudio's guidance (conditions prepared once, the
conditional and unconditional branches as one batched forward; a prompt adds a third branch over
the first quarter of the steps, a negative prompt one over all: `benchmarks/generate.py`) for
`tiny` and `small_16k` on the CPU, and `small_16k` and `large_44k` on CUDA when there is one
(bf16 autocast). Weights are random: the cost of a forward does not depend on their values.
Also times a 60 s `tiny` clip through the windowed generator. Prints a table.

    python benchmarks/network.py [--repeats 3] [--threads N] [--no-long]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from daemon.model import build_network
from daemon.model.flow import Guidance, precision_name, sample
from daemon.model.windows import generate_latents, plan_windows, start_granularity


def _conditions(config, seconds: float, device):
    n, nc, ns = config.seq_lens_for(seconds)
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(1, nc, config.clip_dim, generator=g).to(device)
    sync = torch.randn(1, ns, config.sync_dim, generator=g).to(device)
    text = torch.randn(1, config.text_seq_len, config.text_dim, generator=g).to(device)
    return n, clip, sync, text


def _time(fn, device, repeats: int) -> list[float]:
    fn()  # warm-up (allocator, kernels, autotuning)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def bench(preset: str, device: torch.device, seconds: float, steps: int, cfg: float,
          repeats: int) -> dict:
    torch.manual_seed(0)
    net = build_network(preset, device=device).eval()
    params = sum(p.numel() for p in net.parameters())
    n, clip, sync, text = _conditions(net.config, seconds, device)
    windows = 1
    if seconds <= 1.25 * net.config.window_s:
        def run():
            sample(net, clip, sync, text, latent_seq_len=n, guidance=Guidance.mmaudio(cfg),
                   steps=steps, seed=0)
    else:
        c = net.config
        window, overlap = round(c.window_s * c.latent_rate), round(c.latent_rate)
        windows = len(plan_windows(n, window, overlap, start_granularity(net, overlap // 2)))

        def run():
            generate_latents(net, clip, sync, text, n, guidance=Guidance.mmaudio(cfg),
                             steps=steps, seed=0)
    times = _time(run, device, repeats)
    best = min(times)
    return {
        "preset": preset, "device": str(device),
        "dtype": precision_name(device),
        "params": params, "seconds": seconds, "windows": windows, "steps": steps,
        "median": statistics.median(times), "best": best, "x_realtime": seconds / best,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=4.5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for this run (default: torch's choice)")
    parser.add_argument("--no-long", action="store_true", help="skip the 60 s windowed row")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cpu = torch.device("cpu")
    runs = [("tiny", cpu, 8.0), ("small_16k", cpu, 8.0)]
    if not args.no_long:
        runs.append(("tiny", cpu, 60.0))
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        runs += [("small_16k", gpu, 8.0), ("large_44k", gpu, 8.0)]

    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    header = (f"{'preset':<11} {'device':<7} {'dtype':<14} {'params':>8} {'audio':>6} "
              f"{'windows':>7} {'steps':>5} {'median s':>9} {'best s':>8} {'x realtime':>10}")
    print(header)
    print("-" * len(header))
    for preset, device, seconds in runs:
        r = bench(preset, device, seconds, args.steps, args.cfg, args.repeats)
        print(f"{r['preset']:<11} {r['device']:<7} {r['dtype']:<14} {r['params'] / 1e6:>7.1f}M "
              f"{r['seconds']:>5.0f}s {r['windows']:>7} {r['steps']:>5} {r['median']:>9.3f} "
              f"{r['best']:>8.3f} {r['x_realtime']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
