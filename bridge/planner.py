"""The timeline planner: an OTIO timeline in, one generation job per piece of picture out.

What the viewer sees drives the sound. The planner walks the edit the way a viewer's eye does:
over record time, the top-most enabled video track with picture wins (gaps, disabled clips and
generated clips such as titles are transparent), nested stacks (compound clips) are opened and
their own top-most picture wins inside them, and `LinearTimeWarp` effects (speed changes,
freeze frames) scale the media time under them. Each visible stretch of a clip becomes one
`ClipJob` for exactly the media it shows; where two visible clips meet at a dissolve, both get
handles (the media under the dissolve) so their sound can cross it too.

Time stays rational: OTIO's RationalTime is turned into exact `Fraction` seconds (NTSC rates
such as 23.976 become 24000/1001) and only becomes a float of seconds in the `Segment`s handed
to the engine. No torch and no file access here; the daemon's timeline job checks the files.
"""

from __future__ import annotations

import bisect
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import opentimelineio as otio

from bridge.timeline_prompts import clip_prompts
from daemon.engine import OUTPUT_RATE, Segment

MODES = ("clip", "continuous")


class TimelineError(Exception):
    """The timeline as a whole cannot be planned (unreadable file, no video, bad option)."""


@dataclass(frozen=True)
class PlanOptions:
    """What the editor asked for. `track` is 1-based among the top-level video tracks (V1 is the
    bottom one, as editors number them); None lets the top-most visible picture drive."""

    prompt: str = ""
    negative_prompt: str = ""
    mode: str = "clip"
    track: int | None = None


@dataclass(frozen=True)
class ClipJob:
    """One generation: the picture of one clip (mode `clip`) or of a run of clips across cuts
    (mode `continuous`), where its sound goes on the timeline, and its prompts.

    Record times are exact seconds from the timeline's first frame. `head`/`tail` are handles in
    seconds of output before and after the record range (media under a dissolve); the segments
    include them. `error` is (code, message) when the clip cannot be generated.
    """

    index: int
    label: str
    clip_names: tuple[str, ...]
    record_start: Fraction
    record_duration: Fraction
    segments: tuple[Segment, ...]
    prompt: str
    negative_prompt: str
    head: Fraction = Fraction(0)
    tail: Fraction = Fraction(0)
    error: tuple[str, str] | None = None

    @property
    def record_end(self) -> Fraction:
        return self.record_start + self.record_duration

    @property
    def num_samples(self) -> int:
        """Samples of the WAV (handles plus the record range), counted as the engine counts
        them for the ClipRequest made of these segments."""
        if self.segments:
            return round(sum(s.duration for s in self.segments) * OUTPUT_RATE)
        return round((self.head + self.record_duration + self.tail) * OUTPUT_RATE)

    @property
    def head_samples(self) -> int:
        return round(self.head * OUTPUT_RATE)


@dataclass(frozen=True)
class Crossfade:
    """A dissolve between two adjacent jobs, mirrored onto the new audio track."""

    before: int  # index of the outgoing job
    after: int  # index of the incoming job
    in_offset: Fraction  # seconds before the cut (the incoming job's head handle)
    out_offset: Fraction  # seconds after the cut (the outgoing job's tail handle)
    name: str = ""
    transition_type: str = otio.schema.TransitionTypes.SMPTE_Dissolve


