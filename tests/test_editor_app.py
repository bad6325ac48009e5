"""The studio as users reach it: Gradio on 127.0.0.1, driven by gradio_client (one Client = one tab)."""
import json
import threading
import zipfile

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from conftest import make_studio, serving
from design.recipe import Mix, Recipe


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    studio = make_studio(tmp_path_factory.mktemp("app"))
    with serving(studio) as (demo, url):
        yield studio, url, demo


@pytest.fixture
def client(served):
    return Client(served[1], verbose=False)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def edit(client, seed, psi=0.7, noise="const"):
    return client.predict(str(seed), psi, None, noise, api_name="/edit")


def test_binds_to_localhost_only(served):
    assert served[1].startswith("http://127.0.0.1:")


def test_the_queue_looks_for_work_every_10_ms_not_every_1_ms(client, served):
    """Gradio's own 1 ms polling kept 6-8% of a core busy while the studio ran; queued events still run."""
    from editor.app import QUEUE_POLL_S, QUEUE_PROGRESS_POLL_S

    queue = served[2]._queue
    assert queue.sleep_when_free >= QUEUE_POLL_S == 0.01
    assert queue.progress_update_sleep_when_free >= QUEUE_PROGRESS_POLL_S
    page, message, tiles = client.predict(1, 0.7, None, api_name="/browse")  # a queued event
    assert page == 1 and len(tiles) == 24


def test_browse_pages_show_consecutive_seeds(client, served):
    studio = served[0]
    page, message, tiles = client.predict(2, 0.7, None, api_name="/browse")
    assert page == 2 and message == ""
    assert [t["caption"] for t in tiles] == [f"seed {s}" for s in range(48, 72)]
    assert Image.open(tiles[0]["image"]).size == (studio.G.img_resolution,) * 2


def test_edit_and_slider_give_the_studio_image(client, served):
    studio = served[0]
    message, image, recipe_text, *_ = edit(client, 12)
    base = studio.new_recipe(seed=12)
    np.testing.assert_array_equal(pixels(image), studio.render(base))
    assert Recipe.from_json(recipe_text) == base
    message, image, recipe_text, history = client.predict("sleeves", 2.0, api_name="/set_slider")
    moved = base.replace(sliders={"sleeves": 2.0})
    np.testing.assert_array_equal(pixels(image), studio.render(moved))
    assert not np.array_equal(pixels(image), studio.render(base))
    assert Recipe.from_json(recipe_text) == moved and history == "undo 1 · redo 0"
    undone = client.predict(api_name="/undo")
    assert Recipe.from_json(undone[2]) == base
    redone = client.predict(api_name="/redo")
    assert Recipe.from_json(redone[2]) == moved


def test_mix_shows_result_and_both_parents(client, served):
    studio = served[0]
    edit(client, 5)
    result = client.predict("9", "fine", 0.5, api_name="/mix")
    expected = studio.new_recipe(seed=5).replace(mix=Mix(9, (4, 5), 0.5))
    np.testing.assert_array_equal(pixels(result[1]), studio.render(expected))
    names = [p["label"] for p in client.view_api(return_format="dict")["named_endpoints"]["/mix"]["returns"]]
    parent_a = result[names.index("Parent A (seed)")]
    parent_b = result[names.index("Parent B (style source)")]
    assert Image.open(parent_a).size == Image.open(parent_b).size  # both parents shown
    assert not np.array_equal(pixels(parent_a), pixels(parent_b))


def test_recipe_download_restores_the_identical_image_in_another_tab(client, served):
    edit(client, 31, psi=0.55)
    client.predict("colour", -1.5, api_name="/set_slider")
    _, image, recipe_text, _ = client.predict("3", "coarse", 0.75, api_name="/mix")[:4]
    recipe_file, message = client.predict(api_name="/download_recipe")
    other = Client(served[1], verbose=False)
    restored = other.predict(handle_file(recipe_file), api_name="/restore")
    assert restored[0] == "Recipe restored."
    np.testing.assert_array_equal(pixels(restored[1]), pixels(image))
    assert Recipe.from_json(restored[2]) == Recipe.from_json(recipe_text)


