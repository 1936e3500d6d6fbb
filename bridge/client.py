"""The V2A Bridge client: what Blender's and Resolve's plugins and the `v2a` command use to talk
to the daemon.

Depends on pyzmq, msgpack and the standard library only (it runs inside the hosts' Python), and
imports its framing relatively, so a plugin can vendor ``bridge/client.py`` and ``bridge/wire.py``
as a package of its own.

Two ways to use it:

- scripts block: ``event = client.generate("shot.mov", 0.0, 4.0, prompt="rain")`` returns the
  `result` event (``event.blobs[0]`` is the WAV file) or raises `DaemonError`;
- host UIs never block: ``rid = client.submit("generate", body)`` then, from a timer,
  ``for event in client.poll(): ...`` until an event with ``event.final`` arrives.

Silence is not trusted: a request that gets no answer within `timeout` seconds raises
`DaemonUnavailable` (whose message says how to start the daemon); while waiting for a long job
the client pings the daemon whenever it has been quiet that long. When a ping meets a daemon
restarted since it accepted a job, the job is sent again under the same id (the new daemon
answers from its journal or runs it); host UIs get the same by calling `ping()` now and then.

Nor is a request the daemon cannot take sent: every pong and status reply states the daemon's
size limit (its ``--max-message-mb``), and a request over it ends at once with a ``too_large``
`error` event of the client's own (`MessageTooLarge` from the blocking calls), which says what to
do. Requests up to `MIN_MAX_MESSAGE_BYTES` go straight out, as every daemon takes them; a larger
one sent before the client has heard the limit waits for the answer to a ping the client sends.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from .wire import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MIN_MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    WireError,
    decode,
    encode,
    make_header,
    validate_header,
)

__all__ = [
    "Client", "Event", "V2AError", "DaemonUnavailable", "DaemonError", "MessageTooLarge",
    "ProtocolMismatch", "WaitTimeout", "DEFAULT_ENDPOINT",
]

DEFAULT_ENDPOINT = os.environ.get("V2A_ENDPOINT", "tcp://127.0.0.1:5755")
MAX_REPLY_BYTES = 1024 * 1024 * 1024
"""Replies carry audio: a 10-minute stereo 24-bit WAV is ~170 MB."""
SEND_TIMEOUT_MS = 2000
"""How long a request may wait to be handed to ZeroMQ when there is no connection at all."""
NON_FINAL_EVENTS = frozenset({"accepted", "progress", "clip_done"})
JOB_TYPES = frozenset({"generate", "generate_timeline"})
LIMIT_STATED_IN = frozenset({"pong", "status_reply"})
"""Replies that carry the daemon's `max_message_bytes`."""
UNTRUSTED_ADVICE = ("the picture is unlike any the model learnt from, and much of the sound ran "
                    "to the loudest a sound can be; listen before you keep it")
"""What every front end tells the editor of a sound the daemon marks `unfamiliar` (not to be
trusted): one wording for the `v2a` command, the Blender panel and the Resolve summary."""
# Plain ints: pyzmq's enum arithmetic shows up in the per-request profile.
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)


class V2AError(Exception):
    """Base of every error this client raises."""


class DaemonUnavailable(V2AError):
    """Nothing answered at the endpoint in time."""

    def __init__(self, endpoint: str, timeout: float):
        super().__init__(
            f"No V2A daemon answered at {endpoint} within {timeout:g} s. Start one with "
            f"`v2a-daemon --bind {endpoint}`, or run `v2a --endpoint {endpoint} status`, which "
            "starts a local daemon in the background and says where its log is."
        )
        self.endpoint = endpoint


class ProtocolMismatch(V2AError):
    """The daemon speaks another protocol version; the message names both."""


class WaitTimeout(V2AError, TimeoutError):
    """`wait(..., timeout=...)` ran out; the job goes on in the daemon (fetch it later)."""


class DaemonError(V2AError):
    """The daemon answered with an `error` event: `code` (see schemas ERROR_CODES), `message`
    (what to do) and the `clip` it concerns, if any."""

    def __init__(self, code: str, message: str, clip: str | None = None):
        super().__init__(f"{code}: {message}" + (f" (clip {clip})" if clip else ""))
        self.code = code
        self.message = message
        self.clip = clip


class MessageTooLarge(DaemonError):
    """A request larger than the daemon accepts (its ``--max-message-mb``), code ``too_large``:
    refused by the client without sending it, or by the daemon. The message gives both sizes
    and what to do: start the daemon with a larger ``--max-message-mb`` or send less."""


@dataclass
class Event:
    """One message from the daemon about request `id`."""

    id: str
    type: str
    body: dict
    blobs: list[bytes] = field(default_factory=list)

    @property
    def final(self) -> bool:
        """True for the last event of a request (result, error or a reply)."""
        return self.type not in NON_FINAL_EVENTS


