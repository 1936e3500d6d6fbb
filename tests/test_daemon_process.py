"""The daemon as a real process: signals, a second daemon on the same endpoint, restart and
fetch, start-up errors, a daemon dying under a client, and `v2a` starting one by itself."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bridge.client import Client, DaemonError, DaemonUnavailable
from tests.daemon_harness import (
    REPO,
    daemon_command,
    free_tcp_endpoint,
    make_media,
    start_daemon_process,
    stop_process,
    wait_for,
)

SLOW = {"V2A_TONE_STEP_DELAY": "0.2"}


def _wait_until_sampling(client: Client, request_id: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "the job never reached the sampler"
        for event in client.poll(1.0):
            assert event.id != request_id or not event.final, event
            if event.id == request_id and event.type == "progress" and event.body["stage"] == "sampling":
                return


def test_sigterm_cancels_the_running_job_and_exits_cleanly(tmp_path):
    media = make_media(tmp_path)
    endpoint = free_tcp_endpoint()
    process = start_daemon_process(endpoint, tmp_path / "cache", env=SLOW)
    with Client(endpoint, timeout=10) as client:
        running = client.submit("generate", {"media": media, "start": 0.0, "end": 0.5, "steps": 100})
        _wait_until_sampling(client, running)
        queued = client.submit("generate", {"media": media, "start": 0.0, "end": 0.5, "steps": 100, "seed": 2})
        process.send_signal(signal.SIGTERM)
        for request_id in (running, queued):
            with pytest.raises(DaemonError) as err:
                client.wait(request_id)
            assert err.value.code == "shutting_down"
    output = stop_process(process, signalled=True)
    assert process.returncode == 0, output
    assert "received SIGTERM" in output and "daemon stopped" in output


def test_sigint_with_on_exit_finish_lets_the_running_job_finish(tmp_path):
    media = make_media(tmp_path)
    endpoint = free_tcp_endpoint()
    process = start_daemon_process(endpoint, tmp_path / "cache", "--on-exit", "finish", env=SLOW)
    with Client(endpoint, timeout=10) as client:
        running = client.submit("generate", {"media": media, "start": 0.0, "end": 0.5, "steps": 5})
        _wait_until_sampling(client, running)
        process.send_signal(signal.SIGINT)
        result = client.wait(running)
    assert result.type == "result" and result.blobs[0][:4] == b"RIFF"
    output = stop_process(process, signalled=True)
    assert process.returncode == 0, output


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_a_second_daemon_on_the_same_endpoint_refuses_to_start(tmp_path, transport):
    endpoint = free_tcp_endpoint() if transport == "tcp" else f"ipc://{tmp_path}/daemon.sock"
    first = start_daemon_process(endpoint, tmp_path / "cache")
    try:
        second = subprocess.run(daemon_command(endpoint, tmp_path / "cache2"), cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"a V2A daemon is already serving {endpoint}" in second.stderr
        with Client(endpoint, timeout=10) as client:
            assert client.status()["pid"] == first.pid  # the first one still has the endpoint
    finally:
        output = stop_process(first)
    assert first.returncode == 0, output


def test_a_stale_ipc_socket_file_is_taken_over(tmp_path):
    path = tmp_path / "stale.sock"
    path.write_bytes(b"")  # left behind by a daemon that was killed
    endpoint = f"ipc://{path}"
    process = start_daemon_process(endpoint, tmp_path / "cache")
    stop_process(process)
    assert process.returncode == 0


def test_finished_results_survive_a_restart(tmp_path):
    media = make_media(tmp_path)
    endpoint = free_tcp_endpoint()
    cache = tmp_path / "cache"
    first = start_daemon_process(endpoint, cache)
    with Client(endpoint, timeout=10) as client:
        original = client.generate(media, 0.0, 0.6, seed=3, steps=2, request_id="keep-me")
        with pytest.raises(DaemonError):
            client.generate(str(tmp_path / "missing.mov"), 0.0, 1.0, request_id="failed-one")
        client.shutdown()
    first.wait(30)
    assert first.returncode == 0
    # The new daemon's engine cannot generate at all: whatever comes back comes from the store.
    second = start_daemon_process(endpoint, cache, env={"V2A_TONE_OOM": "always"})
    try:
        with Client(endpoint, timeout=10) as client:
            fetched = client.fetch("keep-me")
            assert fetched.type == "result" and fetched.blobs == original.blobs
            assert fetched.body == original.body
            events = []
            again = client.generate(media, 0.0, 0.6, seed=3, steps=2, request_id="keep-me", on_event=events.append)
            assert events[0].type == "accepted" and events[0].body["duplicate"] is True
            assert again.blobs == original.blobs
            with pytest.raises(DaemonError) as err:
                client.fetch("failed-one")
            assert err.value.code == "media_error"
            # a new id for the same picture, prompt and seed: the keyed cache answers
            cached = client.generate(media, 0.0, 0.6, seed=3, steps=2)
            assert cached.body["cached"] is True and cached.blobs == original.blobs
            with pytest.raises(DaemonError) as err:
                client.generate(media, 0.0, 0.6, seed=4, steps=2)
            assert err.value.code == "out_of_memory"
    finally:
        stop_process(second)


def test_a_client_notices_a_daemon_that_died_mid_job(tmp_path):
    media = make_media(tmp_path)
    endpoint = free_tcp_endpoint()
    process = start_daemon_process(endpoint, tmp_path / "cache", env=SLOW)
    with Client(endpoint, timeout=1.0) as client:
        running = client.submit("generate", {"media": media, "start": 0.0, "end": 0.5, "steps": 200})
        _wait_until_sampling(client, running)
        process.kill()
        process.wait(30)
        with pytest.raises(DaemonUnavailable) as err:
            client.wait(running)
    assert "v2a-daemon --bind" in str(err.value)
    process.stdout.close()


def test_a_job_survives_a_daemon_restart_mid_job(tmp_path):
    """kill -9 during sampling, a new daemon on the same endpoint: the waiting client notices the
    new instance at its next liveness ping and sends the job again under the same id."""
    media = make_media(tmp_path)
    endpoint = free_tcp_endpoint()
    first = start_daemon_process(endpoint, tmp_path / "cache", env=SLOW)
    with Client(endpoint, timeout=1.0) as client:
        events = []
        rid = client.submit("generate", {"media": media, "start": 0.0, "end": 0.5, "steps": 200, "seed": 5})
        _wait_until_sampling(client, rid)
        first.kill()
        first.wait(30)
        first.stdout.close()
        second = start_daemon_process(endpoint, tmp_path / "cache")
        try:
            result = client.wait(rid, on_event=events.append)
        finally:
            stop_process(second)
    assert result.type == "result" and result.body["seed"] == 5
    accepted = [e for e in events if e.type == "accepted"]
    assert len(accepted) == 1 and accepted[0].body["duplicate"] is False


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--engine", "tests.engines:BrokenEngine"], 2, "weights file is corrupt"),
    (["--engine", "no_such_module:Engine"], 2, "cannot import the engine module 'no_such_module'"),
    (["--engine", "tests.engines:nothing_here"], 2, "has no 'nothing_here'"),
    (["--bind", "tcp://0.0.0.0:5799"], 1, "refusing to bind tcp://0.0.0.0:5799"),
    (["--curve-keys", "/nonexistent/keys"], 1, "no server key in /nonexistent/keys"),
])
def test_startup_errors_are_clear(tmp_path, args, code, message):
    command = [sys.executable, "-m", "daemon.cli", "--cache-dir", str(tmp_path / "c"),
               "--bind", free_tcp_endpoint(), "--engine", "tests.engines:ToneEngine", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stderr
    assert message in result.stderr


def test_v2a_starts_a_local_daemon_and_says_where_its_log_is(tmp_path):
    endpoint = free_tcp_endpoint()
    env = {**os.environ, "V2A_ENGINE": "tests.engines:ToneEngine", "XDG_CACHE_HOME": str(tmp_path)}
    status = subprocess.run([sys.executable, "-m", "bridge.cli", "--endpoint", endpoint, "status"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert f"started a local daemon on {endpoint}" in status.stderr
    log_path = tmp_path / "v2a-bridge" / "logs" / f"daemon-tcp-127-0-0-1-{endpoint.rsplit(':', 1)[1]}.log"
    assert str(log_path) in status.stderr and log_path.exists()
    assert "tone-test" in status.stdout
    with Client(endpoint, timeout=10) as client:
        pid = client.status()["pid"]
    stop = subprocess.run([sys.executable, "-m", "bridge.cli", "--endpoint", endpoint, "shutdown"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr

    def gone() -> bool:
        # A zombie (exited, not yet reaped by whoever adopted it) counts as gone.
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True

    wait_for(gone, timeout=30)
    assert "daemon stopped" in log_path.read_text()
