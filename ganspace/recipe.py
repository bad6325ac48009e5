"""Recipes inside PNGs: every exported image says how to make it again.

The recipe is JSON in a PNG tEXt chunk named "afro-fashion-recipe": network hash,
seed, truncation, class and the edits (with their vectors, so no other file is needed).
"""
from __future__ import annotations

import io
import json
import pathlib

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ganspace.edits import Edit
from toolkit.atomic import atomic_write

RECIPE_KEY = "afro-fashion-recipe"


def save_png_with_recipe(path, pixels: np.ndarray, recipe: dict) -> None:
    """Write a uint8 HWC image with its recipe, atomically (no half-written PNGs on interrupt)."""
    path = pathlib.Path(path)
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected uint8 HWC pixels with 1, 3 or 4 channels, got {pixels.dtype} {pixels.shape}")
    info = PngInfo()
    info.add_text(RECIPE_KEY, json.dumps(recipe, sort_keys=True))
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=info))


def read_recipe(source) -> dict | None:
    """The recipe of a PNG given as a path, bytes or PIL image; None when it has none."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (bytes, bytearray)):
        image = Image.open(io.BytesIO(source))
    else:
        image = Image.open(source)
    text = getattr(image, "text", {}).get(RECIPE_KEY) or image.info.get(RECIPE_KEY)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def edit_to_recipe(edit: Edit, **labels) -> dict:
    """JSON-ready form of an edit; `labels` (direction name, component...) are kept alongside."""
    return dict(labels, vector=edit.vector.tolist(), sigma=float(edit.sigma), layers=list(edit.layers),
                strength=float(edit.strength), mode=edit.mode,
                mean=None if edit.mean is None else edit.mean.tolist())


def edits_from_recipe(recipe: dict) -> list[Edit]:
    """The edits of a recipe, ready for apply_edits."""
    return [Edit(vector=np.asarray(e["vector"]), sigma=e["sigma"], layers=tuple(e["layers"]), strength=e["strength"],
                 mode=e.get("mode", "add"), mean=None if e.get("mean") is None else np.asarray(e["mean"]))
            for e in recipe.get("edits", [])]
