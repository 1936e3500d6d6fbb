"""The manual path for Resolve without Python scripting: export OTIO from Resolve, run
`v2a timeline IN.otio -o OUT.otio --media-dir DIR --resolve` against `v2a-daemon`, and import
the result with File ▸ Import ▸ Timeline (the fake's ImportTimelineFromFile, which refuses
`file://` URLs as Resolve does). Real processes, real ZeroMQ, real movies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_harness import REPO, daemon_command, free_tcp_endpoint, wait_until_answering
from tests.fake_resolve import EXPORT_OTIO, FakeResolve
from tests.fake_resolve.media import edit_timeline, make_movie

SHOTS = [(0, 0, 30), (30, 6, 30), (80, 0, 24)]  # (record, in, out) in frames at 23.976


@pytest.fixture(scope="module")
def daemon_process(tmp_path_factory):
    """`v2a-daemon --engine tests.engines:ToneEngine` on a free loopback port."""
    endpoint = free_tcp_endpoint()
    cache = tmp_path_factory.mktemp("resolve-roundtrip-cache")
    log = open(cache / "daemon.log", "w")  # noqa: SIM115 - closed after the process ends
    process = subprocess.Popen(daemon_command(endpoint, cache), cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        wait_until_answering(endpoint, process)  # on failure, see cache/daemon.log
        yield endpoint
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def v2a(endpoint: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "--endpoint", endpoint,
                           "--no-start", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_export_v2a_timeline_import_back(daemon_process, tmp_path):
    footage = tmp_path / "Footage"
    footage.mkdir()
    movies = [make_movie(str(footage / f"B00{n}.mp4"), 48) for n in range(3)]
    resolve = FakeResolve()
    project, timeline = edit_timeline(resolve, "Reel 2", "23.976", [
        {"path": movies[n], "record": r, "in": i, "out": o} for n, (r, i, o) in enumerate(SHOTS)])

    # 1. File ▸ Export ▸ Timeline ▸ OTIO (what Timeline.Export does).
    exported = tmp_path / "Reel 2.otio"
    assert timeline.Export(str(exported), EXPORT_OTIO)

    # 2. v2a timeline ... --resolve
    media_dir = footage / "V2A Audio"
    out = tmp_path / "Reel 2 V2A.otio"
    done = v2a(daemon_process, "timeline", str(exported), "-o", str(out), "--media-dir",
               str(media_dir), "--resolve", "--prompt", "rain", "--negative", "music")
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "file://" not in text

    # 3. File ▸ Import ▸ Timeline: a name in use is refused; a new name imports.
    pool = project.GetMediaPool()
    assert pool.ImportTimelineFromFile(str(out)) is None
    imported = pool.ImportTimelineFromFile(str(out), {"timelineName": "Reel 2 V2A"})
    assert imported is not None
    assert imported.GetStartFrame() == 86400
    assert [(i.GetStart(), i.GetDuration()) for i in imported.GetItemListInTrack("video", 1)] == [
        (86400 + r, o - i) for r, i, o in SHOTS]
    sound = imported.GetItemListInTrack("audio", imported.GetTrackCount("audio"))
    assert [(i.GetStart(), i.GetDuration()) for i in sound] == [
        (86400 + r, o - i) for r, i, o in SHOTS]
    for item in sound:
        path = item.GetMediaPoolItem().GetClipProperty("File Path")
        assert Path(path).parent == media_dir and Path(path).is_file()


def test_without_resolve_flag_resolve_refuses_the_file(daemon_process, tmp_path):
    """Why --resolve matters: the plain output uses file:// URLs, which Resolve's OTIO import
    does not take."""
    movie = make_movie(str(tmp_path / "C001.mp4"), 24)
    resolve = FakeResolve()
    project, timeline = edit_timeline(resolve, "Reel 3", "23.976", [
        {"path": movie, "record": 0, "in": 0, "out": 24}])
    exported = tmp_path / "Reel 3.otio"
    assert timeline.Export(str(exported), EXPORT_OTIO)
    out = tmp_path / "Reel 3 V2A.otio"
    done = v2a(daemon_process, "timeline", str(exported), "-o", str(out), "--media-dir",
               str(tmp_path / "wavs"))
    assert done.returncode == 0, done.stderr
    assert "file://" in out.read_text()
    assert project.GetMediaPool().ImportTimelineFromFile(
        str(out), {"timelineName": "Reel 3 V2A"}) is None
