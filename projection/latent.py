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

import numpy as np
import torch

NOISE_PREFIX = "noise/"
META_KEYS = ("network_sha256", "target_sha256", "class_idx", "distance")


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
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise LatentError(f"cannot read {name}: not an .npz of plain arrays ({exc})") from None
    if "w" not in arrays:
        raise LatentError(f"{name} has no 'w' array (keys: {', '.join(sorted(arrays)) or 'none'})")
    noise = {k[len(NOISE_PREFIX):]: v for k, v in arrays.items() if k.startswith(NOISE_PREFIX)}
    meta = {k: arrays[k].item() for k in META_KEYS if k in arrays}
    return ProjectedW(w=arrays["w"].astype(np.float32), noise=noise, meta=meta)
