"""The daemon's two limits over real ZeroMQ: a full queue refuses new jobs with `queue_full` and
serves on; results evicted by the cache cap answer `not_found` saying so."""

import pytest

from bridge.client import Client, DaemonError
from tests.daemon_harness import (
    free_tcp_endpoint,
    make_media,
    running_server,
    start_daemon_process,
    stop_process,
)
from tests.engines import ToneEngine


@pytest.fixture
def media(tmp_path):
    return make_media(tmp_path)


def _job(media: str, seed: int) -> dict:
    return {"media": media, "start": 0.0, "end": 0.2, "steps": 3, "seed": seed}


def test_a_full_queue_refuses_new_jobs_and_the_daemon_serves_on(tmp_path, media):
    engine = ToneEngine()
    engine.hold = True
    with running_server(tmp_path / "cache", engine, max_queue=2) as server, \
            Client(server.endpoint) as client, Client(server.endpoint) as other:
        running = client.submit("generate", _job(media, 1))
        assert engine.started.wait(20)
        queued = [client.submit("generate", _job(media, seed)) for seed in (2, 3)]
        with pytest.raises(DaemonError) as err:
            client.wait(client.submit("generate", _job(media, 4), request_id="one-too-many"))
        assert err.value.code == "queue_full"
        assert "2 jobs waiting" in err.value.message and "--max-queue" in err.value.message
        assert "wait" in err.value.message and "cancel" in err.value.message
        # a re-sent id of a queued job is the same job, full queue or not
        other.submit("generate", _job(media, 2), request_id=queued[0])
        assert other.ping() > 0  # answered after the accepted event, which is waiting by now
        accepted = [e for e in other.poll(1.0) if e.id == queued[0]]
        assert accepted and accepted[0].type == "accepted" and accepted[0].body["duplicate"] is True
        status = client.status()
        assert status["queue"]["queued"] == 2 and status["max_queue"] == 2
        # room again after a cancel: the refused id may be sent again
        assert client.cancel(queued[1])["cancelled"] is True
        retry = client.submit("generate", _job(media, 4), request_id="one-too-many")
        engine.release.set()
        assert client.wait(running).type == "result"
        assert other.wait(queued[0]).type == "result"
        assert client.wait(retry).type == "result"
    assert [call.seed for call in engine.calls] == [1, 2, 4]


def test_no_queue_limit_when_max_queue_is_zero(tmp_path, media):
    engine = ToneEngine()
    engine.hold = True
    with running_server(tmp_path / "cache", engine, max_queue=0) as server, Client(server.endpoint) as client:
        ids = [client.submit("generate", _job(media, seed)) for seed in range(5)]
        assert engine.started.wait(20)
        assert client.status()["max_queue"] is None
        engine.release.set()
        assert all(client.wait(rid).type == "result" for rid in ids)


def test_a_result_evicted_by_the_cache_cap_says_so(tmp_path, media):
    # One 0.2 s stereo 24-bit WAV is 57.6 kB: the cap holds one result, not two.
    cap = 100_000
    engine = ToneEngine()
    with running_server(tmp_path / "cache", engine, cache_max_bytes=cap) as server, \
            Client(server.endpoint) as client:
        first = client.generate(media, 0.0, 0.2, seed=1, steps=1, request_id="first")
        client.generate(media, 0.0, 0.2, seed=2, steps=1, request_id="second")
        status = client.status()
        assert status["cache_max_bytes"] == cap and 0 < status["cache_bytes"] <= cap
        with pytest.raises(DaemonError) as err:
            client.fetch("first")
        assert err.value.code == "not_found"
        assert "evicted" in err.value.message and "--cache-max-gb" in err.value.message
        assert "generate it again" in err.value.message
        # re-sending the evicted job's id runs it again, from scratch (its cache key went too)
        events = []
        rerun = client.generate(media, 0.0, 0.2, seed=1, steps=1, request_id="first",
                                on_event=events.append)
        assert events[0].type == "accepted" and events[0].body["duplicate"] is False
        assert rerun.body["cached"] is False and rerun.blobs == first.blobs
        # ...which pushed the other result out in turn
        with pytest.raises(DaemonError, match="evicted"):
            client.fetch("second")
        assert client.ping() > 0
    assert len(engine.calls) == 3
    # after a restart the journal agrees: "first" is stored, "second" runs as a new job
    with running_server(tmp_path / "cache", ToneEngine(), cache_max_bytes=cap) as server, \
            Client(server.endpoint) as client:
        assert client.fetch("first").blobs == first.blobs
        events = []
        client.generate(media, 0.0, 0.2, seed=2, steps=1, request_id="second", on_event=events.append)
        assert events[0].body["duplicate"] is False


def test_the_daemon_command_takes_both_limits(tmp_path):
    endpoint = free_tcp_endpoint()
    process = start_daemon_process(endpoint, tmp_path / "cache", "--cache-max-gb", "0.5", "--max-queue", "7")
    try:
        with Client(endpoint, timeout=10) as client:
            status = client.status()
        assert status["cache_max_bytes"] == 2**29 and status["max_queue"] == 7
        assert status["cache_bytes"] == 0
    finally:
        stop_process(process)
