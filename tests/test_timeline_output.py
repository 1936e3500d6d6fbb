"""The generated tracks put back on the timeline: exact record ranges (to the sample at 48 kHz),
handles and crossfades, takes, metadata, Resolve-shaped output, placements in frames, and the
rest of the timeline untouched — over the planner's table of timelines and the real samples."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pytest

from bridge.planner import PlanOptions, plan_timeline, read_timeline, seconds
from bridge.timeline_output import (
    GeneratedClip,
    Take,
    build_output,
    is_generated_track,
    merge_generated_tracks,
)
from daemon.engine import OUTPUT_RATE
from tests.test_planner_cases import CASES
from tests.timeline_kit import clip, dissolve, marker, relink, timeline, track

DATA = Path(__file__).parent / "data" / "otio"
SAMPLES = sorted(p.name for p in DATA.glob("*.otio"))


def fake_generation(plan, takes=1, folder="/out"):
    """What the timeline job hands build_output, without running an engine."""
    return {
        j.index: GeneratedClip(
            job=j,
            takes=[Take(f"{folder}/{j.index}.{t}.wav", seed=7 + t) for t in range(takes)],
            params={"steps": 10, "cfg": 4.5, "model": "tone", "weights_hash": "abc"},
        )
        for j in plan.jobs
        if not j.error
    }


def untouched(before: otio.schema.Timeline, after: otio.schema.Timeline) -> bool:
    """Everything but the added tracks compares equal."""
    kept = after.deepcopy()
    for i in range(len(kept.tracks) - 1, -1, -1):
        if is_generated_track(kept.tracks[i]):
            del kept.tracks[i]
    return kept.is_equivalent_to(before)


def check_output(tl, plan, out, placements):
    """The V2A track's clips sit exactly on their jobs' record ranges, sample-accurately."""
    assert untouched(tl, out)
    (v2a,) = [t for t in out.tracks if is_generated_track(t)]
    assert v2a.kind == otio.schema.TrackKind.Audio and v2a.name == "V2A"
    clips = list(v2a.find_clips())
    jobs = [j for j in plan.jobs if not j.error]
    assert len(clips) == len(jobs) == len(placements)
    for c, job, p in zip(clips, jobs, placements, strict=True):
        placed = c.trimmed_range_in_parent()
        start, dur = seconds(placed.start_time), seconds(placed.duration)
        assert start == job.record_start and dur == job.record_duration
        assert round(start * OUTPUT_RATE) == round(job.record_start * OUTPUT_RATE)
        # The WAV holds the handles and the clip: its length in samples is what the engine makes.
        avail = c.media_reference.available_range
        assert avail.duration.rate == OUTPUT_RATE and avail.duration.value == job.num_samples
        assert seconds(c.source_range.start_time) == job.head
        assert p["record_start"] == round(job.record_start * plan.rate)
        assert p["source_in"] == round(job.head * plan.rate)
        assert isinstance(p["duration"], int) and p["track"] == 1 and p["take"] == 1
        meta = c.metadata["v2a"]
        assert meta["prompt"] == job.prompt and meta["seed"] == 7 and meta["model"] == "tone"
        assert meta["weights_hash"] == "abc" and meta["steps"] == 10


@pytest.mark.parametrize("name", list(CASES))
def test_every_case_round_trips(name):
    build, options, _ = CASES[name]
    tl = build()
    plan = plan_timeline(tl, PlanOptions(**options))
    out, placements = build_output(tl, plan, fake_generation(plan))
    check_output(tl, plan, out, placements)
    # And it survives being written and read as OTIO JSON.
    again = otio.adapters.read_from_string(otio.adapters.write_to_string(out, "otio_json"))
    assert again.is_equivalent_to(out)


def test_whole_clips_land_under_their_picture():
    tl = timeline(track(clip("A", 10, 30), clip("B", 0, 17), clip("C", 5, 41)))
    plan = plan_timeline(tl)
    out, _ = build_output(tl, plan, fake_generation(plan))
    video, audio = out.tracks[0], out.tracks[-1]
    for v, a in zip(video.find_clips(), audio.find_clips(), strict=True):
        assert a.trimmed_range_in_parent() == v.trimmed_range_in_parent()
        assert a.name == v.name


def test_dissolve_mirrored_on_the_audio_track():
    tl = timeline(track(clip("A", 24, 48), dissolve(6, 4), clip("B", 24, 48)))
    plan = plan_timeline(tl)
    out, placements = build_output(tl, plan, fake_generation(plan))
    audio = out.tracks[-1]
    kinds = [type(x).__name__ for x in audio]
    assert kinds == ["Clip", "Transition", "Clip"]
    t = audio[1]
    assert (t.in_offset.value, t.out_offset.value) == (6, 4)
    # OTIO agrees the audio clips see exactly the media under the dissolve.
    assert audio[0].visible_range().duration.value == 48 + 4
    assert audio[2].visible_range().start_time.value == 6 - 6
    assert [p["source_in"] for p in placements] == [0, 6]


def test_takes_are_alternate_media_references():
    tl = timeline(track(clip("A", 0, 24)))
    plan = plan_timeline(tl)
    out, placements = build_output(tl, plan, fake_generation(plan, takes=3))
    (c,) = out.tracks[-1].find_clips()
    refs = c.media_references()
    assert sorted(refs) == ["take1", "take2", "take3"]
    assert c.active_media_reference_key == "take1"
    assert c.media_reference.target_url == Path("/out/0.0.wav").as_uri()
    assert [p["take"] for p in placements] == [1, 2, 3]
    assert [t["seed"] for t in c.metadata["v2a"]["takes"]] == [7, 8, 9]


def test_resolve_shape():
    tl = timeline(track(clip("A", 0, 24), clip("B", 0, 24)), rate=24, start=86400)
    plan = plan_timeline(tl)
    out, placements = build_output(tl, plan, fake_generation(plan, takes=2), resolve=True)
    for c in out.tracks[-1].find_clips():
        assert c.media_reference.target_url.startswith("/out/")  # a bare path, not file://
        assert c.media_reference.available_range.duration.rate == 24
        assert list(c.media_references()) == [otio.schema.Clip.DEFAULT_MEDIA_KEY]
        assert len(c.metadata["v2a"]["takes"]) == 2
    # Placements are relative to the first frame; the host adds its own start (86400).
    assert [p["record_start"] for p in placements if p["take"] == 1] == [0, 24]


def test_stems_one_track_per_prompt():
    tl = timeline(
        track(
            clip("A", 0, 24, markers=[marker("v2a!: rain")]),
            clip("B", 0, 24),
            clip("C", 0, 24, markers=[marker("v2a!: rain")]),
        )
    )
    plan = plan_timeline(tl, PlanOptions(prompt="wind"))
    out, placements = build_output(tl, plan, fake_generation(plan), stems=True)
    new = [t for t in out.tracks if is_generated_track(t)]
    assert [t.name for t in new] == ["V2A rain", "V2A wind"]
    assert [len(list(t.find_clips())) for t in new] == [2, 1]
    assert [(p["clip"].split(" [")[0], p["track"]) for p in placements] == [
        ("A", 1), ("C", 1), ("B", 2)
    ]
    assert untouched(tl, out)


def test_rerun_replaces_the_generated_track():
    tl = timeline(track(clip("A", 0, 24)))
    plan = plan_timeline(tl)
    first, _ = build_output(tl, plan, fake_generation(plan))
    second, _ = build_output(first, plan_timeline(first), fake_generation(plan))
    assert sum(is_generated_track(t) for t in second.tracks) == 1
    assert second.is_equivalent_to(first)


def test_failed_clip_leaves_a_gap():
    tl = timeline(track(clip("A", 0, 24), clip("B", 0, 24, media=None), clip("C", 0, 24)))
    plan = plan_timeline(tl)
    out, placements = build_output(tl, plan, fake_generation(plan))
    audio = out.tracks[-1]
    assert [type(x).__name__ for x in audio] == ["Clip", "Gap", "Clip"]
    assert audio[2].trimmed_range_in_parent().start_time.value == 48
    assert len(placements) == 2


def test_merge_puts_new_tracks_on_the_untouched_original():
    tl = timeline(track(clip("A", 0, 24, media="relative/a.mov")))
    sent = tl.deepcopy()
    sent.tracks[0][0].media_reference.target_url = "/abs/relative/a.mov"
    plan = plan_timeline(sent)
    result, _ = build_output(sent, plan, fake_generation(plan))
    merged = merge_generated_tracks(tl, result)
    assert merged.tracks[0][0].media_reference.target_url == "relative/a.mov"
    assert untouched(tl, merged) and is_generated_track(merged.tracks[-1])


@pytest.mark.parametrize("name", SAMPLES)
def test_real_samples(name, tmp_path):
    tl = read_timeline(DATA / name)
    relink(tl, tmp_path)
    plan = plan_timeline(tl)
    assert plan.jobs and not [j for j in plan.jobs if j.error]
    out, placements = build_output(tl, plan, fake_generation(plan))
    check_output(tl, plan, out, placements)
    # The jobs tile what the viewer sees: in order, never overlapping, inside the timeline.
    for a, b in zip(plan.jobs, plan.jobs[1:], strict=False):
        assert a.record_end <= b.record_start
    assert plan.jobs[-1].record_end <= plan.duration


def test_samples_single_track_structure(tmp_path):
    """One-track samples: one job per clip, each exactly under its video clip."""
    for name in ("screening_example.otio", "simple_cut.otio", "transition_test.otio"):
        tl = read_timeline(DATA / name)
        relink(tl, tmp_path)
        plan = plan_timeline(tl)
        out, _ = build_output(tl, plan, fake_generation(plan))
        video = list(out.tracks[0].find_clips())
        audio = list(out.tracks[-1].find_clips())
        assert len(video) == len(audio), name
        for v, a in zip(video, audio, strict=True):
            # range_in_parent: screening_example's track has a (negative) source_range of its own
            # that OTIO cannot trim by; record time is the track's own time.
            v_range = v.range_in_parent()
            a_range = a.range_in_parent()
            assert seconds(a_range.start_time) == seconds(v_range.start_time), name
            assert seconds(a_range.duration) == seconds(v_range.duration), name


def test_transition_sample_crossfades(tmp_path):
    tl = read_timeline(DATA / "transition_test.otio")
    relink(tl, tmp_path)
    plan = plan_timeline(tl)
    # A->B dissolves (t1); B->C is a cut; the dissolves at the ends have no partner.
    assert [(x.before, x.after) for x in plan.crossfades] == [(0, 1)]
    a, b, _ = plan.jobs
    assert a.tail * plan.rate == 10 and b.head * plan.rate == 10


def test_multitrack_sample_top_most_wins(tmp_path):
    tl = read_timeline(DATA / "multitrack.otio")
    relink(tl, tmp_path)
    plan = plan_timeline(tl)
    got = [(j.clip_names[0], int(j.record_start * 24), int(j.record_end * 24)) for j in plan.jobs]
    assert got == [
        ("tech.fux (loop)-HD.mp4", 0, 482),
        ("t-hawk (loop)-HD.mp4", 482, 962),
        ("out-b (loop)-HD.mp4", 962, 1198),
        ("KOLL-HD.mp4", 1198, 1838),
        ("brokchrd (loop)-HD.mp4", 1957, 2677),
    ]
    # The clip that shows again after the insert continues where the picture is (the relinked
    # media starts a second before the clip's source range).
    out_b = plan.jobs[2]
    assert out_b.segments[0].start == pytest.approx(float(Fraction(962 - 803 + 24, 24)))
