"""Write a dataset in the official StyleGAN2-ADA layout, atomically.

Everything goes to a hidden temporary sibling of --dest and is renamed into
place only when complete, so a killed run never leaves a half-written dataset
under the final name.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import zipfile

from toolkit.atomic import process_alive


class DestinationError(ValueError):
    """--dest cannot be written; the message says what to change."""


OUR_FILES = frozenset({"dataset.json", "report.json", "attributes.jsonl"})
IMAGE_FOLDER = re.compile(r"\d{5}")


def is_our_dataset(path: pathlib.Path) -> bool:
    """True for a folder or zip this tool wrote: dataset.json and report.json, and (folders) nothing else
    but attributes.jsonl and the 00000/ image folders, so --overwrite never deletes anything of the user's."""
    if path.is_dir():
        entries = {entry.name: entry for entry in os.scandir(path)}
        return {"dataset.json", "report.json"} <= set(entries) and all(
            name in OUR_FILES or (IMAGE_FOLDER.fullmatch(name) and entry.is_dir(follow_symlinks=False))
            for name, entry in entries.items())
    try:
        with zipfile.ZipFile(path) as zf:
            return {"dataset.json", "report.json"} <= set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """``path`` is ``folder`` itself or lies within it (after resolving links)."""
    path, folder = pathlib.Path(path).resolve(), pathlib.Path(folder).resolve()
    return path == folder or path.is_relative_to(folder)


def archive_name(index: int) -> str:
    """The official tool's naming: 1000 images per folder."""
    return f"{index // 1000:05d}/img{index:08d}.png"


class DatasetWriter:
    """A .zip (stored, PNGs are already compressed) or a folder, depending on --dest."""

    def __init__(self, dest: str | os.PathLike, overwrite: bool = False):
        self.dest = pathlib.Path(dest)
        self.is_zip = self.dest.suffix.lower() == ".zip"
        if self.dest.exists() and not overwrite:
            raise DestinationError(f"--dest {self.dest} already exists; pass --overwrite or choose another path")
        if self.dest.exists() and self.is_zip != self.dest.is_file():
            raise DestinationError(f"--dest {self.dest} exists as a {'folder' if self.is_zip else 'file'}; remove it first")
        if self.dest.exists() and not is_our_dataset(self.dest):
            raise DestinationError(f"--dest {self.dest} exists but is not a dataset written by dataset_tool.py "
                                   "(it lacks dataset.json/report.json or holds other files); --overwrite only replaces "
                                   "our own datasets: choose another path or remove it yourself")
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_partials()
        self.temp = self.dest.with_name(f".{self.dest.name}.partial-{os.getpid()}")
        self.scratch = self.dest.with_name(f".{self.dest.name}.scratch-{os.getpid()}")  # beside --dest, not /tmp
        for path in (self.temp, self.scratch):
            self._remove(path)
        self.scratch.mkdir()
        if self.is_zip:
            self._zip = zipfile.ZipFile(self.temp, "w", compression=zipfile.ZIP_STORED)
        else:
            self.temp.mkdir()

    def add(self, name: str, data: bytes) -> None:
        if self.is_zip:
            self._zip.writestr(name, data)
        else:
            path = self.temp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def add_file(self, name: str, path: str | os.PathLike) -> None:
        """Copy a (possibly large) file in without reading it into memory."""
        if self.is_zip:
            self._zip.write(path, name)
        else:
            shutil.copyfile(path, self.temp / name)

    def commit(self) -> pathlib.Path:
        if self.is_zip:
            self._zip.close()
        if self.dest.exists():
            old = self.dest.with_name(f".{self.dest.name}.old-{os.getpid()}")
            os.replace(self.dest, old)
            os.replace(self.temp, self.dest)
            self._remove(old)
        else:
            os.replace(self.temp, self.dest)
        self._remove(self.scratch)
        return self.dest

    def abort(self) -> None:
        if self.is_zip:
            self._zip.close()
        self._remove(self.temp)
        self._remove(self.scratch)

    def _remove_stale_partials(self) -> None:
        """A killed run (SIGKILL, power cut) leaves its hidden partial, scratch folder or old copy behind;
        clear those of dead processes."""
        for kind in ("partial", "scratch", "old"):
            for partial in self.dest.parent.glob(f".{self.dest.name}.{kind}-*"):
                pid = partial.name.rsplit("-", 1)[-1]
                if pid.isdigit() and not process_alive(int(pid)):
                    self._remove(partial)

    @staticmethod
    def _remove(path: pathlib.Path) -> None:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False
