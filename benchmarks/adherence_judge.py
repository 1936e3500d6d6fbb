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

`--from-world 0.2,0.5` asks where along the path the family is decided: the sampler starts at
t0 from the world's own sound of the prompted class noised to t0 ((1 - t0) noise + t0 sound;
t0 = 0 is plain generation), with the same picture, prompt, guidance and noise, and the judge
names what comes out. A family heard from t0 on but not from 0 was lost before t0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from daemon.model.engine import OutputSettings, normalise_loudness
from daemon.model.evaluate import (
    FAMILIES,
    QUIET_FLOOR,
    EvalSettings,
    ModelUnderTest,
    _seed_range,
    adherence_cases,
    adherence_clip,
)
from daemon.model.flow import (
    euler_sample,
    guided_velocity,
    make_generator,
    prepare_guidance,
    sound_bounds,
)
from daemon.model.windows import Window, window_conditions
from daemon.model.world.captions import CLASSES
from daemon.model.world.classifier import FEATURE_GROUPS, AudioClassifier, audio_features


def family_share(judge: AudioClassifier, features: np.ndarray, family: str) -> float:
    probs = judge.probabilities(features)
    return float(sum(probs[CLASSES.index(c)] for c in FAMILIES[family]))


def peakiness(model: ModelUnderTest, audio: np.ndarray) -> float:
    mel = model.codec.log_mel(torch.from_numpy(np.asarray(audio, np.float32))[None])[0].numpy()
    return float(mel.max() - np.percentile(mel, 99.9))


@torch.inference_mode()
def generate_from(model: ModelUnderTest, pictures, prompts: list[str], sounds: list[np.ndarray],
                  t0: float, settings: EvalSettings) -> list[np.ndarray]:
    """Audio sampled from t0 on (rounded to a step), starting from `sounds` noised to t0 (the
    evaluation's guidance, steps, renoise and noise; 8 s clips, one window), levelled as the
    engine levels it."""
    net, out = model.network, []
    n = net.config.seq_lens_for(8.0)[0]
    guidance = settings.guidance()
    for i in range(0, len(pictures), settings.batch):
        part = slice(i, i + settings.batch)
        clip = torch.stack([p[0] for p in pictures[part]])
        sync = torch.stack([p[1] for p in pictures[part]])
        clip, sync, offset = window_conditions(net, clip, sync, Window(0, n, 0))
        text = model.text.encode(prompts[part]).tokens
        branches = prepare_guidance(net, clip, sync, text, n, guidance, clip_offset=offset)
        velocity = guided_velocity(net, branches, guidance)
        sound = torch.stack([model.codec.encode(torch.from_numpy(np.asarray(a, np.float32)))[0, :n]
                             for a in sounds[part]])
        generator = make_generator(torch.device("cpu"), settings.seed)

        def fresh_noise(shape=sound.shape, generator=generator) -> torch.Tensor:
            return torch.randn(shape, generator=generator)

        start = round(t0 * settings.steps)
        t = start / settings.steps
        x = (1 - t) * fresh_noise() + t * net.normalize(sound)
        x = euler_sample(velocity, x, settings.steps, start=start, bounds=sound_bounds(net),
                         renoise=settings.renoise, fresh_noise=fresh_noise)
        out += [normalise_loudness(a, model.codec.sample_rate, OutputSettings())[0]
                for a in model.codec.decode(net.unnormalize(x)).numpy()]
    return out


def decided_along_the_path(model: ModelUnderTest, judge: AudioClassifier, cases, pictures,
                           starts: list[float], settings: EvalSettings) -> None:
    sounds = [adherence_clip(seed, prompted).audio for seed, _, _, prompted, _ in cases]
    print(f"{'start t0':>8s}  " + "  ".join(f"{f:>10s}" for f in FAMILIES)
          + "   (clips the judge hears in the prompted family)")
    for t0 in starts:
        audio = generate_from(model, pictures, [c[4] for c in cases], sounds, t0, settings)
        heard = {f: 0 for f in FAMILIES}
        for (_, family, *_), a in zip(cases, audio, strict=True):
            heard[family] += family_share(judge, audio_features(a), family) > 0.5
        print(f"{t0:8.2f}  " + "  ".join(f"{heard[f]:10d}" for f in FAMILIES))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="daemon/model/weights/tiny.safetensors")
    parser.add_argument("--seeds", default="1000000-1000023")
    parser.add_argument("--classifier", default=None,
                        help="the judge (default: world_classifier.safetensors beside the weights)")
    parser.add_argument("--out", default=None, help="also write the per-case rows as JSON")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--renoise", type=float, default=EvalSettings.renoise,
                        help="the sampler's renoise (default: the engine's)")
    parser.add_argument("--from-world", default=None, metavar="T0,T0,...",
                        help="instead: start the sampler at each t0 from the world's own sound "
                             "of the prompted class noised to t0 (0 = plain generation)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = EvalSettings(renoise=args.renoise)
    model = ModelUnderTest(args.weights)
    judge = AudioClassifier.load(
        args.classifier or Path(args.weights).with_name("world_classifier.safetensors"))
    cases = adherence_cases(_seed_range(args.seeds), settings)
    clips = [adherence_clip(seed, shown) for seed, _, shown, _, _ in cases]
    pictures = [model.picture(c) for c in clips]
    if args.from_world:
        starts = [float(t) for t in args.from_world.split(",")]
        decided_along_the_path(model, judge, cases, pictures, starts, settings)
        return
    generated = model.generate(pictures, [c[4] for c in cases], None, settings)
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
