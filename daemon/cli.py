"""`v2a-daemon`: start the V2A Bridge daemon (one process that owns the GPU).

    v2a-daemon --bind tcp://127.0.0.1:5755 --device auto --cache-dir DIR --keep-alive 300 \
               --engine daemon.model.engine:V2AEngine [--curve-keys DIR] \
               [--cache-max-gb 20] [--max-queue 256] [--max-message-mb 64]

SIGINT/SIGTERM stop it cleanly: no new jobs, the running job is cancelled (or finished with
``--on-exit finish``), then it exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from pathlib import Path

from bridge.wire import DEFAULT_MAX_MESSAGE_BYTES
from daemon.engine import Engine
from daemon.server import (
    DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_ENDPOINT,
    DEFAULT_MAX_QUEUE,
    Server,
    ServerConfig,
    StartupError,
    default_cache_dir,
)

DEFAULT_ENGINE = "daemon.model.engine:V2AEngine"

log = logging.getLogger("v2a.daemon")


class EngineLoadError(Exception):
    """The --engine could not be imported or constructed; the message says what to do."""


def load_engine(spec: str) -> Engine:
    """`module:factory` -> a (not yet loaded) engine; weights load lazily on the first job."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise EngineLoadError(f"--engine must look like module:factory, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise EngineLoadError(
            f"cannot import the engine module {module_name!r} ({type(exc).__name__}: {exc}); "
            "check the installation (`make test` sets it up) or pass another --engine"
        ) from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise EngineLoadError(f"module {module_name!r} has no {attr!r}; check --engine {spec}")
    try:
        engine = factory()
    except Exception as exc:
        raise EngineLoadError(
            f"creating the engine {spec} failed ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(engine, Engine):
        raise EngineLoadError(
            f"{spec} did not return an engine (daemon.engine.Engine): got {type(engine).__name__}"
        )
    return engine


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="v2a-daemon", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default=os.environ.get("V2A_ENDPOINT", DEFAULT_ENDPOINT),
                        help="ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH); default %(default)s")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where the model runs (default %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="results, journal and blob cache (default %(default)s)")
    parser.add_argument("--cache-max-gb", type=float, default=DEFAULT_CACHE_MAX_BYTES / 2**30,
                        metavar="GIB", help="keep stored results and the blob cache under this many "
                        "GiB, least recently used go first; 0 = no cap (default %(default)g)")
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, metavar="JOBS",
                        help="refuse new jobs while this many wait (queue_full); 0 = no limit "
                        "(default %(default)s)")
    parser.add_argument("--keep-alive", type=float, default=300.0, metavar="SECONDS",
                        help="unload the model after this many idle seconds (default %(default)s)")
    parser.add_argument("--engine", default=os.environ.get("V2A_ENGINE", DEFAULT_ENGINE),
                        metavar="MODULE:FACTORY", help="engine factory (default %(default)s)")
    parser.add_argument("--curve-keys", type=Path, default=None, metavar="DIR",
                        help="CURVE keys from `v2a keys create DIR`; required for non-loopback binds")
    parser.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_BYTES / 2**20,
                        help="largest accepted request in MiB, all frames together, at least 1; "
                        "pong and status state it, so clients refuse larger ones (default %(default)g)")
    parser.add_argument("--on-exit", choices=["cancel", "finish"], default="cancel",
                        help="on SIGINT/SIGTERM: cancel the running job or let it finish")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    # The daemon shares the machine with the editing host: idle OpenMP threads should sleep,
    # not spin (set before the engine imports torch).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        engine = load_engine(args.engine)
    except EngineLoadError as exc:
        print(f"v2a-daemon: {exc}", file=sys.stderr)
        return 2
    config = ServerConfig(
        bind=args.bind, device=args.device, cache_dir=args.cache_dir, keep_alive=args.keep_alive,
        curve_keys=args.curve_keys, max_message_bytes=int(args.max_message_mb * 2**20),
        finish_running_on_exit=args.on_exit == "finish",
        cache_max_bytes=int(args.cache_max_gb * 2**30), max_queue=args.max_queue,
    )
    try:
        server = Server(config, engine)
        server.start()
    except (StartupError, OSError) as exc:
        print(f"v2a-daemon: {exc}", file=sys.stderr)
        return 1

    def stop(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        server.request_stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"v2a-daemon: serving {server.endpoint} (engine {engine.name}); stop with Ctrl-C",
          file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
