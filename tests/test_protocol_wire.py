"""The wire format and the schemas: framing, limits, hostile msgpack, version errors, and the
checked-in JSON Schema files staying in step with the models."""

import json

import msgpack
import pytest

from bridge import wire
from schemas import export
from schemas.messages import (
    ERROR_CODES,
    EVENTS,
    REQUESTS,
    InvalidRequest,
    check_event,
    parse_request,
)


def frames_of(header=None, body=None, blobs=()):
    return wire.encode(header or {"id": "r1", "type": "ping"}, body or {}, blobs)


def test_round_trip_keeps_header_body_and_blobs():
    audio = bytes(range(256)) * 100
    frames = frames_of({"id": "job-1", "type": "generate", "session": "s", "priority": 5},
                       {"media": "/a.mov", "start": 0.5, "nested": {"x": [1, 2.5, None, True]}},
                       [audio, b""])
    message = wire.decode(frames)
    assert message.id == "job-1" and message.type == "generate"
    assert message.header["priority"] == 5
    assert message.body["nested"] == {"x": [1, 2.5, None, True]}
    assert message.blobs == [audio, b""]
    assert frames[0] == b"v2a/1"


@pytest.mark.parametrize("count", [0, 1, 2])
def test_too_few_frames(count):
    with pytest.raises(wire.WireError) as err:
        wire.decode(frames_of()[:count])
    assert err.value.code == "bad_frames"


def test_version_mismatch_names_both_versions_and_keeps_the_id():
    frames = wire.encode({"id": "abc", "type": "ping"}, {}, version=7)
    with pytest.raises(wire.WireError) as err:
        wire.decode(frames)
    assert err.value.code == "version_mismatch"
    assert "protocol 7" in err.value.text and f"speaks {wire.PROTOCOL_VERSION}" in err.value.text
    assert err.value.message.id == "abc"


@pytest.mark.parametrize("first", [b"", b"hello", b"v2a/", b"v2a/x", b"v2a/12345678901", b"\xff" * 40])
def test_first_frame_must_be_a_version(first):
    with pytest.raises(wire.WireError) as err:
        wire.decode([first, *frames_of()[1:]])
    assert err.value.code == "not_v2a"


def test_message_size_limit_counts_all_frames():
    frames = frames_of(blobs=[b"x" * 600, b"y" * 600])
    assert wire.decode(frames, max_message_bytes=2000)
    with pytest.raises(wire.WireError) as err:
        wire.decode(frames, max_message_bytes=1000)
    assert err.value.code == "too_large" and "1000" in err.value.text


BOMBS = {
    # an array header claiming 4 billion elements in 5 bytes
    "huge array header": b"\xdd\xff\xff\xff\xff",
    "huge map header": b"\xdf\xff\xff\xff\xff",
    "huge bin header": b"\x81\xa1a\xc6\xff\xff\xff\xff",
    "huge str header": b"\x81\xa1a\xdb\xff\xff\xff\xff",
    "deep nesting": b"\x81\xa1a" + b"\x91" * 100_000 + b"\xc0",
    "int map key": b"\x81\x01\x02",
    "extension type": b"\x81\xa1a\xc7\x05\x01abcde",
    "timestamp": b"\x81\xa1a" + msgpack.packb(msgpack.Timestamp(1, 0)),
    "trailing bytes": b"\x80\x80",
    "truncated": b"\x82\xa1a",
    "not a map": msgpack.packb([1, 2, 3]),
    "invalid utf-8 string": b"\x81\xa1a\xa2\xff\xfe",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_hostile_msgpack_bodies_are_refused(name):
    frames = frames_of()
    with pytest.raises(wire.WireError) as err:
        wire.decode([frames[0], frames[1], BOMBS[name]])
    assert err.value.code == "bad_msgpack"
    assert err.value.code in ERROR_CODES


def test_many_tiny_elements_within_the_buffer_are_fine():
    body = msgpack.packb({"a": list(range(10_000))})
    assert len(wire.decode([*frames_of()[:2], body]).body["a"]) == 10_000


@pytest.mark.parametrize("header", [
    {"type": "ping"},
    {"id": "", "type": "ping"},
    {"id": "a b", "type": "ping"},
    {"id": "x" * 500, "type": "ping"},
    {"id": 5, "type": "ping"},
    {"id": "a"},
    {"id": "a", "type": ""},
    {"id": "a", "type": "ping", "priority": 1000},
    {"id": "a", "type": "ping", "priority": True},
    {"id": "a", "type": "ping", "session": 3},
    {"id": "a", "type": "ping", "extra": 1},
])
def test_bad_headers(header):
    with pytest.raises(wire.WireError) as err:
        wire.decode([wire.VERSION_FRAME, msgpack.packb(header), msgpack.packb({})])
    assert err.value.code == "bad_header"


def test_request_errors_name_the_field():
    with pytest.raises(InvalidRequest) as err:
        parse_request("generate", {"media": "/a.mov", "start": "0", "end": 2.0, "sede": 1})
    assert err.value.code == "invalid_request"
    assert "start" in err.value.message and "sede" in err.value.message
    with pytest.raises(InvalidRequest, match="must be after start"):
        parse_request("generate", {"media": "/a.mov", "start": 3.0, "end": 2.0})
    with pytest.raises(InvalidRequest, match="absolute"):
        parse_request("generate_timeline", {"otio": "{}", "media_dir": "relative/dir"})
    with pytest.raises(InvalidRequest) as err:
        parse_request("explode", {})
    assert err.value.code == "unknown_type" and "generate" in err.value.message


def test_requests_take_their_defaults():
    request = parse_request("generate", {"media": "/a.mov", "start": 0, "end": 1})
    assert (request.steps, request.cfg, request.seed, request.prompt) == (25, 4.5, 0, "")
    timeline = parse_request("generate_timeline", {"otio": "{}", "media_dir": "/tmp/out"})
    assert (timeline.mode, timeline.takes, timeline.track, timeline.stems) == ("clip", 1, None, False)


def test_outgoing_events_are_checked():
    body = check_event("result", {
        "duration": 2.0, "sample_rate": 48000, "channels": 2, "sample_format": "s24le",
        "model": "m", "seed": 1, "steps": 4, "cfg": 4.5,
    })
    assert body["cached"] is False
    timeline = check_event("result", {"otio": "{}", "placements": [], "rate": 24.0, "failed": [], "clips": 0})
    assert timeline["rate"] == 24.0
    with pytest.raises(ValueError):
        check_event("progress", {"stage": "sampling"})


def test_json_schemas_are_checked_in_and_current():
    rendered = export.render()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in export.JSON_DIR.glob("*.json")}
    stale = sorted(name for name in set(rendered) | set(on_disk) if rendered.get(name) != on_disk.get(name))
    assert not stale, f"schemas/json is out of date ({stale}); run `python -m schemas.export`"
    index = json.loads(on_disk["protocol.json"])
    assert set(index["requests"]) == set(REQUESTS)
    assert set(index["events"]) == set(EVENTS)
    assert index["protocol_version"] == wire.PROTOCOL_VERSION
    generate = json.loads(on_disk["request.generate.json"])
    assert set(generate["required"]) == {"media", "start", "end"}
