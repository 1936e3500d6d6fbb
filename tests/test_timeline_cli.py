"""The `v2a timeline`, `v2a generate` and `v2a preview` commands against a real daemon."""

from __future__ import annotations

import json
import os
import stat
import threading

import opentimelineio as otio
import pytest
import soundfile as sf

from bridge.cli import main
from bridge.timeline_output import is_generated_track
from tests.daemon_harness import full_disk, running_server
from tests.engines import ToneEngine
from tests.timeline_kit import clip, dissolve, timeline, track, write_movie


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("cache")) as server:
        yield server.endpoint


@pytest.fixture
def project(tmp_path):
    """An editor's project folder: movies beside the timeline, linked by relative paths."""
    write_movie(tmp_path / "shots" / "a.mp4", 3.0)
    write_movie(tmp_path / "shots" / "b.mp4", 3.0)
    tl = timeline(
        track(
            clip("A", 24, 24, media="shots/a.mp4", avail=(0, 72)),
            dissolve(3, 3),
            clip("B", 24, 24, media="shots/b.mp4", avail=(0, 72)),
            clip("lost", 0, 12, media="shots/lost.mp4", avail=(0, 72)),
        )
    )
    otio.adapters.write_to_file(tl, str(tmp_path / "edit.otio"))
    return tmp_path


def v2a(endpoint, *args):
    return main(["--endpoint", endpoint, "--no-start", *map(str, args)])


def test_timeline_command(endpoint, project, capsys):
    rc = v2a(
        endpoint, "timeline", project / "edit.otio", "-o", project / "out" / "edit_v2a.otio",
        "--media-dir", project / "wavs", "--prompt", "rain", "--steps", "2",
        "--placements", project / "placements.json",
    )
    printed = capsys.readouterr()
    assert rc == 2  # one clip failed, the others are there
    assert "lost [V1/4]" in printed.out and "failed" in printed.out and "generated" in printed.out
    assert "clips" in printed.err  # the progress bar
    result = otio.adapters.read_from_file(str(project / "out" / "edit_v2a.otio"))
    # The editor's timeline is written back as it was (relative paths kept) + the V2A track.
    original = otio.adapters.read_from_file(str(project / "edit.otio"))
    assert result.tracks[0].is_equivalent_to(original.tracks[0])
    assert result.tracks[0][0].media_reference.target_url == "shots/a.mp4"
    (v2a_track,) = [t for t in result.tracks if is_generated_track(t)]
    assert len(list(v2a_track.find_clips())) == 2
    placements = json.loads((project / "placements.json").read_text())
    assert placements["rate"] == 24.0 and len(placements["placements"]) == 2
    assert [f["clip"] for f in placements["failed"]] == ["lost [V1/4]"]

    # Run again: nothing is generated anew.
    rc = v2a(endpoint, "timeline", project / "edit.otio", "-o", project / "again.otio",
             "--media-dir", project / "wavs", "--prompt", "rain", "--steps", "2")
    assert rc == 2 and "cached" in capsys.readouterr().out

    # And watch it.
    rc = v2a(endpoint, "preview", project / "out" / "edit_v2a.otio", "-o", project / "p.mp4",
             "--width", "64")
    assert rc == 0 and (project / "p.mp4").stat().st_size > 1000


def test_timeline_command_refuses_bad_input(endpoint, project, capsys):
    assert v2a(endpoint, "timeline", project / "nope.otio", "-o", project / "o.otio",
               "--media-dir", project) == 1
    assert "no such file" in capsys.readouterr().err
    assert v2a(endpoint, "timeline", project / "edit.otio", "-o", project / "o.otio",
               "--media-dir", project, "--track", "2") == 1
    assert "V1" in capsys.readouterr().err
    assert v2a(endpoint, "timeline", project / "edit.otio", "-o", project / "o.mov",
               "--media-dir", project) == 1
    assert ".otio" in capsys.readouterr().err


def test_generate_command(endpoint, project, capsys):
    out = project / "a.wav"
    assert v2a(endpoint, "generate", project / "shots" / "a.mp4", "--start", "0.5", "--end", "1.5",
               "--steps", "1", "-o", out) == 0
    assert sf.info(out).frames == 48000
    # Without --end: to the end of the movie.
    assert v2a(endpoint, "generate", project / "shots" / "b.mp4", "--steps", "1", "-o", out) == 0
    assert sf.info(out).frames == 3 * 48000
    # The positional form still works.
    assert v2a(endpoint, "generate", project / "shots" / "b.mp4", "0", "0.25", "--steps", "1",
               "-o", out) == 0
    assert sf.info(out).frames == 12000
    capsys.readouterr()


