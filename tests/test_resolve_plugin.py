"""The Resolve plugin without a daemon: frame rates, settings, placing sound with Resolve's
pitfalls, errors an editor can meet (daemon down included), the installer and the launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile

from bridge.client import DaemonUnavailable
from plugins.resolve import install
from plugins.resolve.v2a_resolve import (
    ExportFailed,
    GenerateSettings,
    GenerationReport,
    NoProjectOpen,
    NoTimelineOpen,
    SettingsInvalid,
    generate_for_timeline,
    host,
    load_settings,
    run_from_menu,
)
from plugins.resolve.v2a_resolve.rates import frames_between_rates, parse_frame_rate
from tests.daemon_harness import free_tcp_endpoint
from tests.fake_resolve import FakeBmd, FakeFusion, FakeResolve, FakeUIManager, TimelineItem
from tests.fake_resolve.media import edit_timeline, make_movie

NTSC_FILM = Fraction(24000, 1001)


def write_wav(path: Path, frames: int, rate: Fraction = NTSC_FILM) -> str:
    samples = round(frames * 48000 / rate)
    soundfile.write(str(path), np.zeros((samples, 2), dtype=np.float32), 48000, subtype="PCM_24")
    return str(path)


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resolve-plugin-media")
    return [make_movie(str(folder / f"shot{n}.mp4"), 48) for n in range(3)]


@pytest.fixture
def edit(movies):
    resolve = FakeResolve()
    project, timeline = edit_timeline(resolve, "Scene 4", "23.976", [
        {"path": movies[0], "record": 0, "in": 0, "out": 48},
        {"path": movies[1], "record": 48, "in": 12, "out": 36},
        {"path": movies[2], "record": 100, "in": 0, "out": 30},
    ])
    return resolve, project, timeline


# --- frame rates and settings ---------------------------------------------------------------

@pytest.mark.parametrize("setting,rate", [
    ("23.976", NTSC_FILM), ("24", Fraction(24)), ("25", Fraction(25)),
    ("29.97 DF", Fraction(30000, 1001)), ("29.97", Fraction(30000, 1001)),
    ("59.94 NDF", Fraction(60000, 1001)), ("119.88", Fraction(120000, 1001)), ("50", 50),
])
def test_frame_rate_strings_become_exact_rates(setting, rate):
    assert parse_frame_rate(setting) == rate


@pytest.mark.parametrize("setting", ["", "fast", "-24", "0"])
def test_unknown_frame_rates_say_what_to_do(setting):
    with pytest.raises(SettingsInvalid, match="Timeline Settings"):
        parse_frame_rate(setting)


def test_frames_convert_between_rates_without_drift():
    assert frames_between_rates(86400, NTSC_FILM, NTSC_FILM) == 86400
    assert frames_between_rates(1000, NTSC_FILM, Fraction(24)) == 1001
    assert frames_between_rates(48, Fraction(24), Fraction(48)) == 96


def test_settings_file_is_validated_with_helpful_messages(tmp_path):
    path = tmp_path / "V2A Generate.json"
    assert load_settings(str(path)) == GenerateSettings()  # no file: defaults
    path.write_text(json.dumps({"prompt": "rain", "takes": 2, "cfg": 5}))
    assert load_settings(str(path)).takes == 2
    assert load_settings(str(path)).cfg == 5.0
    path.write_text(json.dumps({"prompt": "rain", "temperature": 1}))
    with pytest.raises(SettingsInvalid, match="temperature.*known settings are"):
        load_settings(str(path))
    path.write_text(json.dumps({"takes": "two"}))
    with pytest.raises(SettingsInvalid, match="'takes' must be of type int"):
        load_settings(str(path))
    path.write_text("{not json")
    with pytest.raises(SettingsInvalid, match="Fix the JSON"):
        load_settings(str(path))
    with pytest.raises(SettingsInvalid, match="absolute folder"):
        GenerateSettings(media_dir="relative/dir").validated()


# --- Resolve side ---------------------------------------------------------------------------

def test_no_project_or_no_timeline_is_a_clear_error():
    resolve = FakeResolve()
    with pytest.raises(NoProjectOpen, match="open a project"):
        generate_for_timeline(resolve, endpoint=free_tcp_endpoint())
    resolve.GetProjectManager().CreateProject("Empty")
    with pytest.raises(NoTimelineOpen, match="open the timeline"):
        generate_for_timeline(resolve, endpoint=free_tcp_endpoint())


def test_media_dir_defaults_to_a_folder_beside_the_picture(edit, movies):
    resolve, project, timeline = edit
    found = host.current_edit(resolve)
    assert found.rate == NTSC_FILM and found.start_frame == 86400
    assert host.default_media_dir(found) == os.path.join(
        os.path.dirname(movies[0]), "V2A Audio", "Scene 4")


def test_placements_land_at_absolute_frames_and_overlaps_are_reported(edit, tmp_path):
    resolve, project, timeline = edit
    found = host.current_edit(resolve)
    wavs = [write_wav(tmp_path / f"s{n}.wav", 48) for n in range(3)]
    result = {"rate": float(NTSC_FILM), "placements": [
        {"file": wavs[0], "track": 1, "record_start": 0, "duration": 48, "source_in": 0,
         "clip": "shot0", "take": 1},
        {"file": wavs[1], "track": 1, "record_start": 48, "duration": 24, "source_in": 0,
         "clip": "shot1", "take": 1},
        # Overlaps shot1's sound on the same track: Resolve would drop it without a word.
        {"file": wavs[2], "track": 1, "record_start": 60, "duration": 30, "source_in": 0,
         "clip": "shot2", "take": 1, "unfamiliar": True},
    ]}
    placements = host.placements_from_result(result, found)
    assert [p.record_frame for p in placements] == [86400, 86448, 86460]
    items = host.media_pool_items(found, wavs, "V2A Audio")
    assert set(items) == set(wavs)
    tracks = host.add_audio_tracks(timeline, 1)
    assert tracks == [2] and timeline.GetTrackSubType("audio", 2) == "stereo"
    placed, missed = host.place_sounds(found, placements, items, tracks)
    assert [(p.clip, p.record_frame, p.duration) for p in placed] == [
        ("shot0", 86400, 48), ("shot1", 86448, 24)]
    assert [m.clip for m in missed] == ["shot2"] and "overlap" in missed[0].reason
    # A sound that did not land still says it is not to be trusted.
    report = GenerationReport("Scene 4", str(tmp_path), placed=placed, not_placed=missed)
    (line,) = [x for x in report.summary().splitlines() if "not placed" in x]
    assert line.startswith("  not placed: shot2 (s2.wav)") and "not to be trusted" in line
    landed = timeline.GetItemListInTrack("audio", 2)
    assert [(i.GetStart(), i.GetEnd()) for i in landed] == [(86400, 86448), (86448, 86472)]
    # A second run finds the WAVs already in the pool instead of importing them twice.
    assert host.media_pool_items(found, wavs, "V2A Audio") == items


def test_placing_while_the_editor_looks_at_another_timeline(edit, tmp_path):
    resolve, project, timeline = edit
    found = host.current_edit(resolve)
    other = project.GetMediaPool().CreateEmptyTimeline("Another cut")
    assert project.GetCurrentTimeline() is other
    wav = write_wav(tmp_path / "s.wav", 24)
    placements = host.placements_from_result({"rate": float(NTSC_FILM), "placements": [
        {"file": wav, "track": 1, "record_start": 10, "duration": 24, "source_in": 0,
         "clip": "shot0", "take": 1}]}, found)
    items = host.media_pool_items(found, [wav], "V2A Audio")
    placed, missed = host.place_sounds(found, placements, items,
                                       host.add_audio_tracks(timeline, 1))
    assert len(placed) == 1 and not missed
    assert project.GetCurrentTimeline() is other  # the editor's view is left alone
    assert other.GetItemListInTrack("audio", 1) == []


def _untrusted_shot1(found, tmp_path, takes_of_shot1=(True,)):
    """Placements for shot0 (trusted) and shot1 (one take per entry: whether it is untrusted),
    with their WAVs imported and a new audio track."""
    wavs = [write_wav(tmp_path / f"s{n}.wav", 24) for n in range(1 + len(takes_of_shot1))]
    result = {"rate": float(NTSC_FILM), "placements": [
        {"file": wavs[0], "track": 1, "record_start": 0, "duration": 24, "source_in": 0,
         "clip": "shot0", "take": 1}] + [
        {"file": wavs[n], "track": 1, "record_start": 48, "duration": 24, "source_in": 0,
         "clip": "shot1", "take": n, "unfamiliar": untrusted}
        for n, untrusted in enumerate(takes_of_shot1, 1)]}
    return (host.placements_from_result(result, found),
            host.media_pool_items(found, wavs, "V2A Audio"),
            host.add_audio_tracks(found.timeline, 1))


def test_an_untrusted_alternate_take_colours_the_item_that_holds_it(edit, tmp_path):
    resolve, project, timeline = edit
    found = host.current_edit(resolve)
    placed, missed = host.place_sounds(found, *_untrusted_shot1(found, tmp_path, (False, True)))
    assert not missed
    assert [(p.clip, p.take, p.unfamiliar, p.marked) for p in placed] == [
        ("shot0", 1, False, False), ("shot1", 1, False, False), ("shot1", 2, True, True)]
    items = timeline.GetItemListInTrack("audio", 2)
    assert [(i.GetTakesCount(), i.GetClipColor()) for i in items] == [(0, ""), (2, "Orange")]


def test_a_colour_resolve_refuses_leaves_the_sound_placed_and_the_summary_says_so(
        edit, tmp_path, monkeypatch):
    resolve, project, timeline = edit
    found = host.current_edit(resolve)
    monkeypatch.setattr(TimelineItem, "SetClipColor", lambda self, colorName: False)
    placed, missed = host.place_sounds(found, *_untrusted_shot1(found, tmp_path))
    assert not missed and [(p.unfamiliar, p.marked) for p in placed] == [
        (False, False), (True, False)]
    assert len(timeline.GetItemListInTrack("audio", 2)) == 2
    report = GenerationReport("Scene 4", str(tmp_path), placed=placed, audio_tracks=[2])
    assert report.complete
    assert report.summary().splitlines()[1:] == [
        "  not to be trusted: shot1 (s1.wav): the picture is unlike any the model learnt from, "
        "and much of the sound ran to the loudest a sound can be; listen before you keep it "
        "(Resolve would not colour it orange)"]


def test_daemon_down_is_a_clear_message(edit):
    resolve, project, timeline = edit
    with pytest.raises(DaemonUnavailable, match="v2a-daemon"):
        generate_for_timeline(resolve, "rain", endpoint=free_tcp_endpoint(), answer_timeout_s=0.3,
                              on_progress=None)
    assert timeline.GetTrackCount("audio") == 1  # nothing was touched


# --- menu entry: console and dialog ---------------------------------------------------------

def test_console_mode_reads_the_json_and_prints_the_daemon_message(edit, tmp_path):
    resolve, project, timeline = edit
    settings = tmp_path / "V2A Generate.json"
    settings.write_text(json.dumps({"prompt": "wind", "endpoint": free_tcp_endpoint(),
                                    "answer_timeout_s": 0.3}))
    lines: list[str] = []
    assert run_from_menu(resolve, fu=None, bmd=None, settings_path=str(settings),
                         out=lines.append) is None
    assert "'wind'" in lines[0]
    assert "No V2A daemon answered" in lines[-1] and "v2a-daemon" in lines[-1]


def test_dialog_reports_a_down_daemon_without_blocking_the_ui_loop(edit, tmp_path):
    resolve, project, timeline = edit
    settings = tmp_path / "V2A Generate.json"
    settings.write_text(json.dumps({"endpoint": free_tcp_endpoint(), "answer_timeout_s": 0.3}))

    def type_prompt_and_generate(window):
        window.Find("Prompt").Text = "gravel footsteps"
        window._click("Generate")

    seen: dict[str, object] = {}

    def look_then_close(window):
        seen["progress"] = window.Find("Progress").Text
        seen["generate_enabled"] = window.Find("Generate").Enabled
        window._click("Cancel")  # the button reads "Close" again once the job has ended

    manager = FakeUIManager([(0.05, type_prompt_and_generate), (1.0, look_then_close)])
    report = run_from_menu(resolve, fu=FakeFusion(manager), bmd=FakeBmd(),
                           settings_path=str(settings))
    assert report is None
    assert "No V2A daemon answered" in str(seen["progress"])
    assert seen["generate_enabled"] is True
    assert len(manager.handler_seconds) > 3  # the timer ticked while waiting
    assert max(manager.handler_seconds) < 0.5


# --- installing into Resolve ------------------------------------------------------------------

def test_scripts_folders_per_os(tmp_path):
    home = Path("/home/ed")
    assert install.fusion_folder("linux", {}, home) == home / ".local/share/DaVinciResolve/Fusion"
    assert install.fusion_folder("darwin", {}, home) == (
        home / "Library/Application Support/Blackmagic Design/DaVinci Resolve/Fusion")
    assert install.fusion_folder("win32", {"APPDATA": "C:/Users/ed/AppData/Roaming"}, home) == (
        Path("C:/Users/ed/AppData/Roaming/Blackmagic Design/DaVinci Resolve/Support/Fusion"))
    assert install.fusion_folder("linux", {}, home, all_users=True) == Path("/opt/resolve/Fusion")


def test_install_copies_launcher_module_and_a_self_contained_client(tmp_path):
    target = tmp_path / "Fusion"
    installed = install.install_resolve(target)
    assert installed.launcher == target / "Scripts" / "Edit" / "V2A Generate.py"
    assert installed.library == target / "V2A"
    assert (target / "V2A" / "bridge" / "client.py").is_file()
    assert not list((target / "Scripts").rglob("v2a_resolve"))  # no extra menu entries
    launcher_text = installed.launcher.read_text()
    assert f"V2A_LIBRARY = {str(target / 'V2A')!r}" in launcher_text
    # The vendored client and module import with nothing of the checkout on the path.
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import bridge.client, v2a_resolve; "
             "print(bridge.client.__file__); print(v2a_resolve.__file__)")
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(installed.library)],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert all(line.startswith(str(installed.library)) for line in out.split())

    # An editor's settings survive a reinstall; the library is replaced whole.
    installed.settings.write_text(json.dumps({"prompt": "mine", "endpoint": free_tcp_endpoint(),
                                              "answer_timeout_s": 0.3}))
    (installed.library / "v2a_resolve" / "stale.py").write_text("")
    install.install_resolve(target)
    assert json.loads(installed.settings.read_text())["prompt"] == "mine"
    assert not (installed.library / "v2a_resolve" / "stale.py").exists()

    # The installed launcher runs the way Resolve runs it: globals `resolve` (no `fu` here, so
    # the console path), in a Python where only the installed library provides v2a_resolve.
    script = f"""
