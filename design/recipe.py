"""The recipe: the one written form of a design, a small JSON document that defines one image exactly.

Everything the stylist chose (network, base: a seed with ψ and class or a stored latent by sha256, noise
mode, style mix, every slider by direction name) lives here; exported files also carry the resolved edits
with their vectors (`edits`), so tools without the directions file reproduce the image. Recipes ride in
PNG text chunks under the key "afro-fashion-recipe", which is also their `format` string. Recipes are
immutable values: an edit makes a new recipe, which is what makes undo/redo trivial.

Read as well: version 1 (before stored latents: always a seed), version 2 (before the truncation centre:
always the overall average, "global") and the old batch-export form (no `format`, edits with vectors and
direction names), all mapped onto this one.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import re
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from design.model import Base, Design, Mix, RecipeError
from ganspace.edits import Edit
from toolkit.atomic import atomic_write
from stylegan2.render import TRUNCATION_CENTRES
from toolkit.parsing import MAX_SEED

RECIPE_FORMAT = RECIPE_KEY = "afro-fashion-recipe"   # the JSON's "format" and the PNG text chunk's key
RECIPE_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
NOISE_MODES = ("const", "random", "none")
MAX_RECIPE_BYTES = 1_000_000  # a recipe is a few kB; anything bigger is not one
MAX_UPLOAD_BYTES = 16 << 20  # an exported PNG of a 1024 px design is ~3 MB; also Gradio's upload limit
MAX_LABEL_CHARS = {"name": 80, "description": 500, "sign": 120}
MAX_LABELLED_DIRECTIONS = 64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHA256 = re.compile(r"[0-9a-f]{64}")


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
class Recipe:
    """One image. Sliders are in sigma units, keyed by direction name; `latent` (a sha256) replaces the
    seed as the base when set (a projected photo), and `seed` is then None."""

    network_sha256: str
    seed: int | None = 0
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
    latent: str | None = None
    truncation_centre: str = "global"   # where ψ pulls: the overall average W, or the class's ("class")

    def replace(self, **changes: Any) -> "Recipe":
        return dataclasses.replace(self, **changes)

    @property
    def label(self):
        """What the seed is mapped with: the class index, or the attribute choices as sorted pairs (hashable)."""
        return tuple(sorted(self.attributes.items())) if self.attributes else self.class_idx

    @property
    def base(self) -> Base:
        return Base(seed=self.seed, truncation_psi=self.truncation_psi, class_idx=self.label, latent=self.latent,
                    truncation_centre=self.truncation_centre)

    @property
    def noise_seed(self) -> int:
        """What seeds 'random' noise: the base seed, 0 for a latent."""
        return self.seed if self.seed is not None else 0

    def to_dict(self) -> dict:
        return {
            "format": RECIPE_FORMAT,
            "version": RECIPE_VERSION,
            "network_sha256": self.network_sha256,
            "seed": self.seed,
            "truncation_psi": self.truncation_psi,
            "truncation_centre": self.truncation_centre,
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
            **({"latent": self.latent} if self.latent else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> "Recipe":
        """Validate a decoded recipe; every problem becomes a RecipeError naming the field."""
        if isinstance(data, dict) and "format" not in data and isinstance(data.get("edits"), list):
            data = studio_dict_from_export(data)
        if not isinstance(data, dict) or data.get("format") != RECIPE_FORMAT:
            raise RecipeError(f'This is not an Afro Fashion recipe (expected "format": "{RECIPE_FORMAT}").')
        if data.get("version") not in READABLE_VERSIONS:
            raise RecipeError(f"Recipe version {data.get('version')!r} is not supported "
                              f"(this studio reads {', '.join(map(str, READABLE_VERSIONS))}).")
        sha = data.get("network_sha256")
        if not isinstance(sha, str) or not sha:
            raise RecipeError("Recipe field network_sha256 must be the network's hash (text).")
        noise_mode = data.get("noise_mode", "const")
        if noise_mode not in NOISE_MODES:
            raise RecipeError(f"Recipe field noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}.")
        centre = data.get("truncation_centre", "global")
        if centre not in TRUNCATION_CENTRES:
            raise RecipeError(f"Recipe field truncation_centre must be one of {', '.join(TRUNCATION_CENTRES)}, "
                              f"got {str(centre)[:40]!r}.")
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
        latent = data.get("latent") if data.get("version") != 1 else None
        if latent is not None and (not isinstance(latent, str) or not SHA256.fullmatch(latent)):
            raise RecipeError("Recipe field latent must be the sha256 (64 hex digits) of a stored latent.")
        return cls(
            network_sha256=sha,
            seed=None if latent is not None else parse_seed(data.get("seed")),
            latent=latent,
            truncation_psi=_finite(data.get("truncation_psi", 0.7), "Truncation psi", -2.0, 2.0),
            truncation_centre=centre,
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
        return cls.from_dict(decode_recipe(text))


def decode_recipe(text: str | bytes) -> Any:
    """The JSON of a recipe, bounded in size and nesting; any problem is a RecipeError."""
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError("This file is too large to be a recipe.")
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise RecipeError(f"The recipe is not valid JSON ({error}).") from None
    except RecursionError:
        raise RecipeError("The recipe is nested too deeply to be a studio recipe.") from None


def read_recipe_upload(path) -> Recipe:
    """A recipe from an uploaded .json or studio-exported .png, or a clear reason why not."""
    return Recipe.from_dict(read_recipe_file(path))


def read_recipe_file(path) -> Any:
    """The decoded recipe of a .json or exported .png (the dict, edits with vectors included).

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
                return decode_recipe(text)
            if (head + f.read(16)).lstrip()[:1] == b"{":
                f.seek(0)
                return decode_recipe(f.read(MAX_RECIPE_BYTES + 1))
    except (OSError, zlib.error, UnicodeDecodeError):
        raise RecipeError("This file could not be read (is it damaged?).") from None
    raise RecipeError("Upload a recipe (.json) or a PNG exported by the studio; this file is neither.")