def test_both_commands_say_which_sound_is_not_to_be_trusted(project, tmp_path_factory, capsys):
    engine = ToneEngine(unfamiliar="b.mp4")
    with running_server(tmp_path_factory.mktemp("cache"), engine) as server:
        assert v2a(server.endpoint, "generate", project / "shots" / "b.mp4", "--steps", "1",
                   "-o", project / "b.wav") == 0
        assert "not to be trusted" in capsys.readouterr().err
        assert v2a(server.endpoint, "generate", project / "shots" / "a.mp4", "--steps", "1",
                   "-o", project / "a.wav") == 0
        assert "trusted" not in capsys.readouterr().err
        assert v2a(server.endpoint, "timeline", project / "edit.otio", "-o", project / "o.otio",
                   "--media-dir", project / "wavs", "--steps", "1") == 2
    printed = capsys.readouterr().out
    # B's row (rich may wrap it onto a second line) says so, and no other row does.
    assert printed.count("untrusted") == 1
    assert printed.index("B [V1/3]") < printed.index("untrusted") < printed.index("lost [V1/4]")
    assert "1 clip(s) not to be trusted" in printed


@pytest.mark.parametrize("ext, adapter", [(".xml", "fcp_xml"), (".otioz", None)])
def test_timeline_command_writes_other_formats_with_the_sound(
    endpoint, project, capsys, monkeypatch, tmp_path_factory, ext, adapter
):
    # FCP XML cannot write 48 kHz sample counts as a file's timecode, and an .otioz bundle takes
    # relative paths from the timeline's folder (not the working one) and keeps offline clips
    # offline; both are written again on a re-run, like .otio.
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    out = project / f"edit_v2a{ext}"
    for _ in range(2):
        rc = v2a(endpoint, "timeline", project / "edit.otio", "-o", out,
                 "--media-dir", project / "wavs", "--steps", "1")
        assert rc == 2, capsys.readouterr().err  # the offline clip, as with .otio
    back = otio.adapters.read_from_file(str(out), **({"adapter_name": adapter} if adapter else {}))
    video = [c for c in back.video_tracks()[0].find_clips() if c.name in ("A", "B")]
    (audio,) = back.audio_tracks()
    sound = list(audio.find_clips())
    assert [c.name for c in sound] == ["A", "B"]
    for a, v in zip(sound, video, strict=True):
        assert a.trimmed_range_in_parent() == v.trimmed_range_in_parent()


def test_timeline_command_refuses_an_edl_output_before_generating(endpoint, project, capsys):
    # An EDL holds one picture track: the generated audio track would be dropped silently.
    assert v2a(endpoint, "timeline", project / "edit.otio", "-o", project / "out.edl",
               "--media-dir", project / "wavs") == 1
    assert "EDL" in capsys.readouterr().err and not (project / "out.edl").exists()
    assert not (project / "wavs").exists()


# --- output files that cannot be written ------------------------------------------------------
# What `v2a` writes is written whole (a temporary file beside it, then renamed): a failure says
# so in one line (the file, the system's reason, what to do), exits 1, leaves no partial file and
# leaves an earlier file of that name as it was.


