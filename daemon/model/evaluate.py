"""Evaluate a V2A model on held-out world clips and write a JSON report.

    python -m daemon.model.evaluate --weights daemon/model/weights/tiny.safetensors \
        --seeds 1000000-1000039 --out report.json

Every clip comes from the world's held-out seed range (never used in training). The model
sees what the engine would give it: the clip's frames after a real H.264 round trip through
the weight-free visual front end, MiniLM text, 25 sampler steps redrawing 0.7 of the predicted
noise each (`flow.RENOISE`) with guidance 4.5 (prompt and negative terms at twice that, the
prompt's until t = 0.25, the contact term at 2.25: `flow.Guidance.scaled`), Griffin-Lim, then
levelled to the output loudness as the engine's output stage does. `--renoise`,
`--prompt-ratio`, `--negative-ratio`, `--prompt-until` and `--contact-ratio` measure other
sampler settings on the same clips.

Sections (metrics are the pure functions of daemon.model.world.metrics):
- sync: onset precision/recall/F1 (+-50 ms) of the generated audio against the events (with a
  95 % bootstrap interval over the clips: a few hundred events leave F1 several hundredths to
  chance; `daemon.model.compare` tells two reports on the same clips apart), and
  AV-Align (audio onsets vs motion peaks from frame differences -- a weight-free stand-in for
  optical flow -- matched within one frame, IoU). Baselines in the same run: the same model
  with its visual features zeroed, random onsets (as many as the model produced), the
  world's own audio through the same detector (the ceiling of this measurement), and that
  audio after the codec alone (the ceiling for anything Griffin-Lim decodes).
- adherence: clips whose picture does not reveal the material / surface / music mood (the
  world draws them identically); the prompt names one, chosen at random; the world audio
  classifier (weights beside the model) says what the generated audio is. Accuracy of
  "classified == prompted", over all 21 classes and within the family; baseline: the same
  clips with an empty prompt. How far the judge can be trusted: its accuracy on the clips'
  own audio after the codec, and over near silence (generated audio may have no hiss). What
  the judge names for each prompted class, and for music how regularly the generated attacks
  repeat against the world's own bed of the prompted mood (`metrics.beat_regularity`): a beat
  the network does not keep is heard as scattered knocks.
- conditioning: how much the network uses what it is given, measured without sampling: the
  flow-matching loss on held-out clips (every one captioned) at fixed times t with fixed noise,
  given the real picture and caption, the picture replaced by the learned empty features, the
  caption replaced by the empty text, and both. A network that ignores a condition loses
  nothing when it is taken away.
- negative: clips with an event source and an ambience; generated with and without the
  ambience (or the event) named in the negative prompt, the prompt naming the other class; the
  energy where that class sounds (between events for an ambience, 300 ms after each event for
  an event), in dB, and the same relative to where the other class sounds (which no levelling
  moves). The same with no prompt at all ("unprompted"): naming only the other class already
  turns the target down before any negative prompt does. Baselines: the same measurement
  between two seeds with no negative prompt, and with a negative prompt naming a class of the
  same kind that is not in the clip (what any negative prompt does). Ceiling: what a perfect
  negative prompt would measure, the world's own sound of the clip against the same clip with
  the class drawn but not heard, both through the codec and the output stage. The output stage
  levels what remains back up, so even perfect removal of an event measures a few dB only: an
  event's spans then hold the ambience, raised.
- unfamiliar: pictures unlike the world's (a still or panning texture, a world clip under a
  texture, a box over flat grey, a textured shot after a title card: `world.unfamiliar`), with
  no prompt; the share of each clip's latent at the sampler's ceiling, where a network that does
  not know a picture runs off to.
  The engine holds every picture within its training pictures' range (`visual.PictureRange`);
  the baseline is the same pictures as they come.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from daemon.model.checkpoint import file_metadata
from daemon.model.flow import (
    CLASS_GUIDANCE,
    CONTACT_GUIDANCE_RATIO,
    PROMPT_GUIDANCE_RATIO,
    PROMPT_UNTIL,
    RENOISE,
    Guidance,
    precision_name,
)
from daemon.model.guide import GUIDE_FILE
from daemon.model.text import conditioning_text
from daemon.model.world import (
    EVAL_SYNC,
    WorldConfig,
    class_prompt,
    compress_frames,
    generate_clip,
)
from daemon.model.world.captions import CLASSES
from daemon.model.world.dataset import HELD_OUT_SEEDS
from daemon.model.world.metrics import (
    av_align,
    beat_regularity,
    detect_onsets,
    matched_references,
    motion_peaks,
    onset_scores,
    pooled_interval,
    pooled_scores,
    random_onsets,
    relative_level_db,
    span_energy_db,
)

FAMILIES = {
    "impact": ("impact_wood", "impact_metal", "impact_glass", "impact_stone"),
    "footsteps": ("footsteps_concrete", "footsteps_gravel", "footsteps_grass", "footsteps_wood"),
    "music": ("music_tense", "music_calm", "music_upbeat"),
}
NEGATIVE_EVENTS = ("impact_wood", "impact_metal", "footsteps_concrete", "footsteps_gravel",
                   "door_slam")
NEGATIVE_AMBIENCES = ("rain", "ocean", "wind", "fire", "city")


@dataclass(frozen=True)
class EvalSettings:
    steps: int = 25
    cfg: float = 4.5
    tolerance: float = 0.05
    sync_clips: int = 40
    adherence_clips: int = 30
    negative_clips: int = 12
    conditioning_clips: int = 24
    unfamiliar_clips: int = 4  # seeds; each gives one picture of every unfamiliar kind
    batch: int = 8
    seed: int = 0
    renoise: float = RENOISE
    prompt_ratio: float = PROMPT_GUIDANCE_RATIO  # prompt and negative terms, times cfg
    negative_ratio: float = PROMPT_GUIDANCE_RATIO
    prompt_until: float = PROMPT_UNTIL
    picture_from: float = Guidance.picture_from
    contact_ratio: float = CONTACT_GUIDANCE_RATIO  # the contact term, times cfg
    class_guidance: float = CLASS_GUIDANCE  # the class guide's term (0: none)
    away_guidance: float = Guidance.away  # its term away from a negative prompt's classes
    away_until: float = Guidance.away_until
    classes_until: float = Guidance.classes_until

    def guidance(self) -> Guidance:
        """The sampler's guidance; the defaults are the engine's."""
        return replace(
            Guidance.scaled(self.cfg, self.prompt_ratio, self.negative_ratio, self.prompt_until,
                            self.contact_ratio),
            picture_from=self.picture_from, classes=self.class_guidance,
            away=self.away_guidance if self.class_guidance else 0.0, away_until=self.away_until,
            classes_until=self.classes_until)


class ModelUnderTest:
    """A weights file with the default front ends, generating 16 kHz audio for world clips."""

    def __init__(self, weights: str | Path, device: str = "cpu",
                 class_guide: str | Path | None = None):
        from daemon.model.checkpoint import load_network
        from daemon.model.codec import MelCodec
        from daemon.model.guide import load_guide
        from daemon.model.text import MiniLMText
        from daemon.model.visual import default_visual

        self.network = load_network(weights, device=device).eval()
        self.visual = default_visual(self.network.config.sync_dim, weights)
        self.text, self.codec = MiniLMText(), MelCodec()
        self.guide = load_guide(weights, self.network.latent_mean, self.network.latent_std,
                                class_guide)
        self.weights = str(weights)

    @torch.inference_mode()
    def through_codec(self, audio: np.ndarray) -> np.ndarray:
        """`audio` (16 kHz) after the codec alone: log-mel, then Griffin-Lim."""
        return self.codec.decode(self.codec.encode(torch.from_numpy(audio)[None]))[0].numpy()

    def levelled(self, audio: np.ndarray) -> np.ndarray:
        """`audio` (16 kHz) levelled as the engine's output stage levels it."""
        from daemon.model.engine import OutputSettings, normalise_loudness

        return normalise_loudness(audio, self.codec.sample_rate, OutputSettings())[0]

    def delivered(self, audio: np.ndarray) -> np.ndarray:
        """`audio` (16 kHz) as the engine would deliver it had the network generated its exact
        latents: through the codec, then levelled."""
        return self.levelled(self.through_codec(audio))

    def picture(self, clip) -> tuple[torch.Tensor, torch.Tensor]:
        # What the engine sees comes out of a video file: give the model compressed frames.
        f = self.visual.encode_frames(compress_frames(clip.frames, clip.fps, crf=23), clip.fps)
        return f.clip, f.sync

    @torch.inference_mode()
    def generate(self, pictures: list[tuple[torch.Tensor, torch.Tensor]], prompts: list[str],
                 negatives: list[str] | None, settings: EvalSettings, zero_picture: bool = False,
                 seed: int | None = None) -> list[np.ndarray]:
        """16 kHz audio for each picture with its prompt (and its negative prompt, when
        `negatives` is given), in batches of `settings.batch`, levelled as the engine's output
        stage levels it: a prompt that only moves the overall level changes nothing an editor
        hears, so it must change nothing measured."""
        return [self.levelled(a) for latents in self.sample(pictures, prompts, negatives, settings,
                                                            zero_picture, seed)
                for a in self.codec.decode(latents).numpy()]

    @torch.inference_mode()
    def sample(self, pictures: list[tuple[torch.Tensor, torch.Tensor]], prompts: list[str],
               negatives: list[str] | None, settings: EvalSettings, zero_picture: bool = False,
               seed: int | None = None):
        """The latents of `generate`, one batch at a time."""
        from daemon.model.guide import ClassSteer
        from daemon.model.windows import generate_latents

        for i in range(0, len(pictures), settings.batch):
            part = pictures[i:i + settings.batch]
            clip = torch.stack([p[0] for p in part])
            sync = torch.stack([p[1] for p in part])
            if zero_picture:
                clip, sync = torch.zeros_like(clip), torch.zeros_like(sync)
            part_prompts = prompts[i:i + settings.batch]
            part_negatives = [""] * len(part_prompts) if negatives is None else negatives[i:i + settings.batch]
            text, prompted, neg = conditioning_text(self.text, part_prompts, part_negatives,
                                                    self.network.config.reads_negation)
            neg = None if negatives is None else neg
            steer = (ClassSteer.for_texts(self.guide, self.text, part_prompts, part_negatives)
                     if settings.class_guidance else None)
            n = self.network.config.seq_lens_for(8.0)[0]
            latents = generate_latents(self.network, clip, sync, text, n, negative_text_f=neg,
                                       steps=settings.steps,
                                       seed=settings.seed if seed is None else seed,
                                       prompted=prompted, guidance=settings.guidance(),
                                       renoise=settings.renoise, steer=steer)
            yield latents


