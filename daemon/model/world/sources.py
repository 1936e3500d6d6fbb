"""The things in a shot that make sound, each planned once and then both drawn and heard.

A source plans its motion in whole video frames first, so every contact (a bounce, a foot plant,
a door hitting its frame, a flash) happens ON a frame; its sound is then placed at exactly that
frame's first audio sample. `busy` holds frames already taken by other sources' hits, so that
two hits in one clip are never closer than a few frames (one onset per hit stays measurable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import synth
from .canvas import Canvas

MIN_GAP_FRAMES = 3
"""Hits of different sources keep at least this many frames apart (120 ms at 25 fps)."""


@dataclass(frozen=True)
class Event:
    """A ground-truth sound event. `onset` is True for sharp hits that an onset detector should
    find; soft or dense sounds (whooshes, bubbles, crackles, music notes) have onset False and a
    `duration` during which detections are neither rewarded nor penalised."""

    time: float
    frame: int
    cls: str
    source: str
    onset: bool = True
    strength: float = 1.0
    duration: float = 0.0


@dataclass
class Shot:
    start: int  # first frame
    end: int  # one past the last frame
    floor_y: float
    sky: tuple
    ground: tuple
    busy: set = field(default_factory=set)

    def free(self, frame: int) -> bool:
        return (self.start + 1 <= frame < self.end - 1
                and all(abs(frame - b) >= MIN_GAP_FRAMES for b in self.busy))


class Source:
    """Base of everything audible; subclasses fill `events` in plan and implement draw/sound."""

    cls: str = ""
    family: str = ""

    def __init__(self, name: str):
        self.name = name
        self.events: list[Event] = []

    def _hit(self, frame: int, fps: int, strength: float, cls: str | None = None,
             onset: bool = True, duration: float = 0.0) -> Event:
        ev = Event(frame / fps, frame, cls or self.cls, self.name, onset, strength, duration)
        self.events.append(ev)
        return ev

    def draw(self, canvas: Canvas, shot: Shot) -> None:
        raise NotImplementedError

    def sound(self, rng: np.random.Generator, n: int, rate: int, fps: int) -> np.ndarray:
        """The source's audio over the whole clip (n samples)."""
        out = np.zeros(n, np.float32)
        hop = rate // fps
        for ev in self.events:
            s = self.one_sound(rng, ev, rate, fps)
            at = ev.frame * hop
            m = min(len(s), n - at)
            if m > 0:
                out[at:at + m] += s[:m]
        return out

    def one_sound(self, rng, ev: Event, rate: int, fps: int) -> np.ndarray:
        raise NotImplementedError


def _colour(rng: np.random.Generator, lo: float = 0.1, hi: float = 1.0) -> tuple:
    return tuple(float(c) for c in rng.uniform(lo, hi, 3))


