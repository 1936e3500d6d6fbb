"""Who may talk to the daemon, and where client-chosen names may write.

- Loopback by default: binding anything but 127.0.0.0/8, ::1, localhost or ipc:// is refused
  unless CURVE keys are given.
- With ``--curve-keys DIR`` the daemon is a CURVE server and a ZAP handler (pyzmq's
  ThreadAuthenticator) lets in only clients whose public key is in ``DIR/clients/``.
- ``v2a keys create DIR`` lays out such a folder::

      DIR/server.key, DIR/server.key_secret     the daemon's key pair
      DIR/client.key, DIR/client.key_secret     one client's key pair (copy to the client host)
      DIR/clients/client.key                    the allow-list: public keys of trusted clients

- `safe_join` keeps output names from clients inside their folder.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import time
from pathlib import Path

import zmq

SERVER_KEY = "server"
CLIENT_KEY = "client"
ALLOW_DIR = "clients"


class SecurityError(Exception):
    """A refused configuration or a name that would escape its folder; the message says why."""


def endpoint_host(endpoint: str) -> str | None:
    """The host part of a tcp:// endpoint, None for other transports."""
    if not endpoint.startswith("tcp://"):
        return None
    rest = endpoint[len("tcp://"):]
    if rest.startswith("["):
        return rest[1:rest.index("]")] if "]" in rest else rest
    return rest.rsplit(":", 1)[0]


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint_host(endpoint)
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", interface names, host names: reachable from elsewhere


def check_bind(endpoint: str, curve_keys: str | os.PathLike | None) -> None:
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise SecurityError(f"unsupported endpoint {endpoint!r}; use tcp://HOST:PORT or ipc://PATH")
    if not is_loopback(endpoint) and curve_keys is None:
        raise SecurityError(
            f"refusing to bind {endpoint}: it is reachable from other machines. Bind a loopback "
            "address (tcp://127.0.0.1:5755), or create keys with `v2a keys create DIR` and start "
            "the daemon with --curve-keys DIR so only allow-listed clients get in."
        )


def create_keys(directory: str | os.PathLike, client_name: str = CLIENT_KEY) -> dict[str, Path]:
    """Make the server key pair (once) and a client key pair, and allow-list the client."""
    import zmq.auth

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", client_name):
        raise SecurityError("a client name may only hold letters, digits, '.', '_' and '-'")
    root = Path(directory).expanduser()
    allow = root / ALLOW_DIR
    allow.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    server_public = root / f"{SERVER_KEY}.key"
    if not server_public.exists():
        zmq.auth.create_certificates(str(root), SERVER_KEY)
    public, secret = zmq.auth.create_certificates(str(root), client_name)
    shutil.copy(public, allow / Path(public).name)
    for path in (root / f"{SERVER_KEY}.key_secret", Path(secret)):
        os.chmod(path, 0o600)
    return {
        "server_public": server_public,
        "client_public": Path(public),
        "client_secret": Path(secret),
        "allow_list": allow,
    }


class CurveGate:
    """The ZAP side of a CURVE server: pyzmq's ThreadAuthenticator with the allow-list folder,
    re-read when its contents change so a new client key works without a restart."""

    def __init__(self, context: zmq.Context, allow_dir: Path):
        from zmq.auth.thread import ThreadAuthenticator

        self.allow_dir = allow_dir
        self._authenticator = ThreadAuthenticator(context)
        self._authenticator.start()
        self._seen = None
        self._checked = 0.0
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < 0.5:
            return
        self._checked = now
        try:
            state = sorted((p.name, p.stat().st_mtime_ns) for p in self.allow_dir.glob("*.key"))
        except OSError:
            return
        if state != self._seen:
            self._seen = state
            self._authenticator.configure_curve(domain="*", location=str(self.allow_dir))

    def stop(self) -> None:
        self._authenticator.stop()


def start_curve_server(context: zmq.Context, socket: zmq.Socket, directory: str | os.PathLike) -> CurveGate:
    """Make `socket` a CURVE server that admits only allow-listed clients. Returns the gate;
    call its `refresh()` now and then and `stop()` when the socket closes."""
    import zmq.auth

    root = Path(directory).expanduser()
    secret_file = root / f"{SERVER_KEY}.key_secret"
    allow = root / ALLOW_DIR
    if not secret_file.exists():
        raise SecurityError(f"no server key in {root}; create one with `v2a keys create {root}`")
    if not allow.is_dir() or not any(allow.glob("*.key")):
        raise SecurityError(
            f"no allowed client keys in {allow}; create one with `v2a keys create {root}`"
        )
    public, secret = zmq.auth.load_certificate(str(secret_file))
    gate = CurveGate(context, allow)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return gate


_UNSAFE = re.compile(r"[^A-Za-z0-9._ \-]+")


def safe_filename(text: str, *, default: str = "clip", max_chars: int = 120) -> str:
    """A clip name as a file name: letters, digits, '.', '_', '-', spaces; never '..' or empty."""
    name = re.sub(r"\.{2,}", "_", _UNSAFE.sub("_", text))
    name = re.sub(r"_+", "_", name)[:max_chars].strip(" ._")
    return name or default


def safe_join(folder: str | os.PathLike, name: str) -> Path:
    """`folder/name`, refusing any name that would land outside `folder` (absolute paths,
    '..', drive letters, NUL bytes, links pointing out)."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise SecurityError(f"refusing output name {name!r}: empty or holds NUL bytes")
    pure = Path(name)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", name) or name.startswith(("\\", "/")):
        raise SecurityError(f"refusing output name {name!r}: it must be relative to {folder}")
    if any(part == ".." for part in re.split(r"[\\/]", name)):
        raise SecurityError(f"refusing output name {name!r}: '..' would leave {folder}")
    base = Path(folder).resolve()
    target = (base / pure).resolve()
    if not target.is_relative_to(base):
        raise SecurityError(f"refusing output name {name!r}: it resolves outside {base}")
    return target
