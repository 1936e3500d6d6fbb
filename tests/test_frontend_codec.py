"""The log-mel codec: rate arithmetic, Griffin-Lim round trip, batching, resampling."""

from __future__ import annotations

import math

import numpy as np
import torch

from daemon.model.codec import AudioCodec, MelCodec, resample


def _test_signal(seconds: float = 4.0, rate: int = 16_000) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * rate)) / rate
    chirp = 0.3 * torch.sin(2 * math.pi * (200 + 300 * t) * t)
    signal = chirp + 0.03 * torch.randn(t.shape, generator=generator)
    for k in range(1, int(seconds)):  # decaying noise bursts: impacts
        burst = torch.randn(400, generator=generator) * torch.exp(-torch.arange(400) / 60.0)
        signal[k * rate : k * rate + 400] += 0.5 * burst
    return signal.unsqueeze(0)


def test_rate_arithmetic_matches_the_tiny_network():
    codec = MelCodec()
    assert isinstance(codec, AudioCodec)
    assert codec.latent_dim == 160 and codec.samples_per_token == 512
    assert codec.latent_rate == 31.25
    latents = codec.encode(torch.zeros(1, 8 * 16_000))
    assert latents.shape == (1, 250, 160)
    assert codec.encode(torch.zeros(1, 1000)).shape == (1, 2, 160)  # ceil(1000 / 512)
    assert codec.decode(latents[:, :7]).shape == (1, 7 * 512)


def test_one_token_and_out_of_range_latents_decode_to_finite_audio():
    codec = MelCodec()
    assert codec.decode(torch.full((1, 1, 160), -3.0)).shape == (1, 512)
    assert codec.encode(torch.zeros(1, 300)).shape == (1, 1, 160)
    # A network far out of range: exp(150) overflows float32, which made NaN audio.
    latents = torch.full((2, 20, 160), -5.0)
    latents[0, 5:8] = 150.0
    decoded = codec.decode(latents)
    assert torch.isfinite(decoded).all() and decoded[0].abs().max() > 0
    torch.testing.assert_close(decoded[1], codec.decode(latents[1:])[0])


def _spectral_distance(codec: MelCodec, a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute log-mel difference (nats)."""
    return float((codec.encode(a) - codec.encode(b)).abs().mean())


def test_griffin_lim_round_trip_is_close_to_the_original():
    codec = MelCodec()
    signal = _test_signal(3.0)
    decoded = codec.decode(codec.encode(signal))
    assert decoded.shape == (1, math.ceil(signal.shape[1] / 512) * 512)  # whole tokens
    decoded = decoded[:, : signal.shape[1]]
    distance = _spectral_distance(codec, signal, decoded)
    assert distance < 0.12, distance
    # Far closer than a random-phase inversion (no Griffin-Lim iterations).
    no_phase = MelCodec(griffin_lim_iters=0).decode(codec.encode(signal))
    assert _spectral_distance(codec, signal, no_phase) > 4 * distance
    # Loudness is kept: the RMS is within 1.5 dB.
    ratio = float(decoded.pow(2).mean().sqrt() / signal.pow(2).mean().sqrt())
    assert abs(20 * math.log10(ratio)) < 1.5


def test_decoding_in_a_batch_gives_the_same_audio_as_one_by_one():
    codec = MelCodec()
    signal = _test_signal(2.0)
    latents = codec.encode(torch.cat([signal, 0.3 * signal.flip(-1)]))
    together = codec.decode(latents)
    alone = codec.decode(latents[1:])
    assert _spectral_distance(codec, together[1:], alone) < 0.01
    torch.testing.assert_close(together[1:], alone, rtol=0, atol=0.02)


def test_resampling_to_48k_keeps_the_tone_and_length():
    tone = np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000).astype(np.float32)
    up = resample(np.stack([tone, tone]), 16_000, 48_000)
    assert up.shape == (2, 48_000) and up.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(up[0]))
    assert abs(int(spectrum.argmax()) - 440) <= 1


def test_long_clips_decode_in_passes_that_join_cleanly():
    signal = _test_signal(6.0)
    codec = MelCodec(tokens_per_pass=60, pass_overlap_tokens=12)  # passes of ~2 s
    latents = codec.encode(signal)
    decoded = codec.decode(latents)
    assert decoded.shape == (1, latents.shape[1] * 512)
    whole = MelCodec().decode(latents)
    assert _spectral_distance(codec, signal, decoded) < 1.2 * _spectral_distance(codec, signal, whole)
    for join in (48, 96, 144):  # token where each pass after the first starts
        around = slice((join - 8) * 512, (join + 20) * 512)
        assert _spectral_distance(codec, signal[:, around], decoded[:, around]) < 0.13


def test_token_onsets_find_where_sound_starts():
    codec = MelCodec()
    onsets = codec.token_onsets(codec.encode(_test_signal()))[0]  # bursts at 1, 2, 3 s
    assert onsets.shape == (125,)
    bursts = [round(k * float(codec.latent_rate)) for k in (1, 2, 3)]  # tokens 31, 62, 94
    loudest = sorted(int(i) for i in onsets.topk(3).indices)
    assert all(abs(a - b) <= 1 for a, b in zip(loudest, bursts, strict=True)), loudest
    assert min(float(onsets[i - 1:i + 2].max()) for i in bursts) > 0.5
    # the chirp's steady sweep and the noise under it do not read as starts
    assert float(onsets.median()) < 0.2
