"""The studio on a multi-attribute network: one picker per attribute (with "any") instead of the class menu,
driven through gradio_client; the recipe carries the choices and browse pages follow them."""
import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from editor.app import StudioApp
from editor.exporting import image_name
from design.recipe import Recipe, RecipeError
from stylegan2.render import seed_to_w, synthesize_uint8
from conftest import make_attribute_studio, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    studio = make_attribute_studio(tmp_path_factory.mktemp("attrs"))
    with serving(studio) as (_, url):
        yield studio, url


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_recipe_attributes_pick_the_label_vector(served):
    studio = served[0]
    layout = studio.network.label_layout
    recipe = studio.new_recipe(seed=5).replace(attributes={"garment": "skirt", "sleeve": "long"})
    assert recipe.class_idx is None and Recipe.from_json(recipe.to_json()) == recipe
    assert recipe.truncation_centre == "class"   # ψ pulls towards these attributes' own average W
    expected = synthesize_uint8(studio.G, seed_to_w(studio.G, 5, 0.7, layout.encode(recipe.attributes), "class"))[0]
    np.testing.assert_array_equal(studio.render(recipe), expected)
    assert not np.array_equal(studio.render(recipe), studio.render(recipe.replace(attributes={"garment": "dress"})))
    any_label = synthesize_uint8(studio.G, seed_to_w(studio.G, 5, 0.7, np.zeros(layout.dim, np.float32), "class"))[0]
    np.testing.assert_array_equal(studio.render(recipe.replace(attributes={})), any_label)   # all "any": zeros
    assert image_name(recipe) == "seed5-skirt-long-psi0.7"
    with pytest.raises(RecipeError, match="unknown garment 'coat'"):
        studio.check(recipe.replace(attributes={"garment": "coat"}))
    with pytest.raises(RecipeError, match="class_idx must be null"):
        studio.check(recipe.replace(class_idx=1))


def test_pickers_replace_the_class_menu(served):
    app = StudioApp(served[0])
    app.build()
    assert [p.label for p in app.attr_pickers] == ["Garment", "Fabric", "Sleeve"]
    assert [p.label for p in app.browse_attrs] == ["Garment", "Fabric", "Sleeve"]
    assert app.attr_pickers[2].choices == [("any", "any"), ("short sleeves", "short"), ("long sleeves", "long")]
    assert not app.class_idx.visible and app.class_choices == []
    assert "attributes garment (3), fabric (2), sleeve (2)" in app.model_markdown()


def test_gradio_client_pickers_drive_the_label_and_browse_follows(served):
    studio, url = served
    client = Client(url, verbose=False)
    # /edit: seed, psi, class (hidden), noise, then one value per attribute picker
    message, image, recipe_text, *_ = client.predict("7", 0.7, None, "const", "top", "any", "short", api_name="/edit")
    recipe = Recipe.from_json(recipe_text)
    assert recipe.attributes == {"garment": "top", "sleeve": "short"} and recipe.seed == 7
    np.testing.assert_array_equal(pixels(image), studio.render(recipe))
    _, image, recipe_text, *_ = client.predict("7", 0.7, None, "const", "dress", "kente", "any", api_name="/edit")
    assert Recipe.from_json(recipe_text).attributes == {"garment": "dress", "fabric": "kente"}
    assert not np.array_equal(pixels(image), studio.render(recipe))

    def page(*attrs):
        _, _, tiles = client.predict(0, 0.7, None, *attrs, api_name="/browse")
        return np.stack([pixels(t["image"]) for t in tiles[:4]]).astype(int)

    def drawn(attributes):
        return np.stack(studio.render_seeds([0, 1, 2, 3], 0.7, tuple(sorted(attributes.items())))).astype(int)

    choices = [("dress", "any", "any"), ("skirt", "any", "long"), ("any", "any", "any")]
    candidates = [drawn({"garment": "dress"}), drawn({"garment": "skirt", "sleeve": "long"}), drawn({})]
    for i, attrs in enumerate(choices):
        # gallery tiles travel as lossy WebP (~12 levels off at 16 px): the page is nearest to what the studio
        # draws for these pickers, not for the others
        distances = [np.abs(page(*attrs) - candidate).mean() for candidate in candidates]
        assert int(np.argmin(distances)) == i, (attrs, distances)


def test_your_photo_has_the_design_tabs_pickers_and_projects_with_their_label(served, tmp_path, monkeypatch):
    """The photo tab's pickers are the Design tab's (one builder); their choice is the projection's label (what
    w_avg and the search start from) and lands in the photo design's recipe. 3 steps: the label, not the fit."""
    import editor.studio
    from editor.session import Session

    studio = served[0]
    app = StudioApp(studio)
    app.build()
    assert [p.label for p in app.photo_attrs] == [p.label for p in app.attr_pickers] == ["Garment", "Fabric", "Sleeve"]
    assert [p.choices for p in app.photo_attrs] == [p.choices for p in app.attr_pickers]
    assert [p.elem_id for p in app.photo_attrs] == ["photo-attr-garment", "photo-attr-fabric", "photo-attr-sleeve"]
    labels, project = [], editor.studio.project
    monkeypatch.setattr(editor.studio, "project", lambda *a, class_idx=None, **k: labels.append(class_idx)
                        or project(*a, class_idx=class_idx, **k))
    Image.fromarray(studio.render(studio.new_recipe(seed=3))).resize((32, 32)).save(tmp_path / "photo.png")
    session = Session()
    updates = app.on_project(session, str(tmp_path / "photo.png"), None, 3, "skirt", "any", "long",
                             progress=lambda *a, **k: None)
    assert "Your photo is open" in updates[app.message]
    layout = studio.network.label_layout
    np.testing.assert_array_equal(labels[-1], layout.encode({"garment": "skirt", "sleeve": "long"}))
    assert labels[-1].sum() == 2 and session.recipe.latent in studio.latents
    assert session.recipe.attributes == {"garment": "skirt", "sleeve": "long"} and session.recipe.class_idx is None
    np.testing.assert_array_equal(updates[app.image], studio.render(session.recipe))
    app.on_project(session, str(tmp_path / "photo.png"), None, 3, "any", "any", "any", progress=lambda *a, **k: None)
    np.testing.assert_array_equal(labels[-1], np.zeros(layout.dim, np.float32))   # all "any": zeros
    with pytest.raises(RecipeError, match="unknown garment 'coat'"):
        studio.project_photo(tmp_path / "photo.png", num_steps=3, attributes={"garment": "coat"})
