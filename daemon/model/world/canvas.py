"""Drawing on a stack of video frames: the few primitives the world's picture is made of.

The canvas is float32 RGB in [0, 1], shaped (frames, height + 2*pad, width + 2*pad, 3). The
margin lets the camera shake by cropping at an offset without showing an empty border; callers
draw in visible-pixel coordinates and the canvas adds the margin.
"""

from __future__ import annotations

import numpy as np


class Canvas:
    def __init__(self, frames: int, height: int, width: int, pad: int = 4):
        self.height, self.width, self.pad = height, width, pad
        self.pixels = np.zeros((frames, height + 2 * pad, width + 2 * pad, 3), np.float32)
        # Coordinate grids of the padded canvas, in visible-pixel units.
        self.y_grid, self.x_grid = np.mgrid[-pad:height + pad, -pad:width + pad].astype(np.float32)

    def _clip_box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[int, int, int, int]:
        p = self.pad
        hc, wc = self.pixels.shape[1:3]
        return (int(np.clip(round(y0) + p, 0, hc)), int(np.clip(round(y1) + p, 0, hc)),
                int(np.clip(round(x0) + p, 0, wc)), int(np.clip(round(x1) + p, 0, wc)))

    def rect(self, frame: int, y0: float, y1: float, x0: float, x1: float, colour) -> None:
        a, b, c, d = self._clip_box(y0, y1, x0, x1)
        self.pixels[frame, a:b, c:d] = colour

    def disk(self, frame: int, cy: float, cx: float, ry: float, rx: float, colour,
             alpha: float = 1.0) -> None:
        """Filled ellipse with radii (ry, rx); alpha < 1 blends it over what is there."""
        a, b, c, d = self._clip_box(cy - ry - 1, cy + ry + 2, cx - rx - 1, cx + rx + 2)
        if a >= b or c >= d:
            return
        yy, xx = self.y_grid[a:b, c:d], self.x_grid[a:b, c:d]
        inside = ((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 <= 1.0
        region = self.pixels[frame, a:b, c:d]
        region[inside] = (1 - alpha) * region[inside] + alpha * np.asarray(colour, np.float32)

    def points(self, frame: int | np.ndarray, ys: np.ndarray, xs: np.ndarray, colour) -> None:
        """Set pixels at (ys, xs); `frame` may be an array aligned with them (vectorised
        drawing of particles and streaks across many frames at once)."""
        p = self.pad
        yi = np.round(np.asarray(ys)).astype(np.int64) + p
        xi = np.round(np.asarray(xs)).astype(np.int64) + p
        hc, wc = self.pixels.shape[1:3]
        ok = (yi >= 0) & (yi < hc) & (xi >= 0) & (xi < wc)
        f = np.broadcast_to(np.asarray(frame), yi.shape)[ok]
        self.pixels[f, yi[ok], xi[ok]] = colour

    def line(self, frame: int, y0: float, x0: float, y1: float, x1: float, colour,
             thickness: int = 1) -> None:
        steps = int(max(abs(y1 - y0), abs(x1 - x0))) + 1
        ys = np.linspace(y0, y1, steps)
        xs = np.linspace(x0, x1, steps)
        for dy in range(thickness):
            self.points(frame, ys + dy, xs, colour)

    def brighten(self, frame: int, amount: float, tint=(1.0, 1.0, 1.0)) -> None:
        self.pixels[frame] += amount * np.asarray(tint, np.float32)

    def finish(self, shake: np.ndarray, grain: float, rng: np.random.Generator) -> np.ndarray:
        """Crop each frame at its camera offset (shake: (frames, 2) dy, dx in pixels), add
        sensor grain and quantise -> (frames, height, width, 3) uint8."""
        p = self.pad
        frames = self.pixels.shape[0]
        offs = np.clip(np.round(shake).astype(np.int64), -p, p) + p
        out = np.empty((frames, self.height, self.width, 3), np.float32)
        for f in range(frames):
            dy, dx = offs[f]
            out[f] = self.pixels[f, dy:dy + self.height, dx:dx + self.width]
        if grain > 0:
            # Luminance grain (one value per pixel for all three channels) is what sensors
            # mostly show, and a third of the cost of per-channel noise.
            out += grain * rng.standard_normal(out.shape[:3] + (1,), dtype=np.float32)
        return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
