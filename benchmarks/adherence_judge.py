"""What the judge hears in generated audio, and which of its features decide it. Prints a table.

    python benchmarks/adherence_judge.py [--weights daemon/model/weights/tiny.safetensors]
        [--seeds 1000000-1000023] [--out judge.json]

The evaluation's adherence section (same cases, prompts, noise and settings) asks the world
audio classifier what each generated clip is. When it names another family (a stone impact
where the prompt asked for footsteps on wood), is that the sound or the judge? For every case
this compares the generated clip with the world's own sound of the prompted class, after the
codec and over near silence (what a perfect model would hand the judge):

- the judge's share of probability on the prompted family, for both;
- swaps: each group of the judge's statistics (`classifier.FEATURE_GROUPS`) taken from the
  world's sound in place of the generated clip's, the rest left as generated; a group whose
  swap brings the family back is what the judge found wrong;
- peakiness: how far the loudest log-mel cell (one band, one 16 ms frame) stands above the
  clip's 99.9th percentile cell, in nats: a narrow ringing peak in a generated step reads high.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from daemon.model.evaluate import (
    FAMILIES,
    QUIET_FLOOR,
    EvalSettings,
    ModelUnderTest,
    _seed_range,
    adherence_cases,
    adherence_clip,
)
from daemon.model.world.captions import CLASSES
from daemon.model.world.classifier import FEATURE_GROUPS, AudioClassifier, audio_features


def family_share(judge: AudioClassifier, features: np.ndarray, family: str) -> float:
    probs = judge.probabilities(features)
    return float(sum(probs[CLASSES.index(c)] for c in FAMILIES[family]))


def peakiness(model: ModelUnderTest, audio: np.ndarray) -> float:
    mel = model.codec.log_mel(torch.from_numpy(np.asarray(audio, np.float32))[None])[0].numpy()
    return float(mel.max() - np.percentile(mel, 99.9))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="daemon/model/weights/tiny.safetensors")
    parser.add_argument("--seeds", default="1000000-1000023")
    parser.add_argument("--classifier", default=None,
                        help="the judge (default: world_classifier.safetensors beside the weights)")
    parser.add_argument("--out", default=None, help="also write the per-case rows as JSON")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = EvalSettings()
    model = ModelUnderTest(args.weights)
    judge = AudioClassifier.load(
        args.classifier or Path(args.weights).with_name("world_classifier.safetensors"))
    cases = adherence_cases(_seed_range(args.seeds), settings)
    clips = [adherence_clip(seed, shown) for seed, _, shown, _, _ in cases]
    generated = model.generate([model.picture(c) for c in clips], [c[4] for c in cases], None,
                               settings)
    rows = []
    for (seed, family, _, prompted, prompt), audio in zip(cases, generated, strict=True):
        world = model.through_codec(adherence_clip(seed, prompted, QUIET_FLOOR).audio)
        mine, theirs = audio_features(audio), audio_features(world)
        swaps = {}
        for group, where in FEATURE_GROUPS.items():
            swapped = mine.copy()
            swapped[where] = theirs[where]
            swaps[group] = family_share(judge, swapped, family)
        rows.append({"seed": seed, "family": family, "prompted": prompted, "prompt": prompt,
                     "heard": CLASSES[int(judge.probabilities(mine).argmax())],
                     "family_share": family_share(judge, mine, family),
                     "world_family_share": family_share(judge, theirs, family),
                     "family_share_with_world_group": swaps,
                     "peakiness": peakiness(model, audio), "world_peakiness": peakiness(model, world)})
    print(f"{'family':10s} {'clips':>5s} {'heard in family':>16s} {'world':>6s}   "
          + "  ".join(f"{g[:14]:>14s}" for g in FEATURE_GROUPS) + "   peakiness (world)")
    for family in FAMILIES:
        mine = [r for r in rows if r["family"] == family]
        if not mine:
            continue
        heard = sum(r["family_share"] > 0.5 for r in mine)
        world = sum(r["world_family_share"] > 0.5 for r in mine)
        swapped = [sum(r["family_share_with_world_group"][g] > 0.5 for r in mine)
                   for g in FEATURE_GROUPS]
        print(f"{family:10s} {len(mine):5d} {heard:16d} {world:6d}   "
              + "  ".join(f"{n:14d}" for n in swapped)
              + f"   {np.median([r['peakiness'] for r in mine]):.2f} "
                f"({np.median([r['world_peakiness'] for r in mine]):.2f})")
    print("(counts of clips the judge hears in the prompted family: as generated, the world's own "
          "sound, and the generated clip with one group of statistics from the world's sound)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"weights": args.weights, "seeds": args.seeds, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
