"""Timelines from other editors' formats (FCP 7 XML, CMX 3600 EDL, AAF, .otioz bundles) plan to
the same jobs as the OTIO they were written from."""

from __future__ import annotations

import opentimelineio as otio
import pytest

from bridge.planner import TimelineError, plan_timeline, read_timeline
from tests.timeline_kit import clip, gap, timeline, track, write_movie


@pytest.fixture(scope="module")
def edit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    a = write_movie(folder / "a.mp4", 3.0)
    b = write_movie(folder / "b.mp4", 3.0)
    tl = timeline(
        track(
            clip("A", 24, 24, media=str(a), avail=(0, 72)),
            gap(12),
            clip("B", 12, 30, media=str(b), avail=(0, 72)),
        )
    )
    return folder, tl


def jobs(tl):
    return [
        (j.record_start, j.record_duration, j.segments[0].media, round(j.segments[0].start, 6))
        for j in plan_timeline(tl).jobs
    ]


@pytest.mark.parametrize("suffix, write_args", [
    (".otio", {}), (".xml", {}), (".edl", {}), (".aaf", {"use_empty_mob_ids": True}),
])
def test_formats_plan_alike(edit, suffix, write_args):
    folder, tl = edit
    path = folder / f"edit{suffix}"
    otio.adapters.write_to_file(tl, str(path), **write_args)
    assert jobs(read_timeline(path)) == jobs(tl)


def test_otioz_bundle_is_unpacked_beside_it(edit):
    folder, tl = edit
    path = folder / "bundle.otioz"
    otio.adapters.write_to_file(tl, str(path))
    got = jobs(read_timeline(path))
    unpacked = folder / "bundle.otioz-media" / "media"
    assert [g[2] for g in got] == [str(unpacked / "a.mp4"), str(unpacked / "b.mp4")]
    assert [g[:2] for g in got] == [j[:2] for j in jobs(tl)]
    assert jobs(read_timeline(path)) == got  # read again: reuses the unpacked folder


def test_unreadable_inputs_say_what_to_do(tmp_path):
    (tmp_path / "edit.mov").write_bytes(b"x")
    with pytest.raises(TimelineError, match="export OTIO"):
        read_timeline(tmp_path / "edit.mov")
    (tmp_path / "broken.otio").write_text("{ not json")
    with pytest.raises(TimelineError, match="could not be read"):
        read_timeline(tmp_path / "broken.otio")
