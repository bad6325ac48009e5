"""Official pickles render pixel-identically to what the official code computed (../shared fixtures)."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import generate
from conftest import OFFICIAL, assert_within_one_level, require
from fashion_models import load_model
from stylegan2.render import class_labels, seed_z

SEEDS = [0, 1, 2, 3, 7, 1234]


@pytest.fixture(scope="module", params=["tiny16", "tiny32c"])
def official(request):
    name = request.param
    net = load_model(require(OFFICIAL / f"{name}.pkl"))
    refs = np.load(OFFICIAL / f"{name}_refs.npz")
    return name, net, refs


@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_generator_matches_official_outputs(official, psi):
    _, net, refs = official
    G = net.G_ema
    for seed in SEEDS:
        label = class_labels(G, seed % G.c_dim if G.c_dim else None, 1)
        with torch.no_grad():
            ws = G.mapping(seed_z(G, seed), label, truncation_psi=psi)
            img = G.synthesis(ws, noise_mode="const")
        key = f"seed{seed}_psi{psi}"
        np.testing.assert_allclose(ws[0].numpy(), refs[f"ws_{key}"], atol=1e-5)
        np.testing.assert_allclose(img[0].numpy(), refs[f"img_{key}"], atol=1e-4)


def test_discriminator_matches_official_logits(official):
    _, net, refs = official
    c = torch.from_numpy(refs["d_c"]) if net.D.c_dim else None
    with torch.no_grad():
        logits = net.D(torch.from_numpy(refs["d_input"]), c)
    np.testing.assert_allclose(logits.numpy(), refs["d_logits"], atol=1e-5)


def test_generate_py_writes_the_official_pngs(official, tmp_path):
    name, net, refs = official
    psi = 0.7
    for seed in SEEDS:
        args = ["--network", str(OFFICIAL / f"{name}.pkl"), "--seeds", str(seed), "--trunc", str(psi),
                "--outdir", str(tmp_path), "--device", "cpu"]
        if net.G_ema.c_dim:
            args += ["--class", str(seed % net.G_ema.c_dim)]
        result = CliRunner().invoke(generate.main, args)
        assert result.exit_code == 0, result.output
        png = np.asarray(Image.open(tmp_path / f"seed{seed:04d}.png"))
        assert_within_one_level(png, refs[f"png_seed{seed}_psi{psi}"])


def test_generate_py_grid_projected_w_and_errors(tmp_path):
    pkl = require(OFFICIAL / "tiny32c.pkl")
    runner = CliRunner()
    result = runner.invoke(generate.main, ["--network", str(pkl), "--seeds", "0-2", "--outdir", str(tmp_path)])
    assert result.exit_code != 0 and "conditional" in result.output
    refs = np.load(OFFICIAL / "tiny32c_refs.npz")
    ws = np.stack([refs["ws_seed0_psi0.7"], refs["ws_seed1_psi0.7"]])
    np.savez(tmp_path / "w.npz", w=ws)
    result = runner.invoke(generate.main, ["--network", str(pkl), "--projected-w", str(tmp_path / "w.npz"),
                                           "--outdir", str(tmp_path / "proj"), "--grid"])
    assert result.exit_code == 0, result.output
    proj0 = np.asarray(Image.open(tmp_path / "proj" / "proj00.png"))
    assert_within_one_level(proj0, refs["png_seed0_psi0.7"])
    grid = Image.open(tmp_path / "proj" / "grid.png")
    assert grid.size[0] > 2 * 32  # two tiles side by side
    np.savez(tmp_path / "bad.npz", w=ws[:, :3])
    result = runner.invoke(generate.main, ["--network", str(pkl), "--projected-w", str(tmp_path / "bad.npz"),
                                           "--outdir", str(tmp_path / "bad")])
    assert result.exit_code != 0 and "needs [N, 8, 64]" in result.output


def test_generate_py_takes_a_class_by_name(tmp_path):
    from stylegan2.checkpoint import save_checkpoint

    net = load_model(require(OFFICIAL / "tiny32c.pkl"))
    path = save_checkpoint(tmp_path / "named.safetensors", G_ema=net.G_ema, meta={"class_names": ["dress", "hat", "shoes"]})
    runner = CliRunner()
    by_name = runner.invoke(generate.main, ["--network", str(path), "--seeds", "7", "--class", "shoes",
                                            "--outdir", str(tmp_path / "name")])
    by_index = runner.invoke(generate.main, ["--network", str(path), "--seeds", "7", "--class", "2",
                                             "--outdir", str(tmp_path / "index")])
    assert by_name.exit_code == 0 and by_index.exit_code == 0, by_name.output + by_index.output
    a = np.asarray(Image.open(tmp_path / "name" / "seed0007.png"))
    b = np.asarray(Image.open(tmp_path / "index" / "seed0007.png"))
    assert np.array_equal(a, b)
    bad = runner.invoke(generate.main, ["--network", str(path), "--seeds", "7", "--class", "kaftan",
                                        "--outdir", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "dress, hat, shoes" in bad.output


def test_generate_py_class_all_renders_every_class_in_grid_rows(tmp_path):
    from stylegan2.checkpoint import save_checkpoint

    net = load_model(require(OFFICIAL / "tiny32c.pkl"))
    names = ["dress", "hat", "t/shirt"][:net.G_ema.c_dim] + [f"c{i}" for i in range(3, net.G_ema.c_dim)]
    path = save_checkpoint(tmp_path / "named.safetensors", G_ema=net.G_ema, meta={"class_names": names})
    runner = CliRunner()
    every = runner.invoke(generate.main, ["--network", str(path), "--seeds", "3,5", "--class", "all", "--grid",
                                          "--outdir", str(tmp_path / "all")])
    one = runner.invoke(generate.main, ["--network", str(path), "--seeds", "5", "--class", "2",
                                        "--outdir", str(tmp_path / "one")])
    assert every.exit_code == 0 and one.exit_code == 0, every.output + one.output
    files = sorted(p.name for p in (tmp_path / "all").glob("seed*.png"))
    assert len(files) == 2 * len(names) and "seed0005-t_shirt.png" in files   # unsafe characters replaced
    same = np.asarray(Image.open(tmp_path / "all" / "seed0005-t_shirt.png"))
    assert np.array_equal(same, np.asarray(Image.open(tmp_path / "one" / "seed0005.png")))
    grid = np.asarray(Image.open(tmp_path / "all" / "grid.png"))
    res, pad = same.shape[0], 2
    assert grid.shape[:2] == (len(names) * (res + pad) + pad, 2 * (res + pad) + pad)   # rows = classes
    row2_col1 = grid[pad + 2 * (res + pad):][:res, pad + (res + pad):][:, :res]
    assert np.array_equal(row2_col1, same)
    unconditional = save_checkpoint(tmp_path / "u.safetensors",
                                    G_ema=load_model(require(OFFICIAL / "tiny16.pkl")).G_ema)
    bad = runner.invoke(generate.main, ["--network", str(unconditional), "--seeds", "1", "--class", "all",
                                        "--outdir", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "unconditional" in bad.output
