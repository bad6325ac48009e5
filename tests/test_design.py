"""The one design model (design.model) and recipe format (design.recipe) under studio, export, sheets and generate.py.

Old formats are written here with the old code's literal layout (version-1 studio recipes, the old
`ganspace export` PNG recipe without "format"), so a change that stops reading them fails here.
"""
import dataclasses
import json
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import generate
from design.model import Base, Design, LatentMissing, Mix, base_ws, design_ws
from design.recipe import RECIPE_KEY, Recipe, RecipeError, portable_design, read_recipe, read_recipe_upload
from editor.exporting import export_favourites, export_image, image_name
from ganspace.edits import apply_edits
from ganspace.export import export_directions
from conftest import assert_differs_beyond_rounding, assert_within_one_level
from projection.latent import LatentFolder, ProjectedW, save as latent_save, to_bytes
from stylegan2.checkpoint import save_checkpoint
from stylegan2.render import seed_to_w, synthesize_uint8


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def network_file(studio, tmp_path_factory):
    path = save_checkpoint(tmp_path_factory.mktemp("net") / "tiny.safetensors", G_ema=studio.G)
    return path


def run_generate(network_file, *args):
    result = CliRunner().invoke(generate.main, ["--network", str(network_file), *map(str, args)])
    return result


def test_design_ws_is_base_then_mix_then_edits_by_hand(studio):
    """float64 by hand: lerp of the mixed layers, then w + s·σ·v on the edit's layers only."""
    G = studio.G
    sleeves = studio.direction("sleeves")
    design = Design(Base(7, 0.6), Mix(3, (2, 5), 0.25), edits=(sleeves.edit(1.5),))
    ours = design_ws(G, design).double().numpy()
    a, b = (seed_to_w(G, s, 0.6).double().numpy() for s in (7, 3))
    expected = a.copy()
    expected[:, 2:6] = a[:, 2:6] + 0.25 * (b[:, 2:6] - a[:, 2:6])
    v = sleeves.vector / np.linalg.norm(sleeves.vector)
    start, end = sleeves.layers
    expected[:, start:end + 1] += 1.5 * sleeves.sigma * v
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert not np.allclose(ours, a, atol=1e-3)


def test_a_base_has_one_name_in_files_and_labels():
    sha = "1a2b3c4d" + "e" * 56
    assert Base(16).name() == "seed16" and Base(16).name(digits=4) == "seed0016" and Base(3).name(sep=" ") == "seed 3"
    assert Base(None, latent=sha).name() == "photo1a2b3c4d" == Base(None, latent=sha).name(digits=4)
    assert Base(None, latent=sha).name(sep=" ") == "photo 1a2b3c4d"
    recipe = Recipe(network_sha256="0" * 64, seed=None, latent=sha)
    assert image_name(recipe).startswith("photo1a2b3c4d-")


def test_a_latent_base_is_used_as_stored_and_a_missing_one_says_so(studio):
    G = studio.G
    stored = torch.randn(1, G.num_ws, G.w_dim)
    ws = base_ws(G, Base(seed=None, latent="ab" * 32), lambda sha: stored)
    assert torch.equal(ws, stored)
    with pytest.raises(LatentMissing, match="latents/abab.*npz"):
        base_ws(G, Base(seed=None, latent="ab" * 32))
    with pytest.raises(RecipeError, match="shape"):
        base_ws(G, Base(seed=None, latent="ab" * 32), lambda sha: stored[:, :2])


