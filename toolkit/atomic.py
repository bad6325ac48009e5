"""Write files so that a reader, or a run killed mid-write, sees the old file or the new one, never half.

One helper for every tool that writes results people keep (checkpoints, training state, components,
directions, exports): write to a uniquely named temp file in the same folder, fsync, rename over the
target, fsync the folder. Unique temp names keep concurrent writers (studio tabs) from colliding.
"""
from __future__ import annotations

import os
import pathlib
import secrets
import time
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """Call write(tmp_path) to fill a temp file, then publish it at `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}-{os.getpid()}.tmp")
    try:
        open(tmp, "xb").close()  # claim the name; mode follows the umask
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


STALE_TMP_S = 3600  # a temp file nobody has written to for an hour is left over from a killed process


def sweep_stale_temporaries(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Delete temp files that killed writers (kill -9, power cut) left in ``folder``; returns them.

    A temp file is stale when the process named in it is gone (on this machine) or when it has not
    been written to for STALE_TMP_S; files of live writers are left alone.
    """
    removed = []
    now = time.time()
    for tmp in pathlib.Path(folder).glob(".*.tmp"):
        pid = tmp.stem.rsplit("-", 1)[-1]
        try:
            stale = (pid.isdigit() and not process_alive(int(pid))) or now - tmp.stat().st_mtime > STALE_TMP_S
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # another sweeper got there first
            continue
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
