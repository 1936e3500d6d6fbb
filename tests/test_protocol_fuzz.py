"""Property-based fuzzing of a live daemon: thousands of malformed messages over real ZeroMQ,
each answered with a typed error (or a legitimate reply), and afterwards a valid request
still succeeds."""

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import wire
from bridge.client import Client
from schemas.messages import ERROR_CODES
from tests.daemon_harness import make_media, raw_socket, recv_message, running_server

# Kept to about 15 s on a loaded two-core box: 500 batches of 1-8 messages, ~1,900 messages.
EXAMPLES = 500

plain = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
values = st.recursive(plain, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# Request types whose reply is a single event and that cannot stop the daemon.
SAFE_TYPES = ["ping", "status", "cancel", "fetch", "list_jobs", "generate", "generate_timeline", "nope", ""]
# No "media" or "media_dir": a job that happened to be valid would read or create real paths
# (a ten-minute render of "/" helps nobody); jobs are exercised in tests/test_daemon_jobs.py.
FIELDS = ["start", "end", "prompt", "seed", "steps", "cfg", "id", "otio", "limit", "session"]


def _packed_or_raw(obj) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return b"\xc1"  # never-used msgpack byte


random_frames = st.lists(st.binary(max_size=64), min_size=1, max_size=6)
random_after_version = st.lists(st.binary(max_size=64), min_size=0, max_size=4).map(lambda rest: [wire.VERSION_FRAME, *rest])
random_header = st.fixed_dictionaries({}, optional={"id": values, "type": values, "session": values, "priority": values, "x": values})
random_body = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), values, max_size=5)
header_and_body = st.tuples(random_header, random_body).map(lambda hb: [wire.VERSION_FRAME, _packed_or_raw(hb[0]), _packed_or_raw(hb[1])])
# Well-formed headers with hostile bodies: these reach the schemas.
typed = st.tuples(st.sampled_from(SAFE_TYPES), random_body, st.integers(0, 10**9)).map(
    lambda t: [wire.VERSION_FRAME, msgpack.packb({"id": f"fz{t[2]}", "type": t[0]}), _packed_or_raw(t[1])]
)
bad_version = st.tuples(st.integers(0, 10**6).filter(lambda v: v != wire.PROTOCOL_VERSION), random_body).map(
    lambda t: [b"v2a/%d" % t[0], msgpack.packb({"id": "v", "type": "ping"}), _packed_or_raw(t[1])]
)
messages = random_frames | random_after_version | header_and_body | typed | bad_version


def test_fuzzed_messages_get_typed_errors_and_the_daemon_keeps_serving(tmp_path):
    media = make_media(tmp_path)
    with running_server(tmp_path / "cache") as server:
        sock = raw_socket(server.endpoint)
        seen_codes = set()

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(messages, min_size=1, max_size=8))
        def a_batch(batch):
            for frames in batch:
                sock.send_multipart(frames)
            finals = 0
            while finals < len(batch):
                reply = recv_message(sock)
                # Valid by accident (a ping, a job with a real body...) is fine; anything
                # else must be an error with a documented code.
                if reply.type in ("accepted", "progress"):
                    continue
                finals += 1
                sent_count[0] += 1
                if reply.type == "error":
                    assert reply.body["code"] in ERROR_CODES, reply.body
                    assert reply.body["message"]
                    seen_codes.add(reply.body["code"])

        sent_count = [0]
        a_batch()
        sock.close()
        assert sent_count[0] >= 1500
        assert {"bad_frames", "not_v2a", "bad_msgpack", "bad_header", "invalid_request", "version_mismatch"} <= seen_codes

        with Client(server.endpoint, timeout=10) as client:
            assert client.ping() > 0
            result = client.generate(media, 0.0, 0.5, steps=2, seed=11)
            assert result.body["duration"] == pytest.approx(0.5)
            assert result.blobs[0][:4] == b"RIFF"
