"""Everything the studio writes to disk: single PNGs, the favourites pack, batch exports.

Every PNG embeds its recipe (ganspace.recipe), so dropping it back into the
studio restores it. Each export goes to a fresh temporary folder: no fixed
file names, so concurrent users never overwrite each other's downloads.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import tempfile
import zipfile


from editor.recipe import Recipe, RecipeError
from editor.studio import Studio
from ganspace.export import export_directions
from ganspace.recipe import save_png_with_recipe
from stylegan2.render import image_grid, to_pil

CONTACT_SHEET_COLUMNS = 6
MAX_BATCH_IMAGES = 2000  # one click; ~10 minutes of a 256 px model on two CPU cores


def new_export_dir(prefix: str) -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix=f"afro-studio-{prefix}-"))


def image_name(recipe: Recipe) -> str:
    mix = f"-mix{recipe.mix.seed}" if recipe.mix else ""
    return f"seed{recipe.seed}{mix}-psi{recipe.truncation_psi:g}"


def export_image(studio: Studio, recipe: Recipe, out_dir: pathlib.Path | None = None) -> pathlib.Path:
    """The recipe's image at full resolution, as a PNG carrying its recipe."""
    out_dir = out_dir or new_export_dir("image")
    path = out_dir / f"{image_name(recipe)}.png"
    save_png_with_recipe(path, studio.render(recipe), studio.portable_recipe(recipe))
    return path


def export_favourites(studio: Studio, recipes: list[Recipe], out_dir: pathlib.Path | None = None) -> pathlib.Path:
    """A zip with one PNG per favourite (recipe embedded), a contact sheet and manifest.json."""
    if not recipes:
        raise ValueError("The favourites tray is empty: star some designs first.")
    folder = (out_dir or new_export_dir("favourites")) / "favourites"
    folder.mkdir(parents=True, exist_ok=True)
    images, manifest = [], []
    for i, recipe in enumerate(recipes):
        image = studio.render(recipe)
        name = f"{i:03d}-{image_name(recipe)}.png"
        save_png_with_recipe(folder / name, image, studio.portable_recipe(recipe))
        images.append(image)
        manifest.append({"file": name, "recipe": recipe.to_dict()})
    sheet = image_grid(images, cols=min(CONTACT_SHEET_COLUMNS, len(images)), pad=0)
    to_pil(sheet).save(folder / "contact_sheet.png")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return zip_folder(folder)


def export_batch(studio: Studio, recipe: Recipe, seeds: list[int], strengths: list[float],
                 out_dir: pathlib.Path | None = None, progress=None) -> pathlib.Path:
    """The recipe's moved directions (all directions when none moved) over many seeds, via the ganspace exporter."""
    if studio.directions_file is None or not studio.directions:
        raise ValueError("No labelled directions to export: load a directions file (--directions).")
    chosen = [d for d in studio.directions if d.name in recipe.sliders] or studio.directions
    images = len(chosen) * len(seeds) * len(strengths)
    if images > MAX_BATCH_IMAGES:
        raise RecipeError(f"This batch asks for {images} images ({len(chosen)} directions × {len(seeds)} seeds × "
                          f"{len(strengths)} strengths); one batch makes at most {MAX_BATCH_IMAGES}: "
                          "use fewer seeds or strengths, or move only the sliders you want exported.")
    directions_file = dataclasses.replace(studio.directions_file, directions=chosen)
    out_dir = out_dir or new_export_dir("batch")
    export_directions(studio.private_generator(), directions_file, seeds, strengths, out_dir / "batch",
                      truncation_psi=recipe.truncation_psi, class_idx=recipe.class_idx,
                      network_sha256=studio.network_sha256, progress=progress)
    return zip_folder(out_dir / "batch")


def zip_folder(folder: pathlib.Path) -> pathlib.Path:
    """folder.zip beside the folder (inside its private export directory)."""
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder))
    return archive
