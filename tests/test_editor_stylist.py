"""What a stylist relies on, without a browser: typed values, one render per move, work kept across
visits, labels kept out of the bundled model, the model named, honest file names and upscaled exports."""
import functools
import hashlib
import json
import threading
import time
import types
import zipfile

import numpy as np
import pytest
from PIL import Image

from editor.app import StudioApp, parse_scale, split_description
from editor.exporting import export_batch, export_image, image_name
from design.recipe import Mix, Recipe, RecipeError, parse_number, read_recipe
from editor.network import load_studio_network
from editor.session import Session
from editor.store import SessionStore, labels_path, new_session_id, user_data_dir
from editor.studio import MIX_HINT_PAIRS, Studio
from conftest import REPO, assert_within_one_level
from fashion_models import ModelCard, bundled_dir, companion_files
from stylegan2.render import seed_to_w, synthesize_uint8

DEFAULT = bundled_dir() / "default"


@pytest.fixture(scope="module")
def default_studio(tmp_path_factory):
    loaded = load_studio_network(None)
    directions, components = companion_files(loaded.source)
    return Studio(loaded, directions, components, labels_path=tmp_path_factory.mktemp("labels") / "labels.yaml")


def count_synthesis(studio, monkeypatch) -> list:
    calls = []
    original = studio.G.synthesis.forward
    monkeypatch.setattr(studio.G.synthesis, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def test_parse_number_clamps_or_explains():
    assert parse_number("1.5", "x", -2, 2) == (1.5, "")
    assert parse_number(50, "Slider 'vivid'", -2, 3) == (3, "Slider 'vivid' goes from -2 to 3: set to 3.")
    assert parse_number("-7", "ψ", -1, 1.5)[0] == -1
    for typed in ("", None, "-", "abc", "nan", "inf", "1e999"):
        with pytest.raises(RecipeError, match="needs a number from -2 to 2"):
            parse_number(typed, "x", -2, 2)


def test_typed_values_reach_the_handlers_and_get_a_message_or_a_clamp(app, studio):
    """Gradio's own preprocessing raised on these before any handler ran (the error overlays)."""
    for component in (app.psi, app.page, *app.direction_sliders, *app.component_sliders, app.mix_weight):
        for typed in (None, "", "-", "abc", 50, -7):
            assert component.preprocess(typed) == typed
    session = Session()
    app.view(session)
    assert app.guarded(app.on_edit)(session, "3", "", None, "const")[app.message].startswith("⚠️ Truncation ψ needs")
    updates = app.on_direction_slider(0, session, 50)
    assert updates[app.message] == "Slider 'sleeves' goes from -3 to 3: set to 3."
    assert updates[app.direction_sliders[0]] == 3 and session.recipe.sliders == {"sleeves": 3.0}
    assert "needs a number" in app.guarded(app.on_direction_slider)(0, session, "-")[app.message]
    assert session.recipe.sliders == {"sleeves": 3.0}                     # the design is untouched
    assert app.on_edit(session, "3", 9, None, "const")[app.message].endswith("set to 1.5.")
    # the browser echoes the clamped value back: the note stays; a real change or a typo replaces it
    assert app.on_edit(session, "3", 1.5, None, "const")[app.message].endswith("set to 1.5.")
    assert app.guarded(app.on_edit)(session, "3", "abc", None, "const")[app.message].startswith("⚠️")
    assert app.on_edit(session, "3", 1.5, None, "const")[app.message].endswith("set to 1.5.")
    assert app.on_edit(session, "3", 1.0, None, "const")[app.message] == ""
    assert app.on_edit(session, "3", 1.5, None, "const")[app.message] == ""   # a new design: the old note is gone
    assert app._page(session, -4, 2, None)[app.page] == 0
    assert app.guarded(app.on_label)(session, None, "x", "", "", "all")[app.message].startswith("⚠️ Label component")
    assert app.guarded(app.on_mix)(session, "4", "fine", "")[app.message].startswith("⚠️ Blend weight needs")


def test_a_slider_move_renders_once_and_a_mix_once_per_new_image(app, studio, monkeypatch):
    session = Session()
    app.view(session)
    calls = count_synthesis(studio, monkeypatch)
    app.on_set_slider(session, "sleeves", 1.35)
    assert len(calls) == 1                                  # was 2: commit rendered to validate, then view
    app.on_set_slider(session, "sleeves", -0.65)
    assert len(calls) == 2
    calls.clear()
    app.on_mix(session, "77", "fine", 0.5)
    assert len(calls) == 2             # the result and parent B (parent A, the unedited seed, was drawn first)
    calls.clear()
    app.on_undo(session)
    app.on_redo(session)
    assert len(calls) == 0                                  # already drawn


def test_a_slider_move_sends_its_picture_inline_and_other_events_a_file(app, studio):
    """Moves answer with a data URL of the exact pixels (editor.design_image); the API keeps files."""
    import base64
    import io

    from editor.design_image import InlinePicture
    session = Session()
    app.view(session)
    move = app.inline_picture(functools.partial(app.on_direction_slider, 0))
    picture = move(session, 1.25)[app.image]
    assert isinstance(picture, InlinePicture)
    assert np.array_equal(picture.pixels, studio.render(session.recipe))
    sent = app.image.postprocess(picture)
    assert sent.path is None and sent.url.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(sent.url.split(",", 1)[1]))))
    assert np.array_equal(decoded, picture.pixels)                      # lossless: the same pixels
    assert app.guarded(move)(session, "-")[app.message].startswith("⚠️")  # an error has no picture to wrap
    as_file = app.image.postprocess(app.on_set_slider(session, "sleeves", -1.0)[app.image])
    assert as_file.url is None and np.array_equal(np.asarray(Image.open(as_file.path)), studio.render(session.recipe))


