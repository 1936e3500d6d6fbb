"""Continuous sound beds: ambiences driven by what the picture shows, and music that follows the
edit.

An ambience is rendered from per-video-frame envelopes that the picture draws from too (rain
density, wave height, wind gusts, fire flicker, bubble and crackle instants), so sound and picture
move together. A music bed starts on its shot's first frame (a cut), with a new chord or mood.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

AMBIENCES = ("rain", "ocean", "wind", "fire", "underwater", "city")
MOODS = ("tense", "calm", "upbeat")


def _frames_to_samples(env: np.ndarray, hop: int) -> np.ndarray:
    """Per-frame envelope (T,) -> per-sample (T*hop,), linearly interpolated between frame
    centres."""
    n = len(env) * hop
    centres = (np.arange(len(env)) + 0.5) * hop
    return np.interp(np.arange(n), centres, env).astype(np.float32)


@lru_cache(maxsize=64)
def _butter(kind: str, freq, rate: int) -> np.ndarray:
    return signal.butter(2, freq, btype=kind, fs=rate, output="sos")


def _filtered(rng: np.random.Generator, n: int, rate: int, kind: str, freq) -> np.ndarray:
    sos = _butter(kind, tuple(freq) if isinstance(freq, list) else float(freq), rate)
    return signal.sosfilt(sos, rng.standard_normal(n)).astype(np.float32)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return (x / rms).astype(np.float32) if rms > 0 else x.astype(np.float32)


def _blips(n: int, where: np.ndarray, kernel: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Place `kernel` at each sample index in `where` with its amplitude; vectorised."""
    impulses = np.zeros(n + len(kernel), np.float32)
    np.add.at(impulses, where, amps)
    return signal.fftconvolve(impulses, kernel)[:n].astype(np.float32)


def ambience(rng: np.random.Generator, kind: str, bed: dict, rate: int, fps: int) -> np.ndarray:
    """Render ambience `kind` for one shot; `bed` holds the per-frame envelopes the picture uses
    (see picture.plan_ambience). Returns unit-RMS audio of len(frames) * rate / fps samples."""
    hop = rate // fps
    frames = len(bed["level"])
    n = frames * hop
    t = np.arange(n) / rate
    level = _frames_to_samples(bed["level"], hop)
    if kind == "rain":
        hiss = _filtered(rng, n, rate, "high", 1500)
        drops = int(bed["density"] * 150 * n / rate)
        where = rng.integers(0, n, drops)
        k = np.arange(int(0.004 * rate))
        kernel = np.sin(2 * np.pi * rng.uniform(2500, 5000) * k / rate) * np.exp(-k / (0.0008 * rate))
        out = hiss + 3.0 * _blips(n, where, kernel, rng.uniform(0.2, 1.0, drops).astype(np.float32))
    elif kind == "ocean":
        swell = _frames_to_samples(bed["wave"], hop)
        out = _filtered(rng, n, rate, "low", 500) * (0.25 + swell) + 0.3 * swell * _filtered(
            rng, n, rate, "band", [800, 3000])
    elif kind == "wind":
        gust = _frames_to_samples(bed["gust"], hop)
        # The whistle band rises with the gust: two bands cross-faded by gust strength.
        out = (_filtered(rng, n, rate, "band", [200, 700]) * (1 - gust)
               + _filtered(rng, n, rate, "band", [600, 2000]) * gust) * (0.3 + gust)
    elif kind == "fire":
        flicker = _frames_to_samples(bed["flicker"], hop)
        rumble = _filtered(rng, n, rate, "low", 300) * (0.5 + 0.5 * flicker)
        where = (np.asarray(bed["crackles"], dtype=np.int64) * hop).clip(0, n - 1)
        k = np.arange(int(0.006 * rate))
        kernel = rng.standard_normal(len(k)) * np.exp(-k / (0.001 * rate))
        pops = _blips(n, where, kernel.astype(np.float32),
                      rng.uniform(2.0, 5.0, len(where)).astype(np.float32))
        out = rumble + 0.5 * _filtered(rng, n, rate, "band", [1000, 4000]) * flicker + pops
    elif kind == "underwater":
        out = 0.6 * _filtered(rng, n, rate, "low", 350)
        k = np.arange(int(0.05 * rate))
        for frame, size in zip(bed["bubbles"], bed["bubble_sizes"], strict=True):
            # A bubble rings near its Minnaert frequency (smaller = higher) and chirps upward.
            f0 = 3000.0 / size
            chirp = np.sin(2 * np.pi * np.cumsum(f0 * (1 + 2.0 * k / len(k))) / rate)
            blip = (chirp * np.exp(-k / (0.012 * rate))).astype(np.float32)
            at = int(frame) * hop
            m = min(len(blip), n - at)
            if m > 0:
                out[at:at + m] += 1.5 * blip[:m]
    elif kind == "city":
        f0 = bed["hum_hz"]
        wobble = 1 + 0.01 * np.sin(2 * np.pi * 0.3 * t)
        phase = 2 * np.pi * f0 * np.cumsum(wobble) / rate
        hum = sum(np.sin(h * phase) / h for h in (1, 2, 3, 4, 6))
        traffic = _filtered(rng, n, rate, "low", 900) * _frames_to_samples(bed["traffic"], hop)
        out = 0.7 * hum + traffic
    else:
        raise ValueError(f"unknown ambience {kind!r}; expected one of {AMBIENCES}")
    return (_unit_rms(out) * level).astype(np.float32)


