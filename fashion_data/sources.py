"""Read-only access to a folder tree or a zip of photos.

Nothing here writes: the user's originals must never be modified, moved or deleted.
"""
from __future__ import annotations

import os
import pathlib
import stat
import zipfile
import zlib

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MAX_COMPRESSION_RATIO = 1000  # photos barely compress; an entry that expands 1000x is a zip bomb
# What reading one file can raise besides our own Unreadable: every one is a reported skip, never a crash.
READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


class SourceError(ValueError):
    """The --source cannot be read; the message says what to pass instead."""


def is_image_name(rel_path: str) -> bool:
    return pathlib.PurePosixPath(rel_path).suffix.lower() in IMAGE_EXTENSIONS


def is_hidden(rel_path: str) -> bool:
    """Dot-files and macOS zip debris ("__MACOSX/", "._photo.jpg") are not user photos."""
    return any(part.startswith(".") or part == "__MACOSX" for part in rel_path.split("/"))


class Unreadable(Exception):
    """One file of the source cannot be read safely; ``reason`` is a stable report key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class Source:
    """A folder (walked recursively) or a .zip; files are named by POSIX relative path."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise SourceError(f"--source {self.path} does not exist; pass a folder or a .zip of photos")
        self.is_zip = self.path.is_file()
        if self.is_zip and not zipfile.is_zipfile(self.path):
            raise SourceError(f"--source {self.path} is a file but not a zip; pass a folder or a .zip of photos")
        self._zip, self._zip_pid = None, None

    def list_files(self) -> list[str]:
        """Every regular file, sorted by relative path (the deterministic processing order)."""
        if self.is_zip:
            names = [info.filename for info in self._archive().infolist() if not info.is_dir()]
        else:
            names = []
            for root, dirs, files in os.walk(self.path):
                dirs.sort()
                rel_root = pathlib.Path(root).relative_to(self.path)
                names.extend((rel_root / name).as_posix() for name in files)
            names = [n[2:] if n.startswith("./") else n for n in names]
        return sorted(names)

    def read_bytes(self, rel_path: str, limit: int) -> bytes:
        """The file's bytes, reading at most ``limit`` + 1 (raises Unreadable, or one of READ_ERRORS).

        Only regular files inside the source are read: a FIFO would block forever, /dev/zero never
        ends, and a symlink to a private file elsewhere must not land in a dataset.
        """
        if self.is_zip:
            return self._read_zip_entry(rel_path, limit)
        path = self.path / rel_path
        if not os.path.realpath(path).startswith(os.path.join(os.path.realpath(self.path), "")):
            raise Unreadable("symlink_outside_source", f"links to {os.path.realpath(path)}, outside --source")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise Unreadable("not_a_regular_file", "a FIFO, device or socket, not a photo")
            if info.st_size > limit:
                raise Unreadable("file_too_large", f"{info.st_size / 1e6:.0f} MB")
            data = f.read(limit + 1)
        if len(data) > limit:
            raise Unreadable("file_too_large", "grew while it was read")
        return data

    def _read_zip_entry(self, rel_path: str, limit: int) -> bytes:
        info = self._archive().getinfo(rel_path)
        if info.file_size > limit:
            raise Unreadable("file_too_large", f"{info.file_size / 1e6:.0f} MB")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise Unreadable("zip_bomb", f"{info.compress_size} bytes claim to expand to {info.file_size}")
        with self._archive().open(info) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise Unreadable("file_too_large", "the entry holds more than its header says")
        return data

    def contains(self, path: str | os.PathLike) -> bool:
        """True when ``path`` lies inside a folder source (writing there would modify the source)."""
        if self.is_zip:
            return pathlib.Path(path).resolve() == self.path.resolve()
        return pathlib.Path(path).resolve().is_relative_to(self.path.resolve())

    def _archive(self) -> zipfile.ZipFile:
        # One handle per process: forked workers would otherwise share the parent's file offset
        # and read each other's bytes (bad CRC-32, header mismatches).
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip, self._zip_pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip

    def __getstate__(self):
        # Open zip handles cannot cross process boundaries; each worker reopens its own.
        return {**self.__dict__, "_zip": None}
