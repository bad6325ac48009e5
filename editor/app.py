"""Gradio wiring of the studio: controls in, Studio calls, images out.

Thin on purpose: every decision about images lives in `editor.studio`.
Per-tab state is a `Session` in gr.State, mirrored to `editor.store` after
every change (the browser keeps only the session's id); every handler returns
a dict of component updates, and on bad input only the message box changes,
so a mistake never loses the current design. Number inputs reach the handlers
as typed (`editor.typed_inputs`) and are parsed here, so an empty box,
text or an out-of-range value gets a message or is clamped, never Gradio's own
error overlay. A slider move validates the recipe and renders it once.
"""
from __future__ import annotations

import functools
import json
import pathlib
import re
import tempfile

import gradio as gr

from editor.design_image import DesignImage, InlinePicture
from editor.exporting import export_batch, export_favourites, export_image, image_name
from design.recipe import (MAX_UPLOAD_BYTES, NOISE_MODES, Recipe, RecipeError, is_latent_file, parse_number,
                           parse_seed, read_recipe_upload)
from editor.session import Session
from editor.store import SessionStore, new_session_id
from editor.studio import MAX_PROJECT_STEPS, PROJECT_STEPS, Studio
from editor.typed_inputs import TypedNumber, TypedSlider
from ganspace.directions import DirectionsError
from ganspace.export import EXPORT_SCALES
from ganspace.layers import format_layers
from stylegan2.labels import ANY
from toolkit.parsing import parse_float_list, parse_seed_list

MAX_DIRECTION_SLIDERS = 16
MAX_COMPONENT_SLIDERS = 12
PER_PAGE = 24
MAX_BATCH_SEEDS = 1000
MAX_STRENGTHS = 21
THIS_DESIGN = "this"     # the batch export's Seeds box: the current design (a photo or its seed)
UPLOAD_CACHE_S = 3600
USER_ERRORS = (RecipeError, DirectionsError, ValueError, OSError)
PSI_RANGE = (-1.0, 1.5)
WARMING_UP = "⏳ Warming up: the generator is being compiled in the background; until then designs render a little slower."
COMPONENT_RANGE = (-3.0, 3.0)
SESSION_KEY = "afro-fashion-studio-session"
TECHNICAL = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")  # "plain words (component 3, coarse; agree 0.93)"

CSS = """
#studio-image img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;}
#studio-message {min-height: 1.5em;}
#design-view {position: sticky; top: 0.5rem; align-self: flex-start; z-index: 5;}
.gradio-container {overflow: clip !important;}  /* 'hidden' would make it a scroller: no sticky image */
.mix-parent img {image-rendering: pixelated;}
#export-file {max-height: 6rem; overflow: auto;}  /* one file row, not a drop zone under the image */
"""


def split_description(text: str) -> tuple[str, str]:
    """('plain words', 'technical note') from a description ending in a parenthesis, else (text, '')."""
    match = TECHNICAL.match(text or "")
    return (match.group(1), match.group(2)) if match and match.group(1) else (text or "", "")


def parse_scale(value) -> tuple[int, str]:
    """'4-lanczos' from the export-size menu into (4, 'lanczos'); anything else is the rendered size."""
    factor, _, resample = str(value or "1").partition("-")
    return (int(factor), resample) if (factor.isdigit() and (int(factor), resample) in EXPORT_SCALES) else (1, "")


def parse_seed_range(text: str) -> list[int]:
    """'0-15' or '1, 5, 9' into seeds; bounded so one click cannot start an endless job."""
    return parse_seed_list(str(text), max_count=MAX_BATCH_SEEDS, error=RecipeError)


def parse_strengths(text: str) -> list[float]:
    return parse_float_list(text, low=-100, high=100, max_count=MAX_STRENGTHS, error=RecipeError,
                            what="Strengths (σ units)")


