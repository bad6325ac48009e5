"""Attribute directions (ganspace/attributes.py) on a toy mapping with a planted effect, and the attribute
options of the CLIs: generate.py --attr, ganspace --attr, ganspace attribute (multi-attribute and class)."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import generate
from editor.network import build_random_generator
from ganspace.__main__ import cli
from ganspace.attributes import attribute_direction, with_block
from ganspace.directions import load_directions
from design.recipe import RECIPE_KEY
from stylegan2.checkpoint import load_network_file, save_checkpoint
from stylegan2.render import seed_z, to_uint8
from conftest import attribute_layout

LAYOUT = attribute_layout()   # garment 0-2, fabric 3-4, sleeve 5-6
pytestmark = pytest.mark.usefixtures("one_thread")


class ToyMapping(torch.nn.Module):
    """w = tanh(z M) + c B + 0.5 tanh(z M) * (c k): every block moves W, and the label interacts with z."""

    def __init__(self, z_dim=6, c_dim=LAYOUT.dim, w_dim=5, num_ws=3, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.M, self.B, self.k = rng.randn(z_dim, w_dim), rng.randn(c_dim, w_dim) * 2, rng.randn(c_dim)
        self.anchor = torch.nn.Parameter(torch.zeros(1))   # device_of looks at parameters

    def numpy(self, z, c):
        h = np.tanh(z @ self.M)
        return h + c @ self.B + 0.5 * h * (c @ self.k)[:, None]

    def forward(self, z, c, truncation_psi=1.0):
        w = self.numpy(z.double().numpy(), c.double().numpy())
        return torch.from_numpy(w).float()[:, None].repeat(1, self.num_ws, 1)


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mapping = ToyMapping()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = 6, LAYOUT.dim, 5, 3


def test_planted_attribute_effect_is_recovered_and_sigma_is_measured_on_fresh_samples():
    G = Toy()
    rng = np.random.RandomState(3)
    # "data": garment and fabric drawn at random, sleeve long more often with dresses (a confound)
    rows = np.stack([LAYOUT.encode({"garment": g, "fabric": rng.choice(["ankara", "kente"]),
                                    "sleeve": "long" if g == "dress" or rng.rand() < 0.3 else "short"})
                     for g in rng.choice(["dress", "skirt", "top"], size=4000)])
    sleeve = LAYOUT.block("sleeve")
    found = attribute_direction(G, with_block(rows, sleeve.offset, sleeve.stop, 0),
                                with_block(rows, sleeve.offset, sleeve.stop, 1), rows, seed=7)
    planted = G.mapping.B[sleeve.offset + 1] - G.mapping.B[sleeve.offset]   # short -> long
    cosine = found.vector @ planted / np.linalg.norm(planted)
    assert cosine > 0.95, cosine
    assert abs(np.linalg.norm(found.vector) - 1) < 1e-12
    # the naive estimate (mean W of long-sleeved rows minus short-sleeved ones) mixes in the garment confound
    w = G.mapping.numpy(np.random.RandomState(7).randn(len(rows), 6), rows)
    is_long = rows[:, sleeve.offset + 1] == 1
    naive = w[is_long].mean(0) - w[~is_long].mean(0)
    assert naive @ planted / np.linalg.norm(naive) / np.linalg.norm(planted) < cosine
    # σ: std of the projections of fresh w (z from seed + 1, the data's rows), computed here in float64
    fresh = G.mapping.numpy(np.random.RandomState(8).randn(len(rows), 6), rows)
    assert found.sigma == pytest.approx((fresh @ found.vector).std(), rel=1e-5)
    assert found.shift_sigmas == pytest.approx(np.linalg.norm(found.shift) / found.sigma)


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """A tiny random multi-attribute network and a one-hot class network, saved as our checkpoints."""
    root = tmp_path_factory.mktemp("nets")
    attrs, classes = root / "attrs.safetensors", root / "classes.safetensors"
    G = build_random_generator(16, c_dim=LAYOUT.dim, z_dim=16)
    save_checkpoint(attrs, G_ema=G, meta={"label_layout": LAYOUT.to_json(), "training_options": {"attr_dropout": 0.1}})
    save_checkpoint(classes, G_ema=build_random_generator(16, c_dim=3, z_dim=16),
                    meta={"class_names": ["dress", "skirt", "top"]})
    return attrs, classes


def run(command, args):
    return CliRunner().invoke(command, [str(a) for a in args])


def test_generate_attr_renders_the_chosen_label_and_all_spreads_values(networks, tmp_path):
    attrs, classes = networks
    result = run(generate.main, ["--network", attrs, "--seeds", "0-1", "--attr", "garment=skirt",
                                 "--attr", "sleeve=long sleeves", "--outdir", tmp_path / "one"])
    assert result.exit_code == 0, result.output
    G = load_network_file(attrs).G_ema
    c = torch.from_numpy(LAYOUT.encode({"garment": "skirt", "sleeve": "long"}))[None]
    with torch.no_grad():
        expected = to_uint8(G(seed_z(G, 1), c, noise_mode="const"))[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one" / "seed0001.png")), expected)
    result = run(generate.main, ["--network", attrs, "--seeds", "0-1", "--attr", "garment=all", "--attr",
                                 "fabric=any", "--outdir", tmp_path / "all", "--grid"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "all").glob("seed*.png"))
    assert names == sorted(f"seed{s:04d}-{g}.png" for s in (0, 1) for g in ("dress", "skirt", "top"))
    assert Image.open(tmp_path / "all" / "grid.png").size == (2 + 2 * 18, 2 + 3 * 18)   # rows: garments
    result = run(generate.main, ["--network", attrs, "--seeds", "0", "--attr", "garment=all", "--attr", "sleeve=all",
                                 "--outdir", tmp_path / "two", "--grid"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "two" / "grid.png").size == (2 + 2 * 18, 2 + 3 * 18)   # garments x sleeves
    for args, message in [(["--class", "1"], "use --attr NAME=VALUE instead of --class"),
                          (["--attr", "garment=coat"], "unknown garment 'coat'"),
                          (["--attr", "colour=red"], "unknown attribute 'colour'")]:
        result = run(generate.main, ["--network", attrs, "--seeds", "0", "--outdir", tmp_path / "x", *args])
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    result = run(generate.main, ["--network", classes, "--seeds", "0", "--attr", "garment=dress",
                                 "--outdir", tmp_path / "y"])
    assert result.exit_code != 0 and "use --class for this one" in result.output
    assert run(generate.main, ["--network", classes, "--seeds", "0", "--class", "skirt",
                               "--outdir", tmp_path / "z"]).exit_code == 0   # one-hot models as before


def test_ganspace_attribute_writes_a_labelled_vector_direction_beside_others(networks, tmp_path):
    attrs, classes = networks
    directions = tmp_path / "directions.yaml"
    result = run(cli, ["attribute", "--network", attrs, "--attr", "sleeve", "--from", "short", "--to", "long",
                       "--directions", directions, "--samples", "300", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = run(cli, ["attribute", "--network", attrs, "--attr", "garment", "--from", "dress", "--to", "top",
                       "--directions", directions, "--samples", "300", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    sha = load_network_file(attrs).sha256
    loaded = load_directions(directions, network_sha256=sha)
    sleeve = loaded.directions[0]
    assert sleeve.component is None and sleeve.sigma > 0 and sleeve.sign == "+ = long sleeves, - = short sleeves"
    assert [d.name for d in loaded.directions] == ["sleeve: short sleeves to long sleeves", "garment: dress to top"]
    assert "sigma apart" in sleeve.description and sleeve.layers == (0, load_network_file(attrs).G_ema.num_ws - 1)
    assert run(cli, ["validate", "--directions", directions, "--network", attrs]).exit_code == 0
    # a one-hot class network: dress -> skirt
    class_file = tmp_path / "classes.yaml"
    result = run(cli, ["attribute", "--network", classes, "--attr", "class", "--from", "dress", "--to", "skirt",
                       "--directions", class_file, "--samples", "300", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert load_directions(class_file).directions[0].name == "class: dress to skirt"
    result = run(cli, ["attribute", "--network", classes, "--attr", "sleeve", "--from", "a", "--to", "b",
                       "--directions", class_file, "--device", "cpu"])
    assert result.exit_code != 0 and "--attr class" in result.output
    result = run(cli, ["attribute", "--network", attrs, "--attr", "sleeve", "--from", "long", "--to", "long",
                       "--directions", directions, "--device", "cpu"])
    assert result.exit_code != 0 and "the same value" in result.output


def test_ganspace_tools_take_attr_where_they_take_class(networks, tmp_path):
    attrs, _ = networks
    comps = tmp_path / "c.npz"
    result = run(cli, ["fit", "--network", attrs, "--out", comps, "--samples", "400", "--components", "4",
                       "--stdev-samples", "200", "--batch", "200", "--attr", "garment=top", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    from ganspace.components import load_components
    assert load_components(comps).meta["class_idx"] == LAYOUT.encode({"garment": "top"}).tolist()
    result = run(cli, ["sheets", "--network", attrs, "--components", comps, "--out", tmp_path / "sheets", "--num", "1",
                       "--seeds", "0-1", "--columns", "3", "--groups", "all", "--attr", "fabric=kente",
                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = run(cli, ["sheets", "--network", attrs, "--components", comps, "--out", tmp_path / "s2", "--class", "1",
                       "--device", "cpu"])
    assert result.exit_code != 0 and "instead of --class" in result.output
    directions = tmp_path / "d.yaml"
    assert run(cli, ["attribute", "--network", attrs, "--attr", "sleeve", "--from", "short", "--to", "long",
                     "--directions", directions, "--samples", "100", "--device", "cpu"]).exit_code == 0
    result = run(cli, ["export", "--network", attrs, "--directions", directions, "--seeds", "0", "--strengths", "0,1",
                       "--out", tmp_path / "export", "--attr", "garment=dress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert {row["class"] for row in rows} == {"dress"} and "_dress_" in rows[0]["file"]
    recipe = json.loads(Image.open(tmp_path / "export" / rows[0]["file"]).text[RECIPE_KEY])
    assert recipe["attributes"] == {"garment": "dress"} and recipe["class_idx"] is None
