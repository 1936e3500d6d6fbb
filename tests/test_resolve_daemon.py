"""V2A Generate in (fake) Resolve against a real daemon: real ZeroMQ, job queue, worker, the
generate_timeline runner and real movies, with `tests.engines.ToneEngine` in place of the model."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import wave

import pytest

from bridge.client import Client, DaemonError, DaemonUnavailable
from daemon.server import Server, ServerConfig
from plugins.resolve.v2a_resolve import (
    GenerateSettings,
    TimelineGeneration,
    generate_for_timeline,
    run_from_menu,
)
from tests.daemon_harness import (
    REPO,
    daemon_command,
    free_tcp_endpoint,
    running_server,
    wait_until_answering,
)
from tests.engines import ToneEngine
from tests.fake_resolve import EXPORT_OTIO, FakeBmd, FakeFusion, FakeResolve, FakeUIManager
from tests.fake_resolve.media import edit_timeline, make_movie

# Three shots with a gap and trimmed sources, as an editor would cut them (frames at 23.976).
SHOTS = [
    {"shot": 0, "record": 0, "in": 0, "out": 36},
    {"shot": 1, "record": 36, "in": 12, "out": 48},
    {"shot": 2, "record": 90, "in": 6, "out": 30},
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """The daemon's own server loop, worker and store, serving from a thread of this process."""
    config = ServerConfig(bind="tcp://127.0.0.1:0",
                          cache_dir=tmp_path_factory.mktemp("resolve-daemon-cache"))
    server = Server(config, ToneEngine())
    server.start()
    thread = threading.Thread(target=server.serve_forever, name="resolve-test-daemon",
                              daemon=True)
    thread.start()
    try:
        yield server.endpoint
    finally:
        server.request_stop()
        thread.join(30)


@pytest.fixture
def footage(tmp_path):
    """Real movies in a media folder of their own (the audio goes beside them)."""
    media = tmp_path / "Footage"
    media.mkdir()
    return [make_movie(str(media / f"A00{n}.mp4"), 60) for n in range(3)]


def cut(resolve, footage, rate="23.976", start_timecode="01:00:00:00", name="Scene 12"):
    shots = [{"path": footage[s["shot"]], "record": s["record"], "in": s["in"], "out": s["out"]}
             for s in SHOTS]
    return edit_timeline(resolve, name, rate, shots, start_timecode=start_timecode)


def audio_items(timeline, track):
    return [(i.GetStart(), i.GetDuration(), i.GetMediaPoolItem().GetClipProperty("File Path"))
            for i in timeline.GetItemListInTrack("audio", track)]


def test_sound_lands_at_absolute_frames_on_a_new_stereo_track(daemon, footage):
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    lines: list[str] = []
    report = generate_for_timeline(resolve, "rain on a tin roof", "music", endpoint=daemon,
                                   seed=7, on_progress=lines.append)
    assert report.complete, report.summary()
    assert report.audio_tracks == [2]
    assert timeline.GetTrackSubType("audio", 2) == "stereo"
    landed = audio_items(timeline, 2)
    assert [(start, duration) for start, duration, _ in landed] == [
        (86400 + s["record"], s["out"] - s["in"]) for s in SHOTS]
    media_dir = os.path.join(os.path.dirname(footage[0]), "V2A Audio", "Scene 12")
    assert report.media_dir == media_dir
    for _, duration, path in landed:
        assert os.path.dirname(path) == media_dir
        with wave.open(path) as w:  # exactly the shot's length at 48 kHz
            assert w.getframerate() == 48000
            assert w.getnframes() == round(duration * 48000 * 1001 / 24000)
    bins = project.GetMediaPool().GetRootFolder().GetSubFolderList()
    assert [b.GetName() for b in bins] == ["V2A Audio"] and len(bins[0].GetClipList()) == 3
    assert any("accepted" in line for line in lines) and "3 sound(s) placed" in lines[-1]
    assert os.path.isfile(report.otio_path)

    # Run again: the daemon's cache answers, the WAVs already in the pool are reused, and the
    # sound goes on another new track instead of colliding with the first run's.
    again = generate_for_timeline(resolve, "rain on a tin roof", "music", endpoint=daemon,
                                  seed=7, on_progress=None)
    assert again.complete and again.audio_tracks == [3]
    assert [(s, d) for s, d, _ in audio_items(timeline, 3)] == [
        (s, d) for s, d, _ in landed]
    assert len(bins[0].GetClipList()) == 3


def test_drop_frame_timeline_places_sound_after_its_drop_frame_start(daemon, footage):
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage, rate="29.97 DF", start_timecode="01:00:00;00")
    assert timeline.GetStartFrame() == 107892
    report = generate_for_timeline(resolve, endpoint=daemon, on_progress=None)
    assert report.complete, report.summary()
    assert [(s, d) for s, d, _ in audio_items(timeline, 2)] == [
        (107892 + s["record"], s["out"] - s["in"]) for s in SHOTS]