def test_sessions_survive_a_restart_in_a_bounded_store(studio, tmp_path):
    store = SessionStore(studio.network_sha256, root=tmp_path, max_sessions=3)
    session = Session()
    recipes = [studio.new_recipe(seed=s).replace(sliders={"sleeves": 0.5 * s}) for s in range(4)]
    for recipe in recipes:
        session.apply(recipe)
    session.undo()
    session.star(recipes[1], studio.render(recipes[1]))
    sid = new_session_id()
    store.save(sid, session.to_dict())
    again = SessionStore(studio.network_sha256, root=tmp_path, max_sessions=3)   # a new process
    restored = Session.from_dict(again.load(sid), studio.check, studio.render, session_id=sid)
    assert restored.recipe == recipes[2] and restored.undo_stack == recipes[:2] and restored.redo_stack == recipes[3:]
    assert [f.recipe for f in restored.favourites] == [recipes[1]]
    np.testing.assert_array_equal(restored.favourites[0].thumbnail, studio.render(recipes[1]))
    # A stale entry (another network, a removed slider) is dropped alone; the rest stays.
    data = session.to_dict()
    data["undo"][0]["network_sha256"] = "0" * 64
    data["favourites"].append({**recipes[0].to_dict(), "sliders": {"gone": 1.0}})
    partial = Session.from_dict(data, studio.check, studio.render)
    assert partial.undo_stack == recipes[1:2] and [f.recipe for f in partial.favourites] == [recipes[1]]
    # Ids are ours only (no paths), and the folder keeps the newest max_sessions files.
    for bad in ("../../etc/passwd", "", "x" * 32, None):
        assert again.load(bad) is None
        again.save(bad, {"recipe": None})
    for _ in range(5):
        again.save(new_session_id(), {"recipe": None})
    assert len(list(again.folder.glob("*.json"))) == 3
    (again.folder / "broken.json").write_text("{")
    assert again.load("broken") is None


def test_user_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AFRO_FASHION_DATA", str(tmp_path / "mine"))
    assert user_data_dir() == tmp_path / "mine"
    assert labels_path("ab" * 32) == tmp_path / "mine" / "labels" / f"{'ab' * 8}.yaml"
    monkeypatch.delenv("AFRO_FASHION_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_data_dir() == tmp_path / "xdg" / "afro-fashion-gan"


def test_labels_go_to_the_users_file_layered_over_the_bundled_one(default_studio):
    shipped = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in DEFAULT.iterdir()}
    before = [d.name for d in default_studio.directions]
    default_studio.label_component(2, "length and width", "both at once", "+ = longer, wider", "coarse")
    assert [d.name for d in default_studio.directions] == before + ["length and width"]
    assert "length and width" in default_studio.labels_path.read_text()
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in DEFAULT.iterdir()} == shipped
    reopened = Studio(default_studio.network, default_studio.directions_path, default_studio.components_path,
                      labels_path=default_studio.labels_path)
    assert reopened.direction("length and width").layers == (0, 3)
    with pytest.raises(RecipeError, match="already exists"):
        reopened.label_component(3, before[0])               # a bundled name


