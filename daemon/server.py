"""The daemon's server loop: one ROUTER socket, every message validated, nothing a client sends
can take it down.

The loop knows sockets, not models: it decodes frames (`bridge.wire`), validates bodies
(`schemas.messages`), answers the quick requests itself (ping, status, cancel, fetch,
list_jobs, shutdown), queues jobs for the worker (`daemon.jobs`, `daemon.worker`) and routes
the worker's events back to whichever client owns each id. The worker hands events over an
inproc PUSH/PULL pair, so only this thread ever touches the ROUTER socket.
"""

from __future__ import annotations

import errno
import itertools
import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import zmq

import daemon
from bridge import wire
from daemon.engine import Engine
from daemon.jobs import CANCELLED, FINAL_STATES, Job, JobQueue
from daemon.security import SecurityError, check_bind, start_curve_server
from daemon.store import ResultStore
from daemon.worker import Worker
from schemas.messages import (
    JOB_REQUESTS,
    PROTOCOL_VERSION,
    InvalidRequest,
    check_event,
    parse_request,
)

log = logging.getLogger("v2a.server")

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5755"
DEFAULT_CACHE_MAX_BYTES = 20 * 2**30
DEFAULT_MAX_QUEUE = 256
FINAL_EVENTS = frozenset({
    "result", "error", "pong", "status_reply", "cancel_reply", "list_jobs_reply",
    "unload_reply", "shutdown_reply",
})
_POLL_MS = 100
_BUILT_HERE = frozenset({"pong", "status_reply"})
"""Hot replies built in this module from typed values: not re-validated per request (the
tests check their shape against the schemas); everything else sent is validated."""
# Plain ints: pyzmq's enum arithmetic shows up in the per-request profile.
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
_BATCH = 256
_FRAME_HEADROOM = 2
"""libzmq drops, unanswered, a connection whose frame exceeds the socket's cap; the cap is this
many times the message limit, so a request somewhat over the limit is still read and answered
`too_large` (the client never sends one it knows to be too large)."""
_counter = itertools.count()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "v2a-bridge"


class StartupError(Exception):
    """The daemon cannot start (endpoint taken, refused bind, bad keys); the message says why."""


@dataclass
class ServerConfig:
    bind: str = DEFAULT_ENDPOINT
    device: str = "auto"
    cache_dir: Path = field(default_factory=default_cache_dir)
    keep_alive: float = 300.0
    curve_keys: Path | None = None
    max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES
    """Largest request, all frames together (--max-message-mb); at least
    wire.MIN_MAX_MESSAGE_BYTES. Pong and status state it, so clients refuse larger ones."""
    finish_running_on_exit: bool = False
    """On SIGINT/SIGTERM: let the running job finish (True) or cancel it (False)."""
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES
    """Cap on the stored results and blob cache (least recently used go first); <= 0: none."""
    max_queue: int = DEFAULT_MAX_QUEUE
    """Queued jobs beyond which a new one is refused with `queue_full`; <= 0: no limit."""


class Outbox:
    """Thread-safe hand-over of events from the worker (or a job's own threads) to the loop."""

    def __init__(self, context: zmq.Context, address: str):
        self._socket = context.socket(zmq.PUSH)
        self._socket.linger = 0
        self._socket.connect(address)
        self._lock = threading.Lock()

    def post(self, target_id: str, event_type: str, body: dict, blobs=()) -> None:
        body = check_event(event_type, body)
        frames = [target_id.encode(), event_type.encode(), msgpack.packb(body, use_bin_type=True), *blobs]
        with self._lock:
            self._socket.send_multipart(frames, copy=False)

    def close(self) -> None:
        with self._lock:
            self._socket.close()


