"""The studio core without a browser: recipes, rendering, mixing, undo/redo, exports."""
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from editor.exporting import export_batch, export_favourites, export_image
from editor.network import random_demo_network
from design.model import Base
from design.recipe import MAX_SEED, Mix, Recipe, RecipeError, parse_seed
from editor.session import Session
from editor.studio import Studio
from design.recipe import read_recipe
from stylegan2.render import seed_to_w

from conftest import make_studio

RES = 16  # num_ws = 6: coarse 0-1, middle 2-3, fine 4-5


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return make_studio(tmp_path_factory.mktemp("studio"))


def reference_image(studio: Studio, ws: torch.Tensor) -> np.ndarray:
    """Pixels straight from G.synthesis, quantised by hand (independent of the studio)."""
    with torch.no_grad():
        img = studio.G.synthesis(ws, noise_mode="const")
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def test_parse_seed_accepts_integers_and_rejects_the_rest():
    assert parse_seed("42") == 42 and parse_seed(7.0) == 7 and parse_seed(f" {MAX_SEED} ") == MAX_SEED
    for bad in ("abc", "", None, "1.5", "-1", str(MAX_SEED + 1), "1e30", "nan"):
        with pytest.raises(RecipeError, match="whole number"):
            parse_seed(bad)


def test_recipe_json_round_trip_and_validation():
    recipe = Recipe("ab" * 32, seed=9, truncation_psi=0.5, noise_mode="none", mix=Mix(3, (0, 1), 0.25),
                    sliders={"sleeves": -1.5}, layer_overrides={"sleeves": (1, 2)}, components={2: 0.5},
                    component_layers=(2, 3))
    assert Recipe.from_json(recipe.to_json()) == recipe
    data = recipe.to_dict()
    for field, value, words in [("format", "other", "not an Afro Fashion recipe"), ("seed", "x", "whole number"),
                                ("noise_mode", "loud", "noise_mode"), ("sliders", [1], "sliders"),
                                ("truncation_psi", 1e9, "Truncation"), ("mix", {"seed": 1, "layers": [3, 1]}, "Mix layers")]:
        with pytest.raises(RecipeError, match=words):
            Recipe.from_dict({**data, field: value})
    with pytest.raises(RecipeError, match="not valid JSON"):
        Recipe.from_json("{not json")


def test_render_matches_g_directly_and_slider_is_the_ganspace_edit(studio):
    recipe = studio.new_recipe(seed=11, truncation_psi=0.6)
    # Independent reference: z from the seed, mapping with truncation, synthesis.
    z = torch.from_numpy(np.random.RandomState(11).randn(1, studio.G.z_dim)).float()
    ws = studio.G.mapping(z, None, truncation_psi=0.6)
    np.testing.assert_array_equal(studio.render(recipe), reference_image(studio, ws))

    sleeves = studio.direction("sleeves")
    edited = ws.clone()
    v = torch.from_numpy(studio.components.comp[0] / np.linalg.norm(studio.components.comp[0])).float()
    edited[:, 0:2] += 2.0 * float(studio.components.stdev[0]) * v  # coarse = layers 0-1, σ units
    assert sleeves.layers == (0, 1)
    image = studio.render(recipe.replace(sliders={"sleeves": 2.0}))
    assert np.abs(image.astype(int) - reference_image(studio, edited).astype(int)).max() <= 1
    assert not np.array_equal(image, studio.render(recipe))


def test_layer_override_and_components_act_only_on_their_layers(studio):
    recipe = studio.new_recipe(seed=3).replace(sliders={"colour": 1.0}, layer_overrides={"colour": (2, 2)},
                                               components={3: -1.0}, component_layers=(5, 5))
    base = studio.base_ws(Base(3, 0.7, None))
    ws = studio.compose_ws(recipe)
    changed = (ws - base).abs().amax(dim=2)[0]
    assert changed[2] > 0 and changed[5] > 0
    assert torch.all(changed[[0, 1, 3, 4]] == 0)
    expected = base[0, 5].double() - float(studio.components.stdev[3]) * torch.from_numpy(
        studio.components.comp[3]).double()
    torch.testing.assert_close(ws[0, 5].double(), expected, atol=1e-5, rtol=0)


