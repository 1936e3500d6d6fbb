"""Jobs: the priority queue the server fills and the worker drains, and the `JobContext` a
running job sees.

The queue knows jobs, not sockets: the server loop submits and cancels, the single worker
thread takes the next job. Higher `priority` runs first; within one priority, first come first
served. A job id is chosen by the client and idempotent: submitting a known id returns the job
that already has it.

`JobContext` is the whole world of a running job (``generate`` here in the worker, and
``generate_timeline`` in ``daemon/timeline_job.py``)::

    ctx.job_id              str: the request id (events for this job carry it)
    ctx.kind                "generate" | "generate_timeline"
    ctx.request             the validated request body (schemas.messages.GenerateTimelineRequest, ...)
    ctx.engine              the loaded daemon.engine.Engine (already loaded on ctx.engine.device)
    ctx.store               daemon.store.ResultStore: ctx.store.get_blob(key) / put_blob(key, data)
                            (a cache: put_blob on a full disk logs it and returns None)
    ctx.log                 logger for this job (its messages start with "job ID: ")
    ctx.progress(stage, step, total, *, clip=None, clip_index=None, clip_count=None)
                            -> sends a `progress` event (throttled; adds eta_s and fraction)
    ctx.cancelled() -> bool ; ctx.check_cancelled() raises daemon.engine.Cancelled
    ctx.emit(event_type, body, blobs=())
                            -> sends any other event, validated against schemas (e.g. "clip_done")
    ctx.generate_audio(clip_request, *, clip=None, clip_index=None, clip_count=None)
                            -> GeneratedAudio: engine.generate with progress wired and the
                               out-of-memory policy (free memory, retry once low_memory=True)
    ctx.generate_audio_batch(clip_requests, *, clip=..., clip_index=..., clip_count=...)
                            -> list[GeneratedAudio], same policy (low-memory retry one by one)
    ctx.engine_progress(clip=..., clip_index=..., clip_count=...) -> ProgressFn for the engine

A job runner returns the `result` body (a dict matching its schema) and raises `JobFailed`
(code, message, clip) for failures the user should read, `daemon.engine.Cancelled` when it
stopped because `cancelled()` turned true, `daemon.engine.MediaError` for unreadable pictures.
"""

from __future__ import annotations

import dataclasses
import gc
import heapq
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from daemon.engine import STAGES, Cancelled, ClipRequest, Engine, EngineOutOfMemory, GeneratedAudio

log = logging.getLogger("v2a.jobs")

QUEUED, RUNNING, CANCELLING, DONE, FAILED, CANCELLED = (
    "queued", "running", "cancelling", "done", "failed", "cancelled",
)
FINAL_STATES = (DONE, FAILED, CANCELLED)
MAX_REMEMBERED_JOBS = 10_000
"""Finished jobs kept in memory for list_jobs; older ones live on in the store's journal."""


class JobFailed(Exception):
    """A failure the editor should read: becomes an `error` event with this code and message."""

    def __init__(self, code: str, message: str, clip: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.clip = clip


@dataclass(eq=False)
class Job:
    id: str
    kind: str
    request: object
    """The validated request body (a schemas.messages model)."""
    priority: int = 0
    session: str | None = None
    submitted: float = field(default_factory=time.time)
    state: str = QUEUED
    started: float | None = None
    finished: float | None = None
    error: dict | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    seq: int = 0

    def info(self, position: int | None = None) -> dict:
        """The job as a `JobInfo` body for list_jobs."""
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "priority": self.priority,
            "session": self.session, "submitted": self.submitted, "started": self.started,
            "finished": self.finished, "position": position, "error": self.error,
        }


