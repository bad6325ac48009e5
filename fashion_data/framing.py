"""Fit a cleaned photo into the square training frame.

Fashion needs the whole garment in frame, so padding (on a colour that
matches the photo's own backdrop) is the default; cropping and stretching are
there for data that is already framed.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

TRANSFORMS = ("pad", "center-crop", "center-crop-wide", "resize")
LANCZOS = Image.Resampling.LANCZOS
REDUCING_GAP = 3.0   # shrink by whole factors with a box filter first: same look, far faster on big photos


def estimate_background(image: Image.Image) -> tuple[int, ...]:
    """Median colour of the outer border ring: the photo's backdrop (white wall, grey board...)."""
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    ring = max(1, min(pixels.shape[:2]) // 50)
    border = np.concatenate([
        pixels[:ring].reshape(-1, pixels.shape[2]), pixels[-ring:].reshape(-1, pixels.shape[2]),
        pixels[:, :ring].reshape(-1, pixels.shape[2]), pixels[:, -ring:].reshape(-1, pixels.shape[2])])
    return tuple(int(v) for v in np.median(border, axis=0).round())


def _fill_for_mode(colour: tuple, mode: str):
    """An RGB colour on a greyscale canvas becomes its luma (ITU-R 601, as Pillow's own L conversion)."""
    if mode != "L":
        return tuple(colour[:3])
    if len(colour) == 1:
        return colour[0]
    red, green, blue = colour[:3]
    return round((red * 299 + green * 587 + blue * 114) / 1000)


def frame_image(image: Image.Image, resolution: int, transform: str = "pad",
                background: tuple | None = None) -> Image.Image:
    """Return a ``resolution`` x ``resolution`` image in the same mode (RGB or L)."""
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")
    width, height = image.size
    if transform == "resize":
        return image.resize((resolution, resolution), LANCZOS, reducing_gap=REDUCING_GAP)
    if transform == "center-crop":
        side = min(width, height)
        box = ((width - side) // 2, (height - side) // 2, (width - side) // 2 + side, (height - side) // 2 + side)
        return image.resize((resolution, resolution), LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    fill = background if background is not None else estimate_background(image)
    if transform == "center-crop-wide":
        crop_w, crop_h = (width, width // 2) if height >= width // 2 else (2 * height, height)
        box = ((width - crop_w) // 2, (height - crop_h) // 2, (width - crop_w) // 2 + crop_w, (height - crop_h) // 2 + crop_h)
        inner = image.resize((resolution, resolution // 2), LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    else:   # pad: the long side becomes `resolution`, the short side is centred on the backdrop
        scale = resolution / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        inner = image.resize(size, LANCZOS, reducing_gap=REDUCING_GAP)
    canvas = Image.new(image.mode, (resolution, resolution), _fill_for_mode(fill, image.mode))
    canvas.paste(inner, ((resolution - inner.width) // 2, (resolution - inner.height) // 2))
    return canvas
