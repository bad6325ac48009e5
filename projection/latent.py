"""``projected_w.npz``: a projected code in the official layout, plus what renders it exactly.

The official projector writes ``w`` [1, num_ws, w_dim] and nothing else, and renders its ``proj.png``
with noise maps it optimised but never saves, so the official ``generate.py --projected-w`` cannot
redraw its own result.  We keep ``w`` exactly as the official file has it (official tools read it) and
add the optimised noise maps as ``noise/<buffer name>`` arrays and a few plain facts (``network_sha256``,
``target_sha256``, ``class_idx``, ``distance``), which our ``generate.py`` uses to render the same pixels.
The file holds only numeric and text arrays: it loads with ``allow_pickle=False``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
import re
import zipfile

import numpy as np
import torch

NOISE_PREFIX = "noise/"
META_KEYS = ("network_sha256", "target_sha256", "class_idx", "distance")
MAX_UNPACKED_BYTES = 256 << 20   # a 1024 px W+ with its noise maps is ~6 MB; a bigger claim is refused unread


class LatentError(ValueError):
    """A projected-w file that is missing, malformed or made for another network shape."""


@dataclasses.dataclass
class ProjectedW:
    w: np.ndarray                                      # [N, num_ws, w_dim] float32
    noise: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    meta: dict = dataclasses.field(default_factory=dict)

    def ws(self, G) -> torch.Tensor:
        """The codes as a tensor on G's device, checked against G's shape."""
        from stylegan2.render import device_of

        if self.w.ndim != 3 or tuple(self.w.shape[1:]) != (G.num_ws, G.w_dim):
            raise LatentError(f"'w' has shape {tuple(self.w.shape)}, this network needs [N, {G.num_ws}, {G.w_dim}]")
        return torch.from_numpy(self.w).float().to(device_of(G))

    def generator(self, G):
        """G itself, or a copy carrying the saved noise maps (so noise_mode='const' redraws the projection)."""
        if not self.noise:
            return G
        from projection.projector import with_noise

        try:
            return with_noise(G, {k: torch.from_numpy(v) for k, v in self.noise.items()})
        except ValueError as exc:
            raise LatentError(str(exc)) from None


def to_bytes(projected: ProjectedW) -> bytes:
    arrays = {"w": np.asarray(projected.w, np.float32)}
    arrays.update({NOISE_PREFIX + k: np.asarray(v, np.float32) for k, v in projected.noise.items()})
    arrays.update({k: np.asarray(v) for k, v in projected.meta.items() if k in META_KEYS and v is not None})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save(path: str | os.PathLike, projected: ProjectedW) -> str:
    """Write the file atomically; returns its sha256 (how recipes refer to it)."""
    from toolkit.atomic import atomic_write_bytes

    data = to_bytes(projected)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load(source: str | os.PathLike | bytes) -> ProjectedW:
    """Read an official or our projected_w.npz (numbers and text only; nothing is unpickled)."""
    name = "the projected latent" if isinstance(source, bytes) else os.fspath(source)
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile):
        unpacked = 0   # np.load says what is wrong below
    if unpacked > MAX_UNPACKED_BYTES:
        raise LatentError(f"{name} unpacks to {unpacked >> 20} MB; a latent file is at most "
                          f"{MAX_UNPACKED_BYTES >> 20} MB")
    try:
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LatentError(f"cannot read {name}: not an .npz of plain arrays ({exc})") from None
    if "w" not in arrays:
        raise LatentError(f"{name} has no 'w' array (keys: {', '.join(sorted(arrays)) or 'none'})")
    noise = {k[len(NOISE_PREFIX):]: v for k, v in arrays.items() if k.startswith(NOISE_PREFIX)}
    meta = {k: arrays[k].item() for k in META_KEYS if k in arrays}
    return ProjectedW(w=arrays["w"].astype(np.float32), noise=noise, meta=meta)


class LatentFolder:
    """Latent files named by the sha256 of their bytes: how a recipe refers to a projected photo.

    Content-addressed, so the same latent stored twice is one file, and a file can be checked against its
    name (a renamed or damaged one is refused). Used by the studio's per-user store and `generate.py`.
    """

    SHA256 = re.compile(r"[0-9a-f]{64}")

    def __init__(self, folder: str | os.PathLike):
        self.folder = pathlib.Path(folder)

    def path(self, sha256: str) -> pathlib.Path:
        if not self.SHA256.fullmatch(str(sha256)):
            raise LatentError(f"{sha256!r} is not a latent's sha256")
        return self.folder / f"{sha256}.npz"

    def __contains__(self, sha256: str) -> bool:
        try:
            return self.path(sha256).is_file()
        except LatentError:
            return False

    def put(self, data: bytes) -> str:
        """Store a latent file's bytes (validated first); returns its sha256."""
        load(data)
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 not in self:
            from toolkit.atomic import atomic_write_bytes

            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path(sha256), data)
        return sha256

    def load(self, sha256: str) -> ProjectedW:
        """The stored latent; FileNotFoundError when absent, LatentError when its bytes do not match its name."""
        data = self.path(sha256).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise LatentError(f"the stored file {self.path(sha256).name} does not match its sha256 (damaged?)")
        return load(data)
