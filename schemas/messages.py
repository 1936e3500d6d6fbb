"""Every message body of the V2A Bridge protocol, as pydantic v2 models: the one place a
message shape is defined.

Frames are ``[version, header, body, *blobs]`` (see ``bridge/wire.py``). A client sends a
*request*; the daemon answers with one or more *events* that carry the request's id:

    ping            -> pong
    status          -> status_reply
    generate        -> accepted, progress..., result (+ blob: WAV bytes) | error
    generate_timeline -> accepted, progress..., clip_done..., result | error
    cancel          -> cancel_reply       (the cancelled job itself ends with error "cancelled")
    fetch           -> result | error     (the stored final event of a finished job, by id)
    list_jobs       -> list_jobs_reply
    unload          -> unload_reply
    shutdown        -> shutdown_reply

Any request may instead get an ``error`` event (code, message, clip). Bodies are strict: unknown
fields and mistyped values are refused with a message naming the field.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from bridge.wire import MAX_ID_CHARS, MIN_MAX_MESSAGE_BYTES, PRIORITY_RANGE, PROTOCOL_VERSION

__all__ = [
    "ERROR_CODES", "EVENTS", "JOB_STATES", "REQUESTS", "RESULT", "PROTOCOL_VERSION",
    "InvalidRequest", "parse_request", "check_event",
]

MAX_PROMPT_CHARS = 2000
MAX_OTIO_CHARS = 32 * 1024 * 1024
MAX_DURATION_S = 600.0
MAX_SEED = 2**63 - 1

JobId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[A-Za-z0-9._:\-]+$")]
Prompt = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
Unfamiliar = Annotated[bool, Field(
    description="the picture is unlike any the model learnt from: this sound is not to be "
                "trusted (its WAV's comment says so too)")]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Steps = Annotated[int, Field(ge=1, le=200)]
Cfg = Annotated[float, Field(ge=0.0, le=50.0)]

JOB_STATES = ("queued", "running", "cancelling", "done", "failed", "cancelled")
JobState = Literal["queued", "running", "cancelling", "done", "failed", "cancelled"]
JobKind = Literal["generate", "generate_timeline"]

ERROR_CODES = {
    "bad_frames": "the message did not have [version, header, body, *blobs] frames",
    "not_v2a": "the first frame was not a V2A protocol version",
    "version_mismatch": "client and daemon speak different protocol versions",
    "too_large": "the request exceeded the daemon's size limit (its --max-message-mb, stated "
                 "in pong and status_reply as max_message_bytes); the client refuses such a "
                 "request without sending it once it knows the limit",
    "bad_msgpack": "a frame was not acceptable msgpack",
    "bad_header": "the header was missing or had mistyped fields",
    "unknown_type": "the request type does not exist",
    "invalid_request": "the body had missing, unknown or mistyped fields",
    "duplicate_id": "the id was already used for a different request",
    "not_found": "no job with that id is known (not even in the journal), or its result was "
                 "evicted to keep the cache under its cap",
    "not_ready": "the job has not finished yet",
    "cancelled": "the job was cancelled",
    "shutting_down": "the daemon is stopping and takes no new jobs",
    "queue_full": "the daemon's queue already holds --max-queue jobs; wait or cancel some",
    "out_of_memory": "the accelerator ran out of memory, also in low-memory mode",
    "media_error": "the picture could not be read",
    "output_error": "the generated audio could not be written into the job's media_dir (disk "
                    "full, read-only or forbidden folder, path too long); the message names the "
                    "folder, the reason, what to do and the clips written before it, which stay",
    "engine_error": "the engine failed to load or to generate",
    "unsupported": "the daemon does not offer this yet",
    "internal": "a bug in the daemon; the daemon kept running",
}
"""Error codes a client may meet, with what they mean."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Header(_Body):
    """Frame 1 of every message (validated by bridge.wire, which has no pydantic)."""

    id: JobId = Field(description="client-chosen unique id; events carry their request's id")
    type: str = Field(min_length=1, max_length=64)
    session: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    priority: int | None = Field(
        default=None, ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1],
        description="higher runs first; FIFO within one priority; default 0",
    )


# --- requests -------------------------------------------------------------------------------


class PingRequest(_Body):
    """Liveness check; answered by the server loop even while the worker is busy."""


class StatusRequest(_Body):
    pass