def is_latent_file(path) -> bool:
    """A .npz (a zip) dropped into the restore box: the latent of a photo design, not a recipe."""
    try:
        with open(path, "rb") as f:
            return str(path).lower().endswith(".npz") and f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def check_photo(path) -> None:
    """The studio's upload checks for a photo to project: size first, then a PNG, JPEG or WebP signature."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
    except (OSError, TypeError):
        raise RecipeError("Choose a photo (PNG, JPEG or WebP) first.") from None
    if size > MAX_UPLOAD_BYTES:
        raise RecipeError(f"This photo is {size / 2**20:.0f} MB; the studio takes photos of at most "
                          f"{MAX_UPLOAD_BYTES >> 20} MB.")
    if not (head.startswith(PNG_MAGIC) or head.startswith(b"\xff\xd8\xff")
            or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")):
        raise RecipeError("Upload a photo as PNG, JPEG or WebP; this file is none of those.")


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
    """An old `ganspace export` PNG recipe (no "format"; seed, psi, class, edits by direction) as a recipe
    dict: its edits map back onto the sliders of the same names."""
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
    return {"format": RECIPE_FORMAT, "version": 1, "network_sha256": data.get("network_sha256"),
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


# ------------------------------------------------------------------------- PNG files and portable edits
def save_png_with_recipe(path, pixels: np.ndarray, recipe: dict) -> None:
    """Write a uint8 HWC image with its recipe, atomically (no half-written PNGs on interrupt)."""
    path = pathlib.Path(path)
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected uint8 HWC pixels with 1, 3 or 4 channels, got {pixels.dtype} {pixels.shape}")
    info = PngInfo()
    info.add_text(RECIPE_KEY, json.dumps(recipe, sort_keys=True))
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=info))


def read_recipe(source) -> dict | None:
    """The recipe dict of a PNG given as a path, bytes or PIL image; None when it has none."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (bytes, bytearray)):
        image = Image.open(io.BytesIO(source))
    else:
        image = Image.open(source)
    text = getattr(image, "text", {}).get(RECIPE_KEY) or image.info.get(RECIPE_KEY)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def edit_to_recipe(edit: Edit, **labels) -> dict:
    """JSON-ready form of an edit; `labels` (direction name, component...) are kept alongside."""
    return dict(labels, vector=edit.vector.tolist(), sigma=float(edit.sigma), layers=list(edit.layers),
                strength=float(edit.strength), mode=edit.mode,
                mean=None if edit.mean is None else edit.mean.tolist())


def edits_from_recipe(recipe: dict) -> list[Edit]:
    """The edits a recipe dict carries with their vectors, ready for apply_edits."""
    try:
        return [Edit(vector=np.asarray(e["vector"]), sigma=e["sigma"], layers=tuple(e["layers"]),
                     strength=e["strength"], mode=e.get("mode", "add"),
                     mean=None if e.get("mean") is None else np.asarray(e["mean"]))
                for e in recipe.get("edits", [])]
    except (KeyError, TypeError, ValueError) as error:
        raise RecipeError(f"The recipe's edits are malformed ({error}).") from None


def portable_design(data: dict) -> Design:
    """The design of a recipe dict from its own contents (edits with vectors), no directions file needed.

    A recipe that moves sliders but carries no vectors (one copied from the studio's Recipe tab) is refused:
    only the studio, which has the directions, can resolve those names.
    """
    recipe = Recipe.from_dict(data)
    edits = edits_from_recipe(data)
    if (recipe.sliders or recipe.components) and not edits:
        raise RecipeError("This recipe names sliders but carries no edit vectors; open it in the studio "
                          "(which has the directions), or use a recipe exported from it (PNG or downloaded JSON).")
    return Design(base=recipe.base, mix=recipe.mix, edits=tuple(edits))
