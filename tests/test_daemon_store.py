"""The result store's byte cap: least recently used objects go first with every job and key
naming them, nothing retained points at a missing file, and the journal agrees after a restart.
A full disk loses only the cache."""

import hashlib
import json
import logging
import types

import pytest

from daemon import store as store_module
from daemon.store import ResultStore
from tests.daemon_harness import full_disk

BLOB = 1000
"""Bytes per test blob: caps below are counted in blobs."""


@pytest.fixture
def clock(monkeypatch):
    """A clock that ticks one second per reading, so LRU order does not depend on timer resolution."""
    now = iter(range(1_000_000, 2_000_000))
    monkeypatch.setattr(store_module, "time", types.SimpleNamespace(time=lambda: float(next(now))))


def blob(tag: int) -> bytes:
    return bytes([tag % 256]) * BLOB


def record(store: ResultStore, job_id: str, *blobs: bytes) -> None:
    store.record(job_id, "generate", "result", {"job": job_id}, blobs)


def journal_ids(store: ResultStore) -> list[str]:
    return [json.loads(line)["id"] for line in store.journal_path.read_text().splitlines()]


def object_file(store: ResultStore, data: bytes):
    digest = hashlib.sha256(data).hexdigest()
    return store.objects / digest[:2] / digest


def key_files(store: ResultStore) -> list:
    return [p for p in store.keys.rglob("*") if p.is_file()]


def bytes_on_disk(store: ResultStore) -> int:
    return sum(p.stat().st_size for p in store.objects.rglob("*") if p.is_file())


def assert_consistent(store: ResultStore) -> None:
    """Every retained job loads whole; the accounting matches the disk."""
    for job_id in journal_ids(store):
        loaded = store.load(job_id)
        assert loaded is not None and loaded.event == "result", (job_id, loaded)
    assert store.size_bytes == bytes_on_disk(store)


def test_the_cap_is_kept_and_the_oldest_jobs_go_first(tmp_path, clock):
    cap = int(3.5 * BLOB)
    store = ResultStore(tmp_path, max_bytes=cap)
    for n in range(1, 7):
        record(store, f"job-{n}", blob(n))
        assert store.size_bytes <= cap
        assert_consistent(store)
    retained = [f"job-{n}" for n in range(1, 7) if store.known(f"job-{n}")]
    assert retained == ["job-4", "job-5", "job-6"]
    assert journal_ids(store) == retained
    for n in (1, 2, 3):
        assert store.evicted(f"job-{n}") and store.load(f"job-{n}") is None
    assert store.load("job-6").blobs == [blob(6)]


def test_an_object_still_named_by_a_newer_job_is_kept_with_its_old_job(tmp_path, clock):
    store = ResultStore(tmp_path, max_bytes=int(2.5 * BLOB))
    record(store, "old", blob(1))
    record(store, "middle", blob(2))
    record(store, "newer-same-audio", blob(1))  # no new bytes: the cache now holds 2 blobs
    assert not store.evicted("middle")
    record(store, "newest", blob(3))
    # blob 1 was last used by the newer job, so the middle job's blob is the least recent
    assert store.evicted("middle") and not store.known("middle")
    assert all(store.known(j) for j in ("old", "newer-same-audio", "newest"))
    assert store.load("old").blobs == [blob(1)]
    assert_consistent(store)


def test_keys_count_as_uses_and_stale_keys_go(tmp_path, clock):
    store = ResultStore(tmp_path, max_bytes=int(3.5 * BLOB))
    for n in range(1, 4):
        store.put_blob(f"key-{n}", blob(n))
    assert store.get_blob("key-1") == blob(1)  # key-1 is now the most recently used
    store.put_blob("key-4", blob(4))
    assert store.get_blob("key-2") is None
    assert [store.get_blob(f"key-{n}") for n in (3, 4, 1)] == [blob(3), blob(4), blob(1)]
    assert len(key_files(store)) == 3  # key-2's file is gone
    # the read order survives a restart (the key file's time is the last use)
    again = ResultStore(tmp_path, max_bytes=int(3.5 * BLOB))
    again.put_blob("key-5", blob(5))
    assert again.get_blob("key-3") is None and again.get_blob("key-1") == blob(1)
    assert len(key_files(again)) == 3


def test_a_job_and_a_key_naming_one_object_go_together(tmp_path, clock):
    """The generate path: the WAV is put under its cache key, then journaled with the job."""
    store = ResultStore(tmp_path, max_bytes=int(2.5 * BLOB))
    store.put_blob("key-a", blob(1))
    record(store, "job-a", blob(1))
    store.put_blob("key-b", blob(2))
    record(store, "job-b", blob(2), blob(3))  # two blobs: the cache is over its cap
    assert store.evicted("job-a") and store.get_blob("key-a") is None
    assert store.load("job-b").blobs == [blob(2), blob(3)]
    assert store.get_blob("key-b") == blob(2)
    assert_consistent(store)


