"""`generate_timeline` end to end: a real daemon (ZeroMQ, job queue, worker, store) running the
small test engine, real movie files, real WAVs written into media_dir, OTIO back."""

from __future__ import annotations

import os
import threading
import time
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pytest
import soundfile as sf

from bridge.client import Client, DaemonError
from bridge.planner import media_path, read_timeline, seconds
from bridge.timeline_output import is_generated_track
from daemon.engine import MediaError
from daemon.server import Server, ServerConfig
from tests.daemon_harness import full_disk, running_server
from tests.engines import ToneEngine
from tests.timeline_kit import (
    clip,
    dissolve,
    gap,
    marker,
    relink,
    rng,
    timeline,
    track,
    write_image_sequence,
    write_movie,
)

DATA = Path(__file__).parent / "data" / "otio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    engine = ToneEngine()
    server = Server(
        ServerConfig(bind="tcp://127.0.0.1:0", device="cpu", cache_dir=tmp_path_factory.mktemp("cache")),
        engine,
    )
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = Client(server.endpoint, timeout=30.0)
    yield client, engine
    client.close()
    server.request_stop()
    server.stopped.wait(10)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    return {
        "a": str(write_movie(folder / "a.mp4", 4.0)),
        "b": str(write_movie(folder / "b.mp4", 4.0)),
        "c": str(write_movie(folder / "c.mp4", 3.0, rate=25)),
    }


def edit(media, *, b_start=12, b_marker=None):
    markers = [marker(b_marker)] if b_marker else []
    return timeline(
        track(
            clip("A", 12, 24, media=media["a"], avail=(0, 96)),
            dissolve(4, 4),
            clip("B", b_start, 24, media=media["b"], avail=(0, 96), markers=markers),
            gap(12),
            clip("C", 25, 25, rate=25, media=media["c"], avail=(0, 75)),
            clip("offline", 0, 12, media="/nowhere/missing.mov"),
        )
    )


def run(client, tl, media_dir, **options):
    events = []
    result = client.generate_timeline(
        otio.adapters.write_to_string(tl, "otio_json"),
        str(media_dir),
        on_event=events.append,
        steps=options.pop("steps", 2),
        **options,
    )
    return result.body, events


def test_timeline_end_to_end(daemon, media, tmp_path):
    client, _ = daemon
    tl = edit(media)
    body, events = run(client, tl, tmp_path / "wavs", prompt="wind", seed=3)
    assert body["clips"] == 4 and body["rate"] == 24.0
    assert [f["clip"] for f in body["failed"]] == ["offline [V1/6]"]
    assert "not found" in body["failed"][0]["message"]
    done = [e.body for e in events if e.type == "clip_done"]
    assert sorted(d["index"] for d in done) == [0, 1, 2] and not any(d["cached"] for d in done)
    assert any(e.type == "progress" and e.body["stage"] == "sampling" for e in events)
    out = otio.adapters.read_from_string(body["otio"])
    (v2a,) = [t for t in out.tracks if is_generated_track(t)]
    assert [type(x).__name__ for x in v2a] == ["Clip", "Transition", "Clip", "Gap", "Clip"]
    video = [c for c in out.tracks[0].find_clips()][:3]
    for v, a, p in zip(video, v2a.find_clips(), body["placements"], strict=True):
        assert a.trimmed_range_in_parent() == v.trimmed_range_in_parent()
        path = media_path(a.media_reference.target_url)
        assert Path(path).parent == tmp_path / "wavs" and p["file"] == path
        info = sf.info(path)
        assert info.samplerate == 48000 and info.subtype == "PCM_24"
        assert info.frames == a.media_reference.available_range.duration.value
        head = seconds(a.source_range.start_time)
        want = round((seconds(v.trimmed_range_in_parent().duration) + head) * 48000)
        assert info.frames >= want  # clip plus its dissolve handles
        assert a.metadata["v2a"]["prompt"] == "wind" and a.metadata["v2a"]["model"] == "tone-test"
    assert [p["record_start"] for p in body["placements"]] == [0, 24, 60]
    assert [p["source_in"] for p in body["placements"]] == [0, 4, 0]
    assert not list((tmp_path / "wavs").glob(".v2a-*"))


