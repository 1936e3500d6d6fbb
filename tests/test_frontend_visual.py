"""The weight-free visual front end on real files: frame timing, seeking, codecs, speed, cuts."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest

from daemon.engine import MediaError, Segment
from daemon.media import decode_range
from daemon.model.visual import (
    CLIP_LAYOUT,
    SYNC_LAYOUT,
    MotionFeatures,
    Picture,
    VisualEncoder,
    stream_lengths,
)
from tests.frontend_media import moving_box_frames, write_image_sequence, write_video

LUMA_CHANGE = SYNC_LAYOUT["luma_change"].start
MOTION = SYNC_LAYOUT["motion_grid"]


def test_motion_features_is_a_visual_encoder():
    encoder = MotionFeatures()
    assert isinstance(encoder, VisualEncoder)
    assert (encoder.clip_rate, encoder.sync_rate, encoder.clip_dim, encoder.sync_dim) == (8, 25, 64, 64)


@pytest.mark.parametrize(
    "rate", [Fraction(24000, 1001), Fraction(30000, 1001), Fraction(25), Fraction(50)]
)
def test_a_flash_lands_on_the_sync_frame_that_contains_it(tmp_path, rate):
    flash = 37  # a single white frame
    frames = moving_box_frames(int(3 * rate), (96, 54), flash=flash)
    path = write_video(tmp_path / "flash.mp4", frames, rate)
    features = MotionFeatures().encode_segments([Segment(str(path), 0.0, 2.5)])

    flash_time = Fraction(flash) / rate
    expected = math.floor(flash_time * 25)
    luma_up = features.sync[:, LUMA_CHANGE]
    assert int(luma_up.argmax()) == expected
    # The picture turning dark again is a change of the opposite sign, right after.
    assert float(luma_up.min()) < -2.0
    # The clip stream sees it in its own 8 fps frame as a large difference (on and off within
    # 125 ms cancel in the summed luminance change).
    clip_difference = features.clip[:, CLIP_LAYOUT["difference"].start]
    onset = math.floor(flash_time * 8)
    assert float(clip_difference[onset]) > 3.0 > 1.5 > float(clip_difference[onset - 1])


def test_stream_lengths_follow_the_network_counting():
    assert stream_lengths(8.0, Fraction(8), Fraction(25)) == (64, 200)
    assert stream_lengths(3.3, Fraction(8), Fraction(25)) == (26, 88)
    assert stream_lengths(0.01, Fraction(8), Fraction(25)) == (1, 8)


@pytest.mark.parametrize("container", ["mp4", "ts"])  # MPEG-TS: no index, a start offset
def test_seeking_gives_the_same_frames_and_features_as_decoding_from_the_start(tmp_path, container):
    frames = moving_box_frames(150, (96, 54))
    path = write_video(tmp_path / f"gop.{container}", frames, 25, gop=12)
    whole = decode_range(Segment(str(path), 0.0, 6.0), Fraction(0), Fraction(6))
    assert whole.times[:2] == [Fraction(0), Fraction(1, 25)]  # media time 0 = first frame
    part = decode_range(Segment(str(path), 2.3, 1.0), Fraction(23, 10), Fraction(33, 10))
    first = whole.times.index(part.times[0])
    assert part.times == whole.times[first : first + len(part.times)]
    np.testing.assert_array_equal(part.images, whole.images[first : first + len(part.times)])

    encoder = MotionFeatures()
    full = encoder.encode_segments([Segment(str(path), 0.0, 6.0)])
    seeked = encoder.encode_segments([Segment(str(path), 2.0, 2.0)])
    np.testing.assert_array_equal(seeked.sync.numpy()[:50], full.sync.numpy()[50:100])
    # The clip stream's one-second summaries see less context at a range's edges.
    np.testing.assert_allclose(seeked.clip.numpy()[4:12], full.clip.numpy()[20:28], atol=1e-5)


def test_features_have_sane_fixed_ranges(tmp_path):
    path = write_video(tmp_path / "box.mp4", moving_box_frames(50, (96, 54)), 25)
    features = MotionFeatures().encode_segments([Segment(str(path), 0.0, 2.0)])
    for stream in (features.clip, features.sync):
        assert stream.dtype.is_floating_point and bool(stream.isfinite().all())
        assert float(stream.abs().max()) <= 8.0
    moving = features.sync[1:50, MOTION].sum(dim=1)
    assert bool((moving > 0).all()), "the box moves every frame"
    flow_x = features.sync[1:50, SYNC_LAYOUT["flow"].start]
    assert float(flow_x.mean()) > 0, "the box moves right"


def test_prores_file_decodes(tmp_path):
    frames = moving_box_frames(12, (128, 72))
    path = write_video(tmp_path / "prores.mov", frames, 25, codec="prores_ks", pix_fmt="yuv422p10le",
                       options={"profile": "2"})
    features = MotionFeatures().encode_segments([Segment(str(path), 0.08, 0.32)])
    assert features.sync.shape == (8, 64) and features.clip.shape == (3, 64)
    assert float(features.sync[1:7, MOTION].sum()) > 0


def test_dnxhd_1080p_file_decodes(tmp_path):
    frames = moving_box_frames(3, (1920, 1080))
    path = write_video(tmp_path / "dnxhd.mov", frames, Fraction(24000, 1001), codec="dnxhd",
                       pix_fmt="yuv422p", options={"b": "36M"})
    picture = Picture.from_segments([Segment(str(path), 0.0, 0.1)])
    assert len(picture.images) == 3 and picture.images.shape[1:] == (36, 64, 3)
    # The box is where it was drawn: bright pixels in the upper-middle band.
    assert picture.images[0, 12:20].max() > 150 and picture.images[0, 30:].max() < 100


def test_image_sequence_matches_the_same_frames_in_memory(tmp_path):
    frames = moving_box_frames(30, (64, 36))
    pattern = write_image_sequence(tmp_path / "seq", frames, start_number=1001)
    encoder = MotionFeatures()
    from_files = encoder.encode_segments(
        [Segment(pattern, 0.0, 1.0, image_rate=24, start_number=1001)]
    )
    in_memory = encoder.encode_frames(frames[:24], 24)
    np.testing.assert_allclose(from_files.sync.numpy(), in_memory.sync.numpy(), atol=1e-5)
    np.testing.assert_allclose(from_files.clip.numpy(), in_memory.clip.numpy(), atol=1e-5)


def test_percent_signs_in_names_are_literal(tmp_path):
    # A movie is a file whatever its name holds; in a sequence's pattern a literal % is %%.
    frames = moving_box_frames(25, (64, 36))
    movie = write_video(tmp_path / "take 100%d.mp4", frames, 25)
    picture = Picture.from_segments([Segment(str(movie), 0.0, 0.5)])
    assert len(picture.images) > 0
    folder = tmp_path / "grade 50%"
    write_image_sequence(folder, frames, start_number=1)
    pattern = str(folder).replace("%", "%%") + "/shot.%04d.png"
    from_files = MotionFeatures().encode_segments(
        [Segment(pattern, 0.0, 1.0, image_rate=25, start_number=1)])
    in_memory = MotionFeatures().encode_frames(frames, 25)
    np.testing.assert_allclose(from_files.sync.numpy(), in_memory.sync.numpy(), atol=1e-5)


def test_a_still_image_file_is_held_for_any_range(tmp_path):
    # Editors cut stills in with any source range: the one picture shows for all of it (before,
    # a range past 0.04 s was refused as running past the end of the file).
    frames = moving_box_frames(1, (64, 36))
    still = tmp_path / "card.png"
    with av.open(str(still), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(frames[0], format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    encoder = MotionFeatures()
    held = encoder.encode_segments([Segment(str(still), 0.0, 2.0, speed=0.0)])
    cut_in = encoder.encode_segments([Segment(str(still), 3.0, 2.0)])
    np.testing.assert_array_equal(held.sync.numpy(), cut_in.sync.numpy())
    in_memory = encoder.encode_frames(np.repeat(frames, 50, axis=0), 25)
    np.testing.assert_allclose(cut_in.clip.numpy(), in_memory.clip.numpy(), atol=1e-5)


def _numbered_sequence(tmp_path, count: int, rate: int = 25) -> str:
    # Frame j is a flat grey of level 4 * j: the picture says which frame is on screen.
    frames = np.repeat((np.arange(count, dtype=np.uint8) * 4)[:, None, None, None], 3, axis=3)
    frames = np.broadcast_to(frames, (count, 36, 64, 3)).copy()
    return write_image_sequence(tmp_path / "numbered", frames, start_number=0)


def _shown(picture: Picture, rate: int, count: int) -> list[int]:
    return [int(picture.images[i, 0, 0, 0]) // 4 for i in picture.frames_at(Fraction(rate), count)]


def test_speed_maps_output_time_to_media_time(tmp_path):
    pattern = _numbered_sequence(tmp_path, 60)
    double = Picture.from_segments([Segment(pattern, 0.4, 0.8, speed=2.0, image_rate=25)])
    assert _shown(double, 25, 20) == [10 + 2 * k for k in range(20)]
    reverse = Picture.from_segments([Segment(pattern, 1.0, 0.4, speed=-1.0, image_rate=25)])
    assert _shown(reverse, 25, 10) == [25 - k for k in range(10)]
    freeze = Picture.from_segments([Segment(pattern, 0.5, 1.0, speed=0.0, image_rate=25)])
    assert _shown(freeze, 25, 25) == [12] * 25
    features = MotionFeatures().encode_picture(freeze)
    assert float(features.sync[:, MOTION].abs().sum()) == 0.0


def test_cut_between_segments_is_a_change_at_the_cut(tmp_path):
    pattern = _numbered_sequence(tmp_path, 60)
    segments = [
        Segment(pattern, 0.0, 0.4, speed=0.0, image_rate=25),  # freeze on a dark frame
        Segment(pattern, 2.0, 0.4, speed=0.0, image_rate=25),  # freeze on a brighter one
    ]
    features = MotionFeatures().encode_segments(segments)
    cut = features.sync[:, SYNC_LAYOUT["histogram_change"].start]
    assert int(cut.argmax()) == 10 and float(cut[10]) > 1.0
    assert float(cut.abs().sum() - cut[10].abs()) == 0.0


def test_frame_rates_do_not_change_output_frame_times(tmp_path):
    # 23.976 footage at a rational start: frame picks come from exact arithmetic, not floats.
    rate = Fraction(24000, 1001)
    pattern = _numbered_sequence(tmp_path, 60)
    start = float(Fraction(10) / rate)  # exactly frame 10, as a float
    picture = Picture.from_segments(
        [Segment(pattern, start, 1.0, image_rate=23.976)]
    )
    shown = _shown(picture, 25, 25)
    expected = [10 + math.floor(Fraction(k, 25) * rate + Fraction(1, 10**6)) for k in range(25)]
    assert shown == expected


def test_missing_unreadable_and_out_of_range_media_raise_media_error(tmp_path):
    encoder = MotionFeatures()
    with pytest.raises(MediaError, match="does not exist"):
        encoder.encode_segments([Segment(str(tmp_path / "nope.mov"), 0.0, 1.0)])
    junk = tmp_path / "notes.mov"
    junk.write_text("not a video")
    with pytest.raises(MediaError):
        encoder.encode_segments([Segment(str(junk), 0.0, 1.0)])
    path = write_video(tmp_path / "short.mp4", moving_box_frames(25, (64, 36)), 25)
    with pytest.raises(MediaError, match="ends at"):
        encoder.encode_segments([Segment(str(path), 0.5, 2.0)])
    with pytest.raises(MediaError, match="past the end"):
        encoder.encode_segments([Segment(str(path), 5.0, 1.0)])
    with pytest.raises(MediaError, match="before the first frame"):
        encoder.encode_segments([Segment(str(path), -1.0, 0.5)])
    with pytest.raises(MediaError, match="image_rate"):
        encoder.encode_segments([Segment(str(tmp_path / "shot.%04d.png"), 0.0, 1.0)])
