"""Files written whole or not at all: a temp file beside the target, then one rename.

A process killed mid-write (kill -9, a full disk) leaves the previous file, or none, never a
truncated one; a reader never sees half a file. The standard library has the two steps
(``os.replace`` is atomic within a filesystem) but no helper joining them, hence this one.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".partial-"  # temp names: <name>.partial-<host>-<pid>


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temp path in ``path``'s folder; once the block ends without error, the temp
    file is flushed to disk and renamed onto ``path``. On error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_strays(target.parent, target.name)
    temp = target.with_name(f"{target.name}{temp_suffix()}{os.getpid()}")
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """``Path.write_text``, atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """``Path.write_bytes``, atomically."""
    with atomic_path(path) as temp:
        temp.write_bytes(data)


def remove_strays(folder: str | os.PathLike[str], name: str = "*",
                  recursive: bool = False) -> list[Path]:
    """Removes the temp files that writes of dead processes of this host left in ``folder``
    (kill -9 mid-write); those of live processes and of other hosts stay. Returns them."""
    glob = Path(folder).rglob if recursive else Path(folder).glob
    removed = []
    suffix = temp_suffix()
    for stray in glob(f"{name}{suffix}*"):  # SQLite's -journal of a temp store goes too
        pid = stray.name.rpartition(suffix)[2].split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                stray.unlink()
                removed.append(stray)
    return removed


def temp_suffix() -> str:
    """What a temp file's name adds to its target's, up to the writer's pid."""
    return f"{TEMP_MARK}{socket.gethostname().replace('-', '_')}-"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host lives."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
