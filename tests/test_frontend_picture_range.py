"""Holding pictures within the range a network was trained on, and the pictures unlike the
world's that the evaluation measures it with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from daemon.model.visual import (
    PICTURE_RANGE_FILE,
    MotionFeatures,
    PictureRange,
    VisualFeatures,
    default_visual,
)
from daemon.model.world.unfamiliar import KINDS, unfamiliar_picture

WEIGHTS = Path(__file__).resolve().parents[1] / "daemon" / "model" / "weights"


def features(clip_values, sync_values) -> VisualFeatures:
    return VisualFeatures(torch.tensor(clip_values, dtype=torch.float32),
                          torch.tensor(sync_values, dtype=torch.float32))


def test_a_range_keeps_every_value_and_the_central_share_of_every_channels_values():
    # 1001 frames, two clips: values 0..1000 in the first channel, one far outlier in the second.
    ramp = torch.arange(1001, dtype=torch.float32)
    second = torch.zeros(1001)
    second[7] = 1e6
    stream = torch.stack([ramp, second], dim=1)
    span = PictureRange.spanning([VisualFeatures(stream[:500], stream[:500, :1]),
                                  VisualFeatures(stream[500:], stream[500:, :1])], share=0.99)
    # Inner (the central 99 %) low, high; outer (everything) low, high.
    assert torch.allclose(span.clip, torch.tensor([[5.0, 0.0], [995.0, 0.0],
                                                   [0.0, 0.0], [1000.0, 1e6]]))
    assert torch.allclose(span.sync, torch.tensor([[5.0], [995.0], [0.0], [1000.0]]))
    with pytest.raises(ValueError, match="share"):
        PictureRange.spanning([VisualFeatures(stream, stream)], share=0.0)


def span_of_unit_channels() -> PictureRange:
    # Two channels, inner -1..1, outer -3..3, in both streams.
    ends = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-3.0, -3.0], [3.0, 3.0]])
    return PictureRange(ends, ends.clone(), sustained=0.5)


def test_a_familiar_picture_is_left_as_it_is_its_brief_extremes_included():
    span = span_of_unit_channels()
    # Beyond the inner range throughout, beyond the outer range in one frame of four: an event.
    values = torch.tensor([[2.5, 0.0], [9.0, 0.0], [2.0, -2.9], [-2.0, 0.5]])
    picture = VisualFeatures(values, values.clone())
    assert not span.unfamiliar(picture)
    held = span.hold(picture)
    assert torch.equal(held.clip, values) and torch.equal(held.sync, values)


def test_a_picture_beyond_all_training_values_for_most_frames_is_held_within_the_inner_range():
    span = span_of_unit_channels()
    values = torch.tensor([[5.0, 0.5], [4.0, -2.0], [3.5, 0.0], [0.0, 0.0]])
    # Three frames of four beyond the outer range in the first channel: unfamiliar (here in the
    # clip stream only), so every channel of both streams is held within the inner range.
    picture = VisualFeatures(values, torch.zeros(4, 2))
    assert span.unfamiliar(picture)
    held = span.hold(picture)
    assert held.clip.tolist() == [[1.0, 0.5], [1.0, -1.0], [1.0, 0.0], [0.0, 0.0]]
    assert torch.equal(held.sync, torch.zeros(4, 2))


def test_an_unfamiliar_stretch_is_held_at_its_times_in_both_streams_and_the_rest_is_not():
    span = span_of_unit_channels()
    # At a frame a second (stretches of 4 frames) the clip stream is familiar for 6 s, then
    # beyond the outer range: a textured shot after a title card. The sync stream (2 frames a
    # second) lies inside the outer range throughout, beyond the inner one in its second channel.
    clip = torch.zeros(12, 2)
    clip[6:, 0] = 5.0
    sync = torch.zeros(24, 2)
    sync[:, 1] = 2.0
    picture = VisualFeatures(clip, sync)
    in_clip, in_sync = span.unfamiliar_frames(picture, rates=(1, 2))
    # The first stretch beyond in more than half its frames starts at frame 5 (5..8: 3 of 4).
    assert in_clip.tolist() == [False] * 5 + [True] * 7
    assert in_sync.tolist() == [False] * 10 + [True] * 14  # the same times, 5 s on
    held = span.hold(picture, rates=(1, 2))
    assert torch.equal(held.clip[:6], clip[:6]) and held.clip[6:, 0].tolist() == [1.0] * 6
    assert held.sync[:10, 1].tolist() == [2.0] * 10 and held.sync[10:, 1].tolist() == [1.0] * 14
    # Shorter than a stretch, a picture is one stretch: 6 of 12 frames beyond is not enough.
    assert not span.unfamiliar(picture, rates=(4, 8))


def test_a_range_round_trips_and_one_of_other_channels_is_refused(tmp_path):
    span = PictureRange(torch.randn(4, 64), torch.randn(4, 68), sustained=0.75)
    path = tmp_path / PICTURE_RANGE_FILE
    span.save(path, {"seeds": "0-9"})
    loaded = PictureRange.load(path, 64, 68)
    assert torch.equal(loaded.clip, span.clip) and torch.equal(loaded.sync, span.sync)
    assert loaded.sustained == 0.75
    with pytest.raises(ValueError, match="picture-range"):
        PictureRange.load(path, 64, 64)


def test_the_front_end_holds_pictures_within_a_range_stored_beside_the_weights(tmp_path):
    weights = tmp_path / "net.safetensors"
    weights.write_bytes(b"")  # only its folder is read
    assert default_visual(64, weights).picture_range is None
    frames = unfamiliar_picture("texture_still", 1_000_000)[:25]
    raw = MotionFeatures().encode_frames(frames, 25)
    # The range of a flat picture: a texture's edges lie far beyond it in every frame.
    flat_frames = np.full_like(frames, 128)
    flat = MotionFeatures().encode_frames(flat_frames, 25)
    PictureRange.spanning([flat], share=1.0).save(tmp_path / PICTURE_RANGE_FILE, {})
    visual = default_visual(64, weights)
    held = visual.encode_frames(frames, 25)
    assert not torch.equal(held.clip, raw.clip)
    assert torch.equal(held.clip, visual.picture_range.hold(raw).clip)
    assert torch.equal(visual.encode_frames(flat_frames, 25).sync, flat.sync)


def test_the_shipped_weights_come_with_the_range_of_their_training_pictures(tmp_path):
    if not (WEIGHTS / "tiny.safetensors").is_file():
        pytest.skip("no shipped weights in this checkout")
    visual = default_visual(68, WEIGHTS / "tiny.safetensors")
    assert visual.picture_range is not None
    # World pictures are familiar; a texture is not.
    from daemon.model.world import WorldConfig, generate_clip

    span, visual.picture_range = visual.picture_range, None
    for seed in (1_000_003, 1_000_004):
        raw = visual.encode_frames(generate_clip(seed, WorldConfig(duration=2.0)).frames, 25)
        assert not span.unfamiliar(raw)
    assert span.unfamiliar(visual.encode_frames(unfamiliar_picture("texture_still", 1_000_000)[:50], 25))
    # A textured shot after a 2 s title card: the shot is held, the first second of the card is
    # not (the stretch starting on the card's last frames already lies mostly beyond).
    raw = visual.encode_frames(unfamiliar_picture("texture_after_title", 1_000_000), 25)
    held = span.hold(raw)
    assert torch.equal(held.clip[:8], raw.clip[:8]) and torch.equal(held.sync[:25], raw.sync[:25])
    assert not torch.equal(held.clip[16:], raw.clip[16:])


def test_the_shipped_range_was_measured_on_the_channels_the_engine_reads(tmp_path, caplog):
    import shutil

    from daemon.model.events import DETECTOR_FILE, SHARPNESS

    if not (WEIGHTS / PICTURE_RANGE_FILE).is_file():
        pytest.skip("no shipped weights in this checkout")
    assert PictureRange.measured_sharpness(WEIGHTS / PICTURE_RANGE_FILE) == SHARPNESS
    # A range measured at another sharpness loads, and says to measure it again.
    shutil.copy(WEIGHTS / DETECTOR_FILE, tmp_path / DETECTOR_FILE)
    weights = tmp_path / "net.safetensors"
    span = PictureRange.load(WEIGHTS / PICTURE_RANGE_FILE, 64, 68)
    span.save(tmp_path / PICTURE_RANGE_FILE, {"sharpness": 1.0})
    with caplog.at_level("WARNING", logger="daemon.model.visual"):
        assert default_visual(68, weights).picture_range is not None
    assert "sharpened to 1" in caplog.text and "picture-range" in caplog.text
    caplog.clear()
    span.save(tmp_path / PICTURE_RANGE_FILE, {"sharpness": SHARPNESS})
    with caplog.at_level("WARNING", logger="daemon.model.visual"):
        default_visual(68, weights)
    assert caplog.text == ""


@pytest.mark.parametrize("kind", KINDS)
def test_unfamiliar_pictures_are_seeded_world_sized_frames(kind):
    frames = unfamiliar_picture(kind, 1_000_001)
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == 200
    assert frames.shape[-1] == 3 and frames.std() > 0
    assert np.array_equal(frames, unfamiliar_picture(kind, 1_000_001))


def test_unfamiliar_pictures_refuse_training_seeds_and_unknown_kinds():
    with pytest.raises(ValueError, match="training seed"):
        unfamiliar_picture("texture_still", 12)
    with pytest.raises(ValueError, match="one of"):
        unfamiliar_picture("plasma", 1_000_000)