class GenerateRequest(_Body):
    """Sound for one range of one media file: `start`..`end` seconds of media time."""

    media: str = Field(
        min_length=1, max_length=4096,
        description="path on the daemon host; with image_rate, an image sequence's printf "
                    "pattern (shot.%04d.png; a literal % is written %%)")
    start: float = Field(ge=0.0)
    end: float = Field(gt=0.0)
    prompt: Prompt = ""
    negative_prompt: Prompt = ""
    seed: Seed = 0
    steps: Steps = 25
    cfg: Cfg = 4.5
    image_rate: float | None = Field(
        default=None, gt=0.0, le=1000.0,
        description="frames per second of an image sequence; only sequences have one")
    start_number: int | None = Field(default=None, ge=0,
                                     description="an image sequence's first frame number")

    @model_validator(mode="after")
    def _range(self):
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if self.end - self.start > MAX_DURATION_S:
            raise ValueError(
                f"range of {self.end - self.start:g} s is longer than {MAX_DURATION_S:g} s; "
                "split it into several requests"
            )
        return self


class GenerateTimelineRequest(_Body):
    """Sound for every active picture clip of an OTIO timeline; WAVs go to `media_dir`."""

    otio: str = Field(min_length=2, max_length=MAX_OTIO_CHARS, description="OTIO JSON text")
    media_dir: str = Field(min_length=1, max_length=4096, description="absolute folder on the daemon host")
    prompt: Prompt = ""
    negative_prompt: Prompt = ""
    mode: Literal["clip", "continuous"] = "clip"
    takes: int = Field(default=1, ge=1, le=16)
    seed: Seed = 0
    steps: Steps = 25
    cfg: Cfg = 4.5
    track: int | None = Field(default=None, ge=0, description="video track driving the sound; None = top-most visible")
    stems: bool = False
    resolve: bool = False

    @model_validator(mode="after")
    def _absolute(self):
        if not os.path.isabs(self.media_dir):
            raise ValueError(f"media_dir must be an absolute folder, got {self.media_dir!r}")
        return self


class CancelRequest(_Body):
    id: JobId


class FetchRequest(_Body):
    id: JobId


class ListJobsRequest(_Body):
    session: str | None = Field(default=None, max_length=MAX_ID_CHARS, description="only this session's jobs")
    limit: int = Field(default=100, ge=1, le=10_000)


class UnloadRequest(_Body):
    pass


class ShutdownRequest(_Body):
    finish_running: bool = Field(default=False, description="let the running job finish first")


# --- events and replies ---------------------------------------------------------------------


class Accepted(_Body):
    kind: JobKind
    state: JobState
    position: int = Field(ge=0, description="jobs ahead of this one; 0 = next or running")
    queued: int = Field(ge=0, description="jobs waiting in the queue in all")
    duplicate: bool = Field(description="the id was already known: this is the same job")
    instance: str = Field(description="this daemon run (changes on restart)")


class Progress(_Body):
    stage: str
    step: int = Field(ge=0)
    total: int = Field(ge=0)
    eta_s: float | None = None
    fraction: float = Field(ge=0.0, le=1.0, description="of the whole job")
    clip: str | None = None
    clip_index: int | None = None
    clip_count: int | None = None


class ClipDone(_Body):
    clip: str
    index: int = Field(ge=0)
    count: int = Field(ge=1)
    files: list[str]
    cached: bool
    unfamiliar: Unfamiliar = False


class GenerateResult(_Body):
    """Blob 0 is the WAV file (48 kHz, 24-bit PCM, provenance in LIST/INFO)."""

    duration: float
    sample_rate: Literal[48000]
    channels: int = Field(ge=1)
    sample_format: Literal["s24le"]
    model: str
    seed: int
    steps: int
    cfg: float
    cached: bool = False
    low_memory: bool = False
    elapsed_s: float = 0.0
    unfamiliar: Unfamiliar = False


class Placement(_Body):
    """Where one new audio clip goes, in frames at the result's `rate`."""

    file: str
    track: int = Field(ge=1, description="1-based among the NEW audio tracks")
    record_start: int = Field(description="relative to the timeline's first frame")
    duration: int = Field(ge=0)
    source_in: int = Field(ge=0)
    clip: str
    take: int = Field(ge=1)
    unfamiliar: Unfamiliar = False


class FailedClip(_Body):
    clip: str
    code: str
    message: str


class TimelineResult(_Body):
    otio: str
    placements: list[Placement]
    rate: float = Field(gt=0.0)
    failed: list[FailedClip]
    clips: int = Field(ge=0)