class Server:
    """Bind with `start()`, serve with `serve_forever()` (any thread), stop with `request_stop()`."""

    def __init__(self, config: ServerConfig, engine: Engine):
        self.config = config
        self.engine = engine
        self.context = zmq.Context()
        self.jobs = JobQueue()
        self.store = ResultStore(config.cache_dir, config.cache_max_bytes)
        self.endpoint = config.bind
        self.started_at = time.time()
        self.instance = uuid.uuid4().hex[:16]
        """Names this daemon run, so clients notice a restart and re-send their jobs."""
        self._routes: dict[str, bytes] = {}
        self._stop_requested = threading.Event()
        self._finish_running = config.finish_running_on_exit
        self._stopping = False
        self._authenticator = None
        self._router: zmq.Socket | None = None
        self._inbox: zmq.Socket | None = None
        self.outbox: Outbox | None = None
        self.worker: Worker | None = None
        self.stopped = threading.Event()

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the endpoint (refusing to steal it from a running daemon) and start the worker."""
        try:
            check_bind(self.config.bind, self.config.curve_keys)
        except SecurityError as exc:
            raise StartupError(str(exc)) from None
        limit = self.config.max_message_bytes
        if limit < wire.MIN_MAX_MESSAGE_BYTES:
            raise StartupError(
                f"--max-message-mb {limit / 2**20:g} is too small: clients send requests of up to "
                f"{wire.MIN_MAX_MESSAGE_BYTES / 2**20:g} MiB without asking; use at least that"
            )
        if self.config.bind.startswith("ipc://"):
            self._refuse_if_served(self.config.bind)
        router = self.context.socket(zmq.ROUTER)
        router.linger = 2000
        router.maxmsgsize = limit * _FRAME_HEADROOM
        router.router_handover = True  # a client reconnecting under its identity takes over
        router.sndhwm = router.rcvhwm = 10_000
        if self.config.curve_keys is not None:
            try:
                self._authenticator = start_curve_server(self.context, router, self.config.curve_keys)
            except SecurityError as exc:
                router.close(0)
                raise StartupError(str(exc)) from None
        try:
            router.bind(self.config.bind)
        except zmq.ZMQError as exc:
            router.close(0)
            self._stop_authenticator()
            if exc.errno == errno.EADDRINUSE:
                self._refuse_if_served(self.config.bind)
                raise StartupError(
                    f"{self.config.bind} is in use by another program; choose another --bind"
                ) from None
            raise StartupError(f"cannot bind {self.config.bind}: {exc}") from None
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._router = router
        inbox_address = f"inproc://v2a-outbox-{id(self)}-{next(_counter)}"
        self._inbox = self.context.socket(zmq.PULL)
        self._inbox.linger = 0
        self._inbox.bind(inbox_address)
        self.outbox = Outbox(self.context, inbox_address)
        self.worker = Worker(
            self.engine, self.jobs, self.store, self.outbox.post,
            device=self.config.device, keep_alive=self.config.keep_alive,
        )
        self.worker.start()
        log.info("V2A daemon %s serving %s (engine %s, cache %s)", daemon.__version__,
                 self.endpoint, self.engine.name, self.store.root)

    def _refuse_if_served(self, endpoint: str) -> None:
        if endpoint.startswith("ipc://") and not os.path.exists(endpoint[len("ipc://"):]):
            return
        from bridge.client import Client, DaemonUnavailable, V2AError

        keys = self.config.curve_keys
        probe = Client(endpoint, timeout=1.0, curve_keys_dir=keys if keys and (Path(keys) / "client.key_secret").exists() else None)
        try:
            probe.ping()
        except DaemonUnavailable:
            return  # a stale ipc socket file: binding replaces it
        except V2AError:
            pass  # something answered in a way only a daemon would
        finally:
            probe.close()
        raise StartupError(
            f"a V2A daemon is already serving {endpoint}; use it, stop it with "
            f"`v2a --endpoint {endpoint} shutdown`, or start this one with another --bind"
        )

    def request_stop(self, *, finish_running: bool | None = None) -> None:
        """Stop accepting, then cancel (or finish) the running job and exit serve_forever.
        Safe from signal handlers and other threads."""
        if finish_running is not None:
            self._finish_running = finish_running
        self._stop_requested.set()

    def serve_forever(self) -> None:
        assert self._router is not None, "call start() first"
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._inbox, zmq.POLLIN)
        try:
            while True:
                if self._stop_requested.is_set() and not self._stopping:
                    self._begin_stopping()
                if self._stopping and not self.worker.alive:
                    self._drain_inbox()
                    break
                if self._authenticator is not None:
                    self._authenticator.refresh()
                ready = dict(poller.poll(_POLL_MS))
                if self._inbox in ready:
                    self._drain_inbox()
                if self._router in ready:
                    for _ in range(_BATCH):
                        # copy=True: plain bytes are cheaper than zmq.Frame for the many small
                        # requests, and a large one is copied once, within the size limit.
                        self._handle(self._router.recv_multipart())
                        if not self._router.get(_EVENTS) & _POLLIN:
                            break
        finally:
            self._close()

    def _begin_stopping(self) -> None:
        self._stopping = True
        log.info("stopping: %s the running job", "finishing" if self._finish_running else "cancelling")
        for job in self.worker.stop(finish_running=self._finish_running):
            self._send(job.id, "error", job.error)

    def _close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        for sock in (self._inbox, self._router):
            if sock is not None:
                sock.close()
        self._stop_authenticator()
        self.context.term()
        log.info("daemon stopped")
        self.stopped.set()

    def _stop_authenticator(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None

    # --- sending -----------------------------------------------------------------------------

    def _drain_inbox(self) -> None:
        for _ in range(_BATCH):
            if not self._inbox.get(_EVENTS) & _POLLIN:
                return
            frames = self._inbox.recv_multipart(copy=False)
            target, event_type = frames[0].bytes.decode(), frames[1].bytes.decode()
            identity = self._routes.get(target)
            if event_type in FINAL_EVENTS:
                self._routes.pop(target, None)
            if identity is None:
                log.debug("no client for %s event of %s; dropped", event_type, target)
                continue
            header = msgpack.packb({"id": target, "type": event_type}, use_bin_type=True)
            self._send_frames(identity, [wire.VERSION_FRAME, header, frames[2], *frames[3:]])

    def _reply(self, identity: bytes, request_id: str, event_type: str, body: dict, blobs=()) -> None:
        if event_type not in _BUILT_HERE:
            body = check_event(event_type, body)
        self._send_frames(identity, wire.encode({"id": request_id, "type": event_type}, body, blobs))

    def _send(self, job_id: str, event_type: str, body: dict, blobs=()) -> None:
        """An event for a job, to whichever client owns it now."""
        identity = self._routes.get(job_id)
        if event_type in FINAL_EVENTS:
            self._routes.pop(job_id, None)
        if identity is not None:
            self._reply(identity, job_id, event_type, body, blobs)

    def _send_frames(self, identity: bytes, frames: list) -> None:
        try:
            self._router.send_multipart([identity, *frames], copy=False)
        except zmq.ZMQError as exc:
            log.warning("could not send to a client: %s", exc)

    # --- receiving ---------------------------------------------------------------------------

    def _handle(self, frames: list) -> None:
        identity = frames[0]
        try:
            message = wire.decode(frames[1:], max_message_bytes=self.config.max_message_bytes)
        except wire.WireError as exc:
            request_id = exc.message.id if exc.message is not None else "unknown"
            text = exc.text
            if exc.code == "too_large":
                text += self._size_advice(sum(len(f) for f in frames[1:]))
            log.warning("refused a message (%s): %s", exc.code, text)
            self._reply(identity, request_id, "error", {"code": exc.code, "message": text})
            return
        try:
            self._dispatch(identity, message)
        except InvalidRequest as exc:
            log.warning("refused %s %s: %s", message.type, message.id, exc.message)
            self._reply(identity, message.id, "error", {"code": exc.code, "message": exc.message})
        except Exception as exc:  # a bug must not take the daemon down; the client hears of it
            log.exception("error while handling %s %s", message.type, message.id)
            self._reply(identity, message.id, "error", {
                "code": "internal", "message": f"{type(exc).__name__}: {exc} (see the daemon log)",
            })

    def _size_advice(self, size: int) -> str:
        """What to do about a request over --max-message-mb ("" for a too-large header)."""
        limit = self.config.max_message_bytes
        if size <= limit:
            return ""
        return (f"; this daemon takes requests of up to {limit / 2**20:g} MiB: start it with "
                f"--max-message-mb {math.ceil(size / 2**20)} or more, or send a smaller request")

    def _dispatch(self, identity: bytes, message: wire.Message) -> None:
        request = parse_request(message.type, message.body)
        rid, kind = message.id, message.type
        if kind == "ping":
            self._reply(identity, rid, "pong", {
                "protocol": PROTOCOL_VERSION, "version": daemon.__version__, "time": time.time(),
                "instance": self.instance, "max_message_bytes": self.config.max_message_bytes,
            })
        elif kind == "status":
            self._reply(identity, rid, "status_reply", self.status())
        elif kind in JOB_REQUESTS:
            self._submit(identity, message, request)
        elif kind == "cancel":
            self._cancel(identity, rid, request.id)
        elif kind == "fetch":
            self._fetch(identity, rid, request.id)
        elif kind == "list_jobs":
            self._reply(identity, rid, "list_jobs_reply", {"jobs": self.jobs.jobs(request.session, request.limit)})
        elif kind == "unload":
            self._routes[rid] = identity
            self.worker.request_unload(rid)
        elif kind == "shutdown":
            self._reply(identity, rid, "shutdown_reply", {"finish_running": request.finish_running})
            self.request_stop(finish_running=request.finish_running)

    def status(self) -> dict:
        engine = self.worker.snapshot()
        return {
            "version": daemon.__version__, "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
            "endpoint": self.endpoint, "model": self.engine.name, "model_loaded": engine["loaded"],
            "device": engine["device"], "memory": engine["memory"], "queue": self.jobs.counts(),
            "keep_alive_s": float(self.config.keep_alive), "cache_dir": str(self.store.root),
            "cache_bytes": self.store.size_bytes, "cache_max_bytes": self.store.max_bytes,
            "max_queue": self.config.max_queue if self.config.max_queue > 0 else None,
            "max_message_bytes": self.config.max_message_bytes,
            "uptime_s": round(time.time() - self.started_at, 3),
            "curve": self.config.curve_keys is not None,
        }

    def _submit(self, identity: bytes, message: wire.Message, request) -> None:
        rid, kind = message.id, message.type
        known = self.jobs.get(rid)
        if known is not None and known.state in FINAL_STATES and (
            self.store.evicted(rid) or (known.error is None and not self.store.known(rid))
        ):
            # Its result is gone from the cache (or could not be stored): the same id runs
            # again, as after a restart.
            self.jobs.forget(rid)
            known = None
        if known is not None:
            if known.kind != kind:
                raise InvalidRequest(
                    "duplicate_id", f"id {rid!r} already names a {known.kind} job; use a new id"
                )
            self._routes[rid] = identity  # the newest sender hears the rest of it
            self._accepted(identity, known, duplicate=True)
            if known.state in FINAL_STATES:
                self._send_stored(identity, rid, rid, fallback=known)
            return
        stored = self.store.load(rid)
        if stored is not None:
            if stored.kind != kind:
                raise InvalidRequest(
                    "duplicate_id", f"id {rid!r} already names a {stored.kind} job; use a new id"
                )
            state = "done" if stored.event == "result" else "failed"
            self._reply(identity, rid, "accepted", {
                "kind": kind, "state": state, "position": 0,
                "queued": self.jobs.counts()["queued"], "duplicate": True,
                "instance": self.instance,
            })
            self._reply(identity, rid, stored.event, stored.body, stored.blobs)
            return
        if self._stopping:
            raise InvalidRequest("shutting_down", "the daemon is stopping; send the job again once it is back")
        limit = self.config.max_queue
        if limit > 0 and self.jobs.counts()["queued"] >= limit:
            raise InvalidRequest(
                "queue_full",
                f"the daemon's queue is full ({limit} jobs waiting, its --max-queue); wait for "
                "jobs to finish or cancel some, then send this one again",
            )
        job, _ = self.jobs.submit(Job(
            id=rid, kind=kind, request=request, priority=message.header.get("priority") or 0,
            session=message.header.get("session"),
        ))
        self._routes[rid] = identity
        self._accepted(identity, job, duplicate=False)

    def _accepted(self, identity: bytes, job: Job, *, duplicate: bool) -> None:
        self._reply(identity, job.id, "accepted", {
            "kind": job.kind, "state": job.state, "position": self.jobs.position(job),
            "queued": self.jobs.counts()["queued"], "duplicate": duplicate,
            "instance": self.instance,
        })

    def _send_stored(self, identity: bytes, reply_id: str, job_id: str, fallback: Job | None = None) -> bool:
        stored = self.store.load(job_id)
        if stored is not None:
            self._reply(identity, reply_id, stored.event, stored.body, stored.blobs)
            return True
        if fallback is not None and fallback.error is not None:
            self._reply(identity, reply_id, "error", fallback.error)
            return True
        if self.store.evicted(job_id):
            self._reply(identity, reply_id, "error", {
                "code": "not_found",
                "message": f"the result of job {job_id!r} was evicted to keep the cache under its "
                           f"cap of {self.store.max_bytes / 2**30:g} GiB (--cache-max-gb); "
                           "generate it again",
            })
            return True
        return False

    def _cancel(self, identity: bytes, rid: str, job_id: str) -> None:
        job, changed = self.jobs.cancel(job_id)
        if job is None:
            stored = self.store.load(job_id)
            if stored is None:
                raise InvalidRequest("not_found", f"no job {job_id!r} is known to this daemon")
            state = "done" if stored.event == "result" else "failed"
            self._reply(identity, rid, "cancel_reply", {"id": job_id, "state": state, "cancelled": False})
            return
        self._reply(identity, rid, "cancel_reply", {"id": job_id, "state": job.state, "cancelled": changed})
        if changed and job.state == CANCELLED:
            # A queued job ends here; a running one ends when the worker sees the flag.
            self.store.record(job.id, job.kind, "error", job.error)
            self._send(job.id, "error", job.error)

    def _fetch(self, identity: bytes, rid: str, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.state not in FINAL_STATES:
            raise InvalidRequest(
                "not_ready", f"job {job_id!r} is {job.state}; wait for its result or fetch it later"
            )
        if not self._send_stored(identity, rid, job_id, fallback=job):
            raise InvalidRequest(
                "not_found", f"no finished job {job_id!r} in this daemon's journal ({self.store.journal_path})"
            )