def test_incremental_rerun(daemon, media, tmp_path):
    client, engine = daemon
    wavs = tmp_path / "wavs"
    run(client, edit(media), wavs)
    before = len(engine.calls)
    body, events = run(client, edit(media), wavs)
    assert len(engine.calls) == before  # nothing regenerated
    assert all(e.body["cached"] for e in events if e.type == "clip_done")
    # Move B's in point and give C... nothing: only B is made again.
    body, events = run(client, edit(media, b_start=20), wavs)
    assert len(engine.calls) == before + 1
    cached = {e.body["clip"]: e.body["cached"] for e in events if e.type == "clip_done"}
    assert cached == {"A [V1/1]": True, "B [V1/3]": False, "C [V1/5]": True}
    # A prompt written on B: again only B.
    body, events = run(client, edit(media, b_marker="v2a: door"), wavs)
    assert len(engine.calls) == before + 2 and engine.calls[-1].prompt == "door"
    # Another media_dir: the daemon's cache still has every take, no engine call.
    body, events = run(client, edit(media), tmp_path / "elsewhere")
    assert len(engine.calls) == before + 2
    assert len(list((tmp_path / "elsewhere").glob("*.wav"))) == 3


def test_sound_not_to_be_trusted_is_marked_fresh_from_the_cache_and_from_media_dir(media, tmp_path):
    # The engine marks B's picture unfamiliar. Whether B's sound is made now, comes from the
    # daemon's cache, or is already in media_dir from an earlier run, the editor hears of it in
    # its clip_done, its placement and the output timeline; A and C stay trusted.
    engine = ToneEngine(unfamiliar=media["b"])
    with running_server(tmp_path / "cache", engine) as server, Client(server.endpoint) as client:
        runs = [run(client, edit(media), tmp_path / folder) for folder in ("w", "w", "elsewhere")]
    assert len(engine.calls) == 3
    for body, events in runs:
        done = {e.body["clip"]: e.body["unfamiliar"] for e in events if e.type == "clip_done"}
        assert done == {"A [V1/1]": False, "B [V1/3]": True, "C [V1/5]": False}
        assert [p["unfamiliar"] for p in body["placements"]] == [False, True, False]
        out = otio.adapters.read_from_string(body["otio"])
        (v2a,) = [t for t in out.tracks if is_generated_track(t)]
        takes = [c.metadata["v2a"]["takes"][0]["unfamiliar"] for c in v2a.find_clips()]
        assert takes == [False, True, False]


def test_changed_media_content_regenerates(daemon, tmp_path):
    client, engine = daemon
    path = write_movie(tmp_path / "m.mp4", 2.0)
    tl = timeline(track(clip("M", 0, 24, media=str(path), avail=(0, 48))))
    run(client, tl, tmp_path / "w")
    n = len(engine.calls)
    time.sleep(0.01)
    write_movie(path, 2.0, size=(16, 16))  # same name, new picture
    run(client, tl, tmp_path / "w")
    assert len(engine.calls) == n + 1


def test_takes(daemon, media, tmp_path):
    client, _ = daemon
    tl = timeline(track(clip("A", 0, 24, media=media["a"], avail=(0, 96))))
    body, events = run(client, tl, tmp_path, takes=3, seed=10)
    (done,) = [e.body for e in events if e.type == "clip_done"]
    assert len(done["files"]) == 3 and len(set(done["files"])) == 3
    (c,) = otio.adapters.read_from_string(body["otio"]).tracks[-1].find_clips()
    assert sorted(c.media_references()) == ["take1", "take2", "take3"]
    assert [p["take"] for p in body["placements"]] == [1, 2, 3]


def test_continuous_mode_one_generation_across_cuts(daemon, media, tmp_path):
    client, engine = daemon
    tl = edit(media)
    n = len(engine.calls)
    body, _ = run(client, tl, tmp_path, mode="continuous", seed=99)
    ab, c = engine.calls[n:]
    assert len(ab.segments) == 2  # A and B, cut-aware; the gap ends the run
    assert ab.cut_times == pytest.approx((1.0,))
    assert len(c.segments) == 1  # the offline clip after C ends that run too
    assert [f["clip"] for f in body["failed"]] == ["offline [V1/6]"]
    assert [(p["record_start"], p["duration"]) for p in body["placements"]] == [(0, 48), (60, 24)]


def test_image_sequence_media(daemon, tmp_path):
    client, engine = daemon
    pattern = write_image_sequence(tmp_path / "plate", "sh010.", 1001, 30)
    ref = otio.schema.ImageSequenceReference(
        target_url_base=str(tmp_path / "plate") + "/",
        name_prefix="sh010.",
        name_suffix=".png",
        start_frame=1001,
        frame_zero_padding=4,
        rate=24,
        available_range=rng(1001, 30),
    )
    tl = timeline(track(clip("plate", 1005, 12, reference=ref)))
    body, _ = run(client, tl, tmp_path / "w")
    assert not body["failed"]
    (seg,) = engine.calls[-1].segments
    assert seg.media == pattern and seg.start_number == 1001 and seg.start == pytest.approx(4 / 24)


