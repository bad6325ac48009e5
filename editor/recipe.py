"""The recipe: a small JSON document that defines one studio image exactly.

Everything the stylist chose (network, seeds, truncation, class, noise mode,
style mix, every slider) lives here, so an image can be restored from a
download or from the PNG it was exported as. Recipes are immutable values:
an edit makes a new recipe, which is what makes undo/redo trivial.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import zlib
from typing import Any

from ganspace.recipe import RECIPE_KEY

RECIPE_FORMAT = "afro-fashion-recipe"
RECIPE_VERSION = 1
MAX_SEED = 2**32 - 1  # np.random.RandomState accepts seeds in [0, 2**32 - 1]
NOISE_MODES = ("const", "random", "none")
MAX_RECIPE_BYTES = 1_000_000  # a recipe is a few kB; anything bigger is not one
MAX_UPLOAD_BYTES = 16 << 20  # an exported PNG of a 1024 px design is ~3 MB; also Gradio's upload limit
MAX_LABEL_CHARS = {"name": 80, "description": 500, "sign": 120}
MAX_LABELLED_DIRECTIONS = 64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class RecipeError(ValueError):
    """Bad user input in a recipe or a control; the message says what to fix."""


def parse_seed(value: Any, what: str = "Seed") -> int:
    """Turn user input (int, float, text) into a valid seed or explain why not."""
    text = str(value).strip() if value is not None else ""
    try:
        number = float(text)
    except ValueError:
        raise RecipeError(f"{what} must be a whole number between 0 and {MAX_SEED}, got {text!r}.") from None
    if not math.isfinite(number) or number != int(number) or not 0 <= number <= MAX_SEED:
        raise RecipeError(f"{what} must be a whole number between 0 and {MAX_SEED}, got {text!r}.")
    return int(number)


def parse_number(value: Any, what: str, low: float, high: float) -> tuple[float, str]:
    """A number typed into a box: (value, "") when fine, (clamped value, note) when out of range.

    Anything that is not a number yet (empty, text, a lone '-' on the way to '-2') is a RecipeError,
    so the caller answers with a message and keeps the design.
    """
    try:
        number = float(str(value).strip()) if value is not None else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise RecipeError(f"{what} needs a number from {low:g} to {high:g}; got {_shown(value)}.")
    clamped = min(max(number, low), high)
    note = "" if clamped == number else f"{what} goes from {low:g} to {high:g}: set to {clamped:g}."
    return clamped, note


def _shown(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    return repr(text[:40]) if text else "an empty box"


def _finite(value: Any, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecipeError(f"{what} must be a number, got {value!r}.") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise RecipeError(f"{what} must be a number between {low} and {high}, got {value!r}.")
    return number


def check_label(name: str, description: str, sign: str, existing: int) -> None:
    """Bounds on what one user can label: every later render reads these texts under the inference lock."""
    for field, text in (("name", name), ("description", description), ("sign", sign)):
        if len(text or "") > MAX_LABEL_CHARS[field]:
            raise RecipeError(f"The direction's {field} is {len(text)} characters long; "
                              f"keep it under {MAX_LABEL_CHARS[field]}.")
    if existing >= MAX_LABELLED_DIRECTIONS:
        raise RecipeError(f"This directions file already holds {existing} labelled directions, the most the "
                          f"studio takes ({MAX_LABELLED_DIRECTIONS}); remove some from the YAML first.")


def _layer_range(value: Any, what: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise RecipeError(f"{what} must be a pair [start, end], got {value!r}.")
    start, end = (int(_finite(v, what)) for v in value)
    if start < 0 or end < start:
        raise RecipeError(f"{what} must satisfy 0 <= start <= end, got {value!r}.")
    return start, end


@dataclasses.dataclass(frozen=True)
class Mix:
    """Style mixing: layers start..end (inclusive) blend towards a second seed's W."""

    seed: int
    layers: tuple[int, int]
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One image. Sliders are in sigma units, keyed by direction name."""

    network_sha256: str
    seed: int = 0
    truncation_psi: float = 0.7
    class_idx: int | None = None
    noise_mode: str = "const"
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)  # multi-attribute networks; absent = any
    mix: Mix | None = None
    sliders: dict[str, float] = dataclasses.field(default_factory=dict)
    layer_overrides: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    components: dict[int, float] = dataclasses.field(default_factory=dict)
    component_layers: tuple[int, int] | None = None
    network_name: str = ""  # informative only (e.g. "default"): says which network to open when hashes differ

    def replace(self, **changes: Any) -> "Recipe":
        return dataclasses.replace(self, **changes)

    @property
    def label(self):
        """What the seed is mapped with: the class index, or the attribute choices as sorted pairs (hashable)."""
        return tuple(sorted(self.attributes.items())) if self.attributes else self.class_idx

    def to_dict(self) -> dict:
        return {
            "format": RECIPE_FORMAT,
            "version": RECIPE_VERSION,
            "network_sha256": self.network_sha256,
            "seed": self.seed,
            "truncation_psi": self.truncation_psi,
            "class_idx": self.class_idx,
            **({"attributes": dict(self.attributes)} if self.attributes else {}),
            "noise_mode": self.noise_mode,
            "mix": None if self.mix is None else {
                "seed": self.mix.seed, "layers": list(self.mix.layers), "weight": self.mix.weight},
            "sliders": dict(self.sliders),
            "layer_overrides": {name: list(r) for name, r in self.layer_overrides.items()},
            "components": {str(k): v for k, v in sorted(self.components.items()) if v != 0},
            "component_layers": None if self.component_layers is None else list(self.component_layers),
            **({"network_name": self.network_name} if self.network_name else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> "Recipe":
        """Validate a decoded recipe; every problem becomes a RecipeError naming the field."""
        if isinstance(data, dict) and "format" not in data and isinstance(data.get("edits"), list):
            data = studio_dict_from_export(data)
        if not isinstance(data, dict) or data.get("format") != RECIPE_FORMAT:
            raise RecipeError(f"This is not an Afro Fashion recipe (expected \"format\": \"{RECIPE_FORMAT}\").")
        if data.get("version") != RECIPE_VERSION:
            raise RecipeError(f"Recipe version {data.get('version')!r} is not supported (expected {RECIPE_VERSION}).")
        sha = data.get("network_sha256")
        if not isinstance(sha, str) or not sha:
            raise RecipeError("Recipe field network_sha256 must be the network's hash (text).")
        noise_mode = data.get("noise_mode", "const")
        if noise_mode not in NOISE_MODES:
            raise RecipeError(f"Recipe field noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}.")
        class_idx = data.get("class_idx")
        if class_idx is not None:
            class_idx = int(_finite(class_idx, "Recipe field class_idx", 0))
        mix = data.get("mix")
        if mix is not None:
            if not isinstance(mix, dict):
                raise RecipeError("Recipe field mix must be an object with seed, layers and weight.")
            mix = Mix(seed=parse_seed(mix.get("seed"), "Mix seed"),
                      layers=_layer_range(mix.get("layers"), "Mix layers"),
                      weight=_finite(mix.get("weight", 1.0), "Mix weight", 0.0, 1.0))
        sliders = _mapping(data.get("sliders"), "sliders")
        overrides = _mapping(data.get("layer_overrides"), "layer_overrides")
        components = _mapping(data.get("components"), "components")
        try:
            components = {int(k): _finite(v, f"Component {k}") for k, v in components.items()}
        except ValueError as error:
            raise RecipeError(f"Recipe field components must map component numbers to strengths ({error}).") from None
        component_layers = data.get("component_layers")
        attributes = _mapping(data.get("attributes"), "attributes")
        if not all(isinstance(k, str) and isinstance(v, str) and len(k) + len(v) < 200 for k, v in attributes.items()):
            raise RecipeError("Recipe field attributes must map attribute names to value names (text).")
        return cls(
            network_sha256=sha,
            seed=parse_seed(data.get("seed")),
            truncation_psi=_finite(data.get("truncation_psi", 0.7), "Truncation psi", -2.0, 2.0),
            class_idx=class_idx,
            noise_mode=noise_mode,
            attributes=dict(attributes),
            mix=mix,
            sliders={str(k): _finite(v, f"Slider {k!r}") for k, v in sliders.items()},
            layer_overrides={str(k): _layer_range(v, f"Layers of {k!r}") for k, v in overrides.items()},
            components=components,
            component_layers=None if component_layers is None else _layer_range(component_layers, "Component layers"),
            network_name=str(data.get("network_name") or "")[:200],
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "Recipe":
        if len(text) > MAX_RECIPE_BYTES:
            raise RecipeError("This file is too large to be a recipe.")
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise RecipeError(f"The recipe is not valid JSON ({error}).") from None
        except RecursionError:
            raise RecipeError("The recipe is nested too deeply to be a studio recipe.") from None
        return cls.from_dict(data)


def read_recipe_upload(path) -> Recipe:
    """A recipe from an uploaded .json or studio-exported .png, or a clear reason why not.

    Sizes are checked before anything is read, and a PNG's recipe is read from its text chunks
    without decoding a pixel (a 13000x13000 or 3000-frame PNG costs nothing).
    """
    try:
        size = os.path.getsize(path)
        if size > MAX_UPLOAD_BYTES:
            raise RecipeError(f"This file is {size / 2**20:.0f} MB: a recipe or exported PNG is at most "
                              f"{MAX_UPLOAD_BYTES >> 20} MB.")
        with open(path, "rb") as f:
            head = f.read(len(PNG_MAGIC))
            if head == PNG_MAGIC:
                text = png_text(f, RECIPE_KEY)
                if text is None:
                    raise RecipeError("This PNG carries no studio recipe: "
                                      "only PNGs exported by the studio can be restored.")
                return Recipe.from_json(text)
            if (head + f.read(16)).lstrip()[:1] == b"{":
                f.seek(0)
                return Recipe.from_json(f.read(MAX_RECIPE_BYTES + 1))
    except (OSError, zlib.error, UnicodeDecodeError):
        raise RecipeError("This file could not be read (is it damaged?).") from None
    raise RecipeError("Upload a recipe (.json) or a PNG exported by the studio; this file is neither.")


def png_text(f, key: str) -> str | None:
    """The text stored under ``key`` in a PNG's tEXt/zTXt/iTXt chunks; ``f`` is past the signature.

    Walks chunk headers and skips everything else, so pixels are never decompressed.
    """
    while True:
        header = f.read(8)
        if len(header) < 8:
            return None
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            return None
        if kind not in (b"tEXt", b"zTXt", b"iTXt") or length > 2 * MAX_RECIPE_BYTES:
            f.seek(length + 4, os.SEEK_CUR)
            continue
        body = f.read(length)
        f.seek(4, os.SEEK_CUR)  # CRC
        name, _, rest = body.partition(b"\0")
        if name.decode("latin-1") != key:
            continue
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":
            return _inflate(rest[1:]).decode("latin-1")
        compressed, rest = rest[:1] == b"\1", rest[2:]
        text = rest.split(b"\0", 2)[-1]  # after the language tag and the translated keyword
        return (_inflate(text) if compressed else text).decode("utf-8")


def _inflate(data: bytes) -> bytes:
    """zlib data of at most MAX_RECIPE_BYTES once inflated (a compressed text chunk can be a bomb)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_RECIPE_BYTES + 1)
    if len(out) > MAX_RECIPE_BYTES:
        raise RecipeError("This PNG's recipe is too large to be a studio recipe.")
    return out


