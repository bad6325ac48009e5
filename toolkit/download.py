"""Cached, resumable HTTP downloads of network files.

Pretrained StyleGAN2 pickles are hundreds of megabytes: a dropped connection should not
mean starting again, and a second run should not touch the network at all.  Files land in
``$AFRO_FASHION_CACHE`` (default ``~/.cache/afro-fashion-gan``) under ``downloads/``; bytes
stream into ``NAME.part``, which a later call continues with an HTTP Range request, and the
finished file appears by atomic rename only once complete (and verified when a sha256 is given).
Processes that want the same file at once (torchrun ranks, two studios) take turns on a lock file:
the first downloads, the others then find it cached (the empty ``NAME.lock`` stays, as is usual:
deleting it would race with a process that has just opened it).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import time
import urllib.parse
from typing import NamedTuple

import requests
import urllib3
from tqdm import tqdm

CACHE_ENV = "AFRO_FASHION_CACHE"
CHUNK_BYTES = 1 << 16  # also the most a dropped connection can cost: a partial chunk is lost
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 15, 60
# A file larger than this, or a download (all retries together) slower than this, is given up:
# a hostile or broken server could otherwise fill the disk or keep a process waiting forever.
MAX_MB_ENV, DEADLINE_ENV = "AFRO_FASHION_DOWNLOAD_MAX_MB", "AFRO_FASHION_DOWNLOAD_DEADLINE_S"
DEFAULT_MAX_BYTES = 4 << 30     # the largest official StyleGAN2-ADA pickles are ~400 MB
DEFAULT_DEADLINE_S = 3 * 3600.0


class DownloadError(RuntimeError):
    """The file could not be fetched or failed verification; the message says what to try."""


class _IncompleteError(IOError):
    """The server closed the stream before sending every promised byte."""


def cache_root() -> pathlib.Path:
    """The project's cache folder: ``$AFRO_FASHION_CACHE`` or ``~/.cache/afro-fashion-gan``."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "afro-fashion-gan")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(url: str, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Where ``url`` is cached: its file name, prefixed by a URL hash so equal names never collide."""
    name = pathlib.PurePosixPath(urllib.parse.urlparse(url).path).name or "download"
    tag = hashlib.sha256(url.encode()).hexdigest()[:10]
    folder = pathlib.Path(cache_dir) if cache_dir is not None else cache_root() / "downloads"
    return folder / f"{tag}-{name}"


def download(url: str, cache_dir: str | os.PathLike | None = None, sha256: str | None = None,
             progress: bool = True, retries: int = 3, max_bytes: int | None = None,
             deadline_s: float | None = None) -> pathlib.Path:
    """Return the local path of ``url``, downloading (or resuming) it only when not cached.

    ``retries`` extra attempts resume from the bytes already received after a dropped connection.
    ``max_bytes`` and ``deadline_s`` (defaults: $AFRO_FASHION_DOWNLOAD_MAX_MB, 4096 MB, and
    $AFRO_FASHION_DOWNLOAD_DEADLINE_S, 3 hours) bound the file's size and the whole download's time.
    """
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise DownloadError(f"cannot download '{url}': only http:// and https:// URLs are supported")
    limits = _Limits(max_bytes if max_bytes is not None else _env_number(MAX_MB_ENV, DEFAULT_MAX_BYTES, 1 << 20),
                     time.monotonic() + (deadline_s if deadline_s is not None
                                         else _env_number(DEADLINE_ENV, DEFAULT_DEADLINE_S, 1)))
    target = cached_path(url, cache_dir)
    if _cached_and_valid(target, sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.with_name(target.name + ".lock")):
        if _cached_and_valid(target, sha256):  # another process finished it while we waited
            return target
        _download_into(url, target, sha256, progress, retries, limits)
    return target