class JobQueue:
    """Thread-safe priority queue plus the registry of every job of this daemon run."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[int, int, Job]] = []
        self._jobs: dict[str, Job] = {}
        self._seq = itertools.count()
        self._running: Job | None = None
        self._closed = False
        self._wakeups = 0

    # --- server side --------------------------------------------------------------------

    def submit(self, job: Job) -> tuple[Job, bool]:
        """Queue `job`; if its id is already known, return that job and True instead."""
        with self._lock:
            known = self._jobs.get(job.id)
            if known is not None:
                return known, True
            job.seq = next(self._seq)
            job.state = QUEUED
            self._jobs[job.id] = job
            heapq.heappush(self._heap, (-job.priority, job.seq, job))
            self._forget_old()
            self._lock.notify_all()
            return job, False

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def forget(self, job_id: str) -> None:
        """Drop a finished job from the registry (its id may then be submitted anew)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.state in FINAL_STATES:
                del self._jobs[job_id]

    def position(self, job: Job) -> int:
        """Jobs that run before `job` (0 when it is next or running)."""
        with self._lock:
            if job.state != QUEUED:
                return 0
            ahead = sum(
                1 for _, _, other in self._heap
                if other.state == QUEUED and (-other.priority, other.seq) < (-job.priority, job.seq)
            )
            return ahead + (1 if self._running is not None else 0)

    def cancel(self, job_id: str) -> tuple[Job | None, bool]:
        """Cancel a job: a queued one is removed at once, a running one stops at its next
        step. Returns (job, whether this call changed anything)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINAL_STATES or job.state == CANCELLING:
                return job, False
            job.cancel_event.set()
            if job.state == QUEUED:
                job.state = CANCELLED
                job.finished = time.time()
                job.request = None
                job.error = {"code": "cancelled", "message": "cancelled before it started", "clip": None}
            else:
                job.state = CANCELLING
            self._lock.notify_all()
            return job, True

    def jobs(self, session: str | None = None, limit: int = 100) -> list[dict]:
        """Newest first."""
        with self._lock:
            chosen = [j for j in self._jobs.values() if session is None or j.session == session]
        chosen.sort(key=lambda j: j.seq, reverse=True)
        return [j.info(self.position(j) if j.state == QUEUED else None) for j in chosen[:limit]]

    def counts(self) -> dict:
        with self._lock:
            queued = sum(1 for _, _, j in self._heap if j.state == QUEUED)
            running = self._running.id if self._running is not None else None
            return {"queued": queued, "running": running, "jobs": len(self._jobs)}

    def close(self) -> list[Job]:
        """Take no more jobs; cancel and return every queued one. `next` then returns None."""
        with self._lock:
            self._closed = True
            dropped = []
            for _, _, job in self._heap:
                if job.state == QUEUED:
                    job.state = CANCELLED
                    job.finished = time.time()
                    job.request = None
                    job.error = {"code": "shutting_down", "message": "the daemon stopped before this job ran; send it again", "clip": None}
                    dropped.append(job)
            self._heap.clear()
            self._lock.notify_all()
            return dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def wake(self) -> None:
        """Make a waiting `next` return so the worker can look at its other duties."""
        with self._lock:
            self._wakeups += 1
            self._lock.notify_all()

    # --- worker side --------------------------------------------------------------------

    def next(self, timeout: float | None) -> Job | None:
        """The next job to run (marked running), or None on timeout, wake() or close()."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            wakeups = self._wakeups
            while True:
                while self._heap and self._heap[0][2].state != QUEUED:
                    heapq.heappop(self._heap)
                if self._closed:
                    return None
                if self._heap:
                    _, _, job = heapq.heappop(self._heap)
                    job.state = RUNNING
                    job.started = time.time()
                    self._running = job
                    return job
                if self._wakeups != wakeups:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._lock.wait(remaining)

    def finish(self, job: Job, state: str, error: dict | None = None) -> None:
        with self._lock:
            job.state = state
            job.error = error
            job.finished = time.time()
            job.request = None  # an OTIO body can be megabytes; the journal has what matters
            if self._running is job:
                self._running = None

    def _forget_old(self) -> None:
        if len(self._jobs) <= MAX_REMEMBERED_JOBS:
            return
        for job_id in [j.id for j in self._jobs.values() if j.state in FINAL_STATES][:1000]:
            del self._jobs[job_id]


# --- what a running job sees ----------------------------------------------------------------

_STAGE_WEIGHT = {
    "load": 0.05, "decode": 0.05, "features": 0.10, "sampling": 0.70,
    "decoding_audio": 0.05, "writing": 0.05,
}
_PROGRESS_INTERVAL_S = 0.05