def studio_dict_from_export(data: dict) -> dict:
    """A `ganspace export` PNG recipe (seed, psi, class, edits by direction) as a studio recipe dict.

    Batch exports from the studio are written by the ganspace exporter; mapping their edits back onto
    the sliders of the same names lets a stylist drop any exported PNG into the studio.
    """
    sliders, overrides = {}, {}
    for edit in data["edits"]:
        name = edit.get("direction") if isinstance(edit, dict) else None
        if not isinstance(name, str) or not name:
            raise RecipeError("This PNG's edits are raw vectors without direction names; "
                              "only exports of labelled directions can be restored in the studio.")
        if name in sliders:
            raise RecipeError(f"This PNG's recipe moves direction {name!r} twice; the studio has one slider each.")
        sliders[name] = edit.get("strength")
        overrides[name] = edit.get("layers")
    return {"format": RECIPE_FORMAT, "version": RECIPE_VERSION, "network_sha256": data.get("network_sha256"),
            "seed": data.get("seed"), "truncation_psi": data.get("truncation_psi", 0.7),
            "class_idx": data.get("class_idx"), "noise_mode": data.get("noise_mode", "const"),
            **({"attributes": data["attributes"]} if data.get("attributes") else {}),
            "sliders": sliders, "layer_overrides": overrides}


def _mapping(value: Any, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecipeError(f"Recipe field {field} must be an object (name: value).")
    return value
