"""Writing a file whole: into a temporary file in the same folder, then renamed over the target.

A failure at any point (disk full, a missing or read-only folder, a name too long, an interrupt)
leaves no partial file, and an earlier file of that name stays as it was. Used for everything
the `v2a` command writes (WAV, timeline, placements, preview) through `replacing`, and for the
daemon's own files through `renamed_into_place`, which replaces the name itself (a WAV in a media
folder never follows a link out of the folder) and lets the store keep its temporary names.
Standard library only: `bridge.cli` imports it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

NEW_FILE_MODE = 0o644
"""mkstemp makes its file private; what we write is read by editors' hosts and players."""


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[tuple[BinaryIO, Path]]:
    """(file, its path): a new temporary file in `path`'s folder that takes `path`'s place when
    the block ends without an error, and is removed when it raises (OSError from the system as
    it is). Write through `file`; a writer that needs a file name may close it and use the path.
    A link is followed (its file is replaced, the link stays), an existing file keeps its
    permissions (one we may not write is refused, as opening it would be), and a device or pipe (/dev/null, /dev/stdout) is written to directly: there is
    nothing there to keep whole, and a rename would replace the device itself."""
    mode = _mode_of(path)
    if mode is not None and stat.S_ISDIR(mode):  # said now, not after all of it was written
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if mode is not None and not stat.S_ISREG(mode):
        with open(path, "wb") as file:
            yield file, Path(path)
        return
    if mode is not None and not os.access(path, os.W_OK):  # a rename would not ask
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    keep = stat.S_IMODE(mode) if mode is not None else NEW_FILE_MODE
    with renamed_into_place(Path(os.path.realpath(path)), mode=keep) as written:
        yield written


@contextlib.contextmanager
def renamed_into_place(target: Path, *, mode: int | None = NEW_FILE_MODE, prefix: str = ".v2a-",
                       suffix: str = ".part", sync: bool = False) -> Iterator[tuple[BinaryIO, Path]]:
    """(file, its path): a temporary file beside `target` (named `prefix`...`suffix`), renamed
    over the name `target` when the block ends without an error and removed when it raises, so
    a crash leaves the old file or the new one, never half of one. `mode`: the new file's
    permissions (None keeps mkstemp's private 0600); `sync`: on disk before the rename."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file, Path(temporary)
            if sync:
                file.flush()
                os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_replacing(path: str | os.PathLike, data: bytes) -> None:
    """`data` as the whole of the file `path`, or no change to it (see `replacing`)."""
    with replacing(path) as (file, _):
        file.write(data)


def cannot_write(path: str | os.PathLike, exc: OSError) -> str:
    """One line for a file that could not be written: which file, the system's reason, and
    what to do about it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free space on its disk or write it somewhere else"
    elif exc.errno == errno.ENAMETOOLONG:
        advice = "choose a shorter path"
    elif exc.errno == errno.ENOENT:
        advice = "its folder does not exist: create it or choose another"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):  # EEXIST: a folder to make is a file
        advice = "part of its path is a file, not a folder: choose another path"
    elif exc.errno == errno.EISDIR:
        advice = "that is a folder: name a file in it"
    else:
        advice = "choose a place you may write to"
    return f"could not write {path} ({exc.strerror or exc}); {advice}"


def _mode_of(path: str | os.PathLike) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:  # nothing there yet (or unreachable: creating the temporary file says why)
        return None
