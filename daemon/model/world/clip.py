"""One world clip from a seed: shots with sources and ambiences, drawn and heard in step.

`generate_clip(seed)` is deterministic: the same seed and config give the same frames, audio,
caption and events. A clip is 1-3 shots separated by cuts; each shot has a background, maybe an
ambience (with its moving texture), maybe a music bed (restarting on the cut), and up to three
sources of hits. The audio is the sum of every source's sound at its own level, a noise floor,
and a peak normalisation; the picture gets camera shake (handheld drift and a jolt on heavy
hits), sensor grain and, optionally, a real H.264 round trip.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from . import beds, scenery
from .canvas import Canvas
from .captions import CLASSES, caption, negative_caption
from .sources import Door, Dropper, Event, Flash, Shot, Source, Swipe, Walker

EVENT_CLASSES = tuple(c for c in CLASSES if not c.startswith("music_")
                      and c not in beds.AMBIENCES)
AMBIENCE_CLASSES = beds.AMBIENCES
MUSIC_CLASSES = tuple(f"music_{m}" for m in beds.MOODS)


@dataclass(frozen=True)
class WorldConfig:
    """How clips are drawn. Probabilities are per clip unless said per shot."""

    width: int = 128
    height: int = 72
    fps: int = 25
    rate: int = 16_000
    duration: float = 8.0
    one_cut_probability: float = 0.25
    two_cuts_probability: float = 0.1
    ambience_probability: float = 0.7  # per shot
    music_probability: float = 0.25
    max_event_sources: int = 3  # per shot
    caption_none_probability: float = 0.15
    shake_probability: float = 0.4
    compress_probability: float = 0.0  # H.264 round trip of the picture (slower)
    max_grain: float = 0.03
    noise_floor_db: tuple[float, float] = (-62.0, -48.0)  # the mix's noise floor, dB re full scale

    def __post_init__(self):
        if self.rate % self.fps:
            raise ValueError(f"rate {self.rate} must be a multiple of fps {self.fps} so every "
                             "frame starts on a whole audio sample")
        if self.width % 2 or self.height % 2:
            raise ValueError("width and height must be even (H.264 4:2:0 needs it)")

    @property
    def frames(self) -> int:
        return int(round(self.duration * self.fps))

    @property
    def samples(self) -> int:
        return self.frames * (self.rate // self.fps)


EVAL_SYNC = WorldConfig(music_probability=0.0, caption_none_probability=0.0)
"""Evaluation world for onsets: no music beds (their notes are not caused by the picture)."""


@dataclass
class Clip:
    seed: int
    frames: np.ndarray  # (T, H, W, 3) uint8 at fps
    audio: np.ndarray  # (samples,) float32 mono at rate
    caption: str | None
    events: list[Event]
    classes: list[str]  # present sound classes, most prominent first
    cuts: list[float]  # seconds
    fps: int
    rate: int
    levels_db: dict = field(default_factory=dict)  # class -> RMS level in the mix, dB
    negative_caption: str | None = None  # names sounds not heard (generate_clip's `unheard`)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.rate

    @property
    def onset_times(self) -> np.ndarray:
        return np.array(sorted(e.time for e in self.events if e.onset), dtype=np.float64)

    @property
    def primary_class(self) -> str | None:
        return self.classes[0] if self.classes else None


def _make_source(cls: str, name: str, rng, shot: Shot, config: WorldConfig) -> Source:
    w, h, fps = config.width, config.height, config.fps
    if cls.startswith("impact_"):
        return Dropper(name, rng, shot, w, fps, cls.removeprefix("impact_"))
    if cls.startswith("footsteps_"):
        return Walker(name, rng, shot, w, fps, cls.removeprefix("footsteps_"))
    if cls == "whoosh":
        return Swipe(name, rng, shot, w, h, fps)
    if cls in ("zap", "click"):
        return Flash(name, rng, shot, w, h, fps, cls)
    if cls == "door_slam":
        return Door(name, rng, shot, w, fps)
    raise ValueError(f"{cls!r} is not an event class; expected one of {EVENT_CLASSES}")


# Families whose members look alike: a shot holds at most one member of each.
def _family(cls: str) -> str:
    return cls.split("_")[0] if cls.startswith(("impact_", "footsteps_")) else (
        "flash" if cls in ("zap", "click") else cls)


def _shot_bounds(rng, config: WorldConfig) -> list[tuple[int, int]]:
    frames = config.frames
    roll = rng.random()
    cuts = 2 if roll < config.two_cuts_probability else (
        1 if roll < config.two_cuts_probability + config.one_cut_probability else 0)
    min_shot = int(2 * config.fps)
    if cuts and frames < (cuts + 1) * min_shot:
        cuts = 0
    # Spread the spare frames over the shots so every shot keeps at least min_shot frames.
    slack = np.sort(rng.integers(0, frames - (cuts + 1) * min_shot + 1, cuts))
    points = [0] + [int((i + 1) * min_shot + slack[i]) for i in range(cuts)]
    points.append(frames)
    return list(zip(points[:-1], points[1:], strict=True))


def _pick_classes(rng, config: WorldConfig) -> list[str]:
    weights = {"impact": 0.34, "footsteps": 0.22, "whoosh": 0.12, "flash": 0.16, "door_slam": 0.16}
    count = int(rng.choice(np.arange(config.max_event_sources + 1),
                           p=np.array([0.08, 0.47, 0.32, 0.13][:config.max_event_sources + 1])
                           / sum([0.08, 0.47, 0.32, 0.13][:config.max_event_sources + 1])))
    families = list(rng.choice(list(weights), size=count, replace=False,
                               p=np.array(list(weights.values())) / sum(weights.values())))
    members = {f: [c for c in EVENT_CLASSES if _family(c) == f] for f in weights}
    return [str(rng.choice(members[f])) for f in families]


def generate_clip(seed: int, config: WorldConfig = WorldConfig(),
                  classes: tuple[str, ...] | None = None, cuts: bool = True,
                  unheard: tuple[str, ...] = ()) -> Clip:
    """Generate the clip for `seed`. `classes` forces what sounds in every shot (event,
    ambience and music classes, e.g. ("impact_glass", "rain")); `cuts=False` keeps one shot.

    `unheard` names classes for the clip's negative caption: any of them the clip has are
    still drawn but left out of the mix, and the rest keeps its level, so the picture is the
    one the seed draws anyway. Naming a class the clip lacks changes only the negative caption.
    This is how a network learns to drop what a negative prompt names even where the picture
    shows it."""
    unknown = [c for c in (classes or ()) + tuple(unheard) if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown sound classes {unknown}; choose from {CLASSES}")
    rng = np.random.default_rng(seed)
    fps, rate, hop = config.fps, config.rate, config.rate // config.fps
    frames, n = config.frames, config.samples
    canvas = Canvas(frames, config.height, config.width)
    bounds = _shot_bounds(rng, config) if cuts else [(0, frames)]
    shots: list[Shot] = []
    placed: list[tuple[Source, Shot]] = []
    stems: dict[str, np.ndarray] = {}
    events: list[Event] = []
    clip_music = (classes is None and rng.random() < config.music_probability)

    def add_stem(cls: str, audio: np.ndarray) -> None:
        stems[cls] = stems.get(cls, np.zeros(n, np.float32)) + audio

    for index, (start, end) in enumerate(bounds):
        floor = float(rng.uniform(0.72, 0.88) * config.height)
        sky = (tuple(rng.uniform(0, 1, 3)), tuple(rng.uniform(0, 1, 3)))
        shot = Shot(start, end, floor, sky, tuple(rng.uniform(0, 0.8, 3)))
        if index:
            shot.busy.add(start)
        shots.append(shot)
        scenery.draw_background(canvas, shot, rng)
        if classes is None:
            event_classes = _pick_classes(rng, config)
            amb = (str(rng.choice(AMBIENCE_CLASSES)) if rng.random() < config.ambience_probability
                   else None)
            mood = str(rng.choice(beds.MOODS)) if clip_music else None
        else:
            event_classes = [c for c in classes if c in EVENT_CLASSES]
            ambs = [c for c in classes if c in AMBIENCE_CLASSES]
            moods = [c.removeprefix("music_") for c in classes if c in MUSIC_CLASSES]
            amb, mood = (ambs[0] if ambs else None), (moods[0] if moods else None)
        shot_n = (end - start) * hop
        if amb is not None:
            bed, amb_events = scenery.plan_ambience(rng, amb, shot, config.width, fps)
            events += amb_events
            sound = beds.ambience(rng, amb, bed, rate, fps)
            level = 10 ** (rng.uniform(-32, -20) / 20)
            # Short fades so an ambience that changes on a cut does not click.
            fade = np.ones(shot_n, np.float32)
            ramp = int(0.01 * rate)
            fade[:ramp], fade[-ramp:] = np.linspace(0, 1, ramp), np.linspace(1, 0, ramp)
            audio = np.zeros(n, np.float32)
            audio[start * hop:end * hop] = sound * fade * level
            add_stem(amb, audio)
            scenery.draw_ambience(canvas, amb, bed, shot)
        if mood is not None:
            sound, notes = beds.music(rng, mood, end - start, rate, fps)
            audio = np.zeros(n, np.float32)
            audio[start * hop:end * hop] = sound * 10 ** (rng.uniform(-28, -18) / 20)
            add_stem(f"music_{mood}", audio)
            events += [Event(start / fps + t, start + int(round(t * fps)), f"music_{mood}",
                             "music", onset=False, strength=0.3, duration=0.1) for t in notes]
        for k, cls in enumerate(event_classes):
            source = _make_source(cls, f"{cls}#{index}.{k}", rng, shot, config)
            placed.append((source, shot))
            gain = 10 ** (rng.uniform(-6, 0) / 20)
            add_stem(cls, source.sound(rng, n, rate, fps) * gain)
            events += source.events
    # Sources draw after every background so a later shot's floor never covers them.
    for source, shot in placed:
        source.draw(canvas, shot)

    floor = rng.normal(0, 10 ** (rng.uniform(*config.noise_floor_db) / 20), n).astype(np.float32)
    # The level is set on the whole mix, so leaving a stem out leaves the others as loud.
    peak = float(np.max(np.abs(sum(stems.values(), np.zeros(n, np.float32)) + floor)))
    scale = float(rng.uniform(0.5, 0.95)) / peak if peak > 0 else 1.0
    heard = {c: s for c, s in stems.items() if c not in unheard}
    mix = sum(heard.values(), np.zeros(n, np.float32))
    mix += floor
    mix *= scale
    levels = {c: float(20 * np.log10(np.sqrt(np.mean((s * scale) ** 2)) + 1e-12))
              for c, s in heard.items()}
    present = sorted(levels, key=lambda c: -levels[c])

    shake = _camera_shake(rng, config, events)  # an unheard slam still jolts the camera
    events = [e for e in events if e.cls not in unheard]
    grain = float(rng.uniform(0, config.max_grain))
    pictures = canvas.finish(shake, grain, rng)
    if rng.random() < config.compress_probability:
        pictures = compress_frames(pictures, fps, crf=int(rng.integers(23, 38)))
    events.sort(key=lambda e: (e.time, e.cls))
    return Clip(seed=seed, frames=pictures, audio=mix.astype(np.float32),
                caption=caption(present, rng, config.caption_none_probability),
                negative_caption=negative_caption(unheard, rng) if unheard else None,
                events=events, classes=present, cuts=[s.start / fps for s in shots[1:]],
                fps=fps, rate=rate, levels_db=levels)


def _camera_shake(rng, config: WorldConfig, events: list[Event]) -> np.ndarray:
    """(frames, 2) camera offsets: optional handheld drift plus a jolt on every heavy hit
    (door slams and strong impacts) starting on the hit's frame."""
    frames = config.frames
    shake = np.zeros((frames, 2), np.float32)
    if rng.random() < config.shake_probability:
        amp = rng.uniform(0.5, 1.5)
        shake += amp * (np.stack([scenery.smooth_noise(rng, frames, 6),
                                  scenery.smooth_noise(rng, frames, 6)], 1) - 0.5) * 2
    for ev in events:
        if ev.onset and (ev.cls == "door_slam" or (ev.cls.startswith("impact_")
                                                   and ev.strength > 0.8)):
            for k, a in enumerate((2.5, -1.5, 0.7)):
                if ev.frame + k < frames:
                    shake[ev.frame + k, 0] += a * ev.strength
    return shake


def compress_frames(frames: np.ndarray, fps: int, crf: int = 28) -> np.ndarray:
    """Round-trip frames through a real H.264 encoder (what footage has been through)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as inp:
        decoded = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    return np.stack(decoded)[: len(frames)]


def write_mp4(clip: Clip, path: str, crf: int = 20, audio: bool = True) -> None:
    """Write the clip as an H.264 .mp4 (with its audio as AAC when `audio`)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=clip.fps, options={"crf": str(crf)})
        video.width, video.height = clip.frames.shape[2], clip.frames.shape[1]
        video.pix_fmt = "yuv420p"
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=clip.rate, layout="mono")
        for image in clip.frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None:
            block = 1024
            pcm = clip.audio.astype(np.float32)
            for i in range(0, len(pcm), block):
                frame = av.AudioFrame.from_ndarray(pcm[None, i:i + block], format="flt",
                                                   layout="mono")
                frame.sample_rate = clip.rate
                frame.pts = i
                frame.time_base = Fraction(1, clip.rate)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
