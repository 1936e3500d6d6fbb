"""The add-on's conversation with the daemon, driven by a `bpy.app.timers` callback.

No thread: requests go out with the client's non-blocking `submit`, answers come in through
`poll(timeout=0)` on each timer tick, so Blender's UI never waits on the network and Blender
data is only ever touched on its main thread. One generation at a time per Blender session.

    idle ──generate/connect──▶ connecting (ping) ──pong──▶ running ──result──▶ apply ▶ idle
                                   │ no answer                 │ cancel
                                   ▼                           ▼
                     starting a local daemon (optional)    cancelling ──final event──▶ idle
"""

from __future__ import annotations

import os
import time
import traceback
import uuid
from dataclasses import dataclass, field

import bpy

from . import apply as apply_step
from ._bridge.client import Client
from .launcher import LaunchError, LocalDaemon, is_local, start_local_daemon

TICK_S = 0.1
CANCEL_CONFIRM_S = 15.0
SILENCE_PING_S = 10.0


@dataclass(frozen=True)
class Connection:
    """How to reach the daemon (from the add-on preferences, read on the main thread)."""

    endpoint: str = "tcp://127.0.0.1:5755"
    curve_keys_dir: str = ""
    start_daemon: bool = True
    daemon_path: str = "v2a-daemon"
    daemon_arguments: str = ""
    answer_timeout_s: float = 3.0
    start_timeout_s: float = 120.0


@dataclass(frozen=True)
class TimelineJob:
    """One generate_timeline request and what is needed to place its result."""

    body: dict
    scene: str
    blend: str  # bpy.data.filepath when it was submitted
    origin: int
    rate: float
    strips: int


@dataclass
class StripError:
    strip: str
    message: str


@dataclass
class State:
    """What the panel shows."""

    phase: str = "idle"  # idle, connecting, starting, running, cancelling
    daemon: str = "not checked yet"
    message: str = ""
    progress: float | None = None
    progress_text: str = ""
    errors: list[StripError] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    untrusted: list[str] = field(default_factory=list)  # added strips not to be trusted
    job_id: str | None = None
    log_path: str | None = None


