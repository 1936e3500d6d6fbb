"""Reading editors' media at its edges: ranges rounded past the end, rotated phone video,
first frames that are not at 0, variable frame rates, damaged files, sequences with holes."""

from __future__ import annotations

import os
import struct
from fractions import Fraction

import av
import numpy as np
import pytest

from daemon.engine import MediaError, Segment
from daemon.media import decode_range
from tests.frontend_media import moving_box_frames, write_image_sequence, write_video


def _numbered(count: int, size: tuple[int, int] = (64, 36)) -> np.ndarray:
    """Frame j is a flat grey of level 4 * j: the picture says which frame it is."""
    levels = np.repeat((np.arange(count, dtype=np.uint8) * 4)[:, None, None, None], 3, axis=3)
    return np.broadcast_to(levels, (count, size[1], size[0], 3)).copy()


def _ids(decoded) -> list[int]:
    return [int(round(level / 4)) for level in decoded.images[:, 10, 10, 0]]


def _write_with_pts(path, frames, pts, time_base, options=None, container_options=None):
    container = av.open(str(path), "w", options=container_options or {})
    stream = container.add_stream("libx264", rate=25)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    stream.time_base = stream.codec_context.time_base = time_base
    if options:
        stream.options = options
    for image, t in zip(frames, pts, strict=True):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = t, time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def test_a_range_rounded_past_the_end_reads_the_last_frame(tmp_path):
    # 50 frames at 25 fps end at exactly 2 s; a timeline's float rounding, or a clip whose
    # rate does not divide the file's, can ask for a little more. Up to half a frame is the
    # last frame held; a whole frame more is refused with enough digits to see by how much.
    path = write_video(tmp_path / "two.mp4", _numbered(50), 25)
    segment = Segment(str(path), 1.0, 1.0)
    for end in (Fraction(2) + Fraction(1, 100_000), Fraction(2) + Fraction(2, 125)):
        decoded = decode_range(segment, Fraction(1), end)
        assert _ids(decoded)[-1] == 49 and decoded.shown_at(end) == len(decoded.times) - 1
    with pytest.raises(MediaError, match=r"ends at 2\.04\d* s.*2\.000\d* s.*1(\.0+)? frame"):
        decode_range(segment, Fraction(1), Fraction(2) + Fraction(1, 25))


def _rotate_track(path, matrix):
    """Writes `matrix` (a, b, u, c, d, v, x, y, w as 16.16 / 2.30 integers) into the MP4's
    track header, as a phone records its orientation."""
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    version = data[box + 4]
    offset = box + 8 + (20 if version == 0 else 32) + 16
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("matrix", "corner"),
    [
        ((0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000), (0, -1)),  # portrait (-90)
        ((0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000), (-1, 0)),  # +90
        ((-0x10000, 0, 0, 0, -0x10000, 0, 0, 0, 0x40000000), (-1, -1)),  # upside down
    ],
)
def test_rotated_phone_video_is_seen_as_displayed(tmp_path, matrix, corner):
    # The coded picture has a bright block in its top-left corner; displayed, the display
    # matrix turns it, and the block is in another corner.
    coded = np.full((4, 144, 256, 3), 60, np.uint8)
    coded[:, :36, :64] = 250
    path = write_video(tmp_path / "phone.mp4", coded, 25)
    _rotate_track(path, matrix)
    for detail in (0, 1, 3):
        decoded = decode_range(Segment(str(path), 0.0, 0.1), Fraction(0), Fraction(1, 10),
                               detail=detail)
        image = decoded.images[0, :, :, 0]
        assert image.shape == (36, 64)
        rows, cols = corner
        assert image[rows, cols] > 200
        assert image[-1 - rows, -1 - cols] < 100 and image[rows, -1 - cols] < 100
        if detail == 1:
            assert decoded.detail[0].shape == (72, 128) and decoded.detail[0][2 * rows, 2 * cols] > 200
        if detail == 3:
            assert decoded.detail[0].shape == (72, 128, 3)
            assert decoded.detail[0][2 * rows, 2 * cols, 0] > 200


