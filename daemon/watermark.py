"""Provenance watermark for generated audio: a keyed spread-spectrum mark in the STFT domain.

Weight-free. The magnitude spectrum between 0.5 and 7.5 kHz is cut into cells (3 STFT frames
x 4 bins, about 64 ms x 94 Hz); every cell is scaled up or down by `strength` (+-1.3 dB),
the sign given by a keyed pseudo-random chip and, for data cells, by one bit of the payload.
A quarter of the cells carry a fixed sync pattern that says "marked" on its own; the rest carry
the payload (up to 16 bytes) with a CRC-32, repeated every ~1 s so longer audio decodes more
surely. Detection correlates the high-passed log-magnitude of every cell with the chips, after
searching the time alignment (so trimmed audio, codec delay and resampling are fine: the grid
is defined in Hz and seconds, not in bins and samples).

    marked = embed(samples, 48000, b"job-1234")      # samples: (channels, n) float32
    found, payload, confidence = detect(marked, 48000)

Limits, measured by tests/test_watermark_*.py and benchmarks/watermark.py: presence is detected
from 1 s of audio in most clips and reliably from 4 s; the payload needs several seconds (more
for longer payloads; see the README).
Nothing is marked where the audio is silent (multiplying silence changes nothing), and audio
with no energy between 0.5 and 7.5 kHz cannot carry the mark.
"""

from __future__ import annotations

import hashlib
import math
import zlib

import numpy as np

MAX_PAYLOAD_BYTES = 16
DEFAULT_KEY = "v2a-bridge"
STRENGTH = 0.15
"""Log-magnitude change per cell (0.15 = +-1.3 dB)."""

_FRAME_S = 2048 / 48_000  # STFT frame length, the same in seconds at every rate
_BAND_HZ = (500.0, 7500.0)
_BINS_PER_CELL = 4
_FRAMES_PER_CELL = 3
_PERIOD_BLOCKS = 16  # the pattern repeats every 16 blocks of 3 frames (~1.02 s)
_SYNC_SHARE = 4  # one cell in four carries the sync pattern
_FOUND_Z = 5.0  # sync z-score above which audio is called marked (see detect)


class WatermarkError(ValueError):
    """The payload or the audio cannot be marked; the message says what to change."""


