"""Timeline benchmarks: planning a 1,000-clip edit, and the per-clip overhead of the whole
timeline path (plan + protocol + fingerprints + WAV files + OTIO) next to engine time.

    python benchmarks/timeline.py [--clips 1000] [--daemon-clips 60] [--engine-ms 500]

Goals: planning 1,000 clips <= 1 s; overhead <= 5 % of engine time. The engine here is the
test ToneEngine slowed to --engine-ms per clip (a real model takes seconds per clip); the
overhead is measured as wall time minus time spent inside the engine, so the ratio for any
engine speed follows from the absolute per-clip figure, which is printed too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import opentimelineio as otio  # noqa: E402

from benchmarks.timing import median_seconds  # noqa: E402
from bridge.client import Client  # noqa: E402
from bridge.planner import parse_timeline_json, plan_timeline  # noqa: E402
from bridge.timeline_output import GeneratedClip, Take, build_output  # noqa: E402
from daemon.server import Server, ServerConfig  # noqa: E402
from tests.engines import ToneEngine  # noqa: E402
from tests.timeline_kit import clip, dissolve, gap, timeline, track, write_movie  # noqa: E402


def big_edit(n: int, media=("/media/a.mov", "/media/b.mov", "/media/c.mov")):
    """n clips on V1 with a dissolve every 10th cut and a gap every 25th, plus a V2 insert
    every 50 clips (so the top-most-picture logic has work to do)."""
    items = []
    for i in range(n):
        if i and i % 25 == 0:
            items.append(gap(6))
        elif i and i % 10 == 0:
            items.append(dissolve(4, 4))
        items.append(clip(f"shot {i}", 24 + i % 40, 24 + i % 13, media=media[i % len(media)],
                          avail=(0, 2000)))
    v1 = track(*items)
    inserts = []
    for _ in range(n // 50):
        inserts += [gap(24 * 40), clip("insert", 0, 24, media=media[0], avail=(0, 2000))]
    return timeline(v1, track(*inserts))


class TimedEngine(ToneEngine):
    """The test engine, taking `seconds` per clip, counting the time spent inside it."""

    def __init__(self, seconds: float):
        super().__init__(step_delay=seconds / 25)
        self.inside = 0.0

    def generate(self, request, progress, cancelled):
        t0 = time.perf_counter()
        try:
            return super().generate(request, progress, cancelled)
        finally:
            self.inside += time.perf_counter() - t0


def planning(n: int) -> list[tuple[str, float]]:
    edit = big_edit(n)
    text = otio.adapters.write_to_string(edit, "otio_json")
    plan = plan_timeline(edit)
    made = {j.index: GeneratedClip(j, [Take(f"/w/{j.index}.wav", 0)]) for j in plan.jobs}
    return [
        (f"jobs planned from {n} clips", len(plan.jobs)),
        ("parse OTIO JSON (s)", median_seconds(lambda: parse_timeline_json(text), 5)),
        ("plan_timeline (s)", median_seconds(lambda: plan_timeline(edit), 5)),
        ("build_output + placements (s)", median_seconds(lambda: build_output(edit, plan, made), 5)),
        ("write result OTIO JSON (s)", median_seconds(
            lambda: otio.adapters.write_to_string(build_output(edit, plan, made)[0], "otio_json"),
            3,
        )),
    ]


def overhead(n: int, engine_ms: float) -> list[tuple[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        media = tuple(str(write_movie(tmp / f"{k}.mp4", 6.0)) for k in "abc")
        edit = timeline(track(*[
            clip(f"shot {i}", 24, 48, media=media[i % 3], avail=(0, 144)) for i in range(n)
        ]))
        text = otio.adapters.write_to_string(edit, "otio_json")
        engine = TimedEngine(engine_ms / 1000)
        server = Server(ServerConfig(bind="tcp://127.0.0.1:0", device="cpu", cache_dir=tmp / "c"),
                        engine)
        server.start()
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        client = Client(server.endpoint, timeout=60)
        try:
            client.generate_timeline(text, str(tmp / "warm"), steps=1)  # loads the engine
            engine.inside = 0.0
            t0 = time.perf_counter()
            client.generate_timeline(text, str(tmp / "w"), steps=25, seed=1)
            wall = time.perf_counter() - t0
            inside = engine.inside
            t0 = time.perf_counter()
            client.generate_timeline(text, str(tmp / "w"), steps=25, seed=1)
            cached = time.perf_counter() - t0
        finally:
            client.close()
            server.request_stop()
            thread.join(30)
    per_clip = (wall - inside) / n
    return [
        (f"clips through the daemon ({engine_ms:g} ms engine)", n),
        ("wall time (s)", wall),
        ("inside the engine (s)", inside),
        ("overhead per clip (ms)", per_clip * 1000),
        ("overhead / engine time (%)", 100 * (wall - inside) / inside),
        ("engine time per clip for 5 % (ms)", per_clip * 1000 / 0.05),
        ("re-run, all cached: per clip (ms)", cached / n * 1000),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--daemon-clips", type=int, default=60)
    parser.add_argument("--engine-ms", type=float, default=500.0)
    args = parser.parse_args()
    rows = planning(args.clips) + overhead(args.daemon_clips, args.engine_ms)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  ----------")
    for name, value in rows:
        text = f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
        print(f"{name:<{width}}  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
