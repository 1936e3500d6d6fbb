"""Shared set-up for the foundation's tests (protocol, daemon, client): real daemons on real
ZeroMQ endpoints, in-process (threads) for speed or as subprocesses for signals and restarts."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import zmq

from bridge import wire
from bridge.client import Client, DaemonUnavailable
from daemon.server import Server, ServerConfig
from tests.engines import ToneEngine

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 60.0
"""Generous: a subprocess daemon imports numpy and pydantic on a loaded two-core box."""


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; elsewhere only a likelier place to be free


def free_tcp_endpoint() -> str:
    """A loopback endpoint nothing listens on, its port below the kernel's ephemeral range.

    A port from that range (what binding port 0 gives) is unsafe for a test that lets a client
    reconnect to it before a daemon binds it: the kernel may hand the client that very port as
    its own source port, the connection meets itself (a TCP self-connect), and the daemon then
    finds its port taken."""
    start = _ephemeral_ports_start()
    ports = range(max(1024, start - 12000), start)
    for port in random.sample(ports, k=min(200, len(ports))):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return f"tcp://127.0.0.1:{port}"
    raise RuntimeError(f"no free loopback port below {start} (the ephemeral range)")


def make_media(folder: Path, name: str = "shot.mov") -> str:
    """A stand-in picture file (ToneEngine only checks that it exists)."""
    path = folder / name
    path.write_bytes(b"\0" * 16)
    return str(path)


@contextlib.contextmanager
def full_disk(folder: Path, *, after: int = 0):
    """Files written under `folder` meet a full disk: each is created, and its bytes are refused
    with ENOSPC by the kernel (its descriptor is turned onto /dev/full). Covers every
    write-then-rename (`tempfile.mkstemp`) there: the store's objects and keys, a timeline's
    WAVs in its media_dir. `after`: the disk fills up only once that many files were written."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full to stand in for a full disk")
    folder = Path(folder).resolve()
    real_mkstemp = tempfile.mkstemp
    written = 0

    def mkstemp(*args, dir=None, **kwargs):
        nonlocal written
        fd, name = real_mkstemp(*args, dir=dir, **kwargs)
        if dir is not None and Path(dir).resolve().is_relative_to(folder):
            written += 1
            if written <= after:
                return fd, name
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, fd)
            os.close(full)
        return fd, name

    tempfile.mkstemp = mkstemp
    try:
        yield
    finally:
        tempfile.mkstemp = real_mkstemp


@contextlib.contextmanager
def running_server(cache_dir: Path, engine=None, *, bind: str = "tcp://127.0.0.1:0", **config):
    """A daemon serving from a thread of this process; yields the Server (see `.endpoint`)."""
    server = Server(ServerConfig(bind=bind, cache_dir=cache_dir, **config), engine or ToneEngine())
    server.start()
    thread = threading.Thread(target=server.serve_forever, name="test-daemon", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.request_stop()
        thread.join(30)
        assert not thread.is_alive(), "the daemon did not stop within 30 s"


def raw_socket(endpoint: str, context: zmq.Context | None = None) -> zmq.Socket:
    """A bare DEALER for sending frames no well-behaved client would send."""
    sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    return sock


def recv_message(sock: zmq.Socket, timeout: float = 10.0) -> wire.Message:
    assert sock.poll(int(timeout * 1000)), f"no reply within {timeout} s"
    return wire.decode(sock.recv_multipart())


def daemon_command(endpoint: str, cache_dir: Path, *extra: str, engine: str = "tests.engines:ToneEngine"):
    return [sys.executable, "-m", "daemon.cli", "--bind", endpoint, "--cache-dir", str(cache_dir),
            "--engine", engine, "--log-level", "DEBUG", *extra]


def start_daemon_process(
    endpoint: str, cache_dir: Path, *extra: str, env: dict | None = None,
    engine: str = "tests.engines:ToneEngine",
) -> subprocess.Popen:
    """`v2a-daemon` in a subprocess, returned once it answers a ping."""
    process = subprocess.Popen(
        daemon_command(endpoint, cache_dir, *extra, engine=engine), cwd=REPO,
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    wait_until_answering(endpoint, process)
    return process


def wait_until_answering(endpoint: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with Client(endpoint, timeout=1.0) as client:
        while True:
            try:
                client.ping()
                return
            except DaemonUnavailable:
                if process is not None and process.poll() is not None:
                    output = (process.stdout.read().decode(errors="replace")
                              if process.stdout else "(its output went elsewhere)")
                    raise AssertionError(f"daemon exited with {process.returncode}:\n{output}") from None
                if time.monotonic() > deadline:
                    raise


def stop_process(process: subprocess.Popen, timeout: float = 30.0, signalled: bool = False) -> str:
    """SIGTERM (if still running), wait, and return everything it printed. `signalled`: the
    test already sent the signal, so only wait (a second one could land while the
    interpreter is exiting, when the default action kills it)."""
    if process.poll() is None and not signalled:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"daemon ignored SIGTERM for {timeout} s:\n{output.decode(errors='replace')}") from None
    return output.decode(errors="replace")


def wait_for(condition, timeout: float = 20.0, interval: float = 0.01):
    """Poll `condition()` until it is truthy (state we cannot be told about by an event)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