def _soft_spans(clip) -> list[tuple[float, float]]:
    return [(e.time, e.time + e.duration) for e in clip.events if not e.onset]


def evaluate_sync(model: ModelUnderTest, seeds: list[int], settings: EvalSettings) -> dict:
    clips = [generate_clip(s, EVAL_SYNC) for s in seeds]
    pictures = [model.picture(c) for c in clips]
    prompts = [c.caption or "" for c in clips]
    generated = model.generate(pictures, prompts, None, settings)
    blind = model.generate(pictures, prompts, None, settings, zero_picture=True)
    rng = np.random.default_rng(settings.seed)
    rows = {"model": [], "visual_zeroed": [], "random_onsets": [], "world_audio": [],
            "codec_world_audio": []}
    found_by_class = {"model": {}, "world_audio": {}}  # class -> [found, listed]
    align = {k: [] for k in rows}
    per_clip = []
    for clip, audio, audio_blind in zip(clips, generated, blind, strict=True):
        ref, soft = clip.onset_times, _soft_spans(clip)
        peaks = motion_peaks(clip.frames, clip.fps)
        found = {"model": detect_onsets(audio, 16_000),
                 "visual_zeroed": detect_onsets(audio_blind, 16_000),
                 "world_audio": detect_onsets(clip.audio, clip.rate),
                 "codec_world_audio": detect_onsets(model.through_codec(clip.audio), 16_000)}
        found["random_onsets"] = random_onsets(len(found["model"]), clip.duration, rng)
        for key, onsets in found.items():
            rows[key].append(onset_scores(onsets, ref, settings.tolerance, soft))
            align[key].append(av_align(onsets, peaks, clip.fps))
        hits = [e for e in clip.events if e.onset]
        for key, counts in found_by_class.items():
            for event, hit in zip(hits, matched_references(
                    found[key], [e.time for e in hits], settings.tolerance), strict=True):
                tally = counts.setdefault(event.cls, [0, 0])
                tally[0] += int(hit)
                tally[1] += 1
        model_scores = rows["model"][-1]
        per_clip.append({"seed": clip.seed, "caption": clip.caption, "events": len(ref),
                         "model_onsets": len(found["model"]), "f1": model_scores["f1"],
                         **{k: model_scores[k] for k in ("tp", "fp", "fn")}})
    summary = {key: {**pooled_scores(rows[key]), "f1_interval": pooled_interval(rows[key]),
                     "av_align": float(np.mean(align[key]))}
               for key in rows}
    # Which events are found: the flashes and slams the front end shows clearly, or the foot
    # plants it barely shows (benchmarks/event_visibility.py).
    recall_by_class = {key: {cls: {"found": f, "events": n, "recall": f / n}
                             for cls, (f, n) in sorted(counts.items())}
                       for key, counts in found_by_class.items()}
    return {"clips": len(clips), "tolerance_s": settings.tolerance, "summary": summary,
            "recall_by_class": recall_by_class, "per_clip": per_clip}