def test_exported_png_embeds_its_recipe_and_restores(client, served):
    edit(client, 44)
    _, image, *_ = client.predict("sleeves", -1.0, api_name="/set_slider")
    png, message = client.predict(api_name="/export_image")
    assert "recipe embedded" in message
    np.testing.assert_array_equal(pixels(png), pixels(image))
    other = Client(served[1], verbose=False)
    restored = other.predict(handle_file(png), api_name="/restore")
    np.testing.assert_array_equal(pixels(restored[1]), pixels(image))


def test_bad_input_shows_a_message_and_keeps_the_design(client, served, tmp_path):
    studio = served[0]
    _, _, good_text, *_ = edit(client, 7)
    for seed in ("abc", "99999999999999", "-3", "1.5"):
        assert "whole number" in edit(client, seed)[0]
    assert "goes from -3 to 3: set to 3." in client.predict("sleeves", 1e9, api_name="/set_slider")[0]  # clamped
    assert "not in this studio" in client.predict("nope", 1.0, api_name="/set_slider")[0]
    assert "Use a group" in client.predict("9", "sleeves", 1.0, api_name="/mix")[0]
    foreign = Recipe.from_json(good_text).replace(network_sha256="e" * 64).to_json()
    assert f"sha256 {'e' * 64}" in client.predict(foreign, api_name="/apply_recipe")[0]
    assert "not valid JSON" in client.predict("{oops", api_name="/apply_recipe")[0]
    text_file = tmp_path / "notes.json"
    text_file.write_text("hello")
    assert "neither" in client.predict(handle_file(str(text_file)), api_name="/restore")[0]
    plain_png = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain_png)
    assert "no studio recipe" in client.predict(handle_file(str(plain_png)), api_name="/restore")[0]
    # After all that, the design is untouched: a no-op edit still shows seed 7.
    _, image, recipe_text, *_ = client.predict(api_name="/reset_all")
    assert Recipe.from_json(recipe_text) == Recipe.from_json(good_text)
    np.testing.assert_array_equal(pixels(image), studio.render(studio.new_recipe(seed=7)))


def test_favourites_export_zip(client, served):
    edit(client, 3)
    client.predict(api_name="/star")
    message, tray = client.predict("8", api_name="/star_seed")
    assert [t["caption"] for t in tray] == ["seed 3", "seed 8"]
    archive, message = client.predict(api_name="/export_favourites")
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert "contact_sheet.png" in zf.namelist()
    assert [m["recipe"]["seed"] for m in manifest] == [3, 8]


def test_batch_export_over_a_seed_range(client):
    edit(client, 0)
    client.predict("colour", 1.0, api_name="/set_slider")
    archive, message = client.predict("0-2", "-1, 1", api_name="/export_batch")
    with zipfile.ZipFile(archive) as zf:
        assert len([n for n in zf.namelist() if n.startswith("colour/")]) == 6
    assert "must go upwards" in client.predict("5-1", "1", api_name="/export_batch")[1]


def test_concurrent_clients_never_mix_results(served):
    """Four tabs edit at once; each must always see its own seed and slider value."""
    studio, url, _ = served
    clients = [Client(url, verbose=False) for _ in range(4)]
    failures = []

    def work(i, c):
        seed = 1000 + i
        edit(c, seed)
        for step in range(3):
            value = round(-2 + i + 0.5 * step, 2)
            _, image, recipe_text, _ = c.predict("sleeves", value, api_name="/set_slider")
            expected = studio.new_recipe(seed=seed).replace(sliders={"sleeves": value})
            if Recipe.from_json(recipe_text) != expected or not np.array_equal(pixels(image), studio.render(expected)):
                failures.append((i, step))

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures


@pytest.fixture(scope="module")
def portrait_served(tmp_path_factory):
    studio = make_studio(tmp_path_factory.mktemp("portrait"), base_shape=(4, 3))  # 16x12 (HxW)
    with serving(studio) as (_, url):
        yield studio, url