class Dropper(Source):
    """Objects dropped onto the floor; each bounce is an impact of the chosen material."""

    family = "impact"

    def __init__(self, name, rng: np.random.Generator, shot: Shot, width: int, fps: int,
                 material: str):
        super().__init__(name)
        self.material = material
        self.cls = f"impact_{material}"
        # (appear frame, x, size, colour, disk?, [(contact frame, takeoff speed, g)], top y)
        self.drops: list[dict] = []
        cursor = shot.start
        for _ in range(int(rng.integers(1, 4))):
            for _attempt in range(12):
                appear = cursor + int(rng.integers(0, 40))
                fall = int(rng.integers(8, 20))
                size = float(rng.uniform(3, 6))
                top = float(rng.uniform(-size, shot.floor_y * 0.35))
                height = shot.floor_y - size - top
                g = 2 * height / fall ** 2
                contacts, gap, e = [appear + fall], 0, rng.uniform(0.0, 0.55)
                speeds = [g * fall]
                while True:
                    gap = int(round(2 * e ** len(speeds) * fall))
                    if gap < MIN_GAP_FRAMES:
                        break
                    contacts.append(contacts[-1] + gap)
                    speeds.append(g * gap / 2)
                if all(shot.free(c) for c in contacts):
                    break
            else:
                continue
            strength = float(rng.uniform(0.5, 1.0))
            for c, v in zip(contacts, speeds, strict=True):
                # Late bounces are faint: listed as soft events, not as onsets to find.
                relative = v / speeds[0]
                self._hit(c, fps, strength * relative, onset=relative >= 0.3)
                shot.busy.add(c)
            self.drops.append(dict(appear=appear, x=float(rng.uniform(8, width - 8)), size=size,
                                   colour=_colour(rng), disk=bool(rng.random() < 0.5), top=top,
                                   contacts=contacts, g=g, fall=fall))
            cursor = contacts[-1] + 4

    def _height(self, drop: dict, f: int) -> float:
        """Height of the object's bottom above the floor at frame f (0 = touching)."""
        c, g = drop["contacts"], drop["g"]
        if f < c[0]:
            return 0.5 * g * (c[0] - f) ** 2
        for a, b in zip(c[:-1], c[1:], strict=True):
            if a <= f < b:
                tau, gap = f - a, b - a
                return g * gap / 2 * tau - 0.5 * g * tau ** 2
        return 0.0

    def draw(self, canvas: Canvas, shot: Shot) -> None:
        for i, drop in enumerate(self.drops):
            until = self.drops[i + 1]["appear"] if i + 1 < len(self.drops) else shot.end
            s, contacts = drop["size"], set(drop["contacts"])
            for f in range(max(drop["appear"], shot.start), min(until, shot.end)):
                bottom = shot.floor_y - self._height(drop, f)
                squash = 1.5 if f in contacts else 1.0
                ry, rx = s / squash, s * squash
                cy = bottom - ry
                if drop["disk"]:
                    canvas.disk(f, cy, drop["x"], ry, rx, drop["colour"])
                else:
                    canvas.rect(f, cy - ry, bottom, drop["x"] - rx, drop["x"] + rx, drop["colour"])
                if f in contacts:
                    # A puff of dust on the contact frame and the two after it.
                    for k in range(3):
                        if f + k < shot.end:
                            xs = drop["x"] + np.array([-1, 1, -2, 2]) * (rx + 1 + 2 * k)
                            ys = shot.floor_y - np.array([1, 1, 2, 2]) - k
                            canvas.points(f + k, ys, xs, (0.85, 0.8, 0.7))

    def one_sound(self, rng, ev, rate, fps):
        return synth.impact(rng, self.material, ev.strength, rate)