def free_accelerator_memory() -> None:
    """Return cached accelerator memory; only touches torch if the engine already imported it."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class _JobLog(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"job {self.extra['job']}: {msg}", kwargs


class JobContext:
    """What a running job may use; see this module's docstring for the full API."""

    def __init__(
        self,
        job: Job,
        engine: Engine,
        store,
        send: Callable[[str, dict, tuple], None],
        on_low_memory: Callable[[], None] = lambda: None,
    ):
        self.job = job
        self.job_id = job.id
        self.kind = job.kind
        self.request = job.request
        self.engine = engine
        self.store = store
        # An adapter, not getLogger(f"...{job.id}"): loggers are never freed, one per job leaks.
        self.log = _JobLog(logging.getLogger("v2a.job"), {"job": job.id})
        self._send = send
        self._on_low_memory = on_low_memory
        self._started = time.monotonic()
        self._last_progress = 0.0
        self._last_stage: tuple | None = None
        self.low_memory_used = False

    def cancelled(self) -> bool:
        return self.job.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled(f"job {self.job_id} was cancelled")

    def emit(self, event_type: str, body: dict, blobs=()) -> None:
        self._send(event_type, body, tuple(blobs))

    def progress(
        self,
        stage: str,
        step: int,
        total: int,
        *,
        clip: str | None = None,
        clip_index: int | None = None,
        clip_count: int | None = None,
    ) -> None:
        now = time.monotonic()
        marker = (stage, clip_index)
        # Throttled so a fast sampler cannot flood the socket; stage changes and the last step
        # of a stage always go out.
        if (
            marker == self._last_stage
            and step < total
            and now - self._last_progress < _PROGRESS_INTERVAL_S
        ):
            return
        self._last_stage = marker
        self._last_progress = now
        fraction = self._fraction(stage, step, total, clip_index, clip_count)
        elapsed = now - self._started
        eta = elapsed * (1.0 - fraction) / fraction if fraction >= 0.02 else None
        self._send("progress", {
            "stage": stage, "step": int(step), "total": int(total),
            "eta_s": None if eta is None else round(eta, 3), "fraction": round(fraction, 4),
            "clip": clip, "clip_index": clip_index, "clip_count": clip_count,
        }, ())

    @staticmethod
    def _fraction(stage, step, total, clip_index, clip_count) -> float:
        done_before = 0.0
        for name in STAGES:
            if name == stage:
                break
            done_before += _STAGE_WEIGHT.get(name, 0.0)
        within = done_before + _STAGE_WEIGHT.get(stage, 0.0) * (step / total if total else 1.0)
        if clip_count:
            within = ((clip_index or 0) + min(within, 1.0)) / clip_count
        return max(0.0, min(1.0, within))

    def engine_progress(self, *, clip=None, clip_index=None, clip_count=None):
        """A ProgressFn for the engine that reports under this clip."""

        def progress(stage: str, step: int, total: int) -> None:
            self.progress(stage, step, total, clip=clip, clip_index=clip_index, clip_count=clip_count)

        return progress

    def generate_audio(
        self, request: ClipRequest, *, clip=None, clip_index=None, clip_count=None
    ) -> GeneratedAudio:
        progress = self.engine_progress(clip=clip, clip_index=clip_index, clip_count=clip_count)
        if self.low_memory_used and not request.low_memory:
            request = dataclasses.replace(request, low_memory=True)
        try:
            return self.engine.generate(request, progress, self.cancelled)
        except EngineOutOfMemory as first:
            if request.low_memory:
                raise self._out_of_memory(first, clip) from first
            self._enter_low_memory(first)
        try:
            return self.engine.generate(
                dataclasses.replace(request, low_memory=True), progress, self.cancelled
            )
        except EngineOutOfMemory as second:
            raise self._out_of_memory(second, clip) from second

    def generate_audio_batch(
        self, requests: list[ClipRequest], *, clip=None, clip_index=None, clip_count=None
    ) -> list[GeneratedAudio]:
        progress = self.engine_progress(clip=clip, clip_index=clip_index, clip_count=clip_count)
        if not self.low_memory_used:
            try:
                return self.engine.generate_batch(requests, progress, self.cancelled)
            except EngineOutOfMemory as first:
                self._enter_low_memory(first)
        # Smaller pieces: one request at a time, each in low-memory mode.
        return [
            self.generate_audio(r, clip=clip, clip_index=clip_index, clip_count=clip_count)
            for r in requests
        ]

    def _enter_low_memory(self, exc: Exception) -> None:
        self.log.warning("out of accelerator memory (%s); freeing memory, retrying in low-memory mode", exc)
        self.low_memory_used = True
        self._on_low_memory()
        free_accelerator_memory()

    def _out_of_memory(self, exc: Exception, clip) -> JobFailed:
        free_accelerator_memory()
        return JobFailed(
            "out_of_memory",
            f"the accelerator ran out of memory even in low-memory mode ({exc}); close other "
            "programs using the GPU, generate shorter clips, or start the daemon with --device cpu",
            clip,
        )
