"""Read-only access to a folder tree or a zip of photos.

Nothing here writes: the user's originals must never be modified, moved or deleted.
"""
from __future__ import annotations

import os
import pathlib
import zipfile

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


class SourceError(ValueError):
    """The --source cannot be read; the message says what to pass instead."""


def is_image_name(rel_path: str) -> bool:
    return pathlib.PurePosixPath(rel_path).suffix.lower() in IMAGE_EXTENSIONS


def is_hidden(rel_path: str) -> bool:
    """Dot-files and macOS zip debris ("__MACOSX/", "._photo.jpg") are not user photos."""
    return any(part.startswith(".") or part == "__MACOSX" for part in rel_path.split("/"))


class Source:
    """A folder (walked recursively) or a .zip; files are named by POSIX relative path."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise SourceError(f"--source {self.path} does not exist; pass a folder or a .zip of photos")
        self.is_zip = self.path.is_file()
        if self.is_zip and not zipfile.is_zipfile(self.path):
            raise SourceError(f"--source {self.path} is a file but not a zip; pass a folder or a .zip of photos")
        self._zip = None

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

    def size(self, rel_path: str) -> int:
        if self.is_zip:
            return self._archive().getinfo(rel_path).file_size
        return (self.path / rel_path).stat().st_size

    def read_bytes(self, rel_path: str) -> bytes:
        if self.is_zip:
            return self._archive().read(rel_path)
        return (self.path / rel_path).read_bytes()

    def contains(self, path: str | os.PathLike) -> bool:
        """True when ``path`` lies inside a folder source (writing there would modify the source)."""
        if self.is_zip:
            return pathlib.Path(path).resolve() == self.path.resolve()
        return pathlib.Path(path).resolve().is_relative_to(self.path.resolve())

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def __getstate__(self):
        # Open zip handles cannot cross process boundaries; each worker reopens its own.
        return {**self.__dict__, "_zip": None}