def test_a_dropped_jobs_other_objects_go_unless_something_else_names_them(tmp_path, clock):
    store = ResultStore(tmp_path, max_bytes=int(3.5 * BLOB))
    record(store, "three-blobs", blob(1), blob(2), blob(5))
    store.put_blob("shares-blob-2", blob(2))
    record(store, "next", blob(3))  # over the cap: blob 1 is the least recently used
    assert store.evicted("three-blobs")
    assert not object_file(store, blob(1)).exists()
    assert not object_file(store, blob(5)).exists()  # only the dropped job named it
    assert store.get_blob("shares-blob-2") == blob(2)
    assert store.size_bytes == 2 * BLOB
    assert_consistent(store)


def test_the_journal_is_rewritten_and_a_restart_agrees(tmp_path, clock):
    store = ResultStore(tmp_path, max_bytes=int(3.5 * BLOB))
    store.record("failed", "generate", "error", {"code": "media_error", "message": "m", "clip": None})
    for n in range(1, 6):
        record(store, f"job-{n}", blob(n))
    kept = journal_ids(store)
    assert kept == ["failed", "job-3", "job-4", "job-5"]  # an error holds no bytes and stays
    assert not list(tmp_path.glob(".tmp-*"))
    again = ResultStore(tmp_path, max_bytes=int(3.5 * BLOB))
    assert len(again) == len(kept) and all(again.known(j) for j in kept)
    assert not again.known("job-1") and again.size_bytes == store.size_bytes
    assert again.load("job-4").blobs == [blob(4)]
    # a smaller cap applies at start-up
    smaller = ResultStore(tmp_path, max_bytes=int(1.5 * BLOB))
    assert smaller.size_bytes <= 1.5 * BLOB
    assert journal_ids(smaller) == ["failed", "job-5"]
    assert ResultStore(tmp_path).known("job-5") and not ResultStore(tmp_path).known("job-4")


def test_unnamed_objects_go_first(tmp_path, clock):
    uncapped = ResultStore(tmp_path)
    record(uncapped, "job-1", blob(1))
    orphan = uncapped.put_object(blob(9))  # as if the daemon died before journaling it
    record(uncapped, "job-2", blob(2))
    capped = ResultStore(tmp_path, max_bytes=int(3.5 * BLOB))
    assert capped.get_object(orphan) == blob(9)  # under the cap: nothing goes
    record(capped, "job-3", blob(3))
    assert capped.get_object(orphan) is None
    assert all(capped.known(j) for j in ("job-1", "job-2", "job-3"))
    assert_consistent(capped)


def test_no_cap_keeps_everything(tmp_path):
    for cap in (None, 0, -1):
        store = ResultStore(tmp_path / str(cap), max_bytes=cap)
        assert store.max_bytes is None
        for n in range(5):
            record(store, f"job-{n}", blob(n))
        assert len(store) == 5 and store.size_bytes == 5 * BLOB


def test_files_already_gone_do_not_break_eviction(tmp_path, clock):
    store = ResultStore(tmp_path, max_bytes=int(3.5 * BLOB))
    record(store, "job-1", blob(1))
    store.put_blob("key-2", blob(2))
    record(store, "job-3", blob(3))
    object_file(store, blob(1)).unlink()  # removed behind our back ...
    for key_file in key_files(store):
        key_file.unlink()
    (store.objects / "zz").mkdir()
    (store.objects / "zz" / "not-an-object").write_bytes(b"x")  # ... and a stranger moved in
    record(store, "job-4", blob(4))
    record(store, "job-5", blob(5))
    assert store.evicted("job-1") and store.size_bytes <= 3.5 * BLOB
    assert store.load("job-5").blobs == [blob(5)]
    again = ResultStore(tmp_path, max_bytes=int(3.5 * BLOB))
    assert again.size_bytes == store.size_bytes
    assert again.load("job-4").blobs == [blob(4)]


def test_a_missing_object_of_a_retained_job_is_still_reported_as_missing(tmp_path):
    store = ResultStore(tmp_path, max_bytes=10 * BLOB)
    record(store, "job-1", blob(1))
    object_file(store, blob(1)).unlink()
    loaded = store.load("job-1")
    assert loaded.event == "error" and loaded.body["code"] == "not_found"
    assert "missing" in loaded.body["message"] and not store.evicted("job-1")


def test_a_full_disk_loses_only_the_cache_says_so_once_and_leaves_no_partial_file(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="v2a.store")
    store = ResultStore(tmp_path, max_bytes=10 * BLOB)
    record(store, "before", blob(1))
    with full_disk(tmp_path):
        assert store.put_blob("key-2", blob(2)) is None  # it raised: the job failed with it
        assert store.put_blob("key-3", blob(3)) is None  # a timeline's next clip: not warned again
        record(store, "during", blob(4))
    assert store.get_blob("key-2") is None and not store.known("during")
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    assert store.size_bytes == bytes_on_disk(store) == BLOB
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(tmp_path) in warning and "No space left on device" in warning
    assert "free space" in warning and "--cache-dir" in warning
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "during" in error and "cannot be fetched later" in error and "--cache-dir" in error
    # With space again the cache works as before, and says so.
    assert store.put_blob("key-2", blob(2)) is not None and store.get_blob("key-2") == blob(2)
    assert "works again" in caplog.text
    assert ResultStore(tmp_path).load("before").blobs == [blob(1)]
