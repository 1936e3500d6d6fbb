"""The V2A Bridge wire format: how one message becomes ZeroMQ frames and back.

A message is ``[version, msgpack(header), msgpack(body), *blobs]``:

- ``version``: ASCII ``v2a/<PROTOCOL_VERSION>``, so a peer speaking another version is named in
  the error instead of being misread;
- ``header``: a map ``{id, type, session?, priority?}``; events for a request carry its ``id``;
- ``body``: a map whose shape is defined by ``schemas/`` (the daemon validates it there);
- ``blobs``: bulk bytes (WAV files), never inside msgpack.

Shared by the daemon and by ``bridge.client``; depends on msgpack and the standard library only,
so plugins can vendor ``bridge/client.py`` and ``bridge/wire.py`` as a package. Every frame
from the other side is untrusted: sizes are bounded before unpacking, msgpack runs with every
container bounded by the frame's own size (the bound ``Unpacker(max_buffer_size=...)`` sets)
and ``strict_map_key``, extension types are refused, and every problem is a `WireError` with a
code a reply can carry.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

import msgpack

PROTOCOL_VERSION = 1
VERSION_PREFIX = b"v2a/"
VERSION_FRAME = VERSION_PREFIX + str(PROTOCOL_VERSION).encode()

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""All frames of one message together; configurable on both ends. The daemon's is its
``--max-message-mb``, stated as ``max_message_bytes`` in its pong and status reply."""
MIN_MAX_MESSAGE_BYTES = 1024 * 1024
"""Every daemon accepts requests this large (it refuses to start with a smaller limit), so a
client sends them without knowing the daemon's limit; only larger ones wait until it knows."""
MAX_HEADER_BYTES = 16 * 1024
MAX_BLOBS = 256
MAX_ID_CHARS = 128
MAX_TYPE_CHARS = 64
PRIORITY_RANGE = (-100, 100)
_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]+")


class WireError(Exception):
    """A message that cannot be framed or unframed. `code` is one of:

    ``bad_frames`` (wrong frame count or frame types), ``not_v2a`` (first frame is not a V2A
    version), ``version_mismatch``, ``too_large``, ``bad_msgpack`` (undecodable, trailing bytes,
    extension types, non-string map keys, over-long containers), ``bad_header``.
    `message` is the decoded message where decoding got far enough to know who sent it (so an
    error reply can carry the request id), else None.
    """

    def __init__(self, code: str, text: str, message: Message | None = None):
        super().__init__(text)
        self.code = code
        self.text = text
        self.message = message

    def __str__(self) -> str:
        return self.text


@dataclass
class Message:
    """One decoded message. `header["id"]` correlates a request with all its events."""

    header: dict
    body: dict = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)
    version: int = PROTOCOL_VERSION

    @property
    def id(self) -> str:
        return self.header["id"]

    @property
    def type(self) -> str:
        return self.header["type"]


def make_header(
    request_id: str, type_: str, *, session: str | None = None, priority: int | None = None
) -> dict:
    header: dict = {"id": request_id, "type": type_}
    if session is not None:
        header["session"] = session
    if priority is not None:
        header["priority"] = priority
    return header


def _pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def encode(header: dict, body: dict | None = None, blobs=(), *, version: int = PROTOCOL_VERSION):
    """Frames for one message: ``[version, header, body, *blobs]`` (blobs passed through as-is,
    so large buffers are not copied here)."""
    version_frame = VERSION_FRAME if version == PROTOCOL_VERSION else (
        VERSION_PREFIX + str(version).encode()
    )
    return [version_frame, _pack(header), _pack(body if body is not None else {}), *blobs]


def _refuse_ext(code: int, data: bytes):
    raise ValueError(f"msgpack extension type {code} is not allowed")


def unpack_map(data: bytes, what: str) -> dict:
    """Unpack one msgpack map from untrusted bytes, every container and string bounded by the
    buffer's own size (what `Unpacker(max_buffer_size=len(data))` would allow: a header that
    claims 2**32 elements is refused before anything is allocated), string map keys only,
    no extension types, nothing after the map."""
    size = max(len(data), 1)
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=True, ext_hook=_refuse_ext, timestamp=0,
            max_str_len=size, max_bin_len=size, max_array_len=size, max_map_len=size,
            max_ext_len=size,
        )
    except msgpack.ExtraData:
        raise WireError("bad_msgpack", f"{what} frame has bytes after its msgpack map") from None
    except Exception as exc:  # msgpack raises ValueError, TypeError, StackError, ...
        raise WireError("bad_msgpack", f"{what} frame is not valid msgpack: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError("bad_msgpack", f"{what} frame must be a msgpack map, got {type(obj).__name__}")
    if b"\xff" in data:  # a timestamp is extension type -1 (0xff); only then walk the tree
        _refuse_timestamps(obj, what)
    return obj


def _refuse_timestamps(obj, what: str) -> None:
    # msgpack decodes its built-in timestamp extension itself; the protocol has no such type.
    # Iterative on purpose: msgpack allows nesting deeper than Python's recursion limit.
    pending = [obj]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, msgpack.Timestamp):
            raise WireError("bad_msgpack", f"{what} frame holds a msgpack timestamp; not allowed")


