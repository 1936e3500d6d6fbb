"""`make demo`: a short edit made on the spot, sound generated for it by the embedded model.

Makes three shots with clear visual events (the WORLD generator: objects dropping on glass, a
figure walking on gravel, a door slamming), cuts them into an edit at 25 fps with a dissolve
and a gap, starts a daemon with the default engine (the embedded `tiny` V2A model), runs the
timeline through it, and writes into ./demo-out/: the source shots, `edit.otio` (the edit as
made), `edit_v2a.otio` (with the generated V2A track), the WAVs, and `preview.mp4` (picture +
generated sound). Without model weights installed it says so and stops: there is no stand-in.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

SHOTS = (
    ("glass", 11, ("impact_glass",)),
    ("gravel", 12, ("footsteps_gravel",)),
    ("door", 13, ("door_slam",)),
)
RATE = 25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_weights() -> str | None:
    """None when the default engine has weights, else the engine's own explanation."""
    from daemon.model.engine import WeightsNotInstalled, resolve_weights

    try:
        resolve_weights(None)
    except WeightsNotInstalled as exc:
        return str(exc)
    return None


def make_shots(folder: Path) -> dict[str, Path]:
    """Picture-only MP4s (their synthetic sound is left out: the model must make it)."""
    from daemon.model.world import WorldConfig, generate_clip, write_mp4

    config = WorldConfig(width=256, height=144, fps=RATE, duration=4.0)
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, seed, classes in SHOTS:
        clip = generate_clip(seed, config, classes=classes, cuts=False)
        path = folder / f"{name}.mp4"
        write_mp4(clip, str(path), audio=False)
        made[name] = path
    return made


def make_edit(shots: dict[str, Path]):
    """glass (2 s) -dissolve- gravel (2.5 s), 1 s gap, door (2 s) with a prompt marker."""
    import opentimelineio as otio

    def rt(frames):
        return otio.opentime.RationalTime(frames, RATE)

    def shot(name, start, frames, note=None):
        ref = otio.schema.ExternalReference(
            target_url=str(shots[name].resolve()),
            available_range=otio.opentime.TimeRange(rt(0), rt(4 * RATE)),
        )
        clip = otio.schema.Clip(
            name=name, media_reference=ref, source_range=otio.opentime.TimeRange(rt(start), rt(frames))
        )
        if note:
            clip.markers.append(
                otio.schema.Marker(name=note, marked_range=otio.opentime.TimeRange(rt(start), rt(1)))
            )
        return clip

    edit = otio.schema.Timeline(name="V2A demo", global_start_time=rt(0))
    picture = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    picture.append(shot("glass", 25, 50))
    picture.append(
        otio.schema.Transition(
            name="Cross Dissolve",
            transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
            in_offset=rt(6),
            out_offset=rt(6),
        )
    )
    picture.append(shot("gravel", 25, 62))
    picture.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(rt(0), rt(RATE))))
    picture.append(shot("door", 25, 50, note="v2a: a heavy door slams shut"))
    edit.tracks.append(picture)
    return edit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--prompt", default="")
    parser.add_argument("--engine", default=None,
                        help="module:factory of another engine (tests use tests.engines:ToneEngine)")
    args = parser.parse_args(argv)

    problem = None if args.engine else check_weights()
    if problem:
        print("make demo: the embedded V2A model is not installed, so there is nothing to run.")
        print(problem)
        return 1

    import opentimelineio as otio

    from bridge.client import Client
    from bridge.preview import render_preview
    from bridge.timeline_cli import _Progress
    from bridge.timeline_output import merge_generated_tracks

    out = args.out.resolve()
    print(f"making the sample edit in {out} ...")
    shots = make_shots(out / "media")
    edit = make_edit(shots)
    otio.adapters.write_to_file(edit, str(out / "edit.otio"))

    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    log_path = out / "daemon.log"
    print(f"starting the daemon on {endpoint} (log: {log_path}) ...")
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "--bind", endpoint, "--cache-dir", str(out / "cache"),
             *(["--engine", args.engine] if args.engine else [])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    client = Client(endpoint, timeout=60.0)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client.ping(timeout=2.0)
                break
            except Exception:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    print(f"make demo: the daemon did not start; see {log_path}")
                    return 1
        started = time.monotonic()
        with _Progress(3) as progress:
            result = client.generate_timeline(
                otio.adapters.write_to_string(edit, "otio_json"),
                str(out / "wavs"),
                on_event=progress.update,
                prompt=args.prompt,
                steps=args.steps,
            )
        took = time.monotonic() - started
        body = result.body
        for failure in body["failed"]:
            print(f"  {failure['clip']}: {failure['code']}: {failure['message']}")
        final = merge_generated_tracks(edit, otio.adapters.read_from_string(body["otio"]))
        otio.adapters.write_to_file(final, str(out / "edit_v2a.otio"))
        print("rendering the preview ...")
        render_preview(final, out / "preview.mp4")
        with contextlib.suppress(Exception):  # the daemon is stopped below in any case
            client.shutdown()
    finally:
        client.close()
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.terminate()
            daemon.wait(timeout=10)

    print()
    print(f"done in {took:.1f} s: {len(body['placements'])} clips with generated sound, "
          f"{len(body['failed'])} failed")
    print(f"  edit as made:        {out / 'edit.otio'}")
    print(f"  edit with V2A track: {out / 'edit_v2a.otio'}")
    print(f"  generated WAVs:      {out / 'wavs'}")
    print(f"  preview:             {out / 'preview.mp4'}")
    print(f"watch it with:  ffplay {out / 'preview.mp4'}   (or open it in any video player)")
    return 1 if body["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
