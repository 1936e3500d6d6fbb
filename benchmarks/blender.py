"""Blender add-on benchmarks: how long Blender's main thread is held by V2A Bridge.

    python benchmarks/blender.py [--strips 200]

Runs headless Blender (the bpy wheel) with the add-on staged as `make blender-addon` packs it,
against a real daemon with the test ToneEngine, on a 29.97 fps scene of --strips movie strips
over three channels. It times what runs on Blender's main thread: building the OTIO timeline,
the Generate operator, every timer tick while the daemon works (they must stay far below a
frame, 16 ms, for the UI to stay responsive), and the tick that applies the result (one sound
strip per movie strip, one undo step). Prints a table.
"""

from __future__ import annotations

import argparse
import fractions
import importlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bpy  # noqa: E402

from plugins.blender.build import stage_addon  # noqa: E402
from tests.test_blender_addon import _daemon_command, _make_movie  # noqa: E402

addon_utils = importlib.import_module("addon_utils")  # bpy's own scripts, importable after bpy


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strips", type=int, default=200)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="v2a-blender-bench-"))
    endpoint = _free_endpoint()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    daemon = subprocess.Popen(_daemon_command(endpoint, tmp / "cache"), env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stage_addon(tmp / "addon")
        sys.path.insert(0, str(tmp / "addon"))
        addon = addon_utils.enable("v2a_bridge", default_set=True)
        prefs = bpy.context.preferences.addons["v2a_bridge"].preferences
        prefs.endpoint, prefs.start_daemon, prefs.answer_timeout = endpoint, False, 30.0

        movie = _make_movie(tmp / "shot.mp4", 60, fractions.Fraction(30000, 1001))
        scene = bpy.context.scene
        scene.render.fps, scene.render.fps_base = 30, 1.001
        strips = scene.sequence_editor_create().strips
        for i in range(args.strips):
            strip = strips.new_movie(f"Shot {i:04d}", str(movie), 1 + i % 3, 1 + 40 * i)
            strip.frame_final_end = strip.frame_final_start + 30
        scene.v2a.scope, scene.v2a.steps = "ALL", 4
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp / "edit.blend"))

        t0 = time.perf_counter()
        addon.timeline.build_timeline(scene, selected_only=False)
        build_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        bpy.ops.sequencer.v2a_generate()
        operator_s = time.perf_counter() - t0

        runner = addon.session.RUNNER
        ticks, start = [], time.perf_counter()
        while runner.busy:
            t0 = time.perf_counter()
            addon.session._timer()
            ticks.append(time.perf_counter() - t0)
            time.sleep(0.01)
        total_s = time.perf_counter() - start
        apply_s = max(ticks)
        working = sorted(ticks)[:-1]  # every tick but the one that applied the result
        added = sum(1 for s in scene.sequence_editor.strips if s.type == "SOUND")
        assert added == args.strips, runner.state.message
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)

    rows = [
        ("movie strips", f"{args.strips}"),
        ("build OTIO timeline (main thread)", f"{build_s * 1e3:.1f} ms"),
        ("Generate operator (main thread)", f"{operator_s * 1e3:.1f} ms"),
        ("timer ticks while the daemon works", f"{len(working)}"),
        ("  tick median / p99 / max", f"{statistics.median(working) * 1e3:.2f} / "
         f"{working[int(0.99 * (len(working) - 1))] * 1e3:.2f} / {working[-1] * 1e3:.2f} ms"),
        (f"apply tick ({added} sound strips, one undo step)", f"{apply_s * 1e3:.1f} ms"),
        ("whole run, wall (tone engine)", f"{total_s:.2f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'Blender add-on, main thread':<{width}}  value")
    print("-" * (width + 18))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
