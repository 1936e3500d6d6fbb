"""The planner over a table of timelines: every case an editor's export can hold, each with the
jobs it must produce (record range in frames, media range in seconds, speed, handles, errors)."""

from __future__ import annotations

from fractions import Fraction

import opentimelineio as otio
import pytest

from bridge.planner import PlanOptions, TimelineError, exact_rate, plan_timeline
from tests.timeline_kit import (
    RT,
    clip,
    dissolve,
    gap,
    marker,
    rng,
    timeline,
    track,
)

NTSC24, NTSC30, NTSC60 = 24000 / 1001, 30000 / 1001, 60000 / 1001


def J(name, rec, segs=(), head=0, tail=0, error=None, prompt=None, negative=None):
    return {
        "name": name, "rec": rec, "segs": segs, "head": head, "tail": tail,
        "error": error, "prompt": prompt, "negative": negative,
    }


def start_timecode():
    # Media that starts at 01:00:00:00; the clip shows its second and third seconds.
    return timeline(track(clip("A", 86400 + 24, 48, avail=(86400, 240))))


def rate_case(rate, tc):
    def build():
        origin = otio.opentime.from_timecode(tc, rate).value
        one_s = round(rate)  # one second of frames (nominal)
        return timeline(
            track(clip("A", origin + one_s, 2 * one_s, rate=rate, avail=(origin, 20 * one_s))),
            rate=rate,
        )

    return build


def mixed_rates():
    return timeline(
        track(
            clip("PAL", 0, 50, rate=25, avail=(0, 500)),  # 2 s
            clip("NTSC", 30, 60, rate=30, avail=(0, 500)),  # 2 s from 1 s in
            clip("HFR", 0, 12, rate=48, avail=(0, 500)),  # 0.25 s = 6 frames at 24
        )
    )


def gaps():
    return timeline(track(gap(12), clip("A", 0, 24), gap(24), clip("B", 24, 24)))


def dissolves():
    return timeline(
        track(
            clip("A", 24, 48),
            dissolve(6, 4),
            clip("B", 24, 48),
            dissolve(10, 10),
            clip("C", 0, 24),  # media starts at its first frame: no head handle to give
        )
    )


def nested():
    inner = otio.schema.Stack(name="compound", source_range=rng(12, 24))
    inner.append(track(clip("B", 0, 24, media="/media/b.mov"), clip("C", 0, 24, media="/media/c.mov")))
    return timeline(track(clip("A", 0, 24), inner, clip("D", 0, 12, media="/media/d.mov")))


def time_warps():
    fast = otio.schema.LinearTimeWarp(time_scalar=2.0)
    slow = otio.schema.LinearTimeWarp(time_scalar=0.5)
    return timeline(
        track(
            clip("fast", 24, 24, effects=[fast]),
            clip("slow", 24, 24, effects=[slow]),
            clip("freeze", 36, 12, effects=[otio.schema.FreezeFrame()]),
        )
    )


def warped_compound():
    inner = otio.schema.Stack(name="compound", source_range=rng(0, 12))
    inner.append(track(clip("B", 0, 48, media="/media/b.mov")))
    inner.effects.append(otio.schema.LinearTimeWarp(time_scalar=2.0))
    return timeline(track(inner))


def disabled():
    return timeline(
        track(clip("under", 0, 48, media="/media/under.mov")),
        track(clip("off", 0, 24, enabled=False), clip("on", 0, 24)),
    )


def several_tracks():
    return timeline(
        track(clip("V1 long", 0, 96, media="/media/v1.mov")),
        track(gap(24), clip("V2 insert", 0, 24, media="/media/v2.mov")),
        track(gap(84), clip("V3 title", 0, 24, reference=otio.schema.GeneratorReference(
            generator_kind="SolidColor"))),
    )


def missing_media():
    return timeline(
        track(clip("ok 1", 0, 24), clip("offline", 0, 24, media=None), clip("ok 2", 0, 24))
    )


def image_sequence():
    ref = otio.schema.ImageSequenceReference(
        target_url_base="/shots/sh010/",
        name_prefix="sh010.",
        name_suffix=".exr",
        start_frame=1001,
        frame_zero_padding=4,
        rate=24,
        available_range=rng(1001, 100),
    )
    return timeline(track(clip("plate", 1001 + 12, 24, reference=ref)))


def prompts():
    return timeline(
        track(
            clip("plain", 0, 24),
            clip("adds", 0, 24, markers=[marker("v2a: footsteps on gravel")]),
            clip("replaces", 0, 24, markers=[marker("note", "v2a!: rain on a tin roof")]),
            clip("negative", 0, 24, metadata={"v2a": {"negative_prompt": "speech"}}),
            clip("both", 0, 24, markers=[marker("v2a-negative!: music\nv2a: door slam")]),
        )
    )


