"""The V2A engine end to end on real files with a random-weight tiny network."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pyloudnorm
import pytest
import torch

from daemon import watermark
from daemon.engine import (
    OUTPUT_RATE,
    Cancelled,
    ClipRequest,
    Engine,
    MediaError,
    Segment,
)
from daemon.model.codec import MelCodec
from daemon.model.engine import (
    DEFAULT_WEIGHTS,
    IncompatibleWeights,
    V2AEngine,
    WeightsNotInstalled,
    true_peak,
    watermark_payload,
)
from daemon.model.events import DETECTOR_FILE
from daemon.model.text import MiniLMText, conditioning_text
from daemon.model.windows import WindowSettings
from tests.engine_weights import random_tiny_weights
from tests.frontend_media import moving_box_frames, write_video

STEPS = 3


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    return str(write_video(folder / "shot.mp4", moving_box_frames(75, (96, 54), flash=30), 25))


@pytest.fixture(scope="module")
def engine(weights):
    engine = V2AEngine(weights=weights, device="cpu")
    engine.load("cpu")
    return engine


def _request(video, start=0.0, duration=1.0, **options) -> ClipRequest:
    return ClipRequest((Segment(video, start, duration),), steps=options.pop("steps", STEPS), **options)


def _never() -> bool:
    return False


def _ignore(*_args) -> None:
    return None


def test_engine_implements_the_contract(engine, weights):
    assert isinstance(engine, Engine)
    assert engine.loaded and engine.device == "cpu"
    assert engine.name == "v2a-tiny"
    assert len(engine.weights_hash) == 16
    memory = engine.memory()
    assert memory["allocated"] > 0 and memory["total"] >= memory["allocated"]


@pytest.mark.parametrize("duration", [0.7311, 1.001])
def test_audio_has_exactly_the_requested_samples(engine, video, duration):
    request = _request(video, 0.2, duration, prompt="glass breaks", seed=7)
    audio = engine.generate(request, _ignore, _never)
    assert audio.sample_rate == OUTPUT_RATE
    assert audio.samples.shape == (2, round(duration * OUTPUT_RATE)) == (2, request.num_samples)
    assert audio.samples.dtype == np.float32 and np.isfinite(audio.samples).all()
    assert np.array_equal(audio.samples[0], audio.samples[1])
    assert audio.metadata["seed"] == 7 and audio.metadata["model"] == "v2a-tiny"
    assert audio.metadata["precision"] == "float32"  # sampling on a CPU, whatever the CPU


def test_output_is_marked_and_loudness_normalised_under_the_peak_ceiling(engine, video):
    audio = engine.generate(_request(video, 0.0, 1.5, seed=11), _ignore, _never)
    found, _payload, _confidence = watermark.detect(audio.samples, OUTPUT_RATE)
    assert found
    assert audio.metadata["watermark"] == watermark_payload(
        engine.name, engine.weights_hash, 11
    ).hex()
    mono = audio.samples[0].astype(np.float64)
    loudness = pyloudnorm.Meter(OUTPUT_RATE).integrated_loudness(mono)
    peak_db = 20 * math.log10(true_peak(audio.samples[0], OUTPUT_RATE))
    assert peak_db <= -1.0 + 0.05
    # At -20 LUFS unless the peak ceiling had to pull it down.
    assert loudness == pytest.approx(audio.metadata["loudness_lufs"], abs=0.3)
    assert loudness <= -20.0 + 0.3


def test_progress_runs_through_the_stages_one_sampler_step_at_a_time(engine, video):
    events = []
    engine.generate(_request(video, steps=4), lambda *e: events.append(e), _never)
    stages = [stage for stage, _, _ in events]
    order = ["decode", "features", "sampling", "decoding_audio"]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == order
    assert [(step, total) for stage, step, total in events if stage == "sampling"] == [
        (k, 4) for k in range(1, 5)
    ]


def test_cancel_stops_at_the_next_sampler_step(engine, video):
    steps_seen = []

    def progress(stage, step, total):
        if stage == "sampling":
            steps_seen.append(step)

    with pytest.raises(Cancelled):
        engine.generate(_request(video, steps=10), progress, lambda: len(steps_seen) >= 2)
    assert steps_seen == [1, 2]


def test_a_batch_gives_the_same_audio_as_one_by_one(engine, video):
    requests = [
        _request(video, 0.0, 1.0, prompt="a door slams", seed=1),
        _request(video, 1.0, 1.0, prompt="", negative_prompt="music", seed=2),
    ]
    together = engine.generate_batch(requests, _ignore, _never)
    codec = MelCodec()
    for request, batched in zip(requests, together, strict=True):
        alone = engine.generate(request, _ignore, _never)
        assert batched.samples.shape == alone.samples.shape
        # Float rounding differs between batch sizes and Griffin-Lim magnifies it in the
        # phase, so compare the sound (log-mel) closely and the waveform loosely.
        a = codec.encode(torch.from_numpy(batched.samples[:1, ::3].copy()))
        b = codec.encode(torch.from_numpy(alone.samples[:1, ::3].copy()))
        assert float((a - b).abs().mean()) < 0.02
        error = np.linalg.norm(batched.samples - alone.samples) / np.linalg.norm(alone.samples)
        assert error < 0.05
    # Different seeds and prompts give different audio.
    assert not np.allclose(together[0].samples, together[1].samples, atol=1e-3)


def test_a_batch_of_different_lengths_reports_one_running_count(engine, video):
    events = []
    requests = [_request(video, 0.0, 0.5), _request(video, 0.0, 0.7), _request(video, 1.0, 0.5)]
    audio = engine.generate_batch(requests, lambda *e: events.append(e), _never)
    assert [a.samples.shape[1] for a in audio] == [r.num_samples for r in requests]
    sampling = [(step, total) for stage, step, total in events if stage == "sampling"]
    assert sampling == [(k, 2 * STEPS) for k in range(1, 2 * STEPS + 1)]  # two samplings


def test_seed_reproduces_and_prompt_changes_the_audio(engine, video):
    first = engine.generate(_request(video, 0, 0.5, prompt="thunder", seed=5), _ignore, _never)
    again = engine.generate(_request(video, 0, 0.5, prompt="thunder", seed=5), _ignore, _never)
    other = engine.generate(_request(video, 0, 0.5, prompt="birdsong", seed=5), _ignore, _never)
    np.testing.assert_array_equal(first.samples, again.samples)
    assert not np.allclose(first.samples, other.samples, atol=1e-3)


@pytest.mark.parametrize("reads_negation", [False, True])
def test_a_network_that_reads_negation_finds_the_negative_prompt_in_its_text(
        tmp_path, video, reads_negation, monkeypatch):
    weights = random_tiny_weights(tmp_path, reads_negation=reads_negation)
    engine = V2AEngine(weights=weights, device="cpu")
    engine.load("cpu")
    seen = []
    real = engine.network.preprocess_conditions
    monkeypatch.setattr(engine.network, "preprocess_conditions",
                        lambda clip, sync, text, *a, **k: seen.append(text) or real(clip, sync, text, *a, **k))
    request = _request(video, 0, 0.5, prompt="footsteps", negative_prompt="music")
    engine.generate(request, _ignore, _never)
    expected, _, negative = conditioning_text(MiniLMText(), ["footsteps"], ["music"], reads_negation)
    # The full branch reads the conditioning text, the negative branch the negative prompt.
    assert any(torch.allclose(t[:1], expected, atol=1e-4) for t in seen)
    assert any(torch.allclose(t[:1], negative, atol=1e-4) for t in seen)


def test_segments_across_a_cut_make_one_continuous_clip(engine, video):
    request = ClipRequest(
        (Segment(video, 0.0, 0.6), Segment(video, 2.0, 0.55, speed=0.0)), steps=STEPS
    )
    audio = engine.generate(request, _ignore, _never)
    assert audio.samples.shape == (2, round(1.15 * OUTPUT_RATE))


def test_long_and_low_memory_requests_are_generated_in_windows(engine, video):
    # A freeze frame lets a 3 s file drive a clip longer than one window.
    long = ClipRequest((Segment(video, 1.0, 11.0, speed=0.0),), steps=2)
    events = []
    audio = engine.generate(long, lambda *e: events.append(e), _never)
    assert audio.samples.shape == (2, 11 * OUTPUT_RATE)
    sampling = [(step, total) for stage, step, total in events if stage == "sampling"]
    assert sampling == [(k, 4) for k in range(1, 5)]  # two 8 s windows x 2 steps
    low = ClipRequest((Segment(video, 1.0, 6.0, speed=0.0),), steps=2, low_memory=True)
    events.clear()
    audio = engine.generate(low, lambda *e: events.append(e), _never)
    assert audio.samples.shape == (2, 6 * OUTPUT_RATE)
    sampling = [(step, total) for stage, step, total in events if stage == "sampling"]
    assert sampling == [(k, 4) for k in range(1, 5)]  # two 4 s windows x 2 steps


@pytest.mark.parametrize("max_single_s", [None, 16.0])
def test_low_memory_samples_in_half_windows_whatever_the_one_piece_limit(engine, video,
                                                                         monkeypatch, max_single_s):
    """Low memory is smaller pieces for a small accelerator: 4 s windows and one sampling of at
    most 5 s, also where more is sampled in one piece otherwise (`max_single_s`). A 6 s clip
    lies between the two: sampled whole when ordinary, batched with its equals (before, a
    low-memory request beside them made the engine refuse to batch them), and in two windows
    when low on memory."""
    monkeypatch.setattr(engine, "windows", WindowSettings(max_single_s=max_single_s))
    six = [ClipRequest((Segment(video, 1.0, 6.0, speed=0.0),), steps=2, low_memory=low)
           for low in (False, False, True)]
    events = []
    audio = engine.generate_batch(six, lambda *e: events.append(e), _never)
    assert [a.samples.shape for a in audio] == [(2, 6 * OUTPUT_RATE)] * 3
    sampling = [(step, total) for stage, step, total in events if stage == "sampling"]
    # The ordinary pair in one sampling of 2 steps, then the low-memory clip: 2 windows x 2 steps.
    assert sampling == [(k, 6) for k in range(1, 7)]


def test_a_clip_of_exactly_the_single_window_limit_is_sampled_in_one_window(engine, video):
    # "Clips up to 10 s in one window": 10 s is 312.5 tokens, so 313, which is still one.
    events = []
    request = ClipRequest((Segment(video, 1.0, 10.0, speed=0.0),), steps=1)
    audio = engine.generate(request, lambda *e: events.append(e), _never)
    assert audio.samples.shape == (2, 10 * OUTPUT_RATE)
    assert [(step, total) for stage, step, total in events if stage == "sampling"] == [(1, 1)]


@pytest.mark.parametrize("duration", [0.001, 1001 / 60000, 0.032])
def test_clips_of_one_latent_token_or_less_give_their_samples(engine, video, duration):
    # One frame at 59.94 fps is 16.7 ms: a single 32 ms latent token.
    audio = engine.generate(_request(video, 0.5, duration), _ignore, _never)
    assert audio.samples.shape == (2, round(duration * OUTPUT_RATE))
    assert np.isfinite(audio.samples).all()


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="the embedded weights are not installed")
def test_the_shipped_network_far_out_of_range_still_gives_finite_audio(video, caplog, tmp_path):
    # On this small synthetic shot, unlike any world picture, the shipped network's log-mel
    # latents ran away to ~150 and exp(150) is inf in float32: the clip came back as NaN
    # samples. The sampler now keeps the predicted sound within a sound's range
    # (flow.sound_bounds), and the codec's ceiling guards latents from anywhere else. The
    # weights here lack the range of their training pictures (visual.PictureRange), which keeps
    # this shot from running away at all.
    for name in (DEFAULT_WEIGHTS.name, DEFAULT_WEIGHTS.with_suffix(".json").name, DETECTOR_FILE):
        shutil.copy(DEFAULT_WEIGHTS.with_name(name), tmp_path / name)
    engine = V2AEngine(weights=tmp_path / DEFAULT_WEIGHTS.name, device="cpu")
    audio = engine.generate(_request(video, 0.0, 1.0, steps=2), _ignore, _never)
    assert audio.samples.shape == (2, OUTPUT_RATE)
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() > 0
    assert audio.metadata["loudness_lufs"] == pytest.approx(-20.0, abs=0.5)
    # And the log and the audio say the sound is not to be trusted.
    assert audio.metadata["overloud_share"] > 0.01
    assert audio.unfamiliar
    assert "not to be trusted" in caplog.text


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="the embedded weights are not installed")
def test_the_shipped_network_holds_the_picture_within_its_training_range(video, caplog):
    # The same shot with the range beside the shipped weights: nothing at the sampler's ceiling.
    engine = V2AEngine(weights=DEFAULT_WEIGHTS, device="cpu")
    audio = engine.generate(_request(video, 0.0, 1.0, steps=2), _ignore, _never)
    assert engine.visual.picture_range is not None
    assert np.isfinite(audio.samples).all() and audio.metadata["overloud_share"] <= 0.01
    assert not audio.unfamiliar
    assert "not to be trusted" not in caplog.text


def test_media_errors_pass_through(engine, tmp_path):
    with pytest.raises(MediaError):
        engine.generate(_request(str(tmp_path / "missing.mov")), _ignore, _never)


def test_missing_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("V2A_WEIGHTS", raising=False)
    if not DEFAULT_WEIGHTS.is_file():
        with pytest.raises(WeightsNotInstalled, match="no model weights are installed"):
            V2AEngine().load("cpu")
    with pytest.raises(WeightsNotInstalled, match="does not exist"):
        V2AEngine(weights=tmp_path / "nothing.safetensors").load("cpu")
    monkeypatch.setenv("V2A_WEIGHTS", str(tmp_path / "elsewhere.safetensors"))
    with pytest.raises(WeightsNotInstalled, match="V2A_WEIGHTS"):
        V2AEngine().load("cpu")
    assert V2AEngine().weights_hash == ""


def test_weights_from_a_user_folder_and_the_environment(tmp_path, monkeypatch, weights):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "mine.safetensors").write_bytes(weights.read_bytes())
    (folder / "mine.json").write_text(weights.with_suffix(".json").read_text())
    # Other weights kept beside the network (no config of their own) do not make it ambiguous.
    (folder / "classifier.safetensors").write_bytes(b"not the network")
    monkeypatch.setenv("V2A_WEIGHTS", str(folder))
    engine = V2AEngine(device="cpu")
    assert engine.name == "v2a-mine"
    assert engine.weights_hash == V2AEngine(weights=weights).weights_hash


def test_a_pth_file_in_a_user_folder_loads(tmp_path, weights):
    from safetensors.torch import load_file

    folder = tmp_path / "pth"
    folder.mkdir()
    torch.save({"state_dict": load_file(str(weights))}, folder / "model.pth")
    (folder / "model.json").write_text(weights.with_suffix(".json").read_text())
    engine = V2AEngine(weights=folder, device="cpu")
    engine.load("cpu")
    assert engine.name == "v2a-model" and engine.network.config.hidden_dim == 128


def test_weights_for_other_front_ends_are_refused_clearly(tmp_path):
    other = random_tiny_weights(tmp_path, "wide", clip_dim=32)
    engine = V2AEngine(weights=other, device="cpu")
    with pytest.raises(IncompatibleWeights, match="picture semantic features"):
        engine.load("cpu")
    assert not engine.loaded


def test_weights_trained_with_contact_channels_bring_their_detector(tmp_path, video):
    from daemon.model.events import DETECTOR_FILE, EventDetector

    with_contacts = random_tiny_weights(tmp_path, "contacts", sync_dim=68)
    engine = V2AEngine(weights=with_contacts, device="cpu")
    with pytest.raises(IncompatibleWeights, match=f"keep {DETECTOR_FILE} in the same folder"):
        engine.load("cpu")
    assert not engine.loaded
    alone = engine.weights_hash

    # A detector of the first build (64x36 input, no size in its file) is refused, not misread.
    from safetensors.torch import save_file
    save_file(dict(EventDetector().state_dict()), str(tmp_path / DETECTOR_FILE),
              metadata={"families": "impact,footsteps,flash,door"})
    with pytest.raises(IncompatibleWeights, match="retrain it"):
        engine.load("cpu")

    EventDetector().save(tmp_path / DETECTOR_FILE, {})
    assert engine.weights_hash != alone  # cached results made without it do not match
    engine.load("cpu")
    assert engine.visual.name == "motion-features-v1+contacts" and engine.visual.sync_dim == 68
    audio = engine.generate(_request(video, 0.5, 1.0), _ignore, _never)
    assert audio.samples.shape == (2, OUTPUT_RATE) and np.isfinite(audio.samples).all()


def test_unload_frees_the_network(weights):
    engine = V2AEngine(weights=weights, text=None, device="cpu")
    engine.load("cpu")
    assert engine.loaded
    engine.unload()
    assert not engine.loaded and engine.device == ""
    assert engine.text._model is None
    engine.load("cpu")  # and loads again
    assert engine.loaded and engine.text.encode(["rain"]).tokens.shape == (1, 32, 384)


def test_a_class_guide_beside_the_weights_steers_prompted_requests(tmp_path, video):
    from daemon.model.guide import GUIDE_FILE, ClassGuide

    weights = random_tiny_weights(tmp_path)
    plain = V2AEngine(weights=weights, device="cpu")
    alone = plain.weights_hash
    rain = _request(video, 0.0, 1.0, prompt="rain falling", seed=4)
    without = plain.generate(rain, _ignore, _never).samples
    torch.manual_seed(0)
    guide = ClassGuide()
    with torch.no_grad():
        for p in guide.parameters():
            p.normal_(0, 0.2)
        guide.latent_mean.fill_(-5.0)  # the statistics random_tiny_weights gives the network
        guide.latent_std.fill_(0.5)
    guide.save(tmp_path / GUIDE_FILE, {})
    steered = V2AEngine(weights=weights, device="cpu")
    assert steered.weights_hash != alone  # cached results made without it do not match
    with_guide = steered.generate(rain, _ignore, _never).samples
    assert not np.allclose(with_guide, without)
    # A request naming nothing the guide knows is sampled as before.
    talk = _request(video, 0.0, 1.0, prompt="", seed=4)
    assert np.array_equal(steered.generate(talk, _ignore, _never).samples,
                          plain.generate(talk, _ignore, _never).samples)
