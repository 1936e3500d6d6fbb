"""The one worker thread that owns the engine (and so the accelerator).

It takes jobs from the queue one at a time, loads the model lazily on the first job, unloads it
after `keep_alive` idle seconds or on an `unload` request, and turns everything a job does into
events handed to the server loop through `post(target_id, event_type, body, blobs)` (the server
knows which client each id belongs to; the worker does not know sockets).

Job kinds: ``generate`` runs here (`run_generate`); ``generate_timeline`` runs
`daemon.timeline_job.run_generate_timeline(ctx)`, imported on first use. Both receive a
`daemon.jobs.JobContext`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import queue as queue_module
import struct
import threading
import time
from collections.abc import Callable

from daemon.engine import (
    RESULT_REVISION,
    Cancelled,
    ClipRequest,
    Engine,
    EngineOutOfMemory,
    MediaError,
    Segment,
)
from daemon.jobs import (
    CANCELLED,
    DONE,
    FAILED,
    Job,
    JobContext,
    JobFailed,
    JobQueue,
    free_accelerator_memory,
)
from daemon.store import ResultStore
from daemon.wav import audio_wav_bytes, is_unfamiliar
from schemas.messages import check_event

log = logging.getLogger("v2a.worker")

Post = Callable[[str, str, dict, tuple], None]
"""post(target_id, event_type, body, blobs): hand an event to the server loop (thread-safe)."""


class Worker:
    def __init__(
        self,
        engine: Engine,
        jobs: JobQueue,
        store: ResultStore,
        post: Post,
        *,
        device: str = "auto",
        keep_alive: float = 300.0,
    ):
        self.engine = engine
        self.jobs = jobs
        self.store = store
        self.post = post
        self.requested_device = device
        self.keep_alive = keep_alive
        self._unload_requests: queue_module.SimpleQueue[str] = queue_module.SimpleQueue()
        self._last_active = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="v2a-worker", daemon=True)
        self._snapshot_lock = threading.Lock()
        self._snapshot = {"loaded": False, "device": device, "memory": _zero_memory()}

    # --- called from the server thread ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def snapshot(self) -> dict:
        """Engine state for `status`, as last seen by the worker (engine methods belong to the
        worker thread, so status never calls them)."""
        with self._snapshot_lock:
            return dict(self._snapshot)

    def request_unload(self, request_id: str) -> None:
        """Unload when the current job (if any) is done; the reply goes to `request_id`."""
        self._unload_requests.put(request_id)
        self.jobs.wake()

    def stop(self, *, finish_running: bool) -> list[Job]:
        """Stop taking jobs; cancel the running one unless `finish_running`. Returns the queued
        jobs that were dropped."""
        dropped = self.jobs.close()
        running = self.jobs.counts()["running"]
        if running is not None and not finish_running:
            self.jobs.cancel(running)
        return dropped

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the worker thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._serve_unload_requests()
                job = self.jobs.next(self._idle_timeout())
                if job is not None:
                    self._run_job(job)
                    self._last_active = time.monotonic()
                    continue
                if self.jobs.closed:
                    break
                if self.engine.loaded and time.monotonic() - self._last_active >= self.keep_alive:
                    log.info("idle for %.0f s: unloading %s", self.keep_alive, self.engine.name)
                    self._unload()
        finally:
            self._serve_unload_requests()
            if self.engine.loaded:
                self._unload()

    def _idle_timeout(self) -> float | None:
        if not self.engine.loaded:
            return None
        return max(0.0, self.keep_alive - (time.monotonic() - self._last_active))

    def _serve_unload_requests(self) -> None:
        while True:
            try:
                request_id = self._unload_requests.get_nowait()
            except queue_module.Empty:
                return
            was_loaded = self.engine.loaded
            if was_loaded:
                self._unload()
            self.post(request_id, "unload_reply", {"was_loaded": was_loaded, "loaded": self.engine.loaded}, ())

    def _unload(self) -> None:
        try:
            self.engine.unload()
        except Exception:
            log.exception("engine %s failed to unload", self.engine.name)
        free_accelerator_memory()
        self._refresh_snapshot()

    def _refresh_snapshot(self) -> None:
        loaded = self.engine.loaded
        try:
            memory = self.engine.memory() if loaded else _zero_memory()
            memory = {k: int(memory.get(k, 0)) for k in ("allocated", "reserved", "total")}
        except Exception:
            log.exception("engine %s failed to report memory", self.engine.name)
            memory = _zero_memory()
        with self._snapshot_lock:
            self._snapshot = {
                "loaded": loaded,
                "device": (self.engine.device or self.requested_device) if loaded else self.requested_device,
                "memory": memory,
            }

    def _load(self, ctx: JobContext) -> None:
        ctx.progress("load", 0, 1)
        started = time.monotonic()
        try:
            self.engine.load(self.requested_device)
        except EngineOutOfMemory as exc:
            free_accelerator_memory()
            raise JobFailed(
                "out_of_memory",
                f"the model does not fit in accelerator memory ({exc}); close other GPU programs "
                "or start the daemon with --device cpu",
            ) from exc
        except Exception as exc:
            log.exception("engine %s failed to load", self.engine.name)
            raise JobFailed(
                "engine_error",
                f"the model {self.engine.name} failed to load on device "
                f"{self.requested_device!r}: {type(exc).__name__}: {exc}; see the daemon log",
            ) from exc
        log.info("loaded %s on %s in %.1f s", self.engine.name, self.engine.device, time.monotonic() - started)
        self._refresh_snapshot()
        ctx.progress("load", 1, 1)

    def _run_job(self, job: Job) -> None:
        """Run `job` to its final event. Nothing one job raises ends the worker: an unexpected
        exception while running it or journaling its result becomes its `internal` error."""
        ctx = JobContext(
            job, self.engine, self.store,
            send=lambda type_, body, blobs: self.post(job.id, type_, body, blobs),
        )
        started = time.monotonic()
        log.info("job %s (%s) started", job.id, job.kind)
        try:
            ctx.check_cancelled()
            if not self.engine.loaded:
                self._load(ctx)
            ctx.check_cancelled()
            if job.kind == "generate":
                body, blobs = run_generate(ctx)
            else:
                body, blobs = _run_timeline(ctx), ()
            body = check_event("result", body)
            self.store.record(job.id, job.kind, "result", body, blobs)
        except Cancelled:
            self._fail(job, CANCELLED, "cancelled", "cancelled by request")
        except JobFailed as exc:
            self._fail(job, FAILED, exc.code, exc.message, exc.clip)
        except MediaError as exc:
            self._fail(job, FAILED, "media_error", f"{exc}; check that the file exists and is readable")
        except EngineOutOfMemory as exc:
            free_accelerator_memory()
            self._fail(job, FAILED, "out_of_memory", f"the accelerator ran out of memory: {exc}")
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self._fail(job, FAILED, "internal", f"{type(exc).__name__}: {exc} (see the daemon log)")
        else:
            self.jobs.finish(job, DONE)
            self.post(job.id, "result", body, tuple(blobs))
            log.info("job %s done in %.2f s", job.id, time.monotonic() - started)
        finally:
            self._refresh_snapshot()

    def _fail(self, job: Job, state: str, code: str, message: str, clip: str | None = None) -> None:
        error = {"code": code, "message": message, "clip": clip}
        if job.cancel_event.is_set() and state == FAILED:
            # A job cancelled while it failed for another reason is reported as cancelled.
            state, error = CANCELLED, {"code": "cancelled", "message": "cancelled by request", "clip": None}
        if state == CANCELLED and self.jobs.closed:
            error = {"code": "shutting_down", "message": "the daemon stopped during this job; send it again", "clip": None}
        else:
            # Journaled so a re-sent id or fetch after a restart tells the same story.
            try:
                self.store.record(job.id, job.kind, "error", error)
            except Exception:  # (the store handles OSError) the client still hears the error
                log.exception("job %s: could not journal its error", job.id)
        self.jobs.finish(job, state, error)
        self.post(job.id, "error", error, ())
        log.info("job %s %s: %s", job.id, state, message)


def _zero_memory() -> dict:
    return {"allocated": 0, "reserved": 0, "total": 0}


def _run_timeline(ctx: JobContext) -> dict:
    try:
        timeline_job = importlib.import_module("daemon.timeline_job")
    except ModuleNotFoundError as exc:
        if exc.name != "daemon.timeline_job":
            raise
        raise JobFailed(
            "unsupported",
            "this daemon cannot generate timelines yet (daemon/timeline_job.py is not built); "
            "send `generate` requests clip by clip",
        ) from None
    return timeline_job.run_generate_timeline(ctx)


def generate_cache_key(ctx: JobContext) -> str:
    """Everything that determines a `generate` result: the model's weights, the picture file
    as it is now, the range, the prompts and the sampler settings."""
    request = ctx.request
    try:
        stat = os.stat(request.media)
        media_state = [os.path.realpath(request.media), stat.st_size, stat.st_mtime_ns]
    except OSError:
        media_state = [request.media]
    key = {
        "kind": "generate", "revision": RESULT_REVISION, "engine": ctx.engine.name,
        "weights": ctx.engine.weights_hash,
        "media": media_state, "request": request.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _wav_channels(wav: bytes) -> int:
    return struct.unpack("<H", wav[22:24])[0]


def run_generate(ctx: JobContext) -> tuple[dict, tuple[bytes]]:
    """One media range -> one WAV (cached by content: the same request on the same file and
    weights returns the stored audio)."""
    request = ctx.request
    started = time.monotonic()
    clip = ClipRequest(
        segments=(Segment(
            media=request.media, start=request.start, duration=request.end - request.start,
            image_rate=request.image_rate, start_number=request.start_number,
        ),),
        prompt=request.prompt, negative_prompt=request.negative_prompt,
        seed=request.seed, steps=request.steps, cfg=request.cfg,
    )
    key = generate_cache_key(ctx)
    wav = ctx.store.get_blob(key)
    cached = wav is not None
    if wav is None:
        audio = ctx.generate_audio(clip)
        if audio.samples.ndim != 2 or audio.samples.shape[1] != clip.num_samples:
            raise JobFailed(
                "engine_error",
                f"the engine {ctx.engine.name} returned audio of shape {audio.samples.shape}, "
                f"expected (channels, {clip.num_samples}); this is a bug in the engine",
            )
        ctx.progress("writing", 0, 1)
        wav = audio_wav_bytes(
            audio, model=ctx.engine.name, seed=request.seed,
            extra={"steps": request.steps, "cfg": request.cfg, "prompt": request.prompt},
        )
        ctx.store.put_blob(key, wav)
        ctx.progress("writing", 1, 1)
    body = {
        "duration": clip.num_samples / 48_000, "sample_rate": 48_000,
        "channels": _wav_channels(wav), "sample_format": "s24le",
        "model": ctx.engine.name, "seed": request.seed, "steps": request.steps,
        "cfg": request.cfg, "cached": cached, "low_memory": ctx.low_memory_used,
        "elapsed_s": round(time.monotonic() - started, 4),
        "unfamiliar": is_unfamiliar(wav),
    }
    return body, (wav,)