@pytest.mark.parametrize(
    ("name", "first_pts", "options", "container_options"),
    [
        ("offset.mp4", 10, None, None),  # an empty edit: the first frame at 0.4 s
        ("offset.ts", 10, None, None),
        ("bframes.mp4", 0, {"bf": "3"}, {"use_editlist": "0"}),  # B-frame delay, no edit list
        ("bframes.mov", 0, {"bf": "3"}, {"movflags": "negative_cts_offsets"}),
    ],
)
def test_media_time_zero_is_the_first_frame(tmp_path, name, first_pts, options, container_options):
    pts = [first_pts + j for j in range(25)]
    path = _write_with_pts(tmp_path / name, _numbered(25), pts, Fraction(1, 25), options,
                           container_options)
    segment = Segment(str(path), 0.0, 1.0)
    assert _ids(decode_range(segment, Fraction(0), Fraction(1, 5))) == [0, 1, 2, 3, 4, 5]
    assert _ids(decode_range(segment, Fraction(1, 2), Fraction(3, 5))) == [11, 12, 13, 14, 15]
    assert _ids(decode_range(segment, Fraction(4, 5), Fraction(1)))[-1] == 24


def test_variable_frame_rate_frames_keep_their_own_times(tmp_path):
    ms = [0, 40, 80, 200, 240, 250, 260, 400, 440, 480, 600, 640, 680, 720, 760, 800, 840, 880,
          920, 960]
    path = _write_with_pts(tmp_path / "vfr.mp4", _numbered(20), ms, Fraction(1, 1000))
    decoded = decode_range(Segment(str(path), 0.21, 0.29), Fraction(21, 100), Fraction(1, 2))
    assert decoded.times == [Fraction(t, 1000) for t in ms[2:10]]
    assert _ids(decoded) == list(range(2, 10))
    assert _ids(decoded)[decoded.shown_at(Fraction(255, 1000))] == 5


def test_non_ascii_paths_odd_sizes_and_deep_pixel_formats_are_read(tmp_path):
    folder = tmp_path / "Prüfung 映像"
    folder.mkdir()
    for name, size, codec, pix_fmt in [
        ("odd é.mkv", (63, 35), "libx264rgb", "rgb24"),
        ("one.mkv", (1, 1), "libx264rgb", "rgb24"),
        ("deep.mp4", (64, 36), "libx264", "yuv444p10le"),
    ]:
        path = write_video(folder / name, _numbered(10, size), 25, codec=codec, pix_fmt=pix_fmt)
        decoded = decode_range(Segment(str(path), 0.0, 0.2), Fraction(0), Fraction(1, 5))
        assert decoded.images.shape == (6, 36, 64, 3)
        assert abs(int(decoded.images[5, 10, 10, 0]) - 20) <= 2
    pattern = write_image_sequence(folder / "séquence", _numbered(10), start_number=1)
    decoded = decode_range(Segment(pattern, 0.0, 0.2, image_rate=25, start_number=1),
                           Fraction(0), Fraction(1, 5))
    assert _ids(decoded) == [0, 1, 2, 3, 4, 5]


def test_a_missing_frame_in_an_image_sequence_is_named(tmp_path):
    pattern = write_image_sequence(tmp_path / "holey", _numbered(20), start_number=1001)
    os.remove(pattern % 1010)
    segment = Segment(pattern, 0.0, 0.8, image_rate=25, start_number=1001)
    with pytest.raises(MediaError, match=r"shot\.1010\.png.*missing") as raised:
        decode_range(segment, Fraction(0), Fraction(4, 5))
    assert "restore" in str(raised.value)
    # The decoder reads a few frames past a range's end: a hole just after it is named too,
    # while the sequence's own end is no hole.
    with pytest.raises(MediaError, match=r"shot\.1010\.png.*missing"):
        decode_range(segment, Fraction(0), Fraction(6, 25))
    assert _ids(decode_range(segment, Fraction(16, 25), Fraction(19, 25)))[-1] == 19
    # A range clear of the hole is read.
    assert _ids(decode_range(segment, Fraction(12, 25), Fraction(16, 25))) == list(range(11, 17))


def test_damaged_and_audio_only_files_say_what_to_do(tmp_path):
    container = av.open(str(tmp_path / "whole.mp4"), "w", options={"movflags": "faststart"})
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
    for image in moving_box_frames(100, (64, 36)):
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    data = (tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "copy interrupted.mp4"  # the index is whole, the picture half there
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="damaged or incomplete"):
        decode_range(Segment(str(cut), 0.0, 4.0), Fraction(0), Fraction(4))

    sound = tmp_path / "sound.wav"
    with av.open(str(sound), "w") as out:
        audio = out.add_stream("pcm_s16le", rate=48_000)
        audio.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 48_000
        for packet in audio.encode(frame):
            out.mux(packet)
    with pytest.raises(MediaError, match="no picture"):
        decode_range(Segment(str(sound), 0.0, 0.1), Fraction(0), Fraction(1, 10))
