"""Component sheets: what a person looks at to name a direction.

One PNG per (component, layer group): rows are seeds, columns strengths from -kσ to +kσ,
centred on each sample's own coordinate (additive edit) or on the mean (absolute edit).
"""
from __future__ import annotations

import math
import pathlib
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from design.model import Base, Design, base_ws, design_ws, seed_bases
from ganspace.components import Components
from ganspace.contact_sheet import contact_sheet
from ganspace.edits import Edit
from ganspace.layers import GROUP_NAMES, format_layers, layer_groups
from stylegan2.compiled import RENDER_BATCH
from stylegan2.render import synthesize_uint8

CENTRES = ("sample", "mean")


def sweep_edit(comps: Components, index: int, layers: tuple[int, int], strength: float, centre: str) -> Edit:
    """The edit behind one sheet column: additive around the sample, or absolute around the mean."""
    return Edit(vector=comps.comp[index], sigma=float(comps.stdev[index]), layers=layers, strength=strength,
                mode="add" if centre == "sample" else "absolute", mean=comps.mean)


def render_sweep(G, bases: Sequence[Base], edits: Sequence[Edit], batch_size: int = RENDER_BATCH) -> np.ndarray:
    """Images [len(bases), len(edits), H, W, C]: every base under every single edit (`design_ws`).

    Batches are near-equal (35 codes in 12, 12, 11, not 16, 16, 3), so a compiled G pads the last one
    instead of compiling another shape.
    """
    unedited = {base: base_ws(G, base) for base in bases}
    codes = torch.cat([design_ws(G, Design(base, edits=(edit,)), unedited.__getitem__)
                       for edit in edits for base in bases])                  # edit-major order
    step = math.ceil(len(codes) / math.ceil(len(codes) / batch_size))
    images = np.concatenate([synthesize_uint8(G, codes[i:i + step]) for i in range(0, len(codes), step)])
    return images.reshape(len(edits), len(bases), *images.shape[1:]).swapaxes(0, 1)


def component_sheets(G, comps: Components, out_dir, num_components: int = 10, seeds: Sequence[int] = range(5),
                     columns: int = 7, sigma_range: float = 3.0, centre: str = "sample",
                     groups: Sequence[str] = GROUP_NAMES, truncation_psi: float = 0.7, class_idx=None,
                     batch_size: int = RENDER_BATCH, max_cell: int = 256,
                     progress: Optional[Callable] = None) -> list[pathlib.Path]:
    """Write comp{i:03d}_{group}.png sheets; returns their paths. `progress((done, total))` per sheet."""
    if centre not in CENTRES:
        raise ValueError(f"centre must be one of {CENTRES}, got {centre!r}")
    all_groups = layer_groups(G.num_ws)
    unknown = [g for g in groups if g not in all_groups]
    if unknown:
        raise ValueError(f"unknown layer groups {unknown}; choose from {', '.join(all_groups)}")
    num_components = min(num_components, comps.num_components)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = list(seeds)
    bases = seed_bases(G, seeds, truncation_psi, class_idx)
    strengths = np.linspace(-sigma_range, sigma_range, columns)
    col_labels = [f"{s:+.1f}" for s in strengths]
    if centre == "mean":
        col_labels = [f"={s:+.1f}" for s in strengths]
    written, total = [], num_components * len(groups)
    for index in range(num_components):
        for group in groups:
            layers = all_groups[group]
            edits = [sweep_edit(comps, index, layers, float(s), centre) for s in strengths]
            cells = render_sweep(G, bases, edits, batch_size)
            title = (f"component {index} | layers {format_layers(layers)} ({group}) | "
                     f"{comps.score_label(index) or 'no score'} | sigma {comps.stdev[index]:.3g} | "
                     f"columns in sigma, centred on {centre}")
            sheet = contact_sheet(cells, title, [f"seed {s}" for s in seeds], col_labels, max_cell)
            path = out_dir / f"comp{index:03d}_{group}.png"
            sheet.save(path)
            written.append(path)
            if progress:
                progress((len(written), total))
    return written