def test_mix_blends_only_the_chosen_layers(studio):
    recipe = studio.mix_recipe(studio.new_recipe(seed=1), 2, "middle", 0.25)
    assert recipe.mix == Mix(2, (2, 3), 0.25)
    a, b = studio.base_ws(Base(1, 0.7, None)), studio.base_ws(Base(2, 0.7, None))
    ws = studio.compose_ws(recipe)
    torch.testing.assert_close(ws[:, 2:4], 0.75 * a[:, 2:4] + 0.25 * b[:, 2:4])
    torch.testing.assert_close(ws[:, [0, 1, 4, 5]], a[:, [0, 1, 4, 5]])
    assert studio.mix_recipe(recipe, None, "all", 1).mix is None


def test_mapping_is_cached_per_seed(studio, monkeypatch):
    calls = []
    original = studio.G.mapping.forward
    monkeypatch.setattr(studio.G.mapping, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    recipe = studio.new_recipe(seed=123456)
    for value in (0.5, 1.0, -1.0):
        studio.render(recipe.replace(sliders={"sleeves": value}))
    assert len(calls) == 1


def test_bad_recipes_say_what_is_wrong(studio):
    good = studio.new_recipe(seed=5)
    cases = [(good.replace(network_sha256="f" * 64), f"sha256 {'f' * 64}"),
             (good.replace(sliders={"hem": 1.0}), "'hem' is not in this studio"),
             (good.replace(sliders={"sleeves": 99.0}), "between -3.0 and 3.0"),
             (good.replace(components={40: 1.0}), "Component 40 does not exist"),
             (good.replace(mix=Mix(1, (0, 9), 1.0)), "within 0-5"),
             (good.replace(class_idx=2), "no classes")]
    for recipe, words in cases:
        with pytest.raises(RecipeError, match=words):
            studio.render(recipe)
    with pytest.raises(RecipeError, match="Use a group"):
        studio.layer_range("sleeve")


def test_random_noise_is_reproducible_per_recipe(studio):
    recipe = studio.new_recipe(seed=8).replace(noise_mode="random")
    np.testing.assert_array_equal(studio.render(recipe), studio.render(recipe))


def test_session_undo_redo_and_favourites():
    session = Session()
    recipes = [Recipe("a" * 64, seed=s) for s in range(4)]
    for recipe in recipes[:3]:
        session.apply(recipe)
    session.apply(recipes[2])  # no-op: same recipe does not fill the history
    assert session.undo() and session.undo() and session.recipe == recipes[0]
    assert not session.undo()
    assert session.redo() and session.recipe == recipes[1]
    session.apply(recipes[3])
    assert not session.redo() and session.undo_stack == recipes[:2]
    thumb = np.zeros((4, 4, 3), np.uint8)
    assert session.star(recipes[0], thumb) and not session.star(recipes[0], thumb)
    assert [f.recipe for f in session.favourites] == [recipes[0]]


def test_export_image_embeds_a_recipe_that_restores_the_same_pixels(studio, tmp_path):
    recipe = studio.new_recipe(seed=21).replace(sliders={"sleeves": 1.25}, mix=Mix(4, (4, 5), 0.5))
    path = export_image(studio, recipe, tmp_path)
    pixels = np.asarray(Image.open(path))
    restored = Recipe.from_dict(read_recipe(path))
    assert restored == recipe
    np.testing.assert_array_equal(studio.render(restored), pixels)
    edits = read_recipe(path)["edits"]
    assert len(edits) == 1 and edits[0]["strength"] == 1.25 and edits[0]["layers"] == [0, 1]


def test_export_favourites_zip_has_pngs_sheet_and_manifest(studio, tmp_path):
    recipes = [studio.new_recipe(seed=s) for s in (1, 2, 3)]
    archive = export_favourites(studio, recipes, tmp_path)
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        sheet = Image.open(zf.open("contact_sheet.png"))
        first = zf.read(manifest[0]["file"])
    assert len([n for n in names if n.endswith(".png")]) == 4
    assert [Recipe.from_dict(m["recipe"]) for m in manifest] == recipes
    assert sheet.size == (3 * RES, RES)
    assert Recipe.from_dict(read_recipe(first)) == recipes[0]
    with pytest.raises(ValueError, match="empty"):
        export_favourites(studio, [], tmp_path)


def test_export_batch_uses_moved_directions(studio, tmp_path):
    recipe = studio.new_recipe(seed=0).replace(sliders={"colour": 1.0})
    calls = []
    archive = export_batch(studio, recipe, [0, 1], [-1.0, 1.0], tmp_path, progress=calls.append)
    with zipfile.ZipFile(archive) as zf:
        pngs = [n for n in zf.namelist() if n.startswith("colour/") and n.endswith(".png")]
        manifest = json.loads(zf.read("manifest.json"))
    assert len(pngs) == 4 and {row["direction"] for row in manifest} == {"colour"}
    assert calls[-1] == (4, 4)


def test_label_component_validates_and_keeps_a_backup(studio):
    with pytest.raises(RecipeError, match="already exists"):
        studio.label_component(2, "sleeves")
    with pytest.raises(RecipeError, match="name"):
        studio.label_component(2, "  ")
    with pytest.raises(RecipeError, match="between 0 and 5"):
        studio.label_component(17, "x")
    before = studio.directions_path.read_text()
    studio.label_component(2, "hem", layers="2-3")
    assert studio.direction("hem").layers == (2, 3)
    assert studio.directions_path.with_name("directions.yaml.bak").read_text() == before


def test_seed_pages_stay_within_the_seed_range():
    assert Studio.page_seeds(2, 24) == list(range(48, 72))
    last = Studio.last_page(24)
    assert Studio.page_seeds(last, 24)[-1] == MAX_SEED and len(Studio.page_seeds(last, 24)) <= 24


def test_base_ws_equals_ganspace_seed_to_w(studio):
    torch.testing.assert_close(studio.base_ws(Base(77, 0.5, None)), seed_to_w(studio.G, 77, 0.5))


def test_png_from_a_batch_export_restores_its_image_in_the_studio(studio, tmp_path):
    recipe = studio.new_recipe(seed=4).replace(sliders={"sleeves": 1.0})
    archive = export_batch(studio, recipe, [4], [2.0], tmp_path)
    with zipfile.ZipFile(archive) as zf:
        name = next(n for n in zf.namelist() if n.startswith("sleeves/") and n.endswith(".png"))
        data = zf.read(name)
    restored = Recipe.from_dict(read_recipe(data))
    assert restored.seed == 4 and restored.sliders == {"sleeves": 2.0}
    assert restored.layer_overrides == {"sleeves": studio.direction("sleeves").layers}
    exported = np.asarray(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(studio.render(studio.check(restored)), exported)
    unnamed = {"seed": 1, "network_sha256": "ab", "edits": [{"vector": [0.0], "strength": 1.0, "layers": [0, 1]}]}
    with pytest.raises(RecipeError, match="direction names"):
        Recipe.from_dict(unnamed)


def test_a_model_folder_opens_with_its_own_directions_and_components(tmp_path):
    from editor.network import load_studio_network
    from fashion_models import companion_files
    from stylegan2.checkpoint import save_checkpoint

    folder = tmp_path / "model"
    network = save_checkpoint(folder / "network.safetensors", G_ema=random_demo_network(RES).G_ema)
    assert companion_files(str(network)) == (None, None)
    (folder / "components.npz").write_bytes(b"")
    (folder / "directions.yaml").write_text("directions: []\n")
    loaded = load_studio_network(str(network))
    assert loaded.source == str(network)
    assert companion_files(loaded.source) == (folder / "directions.yaml", folder / "components.npz")
    assert companion_files("https://example.invalid/net.pkl") == (None, None)
