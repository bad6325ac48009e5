"""Export (manifest vs files, recipes, resume), sheets, measured hints, and the CLI end to end."""
import csv
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import assert_within_one_level, tiny_generator
from ganspace.__main__ import cli
from ganspace.components import Components
from ganspace.directions import DirectionsFile, Direction
from ganspace.edits import apply_edits
from ganspace.export import export_directions
from ganspace.hints import (STATISTICS, agreement, image_stats, mean_changes, measure_hints, per_image_changes,
                            strongest_statistic, suggest_labels, write_hints)
from design.model import Base, seed_bases
from design.recipe import edits_from_recipe, read_recipe
from stylegan2.render import seed_to_w, synthesize_uint8
from ganspace.sheets import component_sheets, render_sweep, render_sweeps, sweep_edit
from fashion_models import load_model
from stylegan2.checkpoint import save_checkpoint

HASH = "cd" * 32


@pytest.fixture(scope="module")
def G():
    return tiny_generator(16, 32, seed=1, channel_max=32, num_fp16_res=0, conv_clamp=None)


@pytest.fixture(scope="module")
def comps(G):
    q, _ = np.linalg.qr(np.random.RandomState(0).randn(32, 32))
    return Components(q.T[:3], G.mapping.w_avg.numpy(), [1.0, 0.8, 0.6], [0.3, 0.2, 0.1], dict(num_ws=G.num_ws))


@pytest.fixture
def directions(comps):
    return DirectionsFile([
        Direction(name="sleeve length", component=0, vector=comps.comp[0], layers=(0, 3), sigma=1.0),
        Direction(name="colour", component=1, vector=comps.comp[1], layers=(4, 5), sigma=0.8, mode="absolute",
                  mean=comps.mean),
    ], HASH, None, 6)


