"""Layer ranges of W+ codes: named groups and parsing of what people type.

Every range here is INCLUSIVE (start, end), as in the GANSpace paper's E(v_i, j-k),
because people read and write "2-5" meaning layers 2, 3, 4 and 5.

Layer l of a StyleGAN2 W+ code (num_ws = 2*log2(res) - 2 layers) drives the
synthesis block at resolution 2**(l // 2 + 2).  Groups follow GANSpace's split by
resolution: coarse = 4-8 px, middle = 16-32 px, fine = 64 px and above.  Networks
below 64 px have no fine layers under that rule, so there the resolution levels are
split into three contiguous parts instead (16 px: 4 | 8 | 16; 32 px: 4-8 | 16 | 32).
"""
from __future__ import annotations

import re
from typing import Sequence, Union

GROUP_NAMES = ("all", "coarse", "middle", "fine")
LayerSpec = Union[str, int, Sequence[int]]


def _resolution_of_layer(layer: int) -> int:
    return 2 ** (layer // 2 + 2)


def layer_groups(num_ws: int) -> dict[str, tuple[int, int]]:
    """Named inclusive layer ranges for a network with `num_ws` W+ layers."""
    if num_ws < 6 or num_ws % 2:
        raise ValueError(f"named layer groups need an even num_ws >= 6 (a 16 px or larger network), got {num_ws}")
    levels = sorted({_resolution_of_layer(i) for i in range(num_ws)})
    if levels[-1] >= 64:
        parts = [[r for r in levels if r <= 8], [r for r in levels if 16 <= r <= 32], [r for r in levels if r >= 64]]
    else:
        third, extra = divmod(len(levels), 3)
        sizes = [third + (i < extra) for i in range(3)]
        parts = [levels[sum(sizes[:i]):sum(sizes[:i + 1])] for i in range(3)]
    groups = {"all": (0, num_ws - 1)}
    for name, resolutions in zip(GROUP_NAMES[1:], parts):
        layers = [i for i in range(num_ws) if _resolution_of_layer(i) in resolutions]
        groups[name] = (layers[0], layers[-1])
    return groups


def format_layers(layers: tuple[int, int]) -> str:
    """The text form people write: '3' for a single layer, '2-5' for a range."""
    start, end = layers
    return str(start) if start == end else f"{start}-{end}"


def parse_layers(spec: LayerSpec, num_ws: int) -> tuple[int, int]:
    """Turn '2-5', 'coarse', '3', 3 or [2, 5] into an inclusive (start, end) checked against num_ws."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in GROUP_NAMES:
            return layer_groups(num_ws)[text]
        match = re.fullmatch(r"(\d+)\s*(?:[-\u2013:]\s*(\d+))?", text)
        if not match:
            raise ValueError(f"layer range {spec!r} not understood: write a group ({', '.join(GROUP_NAMES)}), "
                             f"one layer like '3' or an inclusive range like '2-5'")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
    elif isinstance(spec, bool):
        raise ValueError(f"layer range {spec!r} not understood")
    elif isinstance(spec, int):
        start = end = spec
    else:
        values = list(spec)
        if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(f"layer range {spec!r} must be two integers [start, end] (inclusive)")
        start, end = values
    if not 0 <= start <= end < num_ws:
        raise ValueError(f"layer range {start}-{end} is outside 0-{num_ws - 1} (inclusive) or reversed; "
                         f"this network has {num_ws} W+ layers")
    return start, end
