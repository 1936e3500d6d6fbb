"""The fake Resolve behaves like Resolve's documented scripting API, pitfalls included: these
tests pin the behaviour the Resolve plugin relies on or must defend against."""

from __future__ import annotations

from fractions import Fraction

import opentimelineio as otio
import pytest

from tests.fake_resolve import EXPORT_OTIO, FakeResolve
from tests.fake_resolve.api import _frames_of_timecode, _timecode_of_frames
from tests.fake_resolve.media import edit_timeline, make_movie


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fake-resolve-media")
    return [make_movie(str(folder / f"shot{n}.mp4"), 24 + 12 * n) for n in range(3)]


@pytest.fixture
def edit(movies):
    resolve = FakeResolve()
    project, timeline = edit_timeline(resolve, "Cut", "23.976", [
        {"path": movies[0], "record": 0, "in": 0, "out": 24},
        {"path": movies[1], "record": 30, "in": 6, "out": 30},
    ])
    return resolve, project, timeline


def test_settings_are_strings_and_start_frame_follows_start_timecode(edit):
    resolve, project, timeline = edit
    assert timeline.GetSetting("timelineFrameRate") == "23.976"
    assert project.GetSetting("timelineFrameRate") == "23.976"
    assert timeline.GetStartTimecode() == "01:00:00:00"
    assert timeline.GetStartFrame() == 86400  # nominal 24 fps timecode
    assert timeline.GetSetting("noSuchSetting") == ""


@pytest.mark.parametrize("timecode,rate,drop,frames", [
    ("01:00:00:00", Fraction(24), False, 86400),
    ("01:00:00;00", Fraction(30000, 1001), True, 107892),
    ("01:00:00:00", Fraction(30000, 1001), False, 108000),
    ("00:10:00;00", Fraction(60000, 1001), True, 35964),
    ("00:01:00;02", Fraction(30000, 1001), True, 1800),
])
def test_timecode_frames_round_trip(timecode, rate, drop, frames):
    assert _frames_of_timecode(timecode, rate, drop) == frames
    assert _timecode_of_frames(frames, rate, drop) == timecode


def test_record_frame_is_absolute_and_end_frame_exclusive(edit, movies):
    resolve, project, timeline = edit
    pool = project.GetMediaPool()
    clip = pool.GetRootFolder().GetClipList()[2 - 2]
    # A relative recordFrame (what a careless script sends) is before the timeline: nothing.
    assert pool.AppendToTimeline([{"mediaPoolItem": clip, "startFrame": 0, "endFrame": 10,
                                   "trackIndex": 2, "recordFrame": 100}]) == []
    timeline.AddTrack("video")
    placed = pool.AppendToTimeline([{"mediaPoolItem": clip, "startFrame": 0, "endFrame": 10,
                                     "mediaType": 1, "trackIndex": 2, "recordFrame": 86500}])
    assert len(placed) == 1
    item = placed[0]
    assert (item.GetStart(), item.GetEnd(), item.GetDuration()) == (86500, 86510, 10)
    assert item.GetTrackTypeAndIndex() == ["video", 2]


def test_overlapping_append_is_dropped_silently_and_others_still_land(edit):
    resolve, project, timeline = edit
    pool = project.GetMediaPool()
    clip = pool.GetRootFolder().GetClipList()[0]
    before = timeline.GetItemListInTrack("video", 1)
    placed = pool.AppendToTimeline([
        {"mediaPoolItem": clip, "startFrame": 0, "endFrame": 10, "mediaType": 1,
         "trackIndex": 1, "recordFrame": 86410},  # overlaps the first shot
        {"mediaPoolItem": clip, "startFrame": 0, "endFrame": 10, "mediaType": 1,
         "trackIndex": 1, "recordFrame": 86454},  # after the second shot
    ])
    assert [i.GetStart() for i in placed] == [86454]
    after = timeline.GetItemListInTrack("video", 1)
    assert len(after) == len(before) + 1


def test_appends_go_to_the_current_timeline(edit):
    resolve, project, timeline = edit
    pool = project.GetMediaPool()
    clip = pool.GetRootFolder().GetClipList()[0]
    other = pool.CreateEmptyTimeline("Other")
    assert project.GetCurrentTimeline() is other  # a new timeline becomes current
    pool.AppendToTimeline([{"mediaPoolItem": clip, "startFrame": 0, "endFrame": 5,
                            "mediaType": 1, "recordFrame": other.GetStartFrame()}])
    assert len(other.GetItemListInTrack("video", 1)) == 1
    assert len(timeline.GetItemListInTrack("video", 1)) == 2


