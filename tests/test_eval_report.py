"""The evaluation command end to end on a tiny, untrained network, and the audio classifier's
plumbing. (The numbers of the shipped model are in its model card, not asserted here.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from daemon.model.checkpoint import save_network
from daemon.model.network import build_network
from daemon.model.world import EVAL_SYNC, WorldConfig, generate_clip
from daemon.model.world.captions import CLASSES
from daemon.model.world.classifier import AudioClassifier, audio_features

WEIGHTS = Path(__file__).resolve().parents[1] / "daemon" / "model" / "weights"


@pytest.fixture(scope="module")
def untrained_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_network(build_network("tiny"), path)
    return path


def test_sync_report_has_model_and_every_baseline(untrained_weights, tmp_path):
    from daemon.model.evaluate import main

    out = tmp_path / "report.json"
    main(["--weights", str(untrained_weights), "--seeds", "1000000-1000001", "--out", str(out),
          "--sections", "sync", "--sync-clips", "2", "--steps", "2", "--threads", "1"])
    report = json.loads(out.read_text())
    assert report["precision"] == "float32"  # how it sampled: on a CPU, float32 whatever the CPU
    summary = report["sync"]["summary"]
    assert set(summary) == {"model", "visual_zeroed", "random_onsets", "world_audio",
                            "codec_world_audio"}
    by_class = report["sync"]["recall_by_class"]
    assert set(by_class) == {"model", "world_audio"}
    listed = sum(len([e for e in generate_clip(s, EVAL_SYNC).events if e.onset])
                 for s in (1_000_000, 1_000_001))
    assert sum(row["events"] for row in by_class["model"].values()) == listed
    for scores in summary.values():
        assert 0.0 <= scores["f1"] <= 1.0 and 0.0 <= scores["av_align"] <= 1.0
        low, high = scores["f1_interval"]
        assert 0.0 <= low <= high <= 1.0
    # Each clip's counts are kept, so two reports on the same clips can be compared clip by clip.
    per_clip = report["sync"]["per_clip"]
    assert sum(c["tp"] + c["fn"] for c in per_clip) == listed
    # The world's own audio through the same detector is the ceiling (also after the codec);
    # an untrained network is nowhere near it.
    assert summary["world_audio"]["f1"] > 0.8
    assert summary["model"]["f1"] < min(summary["world_audio"]["f1"],
                                        summary["codec_world_audio"]["f1"])


def test_training_seeds_are_refused(untrained_weights, tmp_path):
    from daemon.model.evaluate import main

    with pytest.raises(SystemExit, match="training seeds"):
        main(["--weights", str(untrained_weights), "--seeds", "5-9", "--out",
              str(tmp_path / "r.json")])


def test_classifier_features_ignore_level_and_the_model_round_trips(tmp_path):
    audio = generate_clip(600_123, WorldConfig(duration=2.0), classes=("rain",)).audio
    a, b = audio_features(audio), audio_features(0.1 * audio)
    assert a.shape == (334,) and np.allclose(a, b, atol=1e-3)
    torch.manual_seed(0)
    model = AudioClassifier()
    path = tmp_path / "classifier.safetensors"
    model.save(path, {"held_out_accuracy": 0.0})
    label, probs = AudioClassifier.load(path).predict(audio)
    assert label in CLASSES and probs.shape == (len(CLASSES),)
    assert label == model.predict(audio)[0]


def test_conditioning_section_sees_that_an_untrained_network_ignores_its_conditions(
        untrained_weights, tmp_path):
    from daemon.model.evaluate import main

    out = tmp_path / "report.json"
    main(["--weights", str(untrained_weights), "--seeds", "1000000-1000001", "--out", str(out),
          "--sections", "conditioning", "--conditioning-clips", "2", "--threads", "1"])
    section = json.loads(out.read_text())["conditioning"]
    assert section["clips"] == 2
    assert set(section["loss"]) == {"full", "picture_removed", "text_removed", "both_removed"}
    # A fresh network's blocks are gated shut (zero-initialised modulation), so what it is
    # given cannot change its output: taking a condition away costs exactly nothing.
    for reduction in section["relative_loss_reduction"].values():
        assert abs(reduction) < 1e-6
    assert all(loss > 0 for loss in section["loss"].values())


def test_the_shipped_judge_names_lone_world_sounds_over_near_silence_too():
    # Generated audio may come out with no hiss under it; the judge was trained on floors from
    # near silence up, so what it says does not hang on the floor (held-out seeds).
    from daemon.model.evaluate import QUIET_FLOOR

    judge = AudioClassifier.load(WEIGHTS / "world_classifier.safetensors")
    right = [judge.predict(generate_clip(1_960_000 + k, QUIET_FLOOR, classes=(cls,),
                                         cuts=False).audio)[0] == cls
             for k, cls in enumerate(CLASSES)]
    assert np.mean(right) >= 0.9, [c for c, ok in zip(CLASSES, right, strict=True) if not ok]


def test_generated_audio_is_measured_as_the_engine_delivers_it(untrained_weights):
    """Levelled by the output stage: a prompt that only moved the overall level would change
    nothing an editor hears, and must measure as nothing."""
    import pyloudnorm

    from daemon.model.engine import OutputSettings, true_peak
    from daemon.model.evaluate import EvalSettings, ModelUnderTest

    model = ModelUnderTest(untrained_weights)
    clip = generate_clip(1_000_000, EVAL_SYNC)
    audio = model.generate([model.picture(clip)], ["rain"], None, EvalSettings(steps=2))[0]
    out = OutputSettings()
    loudness = pyloudnorm.Meter(16_000).integrated_loudness(audio.astype(np.float64))
    peak_db = 20 * np.log10(true_peak(audio, 16_000))
    assert loudness < out.loudness_lufs + 0.1
    # At the target loudness, unless the true-peak ceiling held it lower.
    assert abs(loudness - out.loudness_lufs) < 0.1 or abs(peak_db - out.true_peak_dbfs) < 0.1


def test_adherence_report_and_a_comparison_of_it(untrained_weights, tmp_path):
    from daemon.model.compare import compare_reports
    from daemon.model.evaluate import FAMILIES, main

    out = tmp_path / "report.json"
    main(["--weights", str(untrained_weights), "--classifier",
          str(WEIGHTS / "world_classifier.safetensors"), "--seeds", "1000000-1000002",
          "--out", str(out), "--sections", "adherence", "--adherence-clips", "3", "--steps", "2",
          "--threads", "1"])
    report = json.loads(out.read_text())
    section = report["adherence"]
    assert [r["family"] for r in section["per_clip"]] == list(FAMILIES)
    for r in section["per_clip"]:
        assert r["prompted"] in FAMILIES[r["family"]] and r["classified"] in CLASSES
    # Right over all classes is right within the family too.
    assert section["accuracy"] <= section["accuracy_within_family"]
    assert set(section["family_heard_by_family"]) == set(FAMILIES)
    heard = section["heard_as_by_prompted"]
    assert sum(sum(row.values()) for row in heard.values()) == len(section["per_clip"])
    assert sum(row.get(prompted, 0) for prompted, row in heard.items()) == round(
        section["accuracy"] * len(section["per_clip"]))
    # The music case: the world's own bed keeps a beat; the untrained network's noise does not.
    (music,) = [r for r in section["per_clip"] if r["family"] == "music"]
    regularity = section["beat_regularity_by_mood"][music["prompted"]]
    assert regularity["model"] == music["beat_regularity"]
    if music["prompted"] != "music_calm":  # a calm pad has no beat to keep
        assert regularity["world"] > 0.5 > regularity["model"]
    assert section["classifier_accuracy_on_codec_world_audio"] >= 2 / 3
    same = compare_reports(report, report)["adherence"]
    assert same["within_family"]["only_a_right"] == same["within_family"]["only_b_right"] == 0


def test_sampler_settings_of_the_command_reach_the_sampler(untrained_weights, monkeypatch):
    import daemon.model.windows
    from daemon.model.evaluate import EvalSettings, ModelUnderTest
    from daemon.model.flow import Guidance

    assert EvalSettings().guidance() == Guidance.scaled(4.5)  # the engine's
    other = EvalSettings(steps=2, renoise=0.25, prompt_ratio=1.0, negative_ratio=3.0,
                         prompt_until=0.5, contact_ratio=0.5)
    assert other.guidance() == Guidance(4.5, 4.5, 13.5, 0.5, contacts=2.25)
    model = ModelUnderTest(untrained_weights)
    picture = [model.picture(generate_clip(1_000_000, EVAL_SYNC))]
    seen, generate_latents = [], daemon.model.windows.generate_latents

    def spy(*args, **kwargs):
        seen.append((kwargs["guidance"], kwargs["renoise"], kwargs["steps"]))
        return generate_latents(*args, **kwargs)

    monkeypatch.setattr(daemon.model.windows, "generate_latents", spy)
    model.generate(picture, ["rain on a window"], None, other)
    assert seen == [(Guidance(4.5, 4.5, 13.5, 0.5, contacts=2.25), 0.25, 2)]


def test_negative_section_measures_what_a_perfect_negative_prompt_would(untrained_weights, tmp_path):
    from daemon.model.evaluate import NEGATIVE_AMBIENCES, main

    out = tmp_path / "report.json"
    main(["--weights", str(untrained_weights), "--seeds", "1000000-1000001", "--out", str(out),
          "--sections", "negative", "--negative-clips", "2", "--steps", "2", "--threads", "1"])
    negative = json.loads(out.read_text())["negative"]
    cases = negative["per_case"]
    assert [c["target"] in NEGATIVE_AMBIENCES for c in cases] == [True, False] * 2
    # The world's own sound without the ambience is far quieter between the events than with
    # it: the ceiling of the measurement, met by no network that ignores its negative prompt.
    ambience = [c["world_audio_reduction_db"] for c in cases if c["target"] in NEGATIVE_AMBIENCES]
    assert min(ambience) > 6.0
    assert negative["ceiling_world_audio_ambience_db"] == pytest.approx(np.mean(ambience))
    assert negative["ceiling_world_audio_ambience_db"] > negative["mean_reduction_ambience_db"] + 3
    # Levelled, an event left out measures little (its spans then hold the ambience, raised);
    # against where the ambience sounds alone, it measures what it was.
    relative = negative["relative"]
    assert relative["ceiling_world_audio_event_db"] > negative["ceiling_world_audio_event_db"] + 5
    assert relative["ceiling_world_audio_ambience_db"] > 6.0
    # Every case is also measured with no prompt, in both measures.
    for case in cases:
        for measure in ("", "relative_"):
            assert np.isfinite(case[f"{measure}unprompted_reduction_db"])
            assert np.isfinite(case[f"{measure}unprompted_unrelated_reduction_db"])
    assert negative["unprompted_mean_reduction_ambience_db"] == pytest.approx(np.mean(
        [c["unprompted_reduction_db"] for c in cases if c["target"] in NEGATIVE_AMBIENCES]))


def test_unfamiliar_section_measures_pictures_held_in_range_and_as_they_come(untrained_weights,
                                                                             tmp_path):
    from daemon.model.evaluate import main
    from daemon.model.visual import PICTURE_RANGE_FILE, MotionFeatures, PictureRange
    from daemon.model.world.unfamiliar import KINDS

    weights = tmp_path / "tiny.safetensors"
    weights.write_bytes(untrained_weights.read_bytes())
    world = MotionFeatures().encode_frames(generate_clip(1_000_000, WorldConfig(duration=1.0)).frames, 25)
    PictureRange.spanning([world]).save(tmp_path / PICTURE_RANGE_FILE, {})
    out = tmp_path / "report.json"
    main(["--weights", str(weights), "--seeds", "1000000-1000001", "--out", str(out),
          "--sections", "unfamiliar", "--unfamiliar-clips", "1", "--steps", "2", "--threads", "1"])
    report = json.loads(out.read_text())["unfamiliar"]
    assert report["picture_range"] is True and report["clips"] == len(KINDS)
    assert [r["kind"] for r in report["records"]] == list(KINDS)
    for name in ("as_is", "held"):
        assert 0.0 <= report["mean_ceiling_share"][name] <= 1.0
        assert 0 <= report["untrusted_clips"][name] <= len(KINDS)
        scores = report["world_over_texture_onsets"][name]
        assert scores["tp"] + scores["fn"] == len(generate_clip(1_000_000, EVAL_SYNC).onset_times)
