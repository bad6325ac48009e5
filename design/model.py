"""The design model: a base (a seed with ψ and class, or a stored latent), an optional style mix and the
edits, and the one function that turns it into W+.

Why one model: the studio, the batch export, the component sheets and `generate.py --recipe` all build
W+ codes; when each composed them itself, a recipe drawn by one tool could come out differently in
another. Edits here are resolved (vectors, σ, layers: `ganspace.edits.Edit`); naming them by
direction is the recipe's business (`design.recipe`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

from ganspace.edits import Edit, apply_edits
from stylegan2.render import classes_for_seeds, seed_to_w


class RecipeError(ValueError):
    """Bad user input in a recipe or a control; the message says what to fix."""


class LatentMissing(RecipeError):
    """The design starts from a stored latent (a projected photo) that is not here."""

    def __init__(self, sha256: str):
        super().__init__(
            f"This design starts from a projected photo whose latent (sha256 {sha256[:16]}…) is not on this "
            f"machine. Restore it by dropping its .npz (exported zips carry it as latents/{sha256}.npz) "
            f"into the restore box first, or project the photo again.")
        self.sha256 = sha256


@dataclasses.dataclass(frozen=True)
class Base:
    """Where a design starts: `seed` (+ ψ, class, truncation centre) or, when `latent` is set, the stored W+
    of that sha256.

    `class_idx`: a class index; on a multi-attribute network the chosen attribute values as sorted
    (name, value) pairs (`Recipe.label`; () = every attribute "any") or an encoded label vector as a tuple
    of floats (`label_key`). Tuples keep a Base hashable: the studio and exports cache W+ by base."""

    seed: int | None = 0
    truncation_psi: float = 0.7
    class_idx: int | tuple[tuple[str, str], ...] | None = None
    latent: str | None = None
    truncation_centre: str = "global"   # stylegan2.render.TRUNCATION_CENTRES

    def name(self, digits: int = 0, sep: str = "") -> str:
        """'seed16' ('seed0016' with digits=4, 'seed 16' with sep=" "), or 'photo1a2b3c4d' (the first 8
        digits of the latent's sha256): the base in file names and sheet labels."""
        return f"seed{sep}{self.seed:0{digits}d}" if self.latent is None else f"photo{sep}{self.latent[:8]}"


@dataclasses.dataclass(frozen=True)
class Mix:
    """Style mixing: layers start..end (inclusive) blend towards a second seed's W (same ψ, class and centre)."""

    seed: int
    layers: tuple[int, int]
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class Design:
    base: Base
    mix: Mix | None = None
    edits: tuple[Edit, ...] = ()


Latents = Callable[[str], torch.Tensor]      # latent sha256 -> W+ [1, num_ws, w_dim]; raises LatentMissing
Bases = Callable[[Base], torch.Tensor]       # a base's unedited W+ (the studio's is cached)


def label_key(class_idx):
    """A Base's class_idx from what the tools pass: None, a class index, or a float label vector (ndarray)."""
    if isinstance(class_idx, np.ndarray) and class_idx.dtype.kind == "f":
        return tuple(float(v) for v in class_idx)
    return None if class_idx is None else int(class_idx)


def seed_bases(G, seeds, truncation_psi: float, class_idx=None, truncation_centre: str = "global") -> list[Base]:
    """Seed bases for a sheet of seeds: `class_idx` (a class or a label vector) for all, else (conditional
    networks) seed % c_dim."""
    classes = classes_for_seeds(G, list(seeds), class_idx)
    classes = classes if isinstance(classes, list) else [classes] * len(seeds)
    return [Base(int(seed), float(truncation_psi), label_key(c), truncation_centre=truncation_centre)
            for seed, c in zip(seeds, classes)]


def _label(base: Base, layout):
    """What the mapping network gets for a seed base (see Base.class_idx)."""
    label = base.class_idx
    if isinstance(label, tuple) and all(isinstance(v, float) for v in label) and label:
        return np.asarray(label, np.float32)
    if layout is not None:
        return layout.encode(dict(label or ()))
    return label


def base_ws(G, base: Base, latents: Latents | None = None, layout=None) -> torch.Tensor:
    """The unedited W+ [1, num_ws, w_dim] of a base; `layout` (a LabelLayout) encodes attribute choices."""
    if base.latent is not None:
        if latents is None:
            raise LatentMissing(base.latent)
        ws = latents(base.latent)
        if tuple(ws.shape) != (1, G.num_ws, G.w_dim):
            raise RecipeError(f"The stored latent {base.latent[:16]}… has shape {tuple(ws.shape)}; "
                              f"this network needs [1, {G.num_ws}, {G.w_dim}].")
        return ws
    return seed_to_w(G, int(base.seed), float(base.truncation_psi), class_idx=_label(base, layout),
                     centre=base.truncation_centre)


def design_ws(G, design: Design, bases: Bases | None = None) -> torch.Tensor:
    """W+ of a design: its base, then the style mix, then the edits in order."""
    bases = bases or (lambda base: base_ws(G, base))
    ws = bases(design.base)
    if design.mix is not None:
        other = bases(dataclasses.replace(design.base, seed=design.mix.seed, latent=None))
        start, end = design.mix.layers
        ws = ws.clone()
        ws[:, start:end + 1] = torch.lerp(ws[:, start:end + 1], other.to(ws)[:, start:end + 1], design.mix.weight)
    return apply_edits(ws, design.edits) if design.edits else ws
