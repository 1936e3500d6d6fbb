"""The audio codec: waveform <-> the latent frames the network generates.

The default codec needs no weights. Its latent is the log-mel spectrogram itself:

    16 000 Hz mono audio
    STFT: n_fft 1024 (64 ms Hann window), hop 256 samples (16 ms)  -> 16000 / 256 = 62.5 frames/s
    80 mel bands (0-8 kHz), magnitude, natural log clamped at 1e-5 (-11.5 for silence)
    one latent token = 2 consecutive mel frames flattened        -> latent_dim 2 x 80 = 160
                                                                     62.5 / 2 = 31.25 tokens/s
    one token covers 512 samples (32 ms); an 8 s window = 128 000 samples = 500 frames
                                                                   = 250 tokens (latent_seq_len)

Frame i is centred on sample 256 * i (the STFT pads by reflection at both ends), so L samples
(a multiple of 512) give exactly L / 256 frames and L / 512 tokens.

Back to sound: the mel bands are spread back over the 513 STFT bins with the pseudo-inverse of
the filterbank (clamped non-negative, refined by 30 non-negative least-squares updates), then
Griffin-Lim with momentum ("fast Griffin-Lim", Perraudin, Balazs and Sondergaard 2013) recovers
a phase. Measured on a chirp + clicks + noise test signal (8 s): re-encoding the output gives a
log-mel within 0.090 (16 iterations), 0.080 (32), 0.077 (48), 0.074 (64) mean absolute of the
original (0.128 at 32 with the plain pseudo-inverse); 32 iterations take ~0.15 s for 8 s on one
CPU core, so 32 is the default.
Clips longer than 60 s are decoded in passes overlapping by ~1 s: each pass starts the phase of
the shared frames where the previous pass left it (without that, the joins measure twice as far
from the original), and the shared samples are cross-faded. Memory stays that of 60 s.
Most of the remaining difference to the original waveform's STFT is what 80 mel bands cannot
hold (fine harmonic detail above ~1 kHz), not phase.
Everything is plain torch and vectorised over the batch. The phase starts from a fixed seed
per item, so an item decodes to the same waveform alone or in a batch.

`latent_mean` / `latent_std` are fixed constants that bring log-mel values to roughly zero
mean and unit spread over material with silences: silence sits at -11.5, noise at -40 dBFS
near -4.5, a loud chirp + clicks mix near -3.9 with spread ~1.6 (mean -5, spread 3 maps all of
it into about [-2.2, +1.5]). The network stores them as its `latent_mean` / `latent_std` and normalises
with them; they are not per-clip statistics.

A learned codec (a small vocoder trained here, or MMAudio's published 1-D VAE + BigVGAN) is
another `AudioCodec` with its own `latent_dim`, rate and statistics; the engine only uses the
interface and checks `latent_dim` / rate against the network's config.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Protocol, runtime_checkable

import numpy as np
import soxr
import torch

LOG_FLOOR = 1e-5
LOG_CEILING = math.log(1e4)
"""Highest log-mel value decoded: full-scale audio reads below 3, so this touches no real sound,
but keeps exp() finite when a network strays far out of range (exp(89) is inf in float32,
and Griffin-Lim turns an inf into NaN audio)."""
SOUND_RANGE = (math.log(LOG_FLOOR), 3.5)
"""The log-mel values of any sound within full scale: silence sits on the floor, a full-scale
square wave (the loudest cell there is) reads 2.8, full-scale noise 0.8. The sampler keeps its
predicted sound inside it (`flow.sound_bounds`)."""
LATENT_MEAN = -5.0
LATENT_STD = 3.0


def ceiling_share(latents: torch.Tensor) -> torch.Tensor:
    """(B, ...) log-mel latents -> (B,): the share of each item's values at the top of
    `SOUND_RANGE`, where a network runs off to on a picture it does not know."""
    return (latents >= SOUND_RANGE[1] - 1e-3).flatten(1).float().mean(dim=1)


@runtime_checkable
class AudioCodec(Protocol):
    name: str
    sample_rate: int
    latent_dim: int
    samples_per_token: int

    @property
    def latent_rate(self) -> Fraction:
        """Latent tokens per second."""

    @property
    def latent_mean(self) -> torch.Tensor:
        """(1, 1, latent_dim) statistics the network normalises latents with."""

    @property
    def latent_std(self) -> torch.Tensor: ...

    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, L) audio at `sample_rate` -> (B, ceil(L / samples_per_token), latent_dim)."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, N, latent_dim) -> (B, N * samples_per_token) audio at `sample_rate`."""


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale, each scaled to unit
    area in Hz (Slaney normalisation), so louder bands do not depend on band width."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (upper - lower))
    return torch.from_numpy(weights.astype(np.float32))