@dataclass
class TimelinePlan:
    """Everything the daemon needs to generate a timeline and put the sound back on it."""

    jobs: list[ClipJob]
    crossfades: list[Crossfade]
    rate: Fraction  # exact timeline frame rate (24000/1001 for 23.976)
    rate_value: float  # the same rate as OTIO writes it, for the RationalTimes we add
    duration: Fraction  # seconds
    options: PlanOptions = field(default_factory=PlanOptions)

    def frames(self, seconds: Fraction) -> float:
        """Seconds -> frames at the timeline rate (exact when on a frame boundary)."""
        f = seconds * self.rate
        return float(f.numerator // f.denominator) if f.denominator == 1 else float(f)


# --- reading ---------------------------------------------------------------------------------

_ADAPTERS = {
    ".otio": "otio_json",
    ".otioz": "otioz",
    ".otiod": "otiod",
    ".xml": "fcp_xml",
    ".edl": "cmx_3600",
    ".aaf": "AAF",
}


def read_timeline(path: str | Path, *, edl_rate: float = 24.0) -> otio.schema.Timeline:
    """Read `.otio`, `.otioz`, FCP 7 XML, CMX 3600 EDL or AAF into a Timeline."""
    path = Path(path)
    adapter = _ADAPTERS.get(path.suffix.lower())
    if adapter is None:
        raise TimelineError(
            f"{path.name}: unknown timeline format {path.suffix!r}; export OTIO (.otio/.otioz), "
            "FCP 7 XML (.xml), CMX 3600 EDL (.edl) or AAF (.aaf) from your editor"
        )
    if not path.is_file():
        raise TimelineError(f"{path}: no such file")
    if adapter not in otio.adapters.available_adapter_names():
        raise TimelineError(
            f"{path.name}: reading {path.suffix} needs the OTIO adapter plugin {adapter!r}; "
            "install it (pip install otio-aaf-adapter for AAF) or export OTIO instead"
        )
    if adapter == "otioz":
        return _read_otioz(path)
    kwargs = {"rate": edl_rate} if adapter == "cmx_3600" else {}
    try:
        result = otio.adapters.read_from_file(str(path), adapter_name=adapter, **kwargs)
    except Exception as exc:  # adapters raise anything from ValueError to their own types
        raise TimelineError(f"{path.name}: could not be read as {adapter}: {exc}") from exc
    return _as_timeline(result, path.name)


def _read_otioz(path: Path) -> otio.schema.Timeline:
    """An .otioz bundle is unpacked beside it (`NAME.otioz-media/`, reused when already there)
    so that its media outlive this process; its media paths are made absolute there."""
    folder = path.parent / f"{path.stem}.otioz-media"
    try:
        if not (folder / "content.otio").is_file():
            folder.mkdir(exist_ok=True)
            otio.adapters.read_from_file(str(path), extract_to_directory=str(folder))
        timeline = _as_timeline(
            otio.adapters.read_from_file(str(folder / "content.otio")), path.name
        )
    except OSError as exc:
        raise TimelineError(f"{path.name}: cannot unpack it into {folder}: {exc}") from exc
    except Exception as exc:
        raise TimelineError(f"{path.name}: could not be read as otioz: {exc}") from exc
    for clip in timeline.find_clips():
        ref = clip.media_reference
        if isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
            local = media_path(ref.target_url)
            if not Path(local).is_absolute() and "://" not in local:
                ref.target_url = str((folder / local).resolve())
    return timeline


def parse_timeline_json(text: str) -> otio.schema.Timeline:
    """OTIO JSON text (what travels on the wire) -> Timeline."""
    try:
        result = otio.adapters.read_from_string(text, "otio_json")
    except Exception as exc:
        raise TimelineError(f"the timeline is not valid OTIO JSON: {exc}") from exc
    return _as_timeline(result, "the timeline")


def _as_timeline(obj, what: str) -> otio.schema.Timeline:
    if isinstance(obj, otio.schema.Timeline):
        return obj
    if isinstance(obj, otio.schema.SerializableCollection):
        timelines = list(obj.find_children(descended_from_type=otio.schema.Timeline))
        if len(timelines) == 1:
            return timelines[0]
        raise TimelineError(f"{what} holds {len(timelines)} timelines; export just one")
    raise TimelineError(f"{what} is a {type(obj).__name__}, not a timeline")


def media_path(url: str, base_dir: str | Path | None = None) -> str:
    """A media reference's target URL as a local path (file:// URLs, bare paths, Windows drive
    letters as FCP writes them: file://localhost/D%3a/media/x.mov -> D:/media/x.mov)."""
    if url.startswith("file:"):
        parsed = urllib.parse.urlparse(url)
        path = urllib.parse.unquote(parsed.path)
        if re.match(r"^/[A-Za-z]:", path):
            path = path[1:]
        if parsed.netloc and parsed.netloc != "localhost":
            path = f"//{parsed.netloc}{path}"
        return path
    if base_dir is not None and not Path(url).is_absolute():
        return str(Path(base_dir) / url)
    return url


# --- exact time ------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def exact_rate(rate: float) -> Fraction:
    """A frame rate as an exact fraction: NTSC rates (23.976, 29.97, 59.94, ...) are n*1000/1001
    however many digits the file wrote; other rates are taken as written."""
    if rate <= 0:
        raise TimelineError(f"frame rate {rate} is not positive")
    nominal = round(rate * 1001 / 1000)
    if abs(rate - round(rate)) > 1e-3 and abs(rate - nominal * 1000 / 1001) < 1e-3:
        return Fraction(nominal * 1000, 1001)
    return Fraction(rate).limit_denominator(1000)


def seconds(t: otio.opentime.RationalTime) -> Fraction:
    return Fraction(t.value).limit_denominator(1_000_000) / exact_rate(t.rate)


def _speed_of(item) -> Fraction:
    """Product of the item's LinearTimeWarp scalars (FreezeFrame is one with scalar 0)."""
    speed = Fraction(1)
    for effect in getattr(item, "effects", ()):
        if isinstance(effect, otio.schema.LinearTimeWarp):
            speed *= Fraction(effect.time_scalar).limit_denominator(10_000)
    return speed


# --- painting the visible picture ------------------------------------------------------------


@dataclass
class _Piece:
    """A stretch of record time in which one clip is the picture the viewer sees."""

    clip: otio.schema.Clip
    path: str  # where it sits: "V2/5" or, nested, "V1/3/1/2"
    ancestors: tuple  # enclosing compound items, outermost first (their markers apply too)
    rec_start: Fraction
    rec_end: Fraction
    src_start: Fraction  # clip source time (seconds) shown at rec_start
    speed: Fraction  # source seconds per record second
    track_speed: Fraction  # the clip's track time per record second (converts transitions)
    prev_transition: otio.schema.Transition | None = None  # only when rec_start is its cut
    next_transition: otio.schema.Transition | None = None  # only when rec_end is its cut
    head: Fraction = Fraction(0)
    tail: Fraction = Fraction(0)


class _Painter:
    def __init__(self) -> None:
        self._track_cache: dict[int, tuple[list, list[Fraction], list[Fraction]]] = {}

    def _layout(self, track: otio.schema.Track):
        """Children of a track with their ranges in track time (seconds), transitions skipped."""
        key = id(track)
        if key not in self._track_cache:
            ranges = track.range_of_all_children()
            items, starts, ends = [], [], []
            children = list(track)
            for i, child in enumerate(children):
                if isinstance(child, otio.schema.Transition):
                    continue
                r = ranges[child]
                prev_t = children[i - 1] if i > 0 else None
                next_t = children[i + 1] if i + 1 < len(children) else None
                items.append(
                    (
                        i,
                        child,
                        prev_t if isinstance(prev_t, otio.schema.Transition) else None,
                        next_t if isinstance(next_t, otio.schema.Transition) else None,
                    )
                )
                start = seconds(r.start_time)
                starts.append(start)
                ends.append(start + seconds(r.duration))
            self._track_cache[key] = (items, starts, ends)
        return self._track_cache[key]

    def track(self, track, a: Fraction, s: Fraction, r0: Fraction, r1: Fraction, path, anc):
        """Pieces of `track` shown over record [r0, r1), where track time a + s*(r - r0) plays."""
        items, starts, ends = self._layout(track)
        if s > 0:
            lo, hi = a, a + s * (r1 - r0)
        elif s == 0:
            lo, hi = a, a
        else:
            lo, hi = a + s * (r1 - r0), a
        first = max(0, bisect.bisect_right(ends, lo) - 1)
        out: list[_Piece] = []
        for k in range(first, len(items)):
            c0, c1 = starts[k], ends[k]
            if c0 > hi or (c0 == hi and s != 0):
                break
            i, child, prev_t, next_t = items[k]
            out += self.child(child, c0, c1, a, s, r0, r1, f"{path}/{i + 1}", anc, prev_t, next_t)
        return out

    def child(self, child, c0, c1, a, s, r0, r1, path, anc, prev_t=None, next_t=None, top=False):
        """Pieces of one child occupying parent time [c0, c1)."""
        if isinstance(child, (otio.schema.Gap, otio.schema.Transition)) or not child.enabled:
            return []
        if isinstance(child, otio.schema.Clip) and isinstance(
            child.media_reference, otio.schema.GeneratorReference
        ):
            return []  # titles, solid colours: no picture to listen to, and see-through
        if s == 0:
            if not (c0 <= a < c1):
                return []
            rr0, rr1, x0, x1 = r0, r1, a, a
        else:
            # Record times at which the parent's time enters and leaves [c0, c1).
            e0, e1 = r0 + (c0 - a) / s, r0 + (c1 - a) / s
            if s < 0:
                e0, e1 = e1, e0
            rr0, rr1 = max(r0, e0), min(r1, e1)
            if rr0 >= rr1:
                return []
            x0, x1 = a + s * (rr0 - r0), a + s * (rr1 - r0)
        inner_start = Fraction(0) if top else seconds(child.trimmed_range().start_time)
        warp = _speed_of(child)
        inner_a = inner_start + warp * (x0 - c0)
        inner_s = s * warp
        if isinstance(child, otio.schema.Clip):
            own_head = s > 0 and x0 == c0
            own_tail = s > 0 and x1 == c1
            return [
                _Piece(
                    clip=child,
                    path=path,
                    ancestors=anc,
                    rec_start=rr0,
                    rec_end=rr1,
                    src_start=inner_a,
                    speed=inner_s,
                    track_speed=s,
                    prev_transition=prev_t if own_head else None,
                    next_transition=next_t if own_tail else None,
                )
            ]
        anc = (*anc, child)
        if isinstance(child, otio.schema.Track):
            if child.kind != otio.schema.TrackKind.Video:
                return []
            return self.track(child, inner_a, inner_s, rr0, rr1, path, anc)
        if isinstance(child, otio.schema.Stack):
            return self.stack(list(child), inner_a, inner_s, rr0, rr1, path, anc)
        return []

    def stack(self, layers, a, s, r0, r1, path, anc, names=None):
        """Top-most picture of stacked layers (last is on top) over record [r0, r1)."""
        uncovered = [(r0, r1)]
        out: list[_Piece] = []
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            if isinstance(layer, otio.schema.Track) and layer.kind != otio.schema.TrackKind.Video:
                continue
            if isinstance(layer, (otio.schema.Gap, otio.schema.Transition)) or not layer.enabled:
                continue
            layer_path = names[i] if names else f"{path}/{i + 1}"
            # A top-level track's time is record time: its own source_range is ignored, as hosts
            # do (EDL conversions write a negative record offset there).
            top = names is not None
            whole = layer.available_range() if top else layer.trimmed_range()
            length = seconds(whole.duration)
            found: list[_Piece] = []
            for u0, u1 in uncovered:
                ua = a + s * (u0 - r0)
                found += self.child(
                    layer, Fraction(0), length, ua, s, u0, u1, layer_path, anc, top=top
                )
            out += found
            uncovered = _subtract(uncovered, [(p.rec_start, p.rec_end) for p in found])
            if not uncovered:
                break
        return out


def _subtract(intervals, taken):
    """Record intervals minus the (sorted-or-not) intervals in `taken`."""
    if not taken:
        return intervals
    taken = sorted(taken)
    out = []
    for u0, u1 in intervals:
        cur = u0
        for t0, t1 in taken:
            if t1 <= cur or t0 >= u1:
                continue
            if t0 > cur:
                out.append((cur, t0))
            cur = max(cur, t1)
            if cur >= u1:
                break
        if cur < u1:
            out.append((cur, u1))
    return out


# --- the plan --------------------------------------------------------------------------------


def timeline_rate(timeline: otio.schema.Timeline) -> float:
    """The timeline's frame rate: its start time's rate, else the first video clip's rate
    (an audio clip's only when there is no video: its rate is often the sample rate)."""
    if timeline.global_start_time is not None:
        return timeline.global_start_time.rate
    video = [clip for track in timeline.video_tracks() for clip in track.find_clips()]
    for clip in video or timeline.find_clips():
        if clip.source_range is not None:
            return clip.source_range.duration.rate
        if clip.available_range() is not None:
            return clip.available_range().duration.rate
    return timeline.duration().rate


MediaCheck = Callable[[str, int | None], str | None]
"""media_check(path or printf pattern, first frame number or None) -> None when readable, else
a message saying what is wrong. The daemon passes one that looks at its files."""


MediaProbe = Callable[[str], "tuple[Fraction, Fraction | None] | None"]
"""media_probe(path) -> (start timecode, duration) in seconds of a movie file, or None. Used for
media references that carry no available_range (EDLs), so a clip at 01:00:10:00 of a file whose
timecode starts at 01:00:00:00 shows its tenth second."""


def _media_of(
    piece: _Piece, media_check: MediaCheck | None, media_probe: MediaProbe | None = None
) -> tuple[dict, tuple[str, str] | None]:
    """Segment arguments for the clip's media (path, image-sequence fields, origin), or an
    error (code, message) for a clip that has no usable media."""
    found, error = _reference_of(piece)
    if error is None and media_check is not None:
        problem = media_check(found["media"], found.get("start_number"))
        if problem:
            name = piece.clip.name or piece.path
            error = ("media_error", f"clip {name!r}: {problem}")
    if error is None and found["end"] is None and media_probe and "image_rate" not in found:
        probed = media_probe(found["media"])
        if probed is not None:
            found["origin"] = probed[0]
            found["end"] = None if probed[1] is None else probed[0] + probed[1]
    return found, error


def _reference_of(piece: _Piece) -> tuple[dict, tuple[str, str] | None]:
    clip = piece.clip
    ref = clip.media_reference
    name = clip.name or piece.path
    avail = ref.available_range if ref is not None else None
    origin = seconds(avail.start_time) if avail is not None else Fraction(0)
    end = origin + seconds(avail.duration) if avail is not None else None
    if isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
        return {"media": media_path(ref.target_url), "origin": origin, "end": end}, None
    if isinstance(ref, otio.schema.ImageSequenceReference) and ref.target_url_base:
        if ref.frame_step != 1:
            # FFmpeg's image2 demuxer reads numbers one by one: it would stop at the first gap.
            return {}, (
                "media_error",
                f"clip {name!r} is an image sequence numbered in steps of {ref.frame_step}; "
                "only sequences numbered one by one can be read: renumber the files or render "
                "the clip to a movie",
            )
        pad = max(1, ref.frame_zero_padding)
        base = media_path(ref.target_url_base)
        if base and not base.endswith(("/", "\\")):
            base += "/"
        # A printf pattern for FFmpeg's image2 demuxer: a literal % in a name is written %%.
        base, prefix, suffix = (part.replace("%", "%%")
                                for part in (base, ref.name_prefix, ref.name_suffix))
        pattern = f"{base}{prefix}%0{pad}d{suffix}"
        return {
            "media": pattern,
            "origin": origin,
            "end": end,
            "image_rate": float(exact_rate(ref.rate)),
            "start_number": int(ref.start_frame),
        }, None
    if ref is None or isinstance(ref, otio.schema.MissingReference) or (
        isinstance(ref, otio.schema.ExternalReference) and not ref.target_url
    ):
        return {}, (
            "media_error",
            f"clip {name!r} has no media linked (offline); relink it in your editor and export "
            "the timeline again",
        )
    return {}, (
        "media_error",
        f"clip {name!r} uses {type(ref).__name__} media, which cannot be read; "
        "render it to a movie file or image sequence",
    )


def _driving_layers(timeline: otio.schema.Timeline, track: int | None):
    videos = [
        (i, t) for i, t in enumerate(timeline.tracks) if t.kind == otio.schema.TrackKind.Video
    ]
    if not videos:
        raise TimelineError("the timeline has no video track; there is no picture to sound")
    names = {i: f"V{n + 1}" for n, (i, _) in enumerate(videos)}
    if track is not None:
        if not 1 <= track <= len(videos):
            raise TimelineError(
                f"video track {track} does not exist; tracks are numbered as editors do, from "
                f"V1 (the bottom one) to V{len(videos)}"
            )
        i, t = videos[track - 1]
        return [t], [names[i]]
    return [t for _, t in videos], [names[i] for i, _ in videos]


def plan_timeline(
    timeline: otio.schema.Timeline,
    options: PlanOptions | None = None,
    *,
    media_check: MediaCheck | None = None,
    media_probe: MediaProbe | None = None,
) -> TimelinePlan:
    """One job per visible clip (mode `clip`) or per unbroken run of picture (`continuous`).
    `media_check` marks clips whose files cannot be read as failed before anything runs (in
    continuous mode such a clip also ends the run); `media_probe` gives the start timecode of
    media whose reference has no available_range."""
    options = options or PlanOptions()
    if options.mode not in MODES:
        raise TimelineError(f"mode {options.mode!r} is not one of {', '.join(MODES)}")
    try:
        rate_value = timeline_rate(timeline)
        rate = exact_rate(rate_value)
        duration = seconds(timeline.tracks.duration())
        pieces = _visible_pieces(timeline, options.track, duration)
    except (otio.exceptions.OTIOError, ValueError) as exc:
        raise TimelineError(
            f"the timeline's structure cannot be read ({exc}); export it again from the editor"
        ) from exc
    media = [_media_of(p, media_check, media_probe) for p in pieces]
    if options.mode == "clip":
        _give_handles(pieces, media)
        jobs, crossfades = _clip_jobs(pieces, media, options)
    else:
        jobs, crossfades = _continuous_jobs(pieces, media, options), []
    return TimelinePlan(jobs, crossfades, rate, rate_value, duration, options)


def _visible_pieces(timeline, track: int | None, duration: Fraction) -> list[_Piece]:
    layers, names = _driving_layers(timeline, track)
    # A chosen track is the only layer painted. Disabled top-level tracks are see-through.
    layers_on = [(t, n) for t, n in zip(layers, names, strict=True) if t.enabled]
    pieces = _Painter().stack(
        [t for t, _ in layers_on],
        Fraction(0),
        Fraction(1),
        Fraction(0),
        duration,
        "",
        (),
        names=[n for _, n in layers_on],
    )
    pieces.sort(key=lambda p: p.rec_start)
    return pieces


@dataclass(frozen=True)
class PictureSpan:
    """What the viewer sees over record [start, end) seconds: `segment` (without handles), or
    None where the clip's media is missing."""

    start: Fraction
    end: Fraction
    segment: Segment | None
    clip: str


def visible_picture(
    timeline: otio.schema.Timeline, track: int | None = None
) -> list[PictureSpan]:
    """The edited picture in record order (dissolves as cuts), for previews."""
    duration = seconds(timeline.tracks.duration())
    spans = []
    for piece in _visible_pieces(timeline, track, duration):
        m, error = _media_of(piece, None)
        segment = None if error else _segment(piece, m, Fraction(0), Fraction(0))
        spans.append(PictureSpan(piece.rec_start, piece.rec_end, segment, piece.clip.name))
    return spans


def _give_handles(pieces: list[_Piece], media) -> None:
    """Where two visible clips meet at a dissolve, give each the media under it, as far as the
    media reaches (available_range), so their sound can cross the dissolve."""
    for k in range(len(pieces) - 1):
        a, b = pieces[k], pieces[k + 1]
        t = a.next_transition
        if t is None or t is not b.prev_transition or a.rec_end != b.rec_start:
            continue
        if media[k][1] is not None or media[k + 1][1] is not None:
            continue
        tail = seconds(t.out_offset) / a.track_speed
        head = seconds(t.in_offset) / b.track_speed
        a_end = media[k][0]["end"]
        if a_end is not None and a.speed > 0:
            a_src_end = a.src_start + a.speed * (a.rec_end - a.rec_start)
            tail = max(Fraction(0), min(tail, (a_end - a_src_end) / a.speed))
        b_origin = media[k + 1][0]["origin"]
        if media[k + 1][0]["end"] is not None and b.speed > 0:
            head = max(Fraction(0), min(head, (b.src_start - b_origin) / b.speed))
        a.tail, b.head = tail, head


def _segment(piece: _Piece, m: dict, head: Fraction, tail: Fraction) -> Segment:
    start = piece.src_start - piece.speed * head - m["origin"]
    length = head + (piece.rec_end - piece.rec_start) + tail
    return Segment(
        media=m["media"],
        start=float(start),
        duration=float(length),
        speed=float(piece.speed),
        image_rate=m.get("image_rate"),
        start_number=m.get("start_number"),
    )


def _label(piece: _Piece) -> str:
    return f"{piece.clip.name or 'clip'} [{piece.path}]"


def _clip_jobs(pieces, media, options):
    jobs: list[ClipJob] = []
    crossfades: list[Crossfade] = []
    for k, (piece, (m, error)) in enumerate(zip(pieces, media, strict=True)):
        prompt, negative = clip_prompts(
            (*piece.ancestors, piece.clip), options.prompt, options.negative_prompt
        )
        jobs.append(
            ClipJob(
                index=k,
                label=_label(piece),
                clip_names=(piece.clip.name,),
                record_start=piece.rec_start,
                record_duration=piece.rec_end - piece.rec_start,
                segments=() if error else (_segment(piece, m, piece.head, piece.tail),),
                prompt=prompt,
                negative_prompt=negative,
                head=piece.head if not error else Fraction(0),
                tail=piece.tail if not error else Fraction(0),
                error=error,
            )
        )
        if k and (piece.head > 0 or pieces[k - 1].tail > 0) and piece.prev_transition:
            t = piece.prev_transition
            crossfades.append(
                Crossfade(k - 1, k, piece.head, pieces[k - 1].tail, t.name, t.transition_type)
            )
    return jobs, crossfades


def _continuous_jobs(pieces, media, options):
    """Runs of picture without a gap (or an unreadable clip) become one generation each: the
    edited picture in order, cut by cut, so score and ambience do not restart at every cut."""
    jobs: list[ClipJob] = []
    run: list[int] = []

    def close_run():
        if not run:
            return
        items = []
        for k in run:
            items += [*pieces[k].ancestors, pieces[k].clip]
        prompt, negative = clip_prompts(items, options.prompt, options.negative_prompt)
        first, last = pieces[run[0]], pieces[run[-1]]
        names = tuple(pieces[k].clip.name for k in run)
        label = f"{first.clip.name or 'clip'} [{first.path}]"
        if len(run) > 1:
            label = f"{label} .. {last.clip.name or 'clip'} [{last.path}] ({len(run)} clips)"
        jobs.append(
            ClipJob(
                index=len(jobs),
                label=label,
                clip_names=names,
                record_start=first.rec_start,
                record_duration=last.rec_end - first.rec_start,
                segments=tuple(_segment(pieces[k], media[k][0], Fraction(0), Fraction(0)) for k in run),
                prompt=prompt,
                negative_prompt=negative,
            )
        )
        run.clear()

    for k, piece in enumerate(pieces):
        m, error = media[k]
        if run and pieces[run[-1]].rec_end != piece.rec_start:
            close_run()
        if error:
            close_run()
            prompt, negative = clip_prompts(
                (*piece.ancestors, piece.clip), options.prompt, options.negative_prompt
            )
            jobs.append(
                ClipJob(
                    index=len(jobs),
                    label=_label(piece),
                    clip_names=(piece.clip.name,),
                    record_start=piece.rec_start,
                    record_duration=piece.rec_end - piece.rec_start,
                    segments=(),
                    prompt=prompt,
                    negative_prompt=negative,
                    error=error,
                )
            )
            continue
        run.append(k)
    close_run()
    return jobs
