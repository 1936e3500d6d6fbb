"""What a shot looks like behind its sources: sky and ground, and the moving textures that go
with each ambience (rain streaks, waves, swaying grass, flames, bubbles, a skyline with traffic).

`plan_ambience` draws the per-frame envelopes once; the picture (here) and the sound
(beds.ambience) both read them, which is what keeps an ambience in step with its picture.
"""

from __future__ import annotations

import numpy as np

from .canvas import Canvas
from .sources import Event, Shot


def smooth_noise(rng: np.random.Generator, frames: int, span: int) -> np.ndarray:
    """Slowly varying noise in [0, 1], roughly one change per `span` frames."""
    knots = rng.uniform(0, 1, frames // span + 3)
    return np.interp(np.arange(frames) / span, np.arange(len(knots)), knots).astype(np.float32)


def plan_ambience(rng: np.random.Generator, kind: str, shot: Shot, width: int, fps: int
                  ) -> tuple[dict, list[Event]]:
    frames = shot.end - shot.start
    bed: dict = {"level": np.ones(frames, np.float32)}
    events: list[Event] = []
    if kind == "rain":
        bed["density"] = float(rng.uniform(0.3, 1.0))
        count = int(20 + 60 * bed["density"])
        bed["streaks"] = dict(x=rng.uniform(-20, width, count), y=rng.uniform(0, 80, count),
                              speed=rng.uniform(4, 7, count), slant=float(rng.uniform(0.1, 0.4)))
    elif kind == "ocean":
        period = rng.uniform(4, 9) * fps
        t = np.arange(frames)
        bed["wave"] = (0.5 + 0.5 * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3))).astype(
            np.float32)
    elif kind == "wind":
        bed["gust"] = smooth_noise(rng, frames, int(rng.integers(12, 40)))
        bed["blades"] = rng.uniform(0, width, int(rng.integers(6, 16)))
    elif kind == "fire":
        bed["flicker"] = np.clip(0.6 * smooth_noise(rng, frames, 4) + 0.4 * rng.uniform(
            0, 1, frames), 0, 1).astype(np.float32)
        count = rng.poisson(rng.uniform(3, 8) * frames / fps)
        bed["crackles"] = np.sort(rng.integers(0, frames, count))
        bed["fire_x"] = float(rng.uniform(0.2, 0.8) * width)
        for f in bed["crackles"]:
            events.append(Event((shot.start + f) / fps, int(shot.start + f), "fire", "ambience",
                                onset=False, strength=0.3, duration=0.04))
    elif kind == "underwater":
        count = rng.poisson(rng.uniform(2, 6) * frames / fps)
        bed["bubbles"] = np.sort(rng.integers(0, frames, count))
        bed["bubble_sizes"] = rng.uniform(1, 3, count)
        bed["bubble_x"] = rng.uniform(0, width, count)
        for f in bed["bubbles"]:
            events.append(Event((shot.start + f) / fps, int(shot.start + f), "underwater",
                                "ambience", onset=False, strength=0.3, duration=0.06))
    elif kind == "city":
        bed["hum_hz"] = float(rng.uniform(45, 120))
        bed["traffic"] = (0.3 + 0.7 * smooth_noise(rng, frames, 50)).astype(np.float32)
        bed["towers"] = [(float(rng.uniform(0, width)), float(rng.uniform(6, 16)),
                          float(rng.uniform(10, 35))) for _ in range(int(rng.integers(4, 9)))]
        bed["cars"] = [(float(rng.uniform(0, width)), float(rng.uniform(1.0, 2.5))
                        * (1 if rng.random() < 0.5 else -1), tuple(rng.uniform(0.3, 1, 3)))
                       for _ in range(int(rng.integers(1, 4)))]
    return bed, events


