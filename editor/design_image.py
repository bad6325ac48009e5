"""The design picture, sent inside a slider move's answer instead of as a file fetched afterwards.

Why: a plain gr.Image answers a move with a file: Gradio encodes a PNG at zlib level 6, hashes and writes
it, and the browser fetches it once the answer has arrived. At 256 px that and the fetch were most of the
~80 ms a move took besides the render; with a data URL of a level-1 PNG (same pixels, 12-16% more bytes,
and base64 adds a third on the wire: ~170 KB at 256 px) it is ~50 ms (benchmarks/bench_studio_latency.py
prints where a move's time goes). Only moves use it (`InlinePicture`): every other event, and so every API
client, still gets a file to download.
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