def test_a_clip_with_missing_media_is_reported_and_the_rest_placed(daemon, footage):
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    os.remove(footage[1])  # the editor's drive lost a file: the clip goes offline
    report = generate_for_timeline(resolve, endpoint=daemon, on_progress=None)
    assert not report.complete
    assert [f["clip"].split()[0] for f in report.failed] == ["A001.mp4"]
    assert "A001.mp4" in report.summary() and "not generated" in report.summary()
    assert [(s, d) for s, d, _ in audio_items(timeline, 2)] == [
        (86400 + s["record"], s["out"] - s["in"]) for s in SHOTS if s["shot"] != 1]


def test_dialog_generates_without_holding_the_ui_loop(daemon, footage, tmp_path):
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    settings = tmp_path / "V2A Generate.json"
    settings.write_text(f'{{"endpoint": "{daemon}", "takes": 1}}')
    seen: dict[str, object] = {}

    def generate(window):
        window.Find("Prompt").Text = "crickets at night"
        window.Find("Seed").Value = 3
        window._click("Generate")

    # The editor clicks Generate, then looks at the dialog every 0.2 s and closes it once the
    # summary shows.
    manager = FakeUIManager([(0.05, generate)] + [
        (0.5 + 0.2 * n, _close_when_placed(seen)) for n in range(250)], max_run_s=60)
    report = run_from_menu(resolve, fu=FakeFusion(manager), bmd=FakeBmd(),
                           settings_path=str(settings))
    assert report is not None and report.complete, seen
    assert "3 sound(s) placed" in str(seen["progress"])
    assert len(audio_items(timeline, 2)) == 3
    # Every handler (timer ticks included) gave the loop back quickly; result placement,
    # the slowest, is a handful of Resolve calls.
    assert max(manager.handler_seconds) < 1.0
    assert sorted(manager.handler_seconds)[len(manager.handler_seconds) // 2] < 0.1


def _close_when_placed(seen):
    def action(window):
        if not seen.get("closed") and "placed" in str(window.Find("Progress").Text):
            seen["progress"] = window.Find("Progress").Text
            seen["closed"] = True
            window._click("Cancel")
    return action


def test_a_sound_not_to_be_trusted_is_orange_on_the_timeline_and_named_in_the_summary(
        footage, tmp_path):
    """The engine finds the middle shot's picture unlike any it learnt from: its sound is placed
    like the others, but its item is orange, its progress line says so, and the summary names
    it and only it."""
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    lines: list[str] = []
    with running_server(tmp_path / "cache", ToneEngine(unfamiliar="A001.mp4")) as server:
        report = generate_for_timeline(resolve, endpoint=server.endpoint,
                                       on_progress=lines.append)
    assert report.complete, report.summary()
    items = timeline.GetItemListInTrack("audio", 2)
    assert [i.GetClipColor() for i in items] == ["", "Orange", ""]
    assert [i.GetClipColor() for i in timeline.GetItemListInTrack("video", 1)] == ["", "", ""]
    [untrusted] = [p for p in report.placed if p.unfamiliar]
    assert untrusted.clip.startswith("A001.mp4") and untrusted.marked
    assert untrusted.file == items[1].GetMediaPoolItem().GetClipProperty("File Path")
    flagged = [line for line in report.summary().splitlines() if "not to be trusted" in line]
    assert flagged == [
        f"  not to be trusted: {untrusted.clip} ({os.path.basename(untrusted.file)}): the picture "
        "is unlike any the model learnt from, and much of the sound ran to the loudest a sound "
        "can be; listen before you keep it (marked orange)"]
    done = [line for line in lines if line.startswith("V2A: done")]
    assert len(done) == 3
    assert [line.split()[2] for line in done if line.endswith(", not to be trusted")] == [
        "A001.mp4"]


def test_the_dialog_shows_which_sounds_are_not_to_be_trusted(footage, tmp_path):
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    seen: dict[str, object] = {}
    with running_server(tmp_path / "cache", ToneEngine(unfamiliar="A002.mp4")) as server:
        settings = tmp_path / "V2A Generate.json"
        settings.write_text(f'{{"endpoint": "{server.endpoint}"}}')
        manager = FakeUIManager([(0.05, lambda w: w._click("Generate"))] + [
            (0.5 + 0.2 * n, _close_when_placed(seen)) for n in range(250)], max_run_s=60)
        report = run_from_menu(resolve, fu=FakeFusion(manager), bmd=FakeBmd(),
                               settings_path=str(settings))
    assert report is not None and report.complete, seen
    shown = str(seen["progress"]).splitlines()
    assert [line.split()[4] for line in shown if "not to be trusted" in line] == ["A002.mp4"]
    assert [i.GetClipColor() for i in timeline.GetItemListInTrack("audio", 2)] == [
        "", "", "Orange"]


def test_the_result_otio_imports_back_into_resolve(daemon, footage):
    """What the editor can do by hand when placement fails: the saved result timeline is
    Resolve-shaped (bare paths), so File ▸ Import ▸ Timeline takes it."""
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    report = generate_for_timeline(resolve, endpoint=daemon, on_progress=None)
    pool = project.GetMediaPool()
    assert pool.ImportTimelineFromFile(report.otio_path) is None  # "Scene 12" already exists
    imported = pool.ImportTimelineFromFile(report.otio_path, {"timelineName": "Scene 12 V2A"})
    assert imported is not None and imported.GetStartFrame() == 86400
    assert [(s, d) for s, d, _ in audio_items(imported, imported.GetTrackCount("audio"))] == [
        (86400 + s["record"], s["out"] - s["in"]) for s in SHOTS]


def test_export_from_resolve_is_what_the_daemon_reads(daemon, footage, tmp_path):
    """The manual path's first step, Timeline.Export(.., EXPORT_OTIO), gives a file the daemon
    accepts as it is (bare paths, 01:00:00:00 start)."""
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    exported = tmp_path / "Scene 12.otio"
    assert timeline.Export(str(exported), EXPORT_OTIO)
    with Client(daemon) as client:
        event = client.generate_timeline(exported.read_text(), str(tmp_path / "wavs"),
                                         resolve=True)
    assert [p["record_start"] for p in event.body["placements"]] == [s["record"] for s in SHOTS]
    shutil.rmtree(tmp_path / "wavs")


def test_takes_go_into_each_items_take_selector(daemon, footage):
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    report = generate_for_timeline(resolve, endpoint=daemon, takes=3, seed=1, on_progress=None)
    assert report.complete, report.summary()
    assert report.audio_tracks == [2]  # alternates share their shot's item, not new tracks
    items = timeline.GetItemListInTrack("audio", 2)
    assert [(i.GetStart(), i.GetDuration()) for i in items] == [
        (86400 + s["record"], s["out"] - s["in"]) for s in SHOTS]
    for item in items:
        assert item.GetTakesCount() == 3
        files = {item.GetTakeByIndex(n)["mediaPoolItem"].GetClipProperty("File Path")
                 for n in (1, 2, 3)}
        assert len(files) == 3  # three different generations
    assert "2 sound(s)" not in report.summary() and "6 more take(s)" in report.summary()


def test_continuous_mode_is_one_sound_across_the_cuts(daemon, footage):
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    report = generate_for_timeline(resolve, endpoint=daemon, mode="continuous", on_progress=None)
    assert report.complete, report.summary()
    starts = [(s, d) for s, d, _ in audio_items(timeline, 2)]
    # The first two shots are back to back: one sound covers both; the gap splits the run.
    assert starts == [(86400, 72), (86490, 24)]


@pytest.fixture(scope="module")
def slow_daemon(tmp_path_factory):
    """A daemon whose sampler takes a while, so there is time to press Cancel."""
    config = ServerConfig(bind="tcp://127.0.0.1:0",
                          cache_dir=tmp_path_factory.mktemp("resolve-slow-daemon-cache"))
    server = Server(config, ToneEngine(step_delay=0.05))
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.endpoint
    finally:
        server.request_stop()
        thread.join(30)


def test_cancel_in_the_dialog_stops_the_job_and_touches_nothing(slow_daemon, footage, tmp_path):
    resolve = FakeResolve()
    project, timeline = cut(resolve, footage)
    settings = tmp_path / "V2A Generate.json"
    settings.write_text(f'{{"endpoint": "{slow_daemon}"}}')
    seen: dict[str, object] = {}

    def look(key):
        def action(window):
            seen[key] = window.Find("Progress").Text
            seen[key + " button"] = window.Find("Cancel").Text
        return action

    manager = FakeUIManager([
        (0.05, lambda w: w._click("Generate")),
        (0.8, look("running")),
        (0.9, lambda w: w._click("Cancel")),
        (3.0, look("after")),
        (3.1, lambda w: w._click("Cancel")),  # now "Close"
    ], max_run_s=30)
    report = run_from_menu(resolve, fu=FakeFusion(manager), bmd=FakeBmd(),
                           settings_path=str(settings))
    assert report is None
    assert seen["running button"] == "Cancel" and "%" in str(seen["running"])
    assert seen["after"] == "Cancelled." and seen["after button"] == "Close"
    assert timeline.GetTrackCount("audio") == 1


def test_a_timeline_too_large_for_the_daemon_is_not_sent_and_the_dialog_says_why(footage,
                                                                                 tmp_path):
    """A daemon started with a small --max-message-mb and a long cut: the plugin learns the
    limit through the client, and the dialog says what to do instead of waiting for ever."""
    resolve = FakeResolve()
    shots = [{"path": footage[0], "record": 2 * n, "in": 0, "out": 2} for n in range(800)]
    project, timeline = edit_timeline(resolve, "Long cut", "23.976", shots)
    seen: dict[str, object] = {}

    def look_then_close(window):
        seen["progress"] = window.Find("Progress").Text
        seen["generate_enabled"] = window.Find("Generate").Enabled
        window._click("Cancel")  # "Close" again once the job has ended

    with running_server(tmp_path / "cache", max_message_bytes=2**20) as server:
        settings = tmp_path / "V2A Generate.json"
        settings.write_text(f'{{"endpoint": "{server.endpoint}", "answer_timeout_s": 20}}')
        manager = FakeUIManager([(0.05, lambda w: w._click("Generate")),
                                 (1.5, look_then_close)], max_run_s=30)
        report = run_from_menu(resolve, fu=FakeFusion(manager), bmd=FakeBmd(),
                               settings_path=str(settings))
        assert server.jobs.counts()["jobs"] == 0  # it never reached the daemon
    assert report is None
    progress = str(seen["progress"])
    assert "too_large" in progress and "more than the daemon" in progress, progress
    assert "--max-message-mb 2 or more" in progress and "fewer clips" in progress
    assert seen["generate_enabled"] is True
    assert timeline.GetTrackCount("audio") == 1
    assert max(manager.handler_seconds) < 1.0


def _generation_under_way(resolve, footage, endpoint):
    cut(resolve, footage)
    generation = TimelineGeneration(
        resolve, GenerateSettings(endpoint=endpoint, answer_timeout_s=0.5))
    generation.start()
    heard: list[str] = []
    while not any("clip" in line for line in heard):
        heard += generation.poll(timeout=0.1)
    return generation


def test_a_daemon_stopped_mid_job_says_so(footage, tmp_path):
    server = Server(ServerConfig(bind="tcp://127.0.0.1:0", cache_dir=tmp_path / "cache"),
                    ToneEngine(step_delay=0.2))
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    resolve = FakeResolve()
    generation = _generation_under_way(resolve, footage, server.endpoint)
    server.request_stop()
    thread.join(30)
    with pytest.raises(DaemonError) as raised:
        for _ in range(100):
            generation.poll(timeout=0.1)
    assert raised.value.code == "shutting_down" and "send it again" in raised.value.message
    assert resolve.GetProjectManager().GetCurrentProject().GetCurrentTimeline().GetTrackCount(
        "audio") == 1


def test_a_daemon_killed_mid_job_is_noticed(footage, tmp_path):
    """Silence is not trusted: after a quiet spell the plugin pings (without waiting), and a
    daemon that answers neither job nor ping is reported as unavailable."""
    endpoint = free_tcp_endpoint()
    process = subprocess.Popen(
        daemon_command(endpoint, tmp_path / "cache"), cwd=REPO,
        env={**os.environ, "V2A_TONE_STEP_DELAY": "0.2"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_answering(endpoint, process)
        generation = _generation_under_way(FakeResolve(), footage, endpoint)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        began = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="v2a-daemon"):
            for _ in range(100):  # the ping goes out after 0.5 s of silence
                generation.poll(timeout=0.1)
        assert time.monotonic() - began < 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)



def test_a_daemon_restarted_mid_job_finishes_the_job(footage, tmp_path):
    """kill -9 during sampling and a new daemon on the same endpoint: the plugin's liveness ping
    gets a pong from another daemon instance, so it sends the job again under the same id
    (the new daemon runs it) instead of waiting for ever on a job nobody runs."""
    from tests.daemon_harness import start_daemon_process, stop_process

    endpoint = free_tcp_endpoint()
    first = start_daemon_process(endpoint, tmp_path / "cache", env={"V2A_TONE_STEP_DELAY": "0.2"})
    second = None
    try:
        resolve = FakeResolve()
        generation = _generation_under_way(resolve, footage, endpoint)
        first.kill()
        first.wait(30)
        second = start_daemon_process(endpoint, tmp_path / "cache")
        deadline = time.monotonic() + 30
        while not generation.done and time.monotonic() < deadline:
            generation.poll(timeout=0.1)
        assert generation.done, f"no result after the restart; status: {generation.status}"
        assert generation.report.complete, generation.report.summary()
        timeline = resolve.GetProjectManager().GetCurrentProject().GetCurrentTimeline()
        assert [(s, d) for s, d, _ in audio_items(timeline, 2)] == [
            (86400 + s["record"], s["out"] - s["in"]) for s in SHOTS]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
        if second is not None:
            stop_process(second)
