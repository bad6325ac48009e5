"""Edits of W+, orthogonalisation, the directions YAML (validation, hash, append) and PNG recipes."""
import io
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_generator
from ganspace.components import Components
from ganspace.directions import Direction, DirectionsError, append_direction, load_directions
from ganspace.edits import Edit, apply_edits, orthogonalize
from design.recipe import edit_to_recipe, edits_from_recipe, read_recipe, save_png_with_recipe

W_DIM, NUM_WS = 8, 6
HASH = "ab" * 32


def random_ws(n=3, seed=0):
    return torch.from_numpy(np.random.RandomState(seed).randn(n, NUM_WS, W_DIM)).double()


def unit_vector(seed):
    v = np.random.RandomState(seed).randn(W_DIM)
    return v / np.linalg.norm(v)


def named(directions_file, name):
    return next(d for d in directions_file.directions if d.name == name)


def test_additive_edit_changes_only_the_chosen_layers():
    ws, v = random_ws(), unit_vector(1)
    before = ws.clone()
    out = apply_edits(ws, [Edit(vector=v, sigma=2.0, layers=(2, 4), strength=1.5)])
    assert torch.equal(ws, before)                                   # input untouched
    for layer in range(NUM_WS):
        expected = before[:, layer].numpy() + (3.0 * v if 2 <= layer <= 4 else 0)
        if 2 <= layer <= 4:
            np.testing.assert_allclose(out[:, layer].numpy(), expected, rtol=1e-12)
        else:
            assert torch.equal(out[:, layer], before[:, layer]), f"layer {layer} moved"


def test_strength_zero_is_the_identity():
    ws = random_ws()
    assert torch.equal(apply_edits(ws, [Edit(vector=unit_vector(2), sigma=5.0, layers=(0, 5), strength=0.0)]), ws)
    assert torch.equal(apply_edits(ws, []), ws)


def test_absolute_mode_hits_its_target_coordinate_and_moves_only_along_v():
    ws, v, mean = random_ws(), unit_vector(3), np.random.RandomState(9).randn(W_DIM)
    out = apply_edits(ws, [Edit(vector=v * 4, sigma=0.5, layers=(1, 3), strength=-2.0, mode="absolute", mean=mean)])
    coords = (out.numpy() - mean) @ v
    np.testing.assert_allclose(coords[:, 1:4], -1.0, atol=1e-12)    # target = strength * sigma
    delta = (out - ws).numpy()
    np.testing.assert_allclose(delta - (delta @ v)[..., None] * v, 0, atol=1e-12)   # parallel to v
    assert torch.equal(out[:, [0, 4, 5]], ws[:, [0, 4, 5]])


def test_edits_compose_in_order():
    ws, a, b = random_ws(), unit_vector(4), unit_vector(5)
    e1 = Edit(vector=a, sigma=1.0, layers=(0, 2), strength=1.0)
    e2 = Edit(vector=b, sigma=2.0, layers=(1, 5), strength=-0.5, mode="absolute")
    np.testing.assert_allclose(apply_edits(ws, [e1, e2]).numpy(), apply_edits(apply_edits(ws, [e1]), [e2]).numpy())
    expected = ws.numpy().copy()
    expected[:, 0:3] += a
    expected[:, 1:6] += (-1.0 - expected[:, 1:6] @ b)[..., None] * b
    np.testing.assert_allclose(apply_edits(ws, [e1, e2]).numpy(), expected, atol=1e-12)


def test_bad_edits_are_refused():
    with pytest.raises(ValueError, match="non-zero"):
        Edit(vector=np.zeros(W_DIM), sigma=1, layers=(0, 1), strength=1)
    with pytest.raises(ValueError, match="mode"):
        Edit(vector=unit_vector(0), sigma=1, layers=(0, 1), strength=1, mode="multiply")
    with pytest.raises(ValueError, match="exceed"):
        apply_edits(random_ws(), [Edit(vector=unit_vector(0), sigma=1, layers=(4, 6), strength=1)])