def test_portrait_studio_browses_edits_mixes_and_exports_unstretched(portrait_served):
    """A 3:4 network: every image the studio hands out is 12 wide x 16 tall, exactly what the network drew."""
    studio, url = portrait_served
    client = Client(url, verbose=False)
    _, _, tiles = client.predict(0, 0.7, None, api_name="/browse")
    assert {Image.open(t["image"]).size for t in tiles} == {(12, 16)}
    _, image, *_ = edit(client, 5)
    assert pixels(image).shape == (16, 12, 3)
    _, image, recipe_text, _ = client.predict("sleeves", 1.5, api_name="/set_slider")
    np.testing.assert_array_equal(pixels(image), studio.render(Recipe.from_json(recipe_text)))
    result = client.predict("9", "fine", 0.5, api_name="/mix")
    assert pixels(result[1]).shape == (16, 12, 3)
    png, _ = client.predict("4-lanczos", api_name="/export_image")
    assert Image.open(png).size == (48, 64)
    client.predict(api_name="/star")
    client.predict("8", api_name="/star_seed")
    archive, _ = client.predict(api_name="/export_favourites")
    with zipfile.ZipFile(archive) as zf:
        with zf.open("contact_sheet.png") as f:
            assert Image.open(f).size == (2 * 12, 16)
    from editor.app import StudioApp
    assert "12×16 px (width×height)" in StudioApp(studio).model_markdown()


def test_an_uploaded_photo_is_projected_and_its_export_restores_it_after_a_restart(client, served, tmp_path,
                                                                                  one_thread):
    """Projects a 48 px photo of a seed into the 16 px studio (30 steps), exports it, then restores it in a
    new studio whose latent store starts empty (~15 s at load 13 on 2 cores: a server round trip per step of
    the stylist's path; the projection itself is 30 steps of a 16 px network)."""
    from design.recipe import RecipeError
    from editor.app import StudioApp
    from editor.session import Session
    from editor.studio import Studio
    from projection.latent import LatentFolder

    studio = served[0]
    Image.fromarray(studio.render(studio.new_recipe(seed=21))).resize((48, 48)).save(tmp_path / "photo.jpg")
    result = client.predict(handle_file(str(tmp_path / "photo.jpg")), None, 30, api_name="/project_photo")
    message, image, recipe_text = result[:3]
    assert "Your photo is open" in message, message
    recipe = Recipe.from_json(recipe_text)
    assert recipe.seed is None and recipe.latent in studio.latents
    np.testing.assert_array_equal(pixels(image), studio.render(recipe))
    moved = client.predict("sleeves", 2.0, api_name="/set_slider")      # sliders work on the photo as on a seed
    assert Recipe.from_json(moved[2]).latent == recipe.latent
    archive, _ = client.predict(api_name="/export_image")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "export")
    png = next((tmp_path / "export").glob("*.png"))
    latent = tmp_path / "export" / "latents" / f"{recipe.latent}.npz"
    assert latent.is_file()

    # A restart: a new Studio on the same network whose latent store starts empty (the handlers are called
    # directly: a second server would add seconds and prove nothing more).
    again = Studio(studio.network, studio.directions_path, studio.components_path,
                   latents=LatentFolder(tmp_path / "fresh-store"))
    app = StudioApp(again)
    app.build()
    session = Session()
    assert "not on this machine" in app.on_upload(session, str(png))[app.message]
    assert "kept" in app.on_upload(session, str(latent))[app.message]
    restored = app.on_upload(session, str(png))
    assert restored[app.message] == "Recipe restored."
    np.testing.assert_array_equal(restored[app.image], pixels(png))
    assert session.recipe.replace(network_name="") == Recipe.from_json(moved[2]).replace(network_name="")
    (tmp_path / "notes.txt").write_text("not a photo")
    with pytest.raises(RecipeError, match="PNG, JPEG or WebP"):
        again.project_photo(tmp_path / "notes.txt")
