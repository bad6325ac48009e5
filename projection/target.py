"""A user's photo as the projector's target, framed exactly as the dataset tool frames training photos.

The network only knows pictures that went through ``dataset_tool.py``: decoded and normalised by
``fashion_data.cleaning`` (EXIF rotation, CMYK/16-bit/palette/transparency to RGB or L), padded to a
square on the photo's own backdrop colour and Lanczos-resized by ``fashion_data.framing``.  Framing a
target any other way would ask the generator for a picture it was never trained to make.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import torch
from PIL import Image

from fashion_data.cleaning import CleanOptions, Rejected, decode_image
from fashion_data.framing import TRANSFORMS, frame_image

MAX_PHOTO_BYTES = 50_000_000
MAX_PHOTO_PIXELS = 100_000_000
REJECTION_TEXT = {
    "empty_file": "the file is empty", "not_an_image": "it is not an image Pillow can read",
    "too_many_pixels": "it has too many pixels", "truncated": "the file is truncated",
    "undecodable": "the image data is damaged",
}


class TargetError(ValueError):
    """The photo cannot be used; the message says why."""


@dataclasses.dataclass
class Target:
    image: Image.Image        # framed, resolution x resolution, RGB or L
    tensor: torch.Tensor      # [1, C, H, W] in [-1, 1]
    sha256: str               # of the photo file's bytes, so outputs can say which photo they came from


def read_target(photo: str | os.PathLike | bytes, resolution: int, channels: int = 3,
                transform: str = "pad") -> Target:
    """Decode, normalise and frame a photo (path or bytes) for a network of ``resolution`` and ``channels``."""
    if channels not in (1, 3):
        raise TargetError(f"networks with {channels} image channels cannot be projected (only 1 or 3)")
    if transform not in TRANSFORMS:
        raise TargetError(f"unknown framing {transform!r}; choose one of {', '.join(TRANSFORMS)}")
    if isinstance(photo, bytes):
        data, name = photo, "the photo"
    else:
        name = os.fspath(photo)
        try:
            if os.path.getsize(name) > MAX_PHOTO_BYTES:
                raise TargetError(f"{name}: larger than {MAX_PHOTO_BYTES // 1_000_000} MB")
            with open(name, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise TargetError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_PHOTO_BYTES:
        raise TargetError(f"{name}: larger than {MAX_PHOTO_BYTES // 1_000_000} MB")
    try:
        image = decode_image(data, CleanOptions(channels=channels, max_pixels=MAX_PHOTO_PIXELS))
    except Rejected as rejected:
        why = REJECTION_TEXT.get(rejected.reason, rejected.reason)
        raise TargetError(f"cannot use {name}: {why}") from None
    framed = frame_image(image, resolution, transform)
    pixels = np.asarray(framed, dtype=np.float32).reshape(resolution, resolution, channels)
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1
    return Target(image=framed, tensor=tensor, sha256=hashlib.sha256(data).hexdigest())