class StudioApp:
    """Builds the Blocks for one Studio; handlers are methods so tests can read them."""

    def __init__(self, studio: Studio, store: SessionStore | None = None):
        self.studio = studio
        self.store = store
        self.layout = studio.network.label_layout   # multi-attribute networks: one picker per block
        self.class_choices = self._class_choices() if self.layout is None else []
        self.attr_pickers: list = []
        self.browse_attrs: list = []
        self.photo_attrs: list = []

    def _attr_choices(self, block):
        return [(ANY, ANY)] + [(caption, value) for caption, value in zip(block.captions, block.values)]

    def attribute_pickers(self, tab: str, start: Recipe) -> list:
        """One menu per attribute (with "any") in a row, on a multi-attribute network (else none): the label
        controls of the Browse, Your photo and Design tabs, in the order `_label` reads them."""
        if self.layout is None:
            return []
        with gr.Row():
            return [gr.Dropdown(self._attr_choices(b), value=start.attributes.get(b.name, ANY),
                                label=b.name.capitalize(), elem_id=f"{tab}-attr-{b.name}")
                    for b in self.layout.blocks]

    def _class_choices(self):
        c_dim = int(self.studio.G.c_dim)
        names = self.studio.network.class_names or [f"class {i}" for i in range(c_dim)]
        return [(str(name), i) for i, name in enumerate(names[:c_dim])]

    # ---------------------------------------------------------------- helpers
    def current(self, session: Session) -> Recipe:
        return session.recipe or self.studio.start_recipe()

    def model_markdown(self) -> str:
        """Which model is open: name, resolution, classes and its card's line (and notice)."""
        card, G = self.studio.network.describe(), self.studio.G
        classes = ", ".join(name for name, _ in self.class_choices) if self.class_choices else "unconditional"
        height, width = G.img_shape
        size = f"{width}×{height} px" + ("" if height == width else " (width×height)")
        if self.layout is not None:
            classes = "attributes " + ", ".join(f"{b.name} ({len(b.values)})" for b in self.layout.blocks)
        else:
            classes = f"classes: {classes}"
        text = f"**Model: {card.name}** · {size} · {classes}"
        text += f" · {card.summary}" if card.summary else ""
        return text + (f"\n\n⚠️ **{card.notice}**" if card.notice else "")

    def _direction_slider_updates(self, recipe: Recipe) -> dict:
        directions = self.studio.directions[:MAX_DIRECTION_SLIDERS]
        updates, rows = {}, []
        for i, slider in enumerate(self.direction_sliders):
            if i < len(directions):
                d = directions[i]
                layers = format_layers(recipe.layer_overrides.get(d.name, d.layers))
                plain, technical = split_description(d.description)
                info = " · ".join(t for t in (d.sign, plain) if t)
                updates[slider] = gr.update(visible=True, label=d.name, info=info, minimum=d.slider_min,
                                            maximum=d.slider_max, value=recipe.sliders.get(d.name, d.default))
                rows.append(f"| {d.name} | {layers} | {d.mode} | {d.slider_min:g} to {d.slider_max:g} | "
                            f"{technical or '-'} |")
            else:
                updates[slider] = gr.update(visible=False)
        names = [d.name for d in self.studio.directions]
        updates[self.direction_choice] = gr.update(choices=names, value=names[0] if names else None)
        updates[self.technical] = ("| slider | layers | mode | range (σ) | how it was found |\n|---|---|---|---|---|\n"
                                   + "\n".join(rows)) if rows else ""
        return updates

    def save(self, session: Session) -> None:
        """Mirror the session to the store (a reload or a restart gets it back)."""
        if self.store is not None and session.session_id:
            self.store.save(session.session_id, session.to_dict())

    def view(self, session: Session, message: str = "", full: bool = False) -> dict:
        """Updates showing the session's recipe (one render); `full` also refreshes every control.

        A message stays while its design is current: the browser sends a clamped value it was shown
        back as a new event, and that event must not wipe the note that explains the clamp."""
        recipe = self.current(session)
        session.recipe = recipe
        if message:
            session.note = (recipe, message)
        elif session.note[0] == recipe:
            message = session.note[1]
        else:
            session.note = (None, "")
        self.save(session)
        updates = {
            self.state: session,
            self.message: message or (WARMING_UP if self.studio.warming_up else ""),
            self.image: self.studio.render(recipe),
            self.recipe_text: recipe.to_json(),
            self.history: f"undo {len(session.undo_stack)} · redo {len(session.redo_stack)}",
        }
        if full:
            updates.update({
                self.seed: "" if recipe.seed is None else str(recipe.seed),
                self.base_info: self.base_markdown(recipe),
                self.psi: recipe.truncation_psi,
                self.class_idx: recipe.class_idx,
                **{picker: recipe.attributes.get(block.name, ANY)
                   for picker, block in zip(self.attr_pickers, self.layout.blocks if self.layout else [])},
                self.noise_mode: recipe.noise_mode,
                self.mix_seed: "" if recipe.mix is None else str(recipe.mix.seed),
                self.mix_layers: "coarse" if recipe.mix is None else format_layers(recipe.mix.layers),
                self.mix_weight: 1.0 if recipe.mix is None else recipe.mix.weight,
                self.component_layers: format_layers(recipe.component_layers or (0, self.studio.num_ws - 1)),
            })
            for i, slider in enumerate(self.component_sliders):
                updates[slider] = recipe.components.get(i, 0.0)
            updates.update(self._direction_slider_updates(recipe))
            updates.update(self._parents(recipe))
        return updates

    def _parents(self, recipe: Recipe) -> dict:
        """Both parents of a mix (cached renders); none without a mix."""
        if recipe.mix is None:
            return {self.parent_a: None, self.parent_b: None}
        base = recipe.replace(mix=None, sliders={}, components={}, layer_overrides={})
        return {self.parent_a: self.studio.render(base),
                self.parent_b: self.studio.render(base.replace(seed=recipe.mix.seed, latent=None))}

    def commit(self, session: Session, recipe: Recipe, message: str = "", full: bool = False) -> dict:
        """Validate, then make the recipe current and show it: a failure changes nothing."""
        session.apply(self.studio.check(recipe))
        return self.view(session, message, full)

    def guarded(self, handler):
        """Turn user errors into a message in the UI instead of a crash or lost work."""
        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except USER_ERRORS as error:
                return {self.message: f"⚠️ {error}"}
        return wrapper

    def inline_picture(self, handler):
        """The handler's design picture travels inside its answer (slider moves: editor.design_image)."""
        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            updates = handler(*args, **kwargs)
            if self.image in updates and updates[self.image] is not None:
                updates[self.image] = InlinePicture(updates[self.image])
            return updates
        return wrapper

    # --------------------------------------------------------------- handlers
    def _class(self, class_idx) -> int | None:
        """The class menu's value as a class index (None for unconditional networks)."""
        if not self.studio.G.c_dim:
            return None
        return int(parse_number(0 if class_idx in (None, "") else class_idx, "Class", 0, self.studio.G.c_dim - 1)[0])

    def _label(self, class_idx, attr_values) -> dict:
        """Recipe fields from the class menu or, on a multi-attribute network, from its attribute pickers."""
        if self.layout is None:
            return {"class_idx": self._class(class_idx)}
        chosen = {b.name: v for b, v in zip(self.layout.blocks, attr_values) if v not in (None, "", ANY)}
        return {"class_idx": None, "attributes": chosen}

    def on_edit(self, session, seed, psi, class_idx, noise_mode, *attr_values):
        """The base controls; an empty seed box keeps a photo's latent, a typed seed replaces it."""
        psi, note = parse_number(psi, "Truncation ψ", *PSI_RANGE)
        recipe = self.current(session)
        base = {} if recipe.latent and not str(seed or "").strip() else {"seed": parse_seed(seed), "latent": None}
        recipe = recipe.replace(**base, truncation_psi=psi, **self._label(class_idx, attr_values),
                                noise_mode=noise_mode if noise_mode in NOISE_MODES else "const")
        return self.commit(session, recipe, note, full=True)

    def on_direction_slider(self, index, session, value):
        updates = self.on_set_slider(session, self.studio.directions[index].name, value)
        if updates.get(self.message):  # clamped: show the box the value actually used
            updates[self.direction_sliders[index]] = self.current(session).sliders[self.studio.directions[index].name]
        return updates

    def on_set_slider(self, session, name, value):
        direction = self.studio.direction(str(name))
        value, note = parse_number(value, f"Slider {direction.name!r}", direction.slider_min, direction.slider_max)
        recipe = self.current(session)
        return self.commit(session, recipe.replace(sliders={**recipe.sliders, direction.name: value}), note)

    def on_component_slider(self, index, session, value):
        value, note = parse_number(value, f"Component {index}", *COMPONENT_RANGE)
        recipe = self.current(session)
        components = {**recipe.components, index: value}
        updates = self.commit(session, recipe.replace(components={k: v for k, v in components.items() if v}), note)
        if note:
            updates[self.component_sliders[index]] = value
        return updates

    def on_component_layers(self, session, layers):
        recipe = self.current(session).replace(component_layers=self.studio.layer_range(layers))
        return self.commit(session, recipe)

    def on_reset(self, session, name):
        recipe = self.current(session)
        sliders = {k: v for k, v in recipe.sliders.items() if k != name}
        overrides = {k: v for k, v in recipe.layer_overrides.items() if k != name}
        return self.commit(session, recipe.replace(sliders=sliders, layer_overrides=overrides), full=True)

    def on_reset_all(self, session):
        recipe = self.current(session).replace(sliders={}, layer_overrides={}, components={}, component_layers=None)
        return self.commit(session, recipe, full=True)

    def on_set_layers(self, session, name, layers):
        recipe = self.current(session)
        self.studio.direction(name)
        overrides = {**recipe.layer_overrides, name: self.studio.layer_range(layers)}
        return self.commit(session, recipe.replace(layer_overrides=overrides), f"Layers of {name!r} set.", full=True)

    def on_mix(self, session, mix_seed, layers, weight):
        seed = None if str(mix_seed or "").strip() == "" else parse_seed(mix_seed, "Mix seed")
        weight, note = parse_number(weight, "Blend weight", 0.0, 1.0)
        recipe = self.studio.mix_recipe(self.current(session), seed, layers, weight)
        return self.commit(session, recipe, note, full=True)

    def on_unmix(self, session):
        return self.commit(session, self.current(session).replace(mix=None), full=True)

    def on_undo(self, session):
        return self.view(session, "" if session.undo() else "Nothing to undo.", full=True)

    def on_redo(self, session):
        return self.view(session, "" if session.redo() else "Nothing to redo.", full=True)

    def on_apply_recipe_text(self, session, text):
        return self.commit(session, Recipe.from_json(text or ""), "Recipe restored.", full=True)

    def on_upload(self, session, path):
        """Restore from a dropped file (a recipe, an exported PNG, or the latent .npz of a photo design); the
        box is emptied either way, ready for the next file."""
        try:
            if not path:
                return {self.message: "Choose a recipe .json or an exported PNG.", self.upload: None}
            if is_latent_file(path):
                sha256 = self.studio.store_latent(pathlib.Path(path).read_bytes())
                return {self.message: f"Latent {sha256[:16]}… kept: now drop the design's PNG or recipe.",
                        self.upload: None}
            return {**self.commit(session, read_recipe_upload(path), "Recipe restored.", full=True), self.upload: None}
        except USER_ERRORS as error:
            return {self.message: f"⚠️ Not restored: {error}", self.upload: None}

    def on_download_recipe(self, session):
        recipe = self.current(session)
        path = pathlib.Path(tempfile.mkdtemp(prefix="afro-studio-recipe-")) / f"{self.image_name(recipe)}.recipe.json"
        path.write_text(json.dumps(self.studio.portable_recipe(recipe), indent=2))
        return {self.recipe_file: str(path), self.message: f"{path.name} ready: click it to download."}

    def image_name(self, recipe: Recipe) -> str:
        return image_name(recipe, self.studio.network.class_names)

    def on_export_image(self, session, scale):
        factor, resample = parse_scale(scale)
        path = export_image(self.studio, self.current(session), scale=factor, resample=resample)
        return {self.export_file: str(path), self.message: f"Exported {path.name} (recipe embedded)."}

    def on_new_design(self, session):
        """Start again from the model's representative seed; the old design stays one undo away."""
        return self.commit(session, self.studio.start_recipe(), "New design (↶ Undo brings the last one back).",
                           full=True)

    # browse
    @staticmethod
    def _page_number(page) -> tuple[int, str]:
        """The page box as a page index and a note: empty means 0, out of range is clamped (and said)."""
        number, note = parse_number(0 if page in (None, "") else page, "Page", 0, Studio.last_page(PER_PAGE))
        return int(number), note

    def _page(self, session, page, psi, class_idx, *attr_values):
        return self._draw_page(session, page, psi, self._label(class_idx, attr_values))

    def _draw_page(self, session, page, psi, label: dict):
        """A browse page drawn with `label` (the recipe fields _label gives: class or attributes)."""
        page, page_note = self._page_number(page)
        psi, psi_note = parse_number(psi, "Truncation ψ", *PSI_RANGE)
        note = " ".join(n for n in (page_note, psi_note) if n)
        seeds = Studio.page_seeds(page, PER_PAGE)
        images = self.studio.render_seeds(seeds, psi, self.studio.new_recipe().replace(**label).label)
        session.page, session.page_seeds, session.page_psi, session.page_class = page, seeds, psi, label
        return {self.state: session, self.page: page, self.message: note,
                self.gallery: [(img, f"seed {s}") for img, s in zip(images, seeds)]}

    def on_browse(self, session, page, psi, class_idx, *attr_values):
        return self._page(session, page, psi, class_idx, *attr_values)

    def on_next(self, session, page, psi, class_idx, *attr_values):
        return self._page(session, self._page_number(page)[0] + 1, psi, class_idx, *attr_values)

    def on_prev(self, session, page, psi, class_idx, *attr_values):
        return self._page(session, self._page_number(page)[0] - 1, psi, class_idx, *attr_values)

    def on_random_page(self, session, psi, class_idx, *attr_values):
        return self._page(session, Studio.random_page(PER_PAGE), psi, class_idx, *attr_values)

    def on_jump(self, session, seed, psi, class_idx, *attr_values):
        """Show the seed's page and open the seed itself in the Design tab."""
        seed, label = parse_seed(seed), self._label(class_idx, attr_values)
        return {**self._draw_page(session, seed // PER_PAGE, psi, label), **self._open_seed(session, seed, psi, label)}

    def on_tile(self, session, evt: gr.SelectData):
        """Open the tile as drawn (the ψ and class of the page on screen, not the controls' new values)."""
        seed = session.page_seeds[evt.index]
        return self._open_seed(session, seed, session.page_psi, session.page_class or self._label(None, ()))

    def on_open_seed(self, session, seed, psi, class_idx, *attr_values):
        return self._open_seed(session, seed, psi, self._label(class_idx, attr_values))

    def _open_seed(self, session, seed, psi, label: dict):
        recipe = self.current(session).replace(
            seed=parse_seed(seed), latent=None, truncation_psi=parse_number(psi, "Truncation ψ", *PSI_RANGE)[0],
            mix=None, truncation_centre=self.studio.truncation_centre, **label)   # as the browse grid drew it
        updates = self.commit(session, recipe, f"Opened seed {recipe.seed}.", full=True)
        updates[self.tabs] = gr.Tabs(selected="design")
        return updates

    # favourites and export
    def _tray(self, session, message=""):
        return {self.state: session, self.message: message,
                self.tray: [(f.thumbnail, self.base_caption(f.recipe)) for f in session.favourites]}

    def on_star(self, session):
        recipe = self.current(session)
        added = session.star(recipe, self.studio.render(recipe))
        return self._tray(session, "Added to favourites." if added else "Already in favourites (or the tray is full).")

    def on_star_seed(self, session, seed):
        recipe = self.current(session).replace(seed=parse_seed(seed), latent=None, mix=None, sliders={},
                                               components={}, layer_overrides={})
        added = session.star(recipe, self.studio.render(recipe))
        return self._tray(session, f"Seed {recipe.seed} starred." if added else "Already in favourites.")

    def on_tray_select(self, session, evt: gr.SelectData):
        recipe = session.favourites[evt.index].recipe
        updates = self.commit(session, recipe, f"Opened favourite {evt.index + 1}.", full=True)
        updates[self.tabs] = gr.Tabs(selected="design")
        return updates

    def on_clear_tray(self, session):
        session.favourites = []
        return self._tray(session, "Favourites cleared.")

    def on_export_favourites(self, session, scale):
        factor, resample = parse_scale(scale)
        path = export_favourites(self.studio, [f.recipe for f in session.favourites], scale=factor, resample=resample)
        return {self.favourites_file: str(path), self.message: f"{len(session.favourites)} favourites exported."}

    def on_export_batch(self, session, seeds, strengths, scale="1", progress=gr.Progress()):
        """Seeds empty or "this": the current design's own base (a photo or its seed); else those seeds."""
        this = str(seeds or "").strip().lower() in ("", THIS_DESIGN)
        seeds, strengths = None if this else parse_seed_range(seeds), parse_strengths(strengths)
        factor, resample = parse_scale(scale)

        def report(done_total):
            progress(done_total, desc="Batch export", unit="images")

        path = export_batch(self.studio, self.current(session), seeds, strengths, progress=report, scale=factor,
                            resample=resample)
        return {self.batch_file: str(path), self.message: f"Batch export finished ({path.name})."}

    def on_project(self, session, photo, class_idx, steps, *attr_values, progress=gr.Progress()):
        """Project the uploaded photo (queued: one at a time) with its class or attributes, then open it in the
        Design tab."""
        steps, note = parse_number(steps, "Projection steps", 1, MAX_PROJECT_STEPS)
        progress((0, int(steps)), desc="Finding your photo in the model", unit="steps")

        def report(step, total, distance):
            progress((step, total), desc="Finding your photo in the model", unit="steps")

        label = self._label(class_idx, attr_values)
        recipe = self.studio.project_photo(photo, label["class_idx"], int(steps), progress=report,
                                           attributes=label.get("attributes"))
        updates = self.commit(session, recipe, " ".join(t for t in (note, "Your photo is open: move the sliders, mix, "
                                                                     "star or export it as any design.") if t),
                              full=True)
        updates[self.tabs] = gr.Tabs(selected="design")
        updates[self.photo_result] = self.studio.render(recipe)
        return updates

    def base_markdown(self, recipe: Recipe) -> str:
        return "" if recipe.latent is None else (
            f"Starts from your projected photo (latent `{recipe.latent[:16]}…`); type a seed to start from a seed.")

    @staticmethod
    def base_caption(recipe: Recipe) -> str:
        return f"seed {recipe.seed}" if recipe.latent is None else "your photo"

    def on_label(self, session, component, name, description, sign, layers):
        n = 0 if self.studio.components is None else self.studio.components.num_components
        index, note = parse_number(component, "Label component", 0, max(n - 1, 0))
        if note or index != int(index):
            raise RecipeError(f"Label component must be a component number from 0 to {max(n - 1, 0)}.")
        direction = self.studio.label_component(int(index), name, description, sign, layers)
        return self.view(session, f"Saved direction {direction.name!r} in your labels file "
                                  f"{self.studio.labels_path}.", full=True)

    def on_load(self, session, session_id):
        """A page (re)load: the stored session of this browser, or a new one, and its browse page."""
        data = self.store.load(session_id) if self.store is not None and session_id else None
        if data is not None:
            session = Session.from_dict(data, self.studio.check, self.studio.render, session_id=session_id)
        session.session_id = session_id if data is not None else new_session_id()
        recipe = self.current(session)
        message = "Welcome back: your design, history and favourites are restored." if data else ""
        label = {"class_idx": recipe.class_idx, **({"attributes": recipe.attributes} if self.layout else {})}
        return {**self._draw_page(session, session.page, recipe.truncation_psi, label),
                **self.view(session, message, full=True), **self._tray(session, message),
                self.session_id: session.session_id}

    # ------------------------------------------------------------------ layout
    def build(self) -> gr.Blocks:
        studio = self.studio
        conditional = bool(studio.G.c_dim) and self.layout is None   # a class menu; attribute pickers otherwise
        start = studio.start_recipe()
        with gr.Blocks(title=f"Afro Fashion Studio: {studio.network.describe().name}") as demo:
            self.state = gr.State(Session())
            self.session_id = gr.BrowserState(None, storage_key=SESSION_KEY, secret=SESSION_KEY)
            gr.Markdown("# Afro Fashion Studio")
            gr.Markdown(self.model_markdown(), elem_id="model-info")
            if studio.network.banner:
                gr.Markdown(f"**⚠️ {studio.network.banner}.** Start with `--network` to design with a trained model.")
            self.message = gr.Markdown(elem_id="studio-message")
            with gr.Tabs(selected="design") as self.tabs:
                with gr.Tab("Browse", id="browse"):
                    with gr.Row():
                        self.page = TypedNumber(0, label="Page", precision=0, elem_id="browse-page")
                        prev_btn = gr.Button("◀ Previous")
                        next_btn = gr.Button("Next ▶")
                        random_btn = gr.Button("🎲 Random page")
                        jump_seed = gr.Textbox(label="Open seed", placeholder="e.g. 1234 (Enter)", elem_id="jump-seed")
                    with gr.Row():
                        browse_psi = TypedSlider(*PSI_RANGE, start.truncation_psi, step=0.05, label="Truncation ψ",
                                                info=self.psi_info, buttons=[], elem_id="browse-psi")
                        browse_class = gr.Dropdown(self.class_choices, value=start.class_idx, label="Class",
                                                   visible=conditional, elem_id="browse-class")
                    self.browse_attrs = self.attribute_pickers("browse", start)
                    self.gallery = gr.Gallery(label="Seeds: click one to design with it", columns=6,
                                              object_fit="contain", allow_preview=False, elem_id="browse-gallery")
                with gr.Tab("Your photo", id="photo"):
                    gr.Markdown("Upload a photo of a garment (PNG, JPEG or WebP, at most "
                                f"{MAX_UPLOAD_BYTES >> 20} MB): the studio finds it in the model, then opens it in "
                                "the Design tab, where the sliders, mixing, favourites and exports work as for a seed.")
                    with gr.Row():
                        photo = gr.File(label="Your photo (PNG, JPEG or WebP)", type="filepath",
                                        elem_id="photo-upload")
                        self.photo_result = gr.Image(label="Found in the model", interactive=False, height=240,
                                                     elem_id="photo-result")
                    with gr.Row():
                        photo_class = gr.Dropdown(self.class_choices, value=start.class_idx, label="Its class",
                                                  visible=conditional, elem_id="photo-class")
                        self.photo_attrs = self.attribute_pickers("photo", start)
                        photo_steps = TypedNumber(PROJECT_STEPS, label="Steps (more = closer, slower)", precision=0,
                                                  elem_id="photo-steps")
                        photo_btn = gr.Button("Find it in the model", variant="primary", elem_id="photo-project")
                with gr.Tab("Design", id="design"):
                    with gr.Row():
                        with gr.Column(scale=3, elem_id="design-view"):
                            self.image = DesignImage(label="Design", format="png", interactive=False,
                                                  elem_id="studio-image", buttons=["fullscreen"], height=440)
                            with gr.Row():
                                undo_btn = gr.Button("↶ Undo")
                                redo_btn = gr.Button("↷ Redo")
                                star_btn = gr.Button("☆ Favourite")
                                new_btn = gr.Button("✚ New design", elem_id="new-design")
                            with gr.Row():
                                export_scale = gr.Dropdown(self.scale_choices(), value="1", label="Export size",
                                                           elem_id="export-scale")
                                export_btn = gr.Button("⬇ Export PNG")
                            self.history = gr.Markdown()
                            self.base_info = gr.Markdown(elem_id="base-info")
                            self.export_file = gr.File(label="Exported image", interactive=False, elem_id="export-file")
                        with gr.Column(scale=2):
                            with gr.Row():
                                self.seed = gr.Textbox(str(start.seed), label="Seed", elem_id="seed-box")
                                self.noise_mode = gr.Radio(list(NOISE_MODES), value="const", label="Noise")
                            self.psi = TypedSlider(*PSI_RANGE, start.truncation_psi, step=0.05, label="Truncation ψ",
                                                  info=self.psi_info, buttons=[], elem_id="design-psi")
                            self.class_idx = gr.Dropdown(self.class_choices, value=start.class_idx,
                                                         label="Class", visible=conditional, elem_id="design-class")
                            self.attr_pickers = self.attribute_pickers("design", start)
                            with gr.Accordion("Directions (σ units)", open=True):
                                if not studio.directions:
                                    gr.Markdown("No labelled directions loaded (`--directions FILE.yaml`).")
                                self.direction_sliders = [
                                    TypedSlider(-3, 3, 0, step=0.05, visible=False, buttons=[],
                                               elem_id=f"direction-{i}")
                                    for i in range(MAX_DIRECTION_SLIDERS)]
                                with gr.Row():
                                    self.direction_choice = gr.Dropdown([], label="Direction")
                                    reset_btn = gr.Button("Reset this")
                                    reset_all_btn = gr.Button("Reset all")
                                with gr.Accordion("How these sliders were made (technical)", open=False):
                                    self.technical = gr.Markdown()
                            with gr.Accordion("Advanced: layer range of a direction", open=False):
                                layers_text = gr.Textbox(label="Layers", placeholder="coarse, middle, fine, all, 3 or 2-5")
                                layers_btn = gr.Button("Apply layers to the chosen direction")
                            with gr.Accordion("Mix with a second seed", open=False):
                                with gr.Row():
                                    self.mix_seed = gr.Textbox(label="Style source seed", placeholder="e.g. 42",
                                                               elem_id="mix-seed")
                                    self.mix_layers = gr.Dropdown(
                                        ["coarse", "middle", "fine", "all"], value="coarse", allow_custom_value=True,
                                        label="Layers from it", info="measuring what each layer group changes…",
                                        elem_id="mix-layers")
                                self.mix_weight = TypedSlider(0, 1, 1, step=0.05, label="Blend weight", buttons=[],
                                                             elem_id="mix-weight")
                                with gr.Row():
                                    mix_btn = gr.Button("Mix", elem_id="mix-button")
                                    unmix_btn = gr.Button("Remove mix")
                                with gr.Row():
                                    self.parent_a = gr.Image(label="Parent A (seed)", interactive=False, height=200,
                                                             elem_classes="mix-parent", elem_id="parent-a")
                                    self.parent_b = gr.Image(label="Parent B (style source)", interactive=False,
                                                             height=200, elem_classes="mix-parent", elem_id="parent-b")
                            with gr.Accordion("Explore components (unlabelled)", open=False):
                                comps = studio.components
                                k = 0 if comps is None else min(MAX_COMPONENT_SLIDERS, comps.num_components)
                                if comps is None:
                                    gr.Markdown("No components loaded (`--components FILE.npz`).")
                                self.component_layers = gr.Textbox("all", label="Layers the components act on")
                                self.component_sliders = [
                                    TypedSlider(*COMPONENT_RANGE, 0, step=0.05, label=f"Component {i}", buttons=[],
                                               info=comps.score_label(i),
                                               elem_id=f"component-{i}")
                                    for i in range(k)]
                                with gr.Row():
                                    label_component = TypedNumber(0, label="Label component", precision=0,
                                                                 elem_id="label-component")
                                    label_name = gr.Textbox(label="Name", placeholder="sleeve length")
                                    label_sign = gr.Textbox(label="Sign", placeholder="+ = longer sleeves")
                                label_description = gr.Textbox(label="Description")
                                label_layers = gr.Textbox("all", label="Layers")
                                label_btn = gr.Button("Label this component")
                                gr.Markdown(f"Labels are saved in your own file, `{studio.labels_path}`, layered "
                                            "over the model's directions (which stay as shipped).")
                with gr.Tab("Recipe", id="recipe"):
                    self.recipe_text = gr.Code(language="json", label="Current recipe (edit and apply)",
                                               elem_id="recipe-text", buttons=["copy"])
                    with gr.Row():
                        apply_text_btn = gr.Button("Apply recipe text")
                        download_btn = gr.Button("Prepare recipe download")
                    self.recipe_file = gr.File(label="Recipe", interactive=False, elem_id="recipe-file")
                    self.upload = gr.File(label="Restore: drop a recipe .json, an exported PNG, or a photo design's "
                                                "latents/*.npz (first)",
                                          type="filepath", elem_id="recipe-upload")
                with gr.Tab("Favourites & export", id="export"):
                    self.tray = gr.Gallery(label="Favourites (click to open)", columns=8, allow_preview=False,
                                           object_fit="contain")
                    with gr.Row():
                        star_seed = gr.Textbox(label="Star a seed", placeholder="e.g. 77")
                        clear_btn = gr.Button("Clear tray")
                        favourites_scale = gr.Dropdown(self.scale_choices(), value="1",
                                                       label="Export size (favourites and batch)")
                        fav_btn = gr.Button("Export favourites (zip)")
                    self.favourites_file = gr.File(label="Favourites", interactive=False)
                    gr.Markdown("Batch export: the directions you moved (or all) at several strengths, on the "
                                f"current design (Seeds `{THIS_DESIGN}` or empty: your photo or its seed) "
                                "or over many seeds.")
                    with gr.Row():
                        batch_seeds = gr.Textbox(THIS_DESIGN, label=f"Seeds ('{THIS_DESIGN}' = the current design)",
                                                 elem_id="batch-seeds",
                                                 placeholder=f"{THIS_DESIGN} (the current design), or e.g. 0-7")
                        batch_strengths = gr.Textbox("-2, 0, 2", label="Strengths (σ)")
                        batch_btn = gr.Button("Batch export")
                    self.batch_file = gr.File(label="Batch", interactive=False)
            # API-only entry points (hidden): set a slider by name.
            api_name_box = gr.Textbox(visible=False)
            api_value_box = TypedNumber(visible=False)
            api_btn = gr.Button(visible=False)

            view = [self.state, self.message, self.image, self.recipe_text, self.history]
            full = view + [self.base_info, self.seed, self.psi, self.class_idx, *self.attr_pickers, self.noise_mode,
                           self.mix_seed, self.mix_layers, self.mix_weight, self.component_layers, self.parent_a,
                           self.parent_b,
                           self.direction_choice, self.technical, *self.direction_sliders, *self.component_sliders]
            s = self.state
            edit_inputs = [s, self.seed, self.psi, self.class_idx, self.noise_mode, *self.attr_pickers]

            def on(trigger, handler, inputs, outputs, api_name=None, **kwargs):
                trigger(self.guarded(handler), inputs, outputs, api_name=api_name,
                        api_visibility="public" if api_name else "undocumented", **kwargs)

            for control in (self.psi, self.noise_mode, self.class_idx, *self.attr_pickers):
                on(control.input, self.on_edit, edit_inputs, full, trigger_mode="always_last")
            on(self.seed.submit, self.on_edit, edit_inputs, full, api_name="edit")
            # Slider moves skip Gradio's queue: its join/stream round trip was ~40 of the ~105 ms from a move
            # to the new image in the browser (benchmarks/bench_studio_latency.py); renders stay serialised
            # by the Studio's lock and "always_last" still drops the moves a render overtook. Their picture
            # comes inline in the answer, not as a file to fetch after it (editor.design_image).
            for i, slider in enumerate(self.direction_sliders):
                on(slider.input, self.inline_picture(functools.partial(self.on_direction_slider, i)), [s, slider],
                   view + [slider], trigger_mode="always_last", show_progress="hidden", queue=False)
            on(api_btn.click, self.on_set_slider, [s, api_name_box, api_value_box], view, api_name="set_slider")
            for i, slider in enumerate(self.component_sliders):
                on(slider.input, self.inline_picture(functools.partial(self.on_component_slider, i)), [s, slider],
                   view + [slider], trigger_mode="always_last", show_progress="hidden", queue=False)
            on(self.component_layers.submit, self.on_component_layers, [s, self.component_layers], view)
            on(reset_btn.click, self.on_reset, [s, self.direction_choice], full, api_name="reset")
            on(reset_all_btn.click, self.on_reset_all, [s], full, api_name="reset_all")
            on(new_btn.click, self.on_new_design, [s], full, api_name="new_design")
            on(layers_btn.click, self.on_set_layers, [s, self.direction_choice, layers_text], full,
               api_name="set_layers")
            on(mix_btn.click, self.on_mix, [s, self.mix_seed, self.mix_layers, self.mix_weight], full, api_name="mix")
            on(unmix_btn.click, self.on_unmix, [s], full, api_name="unmix")
            on(undo_btn.click, self.on_undo, [s], full, api_name="undo")
            on(redo_btn.click, self.on_redo, [s], full, api_name="redo")
            on(apply_text_btn.click, self.on_apply_recipe_text, [s, self.recipe_text], full, api_name="apply_recipe")
            on(self.upload.upload, self.on_upload, [s, self.upload], full + [self.upload], api_name="restore")
            on(download_btn.click, self.on_download_recipe, [s], [self.recipe_file, self.message],
               api_name="download_recipe")
            on(export_btn.click, self.on_export_image, [s, export_scale], [self.export_file, self.message],
               api_name="export_image")
            on(label_btn.click, self.on_label,
               [s, label_component, label_name, label_description, label_sign, label_layers], full,
               api_name="label_component")

            browse_in = [s, self.page, browse_psi, browse_class, *self.browse_attrs]
            browse_out = [s, self.page, self.message, self.gallery]
            on(self.page.submit, self.on_browse, browse_in, browse_out, api_name="browse")
            on(next_btn.click, self.on_next, browse_in, browse_out)
            on(prev_btn.click, self.on_prev, browse_in, browse_out)
            on(random_btn.click, self.on_random_page, [s, browse_psi, browse_class, *self.browse_attrs], browse_out)
            on(browse_psi.release, self.on_browse, browse_in, browse_out)
            for control in (browse_class, *self.browse_attrs):
                on(control.input, self.on_browse, browse_in, browse_out)
            on(jump_seed.submit, self.on_jump, [s, jump_seed, browse_psi, browse_class, *self.browse_attrs],
               full + browse_out + [self.tabs],
               api_name="open_seed")
            on(self.gallery.select, self.on_tile, [s], full + [self.tabs])

            tray_out = [s, self.message, self.tray]
            on(star_btn.click, self.on_star, [s], tray_out, api_name="star")
            on(star_seed.submit, self.on_star_seed, [s, star_seed], tray_out, api_name="star_seed")
            on(clear_btn.click, self.on_clear_tray, [s], tray_out)
            on(self.tray.select, self.on_tray_select, [s], full + [self.tabs])
            on(fav_btn.click, self.on_export_favourites, [s, favourites_scale], [self.favourites_file, self.message],
               api_name="export_favourites")
            on(photo_btn.click, self.on_project, [s, photo, photo_class, photo_steps, *self.photo_attrs],
               full + [self.tabs, self.photo_result], api_name="project_photo", concurrency_limit=1)
            on(batch_btn.click, self.on_export_batch, [s, batch_seeds, batch_strengths, favourites_scale],
               [self.batch_file, self.message], api_name="export_batch", concurrency_limit=1)

            loaded = demo.load(self.guarded(self.on_load), [s, self.session_id],
                               full + [self.page, self.gallery, self.tray, self.session_id],
                               api_visibility="undocumented")
            loaded.then(lambda: gr.update(info=self.mix_info()), None, [self.mix_layers], api_visibility="undocumented")
        return demo

    @property
    def psi_info(self) -> str:
        towards = {"class": "the chosen class's average design", "global": "the average design"}
        return f"1 = full variety; lower = closer to {towards[self.studio.truncation_centre]}"

    def mix_info(self) -> str:
        hints = self.studio.mix_hints()
        return "Measured on this model: " + "; ".join(f"{g} = {h}" for g, h in hints.items()) + "; or a range like 2-5"

    def scale_choices(self) -> list[tuple[str, str]]:
        height, width = self.studio.G.img_shape

        def size(f: int) -> str:
            return f"{height * f} px" if height == width else f"{width * f}×{height * f} px"
        return [(f"{size(1)}, as rendered", "1")] + [
            (f"{size(f)}, ×{f} {'Lanczos' if r == 'lanczos' else 'nearest'} (upscaled)", f"{f}-{r}")
            for f, r in EXPORT_SCALES]


def build_app(studio: Studio, store: SessionStore | None = None) -> gr.Blocks:
    return StudioApp(studio, store).build()


QUEUE_POLL_S = 0.01  # how often Gradio's queue looks for queued events when it has none
QUEUE_PROGRESS_POLL_S = 0.05  # and for progress to send


def calm_queue_polling(demo: gr.Blocks) -> None:
    """Gradio's queue looks for work every 1 ms on Linux (progress every 10 ms): 6-8% of a core for as long
    as the studio runs, idle or not, and a wake-up a millisecond that preempts a render's threads. Every
    10 ms costs a queued click at most 10 ms and an idle studio ~2% (measured: README, Performance)."""
    queue = getattr(demo, "_queue", None)
    for name, seconds in (("sleep_when_free", QUEUE_POLL_S), ("progress_update_sleep_when_free", QUEUE_PROGRESS_POLL_S)):
        if isinstance(getattr(queue, name, None), float):  # a Gradio without these keeps its own polling
            setattr(queue, name, max(getattr(queue, name), seconds))


def launch(studio: Studio, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           auth=None, block: bool = True, concurrency: int = 4,
           store: SessionStore | None = None):
    """Start the studio; returns (demo, url). Inference is serialised by the Studio's lock."""
    demo = build_app(studio, store)
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    calm_queue_polling(demo)
    demo.delete_cache = (UPLOAD_CACHE_S, UPLOAD_CACHE_S)  # uploads and outputs leave Gradio's cache within the hour
    demo.launch(server_name=host, server_port=port, share=share, auth=auth, prevent_thread_lock=not block,
                quiet=True, css=CSS, footer_links=["api", "settings"], ssr_mode=False,
                max_file_size=MAX_UPLOAD_BYTES)
    return demo, demo.local_url
