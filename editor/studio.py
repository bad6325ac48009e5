"""The studio's plain-Python core: turns recipes into images, shared by every session.

Why a class apart from the UI: tests and scripts drive it directly, and the
Gradio app stays thin wiring. One Studio per process holds the network, the
directions, a per-seed cache of unedited W codes and a small cache of rendered
recipes (undo, redo, parents and the tray show images already drawn); all
inference runs under one lock so concurrent requests never interleave (seeded
'random' noise included). A recipe becomes a `design.model.Design` (`design`: sliders resolved to
edits) and W+ through `design.model.design_ws`, the one implementation every tool shares. A design may
start from a stored latent (a projected photo, `latents`, kept per user beside the sessions).

Directions come in two layers: the model's own file (`directions_path`, never
written when `labels_path` is given) and the user's labels (`labels_path`),
which win on a name clash.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import json
import pathlib
import random
import tempfile
import threading
import time

import numpy as np
import torch

from design.model import Base, Design, LatentMissing, base_ws, design_ws
from design.recipe import MAX_SEED, Mix, Recipe, RecipeError, check_label, check_photo, edit_to_recipe
from fashion_models import Model
from ganspace.components import Components, load_components
from ganspace.directions import Direction, DirectionsError, DirectionsFile, append_direction, load_directions
from ganspace.edits import Edit
from ganspace.hints import STATISTICS, per_image_changes, visibility
from ganspace.layers import GROUP_NAMES, format_layers, layer_groups, parse_layers
from stylegan2.compiled import RENDER_BATCH, compile_generator, short_gil_turns, warm_up, warming_up
from projection.distance import make_distance
from projection.latent import LatentError, LatentFolder, ProjectedW, load as latent_load, to_bytes as latent_bytes
from projection.projector import ProjectOptions, project
from projection.target import TargetError, read_target
from stylegan2.labels import LabelLayoutError
from stylegan2.render import synthesize_uint8
from toolkit.atomic import atomic_write_text

BROWSE_BATCH = RENDER_BATCH
IMAGE_CACHE = 64        # rendered recipes kept (a 1024 px image is 3 MB)
MIX_HINT_PAIRS = 8      # seed pairs mixed per layer group to measure what each group carries
MIX_HINT_PSI = 0.7      # their truncation: typical designs, as the studio opens on
MIX_HINTS_IDLE_S = 1.0  # the hints' background renders wait until the user has not drawn anything this long
PROJECT_STEPS = 300     # a recognisable W+ fit of a 64 px photo in ~20 CPU seconds (README, benchmarks)
MAX_PROJECT_STEPS = 1000
PROJECT_W_AVG_SAMPLES = 4096   # w_avg to start from: the official 10,000 is a second more for no visible gain


def _warm_up_beside_renders(G, batch_sizes) -> None:
    """The background compile, with short GIL turns so that renders meanwhile keep their pace."""
    with short_gil_turns():
        warm_up(G, batch_sizes)


class Studio:
    def __init__(self, network: Model, directions_path: str | pathlib.Path | None = None,
                 components_path: str | pathlib.Path | None = None, device: str = "cpu",
                 cache_size: int = 1024, labels_path: str | pathlib.Path | None = None,
                 compile: bool | None = None, latents: LatentFolder | None = None,
                 mix_hints_file: str | pathlib.Path | None = None):
        self.device = torch.device(device)
        self.latents = latents or LatentFolder(tempfile.mkdtemp(prefix="afro-studio-latents-"))
        self.G = network.generator().to(self.device)
        self.network = network
        self.network_sha256 = network.sha256
        self.num_ws = int(self.G.num_ws)
        self.groups = layer_groups(self.num_ws)
        self.components: Components | None = load_components(components_path) if components_path else None
        self.components_path = pathlib.Path(components_path) if components_path else None
        self.directions_path = pathlib.Path(directions_path) if directions_path else None
        self.labels_path = pathlib.Path(labels_path) if labels_path else self.directions_path
        self.directions_file: DirectionsFile | None = None
        self._lock = threading.RLock()
        self._projecting = threading.Lock()
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._cache_size = cache_size
        self._images: collections.OrderedDict = collections.OrderedDict()
        self._mix_hints: dict[str, str] | None = None
        self._measuring_mix_hints = threading.Lock()
        self.mix_hints_file = pathlib.Path(mix_hints_file) if mix_hints_file else None
        self._last_user_render = 0.0  # time.monotonic() of the last design or browse render
        self.reload_directions()
        self.compiling = compile_generator(self.G, compile, background=True)
        if self.compiling:  # compiled in the background: renders run eager until it is done, never wait for it
            threading.Thread(target=_warm_up_beside_renders, args=(self.G, (1, BROWSE_BATCH)),
                             name="compile-warm-up", daemon=True).start()

    @property
    def warming_up(self) -> bool:
        """True while the compiled generator is still being prepared (renders meanwhile run eager)."""
        return warming_up(self.G)

    # ----------------------------------------------------------------- directions
    @property
    def directions(self) -> list[Direction]:
        return list(self.directions_file.directions) if self.directions_file else []

    def direction(self, name: str) -> Direction:
        for direction in self.directions:
            if direction.name == name:
                return direction
        raise RecipeError(f"Direction {name!r} is not in this studio's directions file.")

    def reload_directions(self) -> None:
        """(Re)read the model's YAML and the user's labels over it; files that do not exist yet just
        mean no labelled directions."""
        files = [load_directions(path, network_sha256=self.network_sha256, components=self.components)
                 for path in dict.fromkeys((self.directions_path, self.labels_path)) if path and path.exists()]
        self._images.clear()  # a relabelled name may now move the picture differently
        if not files:
            self.directions_file = None
            return
        merged = {d.name: d for f in files for d in f.directions}
        self.directions_file = dataclasses.replace(files[0], directions=list(merged.values()))

    def label_component(self, index: int, name: str, description: str = "", sign: str = "",
                        layers: str | tuple[int, int] | None = None, slider_range: float = 3.0) -> Direction:
        """Turn PCA component `index` into a named direction appended to the labels file (atomic, with .bak)."""
        if self.components is None:
            raise RecipeError("No components loaded: start the studio with --components FILE.")
        if self.labels_path is None:
            raise RecipeError("No file to save labels in: start the studio with --labels FILE.yaml.")
        if not 0 <= int(index) < len(self.components.comp):
            raise RecipeError(f"Component must be between 0 and {len(self.components.comp) - 1}, got {index}.")
        name = (name or "").strip()
        if not name:
            raise RecipeError("Give the direction a name, e.g. 'sleeve length'.")
        check_label(name, description, sign, len(self.directions))
        if any(d.name == name for d in self.directions):
            raise RecipeError(f"A direction named {name!r} already exists; choose another name.")
        index = int(index)
        direction = Direction(
            name=name, description=description or "", component=index,
            vector=np.asarray(self.components.comp[index], dtype=np.float32),
            layers=self.layer_range(layers if layers not in (None, "") else "all"),
            mode="add", sigma=float(self.components.stdev[index]), mean=self.components.mean,
            slider_min=-float(slider_range), slider_max=float(slider_range), default=0.0, sign=sign or "")
        with self._lock:
            append_direction(self.labels_path, direction, network_sha256=self.network_sha256,
                             components_path=self.components_path.resolve() if self.components_path else None)
            self.reload_directions()
        return direction

    def layer_range(self, spec) -> tuple[int, int]:
        """Parse "coarse", "2-5", "3" or a pair into an inclusive range, with a helpful error."""
        try:
            return tuple(int(v) for v in parse_layers(spec, self.num_ws))
        except (ValueError, TypeError, KeyError) as error:
            raise RecipeError(f"Layers {spec!r} not understood ({error}). Use a group "
                              f"({', '.join(self.groups)}), a layer like 3 or a range like 2-5 "
                              f"within 0-{self.num_ws - 1}.") from None

    # -------------------------------------------------------------------- recipes
    @property
    def truncation_centre(self) -> str:
        """Where ψ pulls new designs and the browse grid: a conditional network's class average, so that a
        lower ψ keeps the garment of the chosen class (stylegan2.render.TRUNCATION_CENTRES); opened recipes
        keep their own."""
        return "class" if self.G.c_dim else "global"

    def new_recipe(self, seed: int = 0, truncation_psi: float = 0.7, class_idx: int | None = None) -> Recipe:
        return Recipe(network_sha256=self.network_sha256, seed=seed, truncation_psi=truncation_psi,
                      class_idx=(class_idx or 0) if self.G.c_dim and self.network.label_layout is None else None,
                      network_name=self.network.describe().name, truncation_centre=self.truncation_centre)

    def start_recipe(self) -> Recipe:
        """Where a new design starts: the model card's representative (class, seed), else seed 0."""
        start = self.network.describe().start
        if start is None:
            return self.new_recipe()
        label, seed = start
        names = self.network.class_names or []
        class_idx = names.index(label) if label in names else label if isinstance(label, int) else 0
        return self.new_recipe(seed=seed, class_idx=class_idx if 0 <= class_idx < self.G.c_dim else 0)

    def check(self, recipe: Recipe) -> Recipe:
        """Raise RecipeError when `recipe` cannot be rendered by this studio, saying why."""
        Recipe.from_dict(recipe.to_dict())  # field ranges (psi, mix weight, noise mode...) in one place
        if recipe.network_sha256 != self.network_sha256:
            name = recipe.network_name
            raise RecipeError(
                f"This recipe was made with network {name or '(name not recorded)'}, weights sha256 "
                f"{recipe.network_sha256}; this studio runs {self.network.describe().name}, sha256 "
                f"{self.network_sha256}. To restore it, start the studio on that network: "
                f"`python -m editor --network {name if name else 'FILE'}` (the file whose sha256 is the one above).")
        layout = self.network.label_layout
        if layout is not None:
            if recipe.class_idx is not None:
                raise RecipeError(f"This network is conditioned on attributes ({', '.join(layout.names)}), "
                                  f"not classes: the recipe's class_idx must be null.")
            try:
                layout.encode(recipe.attributes)
            except LabelLayoutError as error:
                raise RecipeError(str(error)) from None
        elif recipe.attributes:
            raise RecipeError("This network has no attributes; the recipe's attributes must be empty.")
        elif self.G.c_dim:
            if recipe.class_idx is None or not 0 <= recipe.class_idx < self.G.c_dim:
                raise RecipeError(f"Class must be between 0 and {self.G.c_dim - 1}, got {recipe.class_idx}.")
        elif recipe.class_idx is not None:
            raise RecipeError("This network has no classes; the recipe's class_idx must be null.")
        if recipe.latent is not None and recipe.latent not in self.latents:
            raise LatentMissing(recipe.latent)
        for name, value in recipe.sliders.items():
            direction = self.direction(name)
            if not direction.slider_min <= value <= direction.slider_max:
                raise RecipeError(f"Slider {name!r} must be between {direction.slider_min} and "
                                  f"{direction.slider_max}, got {value}.")
        for name, layers in recipe.layer_overrides.items():
            self.direction(name)
            self._check_layers(layers, f"Layers of {name!r}")
        n_components = 0 if self.components is None else len(self.components.comp)
        for index in recipe.components:
            if not 0 <= index < n_components:
                raise RecipeError(f"Component {index} does not exist (this studio has {n_components}).")
        if recipe.component_layers is not None:
            self._check_layers(recipe.component_layers, "Component layers")
        if recipe.mix is not None:
            self._check_layers(recipe.mix.layers, "Mix layers")
        return recipe

    def _check_layers(self, layers: tuple[int, int], what: str) -> None:
        if not 0 <= layers[0] <= layers[1] < self.num_ws:
            raise RecipeError(f"{what} must lie within 0-{self.num_ws - 1}, got {layers[0]}-{layers[1]}.")

    def design(self, recipe: Recipe) -> Design:
        """The recipe as a design: its base, mix and sliders resolved to edits (validated first)."""
        self.check(recipe)
        return Design(base=recipe.base, mix=recipe.mix, edits=tuple(self.edits(recipe)))

    def edits(self, recipe: Recipe) -> list[Edit]:
        """The recipe's sliders as ganspace edits: add-mode sliders sit at their default until moved,
        absolute-mode ones act only once moved."""
        edits = []
        for direction in self.directions:
            value = recipe.sliders.get(direction.name)
            if value is None and direction.mode == "add":
                value = float(direction.default)
            if value is None or (direction.mode == "add" and value == 0):
                continue
            edits.append(direction.edit(value, layers=recipe.layer_overrides.get(direction.name)))
        component_layers = recipe.component_layers or (0, self.num_ws - 1)
        for index, value in sorted(recipe.components.items()):
            if value:
                edits.append(Edit(vector=np.asarray(self.components.comp[index], dtype=np.float32),
                                  sigma=float(self.components.stdev[index]), layers=component_layers,
                                  strength=float(value)))
        return edits

    def portable_recipe(self, recipe: Recipe) -> dict:
        """The recipe plus its edits spelled out with vectors (ganspace form), so tools without
        the directions file can still reproduce the image."""
        data = recipe.to_dict()
        data["edits"] = [edit_to_recipe(edit) for edit in self.edits(recipe)]
        return data

    # ------------------------------------------------------------------ rendering
    def base_ws(self, base: Base) -> torch.Tensor:
        """Unedited W+ of a base (a seed, or a stored latent); cached so slider moves only re-run synthesis.
        On a multi-attribute network the base's class_idx holds the attribute choices (Recipe.label)."""
        key = base if base.latent is None else Base(latent=base.latent)
        with self._lock:
            ws = self._cache.get(key)
            if ws is None:
                ws = base_ws(self.G, key, self.latent_ws, layout=self.network.label_layout).to(self.device)
                self._cache[key] = ws
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
            return ws

    def export_label(self, recipe: Recipe) -> dict:
        """The ganspace exporter's label arguments for a recipe: its class, or its attributes' vector."""
        layout = self.network.label_layout
        if layout is None:
            return {"class_idx": recipe.class_idx}
        return {"class_idx": layout.encode(recipe.attributes), "attributes": dict(recipe.attributes)}

    def compose_ws(self, recipe: Recipe) -> torch.Tensor:
        """W+ of the recipe: base, style mix, then the slider edits (`design.model.design_ws`)."""
        return design_ws(self.G, self.design(recipe), self.base_ws)

    def latent_ws(self, sha256: str) -> torch.Tensor:
        """The stored latent's W+ [1, num_ws, w_dim]; LatentMissing when this studio does not have it."""
        try:
            return self.latents.load(sha256).ws(self.G)[:1]
        except FileNotFoundError:
            raise LatentMissing(sha256) from None
        except LatentError as error:
            raise RecipeError(f"The stored latent {sha256[:16]}… cannot be used: {error}") from None

    def synthesize(self, ws: torch.Tensor, noise_mode: str = "const", noise_seed: int = 0) -> np.ndarray:
        """uint8 [N, H, W, C]; 'random' noise is seeded so a recipe always gives the same image."""
        with self._lock:
            torch.manual_seed(noise_seed)
            return synthesize_uint8(self.G, ws, noise_mode=noise_mode)

    def render(self, recipe: Recipe) -> np.ndarray:
        """The recipe's image, uint8 HWC at full resolution (validated; drawn once, then cached)."""
        key = recipe.replace(network_name="").to_json()
        self._last_user_render = time.monotonic()
        with self._lock:
            image = self._images.get(key)
            if image is None:
                image = self.synthesize(self.compose_ws(recipe), recipe.noise_mode, recipe.noise_seed)[0]
                image.flags.writeable = False  # shared by every caller of the cache
                self._images[key] = image
                self._last_user_render = time.monotonic()
                if len(self._images) > IMAGE_CACHE:
                    self._images.popitem(last=False)
            else:
                self._images.move_to_end(key)
            return image

    def render_seeds(self, seeds: list[int], truncation_psi: float, class_idx: int | None,
                     noise_mode: str = "const") -> list[np.ndarray]:
        """Unedited images of many seeds, batched, for the browse grid."""
        images = []
        self._last_user_render = time.monotonic()
        for start in range(0, len(seeds), BROWSE_BATCH):
            chunk = seeds[start:start + BROWSE_BATCH]
            with self._lock:
                ws = torch.cat([self.base_ws(Base(s, truncation_psi, class_idx,
                                                  truncation_centre=self.truncation_centre)) for s in chunk])
                images.extend(self.synthesize(ws, noise_mode, chunk[0]))
        self._last_user_render = time.monotonic()
        return images

    @staticmethod
    def page_seeds(page: int, per_page: int) -> list[int]:
        first = page * per_page
        return [s for s in range(first, first + per_page) if s <= MAX_SEED]

    @staticmethod
    def last_page(per_page: int) -> int:
        return MAX_SEED // per_page

    @classmethod
    def random_page(cls, per_page: int, rng: random.Random | None = None) -> int:
        return (rng or random).randint(0, cls.last_page(per_page))

    def private_generator(self) -> torch.nn.Module:
        """A copy of G for long jobs (batch export) so they never hold the studio's lock."""
        with self._lock:
            return copy.deepcopy(self.G)

    def mix_hints(self) -> dict[str, str]:
        """What mixing each layer group changes on this model, measured once: seed pairs swapped on the
        group, scored with the hints statistics (1 = clearly visible). E.g. {"coarse": "size, length"}."""
        with self._measuring_mix_hints:  # pages opened meanwhile wait for this one measurement
            if self._mix_hints is None:
                conditions = self._mix_hints_conditions()
                self._mix_hints = self._stored_mix_hints(conditions)
                if self._mix_hints is None:
                    self._mix_hints = self._measure_mix_hints(conditions)
                    if self.mix_hints_file is not None:
                        stored = {"measured_on": conditions, "hints": self._mix_hints}
                        atomic_write_text(self.mix_hints_file, json.dumps(stored, indent=1))
            return self._mix_hints

    def _mix_hints_conditions(self) -> dict:
        """What the hints were measured on besides the weights (the file is per network): the start class
        (the model card's first representative, which its owner may change; an index or None), the seeds and ψ."""
        return {"class": self.start_recipe().label, "seeds": 2 * MIX_HINT_PAIRS, "psi": MIX_HINT_PSI}

    def _stored_mix_hints(self, conditions: dict) -> dict[str, str] | None:
        """The hints measured on an earlier start (`mix_hints_file`) under `conditions`, or None if absent,
        unreadable or measured otherwise."""
        try:
            stored = json.loads(self.mix_hints_file.read_text(encoding="utf-8")) if self.mix_hints_file else None
        except (OSError, ValueError):
            return None
        if not isinstance(stored, dict) or stored.get("measured_on") != conditions:
            return None
        hints = stored.get("hints")
        ok = isinstance(hints, dict) and list(hints) == list(GROUP_NAMES[1:]) and all(isinstance(v, str) for v in hints.values())
        return hints if ok else None

    def _measure_mix_hints(self, conditions: dict) -> dict[str, str]:
        with self._lock:
            ws = torch.cat([self.base_ws(Base(s, conditions["psi"], conditions["class"]))
                            for s in range(conditions["seeds"])])
        first, second = ws[0::2], ws[1::2]
        plain = self._render_when_idle(first)
        hints = {}
        for group in GROUP_NAMES[1:]:
            start, end = self.groups[group]
            mixed = first.clone()
            mixed[:, start:end + 1] = second[:, start:end + 1]
            changes = per_image_changes(plain, self._render_when_idle(mixed))
            scores = visibility({k: float(np.mean(np.abs(v))) for k, v in changes.items()})
            visible = [STATISTICS[k][0] for k in sorted(scores, key=scores.get, reverse=True) if scores[k] >= 1]
            hints[group] = (", ".join(dict.fromkeys(visible[:3])) or "little visible change") + \
                f" (layers {format_layers((start, end))})"
        return hints

    def _render_when_idle(self, ws: torch.Tensor) -> np.ndarray:
        """Background renders (the mix hints): one image at a time, each once no design or page has been
        drawn for MIX_HINTS_IDLE_S (user renders mark their start and end), so they never hold up a move
        for more than one image (at 256 px ~0.2 s; a batch was ~2 s)."""
        images = []
        for row in ws.split(1):
            while (wait := MIX_HINTS_IDLE_S - (time.monotonic() - self._last_user_render)) > 0:
                time.sleep(wait)
            images.append(self.synthesize(row))
        return np.concatenate(images)

    # ------------------------------------------------------------------ your photo
    def project_photo(self, photo: str | pathlib.Path, class_idx: int | None = None,
                      num_steps: int = PROJECT_STEPS, progress=None, attributes: dict | None = None) -> Recipe:
        """A new recipe whose base is the photo projected into W+ (stored in `latents`, named by its hash).

        The photo gets the studio's upload checks (size, PNG/JPEG/WebP) and the dataset tool's framing. The
        search keeps the network's own noise maps (`optimize_noise=False`), so the stored W+ alone redraws the
        result and every edit, mix and export works on it as on a seed. One projection runs at a time per
        process (the others wait on `_projecting`); it works on a private copy of G, so designing goes on
        meanwhile. `progress(step, num_steps, distance)` is called after every step. On a multi-attribute
        network `attributes` (name: value; absent = "any") is the photo's label, as a seed design's.
        """
        check_photo(photo)
        layout = self.network.label_layout
        attributes = dict(attributes or {}) if layout is not None else {}
        label = None
        if layout is not None:
            try:
                label = layout.encode(attributes)
            except LabelLayoutError as error:
                raise RecipeError(str(error)) from None
            class_idx = None
        elif self.G.c_dim:
            if class_idx is None or not 0 <= int(class_idx) < self.G.c_dim:
                raise RecipeError(f"Choose the photo's class (0-{self.G.c_dim - 1}) first.")
            class_idx = label = int(class_idx)
        else:
            class_idx = None
        if not 1 <= int(num_steps) <= MAX_PROJECT_STEPS:
            raise RecipeError(f"Projection steps must be between 1 and {MAX_PROJECT_STEPS}, got {num_steps}.")
        try:
            target = read_target(photo, self.G.img_resolution, self.G.img_channels)
        except TargetError as error:
            raise RecipeError(f"This photo cannot be used: {error}.") from None
        with self._projecting:
            options = ProjectOptions(num_steps=int(num_steps), w_plus=True, optimize_noise=False,
                                     w_avg_samples=PROJECT_W_AVG_SAMPLES)
            found = project(self.private_generator(), target.tensor, make_distance(target.tensor.to(self.device)),
                            options, class_idx=label, progress=progress)
        projected = ProjectedW(w=found.ws.unsqueeze(0).cpu().numpy(), meta=dict(
            network_sha256=self.network_sha256, target_sha256=target.sha256,
            class_idx=-1 if class_idx is None else class_idx, distance=found.distance))
        sha256 = self.latents.put(latent_bytes(projected))
        return self.new_recipe(class_idx=class_idx).replace(seed=None, latent=sha256, attributes=attributes)

    def store_latent(self, data: bytes) -> str:
        """Keep a latent file (from an exported zip) so recipes naming it render here; returns its sha256."""
        try:
            latent_load(data).ws(self.G)
            return self.latents.put(data)
        except LatentError as error:
            raise RecipeError(f"This latent file cannot be used with this network: {error}.") from None

    def mix_recipe(self, recipe: Recipe, seed: int | None, layers, weight: float) -> Recipe:
        """The recipe with its style mix set (seed None removes it)."""
        if seed is None:
            return recipe.replace(mix=None)
        return recipe.replace(mix=Mix(seed=int(seed), layers=self.layer_range(layers), weight=float(weight)))


__all__ = ["Studio", "RecipeError", "DirectionsError"]
