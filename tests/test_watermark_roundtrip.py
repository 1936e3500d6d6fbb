"""The provenance watermark: it round-trips, survives what audio goes through, stays quiet,
and is not found in audio that was never marked."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from daemon.media import lossy_round_trip
from daemon.model.world import WorldConfig, generate_clip
from daemon.watermark import WatermarkError, detect, embed

RATE = 48_000
PAYLOAD = bytes(range(16))  # what the engine passes: 16 bytes of hash


@pytest.fixture(scope="module")
def world_audio() -> np.ndarray:
    """8 s of world sound (footsteps on grass by the sea), stereo at 48 kHz."""
    clip = generate_clip(1, WorldConfig())
    mono = soxr.resample(clip.audio, clip.rate, RATE).astype(np.float32)
    return np.stack([mono, mono])


@pytest.fixture(scope="module")
def marked(world_audio) -> np.ndarray:
    return embed(world_audio, RATE, PAYLOAD)


def test_round_trip_returns_the_payload(marked, world_audio):
    assert marked.shape == world_audio.shape and marked.dtype == np.float32
    found, payload, confidence = detect(marked, RATE)
    assert found and payload == PAYLOAD and confidence > 0.999


def test_mark_is_quiet(world_audio, marked):
    snr = 10 * np.log10(np.sum(world_audio ** 2) / np.sum((marked - world_audio) ** 2))
    assert snr > 17  # ~20 dB on world audio; +-1.3 dB per cell


def test_clean_audio_is_not_flagged(world_audio):
    found, payload, _ = detect(world_audio, RATE)
    assert not found and payload is None
    noise = 0.1 * np.random.default_rng(3).standard_normal((2, 4 * RATE)).astype(np.float32)
    assert detect(noise, RATE)[:2] == (False, None)


def test_survives_gain_resampling_and_mild_noise(marked):
    assert detect(0.25 * marked, RATE)[1] == PAYLOAD
    resampled = soxr.resample(marked.T, RATE, 44_100).T
    assert detect(resampled, 44_100)[1] == PAYLOAD
    rms = np.sqrt(np.mean(marked ** 2))
    noisy = marked + rms * 10 ** (-30 / 20) * np.random.default_rng(0).standard_normal(
        marked.shape)
    assert detect(noisy, RATE)[1] == PAYLOAD


def test_survives_128k_aac(marked):
    decoded = lossy_round_trip(marked, RATE, codec="aac", bit_rate=128_000)
    found, payload, _ = detect(decoded, RATE)
    assert found and payload == PAYLOAD


def test_trimmed_excerpts(marked):
    # Presence from 2 s cut anywhere (not on the mark's grid); the payload needs longer.
    excerpt = marked[:, 30_011:30_011 + 2 * RATE]
    assert detect(excerpt, RATE)[0]
    assert detect(marked[:, :RATE // 4], RATE) == (False, None, 0.0)  # too short to say


def test_short_payload_and_mono_and_str():
    clip = generate_clip(9, WorldConfig(duration=4.0))
    mono = soxr.resample(clip.audio, clip.rate, RATE).astype(np.float32)
    marked = embed(mono, RATE, "v2a")
    assert marked.shape == mono.shape
    assert detect(marked, RATE)[1] == b"v2a"


def test_bad_payloads_and_audio_are_clear_errors():
    audio = np.zeros((2, RATE), np.float32)
    with pytest.raises(WatermarkError, match="1..16 bytes"):
        embed(audio, RATE, b"")
    with pytest.raises(WatermarkError, match="1..16 bytes"):
        embed(audio, RATE, "x" * 17)
    with pytest.raises(WatermarkError, match="shape"):
        embed(np.zeros((1, 1, 5)), RATE, b"a")