def _geometry(rate: int) -> tuple[int, int, np.ndarray]:
    """n_fft, hop, and (bands, 2) bin ranges of the cells at `rate`."""
    n_fft = 2 * int(round(_FRAME_S * rate / 2))
    hop = n_fft // 2
    bin_hz = rate / n_fft
    first = int(math.ceil(_BAND_HZ[0] / bin_hz))
    last = min(int(_BAND_HZ[1] / bin_hz), n_fft // 2 - 1)
    starts = np.arange(first, last - _BINS_PER_CELL + 1, _BINS_PER_CELL)
    # Cells are defined in Hz at 48 kHz; at other rates the bins map to the same band count.
    count = len(np.arange(int(math.ceil(_BAND_HZ[0] / (48_000 / 2048))),
                          int(_BAND_HZ[1] / (48_000 / 2048)) - _BINS_PER_CELL + 1,
                          _BINS_PER_CELL))
    starts = starts[:count]
    return n_fft, hop, np.stack([starts, starts + _BINS_PER_CELL], 1)


def _layout(key: str, bands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell of one period (blocks, bands): is_sync, chip (+-1), data order (a keyed
    permutation index for data cells, -1 for sync cells)."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    cells = _PERIOD_BLOCKS * bands
    is_sync = np.zeros(cells, bool)
    is_sync[rng.permutation(cells)[: cells // _SYNC_SHARE]] = True
    chip = rng.choice(np.array([-1.0, 1.0]), cells)
    order = np.full(cells, -1)
    data = np.flatnonzero(~is_sync)
    order[data] = rng.permutation(len(data))
    shape = (_PERIOD_BLOCKS, bands)
    return is_sync.reshape(shape), chip.reshape(shape), order.reshape(shape)


_CRC_BYTES = 4
_CHASE_BITS = 14  # the least reliable bits tried flipped when the CRC fails


def _payload_bits(payload: bytes) -> np.ndarray:
    data = payload + zlib.crc32(payload).to_bytes(_CRC_BYTES, "big")
    return np.unpackbits(np.frombuffer(data, np.uint8)).astype(np.float64) * 2 - 1  # +-1


def _as_bytes(payload: bytes | str) -> bytes:
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if not 1 <= len(data) <= MAX_PAYLOAD_BYTES:
        raise WatermarkError(f"watermark payload must be 1..{MAX_PAYLOAD_BYTES} bytes, got "
                             f"{len(data)}; pass a shorter id or a hash prefix")
    return data


def _window(n_fft: int) -> np.ndarray:
    # sqrt of a periodic Hann: analysis x synthesis windows sum to one at 50 % overlap.
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))


def _stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(n,) -> (frames, n_fft/2+1); frame k starts at sample k * hop."""
    count = max(1, 1 + (len(x) - n_fft) // hop)
    idx = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    return np.fft.rfft(x[idx] * _window(n_fft), axis=1)


def _istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    frames = np.fft.irfft(spec, n=n_fft, axis=1) * _window(n_fft)
    out = np.zeros(max(length, hop * (len(frames) - 1) + n_fft))
    for k, frame in enumerate(frames):
        out[k * hop:k * hop + n_fft] += frame
    return out[:length]


def embed(samples: np.ndarray, rate: int, payload: bytes | str, *, key: str = DEFAULT_KEY,
          strength: float = STRENGTH) -> np.ndarray:
    """Mark `samples` ((channels, n) or (n,) float) at `rate` with `payload` (1-16 bytes, or a
    str of at most 16 UTF-8 bytes). Returns float32 audio of the same shape."""
    data = _as_bytes(payload)
    audio = np.asarray(samples, dtype=np.float64)
    if audio.ndim not in (1, 2) or audio.shape[-1] == 0:
        raise WatermarkError(f"expected (channels, samples) audio, got shape {audio.shape}")
    if rate < 16_000:
        raise WatermarkError(f"rate {rate} Hz is below 16 kHz; the mark lives at 0.5-7.5 kHz")
    n_fft, hop, cells = _geometry(rate)
    is_sync, chip, order = _layout(key, len(cells))
    bits = _payload_bits(data)
    # Sign per cell of one period: the sync chip, or chip x the cell's payload bit.
    data_bit = np.where(order >= 0, bits[np.maximum(order, 0) % len(bits)], 1.0)
    sign = chip * np.where(is_sync, 1.0, data_bit)  # (blocks, bands)
    flat = audio.reshape(-1, audio.shape[-1])
    out = np.empty_like(flat)
    for c, channel in enumerate(flat):
        # A hop of zeros each side so every sample is covered by two frames.
        padded = np.pad(channel, (hop, hop + n_fft))
        spec = _stft(padded, n_fft, hop)
        frames = len(spec)
        block = np.arange(frames) // _FRAMES_PER_CELL % _PERIOD_BLOCKS
        gain = np.ones(spec.shape)
        for b, (lo, hi) in enumerate(cells):
            gain[:, lo:hi] = np.exp(strength * sign[block, b])[:, None]
        marked = _istft(spec * gain, n_fft, hop, len(padded))
        out[c] = marked[hop:hop + len(channel)]
    return out.reshape(audio.shape).astype(np.float32)


def _cell_values(x: np.ndarray, n_fft: int, hop: int, cells: np.ndarray) -> np.ndarray:
    """(frames, bands) mean log-magnitude per frame and cell band."""
    mag = np.abs(_stft(x, n_fft, hop))
    logmag = np.log(mag + 1e-9 * (mag.max() + 1e-12))
    csum = np.concatenate([np.zeros((len(logmag), 1)), np.cumsum(logmag, axis=1)], axis=1)
    return (csum[:, cells[:, 1]] - csum[:, cells[:, 0]]) / _BINS_PER_CELL


def _box_mean(v: np.ndarray) -> np.ndarray:
    padded = np.pad(v, 1, mode="edge")
    return sum(padded[1 + dy:1 + dy + v.shape[0], 1 + dx:1 + dx + v.shape[1]]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0


def _whitened(v: np.ndarray, strength: float) -> np.ndarray:
    """Each cell minus the mean of its 3 x 3 neighbourhood (removes the spectral envelope and
    level changes, so gain does not matter), divided by the local spread of that residual:
    busy regions (transients, tones) count less, steady ones more."""
    hp = v - _box_mean(v)
    return hp / np.sqrt(_box_mean(hp ** 2) + strength ** 2)


def detect(samples: np.ndarray, rate: int, *, key: str = DEFAULT_KEY
           ) -> tuple[bool, bytes | None, float]:
    """Look for the mark. Returns (found, payload or None, confidence in [0, 1]).

    `found` means the sync pattern is present (z-score above 5 after searching every
    alignment); `payload` is returned only when its CRC checks. `confidence` is one minus the
    chance that unmarked audio would score as high, over all alignments tried."""
    audio = np.asarray(samples, dtype=np.float64)
    mono = audio.reshape(-1, audio.shape[-1]).mean(axis=0) if audio.ndim == 2 else audio
    n_fft, hop, cells = _geometry(rate)
    is_sync, chip, order = _layout(key, len(cells))
    if len(mono) < n_fft * 2:
        return False, None, 0.0
    best = (-np.inf, None, None)
    tried = 0
    for sub in range(4):
        values = _cell_values(mono[sub * hop // 4:], n_fft, hop, cells)  # (frames, bands)
        for phase in range(_FRAMES_PER_CELL):
            usable = (len(values) - phase) // _FRAMES_PER_CELL
            if usable < 1:
                continue
            blocks = values[phase:phase + usable * _FRAMES_PER_CELL].reshape(
                usable, _FRAMES_PER_CELL, -1).mean(axis=1)
            hp = _whitened(blocks, STRENGTH)
            scale = np.sqrt(np.mean(hp ** 2)) + 1e-12
            for shift in range(_PERIOD_BLOCKS):
                tried += 1
                rows = (np.arange(usable) + shift) % _PERIOD_BLOCKS
                sync_w = np.where(is_sync[rows], chip[rows], 0.0)
                z = float(np.sum(sync_w * hp) / (scale * np.sqrt(np.sum(sync_w ** 2)) + 1e-12))
                if z > best[0]:
                    best = (z, hp, rows)
    z, hp, rows = best
    if hp is None:
        return False, None, 0.0
    # One-sided normal tail, times the number of alignments tried (a union bound).
    p_false = min(1.0, tried * 0.5 * math.erfc(z / math.sqrt(2)))
    confidence = 1.0 - p_false
    found = z >= _FOUND_Z
    payload = _decode_payload(hp, rows, chip, order) if z >= _FOUND_Z / 2 else None
    return bool(found or payload is not None), payload, float(confidence)


def _decode_payload(hp: np.ndarray, rows: np.ndarray, chip: np.ndarray, order: np.ndarray
                    ) -> bytes | None:
    """Try every payload length; for each, take the hard decisions and, if the CRC fails,
    flip subsets of the least reliable bits (Chase decoding). A CRC-32 keeps the chance that
    noise passes this search below 1e-4."""
    cell_chip, cell_order = chip[rows], order[rows]  # (blocks, bands)
    data = cell_order >= 0
    soft_all = (cell_chip * hp)[data]
    idx = cell_order[data]
    # (2**_CHASE_BITS, _CHASE_BITS) every pattern of flips of the weakest bits.
    flips = ((np.arange(2 ** _CHASE_BITS)[:, None] >> np.arange(_CHASE_BITS)) & 1).astype(bool)
    flips = flips[np.argsort(flips.sum(axis=1), kind="stable")]  # fewest flips first
    for length in range(1, MAX_PAYLOAD_BYTES + 1):
        nbits = 8 * (length + _CRC_BYTES)
        if len(idx) < nbits:
            break
        soft = np.bincount(idx % nbits, weights=soft_all, minlength=nbits)
        weakest = np.argsort(np.abs(soft))[:_CHASE_BITS]
        candidates = np.repeat((soft > 0)[None, :], len(flips), axis=0)
        candidates[:, weakest] ^= flips
        packed = np.packbits(candidates.astype(np.uint8), axis=1)
        for row in packed:
            raw = row.tobytes()
            if zlib.crc32(raw[:length]).to_bytes(_CRC_BYTES, "big") == raw[length:]:
                return raw[:length]
    return None
