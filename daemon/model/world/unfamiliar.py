"""Pictures unlike the world's, for measuring what the network does off its training pictures.

The world draws flat colour, gradients and a little grain. Real footage is textured, and the
camera pans. Each picture here takes one step away from the world in one of those directions,
so a report can say which step the network does not survive. All are 8 s at 25 fps, drawn
from a seed; `world_over_texture` keeps a held-out world clip's events under a texture, and
`texture_after_title` opens on a flat title card, as edited footage often does.
"""

from __future__ import annotations

import numpy as np

from .clip import WorldConfig, generate_clip
from .dataset import HELD_OUT_SEEDS

KINDS = ("texture_still", "texture_pan_slow", "texture_pan_fast", "world_over_texture",
         "box_over_grey", "texture_after_title")

TITLE_S = 2.0
"""How long `texture_after_title` shows its title card before the textured shot."""


def _blocks(rng: np.random.Generator, height: int, width: int, block: int) -> np.ndarray:
    """Random colour in square blocks: (height, width, 3) float in [0, 1]."""
    cells = rng.random((height // block + 1, width // block + 1, 3))
    return np.kron(cells, np.ones((block, block, 1)))[:height, :width]


def _to_frames(pixels: np.ndarray) -> np.ndarray:
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def unfamiliar_picture(kind: str, seed: int, config: WorldConfig | None = None) -> np.ndarray:
    """(frames, height, width, 3) uint8 RGB of picture `kind` (one of KINDS) for `seed` (a
    held-out seed: `world_over_texture` draws that world clip)."""
    if seed not in HELD_OUT_SEEDS:
        raise ValueError(f"seed {seed} is a training seed; unfamiliar pictures use held-out ones")
    config = config or WorldConfig()
    rng = np.random.default_rng([seed, 31])
    frames, height, width = config.frames, config.height, config.width
    if kind == "texture_still":
        return _to_frames(np.broadcast_to(_blocks(rng, height, width, 4), (frames, height, width, 3)))
    if kind in ("texture_pan_slow", "texture_pan_fast"):
        speed = 1 if kind == "texture_pan_slow" else 4
        strip = _blocks(rng, height, width + speed * frames, 4)
        return _to_frames(np.stack([strip[:, speed * f:speed * f + width] for f in range(frames)]))
    if kind == "world_over_texture":
        clip = generate_clip(seed, config)
        texture = _blocks(rng, height, width, 3)
        return _to_frames(0.5 * clip.frames / 255.0 + 0.5 * texture)
    if kind == "box_over_grey":
        # A smaller picture than the world's, scaled up by the front end.
        h, w = 54, 96
        pixels = np.full((frames, h, w, 3), 0.5)
        colour = rng.uniform(0.2, 1.0, 3)
        for f in range(frames):
            x = int(f * (w - 16) / frames)
            pixels[f, 20:34, x:x + 16] = colour
        return _to_frames(pixels)
    if kind == "texture_after_title":
        title = round(TITLE_S * config.fps)
        card = np.broadcast_to(rng.uniform(0.0, 0.3, 3), (title, height, width, 3)).copy()
        card[:, height // 2 - 4:height // 2 + 4, width // 4:3 * width // 4] = 0.9  # the title
        strip = _blocks(rng, height, width + frames - title, 4)
        shot = np.stack([strip[:, f:f + width] for f in range(frames - title)])
        return _to_frames(np.concatenate([card, shot]))
    raise ValueError(f"unknown unfamiliar picture {kind!r}; one of {', '.join(KINDS)}")