def test_the_page_names_the_model_and_opens_on_a_representative_seed(default_studio, studio):
    app = StudioApp(default_studio)
    text = app.model_markdown()
    for words in ("**Model: default**", "64×64 px", "longsleeve", "t-shirt", "western clothing", "Demonstration"):
        assert words in text
    card = default_studio.network.describe()
    assert card.start == ("longsleeve", 2)
    start = default_studio.start_recipe()
    assert (start.seed, start.class_idx, start.network_name) == (2, 2, "default")
    assert StudioApp(studio).model_markdown().startswith("**Model: random demo")   # no card: still named
    assert studio.network.describe() == ModelCard(name="random demo")


def test_foreign_recipe_names_the_network_and_its_full_hash(default_studio, studio):
    recipe = default_studio.new_recipe(seed=4)
    with pytest.raises(RecipeError) as caught:
        studio.check(recipe)
    message = str(caught.value)
    assert default_studio.network_sha256 in message and studio.network_sha256 in message
    assert "--network default" in message
    old = Recipe.from_dict({k: v for k, v in recipe.to_dict().items() if k != "network_name"})  # old recipes load
    assert old.network_name == "" and default_studio.render(old).shape == (64, 64, 3)


def test_slider_help_shows_words_first_and_mix_help_is_measured(app, studio, default_studio):
    assert split_description("narrow to wide (component 3, coarse layers; agree 0.93)") == \
        ("narrow to wide", "component 3, coarse layers; agree 0.93")
    assert split_description("plain words") == ("plain words", "")
    updates = app._direction_slider_updates(studio.new_recipe())
    assert "component" not in updates[app.direction_sliders[0]]["info"]
    bundled = StudioApp(default_studio)
    bundled.build()
    info = bundled._direction_slider_updates(default_studio.start_recipe())
    assert info[bundled.direction_sliders[0]]["info"] == \
        "+ = shorter, wider; - = longer · garment length, from long (trouser-like) to short and boxy"
    assert "agree 0.97" in info[bundled.technical]
    hints = default_studio.mix_hints()
    assert list(hints) == ["coarse", "middle", "fine"]
    assert hints["coarse"].endswith("(layers 0-3)") and hints["fine"].endswith("(layers 8-9)")
    assert "fine = colour/print" not in bundled.mix_info() and hints["middle"] in bundled.mix_info()


def spy_on_synthesize(studio, monkeypatch) -> list:
    """Each studio.synthesize call as (time it began, whether another thread could take the studio's lock)."""
    calls = []
    synthesize = studio.synthesize

    def spying_synthesize(*args, **kwargs):
        free = []

        def try_lock():  # a slider move, in another thread, must get the lock between background renders
            free.append(studio._lock.acquire(timeout=0))
            if free[-1]:
                studio._lock.release()
        probe = threading.Thread(target=try_lock)
        probe.start()
        probe.join()
        calls.append((time.monotonic(), free[0]))
        return synthesize(*args, **kwargs)
    monkeypatch.setattr(studio, "synthesize", spying_synthesize)
    return calls


def test_the_mix_hints_render_in_the_background_only_while_the_user_is_idle(studio, monkeypatch):
    """Measured when the first page opens; holding the studio's lock for all of it made the user's first
    slider move wait for the whole measurement (2.6 s at 256 px)."""
    monkeypatch.setattr("editor.studio.MIX_HINTS_IDLE_S", 0.3)
    studio._mix_hints = None
    studio.render(studio.new_recipe(seed=3))  # the user just drew something
    drawn = time.monotonic()
    calls = spy_on_synthesize(studio, monkeypatch)
    hints = studio.mix_hints()
    assert list(hints) == ["coarse", "middle", "fine"]
    assert len(calls) == 4 * MIX_HINT_PAIRS  # one image at a time: plain, then mixed on each group
    assert all(free for _, free in calls)
    assert calls[0][0] - drawn >= 0.25  # ~MIX_HINTS_IDLE_S after the render began and ended
    assert studio.mix_hints() is hints and len(calls) == 4 * MIX_HINT_PAIRS  # measured once


