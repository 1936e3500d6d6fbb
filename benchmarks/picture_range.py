"""How to hold pictures unlike the world's within the training pictures' range. Prints a table.

    python benchmarks/picture_range.py [--clips 800] [--features /tmp/v2a-train-features.pt]

The shipped network runs away into noise on textured pictures (`daemon.model.world.unfamiliar`)
unless the picture is held within a range of its training pictures' values
(`daemon.model.visual.PictureRange`). Each row is one way of holding them: every picture within
the central share of the training values ("always"); only a picture with a channel beyond every
training value for more than a share of its frames ("whole picture over ..."), held in every
channel or only in the channels beyond; or only the stretches of a picture (`STRETCH_S` long)
with a channel beyond for more than that share of their frames (what ships). Reported, on
pictures of every unfamiliar kind from validation seeds (1,900,000 and up: the evaluation uses
1,000,000 and up): the share of each clip's latent at the sampler's ceiling and how many clips
the engine would call not to be trusted (`engine.UNFAMILIAR_SHARE`); and of 96 world clips
(validation seeds too), how many the holding changes, and the share of their feature values it
changes. 10 sampler steps, no prompt. The training features (seeds 0..clips-1, as
`train_default picture-range` computes them) take about 7 minutes for 800 clips on two cores;
`--features` keeps them in a file.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

WEIGHTS = Path(__file__).resolve().parents[1] / "daemon" / "model" / "weights"
VALIDATION = 1_900_000


def training_features(clips: int, cache: Path | None):
    from daemon.model.events import DETECTOR_FILE
    from daemon.model.train_default import training_picture_features
    from daemon.model.visual import VisualFeatures

    if cache is not None and cache.exists():
        rows = torch.load(cache)
    else:
        detector = str(WEIGHTS / DETECTOR_FILE)
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            parts = pool.starmap(training_picture_features,
                                 [(detector, list(range(k, clips, 2))) for k in range(2)])
        rows = [(f.clip, f.sync) for part in parts for f in part]
        if cache is not None:
            torch.save(rows, cache)
    return [VisualFeatures(clip, sync) for clip, sync in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=800)
    parser.add_argument("--features", type=Path, default=None)
    args = parser.parse_args()

    from daemon.model.codec import ceiling_share
    from daemon.model.engine import UNFAMILIAR_SHARE
    from daemon.model.evaluate import EvalSettings, ModelUnderTest
    from daemon.model.visual import STRETCH_S, PictureRange, VisualFeatures
    from daemon.model.world import EVAL_SYNC, WorldConfig, compress_frames, generate_clip
    from daemon.model.world.unfamiliar import KINDS, unfamiliar_picture

    started = time.time()
    features = training_features(args.clips, args.features)
    print(f"training features of {args.clips} clips: {time.time() - started:.0f} s")
    torch.set_num_threads(2)
    model = ModelUnderTest(WEIGHTS / "tiny.safetensors")
    model.visual.picture_range = None
    cases = [(kind, seed) for seed in range(VALIDATION, VALIDATION + 4) for kind in KINDS]
    unfamiliar = [model.visual.encode_frames(
        compress_frames(unfamiliar_picture(kind, seed, EVAL_SYNC), 25, crf=23), 25)
        for kind, seed in cases]
    world = [model.visual.encode_frames(
        compress_frames(generate_clip(seed, WorldConfig()).frames, 25, crf=23), 25)
        for seed in range(VALIDATION + 200, VALIDATION + 296)]
    settings = EvalSettings(steps=10)
    inner = {share: PictureRange.spanning(features, share) for share in (0.998, 0.98)}

    def always(span):
        return lambda f: VisualFeatures(f.clip.clamp(span.clip[0], span.clip[1]),
                                        f.sync.clamp(span.sync[0], span.sync[1]))

    def beyond_channels(span):
        def stream(values, ends):
            beyond = ((values < ends[2]) | (values > ends[3])).float().mean(0) > span.sustained
            return torch.where(beyond, values.clamp(ends[0], ends[1]), values)
        return lambda f: VisualFeatures(stream(f.clip, span.clip), stream(f.sync, span.sync))

    def whole_picture(span):
        def hold(f):
            beyond = any((((v < e[2]) | (v > e[3])).float().mean(0) > span.sustained).any()
                         for v, e in ((f.clip, span.clip), (f.sync, span.sync)))
            return always(span)(f) if beyond else f
        return hold

    rows = [("always, within the central 0.998", always(inner[0.998])),
            ("always, within the central 0.98", always(inner[0.98]))]
    for sustained in (0.5, 0.9):
        span = PictureRange.spanning(features, 0.98, sustained)
        rows += [(f"whole picture over {sustained:g}, the channels beyond, within 0.98",
                  beyond_channels(span)),
                 (f"whole picture over {sustained:g}, every channel, within 0.98",
                  whole_picture(span)),
                 (f"stretches of {STRETCH_S:g} s over {sustained:g}, every channel, within 0.98",
                  span.hold)]
    print("| holding | " + " | ".join(KINDS) + " | untrusted clips | world clips changed "
          "| world values changed |")
    print("|---" * (len(KINDS) + 4) + "|")
    for name, hold in rows:
        held = [hold(f) for f in unfamiliar]
        latents = torch.cat(list(model.sample([(h.clip, h.sync) for h in held], [""] * len(held),
                                              None, settings)))
        ceiling = ceiling_share(latents).numpy()
        by_kind = [float(np.mean([c for (k, _), c in zip(cases, ceiling, strict=True) if k == kind]))
                   for kind in KINDS]
        changed = [0.5 * float((hold(w).clip != w.clip).float().mean())
                   + 0.5 * float((hold(w).sync != w.sync).float().mean()) for w in world]
        print(f"| {name} | " + " | ".join(f"{x:.3f}" for x in by_kind)
              + f" | {int((ceiling > UNFAMILIAR_SHARE).sum())} of {len(cases)} "
              f"| {sum(c > 0 for c in changed)} of {len(world)} | {np.mean(changed):.2%} |",
              flush=True)


if __name__ == "__main__":
    main()
