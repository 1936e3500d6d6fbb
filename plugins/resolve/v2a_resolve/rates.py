"""Frame rates as Resolve writes them in settings ("23.976", "29.97 DF", "25") as exact fractions.

Resolve's `timelineFrameRate` is a string; NTSC rates are written rounded ("23.976" is
24000/1001) and may carry " DF" / " NDF" for drop-frame timecode, which changes how timecode is
labelled but not the rate. Keeping the rate exact lets frame counts convert without drift.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

from .errors import SettingsInvalid


def parse_frame_rate(setting: str) -> Fraction:
    """"23.976" -> 24000/1001, "29.97 DF" -> 30000/1001, "25" -> 25."""
    text = str(setting).strip()
    for suffix in (" NDF", " DF"):
        text = text.removesuffix(suffix)
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(0)
    if value <= 0:
        raise SettingsInvalid(
            f"The timeline frame rate {setting!r} is not a frame rate V2A understands; "
            "set the timeline to a standard rate (Timeline ▸ Timeline Settings) and try again.")
    if value == value.to_integral_value():
        return Fraction(int(value))
    ntsc = Fraction(round(value * 1001 / 1000) * 1000, 1001)
    if abs(Decimal(ntsc.numerator) / Decimal(ntsc.denominator) - value) < Decimal("0.001"):
        return ntsc
    return Fraction(value)


def frames_between_rates(frames: int, from_rate: Fraction, to_rate: Fraction) -> int:
    """A frame count at one rate as the nearest frame count at another (same duration)."""
    if from_rate == to_rate:
        return int(frames)
    return round(Fraction(frames) * to_rate / from_rate)


def as_fraction(rate: float) -> Fraction:
    """A float rate from the wire (24000/1001 as 23.976023...) as the exact rate it stands for."""
    return Fraction(rate).limit_denominator(1001)