def test_orthogonalised_direction_does_not_move_the_others():
    colour, brightness, sleeves = unit_vector(6), unit_vector(7), unit_vector(8)
    v = orthogonalize(sleeves, [colour, brightness])
    assert np.linalg.norm(v) == pytest.approx(1)
    assert abs(v @ colour) < 1e-12 and abs(v @ brightness) < 1e-12
    ws = random_ws()
    out = apply_edits(ws, [Edit(vector=v, sigma=1, layers=(0, 5), strength=3)]).numpy()
    np.testing.assert_allclose(out @ colour, ws.numpy() @ colour, atol=1e-12)
    with pytest.raises(ValueError, match="span"):
        orthogonalize(colour + brightness, [colour, brightness])


# ------------------------------------------------------------------ directions YAML

@pytest.fixture
def comps_file(tmp_path):
    q, _ = np.linalg.qr(np.random.RandomState(0).randn(W_DIM, W_DIM))
    comps = Components(q.T[:5], np.arange(W_DIM) / 10, [3.0, 2.0, 1.5, 1.0, 0.5], [0.4, 0.2, 0.1, 0.05, 0.02],
                       dict(num_ws=NUM_WS, w_dim=W_DIM))
    comps.save(tmp_path / "components.npz")
    return comps


GOOD = f"""\
# labelled by hand
network_sha256: {HASH}
components: components.npz
directions:
  - name: sleeve length
    description: short to long sleeves
    component: 2
    layers: coarse
    sign: "+ = longer sleeves"
  - name: colour
    component: 0
    layers: 4-5
    mode: absolute
    sigma: 1.25
    slider_min: -2
    slider_max: 4
    default: 1
  - name: custom
    vector: custom.npy
    sigma: 0.7
    layers: 3
    orthogonal_to: [colour]
"""


