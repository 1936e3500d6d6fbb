"""The one place that knows which Blender release names things how (4.2 LTS through 5.x).

Blender 4.4 renamed the `Sequence` type to `Strip`; 5.0 removed `SequenceEditor.sequences` and
`MetaStrip.sequences` in favour of `.strips`. Everything else in the add-on asks this module for
a container's strips instead of naming either attribute.
"""

from __future__ import annotations

from fractions import Fraction


def strips_of(container):
    """The strips collection of a sequence editor or a meta strip, whatever the release calls it.

    `.strips` where it exists (the only name in 5.0), otherwise `.sequences` (4.2 LTS)."""
    strips = getattr(container, "strips", None)
    if strips is None:
        strips = container.sequences
    return strips


def scene_fps(scene) -> float:
    """The scene's real frame rate: 30 / 1.001 = 29.97..., never the rounded `render.fps`.

    `fps_base` is stored in single precision (1.001 reads back as 1.00100004...); its presets
    have at most a few decimals, so rounding it recovers the exact 30000/1001."""
    base = Fraction(str(round(scene.render.fps_base, 6)))
    return float(scene.render.fps / base)
