"""Batch export of labelled directions: PNGs with recipes, contact sheets, GIF sweeps, manifest.

Every image is a `design.model.Design` (a base: a seed, or one projected photo's stored latent; one edit)
drawn by `design_ws` and carries the one recipe format (`design.recipe`: the slider by name and its edit
with the vector; a photo's recipe names its latent by sha256). Resumable: a PNG
already on disk whose embedded recipe equals the one it would get is skipped, so an interrupted export
continues where it stopped, and a changed setting (truncation, direction, network) re-renders instead of
silently keeping stale files.
"""
from __future__ import annotations

import csv
import json
import pathlib
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from design.model import Base, Design, Latents, base_ws, design_ws, label_key
from design.recipe import Recipe, edit_to_recipe, read_recipe, save_png_with_recipe
from ganspace.contact_sheet import SHEET_PNG_LEVEL, contact_sheet, fit_cell
from ganspace.directions import Direction, DirectionsFile, load_directions
from ganspace.layers import format_layers
from stylegan2.render import synthesize_uint8
from toolkit.atomic import atomic_write, atomic_write_text
from toolkit.images import to_pil
from toolkit.naming import slug

MANIFEST_COLUMNS = ("seed", "class", "truncation", "truncation_centre", "direction", "component", "layers", "mode",
                    "sigma", "strength", "file", "network_sha256", "latent")