def write(tmp_path, text, name="directions.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_file_loads_with_defaults_and_resolved_vectors(tmp_path, comps_file):
    np.save(tmp_path / "custom.npy", np.arange(1, W_DIM + 1, dtype=np.float64))
    loaded = load_directions(write(tmp_path, GOOD), network_sha256=HASH)
    sleeve, colour, custom = loaded.directions
    assert sleeve.name == "sleeve length" and sleeve.component == 2 and sleeve.layers == (0, 1)   # 16 px coarse
    assert sleeve.sigma == pytest.approx(1.5) and sleeve.sign == "+ = longer sleeves"           # σ from the file
    np.testing.assert_allclose(sleeve.vector, comps_file.comp[2], rtol=1e-6)
    assert (colour.mode, colour.sigma, colour.slider_min, colour.slider_max, colour.default) == \
        ("absolute", 1.25, -2.0, 4.0, 1.0)
    assert colour.layers == (4, 5)
    np.testing.assert_allclose(colour.mean, comps_file.mean, rtol=1e-6)
    raw = np.arange(1, W_DIM + 1) / np.linalg.norm(np.arange(1, W_DIM + 1))
    expected = raw - (raw @ colour.vector) * colour.vector
    np.testing.assert_allclose(custom.vector, expected / np.linalg.norm(expected), atol=1e-6)
    assert custom.component is None and custom.layers == (3, 3)
    edit = sleeve.edit(2.0)
    assert (edit.strength, edit.sigma, edit.layers) == (2.0, pytest.approx(1.5), (0, 1))
    assert sleeve.edit(1.0, layers=(2, 3)).layers == (2, 3)
    assert named(loaded, "colour") is colour


def replace_line(text, old, new):
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("old, new, line, phrase", [
    ("    component: 2\n", "    compnent: 2\n", 7, "did you mean 'component'"),
    ("    layers: 4-5\n", "    layers: 4-9\n", 12, "outside 0-5"),
    ("    mode: absolute\n", "    mode: multiply\n", 13, "'mode' must be one of"),
    ("    slider_max: 4\n", "    slider_max: -3\n", 15, "below 'slider_max'"),
    ("    component: 0\n", "    component: 9\n", 11, "0-4"),
    ("    sigma: 1.25\n", "    sigma: -1\n", 14, "positive"),
    ("  - name: colour\n", "  - name: Sleeve-Length\n", 10, "used twice"),
    ("    default: 1\n", "    default: 7\n", 17, "within the slider range"),
    ("    orthogonal_to: [colour]\n", "    orthogonal_to: [color]\n", 22, "unknown directions"),
    ("    layers: coarse\n", "   layers: coarse\n", 8, "not valid YAML"),
    ("    sigma: 0.7\n", "", 18, "'sigma' is required"),
    ("networks_sha256: ", "networks_sha256: ", 2, "did you mean 'network_sha256'"),
])
def test_errors_name_the_line_and_what_to_fix(tmp_path, comps_file, old, new, line, phrase):
    np.save(tmp_path / "custom.npy", np.ones(W_DIM))
    text = GOOD.replace("network_sha256: ", "networks_sha256: ") if old == "networks_sha256: " \
        else replace_line(GOOD, old, new)
    with pytest.raises(DirectionsError) as info:
        load_directions(write(tmp_path, text))
    assert info.value.line == line, str(info.value)
    assert f"line {line}:" in str(info.value) and phrase in str(info.value)


def test_missing_vector_file_and_non_mapping_are_reported(tmp_path, comps_file):
    with pytest.raises(DirectionsError, match=r"line 19: vector file .*custom.npy not found"):
        load_directions(write(tmp_path, GOOD))
    with pytest.raises(DirectionsError, match="line 1: the file must be a YAML mapping"):
        load_directions(write(tmp_path, "- just\n- a list\n"))


def test_file_for_another_network_is_refused_unless_forced(tmp_path, comps_file):
    np.save(tmp_path / "custom.npy", np.ones(W_DIM))
    path = write(tmp_path, GOOD)
    with pytest.raises(DirectionsError, match=r"line 2: this file was made for network abababababab.*--force"):
        load_directions(path, network_sha256="cd" * 32)
    assert len(load_directions(path, network_sha256="cd" * 32, force=True).directions) == 3
    assert load_directions(path, network_sha256=HASH.upper()).network_sha256 == HASH
    digits = "0123456789" * 6 + "0123"                      # an unquoted all-digit hash is still text
    path.write_text(textwrap.dedent(GOOD).replace(HASH, digits))
    assert load_directions(path, network_sha256=digits).network_sha256 == digits


def test_append_direction_keeps_comments_and_a_backup(tmp_path, comps_file):
    np.save(tmp_path / "custom.npy", np.ones(W_DIM))
    path = write(tmp_path, GOOD)
    new = Direction(name="hem", description="hem line", component=4, vector=comps_file.comp[4], layers=(2, 3),
                    sigma=0.5, sign="+ = lower hem")
    append_direction(path, new)
    assert (tmp_path / "directions.yaml.bak").read_text() == textwrap.dedent(GOOD)
    assert path.read_text().startswith("# labelled by hand")
    loaded = load_directions(path)
    assert [d.name for d in loaded.directions] == ["sleeve length", "colour", "custom", "hem"]
    hem = named(loaded, "hem")
    assert (hem.component, hem.layers, hem.sigma, hem.sign) == (4, (2, 3), 0.5, "+ = lower hem")
    with pytest.raises(DirectionsError, match="already exists"):
        append_direction(path, new)


def test_append_direction_creates_a_file_and_stores_free_vectors(tmp_path, comps_file):
    path = tmp_path / "new.yaml"
    v = unit_vector(11)
    append_direction(path, Direction(name="free", vector=v, layers=(0, 5), sigma=2.0), network_sha256=HASH,
                     components_path="components.npz")
    append_direction(path, Direction(name="flat", vector=-v, layers=(1, 1), sigma=1.0, mode="absolute"))
    loaded = load_directions(path, network_sha256=HASH)
    np.testing.assert_allclose(named(loaded, "free").vector, v, atol=1e-12)
    np.testing.assert_allclose(named(loaded, "flat").vector, -v, atol=1e-12)
    assert named(loaded, "flat").mode == "absolute" and (tmp_path / "new.yaml.bak").exists()


# ------------------------------------------------------------------ recipes

def test_png_recipe_round_trips_from_path_bytes_and_pil(tmp_path):
    pixels = np.random.RandomState(0).randint(0, 256, (12, 10, 3), dtype=np.uint8)
    edit = Edit(vector=unit_vector(1), sigma=1.7, layers=(1, 3), strength=-2.5, mode="absolute",
                mean=np.full(W_DIM, 0.25))
    recipe = dict(network_sha256=HASH, seed=42, truncation_psi=0.7, class_idx=None,
                  edits=[edit_to_recipe(edit, direction="sleeve", component=3)])
    path = tmp_path / "x.png"
    save_png_with_recipe(path, pixels, recipe)
    assert read_recipe(path) == recipe
    assert read_recipe(path.read_bytes()) == recipe
    assert read_recipe(Image.open(path)) == recipe
    np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)
    ws = random_ws()
    np.testing.assert_array_equal(apply_edits(ws, edits_from_recipe(read_recipe(path))).numpy(),
                                  apply_edits(ws, [edit]).numpy())
    plain = io.BytesIO()
    Image.fromarray(pixels).save(plain, format="PNG")
    assert read_recipe(plain.getvalue()) is None
    with pytest.raises(ValueError, match="uint8 HWC"):
        save_png_with_recipe(path, pixels.astype(np.float32), recipe)


