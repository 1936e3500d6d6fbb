"""Sound synthesis for the world's events: modal impacts, footsteps, whooshes, zaps, door slams.

Every sound is made here from oscillators, filtered noise and envelopes (no recorded samples).
Each function returns a mono float32 buffer whose first sample is the instant of contact, so a
sound placed at an event's sample index starts exactly on the event's frame.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

MATERIALS = ("wood", "metal", "glass", "stone")
SURFACES = ("concrete", "gravel", "grass", "wood")

# Modal recipes per material: (fundamental range Hz, mode frequency ratios, decay range s of
# the fundamental, how fast decay shortens with mode number, contact-noise level, noise band Hz).
# Ratios follow the textbook shapes: a free bar for metal, a plate-like set for glass, dense
# and heavily damped modes for wood and stone.
_MODAL = {
    "wood": ((180.0, 520.0), (1.0, 2.41, 3.93, 5.82, 7.9), (0.035, 0.08), 1.6, 0.55, (600, 4000)),
    "metal": ((420.0, 1400.0), (1.0, 2.756, 5.404, 8.933, 13.34), (0.35, 1.1), 0.35, 0.25,
              (2000, 7000)),
    "glass": ((1500.0, 3400.0), (1.0, 2.32, 4.25, 6.63), (0.12, 0.35), 0.6, 0.3, (3000, 7800)),
    "stone": ((90.0, 260.0), (1.0, 1.83, 2.97, 4.3, 5.6), (0.018, 0.04), 1.2, 0.9, (200, 2500)),
}


def _bandpass_noise(rng: np.random.Generator, n: int, low: float, high: float, rate: int
                    ) -> np.ndarray:
    sos = _butter(2, (float(low), float(min(high, 0.45 * rate))), "band", rate)
    return signal.sosfilt(sos, rng.standard_normal(n)).astype(np.float32)


@lru_cache(maxsize=256)
def _butter(order: int, freq, kind: str, rate: int) -> np.ndarray:
    """Butterworth sections, cached: designing a filter costs more than running it."""
    return signal.butter(order, freq, btype=kind, fs=rate, output="sos")


def _normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return (x / peak).astype(np.float32) if peak > 0 else x.astype(np.float32)


def impact(rng: np.random.Generator, material: str, strength: float, rate: int) -> np.ndarray:
    """An object of `material` hitting a surface; `strength` in (0, 1] scales level and
    brightness (harder hits excite the upper modes more)."""
    (f_lo, f_hi), ratios, (d_lo, d_hi), damp_slope, noise_level, (n_lo, n_hi) = _MODAL[material]
    f0 = rng.uniform(f_lo, f_hi)
    decay0 = rng.uniform(d_lo, d_hi)
    duration = min(2.0, decay0 * 6 + 0.03)
    n = int(duration * rate)
    t = np.arange(n, dtype=np.float32) / rate
    ratios = np.asarray(ratios) * rng.uniform(0.97, 1.03, len(ratios))
    freqs = f0 * ratios
    keep = freqs < 0.45 * rate
    freqs, k = freqs[keep], np.arange(int(keep.sum()))
    decays = decay0 / (1.0 + damp_slope * k)
    amps = rng.uniform(0.4, 1.0, len(k)) * (0.55 + 0.45 * strength) ** k
    phases = rng.uniform(0, 2 * np.pi, len(k))
    # (modes, n) -> n
    modes = amps[:, None] * np.exp(-t[None, :] / decays[:, None]) * np.sin(
        2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])
    body = modes.sum(axis=0)
    click_n = int(0.006 * rate)
    click = _bandpass_noise(rng, click_n, n_lo, n_hi, rate) * np.exp(
        -np.arange(click_n) / (0.0015 * rate))
    body[:click_n] += noise_level * 3.0 * click / (np.max(np.abs(click)) + 1e-9)
    # A 1 ms attack ramp avoids an unphysical step while keeping the onset sharp.
    ramp = min(n, int(0.001 * rate))
    body[:ramp] *= np.linspace(0, 1, ramp, endpoint=False)
    return (_normalise(body) * strength).astype(np.float32)


def footstep(rng: np.random.Generator, surface: str, strength: float, rate: int) -> np.ndarray:
    """One step on `surface`: a heel strike at sample 0 and a softer toe roll after it."""
    n = int(0.25 * rate)
    out = np.zeros(n, np.float32)
    toe_at = int(rng.uniform(0.025, 0.05) * rate)
    for at, level in ((0, 1.0), (toe_at, rng.uniform(0.35, 0.6))):
        part = _step_part(rng, surface, rate)
        m = min(len(part), n - at)
        out[at:at + m] += level * part[:m]
    return (_normalise(out) * strength).astype(np.float32)


def _step_part(rng: np.random.Generator, surface: str, rate: int) -> np.ndarray:
    if surface == "concrete":
        m = int(0.06 * rate)
        t = np.arange(m) / rate
        click = _bandpass_noise(rng, m, 1200, 5000, rate) * np.exp(-t / 0.006)
        thump = np.sin(2 * np.pi * rng.uniform(90, 140) * t) * np.exp(-t / 0.012)
        return click + 0.5 * thump
    if surface == "gravel":
        # Many grains crunching: a burst of tiny clicks with random spacing and levels.
        m = int(0.16 * rate)
        grains = np.zeros(m)
        count = int(rng.integers(35, 70))
        where = (rng.beta(1.2, 3.0, count) * (m - 1)).astype(int)
        grains[where] = rng.uniform(0.2, 1.0, count) * rng.choice([-1, 1], count)
        kernel = np.exp(-np.arange(int(0.002 * rate)) / (0.0004 * rate))
        crunch = np.convolve(grains, kernel)[:m]
        sos = _butter(2, 1500.0, "high", rate)
        crunch = signal.sosfilt(sos, crunch)
        crunch[0] += 0.8 * np.max(np.abs(crunch))
        return crunch
    if surface == "grass":
        m = int(0.14 * rate)
        t = np.arange(m) / rate
        env = (1 - np.exp(-t / 0.004)) * np.exp(-t / 0.045)
        swish = _bandpass_noise(rng, m, 400, 3500, rate) * env
        return swish + 0.3 * np.sin(2 * np.pi * 70 * t) * np.exp(-t / 0.02)
    if surface == "wood":
        m = int(0.12 * rate)
        t = np.arange(m) / rate
        f = rng.uniform(110, 220)
        hollow = sum(np.sin(2 * np.pi * f * r * t) * np.exp(-t / (0.05 / r)) for r in (1, 2.3, 3.7))
        click = _bandpass_noise(rng, m, 800, 3500, rate) * np.exp(-t / 0.004)
        return hollow + 0.8 * click
    raise ValueError(f"unknown surface {surface!r}; expected one of {SURFACES}")


def whoosh(rng: np.random.Generator, speed: np.ndarray, rate: int, fps: int) -> np.ndarray:
    """Air rushing past a fast object. `speed` is the object's speed per video frame (pixels
    per frame); loudness follows speed**1.5 and the band rises with speed."""
    hop = rate // fps
    n = len(speed) * hop
    frame_t = (np.arange(len(speed)) + 0.5) * hop
    env = np.interp(np.arange(n), frame_t, speed).astype(np.float32)
    env = np.maximum(env, 0) / (np.max(speed) + 1e-9)
    low = _bandpass_noise(rng, n, 250, 1200, rate)
    high = _bandpass_noise(rng, n, 1200, 5000, rate)
    sound = (low * (1 - 0.6 * env) + high * env) * env ** 1.5
    return (_normalise(sound) * min(1.0, float(np.max(speed)) / 12.0)).astype(np.float32)


def zap(rng: np.random.Generator, strength: float, rate: int) -> np.ndarray:
    """An electric zap for a bright flash: a fast falling buzzy chirp over a crackle."""
    dur = rng.uniform(0.09, 0.22)
    n = int(dur * rate)
    t = np.arange(n) / rate
    f = np.geomspace(rng.uniform(2500, 4000), rng.uniform(150, 400), n)
    phase = 2 * np.pi * np.cumsum(f) / rate
    buzz = np.sign(np.sin(phase)) * 0.6 + np.sin(3 * phase) * 0.3
    crackle = _bandpass_noise(rng, n, 2000, 7000, rate)
    env = np.exp(-t / (dur / 3))
    return (_normalise((buzz + 0.8 * crackle) * env) * strength).astype(np.float32)


def click(rng: np.random.Generator, strength: float, rate: int) -> np.ndarray:
    """A small switch click for a dim flash: a few milliseconds of bright noise and a tick."""
    n = int(0.03 * rate)
    t = np.arange(n) / rate
    tick = _bandpass_noise(rng, n, 2500, 7500, rate) * np.exp(-t / 0.002)
    tick += 0.4 * np.sin(2 * np.pi * rng.uniform(1800, 3200) * t) * np.exp(-t / 0.004)
    return (_normalise(tick) * strength).astype(np.float32)


def door_slam(rng: np.random.Generator, strength: float, rate: int) -> np.ndarray:
    """A door hitting its frame: a low panel thump, a latch rattle and the room's decay."""
    n = int(0.6 * rate)
    t = np.arange(n) / rate
    f = rng.uniform(55, 110)
    thump = sum(a * np.sin(2 * np.pi * f * r * t) * np.exp(-t / d)
                for a, r, d in ((1.0, 1.0, 0.09), (0.6, 2.2, 0.05), (0.4, 3.9, 0.03)))
    latch = _bandpass_noise(rng, n, 1500, 6000, rate) * np.exp(-t / 0.01)
    rattle_t = np.clip(t - rng.uniform(0.02, 0.05), 0, None)
    rattle = _bandpass_noise(rng, n, 800, 4000, rate) * np.exp(-rattle_t / 0.03) * (t > 0.02)
    room = _bandpass_noise(rng, n, 150, 3000, rate) * np.exp(-t / rng.uniform(0.08, 0.2))
    sound = thump + 0.9 * latch + 0.3 * rattle + 0.25 * room
    return (_normalise(sound) * strength).astype(np.float32)
