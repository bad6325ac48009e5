"""Decode one photo safely, normalise it to RGB/L, and fingerprint it for de-duplication.

Real shop and board photos are messy (truncated downloads, CMYK, 16-bit,
transparency, EXIF rotation, giant headers); every failure becomes a named
reason for the report instead of a crash.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

EXIF_ORIENTATION_TAG = 0x0112
ORIENTATIONS_THAT_SWAP_AXES = (5, 6, 7, 8)
PHASH_SIZE = 32     # the photo is shrunk to 32x32 grey before the DCT
PHASH_BLOCK = 8     # the lowest 8x8 frequencies give the 64 hash bits
COLOUR_GRID = 4     # near duplicates must also match on a 4x4 colour thumbnail
WHITE = (255, 255, 255)


class Rejected(Exception):
    """A photo that cannot go into the training set; ``reason`` is a stable report key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CleanOptions:
    channels: int = 3                       # 3 -> RGB, 1 -> L
    background: tuple | None = None         # alpha is composited on this (white when None)
    min_size: int = 0                       # shortest side after rotation, in pixels; 0 = no check
    max_aspect: float = 0.0                 # longest/shortest side; 0 = no check
    max_pixels: int = 100_000_000           # checked on the header, before any pixel is decoded
    exif_rotate: bool = True
    draft_size: int | None = None           # let JPEG decode at a reduced scale that still covers this


def decode_image(data: bytes, options: CleanOptions) -> Image.Image:
    """Bytes -> oriented RGB/L image, or raise Rejected with the reason."""
    if not data:
        raise Rejected("empty_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Rejected("not_an_image", "no known image format in the bytes") from None
    except Image.DecompressionBombError as exc:
        raise Rejected("too_many_pixels", str(exc)) from None
    except Exception as exc:  # any parser error in a hostile header is a bad file, not a crash
        raise _decode_failure(exc) from None
    width, height = image.size
    if width * height > options.max_pixels:
        raise Rejected("too_many_pixels", f"{width}x{height} > {options.max_pixels} pixels")
    _check_geometry(image, options)
    if options.draft_size and image.format == "JPEG":
        image.draft(image.mode, (options.draft_size, options.draft_size))
    try:
        image.load()
        if options.exif_rotate:
            image = ImageOps.exif_transpose(image)
    except Exception as exc:
        raise _decode_failure(exc) from None
    return normalize_mode(image, options.channels, options.background or WHITE)


def _decode_failure(exc: Exception) -> Rejected:
    reason = "truncated" if "truncated" in str(exc).lower() else "undecodable"
    return Rejected(reason, f"{type(exc).__name__}: {exc}")


def _check_geometry(image: Image.Image, options: CleanOptions) -> None:
    width, height = image.size
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1) if options.exif_rotate else 1
    except Exception:  # a broken EXIF block is harmless: ignore the rotation
        orientation = 1
    if orientation in ORIENTATIONS_THAT_SWAP_AXES:
        width, height = height, width
    short, long = min(width, height), max(width, height)
    if options.min_size and short < options.min_size:
        raise Rejected("too_small", f"{width}x{height}, shortest side < {options.min_size}")
    if options.max_aspect and long > options.max_aspect * short:
        raise Rejected("extreme_aspect", f"{width}x{height}, ratio {long / short:.1f} > {options.max_aspect:g}")