def draw_background(canvas: Canvas, shot: Shot, rng: np.random.Generator) -> None:
    """Sky gradient above the floor line, ground below, with a little static texture."""
    hc = canvas.pixels.shape[1]
    ys = np.arange(hc, dtype=np.float32) - canvas.pad
    frac = np.clip(ys / max(shot.floor_y, 1), 0, 1)[:, None]
    sky_top, sky_low = np.asarray(shot.sky[0]), np.asarray(shot.sky[1])
    column = sky_top * (1 - frac) + sky_low * frac
    column[ys >= shot.floor_y] = shot.ground
    image = np.broadcast_to(column[:, None, :], canvas.pixels.shape[1:]).copy()
    image += rng.normal(0, 0.02, image.shape[:2])[..., None].astype(np.float32)
    canvas.pixels[shot.start:shot.end] = image


def draw_ambience(canvas: Canvas, kind: str, bed: dict, shot: Shot) -> None:
    w = canvas.width
    frames = np.arange(shot.start, shot.end)
    if kind == "rain":
        s = bed["streaks"]
        t = (frames - shot.start)[:, None].astype(np.float32)
        ys = (s["y"][None, :] + s["speed"][None, :] * t) % (shot.floor_y + 10) - 5
        xs = s["x"][None, :] + ys * s["slant"]
        f = np.broadcast_to(frames[:, None], ys.shape)
        for k in range(4):  # each streak is 4 pixels long
            canvas.points(f, ys - k, xs - k * s["slant"], (0.75, 0.8, 0.95))
    elif kind == "ocean":
        xs, yy = canvas.x_grid[0], canvas.y_grid[:, :1]
        water = np.array([0.1, 0.3, 0.55], np.float32)
        for i, f in enumerate(frames):
            surface = shot.floor_y - 6 - 8 * bed["wave"][i] + 1.5 * np.sin(xs / 7 + i / 5)
            canvas.pixels[f][yy >= surface[None, :]] = water
    elif kind == "wind":
        for i, f in enumerate(frames):
            lean = 7 * bed["gust"][i]
            for j, x in enumerate(bed["blades"]):
                wobble = 1.5 * np.sin(i / 3 + j)
                canvas.line(f, shot.floor_y - 14, x + lean + wobble, shot.floor_y, x,
                            (0.2, 0.55, 0.2))
    elif kind == "fire":
        x = bed["fire_x"]
        crackles = set(int(c) for c in bed["crackles"])
        for i, f in enumerate(frames):
            h = 6 + 10 * bed["flicker"][i]
            canvas.disk(f, shot.floor_y - h / 2, x, h / 2, 4 + 2 * bed["flicker"][i],
                        (1.0, 0.45, 0.05))
            canvas.disk(f, shot.floor_y - h / 3, x, h / 4, 2.5, (1.0, 0.9, 0.3))
            for k in range(3):
                if i - k in crackles:
                    canvas.points(f, np.array([shot.floor_y - h - 2 * k]),
                                  np.array([x + (-1) ** (i - k) * 2 * k]), (1.0, 1.0, 0.6))
    elif kind == "underwater":
        canvas.pixels[shot.start:shot.end] = (0.35 * canvas.pixels[shot.start:shot.end]
                                              + np.array([0.0, 0.2, 0.4], np.float32))
        for spawn, size, x in zip(bed["bubbles"], bed["bubble_sizes"], bed["bubble_x"],
                                  strict=True):
            for age in range(0, 30):
                f = shot.start + spawn + age
                if f >= shot.end:
                    break
                canvas.disk(f, shot.floor_y - 1 - 2.0 * age, x + np.sin(age / 3), size + 0.5,
                            size + 0.5, (0.7, 0.9, 1.0), alpha=0.8)
    elif kind == "city":
        for x, tw, th in bed["towers"]:
            for f in frames:
                canvas.rect(f, shot.floor_y - th, shot.floor_y, x, x + tw, (0.12, 0.12, 0.16))
            for wy in np.arange(shot.floor_y - th + 2, shot.floor_y - 2, 4):
                for wx in np.arange(x + 2, x + tw - 1, 4):
                    canvas.points(frames, np.full(len(frames), wy), np.full(len(frames), wx),
                                  (0.95, 0.85, 0.4))
        for x0, v, colour in bed["cars"]:
            for i, f in enumerate(frames):
                cx = (x0 + v * i) % (w + 20) - 10
                canvas.rect(f, shot.floor_y + 1, shot.floor_y + 4, cx - 4, cx + 4, colour)
