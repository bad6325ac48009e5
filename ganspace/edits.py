"""Layer-wise edits of W+ codes, GANSpace's E(v, j-k) with inclusive layer ranges.

add:      w_l <- w_l + s·σ·v                      for l in [start, end]
absolute: w_l <- w_l + (s·σ - (w_l - mean)·v)·v   (the coordinate along v becomes s σ)
Layers outside the range are never touched; edits compose in the order given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

MODES = ("add", "absolute")


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError("a direction vector must be finite and non-zero")
    return vector / norm


def orthogonalize(vector, others: Sequence[np.ndarray]) -> np.ndarray:
    """Unit vector along the part of `vector` orthogonal to the span of `others`.

    Lets "longer sleeves" be asked not to move "colour": the edited code then keeps
    its coordinates along the other directions.
    """
    vector = unit(vector)
    if len(others) == 0:
        return vector
    basis, _ = np.linalg.qr(np.stack([unit(o) for o in others], axis=1))
    residual = vector - basis @ (basis.T @ vector)
    if np.linalg.norm(residual) < 1e-6:
        raise ValueError("the direction lies in the span of the directions it should be orthogonal to")
    return unit(residual)


@dataclass
class Edit:
    """One move along a direction: strength is in σ units of that direction."""
    vector: np.ndarray
    sigma: float
    layers: tuple[int, int]
    strength: float
    mode: str = "add"
    mean: Optional[np.ndarray] = None

    def __post_init__(self):
        self.vector = unit(self.vector)
        if self.mode not in MODES:
            raise ValueError(f"edit mode must be one of {MODES}, got {self.mode!r}")
        if self.mean is not None:
            self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        start, end = (int(x) for x in self.layers)
        if not 0 <= start <= end:
            raise ValueError(f"layers must be an inclusive range start <= end, got {self.layers}")
        self.layers = (start, end)


def apply_edits(ws: torch.Tensor, edits: Iterable[Edit]) -> torch.Tensor:
    """A new W+ tensor [N, num_ws, w_dim] with the edits applied; `ws` is left untouched."""
    out = ws.clone()
    for edit in edits:
        start, end = edit.layers
        if end >= out.shape[1]:
            raise ValueError(f"edit layers {start}-{end} exceed this code's {out.shape[1]} layers (0-{out.shape[1] - 1})")
        if edit.vector.shape[0] != out.shape[2]:
            raise ValueError(f"direction has {edit.vector.shape[0]} dims but w_dim is {out.shape[2]}")
        v = torch.as_tensor(edit.vector, dtype=out.dtype, device=out.device)
        target = edit.strength * edit.sigma
        block = out[:, start:end + 1]
        if edit.mode == "add":
            out[:, start:end + 1] = block + target * v
        else:
            mean = torch.as_tensor(edit.mean if edit.mean is not None else np.zeros(out.shape[2]),
                                   dtype=out.dtype, device=out.device)
            coord = (block - mean) @ v
            out[:, start:end + 1] = block + (target - coord)[..., None] * v
    return out
