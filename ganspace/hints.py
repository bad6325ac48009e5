"""Measured hints: which simple image statistics a component changes, to suggest labels.

For each component and layer group, images at -kσ and +kσ are compared over a batch of
seeds.  The background is taken as the median border colour (product photos are mostly
shot on plain backgrounds), which is enough for area, height, width of the garment.
`agree` is the share of seeds whose strongest change goes the mean's way: a direction worth a
slider behaves the same on most seeds.
"""
from __future__ import annotations

import csv
import pathlib
from typing import Callable, Optional, Sequence

import numpy as np

from ganspace.components import Components
from ganspace.layers import GROUP_NAMES, format_layers, layer_groups
from stylegan2.compiled import RENDER_BATCH
from design.model import seed_bases
from ganspace.sheets import render_sweep, sweep_edit

# statistic -> (label it suggests, change that counts as clearly visible)
STATISTICS = {
    "luminance": ("brightness", 0.04),
    "saturation": ("colour (saturation)", 0.05),
    "hue": ("colour (hue)", 12.0),
    "area": ("size", 0.04),
    "height": ("length", 0.05),
    "width": ("sleeve/width", 0.05),
    "asymmetry": ("pose/asymmetry", 0.02),
}
BACKGROUND_THRESHOLD = 0.12   # max per-channel distance (0-1) from the border colour
OCCUPIED_FRACTION = 0.02      # a row/column with this share of foreground counts as occupied


def as_rgb(images: np.ndarray) -> np.ndarray:
    """[N, H, W, C] with C = 1, 3 or 4 -> [N, H, W, 3] (grey repeated, alpha dropped)."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images[..., :3]


def foreground_mask(images: np.ndarray) -> np.ndarray:
    """[N, H, W] bool: pixels that differ from the image's median border colour."""
    x = images.astype(np.float64) / 255
    border = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)   # [N, P, C]
    background = np.median(border, axis=1)
    return np.abs(x - background[:, None, None, :]).max(axis=-1) > BACKGROUND_THRESHOLD


def _extent(occupied: np.ndarray) -> np.ndarray:
    """Fraction of the axis spanned from the first to the last occupied index ([N, L] bool)."""
    any_ = occupied.any(axis=1)
    first = occupied.argmax(axis=1)
    last = occupied.shape[1] - 1 - occupied[:, ::-1].argmax(axis=1)
    return np.where(any_, (last - first + 1) / occupied.shape[1], 0.0)


def image_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image statistics of uint8 [N, H, W, C] images; hue is in degrees, the rest in 0-1."""
    images = as_rgb(images)
    x = images.astype(np.float64) / 255
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    maxc, minc = x.max(axis=-1), x.min(axis=-1)
    saturation = np.where(maxc > 0, (maxc - minc) / np.maximum(maxc, 1e-12), 0.0)
    angle = np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)     # hue angle on the colour hexagon
    weight = maxc - minc                                        # grey pixels have no hue
    hue = np.degrees(np.arctan2((weight * np.sin(angle)).sum((1, 2)), (weight * np.cos(angle)).sum((1, 2))))
    mask = foreground_mask(images)
    return {
        "luminance": (0.299 * r + 0.587 * g + 0.114 * b).mean(axis=(1, 2)),
        "saturation": saturation.mean(axis=(1, 2)),
        "hue": hue,
        "area": mask.mean(axis=(1, 2)),
        "height": _extent(mask.mean(axis=2) >= OCCUPIED_FRACTION),
        "width": _extent(mask.mean(axis=1) >= OCCUPIED_FRACTION),
        "asymmetry": np.abs(x - x[:, :, ::-1]).mean(axis=(1, 2, 3)),
    }


def per_image_changes(minus: np.ndarray, plus: np.ndarray) -> dict[str, np.ndarray]:
    """Change of each statistic from every -kσ image to its paired +kσ image (hue wrapped to ±180°)."""
    a, b = image_stats(minus), image_stats(plus)
    changes = {name: b[name] - a[name] for name in STATISTICS}
    changes["hue"] = (b["hue"] - a["hue"] + 180) % 360 - 180
    return changes


def mean_changes(per_image: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean change of each statistic over the image pairs."""
    return {name: float(np.mean(values)) for name, values in per_image.items()}


def visibility(changes: dict[str, float]) -> dict[str, float]:
    """Each mean change relative to what counts as clearly visible (>= 1: visible)."""
    return {name: abs(changes[name]) / scale for name, (_, scale) in STATISTICS.items()}


def strongest_statistic(changes: dict[str, float]) -> str:
    """The statistic whose mean change is largest relative to what counts as visible."""
    scores = visibility(changes)
    return max(scores, key=scores.get)


def agreement(per_image: dict[str, np.ndarray], name: str) -> float:
    """Share of images whose change in `name` has the sign of the mean change."""
    values = per_image[name]
    return float(np.mean(np.sign(values) == np.sign(values.mean())))


def suggest_labels(changes: dict[str, float], max_labels: int = 2) -> str:
    """Labels of the clearly visible changes, strongest first; '' when nothing stands out."""
    ranked = sorted(((score, STATISTICS[name][0]) for name, score in visibility(changes).items()), reverse=True)
    return ", ".join(label for score, label in ranked[:max_labels] if score >= 1)


def measure_hints(G, comps: Components, num_components: int = 10, seeds: Sequence[int] = range(16),
                  strength: float = 2.0, groups: Sequence[str] = GROUP_NAMES, truncation_psi: float = 0.7,
                  class_idx=None, batch_size: int = RENDER_BATCH, progress: Optional[Callable] = None) -> list[dict]:
    """One row per (component, group): the change of every statistic from -strength σ to +strength σ."""
    all_groups = layer_groups(G.num_ws)
    bases = seed_bases(G, list(seeds), truncation_psi, class_idx)
    num_components = min(num_components, comps.num_components)
    rows, total = [], num_components * len(groups)
    for index in range(num_components):
        for group in groups:
            layers = all_groups[group]
            edits = [sweep_edit(comps, index, layers, s, "sample") for s in (-strength, strength)]
            images = render_sweep(G, bases, edits, batch_size)
            per_image = per_image_changes(images[:, 0], images[:, 1])
            changes = mean_changes(per_image)
            rows.append(dict(component=index, group=group, layers=format_layers(layers),
                             var_ratio=float(comps.var_ratio[index]), **changes,
                             agree=agreement(per_image, strongest_statistic(changes)),
                             suggestion=suggest_labels(changes)))
            if progress:
                progress((len(rows), total))
    return rows


def write_hints(rows: list[dict], path) -> None:
    """CSV table, plus a Markdown copy beside it for reading."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else ["component", "group", "layers", "var_ratio", *STATISTICS, "agree",
                                          "suggestion"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    path.with_suffix(".md").write_text(format_table(rows), encoding="utf-8")


def format_table(rows: list[dict]) -> str:
    """Markdown table; numbers rounded for the eye."""
    if not rows:
        return ""
    columns = list(rows[0])
    def cell(v):
        return f"{v:+.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
