"""Builders for the timeline tests: small OTIO timelines written the way editors' exports are,
and tiny real media files (PyAV) for the tests that go through the daemon."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio

RT = otio.opentime.RationalTime
TR = otio.opentime.TimeRange


def rng(start, duration, rate=24):
    return TR(RT(start, rate), RT(duration, rate))


def clip(
    name,
    start,
    duration,
    *,
    rate=24,
    media="/media/a.mov",
    avail=(0, 100_000),
    effects=(),
    markers=(),
    enabled=True,
    metadata=None,
    reference=None,
):
    if reference is None:
        if media is None:
            reference = otio.schema.MissingReference()
        else:
            reference = otio.schema.ExternalReference(
                target_url=media,
                available_range=rng(avail[0], avail[1], rate) if avail is not None else None,
            )
    c = otio.schema.Clip(name=name, media_reference=reference, source_range=rng(start, duration, rate))
    c.enabled = enabled
    for e in effects:
        c.effects.append(e)
    for m in markers:
        c.markers.append(m)
    if metadata:
        c.metadata.update(metadata)
    return c


def gap(duration, rate=24):
    return otio.schema.Gap(source_range=rng(0, duration, rate))


def dissolve(in_offset, out_offset, rate=24, name="Cross Dissolve"):
    return otio.schema.Transition(
        name=name,
        transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
        in_offset=RT(in_offset, rate),
        out_offset=RT(out_offset, rate),
    )


def track(*items, kind=otio.schema.TrackKind.Video, name=""):
    t = otio.schema.Track(name=name, kind=kind)
    for item in items:
        t.append(item)
    return t


def timeline(*tracks, rate=24, start=None):
    tl = otio.schema.Timeline(name="test edit")
    if start is not None or rate is not None:
        tl.global_start_time = RT(start or 0, rate)
    for t in tracks:
        tl.tracks.append(t)
    return tl


def marker(text, comment=""):
    m = otio.schema.Marker(name=text, marked_range=rng(0, 1))
    if comment:
        m.comment = comment
    return m


def frames(seconds: Fraction, rate) -> Fraction:
    return seconds * rate


# --- real media ----------------------------------------------------------------------------


def write_movie(
    path: Path, seconds: float, rate: int | Fraction = 24, size=(32, 24), timecode: str | None = None
) -> Path:
    """A tiny H.264 movie whose brightness changes every frame (so it is not all alike),
    optionally with a start timecode (a tmcd track, as cameras write)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(rate)
    n = int(round(seconds * rate))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        if timecode:
            stream.metadata["timecode"] = timecode
        for i in range(n):
            img = np.full((size[1], size[0], 3), (i * 37) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_image_sequence(folder: Path, prefix: str, first: int, count: int, pad=4) -> str:
    """PNG frames prefix.0001.png ...; returns the printf pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(first, first + count):
        img = np.full((8, 8, 3), (n * 29) % 256, np.uint8)
        _write_png(folder / f"{prefix}{n:0{pad}d}.png", img)
    escaped = str(folder / prefix).replace("%", "%%")  # a literal % in a printf pattern
    return f"{escaped}%0{pad}d.png"


def _write_png(path: Path, img: np.ndarray) -> None:
    import av

    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height = img.shape[1], img.shape[0]
        stream.pix_fmt = "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def relink(tl: otio.schema.Timeline, folder: Path, *, origin_tc: bool = True) -> dict[str, float]:
    """Point every picture clip of `tl` at a movie in `folder` (one per source name), long enough
    for what the clip shows plus dissolve handles. Returns {path: seconds needed}. Clips whose
    source starts past 01:00:00:00 get media starting at that timecode, like camera files."""
    import re

    need: dict[str, float] = {}
    for c in tl.find_clips():
        ref = c.media_reference
        if isinstance(ref, otio.schema.GeneratorReference):
            continue
        sr = c.source_range or c.available_range()
        rate = sr.duration.rate
        avail = ref.available_range if ref is not None else None
        if avail is None:
            # A second of media before and after what the clip shows (dissolve handles).
            origin = 86400 * rate / 24 if origin_tc and sr.start_time.value >= 86400 * rate / 24 else 0
            origin = min(origin, sr.start_time.value - rate)
            avail = rng(origin, sr.end_time_exclusive().value - origin + rate, rate)
        base = re.sub(r"[^A-Za-z0-9]+", "_", (c.name or "clip"))[:40] or "clip"
        if ref is not None and getattr(ref, "target_url", None):
            base = re.sub(r"[^A-Za-z0-9]+", "_", Path(ref.target_url).stem)[:40]
        path = str(folder / f"{base}.mp4")
        c.media_reference = otio.schema.ExternalReference(target_url=path, available_range=avail)
        need[path] = max(need.get(path, 0.0), float(avail.duration.value / rate) + 0.5)
    return need
