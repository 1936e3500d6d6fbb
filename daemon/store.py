"""Nothing lost: finished results on disk, so a client can fetch them by id after a restart.

Layout of the cache dir::

    objects/ab/abcdef...      blobs by the SHA-256 of their content (WAV files, ...)
    keys/12/1234...           small text files: sha256(key string) -> content hash (blob cache)
    journal.jsonl             append-only, one line per finished job:
                              {"id", "kind", "event": "result"|"error", "body", "blobs": [sha...], "time"}

The journal is the index: on start it is replayed (the last line for an id wins; a torn last
line from a crash is skipped with a warning). The blob cache (`put_blob`/`get_blob`) lets job
runners skip work they already did, e.g. a timeline re-run with one clip changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("v2a.store")


@dataclass
class StoredEvent:
    """The final event of a finished job: `result` or `error`, its body and its blobs."""

    id: str
    kind: str
    event: str
    body: dict
    blobs: list[bytes] = field(default_factory=list)


class ResultStore:
    """Content-addressed results and a keyed blob cache under one folder. Thread-safe."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.root = Path(cache_dir).expanduser().resolve()
        self.objects = self.root / "objects"
        self.keys = self.root / "keys"
        self.journal_path = self.root / "journal.jsonl"
        self._lock = threading.Lock()
        self.objects.mkdir(parents=True, exist_ok=True)
        self.keys.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, dict] = {}
        self._replay()

    # --- content-addressed objects -----------------------------------------------------

    def put_object(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._object_path(digest)
        if not path.exists():
            _atomic_write(path, data)
        return digest

    def get_object(self, digest: str) -> bytes | None:
        try:
            data = self._object_path(digest).read_bytes()
        except FileNotFoundError:
            return None
        return data

    def _object_path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a content hash: {digest!r}")
        return self.objects / digest[:2] / digest

    # --- the journal of finished jobs --------------------------------------------------

    def record(self, job_id: str, kind: str, event: str, body: dict, blobs=()) -> None:
        """Store a job's final event; after this, `load(job_id)` returns it (also after a restart)."""
        digests = [self.put_object(bytes(b)) for b in blobs]
        entry = {
            "id": job_id, "kind": kind, "event": event, "body": body,
            "blobs": digests, "time": time.time(),
        }
        line = json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            with open(self.journal_path, "a", encoding="utf-8") as journal:
                journal.write(line)
                journal.flush()
                os.fsync(journal.fileno())
            self._index[job_id] = entry

    def load(self, job_id: str) -> StoredEvent | None:
        with self._lock:
            entry = self._index.get(job_id)
        if entry is None:
            return None
        blobs = []
        for digest in entry["blobs"]:
            data = self.get_object(digest)
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
        return len(self._index)

    def _replay(self) -> None:
        if not self.journal_path.exists():
            return
        with open(self.journal_path, encoding="utf-8", errors="replace") as journal:
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

    # --- keyed blob cache --------------------------------------------------------------

    def put_blob(self, key: str, data: bytes) -> str:
        """Remember `data` under `key` (any string, e.g. a hash of everything that made it)."""
        digest = self.put_object(bytes(data))
        _atomic_write(self._key_path(key), digest.encode("ascii"))
        return digest

    def get_blob(self, key: str) -> bytes | None:
        try:
            digest = self._key_path(key).read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        try:
            return self.get_object(digest)
        except ValueError:
            return None

    def _key_path(self, key: str) -> Path:
        name = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.keys / name[:2] / name


def _atomic_write(path: Path, data: bytes) -> None:
    # Write-then-rename: a crash leaves either the old file or the new one, never half of one.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
