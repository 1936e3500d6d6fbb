"""Evaluation metrics on hand-made cases: perfect, shifted, empty, and known detections."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.model.world.metrics import (
    av_align,
    beat_regularity,
    detect_onsets,
    matched_references,
    motion_peaks,
    onset_scores,
    paired_f1_difference,
    paired_mean_difference,
    pooled_interval,
    pooled_scores,
    random_onsets,
    relative_level_db,
    span_energy_db,
)

RATE = 16_000


def clicks(times, duration=2.0, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    audio = noise * rng.standard_normal(int(duration * RATE)).astype(np.float32)
    k = np.arange(800)
    burst = (rng.standard_normal(800) * np.exp(-k / 80)).astype(np.float32)
    for t in times:
        at = int(t * RATE)
        audio[at:at + 800] += burst[: len(audio) - at]
    return audio


def test_perfect_onsets_score_one():
    s = onset_scores([0.5, 1.0, 1.5], [0.5, 1.0, 1.5])
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 1.0, 1.0)


def test_shift_inside_and_outside_the_tolerance():
    ref = [0.5, 1.0, 1.5]
    assert onset_scores([t + 0.04 for t in ref], ref)["f1"] == 1.0
    assert onset_scores([t + 0.06 for t in ref], ref)["f1"] == 0.0


def test_partial_detection_counts_misses_and_false_alarms():
    s = onset_scores([0.5, 0.9, 3.0], [0.5, 1.0, 1.5, 2.0])
    assert (s["tp"], s["fp"], s["fn"]) == (1, 2, 3)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 4)


def test_one_detection_matches_only_one_reference():
    s = onset_scores([1.0], [0.98, 1.02])
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 1)


def test_empty_cases():
    assert onset_scores([], [])["f1"] == 1.0
    assert onset_scores([], [1.0])["f1"] == 0.0 and onset_scores([], [1.0])["recall"] == 0.0
    assert onset_scores([1.0], [])["precision"] == 0.0


def test_ignored_spans_do_not_count_as_false_alarms():
    s = onset_scores([0.5, 2.02, 4.0], [0.5], ignore=[(2.0, 2.1)])
    assert (s["tp"], s["fp"], s["fn"]) == (1, 1, 0)


def test_matched_references_say_which_events_were_found():
    found = matched_references([0.51, 2.3, 0.49], [2.0, 0.5, 3.0], tolerance=0.05)
    assert found.tolist() == [False, True, False]  # one detection per reference
    assert matched_references([], [1.0]).tolist() == [False]
    assert matched_references([1.0], []).tolist() == []


def test_pooled_scores_sum_counts():
    a = onset_scores([0.5], [0.5])
    b = onset_scores([], [1.0])
    assert pooled_scores([a, b])["recall"] == 0.5


def test_detector_finds_clicks_where_they_are():
    times = [0.3, 0.7, 1.25, 1.6]
    found = detect_onsets(clicks(times, noise=0.003), RATE)
    assert onset_scores(found, times, 0.02)["f1"] == 1.0


def test_detector_on_silence_and_steady_noise_finds_nothing():
    assert len(detect_onsets(np.zeros(RATE), RATE)) == 0
    steady = 0.1 * np.random.default_rng(1).standard_normal(2 * RATE).astype(np.float32)
    assert len(detect_onsets(steady, RATE)) == 0  # no attack where the audio starts
    steady[:160] *= np.linspace(0, 1, 160)  # nor where it fades in over its first 10 ms
    assert len(detect_onsets(steady, RATE)) == 0


def test_motion_peaks_find_a_flash_frame():
    frames = np.full((25, 16, 16, 3), 40, np.uint8)
    frames[10] = 250
    assert list(motion_peaks(frames, 25)) == [10 / 25]
    assert len(motion_peaks(np.zeros((25, 8, 8, 3), np.uint8), 25)) == 0


def test_av_align_perfect_one_frame_off_and_far_off():
    v = [0.4, 1.2]
    assert av_align([0.4, 1.2], v, 25) == 1.0
    assert av_align([0.44, 1.24], v, 25) == 1.0  # within one frame (40 ms)
    assert av_align([0.6, 1.5], v, 25) == 0.0
    assert av_align([0.4], v, 25) == 0.5  # 1 match over a union of 2
    assert av_align([], [], 25) == 1.0


def test_random_onsets_and_span_energy():
    rng = np.random.default_rng(0)
    r = random_onsets(5, 8.0, rng)
    assert len(r) == 5 and np.all((r >= 0) & (r <= 8)) and np.all(np.diff(r) >= 0)
    tone = np.zeros(RATE, np.float32)
    tone[:RATE // 2] = 0.1 * np.sin(np.arange(RATE // 2) * 0.1)
    assert span_energy_db(tone, RATE, [(0, 0.5)]) == pytest.approx(10 * np.log10(0.005), abs=0.1)
    assert span_energy_db(tone, RATE, [(0.5, 1.0)]) == -120.0


def test_relative_level_sees_a_removed_sound_whatever_the_overall_gain():
    hits = [0.2, 0.7, 1.2, 1.7]
    after = [(t, t + 0.05) for t in hits]
    between = [(t + 0.1, t + 0.45) for t in hits]
    bed = clicks([], noise=0.01)  # an ambience alone
    with_hits = clicks(hits, noise=0.01)
    prominence = relative_level_db(with_hits, RATE, after, between)
    assert prominence > 15.0
    # The overall level changes nothing (the output stage levels every clip) ...
    assert relative_level_db(0.05 * with_hits, RATE, after, between) == pytest.approx(prominence)
    # ... while span energy alone, once each clip is levelled, hides most of a removal:
    # the bed left alone is raised to the level the clip had.
    levelled = bed * np.sqrt(np.mean(with_hits ** 2) / np.mean(bed ** 2))
    energy_drop = span_energy_db(with_hits, RATE, after) - span_energy_db(levelled, RATE, after)
    relative_drop = prominence - relative_level_db(levelled, RATE, after, between)
    assert relative_drop == pytest.approx(prominence, abs=1.0) and relative_drop > energy_drop + 5


def clip_scores(tp, fp, fn):
    return {"tp": tp, "fp": fp, "fn": fn}


def test_pooled_interval_is_exact_when_every_clip_is_perfect_and_holds_the_score():
    assert pooled_interval([clip_scores(5, 0, 0)] * 10) == (1.0, 1.0)
    mixed = [clip_scores(5, 1, 0), clip_scores(2, 0, 3), clip_scores(4, 2, 1),
             clip_scores(0, 1, 2)] * 6
    low, high = pooled_interval(mixed)
    assert low < pooled_scores(mixed)["f1"] < high
    # A quarter of the clips (the same mix) leaves more to chance.
    few_low, few_high = pooled_interval(mixed[:4])
    assert few_high - few_low > high - low
    assert pooled_interval([]) == (0.0, 0.0)


def test_paired_difference_of_identical_and_of_better_scores():
    a = [clip_scores(3, 1, 1), clip_scores(2, 2, 0), clip_scores(1, 0, 3)] * 4
    same = paired_f1_difference(a, a)
    assert same["difference"] == 0.0 and same["interval"] == (0.0, 0.0)
    assert same["b_ahead"] == 0.0
    better = [{**s, "tp": s["tp"] + 1, "fn": max(0, s["fn"] - 1)} for s in a]
    result = paired_f1_difference(a, better)
    assert result["difference"] > 0 and result["interval"][0] > 0 and result["b_ahead"] == 1.0
    with pytest.raises(ValueError, match="different clips"):
        paired_f1_difference(a, a[:-1])


def test_paired_mean_difference_on_shared_cases():
    a = [1.0, -2.0, 3.5, 0.0, 2.0]
    assert paired_mean_difference(a, a) == {"difference": 0.0, "interval": (0.0, 0.0)}
    shifted = paired_mean_difference(a, [x + 1.5 for x in a])
    assert shifted["difference"] == pytest.approx(1.5)
    assert shifted["interval"] == pytest.approx((1.5, 1.5))
    mixed = paired_mean_difference(a, [3.0, -2.0, 2.5, 1.0, 2.0])
    assert mixed["interval"][0] <= mixed["difference"] <= mixed["interval"][1]
    with pytest.raises(ValueError, match="one value per shared case"):
        paired_mean_difference(a, a[:-1])


def test_beat_regularity_tells_a_steady_beat_from_scattered_attacks():
    steady = clicks(np.arange(0.1, 7.9, 0.25), duration=8.0, noise=0.01)
    rng = np.random.default_rng(3)
    scattered = clicks(np.sort(rng.uniform(0.1, 7.9, 32)), duration=8.0, noise=0.01)
    assert beat_regularity(steady, RATE) > 0.8
    assert beat_regularity(scattered, RATE) < 0.4
    # A beat slower than the longest period asked about is not seen as one.
    assert beat_regularity(clicks(np.arange(0.1, 7.9, 1.5), duration=8.0, noise=0.01), RATE) < 0.4
    assert beat_regularity(np.zeros(8 * RATE, np.float32), RATE) == 0.0
    assert beat_regularity(np.zeros(100, np.float32), RATE) == 0.0  # shorter than a period
