"""Comparing two evaluation reports clip by clip, on hand-made reports."""

from __future__ import annotations

import json

import pytest

from daemon.model.compare import ReportMismatch, compare_reports, main, sign_test


def sync_section(counts):
    per_clip = [{"seed": 1_000_000 + i, "tp": tp, "fp": fp, "fn": fn}
                for i, (tp, fp, fn) in enumerate(counts)]
    tp, fp, fn = (sum(c[k] for c in counts) for k in range(3))
    return {"summary": {"model": {"f1": 2 * tp / (2 * tp + fp + fn)}}, "per_clip": per_clip}


def adherence_section(right, right_in_family):
    return {"per_clip": [
        {"seed": 1_000_000 + i, "prompted": "impact_wood", "prompt": "wood impacts",
         "classified": "impact_wood" if ok else "door_slam",
         "classified_in_family": "impact_wood" if ok_f else "impact_metal"}
        for i, (ok, ok_f) in enumerate(zip(right, right_in_family, strict=True))]}


def negative_section(reductions):
    return {"per_case": [
        {"seed": 1_000_000 + i // 2, "target": target, "negative_prompt": target,
         "reduction_db": r, "unrelated_reduction_db": 0.0}
        for i, (target, r) in enumerate(reductions)]}


def test_sign_test_values():
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 0) == pytest.approx(2 / 32)
    assert sign_test(0, 10) == pytest.approx(2 / 1024)
    assert sign_test(3, 3) == 1.0


def test_a_report_against_itself_shows_no_difference():
    report = {"weights": "a", "sync": sync_section([(3, 1, 1), (2, 0, 2)] * 5),
              "adherence": adherence_section([True, False] * 4, [True, True, False, True] * 2),
              "negative": negative_section([("rain", 3.0), ("door_slam", 1.0)] * 4)}
    out = compare_reports(report, report)
    assert out["sync"]["f1_difference"] == 0.0
    assert out["sync"]["f1_difference_95_interval"] == (0.0, 0.0)
    for name in ("all_classes", "within_family"):
        assert out["adherence"][name]["only_b_right"] == out["adherence"][name]["only_a_right"] == 0
        assert out["adherence"][name]["sign_test_p"] == 1.0
    assert out["negative"]["ambience"]["difference_db"] == 0.0
    assert out["negative"]["event"]["specific_db_a"] == 1.0


def test_a_better_candidate_is_told_apart():
    a = {"sync": sync_section([(2, 2, 2)] * 12),
         "adherence": adherence_section([False] * 8, [False] * 8)}
    b = {"sync": sync_section([(4, 0, 0)] * 12),
         "adherence": adherence_section([True] * 8, [True] * 6 + [False] * 2)}
    out = compare_reports(a, b)
    assert out["sync"]["f1_difference"] == pytest.approx(0.5)
    assert out["sync"]["f1_difference_95_interval"][0] > 0
    assert out["sync"]["share_of_draws_b_ahead"] == 1.0
    assert out["adherence"]["all_classes"]["only_b_right"] == 8
    assert out["adherence"]["all_classes"]["sign_test_p"] == pytest.approx(2 / 256)
    assert out["adherence"]["within_family"]["b"] == 0.75


def test_reports_on_different_clips_are_refused(tmp_path):
    a = {"sync": sync_section([(1, 0, 0)] * 3)}
    b = {"sync": sync_section([(1, 0, 0)] * 4)}
    with pytest.raises(ReportMismatch, match="different clips"):
        compare_reports(a, b)
    with pytest.raises(ReportMismatch, match="no section"):
        compare_reports(a, {"adherence": adherence_section([True], [True])})
    paths = []
    for name, report in (("a", a), ("b", b)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(report))
    with pytest.raises(SystemExit, match="cannot compare: sync: the reports cover different"):
        main([str(p) for p in paths])
    with pytest.raises(SystemExit, match="cannot compare"):
        main([str(paths[0]), str(tmp_path / "missing.json")])


def test_old_reports_without_counts_are_refused_with_what_to_do():
    old = {"sync": {"summary": {"model": {"f1": 0.5}}, "per_clip": [{"seed": 1, "f1": 0.5}]}}
    with pytest.raises(ReportMismatch, match="evaluate it again"):
        compare_reports(old, old)


def test_negative_prompts_compare_in_both_measures_when_both_reports_have_them():
    def relative(section, by):
        for case in section["per_case"]:
            case |= {"relative_reduction_db": case["reduction_db"] + by,
                     "relative_unrelated_reduction_db": 0.0}
        return section

    old = {"negative": negative_section([("rain", 3.0), ("door_slam", 1.0)] * 4)}
    a = {"negative": relative(negative_section([("rain", 3.0), ("door_slam", 1.0)] * 4), 0.0)}
    b = {"negative": relative(negative_section([("rain", 3.0), ("door_slam", 1.0)] * 4), 5.0)}
    out = compare_reports(a, b)["negative"]["ambience"]
    assert out["difference_db"] == 0.0
    assert out["relative_difference_db"] == pytest.approx(5.0)
    assert out["relative_difference_95_interval"] == (pytest.approx(5.0), pytest.approx(5.0))
    # A report from before the relative measure still compares in the one both have.
    assert "relative_difference_db" not in compare_reports(old, b)["negative"]["event"]
