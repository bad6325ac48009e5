"""The dominant garment colour measured on the photo, named with the vocabulary's colours.

Titles often omit the colour, yet it is the one attribute a photo shows reliably: the garment is
what differs from the backdrop (estimated from the border ring, as the framing does) in the central
part of the frame (product photos centre the garment; a patterned floor at the edges is not it), and
each of its pixels is named by the nearest reference colour of the vocabulary (`rgb:` entries) in
CIELAB, where distances follow perceived differences: greyish pixels (low chroma) only among the
greyish references (black, grey, white), coloured ones only among the coloured references with
lightness counting half, so light blue stays blue and a shadowed red stays red. One name covering
most of the garment wins; several large ones give the attribute's `combine` value (multicolour); a
garment hardly distinct from its backdrop gives nothing, since guessing there would be dishonest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .framing import estimate_background

BACKDROP_DISTANCE = 30.0   # CIELAB ΔE from the backdrop colour above which a pixel counts as garment
MIN_GARMENT_SHARE = 0.05   # below this share of the frame the garment cannot be told from the backdrop
DOMINANT_SHARE = 0.5       # one colour name must cover this share of the garment pixels...
SECOND_SHARE = 0.2         # ...else two names each covering this much make it the combine value (multicolour)
MEASURE_SIZE = 64          # pixels on the long side the colour is measured at: enough, and cheap
CENTRE = 0.6               # the central share of width and height where the garment is looked for
GREY_CHROMA = 12.0         # CIELAB chroma below which a pixel (or reference) counts as greyish
LIGHTNESS_WEIGHT = 0.5     # weight of the lightness difference among coloured references


@dataclass(frozen=True)
class Palette:
    """Reference colours of one attribute (the vocabulary's `rgb:` entries) and its combine value."""
    names: tuple[str, ...]
    rgb: np.ndarray              # [K, 3] uint8
    combine: str | None = None

    @property
    def lab(self) -> np.ndarray:
        return srgb_to_lab(self.rgb[None].astype(np.float64))[0]


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..255 (any leading shape, last axis 3) -> CIELAB (D65), float64."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.2126729, 0.0193339],
                             [0.3575761, 0.7151522, 0.1191920],
                             [0.1804375, 0.0721750, 0.9503041]])
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def garment_mask(lab: np.ndarray, backdrop_lab: np.ndarray) -> np.ndarray:
    """Pixels far enough from the backdrop colour to be garment (a flat-lay or hanger photo's backdrop)."""
    return np.linalg.norm(lab - backdrop_lab, axis=-1) > BACKDROP_DISTANCE


def chroma(lab: np.ndarray) -> np.ndarray:
    return np.hypot(lab[..., 1], lab[..., 2])


def name_pixels(pixels: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Index of the reference naming each CIELAB pixel [N, 3]: greyish pixels among greyish references, coloured
    ones among coloured references (lightness weighted by LIGHTNESS_WEIGHT)."""
    grey_pixel, grey_reference = chroma(pixels) < GREY_CHROMA, chroma(references) < GREY_CHROMA
    weight = np.array([LIGHTNESS_WEIGHT, 1.0, 1.0])
    distance = (((pixels[:, None, :] - references[None]) * weight) ** 2).sum(-1)
    if grey_reference.any() and (~grey_reference).any():   # a palette of one kind only: plain nearest
        distance[grey_pixel[:, None] != grey_reference[None, :]] = np.inf
    return np.argmin(distance, axis=1)


def measure_colour(image: Image.Image, palette: Palette) -> str | None:
    """The colour name of the garment in `image`, the combine value for prints, or None when unsure."""
    if not len(palette.names):
        return None
    image = image.convert("RGB")
    scale = MEASURE_SIZE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BOX)
    lab = srgb_to_lab(np.asarray(image))
    mask = garment_mask(lab, srgb_to_lab(np.array(estimate_background(image), np.float64)))
    h, w = mask.shape
    top, left = round(h * (1 - CENTRE) / 2), round(w * (1 - CENTRE) / 2)
    mask[:top], mask[h - top:], mask[:, :left], mask[:, w - left:] = False, False, False, False
    if mask.mean() < MIN_GARMENT_SHARE:
        return None
    shares = np.bincount(name_pixels(lab[mask], palette.lab), minlength=len(palette.names)) / mask.sum()
    order = np.argsort(-shares)
    if shares[order[0]] >= DOMINANT_SHARE:
        return palette.names[order[0]]
    if palette.combine and shares[order[1]] >= SECOND_SHARE:
        return palette.combine
    return None


def vocabulary_palette(vocabulary, attribute: str = "colour") -> Palette:
    """The reference colours a vocabulary gives `attribute` (values without `rgb:` are never measured)."""
    references = vocabulary.rgb.get(attribute, {})
    return Palette(tuple(references), np.array(list(references.values()), np.uint8).reshape(-1, 3),
                   vocabulary.combine.get(attribute))
