"""HWC uint8 pictures: to PIL, and many of them tiled into one contact sheet (training grids, exports, generate)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image


def to_pil(pixels: np.ndarray) -> Image.Image:
    """HWC uint8 (C = 1 or 3) -> PIL image."""
    return Image.fromarray(pixels[..., 0], "L") if pixels.shape[-1] == 1 else Image.fromarray(pixels, "RGB")


def image_grid(images: Sequence[np.ndarray], cols: int | None = None, pad: int = 2,
               background: int = 255) -> np.ndarray:
    """Tile equally sized HWC uint8 images row by row (`cols` per row, square by default) into one sheet."""
    if not len(images):
        raise ValueError("no images to tile")
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w, c = images[0].shape
    sheet = np.full([rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, c], background, np.uint8)
    for i, im in enumerate(images):
        r, k = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        sheet[y:y + h, x:x + w] = im
    return sheet
