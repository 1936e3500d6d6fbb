"""The training entry point: features computed once, loss logged, exact resume, weights the
engine loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from daemon.model.codec import MelCodec
from daemon.model.config import preset
from daemon.model.data import FeatureSet, example_features, open_dataset
from daemon.model.engine import V2AEngine
from daemon.model.text import MiniLMText
from daemon.model.train import main
from daemon.model.visual import MotionFeatures
from tests.engine_data import FlashClickDataset

DATA = "tests.engine_data:FlashClickDataset?count=2"


def _train(out, steps, *extra):
    return main(["--config", "tiny", "--data", DATA, "--steps", str(steps), "--batch", "2",
                 "--out", str(out), "--log-every", "1", "--save-every", "2", "--warmup", "2",
                 "--device", "cpu", *extra])


def test_example_features_cover_exactly_one_window():
    config = preset("tiny")
    item = FlashClickDataset(count=1, seconds=5.0)[0]  # shorter than the window: padded
    latent, clip, sync = example_features(item, config, MotionFeatures(), MelCodec())
    assert latent.shape == (250, 160) and clip.shape == (64, 64) and sync.shape == (200, 64)
    assert float(latent[200:].max()) < -11.0  # the padding is silence


def test_dataset_specs_open_factories_with_arguments():
    dataset = open_dataset(DATA)
    assert isinstance(dataset, FlashClickDataset) and len(dataset) == 2


def test_training_logs_saves_and_resumes_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(straight, 3) == 0
    assert _train(split, 2) == 0
    assert _train(split, 3) == 2  # an existing run is not overwritten without --resume
    assert _train(split, 3, "--resume") == 0

    log = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(r["loss"] > 0 for r in log)

    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(split / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 3
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6)
        torch.testing.assert_close(a["ema"][key], b["ema"][key], rtol=0, atol=1e-6)

    # The features were computed once and are reused.
    features = FeatureSet.load(straight / "features")
    assert len(features) == 2 and features.captions == ["sharp clicks", ""]

    # The exported EMA weights are what the engine loads, with the fixed parts in place.
    weights = straight / "tiny.safetensors"
    state = load_file(str(weights))
    empty = MiniLMText().encode([""]).tokens[0]
    torch.testing.assert_close(state["empty_string_feat"], empty, rtol=0, atol=1e-5)
    assert float(state["latent_mean"].mean()) == pytest.approx(-5.0)
    engine = V2AEngine(weights=weights, device="cpu")
    engine.load("cpu")
    assert engine.network.config == preset("tiny")


def test_a_folder_of_footage_is_a_dataset_with_its_own_sound(tmp_path):
    from daemon.media import read_audio
    from tests.frontend_media import write_video_with_tone

    write_video_with_tone(tmp_path / "shot.mp4", 3.0, 440.0)
    (tmp_path / "shot.txt").write_text("a steady hum\n")
    dataset = open_dataset(str(tmp_path), window_s=2.0)
    item = dataset[0]
    assert len(dataset) == 1 and item.caption == "a steady hum"
    assert item.audio.shape == (32_000,) and item.audio_rate == 16_000
    spectrum = abs(np.fft.rfft(item.audio[4000:20000]))
    assert abs(int(spectrum.argmax()) - 440) <= 2  # 1 Hz bins
    # A range in the middle comes from the right place and pads past the end with silence.
    tail = read_audio(str(tmp_path / "shot.mp4"), 2.5, 3.5)
    assert tail.shape == (16_000,) and float(abs(tail[10_000:]).max()) == 0.0
    assert float(abs(tail[:6_000]).max()) > 0.3
