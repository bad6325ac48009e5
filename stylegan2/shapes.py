"""Image shapes a network can have: a base shape (h0, w0) doubled on both sides by every block.

(4, 4) is the official square; (4, 3) gives 3:4 portraits (256x192), (4, 2) 1:2 (256x128, 1024x512),
(2, 4) and (3, 4) landscapes. The longer side of the base is 4, so block names (b4 ... b{img_resolution})
and channel counts stay the official ones and `img_resolution` is the image's longer side. Plain Python
(no torch), so the dataset tool and loaders share these rules without importing the networks.
"""
from __future__ import annotations

import math
import re

SQUARE = (4, 4)


def check_base_shape(base_shape) -> tuple[int, int]:
    """(h0, w0) as ints, or ValueError: the longer side must be 4 and the other 1..4."""
    try:
        h0, w0 = (int(v) for v in base_shape)
    except (TypeError, ValueError):
        raise ValueError(f"base_shape must be two whole numbers (h0, w0), got {base_shape!r}") from None
    if not (1 <= h0 <= 4 and 1 <= w0 <= 4 and max(h0, w0) == 4) or (h0, w0) != tuple(base_shape):
        raise ValueError(f"base_shape must be (h0, w0) with the longer side 4 and the other 1..4, got {base_shape!r}")
    return h0, w0


def image_shape(img_resolution: int, base_shape=SQUARE) -> tuple[int, int]:
    """(height, width) of the images of a network whose longer side is `img_resolution`."""
    h0, w0 = check_base_shape(base_shape)
    return img_resolution * h0 // 4, img_resolution * w0 // 4


def shape_kwargs(base_shape) -> dict:
    """The base shape as a network constructor kwarg, given only when not square: square networks keep the
    official kwargs exactly (old checkpoints and official pickles, which lack it, are square)."""
    base_shape = check_base_shape(base_shape)
    return {} if base_shape == SQUARE else {"base_shape": list(base_shape)}


def network_shape(height: int, width: int) -> tuple[int, tuple[int, int]]:
    """(img_resolution, base_shape) of the network that draws height x width images, or ValueError."""
    long_side = max(height, width)
    if long_side < 4 or 2 ** int(round(math.log2(long_side))) != long_side or min(height, width) < 1 \
            or (4 * height) % long_side or (4 * width) % long_side:
        raise ValueError(f"{height}x{width} (HxW) is not a network shape: the longer side must be a power of two "
                         f">= 4 and the shorter one 1/4, 2/4, 3/4 or 4/4 of it (e.g. 256, 256x192, 256x128, 128x256)")
    return long_side, (4 * height // long_side, 4 * width // long_side)


def parse_resolution(text) -> tuple[int, int]:
    """'256' (square) or '256x192' (height x width) -> (height, width), checked by `network_shape`."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×]\s*(\d+)\s*)?", str(text).lower())
    if not match:
        raise ValueError(f"resolution {text!r} must be a number (256) or HEIGHTxWIDTH (256x192)")
    height = int(match.group(1))
    width = int(match.group(2)) if match.group(2) else height
    network_shape(height, width)
    return height, width
