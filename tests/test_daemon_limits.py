"""The daemon's limits over real ZeroMQ: a full queue refuses new jobs with `queue_full` and
serves on; results evicted by the cache cap answer `not_found` saying so; a request over the
message size limit is refused by the client before it is sent (the daemon states its limit),
and answered `too_large` by the daemon when another sender sends one."""

import time

import msgpack
import pytest
import zmq

from bridge import wire
from bridge.client import Client, DaemonError, MessageTooLarge
from daemon.server import Server, ServerConfig, StartupError
from tests.daemon_harness import (
    free_tcp_endpoint,
    make_media,
    raw_socket,
    recv_message,
    running_server,
    start_daemon_process,
    stop_process,
)
from tests.engines import ToneEngine

MIB = 2**20


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


def test_the_daemon_command_takes_every_limit(tmp_path):
    endpoint = free_tcp_endpoint()
    process = start_daemon_process(endpoint, tmp_path / "cache", "--cache-max-gb", "0.5",
                                   "--max-queue", "7", "--max-message-mb", "2.5")
    try:
        with Client(endpoint, timeout=10) as client:
            status = client.status()
            pong = client.request("ping").body
        assert status["cache_max_bytes"] == 2**29 and status["max_queue"] == 7
        assert status["cache_bytes"] == 0
        assert status["max_message_bytes"] == pong["max_message_bytes"] == int(2.5 * MIB)
    finally:
        stop_process(process)


# --- the message size limit -------------------------------------------------------------------


def _timeline(size: int, tmp_path) -> dict:
    """A generate_timeline body of about `size` bytes (its OTIO need not parse: what is
    refused for its size is never read)."""
    return {"otio": "x" * size, "media_dir": str(tmp_path / "out")}


def test_a_request_over_the_daemons_limit_is_refused_at_once_saying_what_to_do(tmp_path):
    with running_server(tmp_path / "cache", max_message_bytes=MIB) as server, \
            Client(server.endpoint, timeout=10) as client:
        # A new client has not heard the limit yet: the request waits for the client's own
        # ping, then ends without being sent (before, it vanished and wait() never returned).
        started = time.monotonic()
        rid = client.submit("generate_timeline", _timeline(int(1.5 * MIB), tmp_path))
        with pytest.raises(MessageTooLarge) as err:
            client.wait(rid, timeout=5)
        assert time.monotonic() - started < 2
        assert err.value.code == "too_large" and isinstance(err.value, DaemonError)
        message = err.value.message
        assert "generate_timeline request is 1,5" in message and "1,048,576 bytes = 1 MiB" in message
        assert server.endpoint in message and "not sent" in message
        assert "--max-message-mb 2 or more" in message and "fewer clips" in message

        # Now the limit is known: the refusal is waiting as soon as submit returns, and a host
        # UI polling with a timeout of 0 sees it as the job's final event.
        rid = client.submit("generate_timeline", _timeline(3 * MIB, tmp_path))
        (event,) = client.poll()
        assert (event.id, event.type, event.final) == (rid, "error", True)
        assert event.body["code"] == "too_large" and "--max-message-mb 4 or more" in event.body["message"]

        assert client.status()["queue"]["jobs"] == 0  # neither reached the daemon
        assert client.ping() > 0


def test_a_request_over_a_mib_within_the_limit_is_sent_once_the_limit_is_known(tmp_path):
    with running_server(tmp_path / "cache", max_message_bytes=4 * MIB) as server, \
            Client(server.endpoint, timeout=10) as client:
        rid = client.submit("generate_timeline", _timeline(int(1.5 * MIB), tmp_path))
        with pytest.raises(DaemonError) as err:
            client.wait(rid, timeout=10)
        # the daemon read it: its OTIO is refused, not its size
        assert err.value.code == "invalid_request" and "OTIO" in err.value.message