class Walker(Source):
    """A figure walking across; every foot plant is a footstep on the chosen surface."""

    family = "footsteps"

    def __init__(self, name, rng, shot: Shot, width: int, fps: int, surface: str):
        super().__init__(name)
        self.surface = surface
        self.cls = f"footsteps_{surface}"
        self.period = int(rng.integers(10, 17))  # frames per step
        self.stride = float(rng.uniform(4, 8))  # pixels per step
        self.direction = 1 if rng.random() < 0.5 else -1
        self.colour = _colour(rng, 0.05, 0.9)
        self.leg = float(rng.uniform(8, 12))
        first = shot.start + int(rng.integers(0, self.period))
        start_x = float(rng.uniform(0.15, 0.85) * width)
        # Steps from before the shot so the figure is already walking when the shot begins.
        self.steps = []  # (frame, foot x)
        for i in range(-2, (shot.end - first) // self.period + 2):
            self.steps.append((first + i * self.period, start_x + self.direction * self.stride * i))
        for frame, x in self.steps:
            if shot.start <= frame < shot.end - 1 and -2 <= x <= width + 2:
                self._hit(frame, fps, float(rng.uniform(0.6, 1.0)))
                shot.busy.add(frame)

    def _feet(self, f: int) -> tuple[list, float, float]:
        """[(x, lift)] for both feet and the hip x, y-offset at frame f."""
        frames = [s[0] for s in self.steps]
        i = int(np.searchsorted(frames, f, side="right")) - 1
        i = int(np.clip(i, 1, len(self.steps) - 2))
        k0, x0 = self.steps[i]
        tau = np.clip((f - k0) / self.period, 0.0, 1.0)
        planted = (x0, 0.0)
        # The other foot swings from its last plant (i-1) to its next one (i+1).
        xa, xb = self.steps[i - 1][1], self.steps[i + 1][1]
        swinging = (xa + (xb - xa) * tau, 3.0 * np.sin(np.pi * tau))
        hip_x = (planted[0] + swinging[0]) / 2
        return [planted, swinging], hip_x, 1.5 * np.cos(np.pi * tau) ** 2

    def draw(self, canvas: Canvas, shot: Shot) -> None:
        for f in range(shot.start, shot.end):
            feet, hip_x, bob = self._feet(f)
            hip_y = shot.floor_y - self.leg + bob
            for x, lift in feet:
                canvas.line(f, hip_y, hip_x, shot.floor_y - 1 - lift, x, self.colour, 2)
            canvas.rect(f, hip_y - 10, hip_y + 1, hip_x - 2, hip_x + 2, self.colour)
            canvas.disk(f, hip_y - 13, hip_x, 2.5, 2.5, self.colour)

    def one_sound(self, rng, ev, rate, fps):
        return synth.footstep(rng, self.surface, ev.strength, rate)


class Swipe(Source):
    """Something flying fast across the frame; the whoosh follows its speed."""

    family = "whoosh"
    cls = "whoosh"

    def __init__(self, name, rng, shot: Shot, width: int, height: int, fps: int):
        super().__init__(name)
        self.paths = []
        for _ in range(int(rng.integers(1, 3))):
            dur = int(rng.integers(6, 13))
            start = int(rng.integers(shot.start, max(shot.start + 1, shot.end - dur)))
            y0, y1 = rng.uniform(5, height - 10, 2)
            left = rng.random() < 0.5
            x0, x1 = (-10.0, width + 10.0) if left else (width + 10.0, -10.0)
            tau = np.arange(dur + 1) / dur
            frac = (1 - np.cos(np.pi * tau)) / 2  # slow-fast-slow
            xs, ys = x0 + (x1 - x0) * frac, y0 + (y1 - y0) * frac
            speed = np.hypot(np.diff(xs), np.diff(ys))
            self.paths.append(dict(start=start, xs=xs, ys=ys, speed=speed,
                                   size=float(rng.uniform(1.5, 3.5)), colour=_colour(rng)))
            self._hit(start, fps, float(speed.max()), onset=False, duration=dur / fps)

    def draw(self, canvas, shot):
        for p in self.paths:
            for k in range(len(p["speed"])):
                f = p["start"] + k
                if f >= shot.end:
                    break
                canvas.line(f, p["ys"][k], p["xs"][k], p["ys"][k + 1], p["xs"][k + 1],
                            tuple(0.6 * c for c in p["colour"]), 1)
                canvas.disk(f, p["ys"][k + 1], p["xs"][k + 1], p["size"], p["size"], p["colour"])

    def sound(self, rng, n, rate, fps):
        out = np.zeros(n, np.float32)
        hop = rate // fps
        for p in self.paths:
            s = synth.whoosh(rng, np.append(p["speed"], 0.0), rate, fps)
            at = p["start"] * hop
            m = min(len(s), n - at)
            if m > 0:
                out[at:at + m] += s[:m]
        return out


class Flash(Source):
    """Bright flashes with an electric zap, or a lamp switched on and off with a click."""

    family = "flash"

    def __init__(self, name, rng, shot: Shot, width: int, height: int, fps: int, kind: str):
        super().__init__(name)
        self.kind = kind
        self.cls = kind  # "zap" or "click"
        self.lamp = (float(rng.uniform(5, height * 0.5)), float(rng.uniform(6, width - 6)))
        self.colour = (1.0, 0.95, 0.6) if kind == "click" else (0.75, 0.85, 1.0)
        self.bolts = {}
        for _ in range(int(rng.integers(1, 5))):
            for _attempt in range(10):
                f = int(rng.integers(shot.start, shot.end))
                if shot.free(f):
                    self._hit(f, fps, float(rng.uniform(0.6, 1.0)))
                    shot.busy.add(f)
                    xs = np.cumsum(rng.normal(0, 3, 8)) + rng.uniform(10, width - 10)
                    self.bolts[f] = (np.linspace(0, shot.floor_y, 8), xs)
                    break
        self.events.sort(key=lambda e: e.frame)

    def draw(self, canvas, shot):
        if self.kind == "click":
            on = False
            toggles = {e.frame for e in self.events}
            for f in range(shot.start, shot.end):
                if f in toggles:
                    on = not on
                cy, cx = self.lamp
                canvas.rect(f, cy - 3, cy + 3, cx - 3, cx + 3,
                            self.colour if on else (0.15, 0.15, 0.12))
                if on:
                    canvas.pixels[f] += 0.08
            return
        for ev in self.events:
            for k, amount in enumerate((0.7, 0.3, 0.1)):
                if ev.frame + k < shot.end:
                    canvas.brighten(ev.frame + k, amount * ev.strength, self.colour)
            ys, xs = self.bolts[ev.frame]
            for k in range(2):
                if ev.frame + k < shot.end:
                    for a in range(len(ys) - 1):
                        canvas.line(ev.frame + k, ys[a], xs[a], ys[a + 1], xs[a + 1], (1, 1, 1))

    def one_sound(self, rng, ev, rate, fps):
        if self.kind == "click":
            return synth.click(rng, ev.strength * 0.8, rate)
        return synth.zap(rng, ev.strength, rate)


class Door(Source):
    """A door on the back wall swung shut; it slams on the frame it closes."""

    family = "door"
    cls = "door_slam"

    def __init__(self, name, rng, shot: Shot, width: int, fps: int):
        super().__init__(name)
        self.w = float(rng.uniform(10, 16))
        self.h = float(rng.uniform(22, min(34, shot.floor_y - 4)))
        self.x = float(rng.uniform(4, width - self.w - 4))
        self.colour = _colour(rng, 0.2, 0.7)
        self.swings = []  # (open start, close start, slam frame)
        cursor = shot.start
        for _ in range(int(rng.integers(1, 3))):
            for _attempt in range(10):
                opening = cursor + int(rng.integers(0, 30))
                closing = opening + int(rng.integers(8, 30))
                slam = closing + int(rng.integers(3, 8))
                if slam < shot.end - 1 and shot.free(slam):
                    self.swings.append((opening, closing, slam))
                    self._hit(slam, fps, float(rng.uniform(0.7, 1.0)))
                    shot.busy.add(slam)
                    cursor = slam + 6
                    break

    def _angle(self, f: int) -> float:
        """Door angle at frame f: 0 closed .. 1.3 rad open; opening slowly, shutting fast."""
        for opening, closing, slam in self.swings:
            if opening <= f < closing:
                return 1.3 * min(1.0, (f - opening) / 6)
            if closing <= f < slam:
                tau = (f - closing) / (slam - closing)
                return 1.3 * (1 - tau ** 2)
        return 0.0

    def draw(self, canvas, shot):
        top = shot.floor_y - self.h
        for f in range(shot.start, shot.end):
            canvas.rect(f, top - 1, shot.floor_y, self.x - 1, self.x + self.w + 1, (0.1, 0.08, 0.06))
            visible = self.w * np.cos(self._angle(f))
            canvas.rect(f, top, shot.floor_y, self.x, self.x + max(1.0, visible), self.colour)

    def one_sound(self, rng, ev, rate, fps):
        return synth.door_slam(rng, ev.strength, rate)
