"""`make demo` end to end (python -m bridge.demo) with the small test engine in a real daemon
process; and the plain stop when the embedded model's weights are not installed."""

from __future__ import annotations

import opentimelineio as otio
import soundfile as sf

from bridge import demo
from bridge.planner import media_path
from bridge.timeline_output import is_generated_track


def test_demo_runs_the_whole_path(tmp_path, capsys):
    rc = demo.main(["--out", str(tmp_path), "--steps", "1", "--engine", "tests.engines:ToneEngine"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert f"ffplay {tmp_path / 'preview.mp4'}" in printed
    edit = otio.adapters.read_from_file(str(tmp_path / "edit.otio"))
    final = otio.adapters.read_from_file(str(tmp_path / "edit_v2a.otio"))
    (v2a,) = [t for t in final.tracks if is_generated_track(t)]
    assert final.tracks[0].is_equivalent_to(edit.tracks[0])
    clips = list(v2a.find_clips())
    assert [c.name for c in clips] == ["glass", "gravel", "door"]
    assert clips[2].metadata["v2a"]["prompt"] == "a heavy door slams shut"
    assert [type(x).__name__ for x in v2a] == ["Clip", "Transition", "Clip", "Gap", "Clip"]
    for c in clips:
        assert sf.info(media_path(c.media_reference.target_url)).samplerate == 48000
    assert (tmp_path / "preview.mp4").stat().st_size > 10_000
    # The shots it made show clear events (things move), for the model to hear.
    import av

    for name in ("glass", "gravel", "door"):
        with av.open(str(tmp_path / "media" / f"{name}.mp4")) as movie:
            frames = [f.to_ndarray(format="rgb24").astype(float) for f in movie.decode(video=0)]
        motion = [abs(a - b).mean() for a, b in zip(frames, frames[1:], strict=False)]
        assert len(frames) == 100 and max(motion) > 0.5, name


def test_demo_without_weights_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("V2A_WEIGHTS", str(tmp_path / "no-such-weights.safetensors"))
    rc = demo.main(["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "not installed" in printed and "does not exist" in printed
    assert not (tmp_path / "preview.mp4").exists()