class Runner:
    """The single conversation of this Blender session with its daemon."""

    def __init__(self) -> None:
        self.state = State()
        self._client: Client | None = None
        self._client_key: tuple[str, str] | None = None
        self._connection = Connection()
        self._job: TimelineJob | None = None
        self._ping_id: str | None = None
        self._ping_deadline = 0.0
        self._status_id: str | None = None
        self._status_deadline = 0.0
        self._cancel_deadline = 0.0
        self._last_heard = 0.0
        self._instance: str | None = None  # the daemon run that accepted the job
        self.local_daemon: LocalDaemon | None = None

    # --- commands (operators call these on the main thread) ----------------------------------

    @property
    def busy(self) -> bool:
        return self.state.phase != "idle"

    def connect(self, connection: Connection) -> None:
        """Check that the daemon answers and ask for its status."""
        if self.busy:
            return
        self._begin(connection)

    def generate(self, connection: Connection, job: TimelineJob, skipped=()) -> None:
        """Start a generation: ping first, submit once the daemon answered."""
        if self.busy:
            raise RuntimeError("a generation is already running; cancel it first")
        self.state.errors = [StripError(s.strip, s.reason) for s in skipped]
        self.state.added = []
        self.state.untrusted = []
        self.state.progress = 0.0
        self.state.progress_text = "connecting to the daemon"
        self._job = job
        self._begin(connection)

    def cancel(self) -> None:
        """Stop the running generation; nothing of it is applied."""
        if self.state.phase in ("connecting", "starting"):
            self._finish("Cancelled before the daemon started; nothing was added.")
        elif self.state.phase == "running":
            if self._submit("cancel", {"id": self.state.job_id}) is None:
                return
            self.state.phase = "cancelling"
            self.state.progress_text = "cancelling"
            self._cancel_deadline = time.monotonic() + CANCEL_CONFIRM_S

    def close(self) -> None:
        """Forget the conversation (add-on disabled). A local daemon keeps running."""
        if self._client is not None:
            self._client.close()
        self._client = None
        self._client_key = None
        self._job = None
        self.state = State()

    # --- the timer -----------------------------------------------------------------------------

    def tick(self) -> float | None:
        """One timer step: read every answer that has arrived, act on it, check deadlines.
        Returns the seconds until the next step, or None when there is nothing to wait for."""
        if self._client is not None:
            try:
                events = self._client.poll(timeout=0)
            except Exception as exc:  # a broken socket must not leave the UI spinning
                self._finish(f"Lost the connection to the daemon: {exc}")
                events = []
            for event in events:
                self._last_heard = time.monotonic()
                self._on_event(event)
        self._check_deadlines(time.monotonic())
        return TICK_S if (self.busy or self._status_id is not None) else None

    def _on_event(self, event) -> None:
        if event.id == self._ping_id:
            self._ping_id = None
            if event.type == "pong":
                self._on_daemon_alive(event.body)
            else:
                self._finish(f"The daemon refused the ping: {event.body.get('message', '')}")
        elif event.id == self._status_id:
            self._status_id = None
            if event.type == "status_reply":
                self.state.daemon = _describe_status(event.body)
        elif event.id == self.state.job_id and self.state.phase in ("running", "cancelling"):
            self._on_job_event(event)

    def _on_daemon_alive(self, pong: dict) -> None:
        self.state.daemon = f"connected (daemon {pong.get('version', '?')})"
        if self._status_id is None:
            self._status_id = self._submit("status", {})
            self._status_deadline = time.monotonic() + self._connection.answer_timeout_s
        if self.state.phase in ("connecting", "starting") and self._job is not None:
            job_id = self._submit("generate_timeline", self._job.body)
            if job_id is None:
                return
            self.state.job_id = job_id
            self.state.phase = "running"
            self.state.progress_text = "submitted"
        elif self.state.phase == "running" and self._job_lost(pong):
            # Send it again under the same id: a daemon that has it re-attaches to it, a new run
            # answers from its journal or runs it.
            restarted = self._instance is not None
            self._instance = pong.get("instance") or self._instance
            if self._submit("generate_timeline", self._job.body,
                            request_id=self.state.job_id) is not None:
                self.state.progress_text = ("the daemon restarted; sending the job again"
                                            if restarted else
                                            "the daemon did not take the job; sending it again")
        elif self._job is None:
            self.state.phase = "idle"

    def _job_lost(self, pong: dict) -> bool:
        """Whether the running job is nowhere, as this pong tells: a silence ping was answered
        by another daemon run than the one that accepted it, or the job was never acknowledged
        (the daemon went away before taking it, and a daemon answers now)."""
        if self._instance is None:
            return True
        return bool(pong.get("instance")) and pong["instance"] != self._instance

    def _on_job_event(self, event) -> None:
        body = event.body
        if event.type == "accepted":
            self._instance = body.get("instance") or self._instance
            position = body.get("position", 0)
            self.state.progress_text = f"queued, {position} ahead" if position else "starting"
        elif event.type == "progress":
            self.state.progress = float(body.get("fraction", 0.0))
            where = ""
            if body.get("clip_count"):
                clip = apply_step.editor_name(str(body.get("clip") or ""))
                where = f" — {clip} ({body.get('clip_index', 0) + 1}/{body['clip_count']})"
            self.state.progress_text = f"{body.get('stage', '')}{where}"
        elif event.type == "clip_done":
            self.state.progress_text = f"done {body.get('index', 0) + 1}/{body.get('count', 1)}"
            if body.get("unfamiliar"):
                self.state.progress_text += ", not to be trusted"
        elif event.type == "result":
            if self.state.phase == "cancelling":
                self._finish("Cancelled; nothing was added.")
            else:
                self._apply(body)
        elif event.type == "error":
            if body.get("code") == "cancelled":
                self._finish("Cancelled; nothing was added.")
            else:
                if body.get("clip"):
                    self.state.errors.append(StripError(
                        apply_step.editor_name(body["clip"]), body.get("message", "")))
                self._finish(f"Generation failed: {body.get('message', body.get('code'))}")

    def _check_deadlines(self, now: float) -> None:
        if self._status_id is not None and now > self._status_deadline:
            self._status_id = None  # only informative; the next ping asks again
        phase = self.state.phase
        if phase == "connecting" and self._ping_id and now > self._ping_deadline:
            self._daemon_silent()
        elif phase == "starting":
            daemon = self.local_daemon
            if daemon is not None and daemon.exited() is not None:
                self._finish(
                    f"The local daemon stopped at start (exit code {daemon.exited()}); "
                    f"its log {daemon.log_path} ends with: {daemon.log_tail()}")
            elif self._ping_id and now > self._ping_deadline:
                self._finish(
                    f"The local daemon did not answer within {self._connection.start_timeout_s:g} s;"
                    f" see its log {self.state.log_path}")
        elif phase == "running":
            if self._ping_id is None and now - self._last_heard > SILENCE_PING_S:
                self._ping_id = self._submit("ping", {})
                self._ping_deadline = now + self._connection.answer_timeout_s
            elif self._ping_id and now > self._ping_deadline:
                self._finish(
                    f"The daemon stopped answering during job {self.state.job_id}; nothing was "
                    "added. Once it is back, generate again: finished clips come from its cache.")
        elif phase == "cancelling" and now > self._cancel_deadline:
            self._finish("The daemon did not confirm the cancel; nothing was added.")

    def _daemon_silent(self) -> None:
        connection = self._connection
        endpoint = connection.endpoint
        if connection.start_daemon and is_local(endpoint):
            try:
                self.local_daemon = start_local_daemon(
                    connection.daemon_path, endpoint, connection.daemon_arguments)
            except LaunchError as exc:
                self._finish(f"No daemon answers at {endpoint}, and starting one failed: {exc}")
                return
            self.state.log_path = self.local_daemon.log_path
            self.state.phase = "starting"
            self.state.daemon = f"starting a local daemon (log: {self.local_daemon.log_path})"
            self.state.progress_text = "starting the daemon"
            self._reopen_client()
            self._ping_id = self._submit("ping", {})
            self._ping_deadline = time.monotonic() + connection.start_timeout_s
            return
        self.state.daemon = "not answering"
        self._finish(
            f"The V2A daemon is not answering at {endpoint}. Start it in a terminal with "
            f"`v2a-daemon --bind {endpoint}`, or turn on 'Start a local daemon' in the add-on "
            "preferences, then try again.")
        # Requests queued for a daemon that never came must not reach one that comes later.
        self._reopen_client()

    # --- applying the result -------------------------------------------------------------------

    def _apply(self, result: dict) -> None:
        job = self._job
        for failed in result.get("failed", []):
            self.state.errors.append(StripError(
                apply_step.editor_name(failed.get("clip", "?")), failed.get("message", "")))
        scene = bpy.data.scenes.get(job.scene)
        if scene is None or bpy.data.filepath != job.blend:
            self._finish(
                f"The scene {job.scene!r} of {job.blend} is no longer open; the sound is in "
                f"{job.body['media_dir']} (job {self.state.job_id}).")
            return
        try:
            placements = apply_step.placements_on_scene(result, origin=job.origin,
                                                        scene_rate=job.rate)
            self.state.added = apply_step.apply_placements(scene, placements)
        except apply_step.ApplyError as exc:
            self._finish(f"Nothing was added: {exc}")
            return
        self.state.untrusted = [name for name, p in zip(self.state.added, placements, strict=True)
                                if p.unfamiliar]
        failed = len(result.get("failed", []))
        summary = f"Added {len(self.state.added)} sound strip(s)"
        if self.state.untrusted:
            summary += f"; {len(self.state.untrusted)} not to be trusted (orange, see below)"
        if failed:
            summary += f"; {failed} strip(s) failed (see below)"
        self.state.progress = 1.0
        self._finish(summary + ".")

    # --- plumbing ------------------------------------------------------------------------------

    def _begin(self, connection: Connection) -> None:
        self._connection = connection
        self.state.message = ""
        key = (connection.endpoint, connection.curve_keys_dir)
        if self._client is None or self._client_key != key:
            self._reopen_client()
        if self._client is None:
            return
        self.state.phase = "connecting"
        self._ping_id = self._submit("ping", {})
        self._ping_deadline = time.monotonic() + connection.answer_timeout_s
        self._last_heard = time.monotonic()
        ensure_timer()

    def _reopen_client(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        connection = self._connection
        try:
            self._client = Client(
                connection.endpoint,
                session=f"blender-{os.getpid()}",
                curve_keys_dir=connection.curve_keys_dir or None,
            )
        except Exception as exc:  # bad endpoint text, unreadable CURVE keys, ...
            self._finish(f"Cannot talk to {connection.endpoint}: {exc}")
            return
        self._client_key = (connection.endpoint, connection.curve_keys_dir)

    def _submit(self, type_: str, body: dict, request_id: str | None = None) -> str | None:
        request_id = request_id or f"blender-{uuid.uuid4().hex}"
        try:
            return self._client.submit(type_, body, request_id=request_id)
        except Exception as exc:
            self._finish(f"Could not send {type_} to the daemon: {exc}")
            return None

    def _finish(self, message: str) -> None:
        """End the current conversation: late events of its job are ignored from now on."""
        self.state.phase = "idle"
        self.state.job_id = None
        self.state.message = message
        self.state.progress_text = ""
        self._job = None
        self._ping_id = None
        self._instance = None
        redraw_panels()


def _describe_status(status: dict) -> str:
    model = status.get("model", "?")
    device = status.get("device", "?")
    queue = status.get("queue", {}) or {}
    loaded = "loaded" if status.get("model_loaded") else "not loaded"
    return (f"connected: {model} ({loaded}) on {device}, "
            f"{queue.get('queued', 0)} queued, daemon {status.get('version', '?')}")


RUNNER = Runner()


def _timer() -> float | None:
    try:
        interval = RUNNER.tick()
    except Exception as exc:
        # A bug must not leave the panel saying "running" forever: Blender drops a timer
        # whose callback raised.
        traceback.print_exc()
        RUNNER._finish(f"V2A add-on error ({type(exc).__name__}: {exc}); please report it")
        interval = None
    redraw_panels()
    return interval


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TICK_S, persistent=True)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)


def redraw_panels() -> None:
    """Ask every Sequencer area to redraw, so the panel shows the new state."""
    window_manager = bpy.context.window_manager
    if window_manager is None:
        return
    for window in window_manager.windows:
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()