def _note_hz(semitones_from_a4: float) -> float:
    return 440.0 * 2 ** (semitones_from_a4 / 12)


def music(rng: np.random.Generator, mood: str, frames: int, rate: int, fps: int
          ) -> tuple[np.ndarray, list[float]]:
    """A music bed for one shot starting on the shot's first frame. Returns unit-RMS audio and
    the note onset times (s, from the shot start) of its percussive notes."""
    n = frames * (rate // fps)
    t = np.arange(n) / rate
    root = rng.integers(-21, -9)  # a low root, C2..A2 region relative to A4
    minor = mood == "tense" or (mood != "upbeat" and rng.random() < 0.3)
    chord = (0, 3 if minor else 4, 7, 10 if minor else 11)
    onsets: list[float] = []
    if mood == "tense":
        drone = sum(np.sin(2 * np.pi * _note_hz(root + s) * d * t)
                    for s in (0, 7) for d in (1.0, 1.003))
        beat = 60.0 / rng.uniform(80, 110)
        pulse = np.zeros(n)
        k = np.arange(int(0.25 * rate)) / rate
        note = np.sin(2 * np.pi * _note_hz(root - 12) * k) * np.exp(-k / 0.07)
        for start in np.arange(0, n / rate, beat):
            at = int(start * rate)
            m = min(len(note), n - at)
            pulse[at:at + m] += note[:m]
            onsets.append(float(start))
        out = 0.5 * drone + 1.2 * pulse
    elif mood == "calm":
        attack = np.minimum(1.0, t / 0.6)
        vibrato = 1 + 0.003 * np.sin(2 * np.pi * 5 * t)
        out = sum(np.sin(2 * np.pi * _note_hz(root + 12 + s) * np.cumsum(vibrato) / rate)
                  for s in chord) * attack
        onsets.append(0.0)  # the chord enters on the cut, softly
    elif mood == "upbeat":
        step = 60.0 / rng.uniform(115, 140) / 2  # eighth notes
        pattern = [root + 12 + chord[i % 4] + 12 * (i // 4 % 2) for i in range(8)]
        k = np.arange(int(step * rate)) / rate
        out = np.zeros(n)
        for i, start in enumerate(np.arange(0, n / rate, step)):
            f = _note_hz(pattern[i % len(pattern)])
            pluck = (np.sin(2 * np.pi * f * k) + 0.3 * np.sin(4 * np.pi * f * k)) * np.exp(-k / 0.09)
            at = int(start * rate)
            m = min(len(pluck), n - at)
            out[at:at + m] += pluck[:m]
            onsets.append(float(start))
        out += 0.4 * sum(np.sin(2 * np.pi * _note_hz(root + s) * t) for s in (0, 7))
    else:
        raise ValueError(f"unknown mood {mood!r}; expected one of {MOODS}")
    # Short fades so a bed that stops at a cut does not click.
    fade = min(n // 2, int(0.01 * rate))
    out = np.asarray(out, dtype=np.float32)
    out[:fade] *= np.linspace(0, 1, fade)
    out[n - fade:] *= np.linspace(1, 0, fade)
    return _unit_rms(out), onsets