def test_version_1_studio_recipes_still_restore(studio, tmp_path):
    old = {"format": "afro-fashion-recipe", "version": 1, "network_sha256": studio.network_sha256, "seed": 11,
           "truncation_psi": 0.6, "class_idx": None, "noise_mode": "const",
           "mix": {"seed": 4, "layers": [4, 5], "weight": 1.0}, "sliders": {"sleeves": 1.0},
           "layer_overrides": {}, "components": {"2": -1.5}, "component_layers": None}
    (tmp_path / "old.json").write_text(json.dumps(old))
    recipe = read_recipe_upload(tmp_path / "old.json")
    assert recipe == studio.new_recipe(seed=11, truncation_psi=0.6).replace(
        mix=Mix(4, (4, 5), 1.0), sliders={"sleeves": 1.0}, components={2: -1.5}, network_name="")
    assert recipe.latent is None and recipe.to_dict()["version"] == 3 and recipe.truncation_centre == "global"
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    with pytest.raises(RecipeError, match="version 4"):
        Recipe.from_dict({**old, "version": 4})
    v2 = {**old, "version": 2}     # before the truncation centre: the overall average, as it was drawn then
    assert Recipe.from_dict(v2).truncation_centre == "global"
    assert Recipe.from_dict({**v2, "version": 3, "truncation_centre": "class"}).truncation_centre == "class"
    for bad in ("classy", ["class"], None):
        with pytest.raises(RecipeError, match="truncation_centre must be one of global, class"):
            Recipe.from_dict({**v2, "version": 3, "truncation_centre": bad})