def test_export_manifest_matches_the_files_and_recipes_reproduce_them(G, directions, tmp_path):
    calls = []
    rows = export_directions(G, directions, [0, 3], [-2, 0, 2], tmp_path, truncation_psi=0.7,
                             network_sha256=HASH, progress=calls.append, batch_size=5, gif=True)
    assert len(rows) == 2 * 2 * 3 and calls[-1] == (12, 12)
    pngs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*.png"))
    assert pngs == sorted(row["file"] for row in rows)
    assert json.loads((tmp_path / "manifest.json").read_text()) == rows
    with open(tmp_path / "manifest.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["file"], float(r["strength"]), int(r["seed"])) for r in csv_rows] == \
        [(r["file"], r["strength"], r["seed"]) for r in rows]
    assert "seed0003_sleeve-length_s+2.00.png" in rows[5]["file"]
    for row in rows:
        recipe = read_recipe(tmp_path / row["file"])
        assert (recipe["seed"], recipe["network_sha256"], recipe["truncation_psi"]) == (row["seed"], HASH, 0.7)
        assert recipe["edits"][0]["strength"] == row["strength"] and recipe["edits"][0]["direction"] == row["direction"]
        ws = seed_to_w(G, recipe["seed"], recipe["truncation_psi"], recipe["class_idx"])
        again = synthesize_uint8(G, apply_edits(ws, edits_from_recipe(recipe)))[0]
        # alone, not in the export's batch of 8: a CPU picks other modconv sides for one image (≤ 1 level)
        assert_within_one_level(np.asarray(Image.open(tmp_path / row["file"])), again)
    plain = synthesize_uint8(G, seed_to_w(G, 3, 0.7))[0]       # strength 0 of an additive edit = the seed itself
    assert_within_one_level(np.asarray(Image.open(tmp_path / rows[4]["file"])), plain)
    assert (tmp_path / "sheet_sleeve-length.png").exists() and (tmp_path / "sheet_colour.png").exists()
    assert Image.open(tmp_path / "sweep_colour.gif").n_frames == 4   # -2, 0, 2, 0 (ping-pong)


def test_export_resumes_and_rerenders_only_what_changed(G, directions, tmp_path):
    export_directions(G, directions, [1], [-1, 1], tmp_path, network_sha256=HASH)
    files = sorted(tmp_path.glob("*/*.png"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    os.remove(files[0])
    calls = []
    export_directions(G, directions, [1], [-1, 1], tmp_path, network_sha256=HASH, progress=calls.append)
    assert calls[0] == (3, 4)                                         # three were already done
    assert all(p.stat().st_mtime_ns == stamps[p] for p in files[1:]) and files[0].exists()
    calls.clear()
    export_directions(G, directions, [1], [-1, 1], tmp_path, truncation_psi=0.5, network_sha256=HASH,
                      progress=calls.append)
    assert calls[0] == (0, 4)                                         # a new truncation re-renders all
    assert read_recipe(files[1])["truncation_psi"] == 0.5


def test_sweep_columns_and_sheets(G, comps, tmp_path):
    bases = [Base(0, 0.7), Base(1, 0.7)]
    edits = [sweep_edit(comps, 0, (0, 5), s, "sample") for s in (-2.0, 0.0, 2.0)]
    images = render_sweep(G, bases, edits, batch_size=4)
    assert images.shape == (2, 3, 16, 16, 3)
    plain = synthesize_uint8(G, torch.cat([seed_to_w(G, b.seed, 0.7) for b in bases]))
    np.testing.assert_array_equal(images[:, 1], plain)                          # centre column = the sample
    assert not np.array_equal(images[:, 0], images[:, 2])
    paths = component_sheets(G, comps, tmp_path, num_components=1, seeds=[0, 1], columns=3)
    assert sorted(p.name for p in paths) == sorted(f"comp000_{g}.png" for g in ("all", "coarse", "middle", "fine"))
    width, height = Image.open(paths[0]).size
    assert width >= 3 * 16 and height >= 2 * 16


def test_sweeps_share_full_batches_and_match_one_image_at_a_time(G, comps, monkeypatch):
    bases = [Base(0, 0.7), Base(1, 0.7), Base(2, 0.7)]
    sweeps = [[sweep_edit(comps, index, (0, 5), s, "sample") for s in (-2.0, 0.0, 2.0)] for index in range(3)]
    sizes = []
    synthesis = G.synthesis.forward
    monkeypatch.setattr(G.synthesis, "forward", lambda ws, **kw: sizes.append(len(ws)) or synthesis(ws, **kw))
    streamed = list(render_sweeps(G, bases, sweeps, batch_size=4))
    monkeypatch.undo()
    assert sizes == [4, 4, 4, 4, 4, 4, 3]      # 27 codes: full batches across sweeps, the rest split 4 + 3
    assert [images.shape for images in streamed] == [(3, 3, 16, 16, 3)] * 3
    for images, edits in zip(streamed, sweeps):                     # reference: one code per render
        for i, base in enumerate(bases):
            for j, edit in enumerate(edits):
                alone = synthesize_uint8(G, apply_edits(seed_to_w(G, base.seed, 0.7), [edit]))[0]
                assert np.abs(images[i, j].astype(int) - alone.astype(int)).max() <= 1


def test_image_statistics_on_a_hand_made_image():
    image = np.full((1, 20, 20, 3), 255, np.uint8)
    image[0, 5:15, 2:8] = 0                                           # 10 x 6 black block, left side
    stats = image_stats(image)
    assert stats["area"][0] == pytest.approx(60 / 400)
    assert stats["height"][0] == pytest.approx(10 / 20) and stats["width"][0] == pytest.approx(6 / 20)
    assert stats["luminance"][0] == pytest.approx(340 / 400)
    assert stats["saturation"][0] == 0
    assert stats["asymmetry"][0] == pytest.approx(120 / 400)          # block and its mirror differ fully
    colours = np.zeros((3, 4, 4, 3), np.uint8)
    colours[0, ..., 0] = colours[1, ..., 1] = colours[2, ..., 2] = 200
    np.testing.assert_allclose(image_stats(colours)["hue"], [0, 120, -120], atol=1e-9)
    grey = image_stats(image[..., :1])                                # one-channel images work too
    assert grey["area"][0] == pytest.approx(60 / 400) and grey["saturation"][0] == 0


def test_hue_changes_wrap_and_labels_follow_the_numbers():
    red, magenta_red = np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 200
    magenta_red[..., 0], magenta_red[..., 2] = 200, 70                # hue a little below 360°
    changes = mean_changes(per_image_changes(red, magenta_red))
    assert -30 < changes["hue"] < 0
    dark, bright = np.full((2, 8, 8, 3), 40, np.uint8), np.full((2, 8, 8, 3), 200, np.uint8)
    assert suggest_labels(mean_changes(per_image_changes(dark, bright))).startswith("brightness")
    assert suggest_labels({name: 0.0 for name in STATISTICS}) == ""


def test_agreement_counts_the_seeds_that_move_the_mean_way():
    before = np.full((4, 8, 8, 3), 100, np.uint8)
    after = before.copy()
    after[:3] = 180                                                   # three images brighten a lot...
    after[3] = 90                                                     # ...one darkens a little
    per_image = per_image_changes(before, after)
    changes = mean_changes(per_image)
    assert strongest_statistic(changes) == "luminance"
    assert agreement(per_image, "luminance") == 0.75
    assert agreement(per_image_changes(after, before), "luminance") == 0.75   # the mean's sign, not "+"


def test_measure_hints_writes_one_row_per_component_and_group(G, comps, tmp_path):
    rows = measure_hints(G, comps, num_components=2, seeds=[0, 1, 2], strength=2.0)
    assert [(r["component"], r["group"]) for r in rows] == [(i, g) for i in range(2)
                                                              for g in ("all", "coarse", "middle", "fine")]
    assert all(set(STATISTICS) <= set(r) and 0 <= r["agree"] <= 1 for r in rows)
    write_hints(rows, tmp_path / "hints.csv")
    with open(tmp_path / "hints.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    assert (tmp_path / "hints.md").read_text().startswith("| component")


def test_cli_fit_sheets_hints_validate_export(G, tmp_path):
    network = save_checkpoint(tmp_path / "tiny.safetensors", G_ema=G)
    sha = load_model(str(network)).sha256
    run = CliRunner().invoke
    result = run(cli, ["fit", "--network", str(network), "--samples", "3000", "--components", "4", "--batch", "1000",
                       "--stdev-samples", "500", "--out", str(tmp_path / "c.npz"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = run(cli, ["fit", "--network", str(network), "--method", "sefa", "--components", "4",
                       "--stdev-samples", "200", "--out", str(tmp_path / "sefa.npz"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = run(cli, ["sheets", "--network", str(network), "--components", str(tmp_path / "c.npz"), "--class", "1",
                       "--out", str(tmp_path / "sheets")])
    assert result.exit_code == 2 and "unconditional" in result.output
    result = run(cli, ["sheets", "--network", str(network), "--components", str(tmp_path / "c.npz"), "--num", "1",
                       "--seeds", "0-1", "--columns", "3", "--groups", "all", "--out", str(tmp_path / "sheets")])
    assert result.exit_code == 0 and (tmp_path / "sheets" / "comp000_all.png").exists(), result.output
    result = run(cli, ["hints", "--network", str(network), "--components", str(tmp_path / "c.npz"), "--num", "1",
                       "--seeds", "0-3", "--out", str(tmp_path / "hints.csv")])
    assert result.exit_code == 0 and (tmp_path / "hints.csv").exists(), result.output
    yaml_path = tmp_path / "d.yaml"
    yaml_path.write_text(f"network_sha256: {sha}\ncomponents: c.npz\ndirections:\n"
                         f"  - name: first\n    component: 0\n    layers: coarse\n")
    result = run(cli, ["validate", "--directions", str(yaml_path), "--network", str(network)])
    assert result.exit_code == 0 and "OK: 1 directions" in result.output, result.output
    yaml_path.write_text(yaml_path.read_text().replace(sha, "0" * 64))
    result = run(cli, ["validate", "--directions", str(yaml_path), "--network", str(network)])
    assert result.exit_code == 1 and "line 1:" in result.output and "--force" in result.output
    result = run(cli, ["export", "--network", str(network), "--directions", str(yaml_path), "--seeds", "0-1",
                       "--strengths", "-1,1", "--out", str(tmp_path / "exp"), "--force"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert len(rows) == 4 and all((tmp_path / "exp" / r["file"]).exists() for r in rows)
    assert rows[0]["network_sha256"] == sha and rows[0]["layers"] == "0-1"
    result = run(cli, ["export", "--network", str(network), "--directions", str(yaml_path), "--seeds", "x",
                       "--out", str(tmp_path / "exp")])
    assert result.exit_code == 2 and "0-3,7" in result.output
    for text in ("nan", "1,inf", "-1e400"):                       # would render black PNGs and invalid JSON
        result = run(cli, ["export", "--network", str(network), "--directions", str(yaml_path), "--seeds", "0",
                           "--strengths", text, "--out", str(tmp_path / "nan")])
        assert result.exit_code == 2 and "finite numbers" in result.output and not (tmp_path / "nan").exists()


def test_export_of_an_official_conditional_pickle_reproduces_official_pixels_at_strength_0(tmp_path):
    from conftest import OFFICIAL, assert_differs_beyond_rounding, assert_within_one_level, require
    bundle = load_model(str(require(OFFICIAL / "tiny32c.pkl")))
    refs = np.load(require(OFFICIAL / "tiny32c_refs.npz"))
    G = bundle.G_ema.eval()
    comps = Components(np.eye(G.w_dim)[:2], np.zeros(G.w_dim), [1.0, 1.0], [0.5, 0.5], dict(num_ws=G.num_ws))
    directions = DirectionsFile([Direction(name="first", component=0, vector=comps.comp[0], layers=(0, 3))],
                                bundle.sha256, None, G.num_ws)
    seed = 7                                                      # the refs use class seed % c_dim
    rows = export_directions(G, directions, [seed], [0.0, 1.0], tmp_path, truncation_psi=0.7,
                             class_idx=seed % G.c_dim, network_sha256=bundle.sha256)
    assert "_c1_" in rows[0]["file"] and rows[0]["class"] == 1
    assert_within_one_level(Image.open(tmp_path / rows[0]["file"]), refs[f"png_seed{seed}_psi0.7"])
    assert_differs_beyond_rounding(Image.open(tmp_path / rows[1]["file"]), refs[f"png_seed{seed}_psi0.7"])


def test_cli_sheets_and_hints_on_a_conditional_network_show_one_class_per_seed(tmp_path, monkeypatch):
    G = tiny_generator(c_dim=3, seed=2)
    network = save_checkpoint(tmp_path / "cond.safetensors", G_ema=G, meta={"class_names": ["dress", "hat", "shoes"]})
    comps = Components(np.eye(16)[:2], np.zeros(16), np.ones(2), np.full(2, 0.5), {"num_ws": G.num_ws})
    comps.save(tmp_path / "c.npz")
    import ganspace.hints
    import ganspace.sheets

    asked = []

    def spy(G, seeds, psi, class_idx=None):
        bases = seed_bases(G, seeds, psi, class_idx)
        asked.append([base.class_idx for base in bases])
        return bases

    monkeypatch.setattr(ganspace.sheets, "seed_bases", spy)
    monkeypatch.setattr(ganspace.hints, "seed_bases", spy)
    run = CliRunner().invoke
    result = run(cli, ["sheets", "--network", str(network), "--components", str(tmp_path / "c.npz"), "--num", "1",
                       "--seeds", "0-2", "--columns", "3", "--groups", "all", "--out", str(tmp_path / "sheets")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sheets" / "comp000_all.png").exists()
    result = run(cli, ["hints", "--network", str(network), "--components", str(tmp_path / "c.npz"), "--num", "1",
                       "--seeds", "0-2", "--out", str(tmp_path / "hints.csv")])
    assert result.exit_code == 0, result.output
    result = run(cli, ["sheets", "--network", str(network), "--components", str(tmp_path / "c.npz"),
                       "--class", "3", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "an index from 0 to 2" in result.output
    assert asked == [[0, 1, 2], [0, 1, 2]]  # without --class, seed k is drawn as class k % 3
    result = run(cli, ["sheets", "--network", str(network), "--components", str(tmp_path / "c.npz"), "--num", "1",
                       "--seeds", "0-1", "--columns", "3", "--groups", "all", "--class", "hat",
                       "--out", str(tmp_path / "named")])
    assert result.exit_code == 0, result.output
    assert asked[-1] == [1, 1]  # the recorded name 'hat' is class 1, for every seed
    result = run(cli, ["hints", "--network", str(network), "--components", str(tmp_path / "c.npz"),
                       "--class", "kaftan", "--out", str(tmp_path / "h.csv")])
    assert result.exit_code == 2 and "one of dress, hat, shoes" in result.output


def test_export_on_a_conditional_network_says_what_class_accepts(tmp_path):
    G = tiny_generator(c_dim=3, seed=2)
    network = save_checkpoint(tmp_path / "cond.safetensors", G_ema=G, meta={"class_names": ["dress", "hat", "shoes"]})
    (tmp_path / "d.yaml").write_text("directions: []\nnum_ws: 6\n")
    result = CliRunner().invoke(cli, ["export", "--network", str(network), "--directions", str(tmp_path / "d.yaml"),
                                      "--seeds", "0", "--out", str(tmp_path / "e")])
    assert result.exit_code == 2
    assert "a class name (dress, hat, shoes) or an index from 0 to 2" in result.output and "0-2" not in result.output
