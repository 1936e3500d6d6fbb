"""Nothing lost: finished results on disk, so a client can fetch them by id after a restart.

Layout of the cache dir::

    objects/ab/abcdef...      blobs by the SHA-256 of their content (WAV files, ...)
    keys/12/1234...           small text files: sha256(key string) -> content hash (blob cache)
    journal.jsonl             append-only, one line per finished job:
                              {"id", "kind", "event": "result"|"error", "body", "blobs": [sha...], "time"}

The journal is the index: on start it is replayed (the last line for an id wins; a torn last
line from a crash is skipped with a warning). The blob cache (`put_blob`/`get_blob`) lets job
runners skip work they already did, e.g. a timeline re-run with one clip changed.

A cache that cannot be written (disk full, read-only folder) costs only what it would have
saved: `put_blob` and `record` log it and return, and a job still delivers its result. Objects
and keys are written whole or not at all (write-then-rename): a failed write leaves no part.

With a byte cap (`max_bytes`), the objects are kept under it (checked on start and after every
`record`/`put_blob`): the least recently used objects go first, where an object was last used
when the newest job naming it finished (journal time) or when its key was last put or read. A
job or key naming an evicted object is dropped with it, so nothing retained ever points at a
missing file; the journal is then rewritten (write-then-rename) without the dropped jobs, so a
restart agrees. Objects nothing names (a crash between writing and journaling) go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bridge.atomic_file import renamed_into_place

log = logging.getLogger("v2a.store")

EVICT_TO = 0.9
"""Over the cap, evict down to this fraction of it: the journal is not rewritten per new job."""
MAX_REMEMBERED_EVICTIONS = 10_000
"""Evicted job ids kept in memory, so a fetch can say why the result is gone."""
WHAT_TO_DO_WHEN_UNWRITABLE = "free space there or start the daemon with --cache-dir pointing elsewhere"


@dataclass
class StoredEvent:
    """The final event of a finished job: `result` or `error`, its body and its blobs."""

    id: str
    kind: str
    event: str
    body: dict
    blobs: list[bytes] = field(default_factory=list)


class ResultStore:
    """Content-addressed results and a keyed blob cache under one folder, optionally kept
    under `max_bytes` of objects (None or <= 0: no cap). Thread-safe."""

    def __init__(self, cache_dir: str | os.PathLike, max_bytes: int | None = None):
        self.root = Path(cache_dir).expanduser().resolve()
        self.objects = self.root / "objects"
        self.keys = self.root / "keys"
        self.journal_path = self.root / "journal.jsonl"
        self.max_bytes = max_bytes if max_bytes is not None and max_bytes > 0 else None
        self._lock = threading.Lock()
        self.objects.mkdir(parents=True, exist_ok=True)
        self.keys.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, dict] = {}
        self._sizes: dict[str, int] = {}
        """Object digest -> bytes on disk; their sum is `self._bytes`."""
        self._bytes = 0
        self._key_index: dict[str, tuple[str, float]] = {}
        """Key file name -> (object digest, last put or read)."""
        self._evicted: dict[str, None] = {}
        self._torn = False
        """The journal may end in half a line (a crash or a failed write): the next line
        starts on a line of its own, or it would be unreadable after a restart."""
        self._blob_writes_failing = False
        """The last `put_blob` failed: the next failures are not warned about again (a timeline
        puts one blob per clip)."""
        self._replay()
        self._scan()
        with self._lock:
            self._evict_if_over_cap()

    @property
    def size_bytes(self) -> int:
        """Bytes of objects held now (what the cap limits)."""
        with self._lock:
            return self._bytes

    def evicted(self, job_id: str) -> bool:
        """Whether this daemon run dropped `job_id` to keep the cache under its cap."""
        with self._lock:
            return job_id in self._evicted

    # --- content-addressed objects -----------------------------------------------------

    def put_object(self, data: bytes) -> str:
        """Store `data` by its hash. Nothing names it yet: over the cap it is the first to go."""
        with self._lock:
            return self._put_object(data)

    def _put_object(self, data: bytes) -> str:
        # Under the lock, so an eviction cannot delete the file between the check and its use.
        digest = hashlib.sha256(data).hexdigest()
        path = self._object_path(digest)
        if digest not in self._sizes or not path.exists():
            _atomic_write(path, data)
            self._bytes += len(data) - self._sizes.get(digest, 0)
            self._sizes[digest] = len(data)
        return digest

    def get_object(self, digest: str) -> bytes | None:
        try:
            data = self._object_path(digest).read_bytes()
        except FileNotFoundError:
            return None
        return data

    def _object_path(self, digest: str) -> Path:
        if not _is_digest(digest):
            raise ValueError(f"not a content hash: {digest!r}")
        return self.objects / digest[:2] / digest

    # --- the journal of finished jobs --------------------------------------------------

    def record(self, job_id: str, kind: str, event: str, body: dict, blobs=()) -> None:
        """Store a job's final event; after this, `load(job_id)` returns it (also after a restart)
        until the cap evicts it."""
        with self._lock:
            try:
                digests = [self._put_object(bytes(b)) for b in blobs]
                entry = {
                    "id": job_id, "kind": kind, "event": event, "body": body,
                    "blobs": digests, "time": time.time(),
                }
                line = json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n"
                with open(self.journal_path, "a", encoding="utf-8") as journal:
                    journal.write("\n" + line if self._torn else line)
                    journal.flush()
                    os.fsync(journal.fileno())
            except OSError as exc:
                # Disk full, read-only cache: the job is still delivered; the daemon serves on.
                self._torn = True
                log.error(
                    "could not store the %s of job %s in %s (%s): it is delivered now, but cannot "
                    "be fetched later; %s", event, job_id, self.root, exc, WHAT_TO_DO_WHEN_UNWRITABLE,
                )
                return
            self._torn = False
            self._index[job_id] = entry
            self._evicted.pop(job_id, None)
            self._evict_if_over_cap()

    def load(self, job_id: str) -> StoredEvent | None:
        with self._lock:
            entry = self._index.get(job_id)
        if entry is None:
            return None
        blobs = []
        for digest in entry["blobs"]:
            data = self.get_object(digest)
            if data is None and self.evicted(job_id):
                return None  # evicted while we read it
            if data is None:
                log.error("journal entry %s names missing object %s", job_id, digest)
                return StoredEvent(job_id, entry["kind"], "error", {
                    "code": "not_found",
                    "message": f"the stored audio of job {job_id} is missing from the cache "
                               f"({self.objects}); generate it again",
                    "clip": None,
                })
            blobs.append(data)
        return StoredEvent(job_id, entry["kind"], entry["event"], entry["body"], blobs)

    def known(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._index

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    def _replay(self) -> None:
        if not self.journal_path.exists():
            return
        with open(self.journal_path, encoding="utf-8", errors="replace") as journal:
            line = ""
            for number, line in enumerate(journal, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    self._index[entry["id"]] = {
                        "id": entry["id"], "kind": entry["kind"], "event": entry["event"],
                        "body": entry["body"], "blobs": list(entry["blobs"]), "time": entry["time"],
                    }
                except (ValueError, KeyError, TypeError):
                    log.warning("skipping unreadable journal line %d in %s", number, self.journal_path)
        self._torn = bool(line) and not line.endswith("\n")

    def _scan(self) -> None:
        """Sizes of the objects and targets of the keys on disk (files may vanish meanwhile)."""
        for path, stat in _files(self.objects):
            if _is_digest(path.name):
                self._sizes[path.name] = stat.st_size
        self._bytes = sum(self._sizes.values())
        for path, stat in _files(self.keys):
            try:
                digest = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                continue
            self._key_index[path.name] = (digest, stat.st_mtime)

    # --- keyed blob cache --------------------------------------------------------------

    def put_blob(self, key: str, data: bytes) -> str | None:
        """Remember `data` under `key` (any string, e.g. a hash of everything that made it).
        Returns its content hash, or None when the cache could not be written (logged): the
        caller carries on without it."""
        path = self._key_path(key)
        with self._lock:
            try:
                digest = self._put_object(bytes(data))
                _atomic_write(path, digest.encode("ascii"))
                now = time.time()
                os.utime(path, (now, now))  # the file's time is the key's last use after a restart
            except OSError as exc:
                # Disk full, read-only cache: the same work is done again next time, no more.
                if not self._blob_writes_failing:
                    log.warning(
                        "could not write to the cache in %s (%s): results are delivered but not "
                        "kept, so the same requests will be generated again; %s",
                        self.root, exc, WHAT_TO_DO_WHEN_UNWRITABLE,
                    )
                self._blob_writes_failing = True
                return None
            if self._blob_writes_failing:
                log.info("writing to the cache in %s works again", self.root)
            self._blob_writes_failing = False
            self._key_index[path.name] = (digest, now)
            self._evict_if_over_cap()
        return digest

    def get_blob(self, key: str) -> bytes | None:
        """The data last put under `key`, or None; a hit counts as a use for the cap's LRU order."""
        path = self._key_path(key)
        try:
            digest = path.read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        try:
            data = self.get_object(digest)
        except ValueError:
            return None
        if data is not None:
            now = time.time()
            with self._lock:
                if path.name in self._key_index:  # not evicted meanwhile
                    self._key_index[path.name] = (digest, now)
                    with contextlib.suppress(OSError):
                        os.utime(path, (now, now))
        return data

    def _key_path(self, key: str) -> Path:
        return self._key_file(hashlib.sha256(key.encode("utf-8")).hexdigest())

    def _key_file(self, name: str) -> Path:
        return self.keys / name[:2] / name

    # --- the cap -----------------------------------------------------------------------

    def _evict_if_over_cap(self) -> None:
        """Evict least recently used objects, with every job and key naming them, until the
        objects fit in EVICT_TO of the cap. Call with the lock held."""
        if self.max_bytes is None or self._bytes <= self.max_bytes:
            return
        target = int(self.max_bytes * EVICT_TO)
        jobs_of: dict[str, list[str]] = {}
        keys_of: dict[str, list[str]] = {}
        last_used = dict.fromkeys(self._sizes, 0.0)  # unnamed objects first
        for job_id, entry in self._index.items():
            for digest in entry["blobs"]:
                jobs_of.setdefault(digest, []).append(job_id)
                last_used[digest] = max(last_used.get(digest, 0.0), entry["time"])
        for name, (digest, used) in self._key_index.items():
            keys_of.setdefault(digest, []).append(name)
            last_used[digest] = max(last_used.get(digest, 0.0), used)
        dropped_jobs: list[str] = []
        dropped_keys: list[str] = []
        doomed: set[str] = set()
        freed = 0
        for digest in sorted(self._sizes, key=last_used.__getitem__):  # stable: ties keep disk order
            if self._bytes - freed <= target:
                break
            doomed.add(digest)
            freed += self._sizes[digest]
            for job_id in jobs_of.get(digest, ()):
                if self._index.pop(job_id, None) is not None:
                    dropped_jobs.append(job_id)
            for name in keys_of.get(digest, ()):
                if self._key_index.pop(name, None) is not None:
                    dropped_keys.append(name)
        # Objects only the dropped jobs named are garbage now, however recently used.
        named = {d for entry in self._index.values() for d in entry["blobs"]}
        named.update(digest for digest, _ in self._key_index.values())
        doomed.update(d for d in self._sizes if d not in named)
        if dropped_jobs:
            self._rewrite_journal()
        for name in dropped_keys:
            _remove(self._key_file(name))
        before = self._bytes
        for digest in doomed:
            _remove(self._object_path(digest))
            self._bytes -= self._sizes.pop(digest)
        for job_id in dropped_jobs:
            self._evicted[job_id] = None
        for job_id in list(self._evicted)[:max(0, len(self._evicted) - MAX_REMEMBERED_EVICTIONS)]:
            del self._evicted[job_id]
        log.info(
            "evicted %d objects (%.1f MiB), %d jobs and %d cache keys to keep the cache under "
            "%.2f GiB; %.1f MiB held", len(doomed), (before - self._bytes) / 2**20,
            len(dropped_jobs), len(dropped_keys), self.max_bytes / 2**30, self._bytes / 2**20,
        )

    def _rewrite_journal(self) -> None:
        """The journal as the index is now: dropped jobs must stay dropped after a restart.
        Written before any object is deleted, so a crash leaves at worst unnamed objects."""
        text = "".join(
            json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n"
            for entry in self._index.values()
        )
        try:
            _atomic_write(self.journal_path, text.encode("utf-8"), sync=True)
        except OSError as exc:
            # The old journal stays whole; its dropped jobs then read as missing after a restart.
            log.error("could not rewrite %s without the evicted jobs: %s", self.journal_path, exc)


def _remove(path: Path) -> None:
    """Delete a cache file; one already gone is fine, one that cannot go is logged."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove %s from the cache: %s", path, exc)


def _is_digest(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _files(folder: Path):
    """(path, stat) of the files one level below `folder`'s subfolders, skipping temporaries
    and anything removed while we look."""
    with contextlib.suppress(FileNotFoundError):
        for sub in os.scandir(folder):
            if not sub.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):
                for item in os.scandir(sub.path):
                    if item.name.startswith(".tmp-") or not item.is_file(follow_symlinks=False):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        yield Path(item.path), item.stat(follow_symlinks=False)


def _atomic_write(path: Path, data: bytes, *, sync: bool = False) -> None:
    # Write-then-rename; private to the daemon (mkstemp's 0600). `sync`: also on disk before
    # the rename (the journal; objects can be made again). Scans skip `.tmp-` names.
    path.parent.mkdir(parents=True, exist_ok=True)
    with renamed_into_place(path, mode=None, prefix=".tmp-", suffix="", sync=sync) as (out, _):
        out.write(data)
