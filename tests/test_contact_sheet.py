"""Contact sheets: a long title wraps at its ' | ' separators instead of widening the sheet."""
import numpy as np

from ganspace.contact_sheet import _font, _text_width, contact_sheet, fit_cell, wrap_title


def test_wrap_title_keeps_every_part_in_order_and_within_the_width():
    font = _font(14)
    parts = ["component 0", "layers 0-9 (all)", "7.9% of variance", "sigma 1.93", "columns in sigma"]
    width = _text_width(font, "layers 0-9 (all) | 7.9% of variance") + 1
    lines = wrap_title(font, " | ".join(parts), width)
    assert " | ".join(lines) == " | ".join(parts) and len(lines) > 1
    assert all(_text_width(font, line) <= width for line in lines)
    assert wrap_title(font, "short", 1000) == ["short"]
    assert wrap_title(font, "a part too wide | b", 5) == ["a part too wide", "b"]  # never split inside a part


def test_long_title_wraps_instead_of_widening_the_sheet():
    cells = [[np.full((64, 64, 3), 100 * j, np.uint8) for j in range(3)] for _ in range(2)]
    short = contact_sheet(cells, "c0", ["seed 0", "seed 1"], ["-1", "0", "+1"])
    long_title = " | ".join(["component 0", "layers 0-9 (all)", "7.9% of variance", "sigma 1.93",
                             "centred on sample"])
    long = contact_sheet(cells, long_title, ["seed 0", "seed 1"], ["-1", "0", "+1"])
    assert long.width == short.width and long.height > short.height
    pixels = np.asarray(long)
    # the grid itself is unchanged, only pushed down by the extra title lines
    grid_top = long.height - short.height
    np.testing.assert_array_equal(pixels[grid_top + 40:], np.asarray(short)[40:])


def test_large_portrait_cells_shrink_with_their_aspect():
    """A 64x48 (HxW) cell shown at most 32 px: 24 wide x 32 tall, not 32 wide x 42 tall."""
    assert fit_cell(np.zeros((64, 48, 3), np.uint8), 32).size == (24, 32)
    assert fit_cell(np.zeros((64, 64, 3), np.uint8), 32).size == (32, 32)