def test_validator_reports_every_problem_in_one_run_with_full_hashes(tmp_path, comps_file):
    np.save(tmp_path / "custom.npy", np.ones(W_DIM))
    text = GOOD.replace("    component: 2\n", "    compnent: 2\n", 1).replace("    mode: absolute\n", "    mode: multiply\n")
    text = text.replace("    slider_max: 4\n", "    slider_max: -3\n").replace("    layers: 3\n", "    layers: 3-9\n")
    with pytest.raises(DirectionsError) as info:
        load_directions(write(tmp_path, text), network_sha256="ef" * 32)
    message = str(info.value)
    assert "5 problems" in message and info.value.line == 2
    for line, phrase in ((2, f"this file was made for network {HASH} but the loaded network is {'ef' * 32}"),
                         (7, "unknown key 'compnent' in a direction; did you mean 'component'"),
                         (13, "'mode' must be one of"), (15, "'slider_min' (-2.0) must be below 'slider_max'"),
                         (21, "layer range 3-9 is outside 0-5")):
        assert f"line {line}: {phrase}" in message, message
    assert [e.line for e in info.value.errors] == [2, 7, 13, 15, 21]


def test_template_is_a_commented_file_that_validates_for_its_network(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ganspace.__main__ import cli
    from fashion_models import load_model
    from stylegan2.checkpoint import save_checkpoint
    G = tiny_generator(8, W_DIM, layers=1, channel_base=64, channel_max=8, eval_mode=False)
    network = save_checkpoint(tmp_path / "net.safetensors", G_ema=G)
    comps = Components(np.eye(W_DIM)[:4], np.zeros(W_DIM), [2.0, 1.0, 0.5, 0.25], [0.4, 0.3, 0.2, 0.1],
                       dict(num_ws=G.num_ws, network_sha256="ab" * 32))
    comps.save(tmp_path / "c.npz")
    monkeypatch.chdir(tmp_path)  # `> directions.yaml` in the folder of the components
    result = CliRunner().invoke(cli, ["template", "--network", str(network), "--components", "c.npz", "--num", "3"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.stdout
    sha = load_model(str(network)).sha256
    assert f"network_sha256: {sha}\n" in text and "sha256sum" in text
    assert "# the slider's label" in text and "coarse | middle | fine | all" in text and "40.0% of the variance" in text
    assert "was fitted on network " + "ab" * 32 in result.stderr  # the components belong to another network
    (tmp_path / "directions.yaml").write_text(text)
    loaded = load_directions(tmp_path / "directions.yaml", network_sha256=sha)
    assert [d.name for d in loaded.directions] == ["component-0", "component-1", "component-2"]
    assert [d.component for d in loaded.directions] == [0, 1, 2] and loaded.directions[1].sigma == 1.0
    assert loaded.directions[0].layers == (0, G.num_ws - 1)