class MelCodec:
    """16 kHz log-mel latents (160-d, 31.25 tokens/s) with a Griffin-Lim inverse."""

    name = "logmel16k-griffinlim"
    sample_rate = 16_000
    n_fft = 1024
    hop = 256
    n_mels = 80
    frames_per_token = 2
    latent_dim = n_mels * frames_per_token
    samples_per_token = hop * frames_per_token

    def __init__(
        self,
        griffin_lim_iters: int = 32,
        momentum: float = 0.99,
        phase_seed: int = 0,
        nnls_iters: int = 30,
        tokens_per_pass: int = 1875,
        pass_overlap_tokens: int = 32,
    ):
        if not 0 < pass_overlap_tokens < tokens_per_pass:
            raise ValueError("pass_overlap_tokens must be positive and below tokens_per_pass")
        self.griffin_lim_iters = griffin_lim_iters
        # Clips longer than `tokens_per_pass` (60 s) are decoded in passes overlapping by
        # `pass_overlap_tokens` (~1 s).
        self.tokens_per_pass = tokens_per_pass
        self.pass_overlap_tokens = pass_overlap_tokens
        self.nnls_iters = nnls_iters
        self.momentum = momentum
        self.phase_seed = phase_seed
        self._fb = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, 0.0, 8000.0)
        self._fb_pinv = torch.linalg.pinv(self._fb)  # (513, 80)
        self._window = torch.hann_window(self.n_fft)

    @property
    def latent_rate(self) -> Fraction:
        return Fraction(self.sample_rate, self.samples_per_token)

    @property
    def latent_mean(self) -> torch.Tensor:
        return torch.full((1, 1, self.latent_dim), LATENT_MEAN)

    @property
    def latent_std(self) -> torch.Tensor:
        return torch.full((1, 1, self.latent_dim), LATENT_STD)

    def tokens_for(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.samples_per_token)

    # -- waveform -> latent -------------------------------------------------------------------

    def _stft(self, waveform: torch.Tensor) -> torch.Tensor:
        window = self._window.to(waveform.device)
        # Reflection needs more samples than half a frame: one token (512) falls back to zeros.
        pad_mode = "reflect" if waveform.shape[-1] > self.n_fft // 2 else "constant"
        return torch.stft(
            waveform, self.n_fft, self.hop, window=window, center=True, pad_mode=pad_mode,
            return_complex=True,
        )  # (B, 513, L / hop + 1)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, L) with L a multiple of `hop` -> (B, L / hop, 80) log-mel frames."""
        magnitude = self._stft(waveform.float()).abs()[..., :-1]  # (B, 513, T)
        mel = self._fb.to(waveform.device) @ magnitude  # (B, 80, T)
        return torch.log(mel.clamp_min(LOG_FLOOR)).transpose(1, 2)

    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        waveform = torch.as_tensor(waveform)
        if waveform.ndim == 1:
            waveform = waveform.unsqueeze(0)
        b, length = waveform.shape
        padded = self.tokens_for(length) * self.samples_per_token
        waveform = torch.nn.functional.pad(waveform, (0, padded - length))
        frames = self.log_mel(waveform)  # (B, T, 80), T = 2N
        return frames.reshape(b, -1, self.latent_dim)  # (B, N, 160)

    def token_onsets(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, N, 160) latents -> (B, N) how sharply sound starts in each token: the mean rise
        of the log-mel over the 80 bands from one 16 ms frame to the next (falls count zero),
        the larger of the token's two frames, in nats. A broadband click or step reads near 1
        and above; steady sound, a tone's slow swell or a fade near 0.1."""
        b, n, _ = latents.shape
        frames = latents.float().reshape(b, n * self.frames_per_token, self.n_mels)
        rise = (frames[:, 1:] - frames[:, :-1]).clamp_min(0).mean(-1)
        rise = torch.nn.functional.pad(rise, (1, 0))  # the first frame has nothing before it
        return rise.reshape(b, n, self.frames_per_token).amax(-1)

    # -- latent -> waveform -------------------------------------------------------------------

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, n, _ = latents.shape
        if n <= self.tokens_per_pass:
            return self._decode_pass(latents)[0]
        # Long clips in passes (Griffin-Lim holds several spectrogram copies: GBs for an hour).
        # Each pass starts the phase of the frames it shares with the previous pass where that
        # pass left it, so the two agree, and the shared samples are cross-faded.
        spt, overlap = self.samples_per_token, self.pass_overlap_tokens
        out = torch.zeros(b, n * spt, device=latents.device)
        start, done, previous_start, angles = 0, 0, 0, None
        while done < n:
            end = min(n, start + self.tokens_per_pass)
            shared = done - start  # tokens this pass shares with the previous one
            initial = None
            if angles is not None:
                # Previous pass's local frame j is global frame 2 * previous_start + j.
                first = (start - previous_start) * self.frames_per_token
                initial = angles[..., first : first + shared * self.frames_per_token]
            waveform, angles = self._decode_pass(latents[:, start:end], initial)
            if shared:
                ramp = (torch.arange(shared * spt, device=out.device) + 0.5) / (shared * spt)
                region = slice(start * spt, done * spt)
                out[:, region] = (1 - ramp) * out[:, region] + ramp * waveform[:, : shared * spt]
            out[:, done * spt : end * spt] = waveform[:, shared * spt :]
            previous_start, done = start, end
            start = end - overlap
        return out

    def _decode_pass(
        self, latents: torch.Tensor, initial: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = latents.shape
        frames = latents.float().reshape(b, n * self.frames_per_token, self.n_mels)
        mel = torch.exp(frames.clamp(max=LOG_CEILING)).transpose(1, 2)  # (B, 80, T)
        magnitude = self.mel_to_magnitude(mel)  # (B, 513, T)
        # The STFT of T * hop samples has T + 1 frames; the last is a copy of the edge.
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)
        return self._griffin_lim(magnitude, n * self.samples_per_token, initial)

    def mel_to_magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 80, T) mel magnitudes -> (B, 513, T) non-negative STFT magnitudes whose mel
        projection matches: the clamped pseudo-inverse, refined by non-negative least squares
        (multiplicative updates), which lowers the magnitude error on test material by ~10 %."""
        fb = self._fb.to(mel.device)
        magnitude = (self._fb_pinv.to(mel.device) @ mel).clamp_min(1e-7)
        target = fb.T @ mel
        for _ in range(self.nnls_iters):
            magnitude = magnitude * target / (fb.T @ (fb @ magnitude)).clamp_min(1e-12)
        return magnitude

    def griffin_lim(self, magnitude: torch.Tensor, length: int) -> torch.Tensor:
        """Phase recovery for (B, 513, T + 1) STFT magnitudes -> (B, length) waveform."""
        return self._griffin_lim(magnitude, length)[0]

    def _griffin_lim(
        self, magnitude: torch.Tensor, length: int, initial: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Griffin-Lim from a seeded random phase, or with the first frames' phase given as
        unit complex numbers `initial` (B, 513, K); returns the waveform and the final phase."""
        window = self._window.to(magnitude.device)
        generator = torch.Generator().manual_seed(self.phase_seed)
        phase = torch.rand(magnitude.shape[1:], generator=generator) * (2 * math.pi)
        angles = torch.polar(torch.ones_like(phase), phase).to(magnitude.device)
        angles = angles.expand_as(magnitude).clone()
        if initial is not None:
            angles[..., : initial.shape[-1]] = initial
        previous = torch.zeros_like(angles)
        blend = self.momentum / (1.0 + self.momentum)
        for _ in range(self.griffin_lim_iters):
            waveform = torch.istft(
                magnitude * angles, self.n_fft, self.hop, window=window, center=True, length=length
            )
            rebuilt = self._stft(waveform)
            angles = rebuilt - blend * previous
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        waveform = torch.istft(
            magnitude * angles, self.n_fft, self.hop, window=window, center=True, length=length
        )
        return waveform, angles


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """(C, L) or (L,) float32 at `from_rate` -> `to_rate` with soxr (high quality)."""
    if from_rate == to_rate:
        return audio.astype(np.float32, copy=False)
    data = np.ascontiguousarray(audio.T if audio.ndim == 2 else audio, dtype=np.float32)
    out = soxr.resample(data, from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(out.T if audio.ndim == 2 else out, dtype=np.float32)