class ErrorEvent(_Body):
    code: str
    message: str
    clip: str | None = None


class Pong(_Body):
    protocol: int
    version: str
    time: float = Field(description="daemon wall clock, seconds since the epoch")
    instance: str = Field(
        description="this daemon run; a client whose job was accepted by another instance "
                    "re-sends it (same id)"
    )
    max_message_bytes: int = Field(
        ge=MIN_MAX_MESSAGE_BYTES,
        description="the largest request this daemon accepts, all frames together (its "
                    "--max-message-mb); daemons before this field leave it out: take 64 MiB",
    )


class Memory(_Body):
    allocated: int = 0
    reserved: int = 0
    total: int = 0


class JobInfo(_Body):
    id: JobId
    kind: JobKind
    state: JobState
    priority: int
    session: str | None
    submitted: float
    started: float | None
    finished: float | None
    position: int | None = Field(description="queue position while queued")
    error: ErrorEvent | None = None


class QueueStatus(_Body):
    queued: int
    running: str | None
    jobs: int = Field(description="jobs known to this daemon run")


class StatusReply(_Body):
    version: str
    protocol: int
    pid: int
    endpoint: str
    model: str
    model_loaded: bool
    device: str = Field(description="device in use, or the requested one while unloaded")
    memory: Memory
    queue: QueueStatus
    keep_alive_s: float
    cache_dir: str
    cache_bytes: int = Field(ge=0, description="stored results and blob cache, in bytes")
    cache_max_bytes: int | None = Field(
        ge=1, description="the cache is kept under this (least recently used go first); null = no cap"
    )
    max_queue: int | None = Field(
        ge=1, description="queued jobs beyond which new ones get queue_full; null = no limit"
    )
    max_message_bytes: int = Field(
        ge=MIN_MAX_MESSAGE_BYTES,
        description="the largest request this daemon accepts, all frames together (its "
                    "--max-message-mb); daemons before this field leave it out: take 64 MiB",
    )
    uptime_s: float
    curve: bool


class CancelReply(_Body):
    id: JobId
    state: JobState
    cancelled: bool = Field(description="true when this request stopped or removed the job")


class ListJobsReply(_Body):
    jobs: list[JobInfo]


class UnloadReply(_Body):
    was_loaded: bool
    loaded: bool


class ShutdownReply(_Body):
    finish_running: bool


REQUESTS: dict[str, type[_Body]] = {
    "ping": PingRequest,
    "status": StatusRequest,
    "generate": GenerateRequest,
    "generate_timeline": GenerateTimelineRequest,
    "cancel": CancelRequest,
    "fetch": FetchRequest,
    "list_jobs": ListJobsRequest,
    "unload": UnloadRequest,
    "shutdown": ShutdownRequest,
}

RESULT = TypeAdapter(GenerateResult | TimelineResult)
"""The `result` event: one of two shapes, by the job's kind."""

EVENTS: dict[str, type[_Body] | TypeAdapter] = {
    "accepted": Accepted,
    "progress": Progress,
    "clip_done": ClipDone,
    "result": RESULT,
    "error": ErrorEvent,
    "pong": Pong,
    "status_reply": StatusReply,
    "cancel_reply": CancelReply,
    "list_jobs_reply": ListJobsReply,
    "unload_reply": UnloadReply,
    "shutdown_reply": ShutdownReply,
}

JOB_REQUESTS = ("generate", "generate_timeline")


class InvalidRequest(ValueError):
    """A request body that does not match its schema. `code` goes into the error reply."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _explain(type_: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:8]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return f"invalid {type_} request: " + "; ".join(parts)


def parse_request(type_: str, body: dict) -> _Body:
    """Validate a request body; raises InvalidRequest with a message naming each bad field."""
    model = REQUESTS.get(type_)
    if model is None:
        raise InvalidRequest(
            "unknown_type",
            f"unknown request type {type_!r}; known types: {', '.join(sorted(REQUESTS))}",
        )
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest("invalid_request", _explain(type_, exc)) from None


def check_event(type_: str, body: dict) -> dict:
    """Validate an outgoing event body (the daemon checks what it sends); returns it as a dict."""
    schema = EVENTS[type_]
    if isinstance(schema, TypeAdapter):
        return schema.dump_python(schema.validate_python(body), mode="json")
    return schema.model_validate(body).model_dump(mode="json")