def error_line(capsys) -> str:
    """The command's last line on stderr (progress lines come before it)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def leftovers(folder):
    return [p for p in folder.rglob("*") if p.name.startswith(".v2a-")]


def test_generate_on_a_full_disk_keeps_the_earlier_wav_and_the_sound(endpoint, project, capsys):
    out = project / "a.wav"
    movie = project / "shots" / "a.mp4"
    assert v2a(endpoint, "generate", movie, "0", "0.5", "--steps", "1", "--seed", "1", "-o", out) == 0
    earlier = out.read_bytes()
    with full_disk(project):
        rc = v2a(endpoint, "generate", movie, "0", "0.5", "--steps", "1", "--seed", "2", "-o", out)
    line = error_line(capsys)
    assert rc == 1
    assert line.startswith(f"v2a: could not write {out} (No space left on device); free space")
    assert "job " in line and "daemon's cache" in line
    assert out.read_bytes() == earlier and not leftovers(project)
    # As the message says: asked again, the sound comes from the daemon's cache.
    assert v2a(endpoint, "generate", movie, "0", "0.5", "--steps", "1", "--seed", "2",
               "-o", project / "b.wav") == 0
    assert "cached" in capsys.readouterr().out
    assert sf.info(project / "b.wav").frames == 24000


@pytest.mark.parametrize("where, reason, advice", [
    (lambda p: p / "shots" / "a.mp4" / "a.wav", "Not a directory", "part of its path is a file"),
    (lambda p: p / "nowhere" / "a.wav", "No such file or directory", "its folder does not exist"),
    (lambda p: p / ("x" * 4000 + ".wav"), "File name too long", "choose a shorter path"),
    (lambda p: p / "shots", "Is a directory", "that is a folder: name a file in it"),
], ids=["under-a-file", "missing-folder", "name-too-long", "a-folder"])
def test_generate_into_a_path_that_cannot_be_written(endpoint, project, capsys, where, reason, advice):
    out = where(project)
    rc = v2a(endpoint, "generate", project / "shots" / "a.mp4", "0", "0.25", "--steps", "1", "-o", out)
    line = error_line(capsys)
    assert rc == 1
    assert line.startswith(f"v2a: could not write {out} ({reason}); {advice}")
    assert not leftovers(project)


def test_timeline_outputs_on_a_full_disk_keep_the_earlier_files(endpoint, project, capsys):
    out, placements = project / "out" / "edit_v2a.otio", project / "out" / "placements.json"
    run = ["timeline", project / "edit.otio", "-o", out, "--media-dir", project / "wavs",
           "--steps", "1", "--placements", placements]
    assert v2a(endpoint, *run) == 2  # the offline clip
    capsys.readouterr()
    earlier_timeline, earlier_placements = out.read_bytes(), placements.read_bytes()

    with full_disk(project / "out"):
        rc = v2a(endpoint, *run, "--prompt", "rain")
    line = error_line(capsys)
    assert rc == 1
    assert line.startswith(f"v2a: could not write {out} (No space left on device); free space")
    assert line.endswith(f"the same command again reuses the WAVs in {project / 'wavs'} "
                         "(nothing is generated again)")
    assert out.read_bytes() == earlier_timeline and placements.read_bytes() == earlier_placements

    with full_disk(project / "out", after=1):  # room for the timeline, not for the placements
        rc = v2a(endpoint, *run, "--prompt", "rain")
    line = error_line(capsys)
    assert rc == 1
    assert line.startswith(f"v2a: could not write {placements} (No space left on device)")
    assert f"{out} was written" in line
    assert out.read_bytes() != earlier_timeline and placements.read_bytes() == earlier_placements
    assert not leftovers(project)

    assert v2a(endpoint, *run, "--prompt", "rain") == 2
    assert "generated" not in capsys.readouterr().out  # every clip reused, as the message says
    assert json.loads(placements.read_text())["placements"]


@pytest.mark.parametrize("out, placements, named, reason", [
    ("edit.otio/x.otio", None, "out", "File exists"),  # the folder to make is a file
    ("x" * 4000 + ".otio", None, "out", "File name too long"),
    ("x" * 4000 + ".otioz", None, "out", "File name too long"),
    ("o.xml", "nowhere/p.json", "placements", "No such file or directory"),
], ids=["otio-under-a-file", "otio-name-too-long", "otioz-name-too-long", "placements-missing-folder"])
def test_timeline_outputs_that_cannot_be_written(endpoint, project, capsys, out, placements, named, reason):
    paths = {"out": project / out, "placements": placements and project / placements}
    rc = v2a(endpoint, "timeline", project / "edit.otio", "-o", paths["out"],
             "--media-dir", project / "wavs", "--steps", "1",
             *(["--placements", paths["placements"]] if placements else []))
    line = error_line(capsys)
    assert rc == 1
    assert line.startswith(f"v2a: could not write {paths[named]} ({reason}); ")
    assert "reuses the WAVs" in line and not leftovers(project)


def test_generate_writes_into_a_pipe_and_through_a_link(endpoint, project, capsys):
    # A rename would replace a pipe (or /dev/stdout, /dev/null) itself, and a link with a file:
    # neither happens, the sound goes where they lead.
    movie = project / "shots" / "a.mp4"
    pipe, received = project / "pipe.wav", []
    os.mkfifo(pipe)
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()), daemon=True)
    reader.start()
    assert v2a(endpoint, "generate", movie, "0", "0.25", "--steps", "1", "-o", pipe) == 0
    reader.join(10)
    assert received and received[0][:4] == b"RIFF" and stat.S_ISFIFO(os.stat(pipe).st_mode)
    (project / "real.wav").write_bytes(b"old")
    (project / "link.wav").symlink_to(project / "real.wav")
    assert v2a(endpoint, "generate", movie, "0", "0.25", "--steps", "1", "-o", project / "link.wav") == 0
    assert (project / "link.wav").is_symlink() and sf.info(project / "real.wav").frames == 12000
    capsys.readouterr()
