"""`v2a`: the command line for the V2A Bridge daemon.

    v2a [--endpoint E] status | ping | cancel ID | jobs | unload | shutdown | keys create DIR
                       | generate | timeline | preview (bridge.timeline_cli)
                       | install-resolve [--target DIR]

When nothing answers on a loopback endpoint, commands that need the daemon start one in the
background and say where its log is. Subcommands are registered by the functions in
`COMMANDS` (each adds one subparser whose ``handler(args) -> exit code``); other modules add
theirs with one line there. Importing this module pulls in no torch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bridge.atomic_file import cannot_write
from bridge.client import (
    DEFAULT_ENDPOINT,
    Client,
    DaemonUnavailable,
    Event,
    V2AError,
)

PROBE_TIMEOUT_S = 1.5
"""A live daemon answers pings from its server thread within milliseconds, even mid-job."""
DAEMON_START_TIMEOUT_S = 120.0
"""The default engine imports torch before it answers; a cold start can take a while."""

EXIT_ERROR, EXIT_UNAVAILABLE = 1, 3


# --- connecting (and starting a local daemon) ---------------------------------------------


def _is_loopback(endpoint: str) -> bool:
    from daemon.security import is_loopback

    return is_loopback(endpoint)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "v2a-bridge"


def daemon_log_path(endpoint: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9]+", "-", endpoint).strip("-")
    return _cache_dir() / "logs" / f"daemon-{name}.log"


_started_daemons: list[subprocess.Popen] = []
"""Daemons this process started; kept so their exit can be noticed (and reaped) while waiting."""


def start_local_daemon(endpoint: str, *, curve_keys: str | None = None) -> tuple[subprocess.Popen, Path]:
    """Start `v2a-daemon --bind endpoint` detached from this terminal; returns (process, log path).
    The daemon outlives this command; DaemonUnavailable when its log cannot be written."""
    log_path = daemon_log_path(endpoint)
    command = [sys.executable, "-m", "daemon.cli", "--bind", endpoint]
    if curve_keys:
        command += ["--curve-keys", curve_keys]
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 (closed below, once the daemon holds it)
    except OSError as exc:
        raise DaemonUnavailable(endpoint, PROBE_TIMEOUT_S) from RuntimeError(
            f"no local daemon was started: {cannot_write(log_path, exc)} (the daemon's log; "
            "XDG_CACHE_HOME puts it elsewhere)"
        )
    with log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    _started_daemons.append(process)
    return process, log_path


def connect(args: argparse.Namespace, *, autostart: bool = True) -> Client:
    """A client whose daemon answered a ping; starts a local daemon first if allowed."""
    client = Client(args.endpoint, timeout=args.timeout, curve_keys_dir=args.curve_keys)
    may_start = autostart and not args.no_start and _is_loopback(args.endpoint)
    try:
        client.ping(timeout=min(args.timeout, PROBE_TIMEOUT_S) if may_start else None)
        return client
    except DaemonUnavailable:
        if not may_start:
            client.close()
            raise
    try:
        process, log_path = start_local_daemon(args.endpoint, curve_keys=args.curve_keys)
    except DaemonUnavailable:
        client.close()
        raise
    print(f"v2a: started a local daemon on {args.endpoint} (pid {process.pid}); its log is {log_path}",
          file=sys.stderr, flush=True)
    deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
    while True:
        try:
            client.ping(timeout=PROBE_TIMEOUT_S)
            return client
        except DaemonUnavailable:
            if time.monotonic() > deadline or process.poll() is not None:
                client.close()
                tail = _tail(log_path)
                raise DaemonUnavailable(args.endpoint, DAEMON_START_TIMEOUT_S) from RuntimeError(
                    f"the daemon did not come up; last lines of {log_path}:\n{tail}"
                )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- output helpers -----------------------------------------------------------------------


def print_progress(event: Event) -> None:
    """One status line per event on stderr (rewritten in place on a terminal)."""
    body = event.body
    if event.type == "accepted":
        text = f"queued (position {body['position']})" if body["position"] else "accepted"
    elif event.type == "progress":
        eta = f", about {body['eta_s']:.0f} s left" if body.get("eta_s") is not None else ""
        clip = f"clip {body['clip_index'] + 1}/{body['clip_count']} " if body.get("clip_count") else ""
        text = f"{clip}{body['stage']} {body['step']}/{body['total']} ({body['fraction']:.0%}{eta})"
    elif event.type == "clip_done":
        text = f"clip {body['index'] + 1}/{body['count']} done: {body['clip']}"
    else:
        return
    if sys.stderr.isatty():
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def _end_progress_line() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


# --- subcommands --------------------------------------------------------------------------


def register_status(sub) -> None:
    p = sub.add_parser("status", help="version, model, device, memory and queue of the daemon")
    p.add_argument("--json", action="store_true", help="print the raw status as JSON")
    p.set_defaults(handler=cmd_status)


def cmd_status(args) -> int:
    with connect(args) as client:
        status = client.status()
    if args.json:
        _print_json(status)
        return 0
    memory = status["memory"]
    queue = status["queue"]
    print(f"daemon   {status['version']} (protocol {status['protocol']}, pid {status['pid']}) on {status['endpoint']}")
    print(f"model    {status['model']} ({'loaded' if status['model_loaded'] else 'not loaded'}) on {status['device']}")
    print(f"memory   {memory['allocated'] / 2**20:.0f} MiB allocated of {memory['total'] / 2**20:.0f} MiB")
    # .get: daemons before the cache cap and queue limit do not report them
    limit = f" (at most {status['max_queue']})" if status.get("max_queue") else ""
    print(f"queue    {queue['queued']} waiting{limit}, running: {queue['running'] or 'nothing'}")
    cap = status.get("cache_max_bytes")
    cap_text = f"cap {cap / 2**30:g} GiB" if cap else "no cap"
    print(f"cache    {status['cache_dir']} ({status.get('cache_bytes', 0) / 2**30:.2f} GiB, {cap_text})")
    if status.get("max_message_bytes"):
        print(f"requests up to {status['max_message_bytes'] / 2**20:g} MiB (--max-message-mb)")
    return 0


def register_ping(sub) -> None:
    p = sub.add_parser("ping", help="is the daemon there? (never starts one)")
    p.set_defaults(handler=cmd_ping)


def cmd_ping(args) -> int:
    with connect(args, autostart=False) as client:
        seconds = client.ping()
    print(f"pong from {args.endpoint} in {seconds * 1000:.2f} ms")
    return 0


def register_cancel(sub) -> None:
    p = sub.add_parser("cancel", help="cancel a queued or running job by id")
    p.add_argument("id")
    p.set_defaults(handler=cmd_cancel)


def cmd_cancel(args) -> int:
    with connect(args, autostart=False) as client:
        reply = client.cancel(args.id)
    print(f"{reply['id']}: {reply['state']}" + ("" if reply["cancelled"] else " (nothing to cancel)"))
    return 0


def register_jobs(sub) -> None:
    p = sub.add_parser("jobs", help="list the daemon's jobs, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_jobs)


def cmd_jobs(args) -> int:
    with connect(args, autostart=False) as client:
        jobs = client.list_jobs(limit=args.limit)
    if args.json:
        _print_json(jobs)
        return 0
    if not jobs:
        print("no jobs")
    for job in jobs:
        when = time.strftime("%H:%M:%S", time.localtime(job["submitted"]))
        error = f"  {job['error']['code']}: {job['error']['message']}" if job.get("error") else ""
        print(f"{when}  {job['id']:<34} {job['kind']:<18} {job['state']:<10}{error}")
    return 0


def register_unload(sub) -> None:
    p = sub.add_parser("unload", help="free the model's memory now")
    p.set_defaults(handler=cmd_unload)


def cmd_unload(args) -> int:
    with connect(args, autostart=False) as client:
        reply = client.unload()
    print("model unloaded" if reply["was_loaded"] else "model was not loaded")
    return 0


def register_shutdown(sub) -> None:
    p = sub.add_parser("shutdown", help="stop the daemon")
    p.add_argument("--finish-running", action="store_true", help="let the running job finish first")
    p.set_defaults(handler=cmd_shutdown)


def cmd_shutdown(args) -> int:
    with connect(args, autostart=False) as client:
        client.shutdown(finish_running=args.finish_running)
    print(f"daemon on {args.endpoint} is stopping")
    return 0


def register_keys(sub) -> None:
    p = sub.add_parser("keys", help="CURVE keys for a daemon reachable from other machines")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make server and client key pairs in DIR")
    create.add_argument("dir", type=Path)
    create.add_argument("--client", default="client", help="name of the client key pair")
    create.set_defaults(handler=cmd_keys_create)


def cmd_keys_create(args) -> int:
    from daemon.security import create_keys

    try:
        made = create_keys(args.dir, args.client)
    except OSError as exc:
        print(f"v2a: {cannot_write(exc.filename or args.dir, exc)}", file=sys.stderr)
        return EXIT_ERROR
    print(f"server keys:  {made['server_public']} (+ _secret: keep on the daemon host)")
    print(f"client keys:  {made['client_public']}, {made['client_secret']} (copy both to the client)")
    print(f"allow-list:   {made['allow_list']}")
    print(f"start the daemon with: v2a-daemon --bind tcp://0.0.0.0:5755 --curve-keys {args.dir}")
    return 0


def register_install_resolve(sub) -> None:
    p = sub.add_parser("install-resolve",
                       help="put V2A Generate into DaVinci Resolve's Workspace > Scripts > Edit menu")
    p.add_argument("--target", type=Path, default=None,
                   help="Resolve's Fusion folder (default: this user's, for this OS)")
    p.add_argument("--all-users", action="store_true",
                   help="install for every user of this computer (needs admin rights)")
    p.set_defaults(handler=cmd_install_resolve)


def cmd_install_resolve(args) -> int:
    from plugins.resolve.install import run  # the plugin's files; no other command needs them

    return run(args.target, args.all_users)


from bridge import timeline_cli  # noqa: E402  (timeline commands; imports nothing heavy)

COMMANDS: list[Callable] = [
    register_status,
    register_ping,
    timeline_cli.register_generate,
    timeline_cli.register_timeline,
    timeline_cli.register_preview,
    register_cancel,
    register_jobs,
    register_unload,
    register_shutdown,
    register_keys,
    register_install_resolve,
]
"""One registration per subcommand; add a line here to add a command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="v2a", description="Talk to the V2A Bridge daemon.")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                        help="daemon endpoint (default %(default)s, or $V2A_ENDPOINT)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds of silence before the daemon counts as gone")
    parser.add_argument("--curve-keys", default=None, metavar="DIR",
                        help="client keys from `v2a keys create DIR` for a CURVE daemon")
    parser.add_argument("--no-start", action="store_true",
                        help="never start a local daemon when none answers")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DaemonUnavailable as exc:
        print(f"v2a: {exc}", file=sys.stderr)
        if exc.__cause__ is not None:
            print(exc.__cause__, file=sys.stderr)
        return EXIT_UNAVAILABLE
    except V2AError as exc:
        _end_progress_line()
        print(f"v2a: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
