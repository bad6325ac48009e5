"""The bundled default model: its files load, match their recorded hashes, render the committed sample
grid again, and open in the studio with their labelled sliders."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import generate
from conftest import assert_within_one_level
from fashion_models import bundled_dir, load_model, resolve_model_file

MODEL = bundled_dir() / "default"
# The exact command that drew samples.png (the model card and the README show its output).
SAMPLES_ARGS = ["--network", "default", "--seeds", "0-7", "--class", "all", "--trunc", "0.7", "--trunc-centre", "class",
                "--grid"]


def recorded_hashes() -> dict[str, str]:
    lines = (MODEL / "SHA256SUMS").read_text().splitlines()
    return {name.strip(): digest for digest, name in (line.split(maxsplit=1) for line in lines if line.strip())}


def test_bundled_files_match_their_recorded_hashes():
    hashes = recorded_hashes()
    assert {"network.safetensors", "components.npz", "directions.yaml", "samples.png"} <= set(hashes)
    for name, digest in hashes.items():
        assert hashlib.sha256((MODEL / name).read_bytes()).hexdigest() == digest, f"{name} changed"
    assert (MODEL / "network.safetensors").stat().st_size < 30 << 20


def test_default_name_loads_the_conditional_generator_only():
    assert resolve_model_file("default") == MODEL / "network.safetensors"
    net = load_model("default")
    G = net.G_ema
    assert (G.img_resolution, G.img_channels, G.c_dim) == (64, 3, 10) and net.G is None and net.D is None
    assert net.meta["class_names"] == ["dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes",
                                       "shorts", "skirt", "t-shirt"]
    assert net.sha256 == recorded_hashes()["network.safetensors"]


def test_generate_draws_the_committed_sample_grid_again(tmp_path):
    runs = []
    for attempt in range(2):
        result = CliRunner().invoke(generate.main, SAMPLES_ARGS + ["--outdir", str(tmp_path / str(attempt))])
        assert result.exit_code == 0, result.output
        runs.append(np.asarray(Image.open(tmp_path / str(attempt) / "grid.png")).astype(int))
    assert np.array_equal(runs[0], runs[1])                              # deterministic in one process
    committed = np.asarray(Image.open(MODEL / "samples.png")).astype(int)
    assert committed.shape == runs[0].shape == (10 * 66 + 2, 8 * 66 + 2, 3)
    assert_within_one_level(runs[0], committed)                          # other CPUs round a few values
    assert committed.std() > 20                                          # pictures, not a flat grey grid


def test_directions_are_labelled_for_this_network_and_open_in_the_studio():
    from editor.network import load_studio_network
    from editor.studio import Studio
    from fashion_models import companion_files

    loaded = load_studio_network(None)                                   # what `python -m editor` opens
    assert loaded.banner == "" and loaded.sha256 == recorded_hashes()["network.safetensors"]
    directions_path, components_path = companion_files(loaded.source)
    assert (directions_path, components_path) == (MODEL / "directions.yaml", MODEL / "components.npz")
    studio = Studio(loaded, directions_path=directions_path, components_path=components_path)
    assert len(studio.directions) >= 6
    for direction in studio.directions:
        assert direction.description and direction.sign, direction.name
        assert direction.slider_min < 0 < direction.slider_max <= 5
        assert 0 <= direction.layers[0] <= direction.layers[1] < studio.num_ws
    recipe = studio.new_recipe(seed=3)
    plain = studio.render(recipe)
    for direction in studio.directions:                                  # every slider changes the picture
        moved = studio.render(studio.check(recipe.replace(sliders={direction.name: direction.slider_max})))
        assert np.abs(moved.astype(int) - plain.astype(int)).mean() > 1.0, direction.name


@pytest.mark.parametrize("name", ["README.md", "dataset-report.json"])
def test_model_card_and_dataset_report_are_shipped(name):
    text = (MODEL / name).read_text(encoding="utf-8")
    assert ("CC0" in text and "kimg" in text) if name == "README.md" else '"images_written": 3307' in text


def test_studio_falls_back_to_a_random_demo_when_the_bundled_files_are_missing(monkeypatch, tmp_path):
    from editor.network import RANDOM_DEMO_BANNER, load_studio_network
    from fashion_models import NAMED_NETWORKS

    monkeypatch.setitem(NAMED_NETWORKS, "default", str(tmp_path / "gone.safetensors"))
    assert load_studio_network(None).banner == RANDOM_DEMO_BANNER


def test_generate_truncates_towards_the_class_when_asked(tmp_path):
    """--trunc-centre class draws what a new studio design shows; the default stays the official global average."""
    from stylegan2.render import seed_to_w, synthesize_uint8

    G = load_model("default").generator()
    for centre in ("class", "global"):
        args = ["--network", "default", "--seeds", "3", "--class", "pants", "--trunc", "0.7", "--outdir",
                str(tmp_path / centre)] + (["--trunc-centre", centre] if centre == "class" else [])
        result = CliRunner().invoke(generate.main, args)
        assert result.exit_code == 0, result.output
        drawn = np.asarray(Image.open(tmp_path / centre / "seed0003.png")).astype(int)
        assert_within_one_level(drawn, synthesize_uint8(G, seed_to_w(G, 3, 0.7, 4, centre=centre))[0].astype(int))
    assert not np.array_equal(*(np.asarray(Image.open(tmp_path / c / "seed0003.png")) for c in ("class", "global")))
