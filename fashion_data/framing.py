"""Fit a cleaned photo into the training frame (square, or portrait/landscape like 256x192).

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


def frame_image(image: Image.Image, resolution, transform: str = "pad",
                background: tuple | None = None) -> Image.Image:
    """Return the image framed to ``resolution`` (an int: square; or (height, width)) in the same mode.

    pad keeps the whole photo (the garment) at the largest size that fits the frame's aspect;
    center-crop cuts the photo to the frame's aspect; resize stretches.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")
    out_h, out_w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    width, height = image.size
    if transform == "resize":
        return image.resize((out_w, out_h), LANCZOS, reducing_gap=REDUCING_GAP)
    if transform == "center-crop":
        if width * out_h > height * out_w:   # wider than the frame: keep the full height
            crop_w, crop_h = max(1, round(height * out_w / out_h)), height
        else:
            crop_w, crop_h = width, max(1, round(width * out_h / out_w))
        box = ((width - crop_w) // 2, (height - crop_h) // 2, (width - crop_w) // 2 + crop_w, (height - crop_h) // 2 + crop_h)
        return image.resize((out_w, out_h), LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    fill = background if background is not None else estimate_background(image)
    if transform == "center-crop-wide":   # a 2:1 band, as wide as fits the frame
        crop_w, crop_h = (width, width // 2) if height >= width // 2 else (2 * height, height)
        box = ((width - crop_w) // 2, (height - crop_h) // 2, (width - crop_w) // 2 + crop_w, (height - crop_h) // 2 + crop_h)
        band_w = min(out_w, 2 * out_h)
        inner = image.resize((band_w, band_w // 2), LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    else:   # pad: the photo at the largest size inside the frame, centred on the backdrop
        scale = min(out_w / width, out_h / height)
        size = (max(1, min(out_w, round(width * scale))), max(1, min(out_h, round(height * scale))))
        inner = image.resize(size, LANCZOS, reducing_gap=REDUCING_GAP)
    canvas = Image.new(image.mode, (out_w, out_h), _fill_for_mode(fill, image.mode))
    canvas.paste(inner, ((out_w - inner.width) // 2, (out_h - inner.height) // 2))
    return canvas