def test_audio_only_media_type_needs_audio_and_tracks_have_sub_types(edit, movies):
    resolve, project, timeline = edit
    pool = project.GetMediaPool()
    silent = pool.GetRootFolder().GetClipList()[0]  # a movie without sound
    assert pool.AppendToTimeline([{"mediaPoolItem": silent, "startFrame": 0, "endFrame": 5,
                                   "mediaType": 2, "recordFrame": 86400}]) == []
    assert timeline.AddTrack("audio", "stereo") is True
    assert timeline.AddTrack("audio", "quadrophonic") is False
    assert timeline.GetTrackCount("audio") == 2
    assert timeline.GetTrackSubType("audio", 2) == "stereo"
    assert timeline.GetItemListInTrack("audio", 7) is None


def test_export_otio_uses_resolve_conventions(edit, tmp_path, movies):
    resolve, project, timeline = edit
    path = str(tmp_path / "cut.otio")
    assert timeline.Export(path, resolve.EXPORT_OTIO) is True
    assert timeline.Export(str(tmp_path / "missing" / "cut.otio"), EXPORT_OTIO) is False
    exported = otio.adapters.read_from_file(path)
    assert exported.global_start_time.value == 86400
    assert exported.global_start_time.rate == pytest.approx(24000 / 1001)
    clips = list(exported.video_tracks()[0].find_clips())
    assert [c.media_reference.target_url for c in clips] == movies[:2]  # bare paths
    assert clips[1].source_range.start_time.value == 6
    assert exported.video_tracks()[0].range_of_child(clips[1]).start_time.value == 30
    with open(path) as f:
        assert "file://" not in f.read()


def test_import_timeline_from_file_returns_none_on_duplicate_name_and_file_urls(edit, tmp_path):
    resolve, project, timeline = edit
    pool = project.GetMediaPool()
    path = str(tmp_path / "cut.otio")
    timeline.Export(path, EXPORT_OTIO)
    assert pool.ImportTimelineFromFile(path) is None  # "Cut" exists
    imported = pool.ImportTimelineFromFile(path, {"timelineName": "Cut (imported)"})
    assert imported is not None and imported.GetName() == "Cut (imported)"
    assert imported.GetStartFrame() == 86400
    assert [(i.GetStart(), i.GetDuration(), i.GetLeftOffset())
            for i in imported.GetItemListInTrack("video", 1)] == [(86400, 24, 0), (86430, 24, 6)]

    as_urls = otio.adapters.read_from_file(path)
    for clip in as_urls.find_clips():
        clip.media_reference.target_url = "file://" + clip.media_reference.target_url
    url_path = str(tmp_path / "urls.otio")
    otio.adapters.write_to_file(as_urls, url_path)
    assert pool.ImportTimelineFromFile(url_path, {"timelineName": "With URLs"}) is None


def test_import_media_skips_missing_files_and_files_already_in_the_pool(edit, movies, tmp_path):
    resolve, project, timeline = edit
    pool = project.GetMediaPool()
    assert pool.ImportMedia([str(tmp_path / "nothing.mov")]) == []
    assert pool.ImportMedia([movies[0]]) == []  # already imported by the edit
    fresh = pool.ImportMedia([movies[2]])
    assert [c.GetClipProperty("File Path") for c in fresh] == [movies[2]]
    assert fresh[0].GetClipProperty("Frames") == "48"


def test_clip_color_takes_the_menu_names_only_and_clears(edit):
    resolve, project, timeline = edit
    item = timeline.GetItemListInTrack("video", 1)[0]
    assert item.GetClipColor() == ""  # no colour until one is set
    assert item.SetClipColor("Orange") is True and item.GetClipColor() == "Orange"
    # The README is silent on case; the conservative reading takes the menu's spelling only.
    assert item.SetClipColor("orange") is False
    assert item.SetClipColor("Ochre") is False and item.GetClipColor() == "Orange"
    assert item.ClearClipColor() is True and item.GetClipColor() == ""
