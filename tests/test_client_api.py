"""bridge.client as the plugins use it: light imports, vendorable, non-blocking poll for host
UIs, blocking calls for scripts, clear errors when nothing answers; and the `v2a` command."""

import json
import shutil
import subprocess
import sys
import threading
import time

import pytest

from bridge.cli import main as v2a
from bridge.client import Client, DaemonUnavailable, WaitTimeout
from tests.daemon_harness import REPO, free_tcp_endpoint, make_media, running_server
from tests.engines import ToneEngine


def test_importing_the_client_pulls_in_nothing_heavy():
    probe = (
        "import sys, bridge.client, bridge.cli; "
        "print([m for m in ('torch', 'av', 'pydantic', 'opentimelineio', 'numpy') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_plugin_can_vendor_client_and_wire_as_its_own_package(tmp_path):
    package = tmp_path / "my_addon" / "v2a_vendor"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in ("client.py", "wire.py"):
        shutil.copy(REPO / "bridge" / name, package / name)
    with running_server(tmp_path / "cache") as server:
        probe = (
            "import sys; from v2a_vendor.client import Client; "
            f"c = Client({server.endpoint!r}, timeout=10); c.ping(); print(c.status()['model']); "
            "print('bridge' in sys.modules)"
        )
        result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / "my_addon",
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["tone-test", "False"]


def test_nothing_listening_is_a_clear_error_after_the_timeout():
    endpoint = free_tcp_endpoint()
    with Client(endpoint, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable) as err:
            client.ping()
        assert time.monotonic() - started < 5
        assert client.poll() == []  # a request to a dead daemon leaves nothing behind
    message = str(err.value)
    assert endpoint in message and f"v2a-daemon --bind {endpoint}" in message and "v2a --endpoint" in message


def test_poll_never_blocks_and_delivers_every_event_of_a_job(tmp_path):
    media = make_media(tmp_path)
    engine = ToneEngine(step_delay=0.01)
    with running_server(tmp_path / "cache", engine) as server, Client(server.endpoint) as client:
        started = time.monotonic()
        assert client.poll() == []
        assert time.monotonic() - started < 2.0  # no waiting (generous: a busy CI box)
        rid = client.submit("generate", {"media": media, "start": 0.0, "end": 0.5, "steps": 10})
        seen = []
        deadline = time.monotonic() + 30
        while not (seen and seen[-1].final):
            assert time.monotonic() < deadline
            seen.extend(client.poll(timeout=0.05))  # what a host UI timer does
    assert {e.id for e in seen} == {rid}
    assert seen[0].type == "accepted" and seen[-1].type == "result"
    assert any(e.type == "progress" and e.body["stage"] == "sampling" for e in seen)
    fractions = [e.body["fraction"] for e in seen if e.type == "progress"]
    assert fractions == sorted(fractions)


def test_waits_for_several_outstanding_requests_in_any_order(tmp_path):
    media = make_media(tmp_path)
    with running_server(tmp_path / "cache") as server, Client(server.endpoint) as client:
        first = client.submit("generate", {"media": media, "start": 0.0, "end": 0.3, "steps": 2, "seed": 1})
        second = client.submit("generate", {"media": media, "start": 0.0, "end": 0.4, "steps": 2, "seed": 2})
        assert client.ping() > 0  # replies to other requests do not get lost meanwhile
        late = client.wait(second)
        early = client.wait(first)
    assert late.body["duration"] == pytest.approx(0.4)
    assert early.body["duration"] == pytest.approx(0.3)


def test_wait_timeout_leaves_the_job_running(tmp_path):
    media = make_media(tmp_path)
    engine = ToneEngine()
    engine.hold = True
    with running_server(tmp_path / "cache", engine) as server, Client(server.endpoint) as client:
        rid = client.submit("generate", {"media": media, "start": 0.0, "end": 0.3, "steps": 3})
        with pytest.raises(WaitTimeout, match="fetch"):
            client.wait(rid, timeout=0.3)
        engine.release.set()
        assert client.wait(rid).type == "result"


def test_v2a_commands_against_a_running_daemon(tmp_path, capsys):
    media = make_media(tmp_path)
    out = tmp_path / "out.wav"
    with running_server(tmp_path / "cache") as server:
        base = ["--endpoint", server.endpoint]
        assert v2a([*base, "ping"]) == 0
        assert "pong" in capsys.readouterr().out
        assert v2a([*base, "generate", media, "0", "0.5", "--steps", "2", "--seed", "7", "-o", str(out)]) == 0
        printed = capsys.readouterr()
        assert f"wrote {out}" in printed.out and "sampling" in printed.err
        assert out.read_bytes()[:4] == b"RIFF"
        assert v2a([*base, "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["model_loaded"] is True and status["queue"]["jobs"] == 1
        assert v2a([*base, "jobs"]) == 0
        assert "generate" in capsys.readouterr().out
        assert v2a([*base, "unload"]) == 0
        assert "unloaded" in capsys.readouterr().out
        assert v2a([*base, "generate", str(tmp_path / "missing.mov"), "0", "1"]) == 1
        assert "media_error" in capsys.readouterr().err
        assert v2a([*base, "cancel", "nope"]) == 1
        assert "not_found" in capsys.readouterr().err


def test_v2a_without_a_daemon_and_no_start(capsys):
    assert v2a(["--endpoint", free_tcp_endpoint(), "--timeout", "0.3", "--no-start", "status"]) == 3
    assert "v2a-daemon --bind" in capsys.readouterr().err


def test_v2a_says_why_it_could_not_start_a_daemon_when_its_log_cannot_be_written(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    assert v2a(["--endpoint", free_tcp_endpoint(), "--timeout", "0.3", "status"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "v2a-daemon --bind" in err
    assert f"no local daemon was started: could not write {tmp_path / 'file' / 'v2a-bridge'}" in err
    assert "(Not a directory)" in err and "XDG_CACHE_HOME" in err


@pytest.mark.parametrize("call", [
    lambda c, media: c.generate(media, 0.0, 0.2, steps=1, priority=101),
    lambda c, media: c.generate(media, 0.0, 0.2, steps=1, request_id="my job"),
    lambda c, media: c.request("x" * 65),
])
def test_a_request_the_daemon_could_not_answer_by_id_is_refused_at_once(tmp_path, call):
    """A header the daemon refuses (priority out of range, id with spaces) gets its error under
    no id the client knows: refused here, or a blocking call would wait forever (its pings
    keep being answered) or blame a daemon that is there."""
    from bridge.client import V2AError

    media = make_media(tmp_path)
    with running_server(tmp_path / "cache") as server, Client(server.endpoint, timeout=1.0) as client:
        outcome = []

        def attempt():  # in a thread: before the fix, the blocking call never returned
            try:
                outcome.append(call(client, media))
            except Exception as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=attempt, daemon=True)
        waiter.start()
        waiter.join(10)
        assert outcome, "the call was still waiting after 10 s"
        assert isinstance(outcome[0], V2AError) and not isinstance(outcome[0], DaemonUnavailable)
        assert "header" in str(outcome[0])
        assert client.generate(media, 0.0, 0.2, steps=1).type == "result"


def test_a_request_that_cannot_be_handed_to_zeromq_is_daemon_unavailable_not_a_hang():
    # Nobody listens: requests queue on the connection until ZeroMQ's high-water mark, and then
    # a send would block for good (as it does between reconnects after a refused CURVE
    # handshake). The client gives up after SEND_TIMEOUT_MS and forgets the job it could not send.
    import bridge.client as client_module

    with Client(free_tcp_endpoint(), timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable):
            for _ in range(100_000):
                client.submit("generate", {"clips": []})
        assert time.monotonic() - started < 30
        assert client_module.SEND_TIMEOUT_MS / 1000 <= 5
        before = len(client._unfinished)
        with pytest.raises(DaemonUnavailable):
            client.submit("generate", {"clips": []})
        assert len(client._unfinished) == before
