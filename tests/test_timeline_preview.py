"""`v2a preview`: the edited picture muxed with the generated tracks, checked by decoding it."""

from __future__ import annotations

import av
import numpy as np
import opentimelineio as otio
import pytest
import soundfile as sf

from bridge.cli import main
from bridge.planner import plan_timeline
from bridge.preview import PreviewError, PreviewOptions, mix_generated_audio, render_preview
from bridge.timeline_output import GeneratedClip, Take, build_output
from tests.daemon_harness import full_disk
from tests.timeline_kit import _write_png, clip, dissolve, gap, timeline, track, write_movie


def generated_edit(tmp_path):
    a = write_movie(tmp_path / "a.mp4", 3.0, size=(64, 36))
    b = write_movie(tmp_path / "b.mp4", 3.0, size=(64, 36))
    tl = timeline(
        track(
            clip("A", 12, 24, media=str(a), avail=(0, 72)),
            dissolve(6, 6),
            clip("B", 12, 24, media=str(b), avail=(0, 72)),
            gap(12),
            clip("A again", 0, 12, media=str(a), avail=(0, 72)),
        )
    )
    plan = plan_timeline(tl)
    made = {}
    for job in plan.jobs:
        level = 0.1 * (job.index + 1)
        path = tmp_path / f"{job.index}.wav"
        sf.write(path, np.full((job.num_samples, 2), level, np.float32), 48000, subtype="PCM_24")
        made[job.index] = GeneratedClip(job, [Take(str(path), 0)])
    out, _ = build_output(tl, plan, made)
    return out


def test_mix_places_each_clip_and_crossfades(tmp_path):
    out = generated_edit(tmp_path)
    mix, used = mix_generated_audio(out, plan_timeline(out).duration)
    assert used == 3 and mix.shape == (2, 48000 * 3)
    at = lambda s: float(mix[0, round(s * 48000)])  # noqa: E731
    assert at(0.5) == pytest.approx(0.1, abs=1e-3)  # A alone
    assert at(1.0) == pytest.approx(0.15, abs=0.01)  # mid-dissolve: half of A + half of B
    assert at(1.5) == pytest.approx(0.2, abs=1e-3)  # B alone
    assert at(2.25) == 0.0  # the gap
    assert at(2.75) == pytest.approx(0.3, abs=1e-3)


def test_preview_has_picture_and_sound(tmp_path):
    out = generated_edit(tmp_path)
    info = render_preview(out, tmp_path / "preview.mp4", PreviewOptions(width=64))
    assert info == {"frames": 72, "seconds": 3.0, "audio_clips": 3}
    with av.open(str(tmp_path / "preview.mp4")) as mp4:
        v, a = mp4.streams.video[0], mp4.streams.audio[0]
        assert (v.codec_context.width, v.codec_context.height) == (64, 36)
        assert a.codec_context.sample_rate == 48000
        frames = [f.to_ndarray(format="rgb24").mean() for f in mp4.decode(video=0)]
    assert len(frames) == 72
    # Each test movie's frame i has brightness (i * 37) % 256: the right media frame shows.
    expected = {5: (12 + 5) * 37 % 256, 30: (12 + 6) * 37 % 256, 50: 0, 62: 2 * 37 % 256}
    for k, level in expected.items():
        assert frames[k] == pytest.approx(level, abs=8), k
    with av.open(str(tmp_path / "preview.mp4")) as mp4:
        sound = np.concatenate([f.to_ndarray()[0] for f in mp4.decode(audio=0)])
    assert np.abs(sound[24000:36000]).mean() > 0.05  # A's sound is there


def test_a_still_image_shows_for_its_whole_clip(tmp_path):
    # A title card cut in from its 5th second for 3 s: a still file has one picture at 0.
    card = tmp_path / "card.png"
    _write_png(card, np.full((36, 64, 3), 120, np.uint8))
    tl = timeline(track(clip("Card", 120, 72, media=str(card))))
    plan = plan_timeline(tl)
    (job,) = plan.jobs
    path = tmp_path / "card.wav"
    sf.write(path, np.full((job.num_samples, 2), 0.1, np.float32), 48000, subtype="PCM_24")
    out, _ = build_output(tl, plan, {job.index: GeneratedClip(job, [Take(str(path), 0)])})
    render_preview(out, tmp_path / "preview.mp4", PreviewOptions(width=64))
    with av.open(str(tmp_path / "preview.mp4")) as mp4:
        frames = [f.to_ndarray(format="rgb24").mean() for f in mp4.decode(video=0)]
    assert len(frames) == 72
    assert all(level == pytest.approx(120, abs=8) for level in frames)


def test_preview_needs_generated_audio(tmp_path):
    a = write_movie(tmp_path / "a.mp4", 1.0, size=(32, 18))
    tl = timeline(track(clip("A", 0, 24, media=str(a), avail=(0, 24))))
    with pytest.raises(PreviewError, match="v2a timeline"):
        render_preview(tl, tmp_path / "p.mp4")


def test_preview_command_on_a_full_disk_keeps_the_earlier_preview(tmp_path, capsys):
    edit, out = tmp_path / "edit.otio", tmp_path / "watch" / "p.mp4"
    otio.adapters.write_to_file(generated_edit(tmp_path), str(edit))
    assert main(["preview", str(edit), "-o", str(out), "--width", "64"]) == 0
    earlier = out.read_bytes()
    with full_disk(tmp_path / "watch"):
        rc = main(["preview", str(edit), "-o", str(out), "--width", "32"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.strip().splitlines()[-1].startswith(
        f"v2a: could not write {out} (No space left on device); free space on its disk"
    )
    assert out.read_bytes() == earlier
    assert [p.name for p in out.parent.iterdir()] == ["p.mp4"]  # no partial file beside it


def test_preview_command_into_a_path_that_cannot_be_written(tmp_path, capsys):
    edit = tmp_path / "edit.otio"
    otio.adapters.write_to_file(generated_edit(tmp_path), str(edit))
    for out, reason in ((edit / "p.mp4", "File exists"), (tmp_path / ("x" * 4000 + ".mp4"), "File name too long")):
        assert main(["preview", str(edit), "-o", str(out), "--width", "32"]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.startswith(f"v2a: could not write {out} ({reason}); ")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".v2a-")]