def parse_version(frame: bytes) -> int:
    if not frame.startswith(VERSION_PREFIX) or not frame[len(VERSION_PREFIX):].isdigit() or (
        len(frame) > len(VERSION_PREFIX) + 6
    ):
        shown = bytes(frame[:16])
        raise WireError(
            "not_v2a",
            f"first frame {shown!r} is not a V2A Bridge protocol version (expected {VERSION_FRAME!r})",
        )
    return int(frame[len(VERSION_PREFIX):])


def validate_header(header: dict) -> dict:
    """Check the header's fields (stdlib only: the client has no pydantic)."""
    rid = header.get("id")
    if not isinstance(rid, str) or not rid:
        raise WireError("bad_header", "header.id must be a non-empty string")
    if len(rid) > MAX_ID_CHARS or not _ID_PATTERN.fullmatch(rid):
        raise WireError(
            "bad_header",
            f"header.id must be at most {MAX_ID_CHARS} characters of A-Z a-z 0-9 . _ : -",
        )
    type_ = header.get("type")
    if not isinstance(type_, str) or not type_ or len(type_) > MAX_TYPE_CHARS:
        raise WireError("bad_header", "header.type must be a non-empty string")
    session = header.get("session")
    if session is not None and (not isinstance(session, str) or len(session) > MAX_ID_CHARS):
        raise WireError("bad_header", f"header.session must be a string of <= {MAX_ID_CHARS} chars")
    priority = header.get("priority")
    if priority is not None and (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]
    ):
        raise WireError(
            "bad_header", f"header.priority must be an integer in {list(PRIORITY_RANGE)}"
        )
    unknown = set(header) - {"id", "type", "session", "priority"}
    if unknown:
        raise WireError("bad_header", f"unknown header fields: {sorted(unknown)}")
    return header


def decode(frames, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Frames (bytes, or zmq.Frame-like objects with `.buffer`) -> Message.

    Raises WireError. Whenever the header could still be read, the error carries the message
    (with whatever else was readable) so the receiver can answer that request id; for a version
    mismatch the body is read too, best effort, so a client can show what the daemon said."""
    if not all(type(f) is bytes for f in frames):
        frames = [f if isinstance(f, bytes | bytearray | memoryview) else f.buffer for f in frames]
    if len(frames) < 3:
        raise WireError(
            "bad_frames",
            f"a message has at least 3 frames [version, header, body], got {len(frames)}",
        )
    version = parse_version(bytes(frames[0]))
    partial = None
    header_error = None
    try:
        if len(frames[1]) > MAX_HEADER_BYTES:
            raise WireError("too_large", f"header frame exceeds {MAX_HEADER_BYTES} bytes")
        partial = Message(validate_header(unpack_map(bytes(frames[1]), "header")), {}, [], version)
    except WireError as exc:
        header_error = exc

    if version != PROTOCOL_VERSION:
        if partial is not None:
            # Best effort: another version may frame its body differently.
            with contextlib.suppress(WireError):
                partial.body = unpack_map(bytes(frames[2]), "body")
        raise WireError(
            "version_mismatch",
            f"protocol version mismatch: the peer speaks V2A protocol {version}, this side "
            f"speaks {PROTOCOL_VERSION}; update the plugin or the daemon so both match",
            partial,
        )
    if header_error is not None:
        raise header_error
    if len(frames) - 3 > MAX_BLOBS:
        raise WireError("bad_frames", f"at most {MAX_BLOBS} binary frames per message", partial)
    total = sum(len(f) for f in frames)
    if total > max_message_bytes:
        raise WireError(
            "too_large",
            f"message of {total} bytes exceeds the limit of {max_message_bytes} bytes",
            partial,
        )
    try:
        partial.body = unpack_map(bytes(frames[2]), "body")
    except WireError as exc:
        raise WireError(exc.code, exc.text, partial) from None
    partial.blobs = [f if isinstance(f, bytes) else bytes(f) for f in frames[3:]]
    return partial