QUIET_FLOOR = replace(EVAL_SYNC, noise_floor_db=(-100.0, -90.0))


def adherence_cases(seeds: list[int], settings: EvalSettings) -> list[tuple]:
    """(seed, family, shown class, prompted class, prompt) for each seed: the families in
    turn, the class the world shows and the one the prompt names drawn within the family."""
    rng = np.random.default_rng(settings.seed + 1)
    names = list(FAMILIES)
    cases = []
    for i, seed in enumerate(seeds):
        family = FAMILIES[names[i % len(names)]]
        shown, prompted = str(rng.choice(family)), str(rng.choice(family))
        cases.append((seed, names[i % len(names)], shown, prompted, class_prompt(prompted, rng)))
    return cases


def adherence_clip(seed: int, shown: str, config: WorldConfig = EVAL_SYNC):
    """The world clip of an adherence case: the shown class alone, one shot."""
    return generate_clip(seed, config, classes=(shown,), cuts=False)


def evaluate_adherence(model: ModelUnderTest, classifier, seeds: list[int],
                       settings: EvalSettings) -> dict:
    cases = adherence_cases(seeds, settings)
    clips = [adherence_clip(seed, shown) for seed, _, shown, _, _ in cases]
    pictures = [model.picture(c) for c in clips]
    generated = model.generate(pictures, [c[4] for c in cases], None, settings)
    unprompted = model.generate(pictures, [""] * len(cases), None, settings)
    # The judge on audio that went through the codec alone (the world's own sound, log-mel ->
    # Griffin-Lim): how far it can be trusted on reconstructed audio.
    codec_audio = [model.through_codec(c.audio) for c in clips]
    judge = float(np.mean([classifier.predict(a)[0] == c[2]
                           for a, c in zip(codec_audio, cases, strict=True)]))
    # And on the same sounds over near silence, as a model may generate them: the hiss under a
    # sound must not decide its class.
    quiet = [adherence_clip(seed, shown, QUIET_FLOOR).audio for seed, _, shown, _, _ in cases]
    judge_quiet = float(np.mean([classifier.predict(a)[0] == c[2]
                                 for a, c in zip(quiet, cases, strict=True)]))
    records = []
    for (seed, family, shown, prompted, text), audio, bare in zip(cases, generated, unprompted,
                                                                  strict=True):
        label, probs = classifier.predict(audio)
        bare_label, bare_probs = classifier.predict(bare)
        members = [CLASSES.index(c) for c in FAMILIES[family]]
        in_family = CLASSES[members[int(np.argmax(probs[members]))]]
        bare_in_family = CLASSES[members[int(np.argmax(bare_probs[members]))]]
        records.append({"seed": seed, "family": family, "world_class": shown,
                        "prompted": prompted, "prompt": text, "classified": label,
                        "classified_in_family": in_family, "unprompted_classified": bare_label,
                        "unprompted_in_family": bare_in_family})
        if family == "music":
            world = model.delivered(adherence_clip(seed, prompted, QUIET_FLOOR).audio)
            records[-1].update({"beat_regularity": beat_regularity(audio, 16_000),
                                "unprompted_beat_regularity": beat_regularity(bare, 16_000),
                                "world_beat_regularity": beat_regularity(world, 16_000)})

    def rate(key, field="prompted"):
        return float(np.mean([r[key] == r[field] for r in records])) if records else 0.0

    by_family = {f: float(np.mean([r["classified_in_family"] == r["prompted"]
                                   for r in records if r["family"] == f]))
                 for f in FAMILIES if any(r["family"] == f for r in records)}
    # Whether the judge hears the family at all (a footstep heard as an impact is the sound's
    # fault, not the prompt's: the picture already tells the family).
    family_heard = {f: float(np.mean([r["classified"] in FAMILIES[f]
                                      for r in records if r["family"] == f]))
                    for f in by_family}
    return {"clips": len(records),
            "classifier_accuracy_on_codec_world_audio": judge,
            "classifier_accuracy_on_world_audio_over_near_silence": judge_quiet,
            "accuracy": rate("classified"),
            "accuracy_within_family": rate("classified_in_family"),
            "within_family_by_family": by_family,
            "family_heard_by_family": family_heard,
            "heard_as_by_prompted": heard_as_by_prompted(records),
            "beat_regularity_by_mood": beat_regularity_by_mood(records),
            "baseline_empty_prompt_accuracy": rate("unprompted_classified"),
            "baseline_empty_prompt_within_family": rate("unprompted_in_family"),
            "chance_within_family": float(np.mean([1 / len(FAMILIES[r["family"]])
                                                   for r in records])) if records else 0.0,
            "per_clip": records}