import runpy, sys
sys.path.append({str(Path(__file__).resolve().parents[1])!r})
from tests.fake_resolve import FakeResolve
from tests.fake_resolve.media import edit_timeline, make_movie
runpy.run_path(sys.argv[1], init_globals={{"resolve": FakeResolve()}})
resolve = FakeResolve()
movie = make_movie(sys.argv[2], 24)
edit_timeline(resolve, "Scene", "23.976", [{{"path": movie, "record": 0, "in": 0, "out": 24}}])
runpy.run_path(sys.argv[1], init_globals={{"resolve": resolve}})
from tests.fake_resolve import FakeBmd, FakeFusion, FakeUIManager
ui = FakeUIManager([(0.05, lambda window: window._close())])
runpy.run_path(sys.argv[1], init_globals={{"resolve": resolve, "fu": FakeFusion(ui),
                                           "bmd": FakeBmd()}})
print("DIALOG", ui.windows[0].WindowTitle, ui.windows[0].Find("Prompt").Text)
import bridge.client, v2a_resolve
print("FROM", bridge.client.__file__, v2a_resolve.__file__)
"""
    out = subprocess.run([sys.executable, "-I", "-c", script, str(installed.launcher),
                          str(tmp_path / "shot.mp4")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60).stdout
    assert "No project is open in Resolve" in out
    assert "'mine'" in out and "No V2A daemon answered" in out
    assert "DIALOG V2A Generate mine" in out  # with fu and bmd: the dialog, settings filled in
    sources = out.split("FROM", 1)[1].split()
    assert all(path.startswith(str(installed.library)) for path in sources)


def test_install_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "V2A").mkdir()
    (tmp_path / "V2A" / "precious.txt").write_text("keep me")
    with pytest.raises(install.InstallError, match="not a V2A library"):
        install.install_resolve(tmp_path)
    assert (tmp_path / "V2A" / "precious.txt").exists()


def test_install_command_prints_where_it_installed(tmp_path, capsys):
    assert install.run(tmp_path / "Fusion") == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "Fusion" / "Scripts" / "Edit" / "V2A Generate.py") in out
    assert "pip install pyzmq msgpack" in out
    (tmp_path / "Blocked").write_text("a file where the folder should be")
    assert install.run(tmp_path / "Blocked") == 1
    assert "Could not write" in capsys.readouterr().err


def test_v2a_install_resolve_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bridge.cli", "install-resolve", "--target",
                           str(tmp_path / "Fusion")], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "Fusion" / "Scripts" / "Edit" / "V2A Generate.py").is_file()
    assert "Workspace ▸ Scripts ▸ Edit ▸ V2A Generate" in done.stdout


def test_placements_at_another_rate_are_converted_to_timeline_frames(edit):
    resolve, project, timeline = edit
    found = host.current_edit(resolve)
    result = {"rate": 2 * float(NTSC_FILM), "placements": [
        {"file": "/x.wav", "track": 1, "record_start": 96, "duration": 48, "source_in": 4,
         "clip": "a", "take": 1}]}
    [p] = host.placements_from_result(result, found)
    assert (p.record_frame, p.duration, p.source_in) == (86400 + 48, 24, 2)


def test_a_timeline_without_picture_media_asks_for_a_media_dir(tmp_path):
    resolve = FakeResolve()
    project = resolve.GetProjectManager().CreateProject("Empty cut")
    project.GetMediaPool().CreateEmptyTimeline("Nothing yet")
    with pytest.raises(SettingsInvalid, match="media_dir"):
        generate_for_timeline(resolve, endpoint=free_tcp_endpoint(), on_progress=None)


def test_an_unwritable_media_dir_is_a_clear_error(edit, tmp_path):
    resolve, project, timeline = edit
    blocker = tmp_path / "not a folder"
    blocker.write_text("")
    with pytest.raises(SettingsInvalid, match="Cannot create the folder"):
        generate_for_timeline(resolve, endpoint=free_tcp_endpoint(), on_progress=None,
                              media_dir=str(blocker / "V2A"))


def test_a_resolve_without_otio_export_says_to_update(edit):
    resolve, project, timeline = edit
    resolve.EXPORT_OTIO = None  # Resolve before 18.5 has no OTIO export
    with pytest.raises(ExportFailed, match="18.5"):
        generate_for_timeline(resolve, endpoint=free_tcp_endpoint(), on_progress=None)


@pytest.mark.parametrize("endpoint", ["127.0.0.1:5755", "tcp://localhost"])
def test_a_misspelt_endpoint_is_a_clear_message_not_a_traceback(edit, tmp_path, endpoint):
    resolve, project, timeline = edit
    settings = tmp_path / "V2A Generate.json"
    settings.write_text(json.dumps({"endpoint": endpoint, "answer_timeout_s": 0.3}))
    lines: list[str] = []
    assert run_from_menu(resolve, fu=None, bmd=None, settings_path=str(settings),
                         out=lines.append) is None
    assert f"Cannot talk to the V2A daemon at {endpoint!r}" in lines[-1]
    assert "tcp://127.0.0.1:5755" in lines[-1]
    assert timeline.GetTrackCount("audio") == 1
