"""Protocol benchmark: how fast the daemon answers, and how fast audio comes back.

    python benchmarks/protocol.py [--engine module:factory] [--transport tcp ipc]

Starts a real `v2a-daemon` subprocess (default engine; it is never asked to generate) and
measures from this process through `bridge.client`:

- ping round trip, p50/p99 (goal: p50 <= 0.5 ms on loopback);
- status requests per second from one client, one at a time (goal: >= 5,000/s), and pipelined;
- delivering 8 s of 48 kHz stereo 24-bit audio as a result (goal: <= 10 ms): a `fetch` of a
  stored 8 s result (request, store read, transfer to the client, decode), and separately
  the time to encode that WAV (the job's "writing" stage, before delivery).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.timing import median_seconds  # noqa: E402
from bridge.client import Client, DaemonUnavailable  # noqa: E402
from daemon.store import ResultStore  # noqa: E402
from daemon.wav import wav_bytes  # noqa: E402

RESULT_ID = "bench-8s-stereo"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def eight_seconds_of_audio() -> np.ndarray:
    t = np.arange(8 * 48_000) / 48_000
    left = 0.3 * np.sin(2 * np.pi * 220 * t)
    return np.stack([left, 0.5 * left]).astype(np.float32)  # (2, 384000)


def store_a_result(cache_dir: Path) -> int:
    wav = wav_bytes(eight_seconds_of_audio(), model="bench", seed=0)
    body = {"duration": 8.0, "sample_rate": 48_000, "channels": 2, "sample_format": "s24le",
            "model": "bench", "seed": 0, "steps": 25, "cfg": 4.5, "cached": False,
            "low_memory": False, "elapsed_s": 0.0}
    ResultStore(cache_dir).record(RESULT_ID, "generate", "result", body, [wav])
    return len(wav)


def start_daemon(endpoint: str, cache_dir: Path, engine: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "--bind", endpoint, "--cache-dir", str(cache_dir),
         "--engine", engine, "--log-level", "WARNING"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    with Client(endpoint, timeout=1.0) as client:
        while True:
            try:
                client.ping()
                return process
            except DaemonUnavailable:
                if process.poll() is not None:
                    raise SystemExit(f"daemon failed to start:\n{process.stderr.read().decode()}") from None
                if time.monotonic() > deadline:
                    raise


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(endpoint: str, daemon_pid: int) -> dict:
    figures = {}
    with Client(endpoint, timeout=10) as client:
        for _ in range(300):
            client.ping()
        pings = [client.ping() * 1000 for _ in range(3000)]
        figures["ping_p50_ms"] = statistics.median(pings)
        figures["ping_p99_ms"] = percentile(pings, 99)

        for _ in range(200):
            client.status()
        count = 4000
        daemon_cpu, client_cpu = process_cpu_seconds(daemon_pid), time.process_time()
        latencies = []
        started = time.perf_counter()
        for _ in range(count):
            sent = time.perf_counter()
            client.status()
            latencies.append(time.perf_counter() - sent)
        figures["status_per_s"] = count / (time.perf_counter() - started)
        # The median request's pace: what one client sustains when nothing else competes for
        # the CPUs (the mean above also carries every scheduling hiccup of a busy machine).
        figures["status_p50_per_s"] = 1.0 / statistics.median(latencies)
        # CPU both sides spend per request (incl. ZeroMQ I/O threads): what a quiet machine
        # would allow, whatever else is running while this is measured.
        figures["status_cpu_us"] = 1e6 * (
            process_cpu_seconds(daemon_pid) - daemon_cpu + time.process_time() - client_cpu
        ) / count

        started = time.perf_counter()
        ids = [client.submit("status") for _ in range(count)]
        for rid in ids:
            client.wait(rid)
        figures["status_pipelined_per_s"] = count / (time.perf_counter() - started)

        for _ in range(5):
            client.fetch(RESULT_ID)
        fetches = []
        for _ in range(100):
            started = time.perf_counter()
            event = client.fetch(RESULT_ID)
            fetches.append((time.perf_counter() - started) * 1000)
            assert event.type == "result" and len(event.blobs[0]) > 2_000_000
        figures["fetch_p50_ms"] = statistics.median(fetches)
        figures["fetch_p99_ms"] = percentile(fetches, 99)
    return figures


def measure_wav_encoding() -> float:
    audio = eight_seconds_of_audio()
    return 1000 * median_seconds(lambda: wav_bytes(audio, model="bench", seed=0), 30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="daemon.model.engine:V2AEngine")
    parser.add_argument("--transport", nargs="+", default=["tcp", "ipc"], choices=["tcp", "ipc"])
    args = parser.parse_args(argv)

    encode_ms = measure_wav_encoding()
    rows = []
    with tempfile.TemporaryDirectory(prefix="v2a-bench-") as tmp:
        cache = Path(tmp) / "cache"
        wav_size = store_a_result(cache)
        for transport in args.transport:
            endpoint = (f"tcp://127.0.0.1:{free_port()}" if transport == "tcp"
                        else f"ipc://{tmp}/bench.sock")
            daemon = start_daemon(endpoint, cache, args.engine)
            try:
                figures = measure(endpoint, daemon.pid)
            finally:
                daemon.terminate()
                daemon.wait(30)
            rows.append((transport, figures))

    print(f"V2A Bridge protocol benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"8 s stereo 24-bit WAV = {wav_size / 1e6:.2f} MB)")
    print()
    header = f"{'measure':<44}{'goal':>12}" + "".join(f"{t:>12}" for t, _ in rows)
    print(header)
    print("-" * len(header))

    def line(label, goal, key, fmt):
        cells = "".join(f"{format(f[key], fmt):>12}" for _, f in rows)
        print(f"{label:<44}{goal:>12}{cells}")

    line("ping round trip p50 (ms)", "<= 0.5", "ping_p50_ms", ".3f")
    line("ping round trip p99 (ms)", "", "ping_p99_ms", ".3f")
    line("status requests/s, one at a time", ">= 5000", "status_per_s", ",.0f")
    line("status requests/s, at the median latency", "", "status_p50_per_s", ",.0f")
    line("status requests/s, pipelined", "", "status_pipelined_per_s", ",.0f")
    line("status CPU per request, both sides (us)", "", "status_cpu_us", ".0f")
    line("deliver 8 s stereo 24-bit result p50 (ms)", "<= 10", "fetch_p50_ms", ".2f")
    line("deliver 8 s stereo 24-bit result p99 (ms)", "", "fetch_p99_ms", ".2f")
    print(f"{'encode that WAV (writing stage) p50 (ms)':<44}{'':>12}{encode_ms:>12.2f}")
    load = os.getloadavg()[0]
    print(f"\nload average while measuring: {load:.2f} on {os.cpu_count()} CPUs"
          + (" (busy machine: figures are pessimistic)" if load > 1.0 else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