def test_an_oversize_request_from_another_sender_gets_too_large_saying_what_to_do(tmp_path):
    """Senders that do not check (older clients, other languages) hear `too_large` for a frame
    over the limit instead of silence; only frames over twice the limit are dropped by ZeroMQ."""
    with running_server(tmp_path / "cache", max_message_bytes=MIB) as server, \
            Client(server.endpoint, timeout=10) as client:
        sock = raw_socket(server.endpoint)
        body = {"otio": "x" * int(1.5 * MIB), "media_dir": str(tmp_path)}
        sock.send_multipart(wire.encode({"id": "big-otio", "type": "generate_timeline"}, body))
        reply = recv_message(sock)
        assert (reply.id, reply.type, reply.body["code"]) == ("big-otio", "error", "too_large")
        assert "exceeds the limit of 1048576 bytes" in reply.body["message"]
        assert "--max-message-mb 2 or more" in reply.body["message"]

        sock.send_multipart(wire.encode({"id": "huge", "type": "ping"}, {}, [b"z" * (2 * MIB + 1)]))
        assert not sock.poll(500), "a frame over twice the limit is not read"
        sock.close()
        assert client.ping() > 0


def test_a_daemon_limit_under_a_mib_is_refused_at_start(tmp_path):
    server = Server(ServerConfig(bind="tcp://127.0.0.1:0", cache_dir=tmp_path / "cache",
                                 max_message_bytes=MIB // 2), ToneEngine())
    with pytest.raises(StartupError, match=r"--max-message-mb 0.5 is too small") as err:
        server.start()
    assert "up to 1 MiB" in str(err.value) and "at least that" in str(err.value)


def _answer(router: zmq.Socket, type_: str, body: dict) -> wire.Message:
    """Play an older or vanishing daemon: read one request and answer it."""
    assert router.poll(10_000), "no request came"
    identity, *frames = router.recv_multipart()
    request = wire.decode(frames)
    header = msgpack.packb({"id": request.id, "type": type_})
    router.send_multipart([identity, wire.VERSION_FRAME, header, msgpack.packb(body)])
    return request


def _pong(instance: str, **extra) -> dict:
    return {"protocol": wire.PROTOCOL_VERSION, "version": "0.0.9", "time": 0.0,
            "instance": instance, **extra}


def test_a_daemon_that_does_not_state_its_limit_still_gets_the_request(tmp_path):
    """Daemons before `max_message_bytes` leave it out of their pong: the client then takes the
    default 64 MiB and sends as before."""
    endpoint = free_tcp_endpoint()
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.linger = 0
    router.bind(endpoint)
    try:
        with Client(endpoint, timeout=10) as client:
            rid = client.submit("generate_timeline", _timeline(int(1.5 * MIB), tmp_path))
            probe = _answer(router, "pong", _pong("old"))
            assert probe.type == "ping" and probe.id != rid
            assert client.poll(5) == []  # the client's own ping: its pong is not the caller's
            request = _answer(router, "error", {"code": "invalid_request", "message": "no"})
            assert (request.id, request.type) == (rid, "generate_timeline")
            with pytest.raises(DaemonError, match="invalid_request"):
                client.wait(rid, timeout=10)
    finally:
        router.close()


def test_a_job_resent_to_a_restarted_daemon_with_a_smaller_limit_is_refused(tmp_path):
    """The job was accepted by a daemon that took 4 MiB; the daemon now on the endpoint takes
    1 MiB: re-sending it after the restart would vanish, so it ends with too_large instead."""
    endpoint = free_tcp_endpoint()
    # A context of its own: closing a socket releases its port later, in the context's I/O
    # thread, and the daemon below binds the same port; terminating the context waits for it.
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(endpoint)
    with Client(endpoint, timeout=0.5) as client:
        try:
            client.submit("ping")
            _answer(router, "pong", _pong("before", max_message_bytes=4 * MIB))
            assert [e.type for e in client.poll(5)] == ["pong"]
            rid = client.submit("generate_timeline", _timeline(int(1.5 * MIB), tmp_path))
            _answer(router, "accepted", {"kind": "generate_timeline", "state": "queued",
                                         "position": 0, "queued": 1, "duplicate": False,
                                         "instance": "before"})
            assert [e.type for e in client.poll(5)] == ["accepted"]
        finally:
            router.close()
            context.term()
        with running_server(tmp_path / "cache", bind=endpoint, max_message_bytes=MIB) as server:
            with pytest.raises(MessageTooLarge, match="--max-message-mb 2 or more"):
                client.wait(rid, timeout=10)
            assert server.jobs.counts()["jobs"] == 0