def test_the_mix_hints_are_measured_once_per_network_and_kept_on_disk(studio, monkeypatch, tmp_path):
    monkeypatch.setattr("editor.studio.MIX_HINTS_IDLE_S", 0.0)
    path = tmp_path / "hints.json"
    first = Studio(studio.network, studio.directions_path, studio.components_path, mix_hints_file=path)
    hints = first.mix_hints()
    stored = json.loads(path.read_text())
    assert stored["hints"] == hints and stored["measured_on"]["class"] == first.start_recipe().label
    again = Studio(studio.network, studio.directions_path, studio.components_path, mix_hints_file=path)
    calls = spy_on_synthesize(again, monkeypatch)
    assert again.mix_hints() == hints and calls == []
    other_class = (stored["measured_on"]["class"] or 0) + 1  # the card's start changed
    elsewhere = dict(stored, measured_on=dict(stored["measured_on"], **{"class": other_class}))
    for damaged in ("{not json", json.dumps({"coarse": "size"}), json.dumps(["coarse", "middle", "fine"]),
                    json.dumps(hints), json.dumps(dict(stored, hints={"coarse": "size"})), json.dumps(elsewhere)):
        path.write_text(damaged)
        remeasured = Studio(studio.network, studio.directions_path, studio.components_path, mix_hints_file=path)
        calls = spy_on_synthesize(remeasured, monkeypatch)
        assert remeasured.mix_hints() == hints and len(calls) == 4 * MIX_HINT_PAIRS
        assert json.loads(path.read_text()) == stored


def test_upscaled_export_says_so_in_its_name_and_recipe(studio, tmp_path):
    recipe = studio.new_recipe(seed=9).replace(sliders={"sleeves": 1.5, "colour": -2.0}, mix=Mix(5, (4, 5), 1.0))
    plain = studio.render(recipe)
    nearest = export_image(studio, recipe, tmp_path, scale=4, resample="nearest")
    assert nearest.name == "seed9-psi0.7-mix5-colour-2-sleeves+1.5-x4nearest.png"
    np.testing.assert_array_equal(np.asarray(Image.open(nearest)), plain.repeat(4, axis=0).repeat(4, axis=1))
    data = read_recipe(nearest)
    assert data["export"] == {"upscaled": True, "scale": 4, "resample": "nearest", "rendered_resolution": [16, 16]}
    assert Recipe.from_dict(data) == recipe                  # the design still restores from an upscaled PNG
    smooth = np.asarray(Image.open(export_image(studio, recipe, tmp_path, scale=8, resample="lanczos")))
    assert smooth.shape == (128, 128, 3) and not np.array_equal(smooth, plain.repeat(8, 0).repeat(8, 1))
    assert "export" not in read_recipe(export_image(studio, recipe, tmp_path))
    assert parse_scale("8-lanczos") == (8, "lanczos") and parse_scale("3-nearest") == (1, "") == parse_scale(None)


def test_file_names_carry_class_and_edits(default_studio):
    recipe = default_studio.new_recipe(seed=16, class_idx=9).replace(mix=Mix(5, (4, 7), 1.0),
                                                                      sliders={"wide": 1.5, "backdrop": 0.0})
    assert image_name(recipe, default_studio.network.class_names) == "seed16-t-shirt-psi0.7-mix5-wide+1.5"
    long = recipe.replace(sliders={f"direction {i}": 1.0 for i in range(40)})
    assert len(image_name(long)) <= 150 and image_name(long, scale=2, resample="lanczos").endswith("-and-more-x2lanczos")


def test_new_designs_on_a_conditional_model_truncate_towards_their_class(default_studio):
    """ψ pulls a new design towards its class's average W (stylegan2.render.map_to_w), so a lower ψ keeps the
    garment; the browse grid draws the same way; a recipe that says "global" keeps the overall average."""
    G = default_studio.G
    recipe = default_studio.new_recipe(seed=3, class_idx=4)
    assert recipe.truncation_centre == "class"
    expected = synthesize_uint8(G, seed_to_w(G, 3, 0.7, 4, centre="class"))[0]
    np.testing.assert_array_equal(default_studio.render(recipe), expected)
    old = recipe.replace(truncation_centre="global")
    np.testing.assert_array_equal(default_studio.render(old), synthesize_uint8(G, seed_to_w(G, 3, 0.7, 4))[0])
    assert not np.array_equal(default_studio.render(old), expected)
    assert_within_one_level(default_studio.render_seeds([3], 0.7, 4)[0], expected)
    app = StudioApp(default_studio)
    app.build()
    session = Session()
    app.commit(session, old, "", full=True)
    app.on_browse(session, 0, 0.7, 4)
    opened = Recipe.from_json(app.on_tile(session, types.SimpleNamespace(index=3))[app.recipe_text])
    assert (opened.seed, opened.truncation_centre) == (3, "class")      # the tile as the grid drew it