CASES = {
    "start timecode 01:00:00:00": (start_timecode, {}, [J("A", (0, 48), [(1.0, 2.0, 1.0)])]),
    "23.976": (rate_case(NTSC24, "01:00:00:00"), {}, [J("A", (0, 48), [(1.001, 2.002, 1.0)])]),
    "24": (rate_case(24, "01:00:00:00"), {}, [J("A", (0, 48), [(1.0, 2.0, 1.0)])]),
    "25": (rate_case(25, "10:00:00:00"), {}, [J("A", (0, 50), [(1.0, 2.0, 1.0)])]),
    "29.97 drop frame": (
        rate_case(NTSC30, "01:00:00;00"), {}, [J("A", (0, 60), [(1.001, 2.002, 1.0)])]
    ),
    "30": (rate_case(30, "00:59:58:00"), {}, [J("A", (0, 60), [(1.0, 2.0, 1.0)])]),
    "50": (rate_case(50, "01:00:00:00"), {}, [J("A", (0, 100), [(1.0, 2.0, 1.0)])]),
    "59.94": (rate_case(NTSC60, "01:00:00;00"), {}, [J("A", (0, 120), [(1.001, 2.002, 1.0)])]),
    "mixed rates on one timeline": (
        mixed_rates,
        {},
        [
            J("PAL", (0, 48), [(0.0, 2.0, 1.0)]),
            J("NTSC", (48, 48), [(1.0, 2.0, 1.0)]),
            J("HFR", (96, 6), [(0.0, 0.25, 1.0)]),
        ],
    ),
    "gaps": (gaps, {}, [J("A", (12, 24), [(0, 1, 1)]), J("B", (60, 24), [(1, 1, 1)])]),
    "dissolves get handles": (
        dissolves,
        {},
        [
            J("A", (0, 48), [(1.0, 2 + 4 / 24, 1.0)], tail=4),
            J("B", (48, 48), [(1 - 6 / 24, 2 + 6 / 24 + 10 / 24, 1.0)], head=6, tail=10),
            J("C", (96, 24), [(0.0, 1.0, 1.0)]),  # no media before its first frame
        ],
    ),
    "nested stack (compound clip)": (
        nested,
        {},
        [
            J("A", (0, 24), [(0, 1, 1)]),
            J("B", (24, 12), [(0.5, 0.5, 1)]),
            J("C", (36, 12), [(0, 0.5, 1)]),
            J("D", (48, 12), [(0, 0.5, 1)]),
        ],
    ),
    "speed changes and freeze frames": (
        time_warps,
        {},
        [
            J("fast", (0, 24), [(1.0, 1.0, 2.0)]),
            J("slow", (24, 24), [(1.0, 1.0, 0.5)]),
            J("freeze", (48, 12), [(1.5, 0.5, 0.0)]),
        ],
    ),
    "time warp on a compound clip": (warped_compound, {}, [J("B", (0, 12), [(0, 0.5, 2.0)])]),
    "disabled clip shows what is under it": (
        disabled,
        {},
        [J("under", (0, 24), [(0, 1, 1)]), J("on", (24, 24), [(0, 1, 1)])],
    ),
    "top-most visible picture drives": (
        several_tracks,
        {},
        [
            J("V1 long", (0, 24), [(0, 1, 1)]),
            J("V2 insert", (24, 24), [(0, 1, 1)]),
            J("V1 long", (48, 48), [(2, 2, 1)]),  # a title over it is see-through
        ],
    ),
    "chosen track drives": (several_tracks, {"track": 1}, [J("V1 long", (0, 96), [(0, 4, 1)])]),
    "missing media is that clip's error": (
        missing_media,
        {},
        [
            J("ok 1", (0, 24), [(0, 1, 1)]),
            J("offline", (24, 24), error="media_error"),
            J("ok 2", (48, 24), [(0, 1, 1)]),
        ],
    ),
    "image sequence": (image_sequence, {}, [J("plate", (0, 24), [(0.5, 1.0, 1.0)])]),
    "prompts from markers and metadata": (
        prompts,
        {"prompt": "forest", "negative_prompt": "hum"},
        [
            J("plain", (0, 24), [(0, 1, 1)], prompt="forest", negative="hum"),
            J("adds", (24, 24), [(0, 1, 1)], prompt="forest, footsteps on gravel", negative="hum"),
            J("replaces", (48, 24), [(0, 1, 1)], prompt="rain on a tin roof", negative="hum"),
            J("negative", (72, 24), [(0, 1, 1)], prompt="forest", negative="hum, speech"),
            J("both", (96, 24), [(0, 1, 1)], prompt="forest, door slam", negative="music"),
        ],
    ),
    "continuous: runs of picture across cuts": (
        gaps,
        {"mode": "continuous"},
        [J("A", (12, 24), [(0, 1, 1)]), J("B", (60, 24), [(1, 1, 1)])],
    ),
    "continuous: one soundtrack over cuts and dissolves": (
        dissolves,
        {"mode": "continuous"},
        [J("A", (0, 120), [(1, 2, 1), (1, 2, 1), (0, 1, 1)])],
    ),
    "continuous: unreadable clip splits the run": (
        missing_media,
        {"mode": "continuous"},
        [
            J("ok 1", (0, 24), [(0, 1, 1)]),
            J("offline", (24, 24), error="media_error"),
            J("ok 2", (48, 24), [(0, 1, 1)]),
        ],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_plan(name):
    build, options, expected = CASES[name]
    plan = plan_timeline(build(), PlanOptions(**options))
    rate = plan.rate
    assert len(plan.jobs) == len(expected), [j.label for j in plan.jobs]
    for job, want in zip(plan.jobs, expected, strict=True):
        assert job.clip_names[0] == want["name"]
        # Record ranges are exact frames at the timeline rate.
        assert job.record_start * rate == want["rec"][0], job.label
        assert job.record_duration * rate == want["rec"][1], job.label
        assert job.head * rate == want["head"] and job.tail * rate == want["tail"], job.label
        if want["error"]:
            assert job.error[0] == want["error"] and not job.segments
            continue
        assert job.error is None
        assert len(job.segments) == len(want["segs"])
        for seg, (start, duration, speed) in zip(job.segments, want["segs"], strict=True):
            assert seg.start == pytest.approx(start, abs=1e-9), job.label
            assert seg.duration == pytest.approx(duration, abs=1e-9), job.label
            assert seg.speed == pytest.approx(speed)
        if want["prompt"] is not None:
            assert job.prompt == want["prompt"]
            assert job.negative_prompt == want["negative"]


def test_ntsc_rates_are_exact():
    assert exact_rate(23.976) == Fraction(24000, 1001)
    assert exact_rate(NTSC30) == Fraction(30000, 1001)
    assert exact_rate(59.94) == Fraction(60000, 1001)
    assert exact_rate(25.0) == 25


def test_rate_comes_from_the_picture_when_an_audio_track_is_listed_first():
    sound = track(clip("dialogue", 0, 96_000, rate=48_000, avail=(0, 480_000)),
                  kind=otio.schema.TrackKind.Audio)
    tl = timeline(sound, track(clip("A", 0, 48, rate=25, avail=(0, 500))), rate=None)
    assert tl.global_start_time is None
    assert plan_timeline(tl).rate == 25


def test_sample_counts_follow_the_exact_rate():
    # 1001 frames at 23.976 last exactly 41.7417 s = 2_003_602 samples at 48 kHz (not 2_002_000).
    tl = timeline(track(clip("A", 0, 1001, rate=NTSC24, avail=(0, 5000))), rate=NTSC24)
    (job,) = plan_timeline(tl).jobs
    assert job.num_samples == 1001 * 2002


def test_image_sequence_segment_fields():
    (job,) = plan_timeline(image_sequence()).jobs
    (seg,) = job.segments
    assert seg.media == "/shots/sh010/sh010.%04d.exr"
    assert seg.image_rate == 24.0 and seg.start_number == 1001


def test_image_sequence_numbered_in_steps_is_refused_clearly():
    tl = image_sequence()
    tl.tracks[0][0].media_reference.frame_step = 2
    (job,) = plan_timeline(tl).jobs
    assert job.error[0] == "media_error" and "numbered in steps of 2" in job.error[1]
    assert not job.segments


def test_dissolve_is_mirrored_as_crossfade():
    plan = plan_timeline(dissolves())
    x, y = plan.crossfades
    assert (x.before, x.after) == (0, 1)
    assert x.in_offset * plan.rate == 6 and x.out_offset * plan.rate == 4
    # C's media starts at the cut, so that dissolve crosses only after it (B's tail).
    assert (y.before, y.after) == (1, 2)
    assert y.in_offset == 0 and y.out_offset * plan.rate == 10


def test_continuous_cut_times():
    (job,) = plan_timeline(dissolves(), PlanOptions(mode="continuous")).jobs
    from daemon.engine import ClipRequest

    assert ClipRequest(job.segments).cut_times == pytest.approx((2.0, 4.0))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "loop"}, "mode"),
        ({"track": 4}, "V1"),
        ({"track": 0}, "V1"),
    ],
)
def test_bad_options_say_what_to_do(options, message):
    with pytest.raises(TimelineError, match=message):
        plan_timeline(several_tracks(), PlanOptions(**options))


def test_no_video_track():
    tl = timeline(track(clip("music", 0, 24), kind=otio.schema.TrackKind.Audio))
    with pytest.raises(TimelineError, match="no video track"):
        plan_timeline(tl)


def test_thousand_clips_plan_in_order():
    tl = timeline(track(*[clip(f"c{i}", i % 50, 12 + i % 7) for i in range(1000)]))
    plan = plan_timeline(tl)
    assert len(plan.jobs) == 1000
    ends = [j.record_end for j in plan.jobs]
    assert all(a.record_start == b for a, b in zip(plan.jobs[1:], ends, strict=False))
    assert plan.jobs[-1].record_end * plan.rate == sum(12 + i % 7 for i in range(1000))


def test_start_timecode_of_timeline_is_not_record_offset():
    tl = start_timecode()
    tl.global_start_time = RT(86400, 24)
    (job,) = plan_timeline(tl).jobs
    assert job.record_start == 0


def test_clip_without_any_range_is_a_clear_error():
    tl = timeline(track(otio.schema.Clip(name="no range")))
    with pytest.raises(TimelineError, match="export it again"):
        plan_timeline(tl)
