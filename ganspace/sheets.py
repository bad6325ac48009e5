"""Component sheets: what a person looks at to name a direction.

One PNG per (component, layer group): rows are seeds, columns strengths from -kσ to +kσ,
centred on each sample's own coordinate (additive edit) or on the mean (absolute edit).
"""
from __future__ import annotations

import math
import pathlib
from collections import deque
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from design.model import Base, Design, base_ws, design_ws, seed_bases
from ganspace.components import Components
from ganspace.contact_sheet import SHEET_PNG_LEVEL, contact_sheet
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
    """Images [len(bases), len(edits), H, W, C]: every base under every single edit (`design_ws`)."""
    return next(render_sweeps(G, bases, [edits], batch_size))


def render_sweeps(G, bases: Sequence[Base], sweeps: Iterable[Sequence[Edit]],
                  batch_size: int = RENDER_BATCH) -> Iterator[np.ndarray]:
    """For each list of edits in `sweeps`, its `render_sweep` images, yielded as soon as they are rendered.

    Consecutive sweeps share batches, so every batch is full but the last two, which split what is left
    near-equally (35 codes: 8, 8, 8, 6, 5; never a lone 3): a compiled G pads them up to its graph for
    `batch_size` instead of compiling another shape. At most one sweep's images wait in memory.
    """
    unedited = {base: base_ws(G, base) for base in bases}
    codes: list[torch.Tensor] = []     # W+ codes not rendered yet, one by one
    rendered: list[np.ndarray] = []    # batches of images not handed out yet
    waiting: deque[int] = deque()      # len(edits) of each sweep not handed out yet

    def render(sizes):  # these batches, then every sweep whose images are all there
        for size in sizes:
            rendered.append(synthesize_uint8(G, torch.cat(codes[:size])))
            del codes[:size]
        while waiting and sum(map(len, rendered)) >= waiting[0] * len(bases):
            count = waiting.popleft() * len(bases)
            images = np.concatenate(rendered)
            rendered[:] = [images[count:]]
            yield images[:count].reshape(-1, len(bases), *images.shape[1:]).swapaxes(0, 1)

    for edits in sweeps:
        waiting.append(len(edits))
        codes += [design_ws(G, Design(base, edits=(edit,)), unedited.__getitem__)
                  for edit in edits for base in bases]                        # edit-major order
        yield from render([batch_size] * (len(codes) // batch_size - 1))   # keep at least a batch back
    yield from render(_near_equal(len(codes), batch_size))


def _near_equal(count: int, batch_size: int) -> list[int]:
    """`count` split into the fewest batches of at most `batch_size`, as equal as can be."""
    parts = math.ceil(count / batch_size)
    return [count // parts + (k < count % parts) for k in range(parts)]


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
    sweeps = [(index, group) for index in range(num_components) for group in groups]
    edit_lists = ([sweep_edit(comps, index, all_groups[group], float(s), centre) for s in strengths]
                  for index, group in sweeps)
    written = []
    for (index, group), cells in zip(sweeps, render_sweeps(G, bases, edit_lists, batch_size)):
        title = (f"component {index} | layers {format_layers(all_groups[group])} ({group}) | "
                 f"{comps.score_label(index) or 'no score'} | sigma {comps.stdev[index]:.3g} | "
                 f"columns in sigma, centred on {centre}")
        sheet = contact_sheet(cells, title, [f"seed {s}" for s in seeds], col_labels, max_cell)
        path = out_dir / f"comp{index:03d}_{group}.png"
        sheet.save(path, compress_level=SHEET_PNG_LEVEL)
        written.append(path)
        if progress:
            progress((len(written), len(sweeps)))
    return written