def test_tiles_open_as_drawn_and_open_seed_opens_it(default_studio):
    app = StudioApp(default_studio)
    app.build()
    session = Session()
    shown = app.on_browse(session, 0, 0.8, 4)                    # pants
    # The class menu moves on to 'shoes' but the tiles on screen are still pants: a tile opens as pants.
    opened = app.on_tile(session, types.SimpleNamespace(index=5))
    recipe = Recipe.from_json(opened[app.recipe_text])
    assert (recipe.seed, recipe.class_idx, recipe.truncation_psi) == (5, 4, 0.8)
    assert_within_one_level(opened[app.image], shown[app.gallery][5][0])   # batched vs single rendering
    jumped = app.on_jump(session, "1234", 0.7, 2)
    assert jumped[app.page] == 1234 // 24 and Recipe.from_json(jumped[app.recipe_text]).seed == 1234
    assert "Opened seed 1234" in jumped[app.message]
    fresh = app.on_new_design(session)
    assert Recipe.from_json(fresh[app.recipe_text]) == default_studio.start_recipe()
    assert session.undo_stack[-1].seed == 1234                  # the old design is one undo away


def test_batch_progress_counts_images(app, studio):
    session = Session()
    app.view(session)
    reports = []

    def progress(value, desc=None, unit="steps"):
        reports.append((value, desc, unit))

    app.on_export_batch(session, "0-1", "-1, 1", progress=progress)
    assert reports[-1] == ((8, 8), "Batch export", "images")      # 2 directions x 2 seeds x 2 strengths


def test_opening_a_browser_needs_a_desktop(monkeypatch):
    import sys

    from editor.__main__ import _has_display

    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert not _has_display()                   # a server or Colab: no text browser taking over the terminal
    monkeypatch.setenv("DISPLAY", ":0")
    assert _has_display()


@pytest.mark.slow
def test_first_command_prints_the_model_and_the_url(tmp_path):
    """`python -m editor` as the README starts it: which model, where, then the page answers."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from conftest import free_port

    port = free_port()
    env = {**os.environ, "AFRO_FASHION_DATA": str(tmp_path), "DISPLAY": ""}
    server = subprocess.Popen([sys.executable, "-m", "editor", "--port", str(port), "--no-browser"], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines, deadline = [], time.monotonic() + 240
        while time.monotonic() < deadline and not any("running at" in line for line in lines):
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                break
            lines.append(line)
        output = "".join(lines)
        assert f"Afro Fashion Studio is running at http://127.0.0.1:{port}" in output, output
        assert "Model: default, 64 px, 10 classes, 7 sliders" in output
        assert f"Your labels go to {tmp_path / 'labels'}" in output and f"sessions to {tmp_path / 'sessions'}" in output
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_batch_export_upscales_every_png_and_marks_it(studio, tmp_path):
    """The batch export offers the same export sizes: every PNG enlarged, named -x2nearest, recipe marked."""
    recipe = studio.new_recipe(seed=3).replace(sliders={"sleeves": 1.0})
    plain_zip = export_batch(studio, recipe, [3], [1.0], tmp_path / "plain")
    big_zip = export_batch(studio, recipe, [3], [1.0], tmp_path / "big", scale=2, resample="nearest")
    with zipfile.ZipFile(plain_zip) as plain, zipfile.ZipFile(big_zip) as big:
        (small_name,) = [n for n in plain.namelist() if n.startswith("sleeves/")]
        (big_name,) = [n for n in big.namelist() if n.startswith("sleeves/")]
        assert big_name == small_name.replace(".png", "-x2nearest.png")
        small = np.asarray(Image.open(plain.open(small_name)))
        large_file = tmp_path / "large.png"
        large_file.write_bytes(big.read(big_name))
    np.testing.assert_array_equal(np.asarray(Image.open(large_file)), small.repeat(2, axis=0).repeat(2, axis=1))
    assert read_recipe(large_file)["export"] == {"upscaled": True, "scale": 2, "resample": "nearest",
                                                  "rendered_resolution": [16, 16]}
    with pytest.raises(ValueError, match="Export scale"):
        export_batch(studio, recipe, [3], [1.0], tmp_path / "bad", scale=3, resample="nearest")
