"""The timeline subcommands of `v2a`: `timeline`, `generate` and `preview`.

    v2a timeline IN -o OUT.otio --media-dir DIR [--prompt P] [--negative N]
                 [--mode clip|continuous] [--takes N] [--seed S] [--steps N] [--cfg W]
                 [--track T] [--stems] [--resolve] [--placements FILE.json]
    v2a generate VIDEO [--start S] [--end E] [--prompt P] [--negative N] [--seed S] -o OUT.wav
    v2a preview IN.otio -o OUT.mp4

`timeline` reads any timeline the OTIO adapters read, sends the daemon a copy whose media paths
are absolute, shows progress over clips and sampler steps, writes the input timeline with the
new audio tracks, and ends with a table of what happened to each clip. Exit status 2 when some
clips failed (the others are on the timeline), 1 for errors, 3 when no daemon could be reached.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bridge.atomic_file import cannot_write, replacing, write_replacing
from bridge.client import UNTRUSTED_ADVICE

EXIT_SOME_FAILED = 2
UNFAMILIAR_ADVICE = f"{UNTRUSTED_ADVICE} (the file's comment says so too)"
_OUT_ADAPTERS = {".otio": "otio_json", ".otioz": "otioz", ".xml": "fcp_xml"}


def _fail(message: str) -> int:
    print(f"v2a: {message}", file=sys.stderr)
    return 1


# --- v2a timeline ---------------------------------------------------------------------------


def register_timeline(sub) -> None:
    p = sub.add_parser(
        "timeline",
        help="generate sound for every clip of an edit (OTIO, FCP XML, EDL, AAF)",
        description="Generate sound under every visible picture clip of a timeline and write "
        "the timeline back with new audio tracks.",
    )
    p.add_argument("input", type=Path, help="timeline: .otio .otioz .xml (FCP 7) .edl .aaf")
    p.add_argument("-o", "--out", type=Path, required=True, help="timeline to write (.otio)")
    p.add_argument("--media-dir", type=Path, required=True, help="folder for the WAV files")
    p.add_argument("--prompt", default="", help="what it should sound like (all clips)")
    p.add_argument("--negative", default="", help="what it should not sound like")
    p.add_argument("--mode", choices=("clip", "continuous"), default="clip",
                   help="clip: one generation per clip; continuous: one soundtrack across cuts")
    p.add_argument("--takes", type=int, default=1, help="variations per clip (one active)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfg", type=float, default=4.5)
    p.add_argument("--track", type=int, default=None,
                   help="video track that drives the sound (1 = V1); default: top-most picture")
    p.add_argument("--stems", action="store_true", help="one audio track per prompt")
    p.add_argument("--resolve", action="store_true",
                   help="write the OTIO the way DaVinci Resolve imports it (bare paths)")
    p.add_argument("--placements", type=Path, default=None,
                   help="also write the host placements as JSON")
    p.add_argument("--edl-rate", type=float, default=24.0, help="frame rate of an EDL input")
    p.set_defaults(handler=cmd_timeline)


def absolute_media(timeline, base_dir: Path):
    """A copy of `timeline` whose relative media paths are made absolute against `base_dir`
    (the daemon does not know where the timeline file was)."""
    import opentimelineio as otio

    from bridge.planner import media_path

    sent = timeline.deepcopy()
    for clip in sent.find_clips():
        for ref in clip.media_references().values():
            if isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
                path = media_path(ref.target_url, base_dir)
                ref.target_url = os.path.abspath(path) if not _is_url(path) else path
            elif isinstance(ref, otio.schema.ImageSequenceReference) and ref.target_url_base:
                base = media_path(ref.target_url_base, base_dir)
                ref.target_url_base = os.path.abspath(base) + "/"
    return sent


def _is_url(path: str) -> bool:
    return "://" in path


def cmd_timeline(args) -> int:
    import opentimelineio as otio

    from bridge.cli import connect
    from bridge.planner import PlanOptions, TimelineError, plan_timeline, read_timeline
    from bridge.timeline_output import merge_generated_tracks

    if args.takes < 1:
        return _fail("--takes must be at least 1")
    suffix = args.out.suffix.lower()
    if suffix == ".edl":
        return _fail(
            f"cannot write {args.out.name}: an EDL holds one picture track, so the new audio "
            "track would be lost; use .otio (or .otioz, .xml)"
        )
    if suffix not in _OUT_ADAPTERS:
        return _fail(f"cannot write {args.out.name}: use .otio (or .otioz, .xml)")
    try:
        original = read_timeline(args.input, edl_rate=args.edl_rate)
        sent = absolute_media(original, args.input.resolve().parent)
        options = PlanOptions(args.prompt, args.negative, args.mode, args.track)
        plan = plan_timeline(sent, options)  # checks the options here, before the daemon
    except TimelineError as exc:
        return _fail(str(exc))
    media_dir = args.media_dir.expanduser().resolve()
    with connect(args) as client, _Progress(len(plan.jobs)) as progress:
        result = client.generate_timeline(
            otio.adapters.write_to_string(sent, "otio_json"),
            str(media_dir),
            on_event=progress.update,
            prompt=args.prompt,
            negative_prompt=args.negative,
            mode=args.mode,
            takes=args.takes,
            seed=args.seed,
            steps=args.steps,
            cfg=args.cfg,
            track=args.track,
            stems=args.stems,
            resolve=args.resolve,
        )
    body = result.body
    merged = merge_generated_tracks(original, otio.adapters.read_from_string(body["otio"]))
    # The WAVs are in media_dir whatever happens to these files: a re-run finds them there.
    again = f"the same command again reuses the WAVs in {media_dir} (nothing is generated again)"
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        _write_timeline(merged, args.out, plan.rate_value, args.input.resolve().parent)
    except OSError as exc:
        return _fail(f"{cannot_write(args.out, exc)}; {again}")
    if args.placements is not None:
        placements = {"rate": body["rate"], "placements": body["placements"], "failed": body["failed"]}
        try:
            write_replacing(args.placements, json.dumps(placements, indent=2).encode())
        except OSError as exc:
            return _fail(f"{cannot_write(args.placements, exc)}; {args.out} was written, and {again}")
    _summary(plan, body, progress.done, args.out, media_dir)
    return EXIT_SOME_FAILED if body["failed"] else 0


def _write_timeline(timeline, out: Path, rate: float, base_dir: Path) -> None:
    import opentimelineio as otio
    from opentimelineio.adapters.file_bundle_utils import MediaReferencePolicy

    from bridge.timeline_output import is_generated_track

    suffix = out.suffix.lower()
    if suffix == ".xml":
        # FCP XML writes a file's start as a timecode, which a range in 48 kHz samples cannot
        # be: the WAVs' ranges go in timeline frames, as --resolve writes them.
        timeline = timeline.deepcopy()
        for track in timeline.tracks:
            if not is_generated_track(track):
                continue
            for clip in track.find_clips():
                for ref in clip.media_references().values():
                    r = ref.available_range
                    if r is not None:
                        ref.available_range = otio.opentime.TimeRange(
                            r.start_time.rescaled_to(rate), r.duration.rescaled_to(rate)
                        )
    elif suffix == ".otioz":
        # The bundle copies the media in: relative paths are the timeline file's, offline
        # clips stay offline, and it is written anew like the other formats.
        bundled = absolute_media(timeline, base_dir)
        with replacing(out) as (file, part):
            file.close()
            part.unlink()  # the bundle adapter writes only a file that is not there yet
            otio.adapters.write_to_file(bundled, str(part), adapter_name="otioz",
                                        media_policy=MediaReferencePolicy.MissingIfNotFile)
        return
    write_replacing(out, otio.adapters.write_to_string(timeline, _OUT_ADAPTERS[suffix]).encode())


class _Progress:
    """A rich progress display on stderr: one bar over clips, one over the current clip's
    sampler steps."""

    def __init__(self, clips: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.done: dict[str, dict] = {}
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._clips = self._progress.add_task("clips", total=clips)
        self._steps = self._progress.add_task("steps", total=1, visible=False)

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def update(self, event) -> None:
        body = event.body
        if event.type == "progress":
            name = body.get("clip") or ""
            if body["stage"] == "sampling":
                self._progress.update(
                    self._steps, visible=True, total=body["total"], completed=body["step"],
                    description=f"  {name[:40]} sampling",
                )
            else:
                self._progress.update(self._steps, description=f"  {name[:40]} {body['stage']}")
        elif event.type == "clip_done":
            self.done[body["clip"]] = body
            self._progress.update(self._clips, completed=len(self.done))


def _summary(plan, body, done: dict, out: Path, media_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    failed = {f["clip"]: f for f in body["failed"]}
    table = Table(title=f"{out}  ({len(done)} of {len(plan.jobs)} clips have sound)")
    for column in ("#", "clip", "record", "length", "result", "file"):
        table.add_column(column)
    for job in plan.jobs:
        if job.label in failed:
            result = f"[red]failed[/red]: {failed[job.label]['message']}"
            files = ""
        elif job.label in done:
            result = "cached" if done[job.label]["cached"] else "[green]generated[/green]"
            if done[job.label].get("unfamiliar"):
                result += ", [yellow]untrusted[/yellow]"
            files = ", ".join(Path(f).name for f in done[job.label]["files"])
        else:
            result, files = "not placed", ""
        table.add_row(
            str(job.index + 1),
            job.label,
            _timecode(job.record_start, plan),
            f"{float(job.record_duration):.2f} s",
            result,
            files,
        )
    console = Console()
    console.print(table)
    console.print(f"WAVs in {media_dir}")
    if failed:
        console.print(f"[red]{len(failed)} clip(s) failed[/red]; the others are on the timeline")
    untrusted = sum(bool(d.get("unfamiliar")) for d in done.values())
    if untrusted:
        console.print(f"[yellow]{untrusted} clip(s) not to be trusted[/yellow]: {UNFAMILIAR_ADVICE}")


def _timecode(seconds, plan) -> str:
    import opentimelineio as otio

    t = otio.opentime.RationalTime(plan.frames(seconds), plan.rate_value)
    try:
        return otio.opentime.to_timecode(t, plan.rate_value)
    except ValueError:
        return f"{float(seconds):.3f} s"


# --- v2a generate ---------------------------------------------------------------------------


def register_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate sound for (a range of) one video file")
    p.add_argument("media", help="video file (or printf pattern of an image sequence)")
    p.add_argument("start_pos", nargs="?", type=float, default=None, metavar="START",
                   help="seconds of media time (or use --start)")
    p.add_argument("end_pos", nargs="?", type=float, default=None, metavar="END",
                   help="seconds of media time (or use --end)")
    p.add_argument("--start", type=float, default=None, help="seconds (default 0)")
    p.add_argument("--end", type=float, default=None, help="seconds (default: the end)")
    p.add_argument("-o", "--out", type=Path, default=None, help="WAV file to write")
    p.add_argument("--prompt", default="")
    p.add_argument("--negative", "--negative-prompt", dest="negative", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfg", type=float, default=4.5)
    p.add_argument("--image-rate", type=float, default=None, help="frame rate of an image sequence")
    p.add_argument("--start-number", type=int, default=None, help="first frame of an image sequence")
    p.set_defaults(handler=cmd_generate)


def media_duration(path: str) -> float:
    """Seconds of picture in a video file (PyAV), for `--end` left out."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / 1_000_000
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    raise ValueError(f"{path} does not say how long it is; pass --end")