def heard_as_by_prompted(records: list[dict]) -> dict[str, dict[str, int]]:
    """What the judge named, counted for each prompted class (over all classes): where the
    prompt is lost, and to what (upbeat music heard as stone impacts, glass as clicks)."""
    table: dict[str, dict[str, int]] = {}
    for r in sorted(records, key=lambda r: (r["prompted"], r["classified"])):
        heard = table.setdefault(r["prompted"], {})
        heard[r["classified"]] = heard.get(r["classified"], 0) + 1
    return table


def beat_regularity_by_mood(records: list[dict]) -> dict[str, dict[str, float]]:
    """Mean beat regularity of the music cases by prompted mood: generated, generated with an
    empty prompt, and the world's own bed of that mood (after the codec, levelled)."""
    columns = {"model": "beat_regularity", "empty_prompt": "unprompted_beat_regularity",
               "world": "world_beat_regularity"}
    moods = sorted({r["prompted"] for r in records if "beat_regularity" in r})
    return {mood: {name: float(np.mean([r[key] for r in records if r["prompted"] == mood]))
                   for name, key in columns.items()}
            for mood in moods}


CONDITIONING_TIMES = (0.02, 0.1, 0.3, 0.5, 0.7, 0.9)
EVAL_CAPTIONED = WorldConfig(caption_none_probability=0.0)


