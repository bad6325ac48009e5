"""Grids of images with a title and row/column labels, drawn with Pillow's default font."""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
# zlib level for sheets: level 1 wrote the default model's 48 sheets 2.3x faster than Pillow's 6 for ~4%
# more bytes (README, Performance: PNG writing had been a quarter of a compiled `--cases sheets` run).
SHEET_PNG_LEVEL = 1


@functools.lru_cache(maxsize=None)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


MIN_CELL = 64   # tiny networks' images are enlarged (pixel-exact) so labels fit beside them


def fit_cell(pixels: np.ndarray, max_cell: int) -> Image.Image:
    """RGB cell: shrunk to max_cell, or enlarged by a whole factor to at least MIN_CELL."""
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).convert("RGB")
    if max(image.size) > max_cell:  # the longer side becomes max_cell: portrait cells keep their aspect
        scale = max_cell / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    elif max(image.size) < MIN_CELL:
        factor = -(-MIN_CELL // max(image.size))
        image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    return image


def contact_sheet(cells: Sequence[Sequence[np.ndarray]], title: str, row_labels: Sequence[str],
                  col_labels: Sequence[str], max_cell: int = 256) -> Image.Image:
    """cells[row][col] uint8 HWC images -> one RGB sheet with labels.

    Cells are shown at their own size, or shrunk to `max_cell` px so large networks still
    give sheets a person can open.
    """
    images = [[fit_cell(c, max_cell) for c in row] for row in cells]
    cell_w, cell_h = images[0][0].size
    scale = max(10, min(16, cell_h // 4 + 8))
    font, title_font = _font(scale), _font(scale + 4)
    margin_left = max(_text_width(font, label) for label in row_labels) + 12
    gap = 2
    width = margin_left + len(col_labels) * (cell_w + gap)
    title_lines = wrap_title(title_font, title, width - 12)
    line_h = scale + 8
    margin_top = len(title_lines) * line_h + (scale + 10) + 8
    height = margin_top + len(row_labels) * (cell_h + gap)
    width = max([width] + [_text_width(title_font, line) + 12 for line in title_lines])
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for k, line in enumerate(title_lines):
        draw.text((6, 4 + k * line_h), line, fill=INK, font=title_font)
    for j, label in enumerate(col_labels):
        x = margin_left + j * (cell_w + gap) + (cell_w - _text_width(font, label)) // 2
        draw.text((x, margin_top - scale - 6), label, fill=INK, font=font)
    for i, (label, row) in enumerate(zip(row_labels, images)):
        y = margin_top + i * (cell_h + gap)
        draw.text((6, y + (cell_h - scale) // 2), label, fill=INK, font=font)
        for j, image in enumerate(row):
            sheet.paste(image, (margin_left + j * (cell_w + gap), y))
    return sheet


def wrap_title(font, title: str, width: int, sep: str = " | ") -> list[str]:
    """Break the title at `sep` into lines no wider than the grid (a part wider than that gets its own line)."""
    lines: list[str] = []
    for part in title.split(sep):
        if lines and _text_width(font, lines[-1] + sep + part) <= width:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return lines


@functools.lru_cache(maxsize=4096)  # a run's sheets repeat their row and column labels
def _text_width(font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)
