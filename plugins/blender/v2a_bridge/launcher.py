"""Starting a local V2A daemon in the background when none answers on a loopback endpoint.

The daemon is a separate process that outlives Blender (it keeps its model warm for the next
session and unloads it by itself when idle); its output goes to a log file whose path the panel
shows.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from urllib.parse import urlsplit

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class LaunchError(Exception):
    """The daemon could not be started; the message says what to set or install."""


@dataclass
class LocalDaemon:
    process: subprocess.Popen
    log_path: str

    def exited(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 6) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:]).strip()
        except OSError:
            return ""


def is_local(endpoint: str) -> bool:
    """True for endpoints only this computer can serve: ipc:// and tcp:// on loopback."""
    if endpoint.startswith("ipc://"):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = urlsplit(endpoint).hostname or ""
    return host in LOCAL_HOSTS or host.startswith("127.")


def start_local_daemon(daemon_path: str, endpoint: str, extra_arguments: str) -> LocalDaemon:
    """Start `daemon_path --bind endpoint [extra arguments]` detached from Blender."""
    if not is_local(endpoint):
        raise LaunchError(
            f"{endpoint} is not on this computer; start the daemon on its host, or use a "
            "loopback endpoint such as tcp://127.0.0.1:5755")
    program = shutil.which(daemon_path) or (daemon_path if os.path.isfile(daemon_path) else None)
    if program is None:
        raise LaunchError(
            f"cannot find the daemon program {daemon_path!r}; install V2A Bridge (pip install "
            "v2a-bridge) and set its full path, e.g. /path/to/venv/bin/v2a-daemon, in the "
            "add-on preferences")
    try:
        arguments = shlex.split(extra_arguments)
    except ValueError as exc:
        raise LaunchError(f"the daemon arguments in the preferences do not parse: {exc}") from None
    log_path = os.path.join(tempfile.gettempdir(), "v2a-daemon.log")
    detach = (
        {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS}
        if sys.platform == "win32" else {"start_new_session": True}
    )
    with open(log_path, "ab") as log:
        try:
            process = subprocess.Popen(
                [program, "--bind", endpoint, *arguments],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **detach,
            )
        except OSError as exc:
            raise LaunchError(f"could not start {program}: {exc}") from None
    return LocalDaemon(process, log_path)