GIF_SEEDS = 8
EXPORT_SCALES = tuple((f, r) for f in (2, 4, 8) for r in ("nearest", "lanczos"))
RESAMPLE = {"nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


def upscale(image: np.ndarray, scale: int, resample: str) -> np.ndarray:
    """Nearest (crisp pixels) or Lanczos (smooth) enlargement by a whole factor."""
    if scale == 1:
        return image
    if (scale, resample) not in EXPORT_SCALES:
        raise ValueError(f"Export scale must be 1 or one of {EXPORT_SCALES}, got {(scale, resample)}.")
    pil = to_pil(image)
    return np.asarray(pil.resize((pil.width * scale, pil.height * scale), RESAMPLE[resample]))


def upscale_mark(scale: int, resample: str, resolution) -> dict:
    """What an upscaled file's recipe says: its pixels are no longer the network's own."""
    return {"upscaled": True, "scale": scale, "resample": resample, "rendered_resolution": list(resolution)}


def image_name(direction: Direction, base: Base, strength: float, class_idx=None, scale: int = 1,
               resample: str = "") -> str:
    cls = "" if class_idx is None else f"_{class_idx}" if isinstance(class_idx, str) else f"_c{class_idx}"
    mark = f"-x{scale}{resample}" if scale > 1 else ""
    return f"{slug(direction.name)}/{base.name(digits=4)}{cls}_{slug(direction.name)}_s{strength:+.2f}{mark}.png"


def make_recipe(direction: Direction, base: Base, strength: float, class_idx,
                network_sha256: Optional[str], export: Optional[dict] = None) -> dict:
    """The recipe of one exported image: its base, the slider by name (what the studio restores) and its edit."""
    recipe = Recipe(network_sha256=network_sha256, seed=base.seed, latent=base.latent,
                    truncation_psi=base.truncation_psi, truncation_centre=base.truncation_centre,
                    class_idx=class_idx, sliders={direction.name: float(strength)},
                    layer_overrides={direction.name: tuple(direction.layers)}).to_dict()
    recipe["edits"] = [edit_to_recipe(direction.edit(strength), direction=direction.name,
                                      component=direction.component)]
    return recipe if export is None else {**recipe, "export": export}


def _up_to_date(path: pathlib.Path, recipe: dict) -> bool:
    if not path.exists():
        return False
    try:
        return read_recipe(path) == json.loads(json.dumps(recipe, sort_keys=True))
    except OSError:
        return False


def export_directions(G, directions_file, seeds: Sequence[int], strengths: Sequence[float], out_dir,
                      truncation_psi: float = 0.7, class_idx=None, network_sha256: Optional[str] = None,
                      progress: Optional[Callable] = None, batch_size: int = 8, gif: bool = False,
                      max_cell: int = 256, scale: int = 1, resample: str = "",
                      attributes: Optional[dict] = None, latent: Optional[str] = None,
                      latents: Optional[Latents] = None, truncation_centre: str = "global") -> list[dict]:
    """Render every (direction, seed, strength); return the manifest rows (also written to out_dir).

    `latent` (the sha256 of a stored latent: a projected photo; `latents` loads it) exports that one
    design instead of seeds (`seeds` must then be empty): the photo's W+, one direction at a time.

    `directions_file` is a DirectionsFile or a path (checked against network_sha256). `scale` > 1 enlarges
    every PNG (`resample` nearest or lanczos), marked in its file name and recipe.
    `progress((done, total))` is called as images are finished (tqdm wrappers and gr.Progress both fit).
    Multi-attribute networks: `class_idx` is the label vector and `attributes` the choices it encodes
    (names and recipes carry those; unnamed attributes are "any").
    """
    tag = class_idx if attributes is None else "-".join(slug(v) for v in attributes.values()) or "any"
    if latent is not None and len(seeds):
        raise ValueError("Export either seeds or one stored latent, not both.")
    rows = ([Base(None, float(truncation_psi), label_key(class_idx), latent)] if latent is not None
            else [Base(int(seed), float(truncation_psi), label_key(class_idx), truncation_centre=truncation_centre)
                  for seed in seeds])
    if not isinstance(directions_file, DirectionsFile):
        directions_file = load_directions(directions_file, network_sha256=network_sha256)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    strengths = [float(s) for s in strengths]
    if scale != 1:
        upscale(np.zeros((1, 1, 3), np.uint8), scale, resample)  # refuse a bad scale before rendering anything
    export = upscale_mark(scale, resample, G.img_shape) if scale > 1 else None
    jobs, manifest = [], []
    for direction in directions_file.directions:
        for base in rows:
            for strength in strengths:
                name = image_name(direction, base, strength, tag, scale, resample)
                recipe = make_recipe(direction, base, strength, class_idx if attributes is None else None,
                                     network_sha256, export)
                if attributes is not None:
                    recipe["attributes"] = dict(attributes)
                jobs.append((direction, base, strength, out_dir / name, recipe))
                manifest.append(dict(seed=base.seed, **{"class": tag}, truncation=float(truncation_psi),
                                     truncation_centre=base.truncation_centre,
                                     direction=direction.name, component=direction.component,
                                     layers=format_layers(direction.layers), mode=direction.mode,
                                     sigma=float(direction.sigma), strength=strength, file=name,
                                     network_sha256=network_sha256, latent=base.latent))
    total = len(jobs)
    todo = [job for job in jobs if not _up_to_date(job[3], job[4])]
    done = total - len(todo)
    if progress:
        progress((done, total))
    bases: dict[Base, torch.Tensor] = {}

    def cached(base: Base) -> torch.Tensor:
        if base not in bases:
            bases[base] = base_ws(G, base, latents)
        return bases[base]

    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        ws = torch.cat([design_ws(G, Design(base, edits=(direction.edit(strength),)), cached)
                        for direction, base, strength, _, _ in chunk])
        for pixels, (_, _, _, path, recipe) in zip(synthesize_uint8(G, ws), chunk):
            save_png_with_recipe(path, upscale(pixels, scale, resample), recipe)
        done += len(chunk)
        if progress:
            progress((done, total))
    for direction in directions_file.directions:
        _direction_summaries(direction, rows, strengths, out_dir, tag, gif, max_cell, scale, resample)
    _write_manifest(out_dir, manifest)
    return manifest


def _direction_summaries(direction, rows, strengths, out_dir, class_idx, gif, max_cell, scale, resample) -> None:
    """Contact sheet (rows: seeds or the photo, x strengths) and optional GIF sweep, from the PNGs on disk."""
    def load(base, strength):
        name = image_name(direction, base, strength, class_idx, scale, resample)
        return np.asarray(Image.open(out_dir / name).convert("RGB"))

    cells = [[load(base, s) for s in strengths] for base in rows]
    title = (f"{direction.name}: layers {format_layers(direction.layers)}, {direction.mode}, "
             f"sigma {direction.sigma:.3g}, columns in sigma" + (f"  ({direction.sign})" if direction.sign else ""))
    labels = [b.name(sep=" ") for b in rows]
    sheet = contact_sheet(cells, title, labels, [f"{s:+.2f}" for s in strengths], max_cell)
    _atomic_image_save(sheet, out_dir / f"sheet_{slug(direction.name)}.png", compress_level=SHEET_PNG_LEVEL)
    if gif:
        order = sorted(range(len(strengths)), key=lambda j: strengths[j])
        order = order + order[-2:0:-1]   # ping-pong sweep
        frames = []
        for j in order:
            strip = [fit_cell(cells[i][j], max_cell) for i in range(min(GIF_SEEDS, len(rows)))]
            frame = Image.new("RGB", (sum(im.width for im in strip), strip[0].height))
            for k, im in enumerate(strip):
                frame.paste(im, (k * strip[0].width, 0))
            frames.append(frame)
        _atomic_image_save(frames[0], out_dir / f"sweep_{slug(direction.name)}.gif", save_all=True,
                           append_images=frames[1:], duration=250, loop=0)


def _atomic_image_save(image: Image.Image, path: pathlib.Path, **kwargs) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format=path.suffix.lstrip(".").upper(), **kwargs))


def spreadsheet_safe(value):
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ (or a tab/CR) would be run as a
    formula (direction names are user text), so it gets a leading apostrophe; numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _write_manifest(out_dir: pathlib.Path, rows: list[dict]) -> None:
    atomic_write_text(out_dir / "manifest.json", json.dumps(rows, indent=1))

    def write_csv(tmp: pathlib.Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows([{k: spreadsheet_safe(v) for k, v in row.items()} for row in rows])

    atomic_write(out_dir / "manifest.csv", write_csv)