def test_percent_signs_in_sequence_names_reach_the_engine_escaped(daemon, tmp_path):
    client, engine = daemon
    folder = tmp_path / "grade 50%"
    pattern = write_image_sequence(folder, "take 100%.", 1, 12)
    ref = otio.schema.ImageSequenceReference(
        target_url_base=str(folder) + "/", name_prefix="take 100%.", name_suffix=".png",
        start_frame=1, frame_zero_padding=4, rate=24, available_range=rng(1, 12))
    body, _ = run(client, timeline(track(clip("graded", 1, 12, reference=ref))), tmp_path / "w")
    assert not body["failed"]
    (seg,) = engine.calls[-1].segments
    assert seg.media == pattern and seg.media % 1 == str(folder / "take 100%.0001.png")


def test_cancel_leaves_no_partial_files(daemon, media, tmp_path):
    client, engine = daemon
    tl = timeline(track(*[clip(f"S{i}", i, 24, media=media["a"], avail=(0, 96)) for i in range(4)]))
    engine.hold = True
    engine.release.clear()
    engine.started.clear()
    rid = client.submit(
        "generate_timeline",
        {"otio": otio.adapters.write_to_string(tl, "otio_json"), "media_dir": str(tmp_path), "steps": 3},
    )
    assert engine.started.wait(10)
    client.cancel(rid)
    try:
        with pytest.raises(DaemonError) as err:
            client.wait(rid, timeout=20)
        assert err.value.code == "cancelled"
    finally:
        engine.hold = False
        engine.release.set()
    assert not [p for p in os.listdir(tmp_path) if not p.endswith(".wav")]


def test_a_full_disk_under_the_cache_still_writes_every_clip(media, tmp_path):
    """The daemon's cache is on a full disk, media_dir is not: every clip is still delivered."""
    cache, wavs = tmp_path / "cache", tmp_path / "wavs"
    with (running_server(cache, device="cpu") as server, full_disk(cache),
          Client(server.endpoint, timeout=30) as client):
        body, events = run(client, edit(media), wavs)
    assert [f["clip"] for f in body["failed"]] == ["offline [V1/6]"]
    done = [e.body for e in events if e.type == "clip_done"]
    assert sorted(d["index"] for d in done) == [0, 1, 2]
    assert [sf.info(p["file"]).samplerate for p in body["placements"]] == [48000] * 3
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]


def test_a_full_media_dir_is_a_typed_error_that_keeps_the_clips_written_before_it(media, tmp_path):
    """media_dir's disk fills up after the first clip: the job ends with `output_error` naming
    the folder, the reason, what to do and the clip already written, which stays on disk (and
    in the cache, with the clip that failed: a re-run generates neither again)."""
    cache, wavs = tmp_path / "cache", tmp_path / "wavs"
    engine = ToneEngine()
    with running_server(cache, engine, device="cpu") as server, Client(server.endpoint, timeout=30) as client:
        events = []
        with full_disk(wavs, after=1), pytest.raises(DaemonError) as err:
            client.generate_timeline(otio.adapters.write_to_string(edit(media), "otio_json"),
                                     str(wavs), on_event=events.append, steps=2)
        (done,) = [e.body for e in events if e.type == "clip_done"]
        assert err.value.code == "output_error" and err.value.clip != done["clip"]
        message = err.value.message
        assert str(wavs) in message and "No space left on device" in message
        assert "free space" in message and "another media folder" in message
        assert "1 of 4 clips were written there before it" in message and done["clip"] in message
        assert sf.info(done["files"][0]).samplerate == 48000
        assert [p.name for p in wavs.iterdir()] == [Path(done["files"][0]).name]  # no partial file
        generated = len(engine.calls)
        body, events = run(client, edit(media), wavs)
    # Only the clip the job never reached is generated now.
    assert [c.segments[0].media for c in engine.calls[generated:]] == [media["c"]]
    cached = {e.body["index"]: e.body["cached"] for e in events if e.type == "clip_done"}
    assert cached == {0: True, 1: True, 2: False}
    assert done["files"][0] in [p["file"] for p in body["placements"]]


def test_a_media_dir_path_too_long_for_its_files_is_a_typed_error(daemon, media, tmp_path):
    client, _ = daemon
    wavs = tmp_path
    while len(str(wavs)) < 4000:  # the folder fits in PATH_MAX; its WAVs' full paths do not
        wavs = wavs / ("d" * min(200, 4000 - len(str(wavs))))
    wavs.mkdir(parents=True)
    name = "a rather long clip name " * 4
    tl = timeline(track(clip(name, 0, 24, media=media["a"], avail=(0, 96))))
    with pytest.raises(DaemonError) as err:
        run(client, tl, wavs)
    assert err.value.code == "output_error" and err.value.clip.startswith(name.strip())
    assert str(wavs) in err.value.message and "File name too long" in err.value.message
    assert "shorter path" in err.value.message and "no clip was written" in err.value.message