@torch.inference_mode()
def evaluate_unfamiliar(model: ModelUnderTest, seeds: list[int], settings: EvalSettings) -> dict:
    """Pictures unlike the world's (`world.unfamiliar`), with no prompt: the share of each
    clip's latent at the sampler's ceiling, where a network that does not know a picture runs
    (above `engine.UNFAMILIAR_SHARE` the engine calls a clip not to be trusted). Held within
    the training pictures' range as the engine holds them (`visual.PictureRange`) and, as the
    baseline, as they come."""
    from daemon.model.codec import ceiling_share
    from daemon.model.engine import UNFAMILIAR_SHARE
    from daemon.model.world.unfamiliar import KINDS, unfamiliar_picture

    span, model.visual.picture_range = model.visual.picture_range, None
    try:
        cases = [(kind, seed) for seed in seeds for kind in KINDS]
        raw = [model.visual.encode_frames(compress_frames(unfamiliar_picture(kind, seed, EVAL_SYNC),
                                                          25, crf=23), 25) for kind, seed in cases]
    finally:
        model.visual.picture_range = span
    variants = {"as_is": raw, "held": raw if span is None else [span.hold(f) for f in raw]}
    # Under the texture the world clip's events still happen: does the sound still follow them?
    textured = [i for i, (kind, _) in enumerate(cases) if kind == "world_over_texture"]
    clips = {i: generate_clip(cases[i][1], EVAL_SYNC) for i in textured}
    shares, onsets = {}, {}
    for name, features in variants.items():
        pictures = [(f.clip, f.sync) for f in features]
        latents = torch.cat(list(model.sample(pictures, [""] * len(pictures), None, settings)))
        shares[name] = ceiling_share(latents).tolist()
        audio = {i: model.levelled(model.codec.decode(latents[i:i + 1])[0].numpy()) for i in textured}
        onsets[name] = pooled_scores([
            onset_scores(detect_onsets(audio[i], 16_000), clips[i].onset_times,
                         settings.tolerance, _soft_spans(clips[i])) for i in textured])
    by_kind = {kind: {name: round(float(np.mean([s for (k, _), s in zip(cases, values, strict=True)
                                                 if k == kind])), 4)
                      for name, values in shares.items()} for kind in KINDS}
    return {
        "picture_range": span is not None,
        "clips": len(cases),
        "mean_ceiling_share": {name: round(float(np.mean(v)), 4) for name, v in shares.items()},
        "untrusted_clips": {name: int(sum(x > UNFAMILIAR_SHARE for x in v))
                            for name, v in shares.items()},
        "ceiling_share_by_kind": by_kind,
        "world_over_texture_onsets": {name: {k: round(float(v), 4) for k, v in scores.items()}
                                      for name, scores in onsets.items()},
        "records": [{"kind": k, "seed": seed, **{name: round(v[i], 4) for name, v in shares.items()}}
                    for i, (k, seed) in enumerate(cases)],
    }


@torch.inference_mode()
def evaluate_conditioning(model: ModelUnderTest, seeds: list[int], settings: EvalSettings) -> dict:
    network = model.network
    clips = [generate_clip(s, EVAL_CAPTIONED) for s in seeds]
    pictures = [model.picture(c) for c in clips]
    clip_f = torch.stack([p[0] for p in pictures])
    sync_f = torch.stack([p[1] for p in pictures])
    text_f = model.text.encode([c.caption for c in clips]).tokens
    data = network.normalize(model.codec.encode(
        torch.stack([torch.from_numpy(c.audio) for c in clips])))
    empty_clip, empty_sync, empty_text = network.empty_features(
        len(clips), clip_f.shape[1], sync_f.shape[1])
    variants = {"full": (clip_f, sync_f, text_f),
                "picture_removed": (empty_clip, empty_sync, text_f),
                "text_removed": (clip_f, sync_f, empty_text),
                "both_removed": (empty_clip, empty_sync, empty_text)}
    generator = torch.Generator().manual_seed(settings.seed)
    by_t = {}
    for t in CONDITIONING_TIMES:
        noise = torch.randn(data.shape, generator=generator)
        x_t = (1 - t) * noise + t * data
        target = data - noise
        times = torch.full((len(clips),), t)
        by_t[str(t)] = {
            name: float(((network(x_t, *conditions, times) - target) ** 2).mean())
            for name, conditions in variants.items()}
    loss = {name: float(np.mean([row[name] for row in by_t.values()])) for name in variants}

    def gain(removed: str) -> float:
        return 1.0 - loss["full"] / loss[removed]

    return {"clips": len(clips), "times": list(CONDITIONING_TIMES), "loss": loss,
            "loss_by_t": by_t,
            "relative_loss_reduction": {"picture": gain("picture_removed"),
                                        "text": gain("text_removed"),
                                        "both": gain("both_removed")}}


def _class_spans(clip, cls: str) -> list[tuple[float, float]]:
    """Where `cls` sounds in `clip`: 300 ms after each of its events for an event class;
    for an ambience, the gaps between events (beyond 400 ms after any hit)."""
    events = sorted(e.time for e in clip.events if e.source != "ambience")
    if any(e.cls == cls for e in clip.events if e.source != "ambience"):
        return [(e.time, e.time + 0.3) for e in clip.events if e.cls == cls]
    spans, t = [], 0.0
    for hit in events + [clip.duration]:
        if hit - t > 0.05:
            spans.append((t, hit))
        t = max(t, hit + 0.4)
    return spans