def test_old_batch_export_pngs_restore_in_the_studio_and_render_in_generate(studio, network_file, tmp_path):
    """The old exporter's recipe (no "format", edits with vectors and the direction's name), written literally."""
    sleeves = studio.direction("sleeves")
    edit = sleeves.edit(2.0)
    old = dict(version=1, network_sha256=studio.network_sha256, seed=5, class_idx=None, truncation_psi=0.7,
               noise_mode="const", edits=[dict(direction="sleeves", component=0, vector=edit.vector.tolist(),
                                               sigma=float(edit.sigma), layers=list(edit.layers), strength=2.0,
                                               mode="add", mean=None)])
    expected = studio.render(studio.new_recipe(seed=5).replace(sliders={"sleeves": 2.0}))
    info = PngInfo()
    info.add_text(RECIPE_KEY, json.dumps(old, sort_keys=True))
    Image.fromarray(expected).save(tmp_path / "old.png", pnginfo=info)
    restored = read_recipe_upload(tmp_path / "old.png")
    assert restored.sliders == {"sleeves": 2.0} and restored.seed == 5
    np.testing.assert_array_equal(studio.render(restored), expected)
    result = run_generate(network_file, "--recipe", tmp_path / "old.png", "--outdir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(pixels(tmp_path / "out" / "old.png"), expected)


def test_studio_export_and_generate_draw_one_design_the_same(studio, network_file, tmp_path):
    """The batch exporter's PNG, the studio's render of its recipe and generate.py --recipe agree to the pixel."""
    chosen = dataclasses.replace(studio.directions_file, directions=[studio.direction("colour")])
    export_directions(studio.G, chosen, [2], [1.5], tmp_path / "batch", network_sha256=studio.network_sha256)
    png = next((tmp_path / "batch").glob("*/*.png"))
    data = read_recipe(png)
    assert data["format"] == RECIPE_KEY and data["version"] == 3 and data["sliders"] == {"colour": 1.5}
    recipe = read_recipe_upload(png)
    np.testing.assert_array_equal(studio.render(recipe), pixels(png))
    result = run_generate(network_file, "--recipe", png, "--outdir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(pixels(tmp_path / "out" / f"{png.stem}.png"), pixels(png))
    design = portable_design(data)
    assert design.base == Base(2, 0.7, None) and len(design.edits) == 1


def test_a_photo_design_travels_with_its_latent_and_says_when_it_is_missing(studio, network_file, tmp_path):
    G = studio.G
    w = seed_to_w(G, 9, 0.5) + 0.3 * torch.randn(1, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(0))
    sha = studio.latents.put(to_bytes(ProjectedW(w=w.numpy())))
    recipe = studio.new_recipe().replace(seed=None, latent=sha, sliders={"sleeves": -1.0})
    image = studio.render(recipe)
    np.testing.assert_array_equal(image, synthesize_uint8(G, apply_edits(w, [studio.direction("sleeves").edit(-1.0)]))[0])
    archive = export_favourites(studio, [recipe], tmp_path / "fav")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert f"latents/{sha}.npz" in names
        zf.extractall(tmp_path / "unpacked")
    png = next(p for p in (tmp_path / "unpacked").glob("*.png") if p.name != "contact_sheet.png")
    single = export_image(studio, recipe, tmp_path / "one")
    assert single.suffix == ".zip" and f"latents/{sha}.npz" in zipfile.ZipFile(single).namelist()

    result = run_generate(network_file, "--recipe", png, "--outdir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(pixels(next((tmp_path / "out").glob("*.png"))), image)
    (tmp_path / "unpacked" / "latents" / f"{sha}.npz").unlink()
    result = run_generate(network_file, "--recipe", png, "--outdir", tmp_path / "out2")
    assert result.exit_code == 1 and "not on this machine" in result.output and "Traceback" not in result.output

    other = LatentFolder(tmp_path / "empty")   # a studio without the latent: refuses with the reason
    saved, studio.latents = studio.latents, other
    try:
        with pytest.raises(LatentMissing, match="projected photo"):
            studio.check(read_recipe_upload(png))
        (tmp_path / "wrong.npz").write_bytes(b"PK\x03\x04 not a zip")
        with pytest.raises(RecipeError, match="cannot be used"):
            studio.store_latent((tmp_path / "wrong.npz").read_bytes())
        studio.store_latent(saved.path(sha).read_bytes())
        np.testing.assert_array_equal(studio.render(read_recipe_upload(png)), image)
    finally:
        studio.latents = saved


def test_recipe_latent_field_is_checked(studio):
    base = studio.new_recipe().to_dict()
    with pytest.raises(RecipeError, match="64 hex"):
        Recipe.from_dict({**base, "latent": "../../etc/passwd"})
    recipe = Recipe.from_dict({**base, "seed": None, "latent": "0f" * 32})
    assert recipe.seed is None and recipe.noise_seed == 0 and recipe.base == Base(None, 0.7, None, "0f" * 32)


def photo_latent(studio, seed: int = 9) -> tuple[torch.Tensor, str]:
    """A W+ off the mapping's image (a seed's W with per-layer noise: what a projection finds), stored."""
    G = studio.G
    w = seed_to_w(G, seed, 0.5) + 0.3 * torch.randn(1, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(1))
    return w, studio.latents.put(to_bytes(ProjectedW(w=w.numpy())))


def test_batch_export_of_a_photo_design_sweeps_its_latent_and_restores_after_a_restart(app, studio, network_file,
                                                                                     tmp_path):
    """The Favourites & export tab's batch export with Seeds "this" on a photo design, through the handler; its
    zip restores in a restarted studio and in generate.py (~7 s at load 5 on 2 cores: the restart builds a
    second studio and app, and generate.py loads the network once)."""
    from editor.session import Session
    from editor.studio import Studio

    w, sha = photo_latent(studio)
    session = Session()
    app.commit(session, studio.new_recipe().replace(seed=None, latent=sha))
    design = studio.render(session.recipe)
    archive = app.on_export_batch(session, "this", "-1, 0, 1", progress=lambda *a, **k: None)[app.batch_file]
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "batch")
    assert f"latents/{sha}.npz" in names and "sheet_sleeves.png" in names
    pngs = sorted(n for n in names if n.endswith(".png") and "/" in n and not n.startswith("latents/"))
    assert pngs == sorted(f"{d}/photo{sha[:8]}_{d}_s{s}.png" for d in ("sleeves", "colour")
                          for s in ("-1.00", "+0.00", "+1.00"))
    for name in ("sleeves", "colour"):
        assert_within_one_level(pixels(tmp_path / "batch" / name / f"photo{sha[:8]}_{name}_s+0.00.png"), design)
        moved = pixels(tmp_path / "batch" / name / f"photo{sha[:8]}_{name}_s+1.00.png")
        assert_differs_beyond_rounding(moved, design)
        assert_within_one_level(moved, studio.render(session.recipe.replace(sliders={name: 1.0})))
    edited = tmp_path / "batch" / "sleeves" / f"photo{sha[:8]}_sleeves_s-1.00.png"
    recipe = read_recipe_upload(edited)
    assert recipe.latent == sha and recipe.seed is None and recipe.sliders == {"sleeves": -1.0}
    expected = synthesize_uint8(studio.G, apply_edits(w, [studio.direction("sleeves").edit(-1.0)]))[0]
    assert_within_one_level(pixels(edited), expected)   # the photo's W+ itself, edited by hand

    # A restart: a studio on the same network whose latent store starts empty.
    again = Studio(studio.network, studio.directions_path, studio.components_path,
                   latents=LatentFolder(tmp_path / "fresh-store"))
    other = type(app)(again)
    other.build()
    fresh = Session()
    assert "not on this machine" in other.on_upload(fresh, str(edited))[other.message]
    assert "kept" in other.on_upload(fresh, str(tmp_path / "batch" / "latents" / f"{sha}.npz"))[other.message]
    restored = other.on_upload(fresh, str(edited))
    assert restored[other.message] == "Recipe restored."
    np.testing.assert_array_equal(restored[other.image], pixels(edited))
    result = run_generate(network_file, "--recipe", edited, "--latents", tmp_path / "batch" / "latents",
                          "--outdir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(pixels(tmp_path / "out" / edited.name), pixels(edited))

    seeds = app.on_export_batch(session, "3", "1", progress=lambda *a, **k: None)[app.batch_file]
    with zipfile.ZipFile(seeds) as zf:   # typed seeds still sweep seeds, without the photo's latent
        assert "sleeves/seed0003_sleeves_s+1.00.png" in zf.namelist()
        assert not any(n.startswith("latents/") for n in zf.namelist())
    app.commit(session, studio.new_recipe(seed=4, truncation_psi=0.6))
    this_seed = app.on_export_batch(session, "", "0", progress=lambda *a, **k: None)[app.batch_file]
    with zipfile.ZipFile(this_seed) as zf:   # an empty box on a seed design: that seed, at its ψ
        zf.extract("colour/seed0004_colour_s+0.00.png", tmp_path / "seed")
    assert_within_one_level(pixels(tmp_path / "seed" / "colour" / "seed0004_colour_s+0.00.png"),
                            studio.render(session.recipe))


def test_generate_applies_a_recipes_edits_to_a_projected_w(studio, network_file, tmp_path):
    """`generate.py --projected-w W --recipe R`: R's edits (its vectors) on project.py's code, not on R's seed."""
    w, _ = photo_latent(studio, seed=12)
    latent_save(tmp_path / "projected_w.npz", ProjectedW(w=w.numpy()))
    chosen = dataclasses.replace(studio.directions_file, directions=[studio.direction("colour")])
    export_directions(studio.G, chosen, [2], [0.0, 1.5], tmp_path / "batch", network_sha256=studio.network_sha256)
    recipes = sorted((tmp_path / "batch" / "colour").glob("*.png"))
    result = run_generate(network_file, "--projected-w", tmp_path / "projected_w.npz", *[a for r in recipes
                          for a in ("--recipe", r)], "--outdir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    plain, edited = (pixels(tmp_path / "out" / r.name) for r in recipes)
    assert "s+0.00" in recipes[0].name
    assert generate.recipe_stem(recipes[0].parent / "seed4-psi0.7-colour+1.5.recipe.json") == "seed4-psi0.7-colour+1.5"
    assert_within_one_level(plain, synthesize_uint8(studio.G, w)[0])
    assert_within_one_level(edited, synthesize_uint8(studio.G, apply_edits(w, [studio.direction("colour").edit(1.5)]))[0])
    assert_differs_beyond_rounding(edited, pixels(recipes[1]))   # not the seed's own edited image
    result = run_generate(network_file, "--projected-w", tmp_path / "projected_w.npz", "--seeds", "1",
                          "--outdir", tmp_path / "out")
    assert result.exit_code == 2 and "--projected-w with --recipe" in result.output
