"""Tell two evaluation reports on the same held-out clips apart, beyond what chance moves.

    python -m daemon.model.compare shipped.json candidate.json

Both reports come from `daemon.model.evaluate` with the same seeds and section sizes. Each
section is compared clip by clip (B minus A), since most of what decides a score is the clips
themselves and they are shared:
- sync: the pooled onset F1's difference with a paired bootstrap interval;
- adherence: the clips only one of the two gets right (all classes and within the family),
  with the exact two-sided sign-test p-value of those discordant clips;
- negative: the mean specific reduction (naming the class minus naming an absent one) for
  ambiences and events, with a paired bootstrap interval; the same for the measure relative to
  the clip's other class when both reports have it.
"""

from __future__ import annotations

import argparse
import json
from math import comb
from pathlib import Path

import numpy as np

from daemon.model.evaluate import NEGATIVE_AMBIENCES
from daemon.model.world.metrics import paired_f1_difference, paired_mean_difference


class ReportMismatch(ValueError):
    """The two reports do not cover the same clips, so they cannot be compared clip by clip."""


def _same_clips(a: list[dict], b: list[dict], keys: tuple[str, ...], section: str) -> None:
    ids_a = [tuple(r[k] for k in keys) for r in a]
    ids_b = [tuple(r[k] for k in keys) for r in b]
    if ids_a != ids_b:
        raise ReportMismatch(f"{section}: the reports cover different clips; run both with the "
                             "same --seeds and section sizes")


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided p-value that `wins` and `losses` (the discordant pairs) differ by
    more than a fair coin would make them."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare_sync(a: dict, b: dict) -> dict:
    if any("tp" not in r for r in a["per_clip"] + b["per_clip"]):
        raise ReportMismatch("sync: a report lacks per-clip counts (written before they were "
                             "recorded); evaluate it again")
    _same_clips(a["per_clip"], b["per_clip"], ("seed",), "sync")
    paired = paired_f1_difference(a["per_clip"], b["per_clip"])
    return {"f1_a": a["summary"]["model"]["f1"], "f1_b": b["summary"]["model"]["f1"],
            "f1_difference": paired["difference"], "f1_difference_95_interval": paired["interval"],
            "share_of_draws_b_ahead": paired["b_ahead"], "clips": len(a["per_clip"])}


def compare_adherence(a: dict, b: dict) -> dict:
    _same_clips(a["per_clip"], b["per_clip"], ("seed", "prompted", "prompt"), "adherence")
    out = {"clips": len(a["per_clip"])}
    for name, key in (("all_classes", "classified"), ("within_family", "classified_in_family")):
        right_a = np.array([r[key] == r["prompted"] for r in a["per_clip"]])
        right_b = np.array([r[key] == r["prompted"] for r in b["per_clip"]])
        wins, losses = int(np.sum(right_b & ~right_a)), int(np.sum(right_a & ~right_b))
        out[name] = {"a": float(right_a.mean()), "b": float(right_b.mean()),
                     "only_b_right": wins, "only_a_right": losses,
                     "sign_test_p": sign_test(wins, losses)}
    return out


def _specific_db(negative: dict, rows: list[int], measure: str = "") -> np.ndarray:
    """Per case: the reduction naming the class, less that naming an absent one (`measure`
    "relative_": measured against the clip's other class)."""
    return np.array([negative["per_case"][i][f"{measure}reduction_db"]
                     - negative["per_case"][i][f"{measure}unrelated_reduction_db"] for i in rows])


def compare_negative(a: dict, b: dict) -> dict:
    _same_clips(a["per_case"], b["per_case"], ("seed", "target", "negative_prompt"), "negative")
    out = {"cases": len(a["per_case"])}
    for kind in ("ambience", "event"):
        rows = [i for i, r in enumerate(a["per_case"])
                if (r["target"] in NEGATIVE_AMBIENCES) == (kind == "ambience")]
        if not rows:
            continue
        out[kind] = {}
        measures = ("", "relative_") if all(
            "relative_reduction_db" in r for r in a["per_case"] + b["per_case"]) else ("",)
        for measure in measures:
            sa, sb = (_specific_db(report, rows, measure) for report in (a, b))
            paired = paired_mean_difference(sa, sb)
            out[kind] |= {f"{measure}specific_db_a": float(sa.mean()),
                          f"{measure}specific_db_b": float(sb.mean()),
                          f"{measure}difference_db": paired["difference"],
                          f"{measure}difference_95_interval": paired["interval"]}
    return out


def compare_reports(a: dict, b: dict) -> dict:
    """Every section both reports hold, compared clip by clip (B minus A)."""
    out = {"a": a.get("weights"), "b": b.get("weights")}
    for section, compare in (("sync", compare_sync), ("adherence", compare_adherence),
                             ("negative", compare_negative)):
        if section in a and section in b:
            out[section] = compare(a[section], b[section])
    if len(out) == 2:
        raise ReportMismatch("the reports share no section (sync, adherence, negative)")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="compare two evaluation reports clip by clip")
    parser.add_argument("a", help="the reference report (e.g. the shipped weights')")
    parser.add_argument("b", help="the candidate's report, on the same seeds")
    args = parser.parse_args(argv)
    try:
        reports = [json.loads(Path(p).read_text()) for p in (args.a, args.b)]
        print(json.dumps(compare_reports(*reports), indent=2))
    except (OSError, json.JSONDecodeError, KeyError, ReportMismatch) as exc:
        raise SystemExit(f"cannot compare: {exc}") from exc


if __name__ == "__main__":
    main()
