"""Multi-attribute conditioning labels: one block per attribute in one vector.

A cartesian class (garment x fabric x colour) has thousands of classes with a handful of images each;
a multi-hot vector has one one-hot block per attribute (garment, fabric, colour, ...), and a block of
zeros where the value is unknown or left "any". The layout (attribute names, their values, offsets)
travels in dataset.json and in the checkpoint's metadata, so every tool can name a label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

ANY = "any"   # the word for "leave this attribute open" (an all-zero block) in --attr and the studio
ALL = "all"   # --attr NAME=all: one picture per value of that attribute


class LabelLayoutError(ValueError):
    """A label layout or an attribute choice does not fit; the message says what is allowed."""


@dataclass(frozen=True)
class Block:
    name: str
    values: tuple[str, ...]
    captions: tuple[str, ...]
    offset: int

    @property
    def stop(self) -> int:
        return self.offset + len(self.values)


@dataclass(frozen=True)
class LabelLayout:
    blocks: tuple[Block, ...]

    @classmethod
    def build(cls, attributes: Sequence[tuple[str, Sequence[str], Sequence[str] | None]]) -> "LabelLayout":
        """From (name, value keys, captions or None) per attribute, in order."""
        blocks, offset = [], 0
        for name, values, captions in attributes:
            values = tuple(str(v) for v in values)
            captions = tuple(str(c) for c in captions) if captions is not None else values
            blocks.append(Block(str(name), values, captions, offset))
            offset += len(values)
        return cls(tuple(blocks))

    @property
    def dim(self) -> int:
        return self.blocks[-1].stop if self.blocks else 0

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks]

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """(start, stop) of each block, the unit that --attr-dropout zeroes."""
        return [(b.offset, b.stop) for b in self.blocks]

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise LabelLayoutError(f"unknown attribute {name!r}: this network's attributes are {', '.join(self.names)}")

    def to_json(self) -> dict:
        return {"kind": "multi-hot", "dim": self.dim,
                "blocks": [{"name": b.name, "offset": b.offset, "values": list(b.values), "captions": list(b.captions)}
                           for b in self.blocks]}

    @classmethod
    def from_json(cls, data) -> "LabelLayout":
        """Read and check a layout written by to_json (dataset.json 'label_layout', checkpoint meta)."""
        try:
            layout = cls.build([(b["name"], b["values"], b.get("captions")) for b in data["blocks"]])
            stated = [(int(b["offset"]), int(data["dim"])) for b in data["blocks"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelLayoutError(f"not a label layout ({type(exc).__name__}: {exc})") from None
        if any(len(b.values) == 0 or len(b.captions) != len(b.values) for b in layout.blocks) or \
                len(set(layout.names)) != len(layout.names) or \
                [s[0] for s in stated] != [b.offset for b in layout.blocks] or \
                any(s[1] != layout.dim for s in stated):
            raise LabelLayoutError("label layout: blocks must be non-empty, uniquely named, with captions for every "
                                   "value and offsets that follow one another up to 'dim'")
        return layout

    def encode(self, selection: Mapping[str, str | None]) -> np.ndarray:
        """{attribute: value key or caption, or None/'any'} -> float32 [dim]; attributes not named stay zero."""
        vector = np.zeros(self.dim, np.float32)
        for name, value in selection.items():
            block = self.block(name)
            if value is None or value == ANY:
                continue
            vector[block.offset + self.value_index(block, value)] = 1
        return vector

    @staticmethod
    def value_index(block: Block, value: str) -> int:
        if value in block.values:
            return block.values.index(value)
        if value in block.captions:
            return block.captions.index(value)
        raise LabelLayoutError(f"unknown {block.name} {value!r}: choose {ANY} or one of {', '.join(block.values)}")

    def decode(self, vector) -> dict[str, str | None]:
        """float [dim] -> {attribute: value key, or None for an all-zero block}."""
        vector = np.asarray(vector, np.float64).reshape(-1)
        if vector.shape != (self.dim,):
            raise LabelLayoutError(f"a label of {vector.shape[0]} numbers does not fit this layout of {self.dim}")
        out: dict[str, str | None] = {}
        for b in self.blocks:
            part = vector[b.offset:b.stop]
            out[b.name] = b.values[int(part.argmax())] if part.max() > 0 else None
        return out

    def parse(self, specs: Iterable[str]) -> dict[str, str | None]:
        """['garment=dress', 'fabric=any'] (the --attr options) -> a checked selection."""
        selection: dict[str, str | None] = {}
        for spec in specs:
            name, sep, value = str(spec).partition("=")
            if not sep or not name.strip() or not value.strip():
                raise LabelLayoutError(f"--attr {spec!r}: write ATTRIBUTE=VALUE, e.g. {self._example()}")
            name, value = name.strip(), value.strip()
            block = self.block(name)
            if name in selection:
                raise LabelLayoutError(f"--attr {name} is given twice")
            selection[name] = None if value == ANY else block.values[self.value_index(block, value)]
        return selection

    def expand(self, specs: Iterable[str]) -> list[tuple[str, dict[str, str | None]]]:
        """--attr specs where NAME=all stands for every value of NAME -> (file-name suffix, selection) per
        combination, e.g. [('-dress-red', {...}), ('-dress-blue', {...}), ...]."""
        fixed, spread = [], []
        for spec in specs:
            name, _, value = str(spec).partition("=")
            if value.strip() == ALL:
                spread.append(name.strip())
            else:
                fixed.append(spec)
        base = self.parse(fixed)
        combos: list[tuple[str, dict[str, str | None]]] = [("", base)]
        for name in spread:
            if name in base or spread.count(name) > 1:
                raise LabelLayoutError(f"--attr {name} is given twice")
            values = self.block(name).values
            combos = [(suffix + "-" + value, {**selection, name: value}) for suffix, selection in combos for value in values]
        return combos

    def _example(self) -> str:
        b = self.blocks[0]
        return f"{b.name}={b.values[0]}"

    def describe(self) -> str:
        """For messages: 'garment (dress, skirt, ...), colour (red, blue, ...)'."""
        def values(b):
            return ", ".join(b.values[:4]) + (", ..." if len(b.values) > 4 else "")
        return "; ".join(f"{b.name}: {values(b)}" for b in self.blocks)


def attribute_labels(layout: LabelLayout | None, specs: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """--attr options -> (file-name suffix, label vector) per picture; unnamed attributes stay "any" (zeros)."""
    if layout is None:
        raise LabelLayoutError("--attr needs a multi-attribute network (trained on dataset_tool.py --multi-hot "
                               "data); use --class for this one")
    return [(suffix, layout.encode(selection)) for suffix, selection in layout.expand(specs)]


def layout_from_meta(meta: Mapping | None) -> LabelLayout | None:
    """The layout a checkpoint's (or dataset.json's) metadata records, or None (one-hot classes or none)."""
    data = (meta or {}).get("label_layout")
    return LabelLayout.from_json(data) if data else None


def drop_blocks(labels: np.ndarray, offsets: Sequence[tuple[int, int]], p: float,
                rng: np.random.RandomState) -> np.ndarray:
    """Zero each (row, block) with probability p: the model learns an all-zero block as "any value"
    (dropout of whole attributes, as classifier-free guidance drops whole conditions)."""
    if p <= 0 or not len(offsets):
        return labels
    keep = rng.random_sample((labels.shape[0], len(offsets))) >= p
    out = labels.copy()
    for j, (start, stop) in enumerate(offsets):
        out[~keep[:, j], start:stop] = 0
    return out
