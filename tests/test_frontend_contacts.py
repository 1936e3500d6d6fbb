"""The contact detector (daemon.model.events): its sync channels, how weights pick it, and how
a network trained without its channels grows them without changing what it computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from daemon.model.config import preset
from daemon.model.events import (
    DETECTOR_FILE,
    FAMILIES,
    EventDetector,
    clip_luma_and_labels,
    family_of,
)
from daemon.model.network import build_network
from daemon.model.train_default import _load_optimiser_state, _optimiser, _widened
from daemon.model.visual import MotionFeatures, default_visual

SHIPPED = Path(__file__).resolve().parents[1] / "daemon" / "model" / "weights" / DETECTOR_FILE


def _detector(seed: int = 0) -> EventDetector:
    torch.manual_seed(seed)
    return EventDetector().eval().requires_grad_(False)


def _frames(count: int = 40) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (count, 36, 64, 3), dtype=np.uint8)


def test_world_classes_map_to_contact_families():
    assert family_of("impact_glass") == "impact" and family_of("footsteps_grass") == "footsteps"
    assert family_of("zap") == family_of("click") == "flash" and family_of("door_slam") == "door"
    assert family_of("whoosh") is None and family_of("rain") is None


def test_channels_are_probabilities_and_chunks_join_exactly():
    detector, images = _detector(), _frames()
    shown = np.array([min(i // 2, 39) for i in range(64)])  # a 50 -> 25 fps style mapping, held end
    whole = detector.features(images, shown)
    assert whole.shape == (64, len(FAMILIES)) and whole.dtype == np.float32
    assert (whole >= 0).all() and (whole <= 4.0).all()
    # Chunks carry their neighbours: seams give the same numbers as one pass.
    np.testing.assert_allclose(detector.features(images, shown, chunk=7), whole, atol=1e-5)


def test_weights_round_trip_and_other_families_are_refused(tmp_path):
    detector = _detector(1)
    detector.save(tmp_path / DETECTOR_FILE, {"steps": 0})
    loaded = EventDetector.load(tmp_path / DETECTOR_FILE)
    images, shown = _frames(12), np.arange(12)
    np.testing.assert_array_equal(loaded.features(images, shown), detector.features(images, shown))

    from safetensors.torch import save_file
    save_file(dict(detector.state_dict()), str(tmp_path / "other.safetensors"),
              metadata={"families": "impact,footsteps"})
    with pytest.raises(ValueError, match="expects impact,footsteps,flash,door"):
        EventDetector.load(tmp_path / "other.safetensors")


def test_contact_channels_follow_the_plain_sync_features(tmp_path):
    frames = _frames(30)
    plain = MotionFeatures().encode_frames(frames, 25)
    with_contacts = MotionFeatures(contacts=_detector()).encode_frames(frames, 25)
    assert with_contacts.sync.shape == (32, 68)
    torch.testing.assert_close(with_contacts.sync[:, :64], plain.sync)
    torch.testing.assert_close(with_contacts.clip, plain.clip)


def test_weights_pick_their_visual_front_end(tmp_path):
    weights = tmp_path / "model.safetensors"
    assert default_visual(64, weights).sync_dim == 64
    with pytest.raises(FileNotFoundError, match=f"keep {DETECTOR_FILE} in the same folder"):
        default_visual(68, weights)
    _detector().save(tmp_path / DETECTOR_FILE, {})
    visual = default_visual(68, weights)
    assert visual.sync_dim == 68 and visual.name == "motion-features-v1+contacts"


def test_labels_are_the_world_contact_frames():
    from daemon.model.world import generate_clip

    luma, labels = clip_luma_and_labels(5, compress=False)
    clip = generate_clip(5)
    assert luma.shape == (200, 36, 64) and labels.shape == (200, len(FAMILIES))
    expected = {(e.frame, FAMILIES.index(family_of(e.cls))) for e in clip.events
                if e.onset and family_of(e.cls) and e.frame < 200}
    assert set(zip(*np.nonzero(labels), strict=True)) == expected and expected


def test_training_entry_point_writes_a_detector_that_loads(tmp_path):
    from daemon.model.events import main

    out = tmp_path / DETECTOR_FILE
    main(["train", "--out", str(out), "--clips", "2", "--test-clips", "2", "--steps", "2",
          "--workers", "1", "--threads", "1"])
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    assert meta["steps"] == 2 and meta["clips"] == 2 and set(meta["held_out_ap"]) <= set(FAMILIES)
    assert EventDetector.load(out).features(_frames(10), np.arange(10)).shape == (10, 4)


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped detector")
def test_shipped_detector_finds_door_slams_and_impacts_on_held_out_clips():
    from daemon.model.events import average_precision
    from daemon.model.world import EVAL_SYNC, compress_frames, generate_clip

    detector = EventDetector.load(SHIPPED)
    for cls, family, floor in (("door_slam", "door", 0.8), ("impact_wood", "impact", 0.5)):
        scores, truth = [], []
        for seed in range(1_990_000, 1_990_004):
            clip = generate_clip(seed, EVAL_SYNC, classes=(cls,), cuts=False)
            features = MotionFeatures(contacts=detector).encode_frames(
                compress_frames(clip.frames, clip.fps, crf=23), clip.fps).sync[:200, 64:]
            scores.append(features[:, FAMILIES.index(family)].numpy())
            frames = np.zeros(200)
            frames[[e.frame for e in clip.events if e.onset and e.cls == cls and e.frame < 200]] = 1
            truth.append(frames)
        scores, truth = np.concatenate(scores), np.concatenate(truth)
        assert average_precision(scores, truth) > max(floor, 3 * truth.mean()), cls


def test_a_network_grows_contact_channels_computing_what_it_did():
    old = build_network("tiny").eval()
    torch.manual_seed(0)
    for parameter in old.parameters():  # trained-looking weights, empty features included
        parameter.data.normal_(0, 0.02)
    new = build_network(preset("tiny").with_(sync_dim=68)).eval()
    new.load_state_dict(_widened(old.state_dict(), new))

    latent, clip, text, t = torch.randn(1, 250, 160), torch.randn(1, 64, 64), torch.randn(1, 32, 384), torch.rand(1)
    sync = torch.randn(1, 200, 64)
    contacts = torch.rand(1, 200, 4) * 4
    with torch.no_grad():
        torch.testing.assert_close(new(latent, clip, torch.cat([sync, contacts], -1), text, t),
                                   old(latent, clip, sync, text, t))

    # The optimiser's moments grow with them (zeros for the new channels).
    trained = _optimiser(old, 1e-3, 3.0)
    old.train()
    old(latent, clip, sync, text, t).square().mean().backward()
    trained.step()
    optimiser = _optimiser(new, 1e-3, 3.0)
    _load_optimiser_state(optimiser, trained.state_dict(), new)
    weight = new.sync_input_proj[0].weight
    moments = optimiser.state[weight]["exp_avg"]
    assert moments.shape == weight.shape and moments[:, 64:].abs().sum() == 0
    assert moments[:, :64].abs().sum() > 0
