"""Everything the studio writes to disk: single PNGs, the favourites pack, batch exports.

Every PNG embeds its recipe (design.recipe), so dropping it back into the
studio restores it; a design that starts from a projected photo travels with its latent
(`latents/<sha256>.npz` in a zip, since a PNG cannot hold it). Each export goes to a fresh temporary folder: no fixed
file names, so concurrent users never overwrite each other's downloads.
File names say what the image is (seed, class, ψ, mix, moved sliders); an
upscaled export says so in its name and in its recipe (`export`), since its
pixels are no longer the network's own.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import tempfile
import zipfile

import numpy as np

from design.recipe import Recipe, RecipeError, save_png_with_recipe
from editor.studio import Studio
from ganspace.export import export_directions, upscale, upscale_mark
from toolkit.images import image_grid, to_pil
from toolkit.naming import slug

CONTACT_SHEET_COLUMNS = 6
MAX_NAME = 150
MAX_BATCH_IMAGES = 2000  # one click; ~10 minutes of a 256 px model on two CPU cores


def new_export_dir(prefix: str) -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix=f"afro-studio-{prefix}-"))


def _slug(text: str) -> str:
    return slug(text) or "x"


def image_name(recipe: Recipe, class_names: list[str] | None = None, scale: int = 1, resample: str = "") -> str:
    """'seed16-longsleeve-psi0.7-mix5-slim+1.5-vivid-2-x4lanczos': what the image is, safe as a file name."""
    parts = [recipe.base.name()]
    if recipe.class_idx is not None:
        names = class_names or []
        parts.append(_slug(names[recipe.class_idx]) if recipe.class_idx < len(names) else f"class{recipe.class_idx}")
    parts += [_slug(value) for value in recipe.attributes.values()]
    parts.append(f"psi{recipe.truncation_psi:g}")
    if recipe.mix:
        parts.append(f"mix{recipe.mix.seed}")
    parts += [f"{_slug(name)}{value:+g}" for name, value in sorted(recipe.sliders.items()) if value]
    parts += [f"c{index}{value:+g}" for index, value in sorted(recipe.components.items()) if value]
    name = "-".join(parts)
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - len('-and-more')]}-and-more"
    return f"{name}-x{scale}{resample}" if scale > 1 else name  # the upscale mark always survives


def _save(studio: Studio, recipe: Recipe, path: pathlib.Path, scale: int, resample: str) -> np.ndarray:
    image = studio.render(recipe)
    portable = studio.portable_recipe(recipe)
    if scale > 1:
        portable["export"] = upscale_mark(scale, resample, image.shape[:2])
    save_png_with_recipe(path, upscale(image, scale, resample), portable)
    return image


def export_image(studio: Studio, recipe: Recipe, out_dir: pathlib.Path | None = None, scale: int = 1,
                 resample: str = "nearest") -> pathlib.Path:
    """The recipe's image (at the network's resolution, or upscaled), as a PNG carrying its recipe; a zip of
    the PNG and its latent when the design starts from a projected photo."""
    out_dir = out_dir or new_export_dir("image")
    name = image_name(recipe, studio.network.class_names, scale, resample)
    folder = out_dir / name if recipe.latent else out_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    _save(studio, recipe, path, scale, resample)
    if recipe.latent:
        _copy_latents(studio, [recipe], folder)
        return zip_folder(folder)
    return path


def _copy_latents(studio: Studio, recipes: list[Recipe], folder: pathlib.Path) -> None:
    """The latents the recipes start from, as latents/<sha256>.npz beside them."""
    for sha256 in sorted({r.latent for r in recipes if r.latent}):
        (folder / "latents").mkdir(exist_ok=True)
        shutil.copyfile(studio.latents.path(sha256), folder / "latents" / f"{sha256}.npz")


def export_favourites(studio: Studio, recipes: list[Recipe], out_dir: pathlib.Path | None = None, scale: int = 1,
                      resample: str = "nearest") -> pathlib.Path:
    """A zip with one PNG per favourite (recipe embedded), a contact sheet and manifest.json."""
    if not recipes:
        raise ValueError("The favourites tray is empty: star some designs first.")
    folder = (out_dir or new_export_dir("favourites")) / "favourites"
    folder.mkdir(parents=True, exist_ok=True)
    images, manifest = [], []
    for i, recipe in enumerate(recipes):
        name = f"{i:03d}-{image_name(recipe, studio.network.class_names, scale, resample)}.png"
        images.append(_save(studio, recipe, folder / name, scale, resample))
        manifest.append({"file": name, "recipe": recipe.to_dict()})
    sheet = image_grid(images, cols=min(CONTACT_SHEET_COLUMNS, len(images)), pad=0)
    to_pil(sheet).save(folder / "contact_sheet.png")
    _copy_latents(studio, recipes, folder)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return zip_folder(folder)


def export_batch(studio: Studio, recipe: Recipe, seeds: list[int] | None, strengths: list[float],
                 out_dir: pathlib.Path | None = None, progress=None, scale: int = 1, resample: str = "") -> pathlib.Path:
    """The recipe's moved directions (all directions when none moved) over many seeds, via the ganspace exporter.

    `seeds` None: over the design's own base instead (its projected photo, with the latent in the zip, or
    its seed), so a photo design gets the same sweeps, sheets and recipes as a seed."""
    if studio.directions_file is None or not studio.directions:
        raise ValueError("No labelled directions to export: load a directions file (--directions).")
    studio.check(recipe)
    chosen = [d for d in studio.directions if d.name in recipe.sliders] or studio.directions
    latent = recipe.latent if seeds is None else None
    if seeds is None:
        seeds = [] if latent else [recipe.seed]
    rows = 1 if latent else len(seeds)
    images = len(chosen) * rows * len(strengths)
    if images > MAX_BATCH_IMAGES:
        raise RecipeError(f"This batch asks for {images} images ({len(chosen)} directions × {rows} seeds × "
                          f"{len(strengths)} strengths); one batch makes at most {MAX_BATCH_IMAGES}: "
                          "use fewer seeds or strengths, or move only the sliders you want exported.")
    directions_file = dataclasses.replace(studio.directions_file, directions=chosen)
    folder = (out_dir or new_export_dir("batch")) / "batch"
    export_directions(studio.private_generator(), directions_file, seeds, strengths, folder,
                      truncation_psi=recipe.truncation_psi, truncation_centre=recipe.truncation_centre,
                      **studio.export_label(recipe),
                      network_sha256=studio.network_sha256, progress=progress, scale=scale, resample=resample,
                      latent=latent, latents=studio.latent_ws)
    if latent:
        _copy_latents(studio, [recipe], folder)
    return zip_folder(folder)


def zip_folder(folder: pathlib.Path) -> pathlib.Path:
    """folder.zip beside the folder (inside its private export directory)."""
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder))
    return archive