def evaluate_negative(model: ModelUnderTest, seeds: list[int], settings: EvalSettings) -> dict:
    rng = np.random.default_rng(settings.seed + 2)
    control = np.random.default_rng(settings.seed + 3)
    cases, pictures, drawn = [], [], {}
    for seed in seeds:
        event, ambience = str(rng.choice(NEGATIVE_EVENTS)), str(rng.choice(NEGATIVE_AMBIENCES))
        clip = generate_clip(seed, EVAL_SYNC, classes=(event, ambience), cuts=False)
        drawn[seed] = (event, ambience)
        picture = model.picture(clip)
        event_text, ambience_text = class_prompt(event, rng), class_prompt(ambience, rng)
        # Negate the ambience while prompting the event, and the other way round.
        # The control negates a class of the same kind that is not in the clip: what any
        # negative prompt does to the target, whether or not it names it.
        # (Its own random stream keeps the cases themselves as they were without it.)
        other_event = str(control.choice([c for c in NEGATIVE_EVENTS if c != event]))
        other_ambience = str(control.choice([c for c in NEGATIVE_AMBIENCES if c != ambience]))
        for target, target_text, prompt, other in (
                (ambience, ambience_text, event_text, class_prompt(other_ambience, control)),
                (event, event_text, ambience_text, class_prompt(other_event, control))):
            cases.append((clip, target, target_text, prompt, other))
            pictures.append(picture)
    prompts = [c[3] for c in cases]
    plain = model.generate(pictures, prompts, None, settings)
    reseeded = model.generate(pictures, prompts, None, settings, seed=settings.seed + 1)
    negated = model.generate(pictures, prompts, [c[2] for c in cases], settings)
    unrelated = model.generate(pictures, prompts, [c[4] for c in cases], settings)
    # With no prompt: naming only the other class already tells the network that it is the
    # sound, which turns the target down before any negative prompt does. A clip's two cases
    # (one per target) share its picture, so with no prompt and no negative they are one sound.
    once = model.generate(pictures[::2], [""] * (len(cases) // 2), None, settings)
    bare = [audio for audio in once for _ in range(2)]
    bare_negated = model.generate(pictures, [""] * len(cases), [c[2] for c in cases], settings)
    bare_unrelated = model.generate(pictures, [""] * len(cases), [c[4] for c in cases], settings)
    world = {clip.seed: model.delivered(clip.audio) for clip, *_ in cases}
    records = []
    for (clip, target, target_text, prompt, other), *generated in zip(
            cases, plain, reseeded, negated, unrelated, bare, bare_negated, bare_unrelated,
            strict=True):
        # What a perfect negative prompt measures: the world's own sound of the clip, and of
        # the same clip with the target drawn but not heard, as the engine would deliver them.
        # The output stage levels both, so leaving a class out raises what remains.
        perfect = model.delivered(generate_clip(clip.seed, EVAL_SYNC, classes=drawn[clip.seed],
                                                cuts=False, unheard=(target,)).audio)
        spans = _class_spans(clip, target)
        # The same measured against where the clip's other class sounds: no levelling moves it.
        reference = _class_spans(clip, next(k for k in drawn[clip.seed] if k != target))
        record = {"seed": clip.seed, "target": target, "negative_prompt": target_text,
                  "prompt": prompt, "unrelated_negative_prompt": other}
        for prefix, level in (("", partial(span_energy_db, rate=16_000, spans=spans)),
                              ("relative_", partial(relative_level_db, rate=16_000, spans=spans,
                                                    reference=reference))):
            record |= {f"{prefix}{key}": value for key, value in _negation_levels(
                *(level(x) for x in generated), level(world[clip.seed]), level(perfect)).items()}
        records.append(record)
    return {"clips": len(seeds), **_negative_summary(records, ""),
            "relative": _negative_summary(records, "relative_"), "per_case": records}


def _negation_levels(plain: float, reseeded: float, negated: float, unrelated: float,
                     bare: float, bare_negated: float, bare_unrelated: float, world: float,
                     perfect: float) -> dict[str, float]:
    """One negative-section case as one measure (dB) sees it: the generated clip with no negative
    prompt, another seed of it, with the class named, with an absent class named; the same
    three with no prompt; the world's own sound, and without the class."""
    return {"energy_db": plain, "energy_with_negative_db": negated,
            "reduction_db": plain - negated, "reseed_difference_db": plain - reseeded,
            "unrelated_reduction_db": plain - unrelated,
            "unprompted_energy_db": bare, "unprompted_reduction_db": bare - bare_negated,
            "unprompted_unrelated_reduction_db": bare - bare_unrelated,
            "world_audio_energy_db": world, "world_audio_reduction_db": world - perfect}


def _negative_summary(records: list[dict], prefix: str) -> dict[str, float]:
    def mean(key, kind=None):
        rows = [r[prefix + key] for r in records if kind is None or
                (r["target"] in NEGATIVE_AMBIENCES) == (kind == "ambience")]
        return float(np.mean(rows)) if rows else 0.0

    return {"mean_reduction_db": mean("reduction_db"),
            "mean_reduction_ambience_db": mean("reduction_db", "ambience"),
            "mean_reduction_event_db": mean("reduction_db", "event"),
            "baseline_reseed_mean_abs_db": float(np.mean([
                abs(r[prefix + "reseed_difference_db"]) for r in records])) if records else 0.0,
            "baseline_unrelated_negative_db": mean("unrelated_reduction_db"),
            "baseline_unrelated_negative_ambience_db": mean("unrelated_reduction_db", "ambience"),
            "baseline_unrelated_negative_event_db": mean("unrelated_reduction_db", "event"),
            "unprompted_mean_reduction_ambience_db": mean("unprompted_reduction_db", "ambience"),
            "unprompted_mean_reduction_event_db": mean("unprompted_reduction_db", "event"),
            "unprompted_baseline_unrelated_negative_ambience_db": mean(
                "unprompted_unrelated_reduction_db", "ambience"),
            "unprompted_baseline_unrelated_negative_event_db": mean(
                "unprompted_unrelated_reduction_db", "event"),
            "ceiling_world_audio_ambience_db": mean("world_audio_reduction_db", "ambience"),
            "ceiling_world_audio_event_db": mean("world_audio_reduction_db", "event")}


def _seed_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    seeds = list(range(int(first), int(last or first) + 1))
    outside = [s for s in seeds if s not in HELD_OUT_SEEDS]
    if outside:
        raise SystemExit(f"seeds {outside[:3]}... are training seeds; evaluate on "
                         f"{HELD_OUT_SEEDS.start}..{HELD_OUT_SEEDS.stop - 1}")
    return seeds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="evaluate a V2A model on held-out world clips")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--classifier", default=None,
                        help="world audio classifier (default: world_classifier.safetensors "
                             "beside the weights)")
    parser.add_argument("--seeds", default="1000000-1000039",
                        help="held-out seed range FIRST-LAST; each section takes what it needs")
    parser.add_argument("--out", required=True)
    parser.add_argument("--sections", default="sync,adherence,negative,conditioning,unfamiliar")
    parser.add_argument("--sync-clips", type=int, default=EvalSettings.sync_clips)
    parser.add_argument("--adherence-clips", type=int, default=EvalSettings.adherence_clips)
    parser.add_argument("--negative-clips", type=int, default=EvalSettings.negative_clips)
    parser.add_argument("--conditioning-clips", type=int, default=EvalSettings.conditioning_clips)
    parser.add_argument("--unfamiliar-clips", type=int, default=EvalSettings.unfamiliar_clips)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=4.5)
    parser.add_argument("--renoise", type=float, default=RENOISE,
                        help="share of the predicted noise each sampler step redraws "
                             f"(default {RENOISE}, what the engine uses)")
    parser.add_argument("--prompt-ratio", type=float, default=PROMPT_GUIDANCE_RATIO,
                        help="the prompt term's strength as a multiple of --cfg "
                             f"(default {PROMPT_GUIDANCE_RATIO}, the engine's)")
    parser.add_argument("--negative-ratio", type=float, default=PROMPT_GUIDANCE_RATIO,
                        help="the negative term's strength as a multiple of --cfg "
                             f"(default {PROMPT_GUIDANCE_RATIO}, the engine's)")
    parser.add_argument("--prompt-until", type=float, default=PROMPT_UNTIL,
                        help="t up to which the prompt term has its own strength "
                             f"(default {PROMPT_UNTIL}, the engine's)")
    parser.add_argument("--picture-from", type=float, default=Guidance.picture_from,
                        help="t from which the picture term has its strength (before it: 1, "
                             f"no picture guidance; default {Guidance.picture_from}, the engine's)")
    parser.add_argument("--contact-ratio", type=float, default=CONTACT_GUIDANCE_RATIO,
                        help="the contact term's strength as a multiple of --cfg (0: none; "
                             f"default {CONTACT_GUIDANCE_RATIO}, the engine's)")
    parser.add_argument("--class-guidance", type=float, default=CLASS_GUIDANCE,
                        help="the class guide's term (class_guide.safetensors beside the weights) "
                             f"as a share of the velocity (0: none; default {CLASS_GUIDANCE}, "
                             "the engine's)")
    parser.add_argument("--away-guidance", type=float, default=Guidance.away,
                        help="the class guide's term away from the classes a negative prompt "
                             f"names (default {Guidance.away}, the engine's)")
    parser.add_argument("--away-until", type=float, default=Guidance.away_until,
                        help="t up to which that term steers "
                             f"(default {Guidance.away_until}, the engine's)")
    parser.add_argument("--classes-until", type=float, default=Guidance.classes_until,
                        help="t up to which the class guide's term toward the prompt's classes "
                             f"steers (default {Guidance.classes_until}, the engine's)")
    parser.add_argument("--class-guide-file", default=None,
                        help=f"the class guide to steer by (default: {GUIDE_FILE} beside the "
                             "weights)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = _seed_range(args.seeds)
    settings = EvalSettings(steps=args.steps, cfg=args.cfg, renoise=args.renoise,
                            prompt_ratio=args.prompt_ratio, negative_ratio=args.negative_ratio,
                            prompt_until=args.prompt_until, picture_from=args.picture_from,
                            contact_ratio=args.contact_ratio,
                            class_guidance=args.class_guidance,
                            away_guidance=args.away_guidance, away_until=args.away_until,
                            classes_until=args.classes_until,
                            sync_clips=args.sync_clips,
                            adherence_clips=args.adherence_clips,
                            negative_clips=args.negative_clips,
                            conditioning_clips=args.conditioning_clips,
                            unfamiliar_clips=args.unfamiliar_clips)
    model = ModelUnderTest(args.weights, class_guide=args.class_guide_file)
    report = {"weights": args.weights, "seeds": args.seeds, "settings": asdict(settings),
              "hardware": f"{platform.machine()}, {torch.get_num_threads()} CPU threads",
              "precision": precision_name(next(model.network.parameters()).device),
              "class_guide": None if model.guide is None else str(
                  args.class_guide_file or Path(args.weights).parent / GUIDE_FILE),
              "command": "python -m daemon.model.evaluate " + " ".join(
                  sys.argv[1:] if argv is None else argv)}
    sections = set(args.sections.split(","))
    timings = {}
    if "sync" in sections:
        started = time.time()
        report["sync"] = evaluate_sync(model, seeds[:settings.sync_clips], settings)
        timings["sync_s"] = round(time.time() - started, 1)
    if "adherence" in sections:
        from daemon.model.world.classifier import AudioClassifier

        path = Path(args.classifier or Path(args.weights).with_name("world_classifier.safetensors"))
        classifier = AudioClassifier.load(path)
        report["classifier"] = {"path": str(path), **json.loads(
            file_metadata(path).get("training", "{}"))}
        started = time.time()
        report["adherence"] = evaluate_adherence(model, classifier,
                                                 seeds[:settings.adherence_clips], settings)
        timings["adherence_s"] = round(time.time() - started, 1)
    if "negative" in sections:
        started = time.time()
        report["negative"] = evaluate_negative(model, seeds[:settings.negative_clips], settings)
        timings["negative_s"] = round(time.time() - started, 1)
    if "unfamiliar" in sections:
        started = time.time()
        report["unfamiliar"] = evaluate_unfamiliar(model, seeds[:settings.unfamiliar_clips],
                                                   settings)
        timings["unfamiliar_s"] = round(time.time() - started, 1)
    if "conditioning" in sections:
        started = time.time()
        report["conditioning"] = evaluate_conditioning(
            model, seeds[:settings.conditioning_clips], settings)
        timings["conditioning_s"] = round(time.time() - started, 1)
    report["timings"] = timings
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(_headline(report), indent=2))


