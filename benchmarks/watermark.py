"""Watermark robustness and minimum length on world audio. Prints a table.

    python benchmarks/watermark.py [--clips 12]

For each condition: the share of clips in which the mark is found and the share in which the
payload decodes, for the 8 bytes the engine embeds (`engine.watermark_payload`) and for the
largest payload (16 bytes), plus the SNR of the mark.
"""

from __future__ import annotations

import argparse

import numpy as np
import soxr

from daemon.media import lossy_round_trip

RATE = 48_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=12)
    args = parser.parse_args()

    from daemon.model.engine import watermark_payload
    from daemon.model.world import WorldConfig, generate_clip
    from daemon.watermark import detect, embed

    payloads = {"8": watermark_payload("v2a-tiny", "0123456789abcdef", 0), "16": bytes(range(16))}
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, list[tuple[bool, bool]]]] = {}
    snrs = []
    for i in range(args.clips):
        clip = generate_clip(1_500_000 + i, WorldConfig())
        mono = soxr.resample(clip.audio, clip.rate, RATE).astype(np.float32)
        x = np.stack([mono, mono])
        starts = {s: int(rng.integers(0, x.shape[1] - s * RATE)) for s in (1, 2, 4, 6)}
        noise = rng.standard_normal(x.shape)
        for size, payload in payloads.items():
            y = embed(x, RATE, payload)
            snrs.append(10 * np.log10(np.sum(x ** 2) / np.sum((y - x) ** 2)))
            rms = np.sqrt(np.mean(y ** 2))
            conditions = {
                "clean (unmarked) audio, 8 s": (x, RATE),
                "marked, 8 s": (y, RATE),
                "marked, gain -12 dB": (0.25 * y, RATE),
                "marked, resampled to 44.1 kHz": (soxr.resample(y.T, RATE, 44_100).T, 44_100),
                "marked, white noise 30 dB below": (y + rms * 10 ** (-1.5) * noise, RATE),
                "marked, AAC 128 kbps": (lossy_round_trip(y, RATE, codec="aac",
                                                          bit_rate=128_000), RATE),
            }
            for seconds, start in starts.items():
                conditions[f"marked, {seconds} s excerpt"] = (
                    y[:, start:start + seconds * RATE], RATE)
            for name, (audio, rate) in conditions.items():
                found, decoded, _ = detect(audio, rate)
                results.setdefault(name, {}).setdefault(size, []).append(
                    (found, decoded == payload))
    width = max(len(n) for n in results)
    print(f"mark SNR on world audio: {np.mean(snrs):.1f} dB (min {np.min(snrs):.1f}), "
          f"{args.clips} clips")
    print(f"{'condition':<{width}}  found (8 / 16 bytes)  8-byte payload  16-byte payload")
    for name, by_size in results.items():
        found = " / ".join(f"{np.mean([r[0] for r in by_size[k]]):4.0%}" for k in payloads)
        decoded = "  ".join(f"{np.mean([r[1] for r in by_size[k]]):14.0%}" for k in payloads)
        print(f"{name:<{width}}  {found:>20}  {decoded}")

if __name__ == "__main__":
    main()
