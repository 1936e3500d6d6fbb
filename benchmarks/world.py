"""World and watermark timings: how fast clips are made and marked. Prints a table.

    python benchmarks/world.py [--clips 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import soxr


def _time(fn, repeat: int) -> float:
    started = time.perf_counter()
    for i in range(repeat):
        fn(i)
    return (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=20)
    args = parser.parse_args()

    from daemon.model.visual import MotionFeatures
    from daemon.model.world import WorldConfig, compress_frames, generate_clip
    from daemon.model.world.metrics import detect_onsets
    from daemon.watermark import detect, embed

    config = WorldConfig()
    clips = [generate_clip(1_000_000 + i, config) for i in range(3)]
    visual = MotionFeatures()
    stereo = np.stack([soxr.resample(clips[0].audio, 16_000, 48_000).astype(np.float32)] * 2)
    marked = embed(stereo, 48_000, bytes(16))
    rows = [
        ("world clip, 8 s (128x72 @ 25 fps + 16 kHz audio)",
         _time(lambda i: generate_clip(2_000 + i, config), args.clips)),
        ("H.264 round trip of its frames", _time(lambda i: compress_frames(
            clips[i % 3].frames, 25), 5)),
        ("visual features of its frames (MotionFeatures)", _time(
            lambda i: visual.encode_frames(clips[i % 3].frames, 25), 5)),
        ("onset detection, 8 s", _time(lambda i: detect_onsets(clips[i % 3].audio, 16_000), 10)),
        ("watermark embed, 8 s stereo 48 kHz", _time(lambda i: embed(stereo, 48_000, bytes(16)), 5)),
        ("watermark detect, 8 s stereo 48 kHz", _time(lambda i: detect(marked, 48_000), 5)),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  seconds  x real time (8 s)")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.3f}  {8.0 / seconds:8.1f}")


if __name__ == "__main__":
    main()