def _headline(report: dict) -> dict:
    out = {}
    if "sync" in report:
        s = report["sync"]["summary"]
        out["onset_f1"] = {k: round(v["f1"], 3) for k, v in s.items()}
        out["onset_f1_95_interval"] = {k: [round(x, 3) for x in v["f1_interval"]]
                                       for k, v in s.items()}
        out["av_align"] = {k: round(v["av_align"], 3) for k, v in s.items()}
    if "adherence" in report:
        a = report["adherence"]
        out["adherence"] = {k: a[k] for k in ("accuracy", "accuracy_within_family",
                                              "baseline_empty_prompt_accuracy",
                                              "baseline_empty_prompt_within_family",
                                              "chance_within_family", "family_heard_by_family")}
        out["classifier_held_out_accuracy"] = report["classifier"].get("held_out_accuracy")
        out["classifier_on_codec_world_audio"] = a["classifier_accuracy_on_codec_world_audio"]
        out["classifier_on_world_audio_over_near_silence"] = a[
            "classifier_accuracy_on_world_audio_over_near_silence"]
    if "negative" in report:
        n = report["negative"]
        out["negative"] = {k: n[k] for k in ("mean_reduction_db", "mean_reduction_ambience_db",
                                             "mean_reduction_event_db",
                                             "baseline_unrelated_negative_ambience_db",
                                             "baseline_unrelated_negative_event_db",
                                             "baseline_reseed_mean_abs_db",
                                             "unprompted_mean_reduction_ambience_db",
                                             "unprompted_mean_reduction_event_db",
                                             "unprompted_baseline_unrelated_negative_ambience_db",
                                             "unprompted_baseline_unrelated_negative_event_db",
                                             "ceiling_world_audio_ambience_db",
                                             "ceiling_world_audio_event_db", "relative")}
    if "unfamiliar" in report:
        u = report["unfamiliar"]
        out["unfamiliar"] = {k: u[k] for k in ("mean_ceiling_share", "untrusted_clips", "clips")}
        out["unfamiliar"]["world_over_texture_onset_f1"] = {
            name: scores["f1"] for name, scores in u["world_over_texture_onsets"].items()}
    if "conditioning" in report:
        out["conditioning_relative_loss_reduction"] = {
            k: round(v, 4) for k, v in report["conditioning"]["relative_loss_reduction"].items()}
    out["timings"] = report.get("timings")
    return out


if __name__ == "__main__":
    main()