class Client:
    """A DEALER connection to one daemon. Not thread-safe: use it from one thread."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        session: str | None = None,
        timeout: float = 10.0,
        curve_keys_dir: str | os.PathLike | None = None,
        context: zmq.Context | None = None,
    ):
        self.endpoint = endpoint
        self.session = session or f"s-{uuid.uuid4().hex[:12]}"
        # Request ids: 64 random bits per client plus a counter; unique across clients and
        # daemon restarts (the journal remembers ids) and cheaper than a uuid per request.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_counter = itertools.count(1)
        self.timeout = float(timeout)
        self.curve_keys_dir = curve_keys_dir
        self._context = context or zmq.Context.instance()
        self._events: deque[Event] = deque()
        self._unfinished: dict[str, _UnfinishedJob] = {}
        self._daemon_limit: int | None = None
        """The daemon's max_message_bytes from its latest pong or status reply; None: not heard."""
        self._held: list[tuple[str, str, list]] = []
        """(id, type, frames) of requests over MIN_MAX_MESSAGE_BYTES waiting for the limit."""
        self._limit_probe: str | None = None
        """The id of the client's own ping asking for the limit, while unanswered."""
        self._socket: zmq.Socket | None = None
        self._connect()

    # --- connection ------------------------------------------------------------------------

    def _connect(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        # A DEALER with no pipe to the daemon (between reconnects, e.g. after a CURVE handshake
        # the daemon refused) blocks on send: bound it, so no caller (a host's UI timer) hangs.
        sock.sndtimeo = SEND_TIMEOUT_MS
        sock.maxmsgsize = MAX_REPLY_BYTES
        if self.curve_keys_dir is not None:
            self._use_curve(sock, self.curve_keys_dir)
        sock.connect(self.endpoint)
        self._socket = sock
        self._poller = zmq.Poller()
        self._poller.register(sock, _POLLIN)

    @staticmethod
    def _use_curve(sock: zmq.Socket, directory) -> None:
        import zmq.auth  # only on the CURVE path; plain loopback use needs none of it

        root = os.fspath(directory)
        server_public, _ = zmq.auth.load_certificate(os.path.join(root, "server.key"))
        public, secret = zmq.auth.load_certificate(os.path.join(root, "client.key_secret"))
        sock.curve_serverkey = server_public
        sock.curve_publickey = public
        sock.curve_secretkey = secret

    def _reset(self) -> None:
        """Drop the socket so requests queued for a dead daemon are not delivered later. The
        daemon that answers next may have another size limit: held requests ask it again."""
        if self._socket is not None:
            self._socket.close(0)
        self._connect()
        self._daemon_limit = self._limit_probe = None
        if self._held:
            self._probe_limit()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the asynchronous core -------------------------------------------------------------

    def submit(
        self, type: str, body: dict | None = None, *, priority: int = 0, request_id: str | None = None
    ) -> str:
        """Send a request without waiting; returns its id. Re-sending an id the daemon knows
        re-attaches to that job instead of starting another."""
        rid = request_id or self._new_id()
        body = body or {}
        frames = self._frames(rid, type, body, priority)
        if type in JOB_TYPES:
            self._unfinished[rid] = _UnfinishedJob(type, body, priority, time.monotonic())
        self._send(rid, type, frames)
        return rid

    def _new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._id_counter)}"

    def _frames(self, rid: str, type: str, body: dict, priority: int) -> list:
        header = make_header(rid, type, session=self.session, priority=priority or None)
        try:
            validate_header(header)
        except WireError as exc:
            # The daemon would refuse it under no id this client waits for: say so now.
            raise V2AError(f"cannot send this {type!r} request: {exc}") from None
        return encode(header, body)

    def _send(self, rid: str, type: str, frames: list) -> None:
        """Send a request the daemon can take. One over its size limit ends here with a
        too_large error event; one over the size every daemon takes, while the limit is not
        known yet, is held until the daemon states it."""
        size = sum(len(frame) for frame in frames)
        if size > MIN_MAX_MESSAGE_BYTES:
            if self._daemon_limit is None:
                try:
                    self._probe_limit()
                except DaemonUnavailable:
                    self._unfinished.pop(rid, None)
                    raise
                self._held.append((rid, type, frames))
                return
            if size > self._daemon_limit:
                self._refuse_too_large(rid, type, size)
                return
        self._send_now(rid, frames)

    def _send_now(self, rid: str, frames: list) -> None:
        try:
            self._socket.send_multipart(frames, copy=False)
        except zmq.Again:
            # Not handed over, so not to be sent again on a reconnect either.
            self._unfinished.pop(rid, None)
            raise DaemonUnavailable(self.endpoint, SEND_TIMEOUT_MS / 1000) from None

    def _probe_limit(self) -> None:
        if self._limit_probe is None:
            probe = self._new_id()
            self._send_now(probe, encode(make_header(probe, "ping", session=self.session)))
            self._limit_probe = probe

    def _learn_limit(self, reply: dict) -> None:
        """Note the daemon's size limit and send (or refuse) the requests held for it."""
        limit = reply.get("max_message_bytes")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            limit = DEFAULT_MAX_MESSAGE_BYTES  # daemons before the field had this, unless told
        self._daemon_limit = limit
        held, self._held = self._held, []
        now = time.monotonic()
        for rid, type, frames in held:
            job = self._unfinished.get(rid)
            if job is not None:
                job.sent = now
            self._send(rid, type, frames)

    def _refuse_too_large(self, rid: str, type: str, size: int) -> None:
        limit = self._daemon_limit
        advice = " (fewer clips at a time)" if type == "generate_timeline" else ""
        self._unfinished.pop(rid, None)
        self._events.append(Event(rid, "error", {"code": "too_large", "message": (
            f"this {type} request is {size:,} bytes, more than the daemon at {self.endpoint} "
            f"accepts ({limit:,} bytes = {limit / 2**20:g} MiB, its --max-message-mb), so it was "
            f"not sent. Start the daemon with --max-message-mb {math.ceil(size / 2**20)} or more, "
            f"or send a smaller request{advice}."
        )}))

    def _resend_jobs_lost_to_a_restart(self, instance: str) -> None:
        """Jobs accepted by an earlier daemon run (or never acknowledged) go to this one under
        the same id: it answers from its journal if they finished, else runs them."""
        now = time.monotonic()
        for rid, job in list(self._unfinished.items()):  # a job too large for it ends here
            unacknowledged = job.instance is None and now - job.sent > self.timeout
            if (job.instance is not None and job.instance != instance) or unacknowledged:
                job.instance, job.sent = instance, now
                self._send(rid, job.type, self._frames(rid, job.type, job.body, job.priority))

    def poll(self, timeout: float = 0.0) -> list[Event]:
        """Every event that has arrived (waiting up to `timeout` s for the first); never blocks
        with the default timeout of 0, so host UI timers can call it."""
        self._receive(timeout)
        events = list(self._events)
        self._events.clear()
        return events

    def wait(
        self,
        request_id: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        timeout: float | None = None,
    ) -> Event:
        """Block until `request_id` ends; every event of it goes to `on_event`. Returns the
        final event; raises DaemonError for an `error`, DaemonUnavailable when the daemon stops
        answering pings, WaitTimeout after `timeout` seconds (the job itself goes on)."""
        return self._wait(request_id, on_event=on_event, timeout=timeout, liveness=True)

    def _wait(self, request_id, *, on_event=None, timeout=None, liveness=True) -> Event:
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        last_heard = now
        while True:
            event = self._take(request_id)
            if event is not None:
                last_heard = time.monotonic()
                if on_event is not None:
                    on_event(event)
                if event.final:
                    if event.type == "error":
                        raise _error_from(event)
                    return event
                continue
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                if not liveness:
                    self._reset()
                    raise DaemonUnavailable(self.endpoint, timeout)
                raise WaitTimeout(
                    f"no result for {request_id} within {timeout:g} s; the job goes on in the "
                    f"daemon: fetch it later with fetch({request_id!r})"
                )
            if liveness and now - last_heard >= self.timeout:
                self.ping()  # raises DaemonUnavailable if the daemon is gone
                last_heard = time.monotonic()
                continue
            slices = [self.timeout - (now - last_heard)]
            if deadline is not None:
                slices.append(deadline - now)
            if self._receive(max(0.0, min(slices))):
                last_heard = time.monotonic()

    def _take(self, request_id: str) -> Event | None:
        for index, event in enumerate(self._events):
            if event.id == request_id:
                del self._events[index]
                return event
        return None

    def _receive(self, timeout: float) -> bool:
        """Read everything waiting, after up to `timeout` s for the first message."""
        sock = self._socket
        # ZMQ_EVENTS rather than a Poller and zmq.Again: this is the hot path of every request.
        if not sock.get(_EVENTS) & _POLLIN and (
            timeout <= 0 or not self._poller.poll(max(1, round(timeout * 1000)))
        ):
            return False
        while sock.get(_EVENTS) & _POLLIN:
            frames = sock.recv_multipart()
            try:
                message = decode(frames, max_message_bytes=MAX_REPLY_BYTES)
            except WireError as exc:
                if exc.code == "version_mismatch":
                    detail = exc.message.body.get("message") if exc.message is not None else None
                    raise ProtocolMismatch(
                        f"{exc.text}" + (f" (the daemon says: {detail})" if detail else "")
                    ) from None
                raise V2AError(f"unreadable message from the daemon at {self.endpoint}: {exc}") from None
            event = Event(message.id, message.type, message.body, message.blobs)
            if event.type in LIMIT_STATED_IN:
                self._learn_limit(event.body)
            if event.id == self._limit_probe:
                self._limit_probe = None
                if self._daemon_limit is None:  # no pong: the daemon could not say
                    self._learn_limit({})
                continue  # the client's own question, not its caller's
            job = self._unfinished.get(event.id)
            if job is not None:
                if event.final:
                    del self._unfinished[event.id]
                elif event.type == "accepted":
                    job.instance = event.body.get("instance")
            self._events.append(event)
        return True

    def request(self, type: str, body: dict | None = None, *, timeout: float | None = None) -> Event:
        """Send a request and return its final event; no answer within `timeout` (default:
        the client's) means the daemon is unavailable."""
        rid = self.submit(type, body)
        return self._wait(rid, timeout=self.timeout if timeout is None else timeout, liveness=False)

    # --- blocking conveniences ---------------------------------------------------------------

    def ping(self, *, timeout: float | None = None) -> float:
        """Round trip in seconds; DaemonUnavailable after `timeout` (default: the client's)."""
        started = time.perf_counter()
        event = self.request("ping", timeout=timeout)
        elapsed = time.perf_counter() - started
        if event.body.get("protocol") != PROTOCOL_VERSION:
            raise ProtocolMismatch(
                f"the daemon speaks V2A protocol {event.body.get('protocol')}, this client "
                f"speaks {PROTOCOL_VERSION}"
            )
        if self._unfinished:
            self._resend_jobs_lost_to_a_restart(str(event.body.get("instance")))
        return elapsed

    def status(self) -> dict:
        return self.request("status").body

    def generate(
        self,
        media: str,
        start: float,
        end: float,
        *,
        prompt: str = "",
        negative_prompt: str = "",
        seed: int = 0,
        steps: int = 25,
        cfg: float = 4.5,
        image_rate: float | None = None,
        start_number: int | None = None,
        priority: int = 0,
        request_id: str | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> Event:
        """Sound for `start`..`end` seconds of `media` (a path on the daemon's machine).
        Returns the result event: ``body`` describes the audio, ``blobs[0]`` is the WAV file."""
        body = {
            "media": media, "start": float(start), "end": float(end), "prompt": prompt,
            "negative_prompt": negative_prompt, "seed": int(seed), "steps": int(steps),
            "cfg": float(cfg),
        }
        if image_rate is not None:
            body["image_rate"] = float(image_rate)
        if start_number is not None:
            body["start_number"] = int(start_number)
        rid = self.submit("generate", body, priority=priority, request_id=request_id)
        return self.wait(rid, on_event=on_event)

    def generate_timeline(
        self,
        otio_json: str,
        media_dir: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        priority: int = 0,
        request_id: str | None = None,
        **options,
    ) -> Event:
        """Sound for a whole OTIO timeline; options: prompt, negative_prompt, mode, takes,
        seed, steps, cfg, track, stems, resolve. Returns the result event (OTIO + placements)."""
        body = {"otio": otio_json, "media_dir": os.fspath(media_dir), **options}
        rid = self.submit("generate_timeline", body, priority=priority, request_id=request_id)
        return self.wait(rid, on_event=on_event)

    def cancel(self, request_id: str) -> dict:
        return self.request("cancel", {"id": request_id}).body

    def fetch(self, request_id: str) -> Event:
        """A finished job's final event (also after a daemon restart); DaemonError if it
        failed, or `not_ready` while it still runs."""
        return self.request("fetch", {"id": request_id})

    def list_jobs(self, session: str | None = None, limit: int = 100) -> list[dict]:
        body: dict = {"limit": limit}
        if session is not None:
            body["session"] = session
        return self.request("list_jobs", body).body["jobs"]

    def unload(self) -> dict:
        """Free the model's memory (after the running job, if any)."""
        return self.wait(self.submit("unload")).body

    def shutdown(self, *, finish_running: bool = False) -> dict:
        return self.request("shutdown", {"finish_running": finish_running}).body


@dataclass
class _UnfinishedJob:
    """A job request kept until its final event, so it can be re-sent to a restarted daemon."""

    type: str
    body: dict
    priority: int
    sent: float
    instance: str | None = None


def _error_from(event: Event) -> V2AError:
    body = event.body
    if body.get("code") == "version_mismatch":
        return ProtocolMismatch(body.get("message", "protocol version mismatch"))
    if body.get("code") == "too_large":
        return MessageTooLarge("too_large", str(body.get("message", "")), body.get("clip"))
    return DaemonError(
        str(body.get("code", "internal")), str(body.get("message", "")), body.get("clip")
    )
