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
from typing import Any

RECIPE_FORMAT = "afro-fashion-recipe"
RECIPE_VERSION = 1
MAX_SEED = 2**32 - 1  # np.random.RandomState accepts seeds in [0, 2**32 - 1]
NOISE_MODES = ("const", "random", "none")
MAX_RECIPE_BYTES = 1_000_000  # a recipe is a few kB; anything bigger is not one


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
    mix: Mix | None = None
    sliders: dict[str, float] = dataclasses.field(default_factory=dict)
    layer_overrides: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    components: dict[int, float] = dataclasses.field(default_factory=dict)
    component_layers: tuple[int, int] | None = None
    network_name: str = ""  # informative only (e.g. "default"): says which network to open when hashes differ

    def replace(self, **changes: Any) -> "Recipe":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {
            "format": RECIPE_FORMAT,
            "version": RECIPE_VERSION,
            "network_sha256": self.network_sha256,
            "seed": self.seed,
            "truncation_psi": self.truncation_psi,
            "class_idx": self.class_idx,
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
        return cls(
            network_sha256=sha,
            seed=parse_seed(data.get("seed")),
            truncation_psi=_finite(data.get("truncation_psi", 0.7), "Truncation psi", -2.0, 2.0),
            class_idx=class_idx,
            noise_mode=noise_mode,
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
        return cls.from_dict(data)


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
            "sliders": sliders, "layer_overrides": overrides}


def _mapping(value: Any, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecipeError(f"Recipe field {field} must be an object (name: value).")
    return value
