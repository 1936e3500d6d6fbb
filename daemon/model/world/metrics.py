"""Weight-free measurements of sync and content, as pure functions (numpy only).

- `detect_onsets`: spectral-flux onset detection with an adaptive threshold.
- `onset_scores`: precision / recall / F1 of detected onsets against ground-truth times within a
  tolerance (one-to-one matching), with optional "don't care" intervals; `matched_references`
  says which ground-truth times were found.
- `motion_peaks`: instants of peak motion in a picture. This is NOT optical flow: the motion
  magnitude is the mean absolute luminance difference between consecutive frames, a weight-free
  stand-in for AV-Align's optical-flow magnitude.
- `av_align`: AV-Align, the intersection over union of audio onsets and motion peaks matched
  within one video frame.
- `band_energy_db`: the energy of a waveform inside given time spans, in dB.
- `pooled_interval`, `paired_f1_difference`, `paired_mean_difference`: how far a score can be
  trusted, or two models told apart on shared clips, by
  resampling the clips (a few hundred events leave several hundredths of F1 to chance).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ONSET_HOP_S = 0.01


def _frames(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(n,) -> (frames, n_fft), frame i centred on sample i * hop."""
    padded = np.pad(audio.astype(np.float32), (n_fft // 2, n_fft // 2))
    count = 1 + (len(padded) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    return padded[idx]


def _band_matrix(n_bins: int, rate: int, bands: int = 40) -> np.ndarray:
    """(bands, n_bins) 0/1 matrix grouping FFT bins into log-spaced bands from 60 Hz up."""
    freqs = np.linspace(0, rate / 2, n_bins)
    edges = np.geomspace(60.0, rate / 2, bands + 1)
    m = np.zeros((bands, n_bins), np.float32)
    for b in range(bands):
        m[b, (freqs >= edges[b]) & (freqs < edges[b + 1])] = 1.0
    m[m.sum(1) == 0, np.searchsorted(freqs, edges[:-1][m.sum(1) == 0])] = 1.0
    return m


def onset_envelope(audio: np.ndarray, rate: int) -> np.ndarray:
    """Spectral flux at 100 frames/s: the mean rise in dB of 40 log-spaced bands between a
    frame and the one 20 ms before it; value i describes the instant i * 10 ms (0 for the
    first 40 ms, which have nothing before them to rise from). Summing power within bands
    before taking logs steadies noise-like textures (rain, surf) so that only real attacks
    rise."""
    hop = int(round(rate * ONSET_HOP_S))
    n_fft = 1 << int(np.ceil(np.log2(rate * 0.032)))  # ~32 ms window
    power = np.abs(np.fft.rfft(_frames(audio, n_fft, hop) * np.hanning(n_fft), axis=1)) ** 2
    bands = power @ _band_matrix(power.shape[1], rate).T  # (frames, 40)
    floor = max(float(np.max(bands)) * 1e-9, 1e-12)
    db = 10 * np.log10(bands + floor)
    lag = 2
    rise = np.maximum(db[lag:] - db[:-lag], 0.0).mean(axis=1)
    # The audio's own start is no attack: frames whose comparison reaches back before the
    # first sample (the window's half, then the lag: 40 ms at 16 kHz) rise from padding.
    start = lag + int(np.ceil(n_fft / 2 / hop))
    return np.concatenate([np.zeros(lag), rise]) * (np.arange(len(db)) >= start)


def detect_onsets(audio: np.ndarray, rate: int, sensitivity: float = 0.7,
                  min_gap: float = 0.1) -> np.ndarray:
    """Onset times (s) of `audio` (mono): peaks of spectral flux that stand out from their
    surroundings: above the local median by `margin_db` dB and by three local deviations."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size == 0 or not np.any(audio):
        return np.zeros(0)
    flux = onset_envelope(audio, rate)
    n = len(flux)
    half = 50  # a 1 s window for the local statistics
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(flux, half, mode="reflect"),
                                                       2 * half + 1)[:n]
    local = np.median(windows, axis=1)
    deviation = np.median(np.abs(windows - local[:, None]), axis=1)
    threshold = local + (3.0 * deviation + 1.5) / sensitivity
    w = max(1, int(round(min_gap / ONSET_HOP_S)))
    neighbourhood = np.lib.stride_tricks.sliding_window_view(np.pad(flux, w, mode="constant"),
                                                             2 * w + 1).max(axis=1)[:n]
    peaks = np.flatnonzero((flux >= neighbourhood) & (flux > threshold))
    # Plateaus give equal neighbours: keep the first of each run.
    if len(peaks):
        peaks = peaks[np.concatenate([[True], np.diff(peaks) > w])]
    return peaks * ONSET_HOP_S


def _match(a: np.ndarray, b: np.ndarray, tolerance: float) -> list[tuple[int, int]]:
    """One-to-one pairs (i, j) with |a[i] - b[j]| <= tolerance, closest pairs first."""
    if len(a) == 0 or len(b) == 0:
        return []
    dist = np.abs(np.asarray(a)[:, None] - np.asarray(b)[None, :])
    ii, jj = np.nonzero(dist <= tolerance + 1e-9)
    order = np.argsort(dist[ii, jj], kind="stable")
    used_a, used_b, pairs = set(), set(), []
    for k in order:
        i, j = int(ii[k]), int(jj[k])
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


def onset_scores(detected: Sequence[float], reference: Sequence[float], tolerance: float = 0.05,
                 ignore: Sequence[tuple[float, float]] = ()) -> dict:
    """Precision, recall and F1 of `detected` onsets against `reference` times (s).

    A detection matches at most one reference within `tolerance`. Unmatched detections inside an
    `ignore` span (start, end) are dropped rather than counted false (sounds the reference does
    not list as onsets, such as bubbles or music notes). Empty inputs follow the definitions:
    nothing to find and nothing found is perfect; otherwise an empty side scores 0."""
    det = np.sort(np.asarray(detected, dtype=np.float64))
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    pairs = _match(det, ref, tolerance)
    matched = {i for i, _ in pairs}
    unmatched = [t for i, t in enumerate(det) if i not in matched]
    fp = sum(1 for t in unmatched
             if not any(a - tolerance <= t <= b + tolerance for a, b in ignore))
    tp, fn = len(pairs), len(ref) - len(pairs)
    return _prf(tp, fp, fn)


def matched_references(detected: Sequence[float], reference: Sequence[float],
                       tolerance: float = 0.05) -> np.ndarray:
    """(len(reference),) bool: which reference times a detection matches, in their given order
    (the one-to-one matching of `onset_scores`)."""
    hit = np.zeros(len(reference), dtype=bool)
    for _, j in _match(np.sort(np.asarray(detected, dtype=np.float64)),
                       np.asarray(reference, dtype=np.float64), tolerance):
        hit[j] = True
    return hit


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def pooled_scores(per_clip: Sequence[dict]) -> dict:
    """Micro-average: sum true/false positives and misses over clips, then score."""
    return _prf(sum(s["tp"] for s in per_clip), sum(s["fp"] for s in per_clip),
                sum(s["fn"] for s in per_clip))


def _counts(per_clip: Sequence[dict]) -> np.ndarray:
    return np.array([[s["tp"], s["fp"], s["fn"]] for s in per_clip], dtype=np.int64).reshape(-1, 3)


def _draws(clips: int, draws: int, seed: int) -> np.ndarray:
    """(draws, clips) indices: each row a set of `clips` clips drawn with replacement."""
    return np.random.default_rng(seed).integers(0, clips, size=(draws, clips))


def _resampled_f1(counts: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """(clips, 3) tp/fp/fn and (draws, clips) picks -> (draws,) pooled F1 of each draw."""
    tp, fp, fn = counts[picks].sum(axis=1).T.astype(np.float64)
    scored = 2 * tp + fp + fn
    return np.divide(2 * tp, scored, out=np.zeros(len(picks)), where=scored > 0)


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def pooled_interval(per_clip: Sequence[dict], level: float = 0.95, draws: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the pooled F1 (`pooled_scores`): the clips redrawn with
    replacement, as another set of held-out clips would differ."""
    if not per_clip:
        return (0.0, 0.0)
    counts = _counts(per_clip)
    return _interval(_resampled_f1(counts, _draws(len(counts), draws, seed)), level)


def paired_f1_difference(per_clip_a: Sequence[dict], per_clip_b: Sequence[dict],
                         level: float = 0.95, draws: int = 2000, seed: int = 0) -> dict:
    """Pooled F1 of b minus that of a, scored on the same clips in the same order: the
    difference, its bootstrap interval with the same clips redrawn for both, and the share of
    draws in which b is ahead. On shared clips most of what the clips themselves contribute
    cancels, so this tells two models apart where two separate intervals overlap."""
    a, b = _counts(per_clip_a), _counts(per_clip_b)
    if a.shape != b.shape:
        raise ValueError(f"the two score lists cover different clips ({len(a)} and {len(b)})")
    if not len(a):
        raise ValueError("no clips to compare")
    picks = _draws(len(a), draws, seed)
    diff = _resampled_f1(b, picks) - _resampled_f1(a, picks)
    return {"difference": pooled_scores(per_clip_b)["f1"] - pooled_scores(per_clip_a)["f1"],
            "interval": _interval(diff, level), "b_ahead": float(np.mean(diff > 0))}


def paired_mean_difference(values_a: Sequence[float], values_b: Sequence[float],
                           level: float = 0.95, draws: int = 2000, seed: int = 0) -> dict:
    """Mean of b minus mean of a, one value per shared case in the same order, with a
    bootstrap interval that redraws the same cases for both."""
    a, b = np.asarray(values_a, np.float64), np.asarray(values_b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"need one value per shared case on both sides, got {a.shape} and "
                         f"{b.shape}")
    picks = _draws(len(a), draws, seed)
    return {"difference": float(b.mean() - a.mean()),
            "interval": _interval((b[picks] - a[picks]).mean(axis=1), level)}


def motion_magnitude(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T,) mean absolute luminance change from the previous frame
    (0 for the first frame), in 0..255 units."""
    luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    diff = np.abs(np.diff(luma, axis=0)).mean(axis=(1, 2))
    return np.concatenate([[0.0], diff])


def motion_peaks(frames: np.ndarray, fps: float, min_rise: float = 0.5) -> np.ndarray:
    """Times (s) of local maxima of motion magnitude that stand `min_rise` above the median."""
    m = motion_magnitude(frames)
    if len(m) < 3:
        return np.zeros(0)
    base = float(np.median(m))
    inner = m[1:-1]
    peaks = np.flatnonzero((inner > m[:-2]) & (inner >= m[2:]) & (inner > base + min_rise)) + 1
    return peaks / float(fps)


def av_align(audio_onsets: Sequence[float], video_peaks: Sequence[float], fps: float) -> float:
    """AV-Align: matches of audio onsets and motion peaks within one frame (1/fps), divided by
    the size of their union. Both empty -> 1.0 (nothing to align)."""
    a, v = np.asarray(audio_onsets, float), np.asarray(video_peaks, float)
    if len(a) == 0 and len(v) == 0:
        return 1.0
    matched = len(_match(a, v, 1.0 / fps))
    return matched / (len(a) + len(v) - matched)


def random_onsets(count: int, duration: float, rng: np.random.Generator) -> np.ndarray:
    """The chance baseline: `count` onset times drawn uniformly over the clip."""
    return np.sort(rng.uniform(0, duration, count))


def span_energy_db(audio: np.ndarray, rate: int, spans: Sequence[tuple[float, float]]) -> float:
    """Mean power of `audio` inside the union of `spans` (s), in dB (-120 when silent/empty)."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    mask = np.zeros(len(audio), bool)
    for a, b in spans:
        mask[max(0, int(a * rate)):max(0, int(b * rate))] = True
    if not mask.any():
        return -120.0
    power = float(np.mean(audio[mask] ** 2))
    return 10 * np.log10(max(power, 1e-12))


def relative_level_db(audio: np.ndarray, rate: int, spans: Sequence[tuple[float, float]],
                      reference: Sequence[tuple[float, float]]) -> float:
    """Level of `audio` inside `spans` over its level inside `reference`, in dB: what no gain
    applied to the whole of `audio` (the output stage's levelling) changes."""
    return span_energy_db(audio, rate, spans) - span_energy_db(audio, rate, reference)


def beat_regularity(audio: np.ndarray, rate: int, periods: tuple[float, float] = (0.2, 0.8)) -> float:
    """How regularly attacks repeat: the highest normalised autocorrelation of the onset
    envelope (`onset_envelope`, mean removed) at a lag between `periods` seconds. A steady beat
    of plucks or pulses reads near 1, attacks scattered in time near 0 (0 for silence or a
    sound without attacks)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        return 0.0
    flux = onset_envelope(audio, rate)
    flux = flux - flux.mean()
    lo, hi = (int(round(p / ONSET_HOP_S)) for p in periods)
    energy = float(np.dot(flux, flux))
    if hi >= len(flux) or energy <= 1e-12:
        return 0.0
    return max(float(np.dot(flux[:-lag], flux[lag:])) / energy for lag in range(lo, hi + 1))