def cmd_generate(args) -> int:
    from bridge.cli import connect, print_progress

    media = os.path.abspath(args.media)
    start = args.start if args.start is not None else (args.start_pos or 0.0)
    end = args.end if args.end is not None else args.end_pos
    if end is None:
        if args.image_rate is not None:
            return _fail("an image sequence needs --end")
        try:
            end = media_duration(media)
        except ValueError as exc:
            return _fail(str(exc))
    if end <= start:
        return _fail(f"--end ({end:g}) must be after --start ({start:g})")
    out = args.out or Path(f"{Path(args.media).stem}_{start:g}-{end:g}_v2a.wav")
    with connect(args) as client:
        event = client.generate(
            media, start, end, prompt=args.prompt, negative_prompt=args.negative,
            seed=args.seed, steps=args.steps, cfg=args.cfg, image_rate=args.image_rate,
            start_number=args.start_number, on_event=print_progress,
        )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    try:
        write_replacing(out, event.blobs[0])
    except OSError as exc:
        # The daemon keeps what it made (journal and cache): asking again costs no generation.
        return _fail(
            f"{cannot_write(out, exc)}; the sound was made (job {event.id}), and the same command "
            "again with an -o that can be written gets it from the daemon's cache at once"
        )
    body = event.body
    print(f"wrote {out} ({body['duration']:.3f} s, {body['channels']} ch, 48 kHz 24-bit, "
          f"model {body['model']}, seed {body['seed']}{', cached' if body['cached'] else ''})")
    if body.get("unfamiliar"):
        print(f"v2a: this sound is not to be trusted: {UNFAMILIAR_ADVICE}", file=sys.stderr)
    return 0


# --- v2a preview ----------------------------------------------------------------------------


def register_preview(sub) -> None:
    p = sub.add_parser("preview", help="render the edit with its generated sound to an MP4")
    p.add_argument("input", type=Path, help="timeline written by `v2a timeline`")
    p.add_argument("-o", "--out", type=Path, required=True, help="MP4 to write")
    p.add_argument("--width", type=int, default=640, help="picture width (height follows)")
    p.set_defaults(handler=cmd_preview)


def cmd_preview(args) -> int:
    from bridge.planner import TimelineError, read_timeline
    from bridge.preview import PreviewError, PreviewOptions, render_preview

    try:
        timeline = absolute_media(read_timeline(args.input), args.input.resolve().parent)
        info = render_preview(timeline, args.out, PreviewOptions(width=args.width))
    except (TimelineError, PreviewError) as exc:
        return _fail(str(exc))
    print(f"wrote {args.out} ({info['seconds']:.2f} s, {info['frames']} frames, "
          f"{info['audio_clips']} generated clips mixed)")
    return 0
