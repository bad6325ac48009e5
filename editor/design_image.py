"""The design picture, sent inside a slider move's answer instead of as a file fetched afterwards.

Why: a plain gr.Image answers a move with a file: Gradio encodes a PNG at zlib level 6, hashes and writes
it, and the browser fetches it once the answer has arrived. On a slider move that is the only latency that
is not the render (benchmarks/bench_studio_latency.py prints where a move's time goes); a data URL of a
level-1 PNG (same pixels, ~15% more bytes) skips the file and the second request. Only moves use it
(`InlinePicture`): every other event, and so every API client, still gets a file to download.
"""
from __future__ import annotations

import base64
import dataclasses
import io

import gradio as gr
import numpy as np
import PIL.Image
from gradio.data_classes import ImageData

PREVIEW_PNG_LEVEL = 1  # zlib level: 256 px, 11 ms at level 1 against 25 ms at level 6 (Gradio's)


@dataclasses.dataclass(frozen=True, eq=False)
class InlinePicture:
    """A handler's value for the design image that travels inline (uint8 [H, W, C] pixels)."""
    pixels: np.ndarray


def png_data_url(pixels: np.ndarray, level: int = PREVIEW_PNG_LEVEL) -> str:
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, "png", compress_level=level)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class DesignImage(gr.Image):
    """gr.Image that also takes an InlinePicture (sent as a data URL)."""

    def get_block_name(self) -> str:
        return "image"  # the browser draws it as an ordinary image

    def postprocess(self, value):
        if isinstance(value, InlinePicture):
            return ImageData(url=png_data_url(value.pixels), mime_type="image/png")
        return super().postprocess(value)