def test_a_media_dir_that_cannot_be_created_is_an_output_error(daemon, media, tmp_path):
    (tmp_path / "a file").write_bytes(b"")
    tl = timeline(track(clip("A", 0, 24, media=media["a"], avail=(0, 96))))
    with pytest.raises(DaemonError) as err:
        run(daemon[0], tl, tmp_path / "a file" / "wavs")
    assert err.value.code == "output_error" and "Not a directory" in err.value.message
    assert str(tmp_path / "a file" / "wavs") in err.value.message


def test_bad_timeline_is_a_clear_error(daemon, tmp_path):
    client, _ = daemon
    with pytest.raises(DaemonError) as err:
        client.generate_timeline('{"OTIO_SCHEMA": "Nonsense.1"}', str(tmp_path))
    assert err.value.code == "invalid_request"
    tl = timeline(track(clip("A", 0, 24, media="/x.mov")))
    with pytest.raises(DaemonError, match="V1"):
        client.generate_timeline(otio.adapters.write_to_string(tl, "otio_json"), str(tmp_path), track=3)


@pytest.mark.parametrize("name", ["transition_test.otio", "simple_cut.otio", "screening_example.otio"])
def test_real_samples_through_the_daemon(daemon, tmp_path, name):
    client, _ = daemon
    tl = read_timeline(DATA / name)
    for path, secs in relink(tl, tmp_path / "media").items():
        write_movie(Path(path), secs, size=(16, 16))
    body, _ = run(client, tl, tmp_path / "wavs", steps=1)
    assert not body["failed"]
    out = otio.adapters.read_from_string(body["otio"])
    video = list(out.tracks[0].find_clips())
    audio = list(out.tracks[-1].find_clips())
    assert len(audio) == len(video) == len(body["placements"])
    for v, a in zip(video, audio, strict=True):
        assert seconds(a.range_in_parent().start_time) == seconds(v.range_in_parent().start_time)
        frames = sf.info(media_path(a.media_reference.target_url)).frames
        assert frames == a.media_reference.available_range.duration.value


class BatchingEngine(ToneEngine):
    """Reports a GPU so the timeline job batches; a file named *corrupt* cannot be decoded."""

    def __init__(self):
        super().__init__(name="batching-test")
        self.batches: list[int] = []

    def load(self, device: str) -> None:
        super().load("cuda:0")

    def generate(self, request, progress, cancelled):
        if any("corrupt" in s.media for s in request.segments):
            raise MediaError(f"cannot decode {request.segments[0].media}: invalid data")
        return super().generate(request, progress, cancelled)

    def generate_batch(self, requests, progress, cancelled):
        self.batches.append(len(requests))
        return [self.generate(r, progress, cancelled) for r in requests]


def test_gpu_batches_equal_lengths_and_isolates_bad_media(media, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a movie at all")
    engine = BatchingEngine()
    with running_server(tmp_path / "cache", engine, device="cuda") as server:
        client = Client(server.endpoint, timeout=30)
        tl = timeline(
            track(
                *[clip(f"one s {i}", i, 24, media=media["a"], avail=(0, 96)) for i in range(3)],
                clip("broken", 0, 24, media=str(corrupt), avail=(0, 96)),
                *[clip(f"half s {i}", i, 12, media=media["b"], avail=(0, 96)) for i in range(2)],
            )
        )
        try:
            body, events = run(client, tl, tmp_path / "w", takes=2)
        finally:
            client.close()
    # 1 s clips: 3 clips x 2 takes + the broken one's 2 takes = 8 in one batch; 0.5 s: 4.
    assert sorted(engine.batches) == [4, 8]
    assert [f["clip"] for f in body["failed"]] == ["broken [V1/4]"]
    assert "invalid data" in body["failed"][0]["message"]
    assert len([e for e in events if e.type == "clip_done"]) == 5
    assert len(body["placements"]) == 10


def test_start_timecode_read_from_the_file_when_the_timeline_lacks_it(daemon, tmp_path):
    """EDLs carry source timecodes but no available_range: the file's own timecode decides."""
    client, engine = daemon
    rate = 30000 / 1001
    path = write_movie(tmp_path / "cam.mov", 3.0, rate=Fraction(30000, 1001), timecode="01:00:00;00")
    start = otio.opentime.from_timecode("01:00:01;00", rate).value
    tl = timeline(track(clip("cam", start, 30, rate=rate, media=str(path), avail=None)), rate=rate)
    body, _ = run(client, tl, tmp_path / "w")
    assert not body["failed"]
    (seg,) = engine.calls[-1].segments
    assert seg.start == pytest.approx(1.001, abs=1e-6)