class _Limits(NamedTuple):
    max_bytes: int
    deadline: float  # time.monotonic() by which the download must be complete

    def read_timeout(self, url: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DownloadError(f"download of {url} did not finish in time (${DEADLINE_ENV} sets the limit, "
                                "in seconds); run the same command again to resume it")
        return min(READ_TIMEOUT_S, left)


def _env_number(name: str, default: float, unit: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise DownloadError(f"${name} must be a positive number, got {text!r}")
    return value * unit


def _cached_and_valid(target: pathlib.Path, sha256: str | None) -> bool:
    if not target.exists():
        return False
    if sha256 is None or file_sha256(target) == sha256.lower():
        return True
    target.unlink(missing_ok=True)  # a corrupted cache entry is fetched again
    return False


@contextlib.contextmanager
def _exclusive(lock_path: pathlib.Path):
    """Hold an OS file lock (released by the OS if the holder dies, so a crash never leaves it stuck)."""
    with open(lock_path, "a+b") as f:
        if os.name == "nt":
            import msvcrt
            f.seek(0)
            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)  # retries for ~10 s, then raises
                    break
                except OSError:
                    continue
        else:
            import fcntl
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _download_into(url: str, target: pathlib.Path, sha256: str | None, progress: bool, retries: int,
                   limits: _Limits) -> None:
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_into(url, part, progress, limits)
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError, _IncompleteError) as exc:
            if attempt < retries:
                continue
            kept = part.stat().st_size if part.exists() else 0
            if not kept:
                raise DownloadError(f"could not download {url} ({exc}); check the network connection and the URL") from exc
            raise DownloadError(
                f"download of {url} was interrupted ({exc}); {kept} bytes are kept in {part}: "
                "run the same command again to resume"
            ) from exc
    if sha256 is not None:
        actual = file_sha256(part)
        if actual != sha256.lower():
            part.unlink()
            raise DownloadError(
                f"sha256 mismatch for {url}: expected {sha256.lower()}, got {actual}; the file was deleted. "
                "Check the URL and the expected checksum, then try again"
            )
    os.replace(part, target)


def _fetch_into(url: str, part: pathlib.Path, progress: bool, limits: _Limits) -> None:
    """One HTTP request that appends the missing bytes to ``part`` (restarting it if the server ignores Range)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # byte offsets must refer to the file, not a compressed stream
    if have:
        headers["Range"] = f"bytes={have}-"
    with requests.get(url, headers=headers, stream=True,
                      timeout=(CONNECT_TIMEOUT_S, limits.read_timeout(url))) as response:
        resumed_elsewhere = (response.status_code == 206
                             and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"))
        if have and (response.status_code == 416 or resumed_elsewhere):  # our partial file is unusable: restart
            part.unlink()
            return _fetch_into(url, part, progress, limits)
        if response.status_code >= 400:
            raise DownloadError(
                f"download of {url} failed: HTTP {response.status_code} {response.reason}; "
                "check that the URL (or network name) is right and reachable"
            )
        if response.status_code != 206:
            have = 0  # full body: the server ignored our Range header
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        if total is not None and total > limits.max_bytes:
            part.unlink(missing_ok=True)
            raise _too_large(url, f"the server announces {total} bytes", limits)
        with open(part, "ab" if have else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name[: -len(".part")], disable=not progress, leave=False,
        ) as bar:
            size = have
            # read1: whatever has arrived, so the deadline is checked even when a server drips bytes
            while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
                size += len(chunk)
                if size > limits.max_bytes:
                    f.close()
                    part.unlink(missing_ok=True)  # never kept: a stream without Content-Length included
                    raise _too_large(url, f"it sent more than {limits.max_bytes} bytes", limits)
                f.write(chunk)
                bar.update(len(chunk))
                limits.read_timeout(url)
            f.flush()
            os.fsync(f.fileno())
    size = part.stat().st_size
    if total is not None and size != total:
        raise _IncompleteError(f"received {size} of {total} bytes")


def _too_large(url: str, what: str, limits: _Limits) -> DownloadError:
    return DownloadError(f"download of {url} refused: {what}, more than the limit of "
                         f"{limits.max_bytes / 2**20:.0f} MB (${MAX_MB_ENV} raises it); nothing was kept")
