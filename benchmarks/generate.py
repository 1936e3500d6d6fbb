"""Speed of the default engine: the `tiny` model end to end, and video decoding + features.

    python benchmarks/generate.py [--repeats 3] [--seconds 8] [--steps 25] [--threads N]

Prints one table. Rows:
- generate 8 s (tiny, 25 steps, cfg 4.5): wall time of V2AEngine.generate end to end, median of
  the repeats, with the stages the engine records (decode + picture features, text, sampling,
  Griffin-Lim, output stage); goal <= 2 s on 2 CPU cores. Then without a prompt, and with a
  prompt and a negative prompt (each adds branches to guidance): total and sampling. Uses the
  embedded weights when they are installed, else a random-weight tiny network (same
  computation, same speed).
- decode + features 1080p H.264: the engine's picture features (MotionFeatures, with the
  contact detector when the weights use it, and without it) over a 10 s 1920x1080 25 fps
  H.264 file made here (libx264 veryfast, crf 20, keyframe every 2 s, moving textured picture;
  its bitrate is printed), from the start and seeking into the middle, as a multiple of real
  time; goal >= 10x.
- sampling 8 s alone, prompt: the sampler with the engine's guidance, with and without the
  contact term's branch (`flow.Guidance.contacts`), in one run.
- sampling 8 s alone, prompt, with and without the class guide's term (`flow.Guidance.classes`,
  when `class_guide.safetensors` is beside the weights), in one run.
- contact detector: its part of the picture features for the clip's frames, read from both
  sides as the engine reads it (EventDetector.probabilities) and from one side, in one run.
- Griffin-Lim iterations: decode time of 8 s for 16/32/48/64 iterations.

The machine's load average and OMP_WAIT_POLICY are printed too: on a shared CPU the figures
move with the load, and with torch's default (spinning) OpenMP threads a busy machine makes
every parallel op many times slower; `OMP_WAIT_POLICY=PASSIVE python benchmarks/generate.py`
shows what the code does when the cores are shared.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import median_seconds  # noqa: E402
from daemon.engine import ClipRequest, Segment  # noqa: E402
from daemon.model import build_network  # noqa: E402
from daemon.model.checkpoint import save_network  # noqa: E402
from daemon.model.codec import MelCodec  # noqa: E402
from daemon.model.engine import DEFAULT_WEIGHTS, V2AEngine  # noqa: E402
from daemon.model.flow import Guidance, sample  # noqa: E402
from daemon.model.guide import ClassSteer, load_guide  # noqa: E402
from daemon.model.text import conditioning_text  # noqa: E402
from daemon.model.visual import MotionFeatures, contact_channels  # noqa: E402


def make_1080p(path: Path, seconds: int = 10, rate: int = 25) -> Path:
    """A textured picture panning right with a moving bright block: real work for H.264."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
    stream.options = {"preset": "veryfast", "crf": "20"}
    stream.codec_context.gop_size = 2 * rate  # a keyframe every 2 s, like camera files
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (1080, 2400, 3), dtype=np.uint8)
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, 1) + np.roll(texture, 1, 0)) // 3).astype(np.uint8)
    for j in range(seconds * rate):
        frame = np.ascontiguousarray(texture[:, 4 * j : 4 * j + 1920])
        x = (j * 17) % 1700
        frame[400:600, x : x + 200] = 240
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def make_clip(path: Path, seconds: float, rate: int = 25) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
    for j in range(int(seconds * rate) + 1):
        frame = np.full((360, 640, 3), 50, np.uint8)
        frame[150:210, (j * 9) % 580 : (j * 9) % 580 + 60] = 230
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # -- end to end ------------------------------------------------------------------------
        weights = DEFAULT_WEIGHTS
        label = "embedded weights"
        if not weights.is_file():
            torch.manual_seed(0)
            weights = save_network(build_network("tiny"), tmp / "tiny.safetensors")
            label = "random-weight tiny"
        engine = V2AEngine(weights=weights, device="cpu")
        engine.load("cpu")
        clip = make_clip(tmp / "clip.mp4", args.seconds)
        request = ClipRequest((Segment(str(clip), 0.0, args.seconds),), prompt="a door slams",
                              steps=args.steps, cfg=4.5)
        engine.generate(request, lambda *a: None, lambda: False)  # warm-up (kernel set-up)
        # The prompt adds guidance's picture-only branch over the first quarter of the steps,
        # a negative prompt a fourth branch over all of them (daemon.model.flow.Guidance).
        for case, prompt, negative in (("prompt", "a door slams", ""), ("no prompt", "", ""),
                                       ("prompt + negative prompt", "a door slams", "music")):
            walls, stages = [], []
            for seed in range(args.repeats):
                started = time.perf_counter()
                audio = engine.generate(
                    ClipRequest(request.segments, prompt, negative, steps=args.steps, seed=seed),
                    lambda *a: None, lambda: False,
                )
                walls.append(time.perf_counter() - started)
                stages.append(audio.metadata["timings"])
            wall = statistics.median(walls)
            rows.append((f"generate {args.seconds:g} s, tiny, {args.steps} steps, cfg 4.5, "
                         f"{case} ({label})", f"{wall:.2f} s",
                         f"RTF {wall / args.seconds:.3f} (goal <= 2 s)"))
            for key in stages[0] if case == "prompt" else ("sampling_s",):
                value = statistics.median(s[key] for s in stages)
                rows.append((f"  stage {key}", f"{value:.3f} s", ""))

        # -- the sampler alone, with and without the contact term and the class guide's term ---
        picture = engine.visual.encode_segments(request.segments)
        text, _, _ = conditioning_text(engine.text, [request.prompt], [""],
                                       engine.network.config.reads_negation)
        n = engine.network.config.seq_lens_for(args.seconds)[0]

        def time_sampler(what: str, **options) -> None:
            run = partial(sample, engine.network, picture.clip[None], picture.sync[None], text,
                          latent_seq_len=n, steps=args.steps, **options)
            run()
            rows.append((f"sampling {args.seconds:g} s alone, prompt, {what}",
                         f"{median_seconds(run, args.repeats):.3f} s", ""))

        contacts = contact_channels(engine.network.config.sync_dim)
        if contacts and picture.sync[..., -contacts:].any():
            shipped = Guidance.scaled(4.5)
            time_sampler("with the contact term (shipped)", guidance=shipped)
            time_sampler("without it", guidance=replace(shipped, contacts=0.0))
        guide = load_guide(weights, engine.network.latent_mean, engine.network.latent_std)
        steer = ClassSteer.for_texts(guide, engine.text, [request.prompt], [""])
        if steer is not None:
            time_sampler("with the class guide (shipped)", steer=steer)
            time_sampler("without it", steer=None)

        # -- decode + features -----------------------------------------------------------------
        started = time.perf_counter()
        video = make_1080p(tmp / "1080p.mp4")
        mbps = video.stat().st_size * 8 / 10 / 1e6
        rows.append((f"  (making the 10 s 1080p H.264 test file, {mbps:.1f} Mbit/s)",
                     f"{time.perf_counter() - started:.1f} s", ""))
        # The picture features the engine runs for these weights (with the contact detector
        # when they were trained with it), then the weight-free part alone.
        encoders = [(engine.visual.name, engine.visual)]
        if engine.visual.name != MotionFeatures.name:
            encoders.append((MotionFeatures.name, MotionFeatures()))
        for (name, encoder), (what, start, duration) in itertools.product(
                encoders, (("from the start, 10 s", 0.0, 10.0), ("seeking to 5 s, 4 s", 5.0, 4.0))):
            segments = [Segment(str(video), start, duration)]
            best = median_seconds(partial(encoder.encode_segments, segments), args.repeats)
            rows.append((f"decode + {name} 1080p H.264, {what}", f"{best:.2f} s",
                         f"{duration / best:.1f}x real time (goal >= 10x)"))

        # -- the contact detector: both views (what the engine runs) against one ----------------
        detector = getattr(engine.visual, "contacts", None)
        if detector is not None:
            frames = int(round(args.seconds * 25))
            detail = np.random.default_rng(0).integers(0, 256, (frames, 72, 128), dtype=np.uint8)
            luma = torch.from_numpy(detail).float()[None] / 255.0
            with torch.no_grad():
                for what, run in (("both views (shipped)", lambda: detector.features(detail, np.arange(frames))),
                                  ("one view", lambda: torch.sigmoid(detector(luma)))):
                    run()
                    rows.append((f"contact detector, {frames} frames at 128x72, {what}",
                                 f"{median_seconds(run, args.repeats):.3f} s", ""))

        # -- Griffin-Lim -----------------------------------------------------------------------
        latents = MelCodec().encode(torch.randn(1, 8 * 16_000) * 0.1)
        for iters in (16, 32, 48, 64):
            codec = MelCodec(griffin_lim_iters=iters)
            codec.decode(latents)
            started = time.perf_counter()
            codec.decode(latents)
            rows.append((f"Griffin-Lim {iters} iterations, 8 s", f"{time.perf_counter() - started:.3f} s", ""))

    load = os.getloadavg()
    width = max(len(r[0]) for r in rows)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (shared machine), "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"{'measurement':<{width}}  {'time':>9}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>9}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
