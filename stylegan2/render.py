"""From a seed to W+ and from W+ to uint8 pixels, with the official generate.py conventions.

A seed means z = np.random.RandomState(seed).randn(1, z_dim) everywhere in the
project, and pixels are (img * 127.5 + 128).clamp(0, 255), so a seed written in
a recipe, a manifest or a file name reproduces the same picture in every tool.
"""
from __future__ import annotations

import weakref
from typing import Sequence

import numpy as np
import torch

from stylegan2.compiled import eager


def device_of(G) -> torch.device:
    try:
        return next(G.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def resolve_class(value: str | None, class_names: Sequence[str] | None) -> int | None:
    """A --class value as an index: digits, or one of the class names the checkpoint recorded from its dataset."""
    if value is None or value.strip().lstrip("-").isdigit():
        return None if value is None else int(value)
    if class_names and value in class_names:
        return list(class_names).index(value)
    known = f"one of {', '.join(class_names)}" if class_names else "an index (this network records no class names)"
    raise ValueError(f"unknown class {value!r}: use {known}")


def class_choices(c_dim: int, class_names: Sequence[str] | None = None, allow_all: bool = False) -> str:
    """What --class accepts, for messages: 'a class name (dress, hat, ...), an index from 0 to 9, or all'."""
    parts = []
    if class_names:
        shown = ", ".join(list(class_names)[:4]) + (", ..." if len(class_names) > 4 else "")
        parts.append(f"a class name ({shown})")
    parts.append(f"an index from 0 to {c_dim - 1}" if c_dim > 1 else "the index 0")
    if allow_all:
        parts.append("all")
    return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]


def class_labels(G, class_idx, n: int) -> torch.Tensor:
    """Labels [n, c_dim] ([n, 0] for unconditional networks). class_idx: one int or n ints (one-hot rows), or a
    float label vector [c_dim] (a multi-attribute label, stylegan2/labels.py) used for all n."""
    c_dim = int(getattr(G, "c_dim", 0))
    if isinstance(class_idx, np.ndarray) and class_idx.dtype.kind == "f":
        if class_idx.shape != (c_dim,):
            raise ValueError(f"a label vector for this network has {c_dim} numbers, got shape {class_idx.shape}")
        return torch.from_numpy(np.ascontiguousarray(class_idx, np.float32)).to(device_of(G)).expand(n, c_dim).clone()
    if c_dim == 0:
        if class_idx is not None:
            raise ValueError("this network is unconditional: do not pass a class")
        return torch.zeros([n, 0], device=device_of(G))
    if class_idx is None:
        raise ValueError(f"this network is conditional ({c_dim} classes): pass {class_choices(c_dim)}")
    idx = np.broadcast_to(np.asarray(class_idx, dtype=np.int64), (n,)).copy()
    if idx.min() < 0 or idx.max() >= c_dim:
        raise ValueError(f"class index must be in 0-{c_dim - 1}, got {sorted(set(idx.tolist()))}")
    c = torch.zeros([n, c_dim], device=device_of(G))
    c[torch.arange(n), torch.as_tensor(idx, device=c.device)] = 1
    return c


def classes_for_seeds(G, seeds: Sequence[int], class_idx=None):
    """The class of each seed's picture: `class_idx` when given, else (conditional networks) seed % c_dim,
    so that a sheet of seeds shows every class instead of refusing to render."""
    if class_idx is not None or not getattr(G, "c_dim", 0):
        return class_idx
    return [seed % G.c_dim for seed in seeds]


def seed_z(G, seeds: int | Sequence[int]) -> torch.Tensor:
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    z = np.concatenate([np.random.RandomState(s).randn(1, G.z_dim) for s in seeds])
    return torch.from_numpy(z).float().to(device_of(G))


# Where truncation pulls a code: "global", the overall average W the mapping network tracked (the official
# convention), or "class", the average W of the code's own label. On a conditional network the overall average
# sits between the classes, so at ψ < 1 "global" blurs them together; "class" keeps each one's garment
# (the default model at ψ 0.7: class_knn5_full 0.32 -> 0.41, against 0.34 at ψ 1; model card).
TRUNCATION_CENTRES = ("global", "class")
CENTRE_SAMPLES = 10_000   # z per label; the same z (RandomState 0) every time, so a centre is reproducible
_class_centres: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # mapping network -> {label bytes: W}


@torch.no_grad()
def class_centre(G, c: torch.Tensor) -> torch.Tensor:
    """The average W [N, w_dim] of each row's label: the mean of G.mapping over CENTRE_SAMPLES fixed z,
    computed once per label and mapping network (a frozen network's; weights changed in place are not seen)."""
    cache = _class_centres.setdefault(G.mapping, {})
    rows = c.detach().float().cpu().numpy()
    for key in {row.tobytes() for row in rows} - cache.keys():
        z = torch.from_numpy(np.random.RandomState(0).randn(CENTRE_SAMPLES, G.z_dim)).float().to(device_of(G))
        label = torch.from_numpy(np.frombuffer(key, np.float32).copy()).to(z.device).expand(CENTRE_SAMPLES, -1)
        mapping = eager(G.mapping)
        w = torch.cat([mapping(z[i:i + 2000], label[i:i + 2000], update_w_avg=False)[:, 0].double()
                       for i in range(0, CENTRE_SAMPLES, 2000)])
        cache[key] = w.mean(dim=0).float()
    return torch.stack([cache[row.tobytes()] for row in rows]).to(device_of(G))


@torch.no_grad()
def map_to_w(G, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
             centre: str = "global") -> torch.Tensor:
    """W+ [N, num_ws, w_dim] of z under labels c, truncated towards `centre` (TRUNCATION_CENTRES; an
    unconditional network has one average, so "class" is "global" there) on the first `truncation_cutoff` layers."""
    if centre not in TRUNCATION_CENTRES:
        raise ValueError(f"truncation centre must be one of {', '.join(TRUNCATION_CENTRES)}, got {centre!r}")
    if centre == "global" or not getattr(G, "c_dim", 0) or truncation_psi == 1:
        return G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    ws = G.mapping(z, c).clone()   # written in place below
    layers = slice(None, truncation_cutoff)
    ws[:, layers] = class_centre(G, c)[:, None, :].lerp(ws[:, layers], truncation_psi)
    return ws


@torch.no_grad()
def seed_to_w(G, seed: int | Sequence[int], truncation_psi: float = 1.0, class_idx=None,
              centre: str = "global") -> torch.Tensor:
    """W+ codes [N, num_ws, w_dim] for one seed or a list of seeds, truncated towards `centre` (map_to_w)."""
    z = seed_z(G, seed)
    return map_to_w(G, z, class_labels(G, class_idx, z.shape[0]), truncation_psi, centre=centre)


def to_uint8_tensor(img: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] float in [-1, 1] -> uint8 of the same shape and device, rounded as the official generate.py does."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] float in [-1, 1] -> [N, H, W, C] uint8 numpy (what PNG writers and grids take)."""
    return to_uint8_tensor(img).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def synthesize_uint8(G, ws: torch.Tensor, noise_mode: str = "const") -> np.ndarray:
    return to_uint8(G.synthesis(ws.to(device_of(G)), noise_mode=noise_mode))
