"""Write files so that a reader, or a run killed mid-write, sees the old file or the new one, never half.

One helper for every tool that writes results people keep (checkpoints, training state, components,
directions, exports): write to a uniquely named temp file in the same folder, fsync, rename over the
target, fsync the folder. Unique temp names keep concurrent writers (studio tabs) from colliding.
"""
from __future__ import annotations

import os
import pathlib
import secrets
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """Call write(tmp_path) to fill a temp file, then publish it at `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
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