def normalize_mode(image: Image.Image, channels: int, background: tuple) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (channels=3) or L (channels=1); transparency on ``background``."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = Image.fromarray(_to_uint8(np.asarray(image), image.mode), "L")
    elif image.mode == "1":
        image = image.convert("L")
    if image.mode in ("P", "PA", "L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, tuple(background))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        image = canvas
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")   # CMYK (Adobe-inverted too), YCbCr, LAB, HSV, P
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def _to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    """16-bit and float greys -> 0..255 (16-bit PNGs use the full 0..65535 range).

    Integer arithmetic, a band of rows at a time: a 100-megapixel 16-bit PNG must not become
    800 MB of float64 (x = v + 128; (x - (x >> 8)) >> 8 is round(v / 257) for every 16-bit v).
    """
    out = np.empty(pixels.shape, dtype=np.uint8)
    sixteen = mode.startswith("I;16") or (mode == "I" and pixels.max(initial=0) > 255)
    rows = max(1, (1 << 20) // max(1, pixels[0].size if pixels.ndim else 1))
    for start in range(0, len(pixels), rows):
        band = pixels[start:start + rows]
        if mode == "F":
            out[start:start + rows] = np.clip(np.rint(band), 0, 255)
        elif sixteen:
            x = np.clip(band, 0, 65535).astype(np.uint32)
            x += 128
            x -= x >> 8
            x >>= 8
            out[start:start + rows] = x
        else:
            out[start:start + rows] = np.clip(band, 0, 255)
    return out


def content_hash(image: Image.Image) -> str:
    """Hash of the decoded pixels: the same photo saved twice (other metadata, other name) collides."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(PHASH_SIZE)


def perceptual_hash(image: Image.Image) -> int:
    """64-bit DCT hash: low-frequency structure survives resizing, re-compression and small edits."""
    # Lanczos, not box: on real photos it keeps resized+recompressed copies within 2 bits (box: up to 12)
    grey = np.asarray(image.convert("L").resize((PHASH_SIZE, PHASH_SIZE), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:PHASH_BLOCK, :PHASH_BLOCK].ravel()
    median = np.median(low[1:])   # the DC term only measures brightness
    bits = low > median
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def colour_layout(image: Image.Image) -> bytes:
    """A 4x4 colour thumbnail (uint8 bytes): the grey hash cannot tell a navy dress from a royal-blue
    one on the same backdrop; this can, while re-encoded copies stay within a few levels."""
    return np.asarray(image.resize((COLOUR_GRID, COLOUR_GRID), Image.Resampling.BOX), dtype=np.uint8).tobytes()


def fingerprint(image: Image.Image) -> tuple[int, bytes]:
    return perceptual_hash(image), colour_layout(image)


def colour_distance(a: bytes, b: bytes) -> int:
    """Largest per-cell, per-channel difference between two colour layouts."""
    return int(np.abs(np.frombuffer(a, np.uint8).astype(np.int16) - np.frombuffer(b, np.uint8)).max())


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class NearDuplicateIndex:
    """Find an earlier photo whose hash is within ``threshold`` bits and whose colour layout is close.

    Split the 64 bits into threshold+1 chunks: two hashes that differ in at most
    ``threshold`` bits agree exactly on at least one chunk (pigeonhole), so only
    hashes sharing a chunk value need a full comparison. The colour check keeps
    the same garment in another colourway (same shape, same hash) as a new image.
    """

    def __init__(self, threshold: int, colour_tolerance: int = 20):
        if not 0 <= threshold <= 16:
            raise ValueError(f"near-duplicate threshold must be 0..16 bits, got {threshold}")
        self.threshold = threshold
        self.colour_tolerance = colour_tolerance
        edges = np.linspace(0, 64, threshold + 2).astype(int)
        self._chunks = [(int(lo), (1 << int(hi - lo)) - 1) for lo, hi in zip(edges[:-1], edges[1:])]
        self._tables: list[dict[int, list[tuple]]] = [{} for _ in self._chunks]
        self._count = 0

    def find(self, value: int, colour: bytes) -> tuple[str, int] | None:
        """The closest earlier (key, distance), ties to the earliest added; None when none is near."""
        best = None   # (distance, insertion order, key)
        for (shift, mask), table in zip(self._chunks, self._tables):
            for other, other_colour, order, key in table.get((value >> shift) & mask, ()):
                candidate = (hamming(value, other), order, key)
                if (candidate[0] <= self.threshold and (best is None or candidate < best)
                        and colour_distance(colour, other_colour) <= self.colour_tolerance):
                    best = candidate
        return None if best is None else (best[2], best[0])

    def add(self, value: int, colour: bytes, key: str) -> None:
        self._count += 1
        for (shift, mask), table in zip(self._chunks, self._tables):
            table.setdefault((value >> shift) & mask, []).append((value, colour, self._count, key))
