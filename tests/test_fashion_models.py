"""fashion_models: one Model type from every source (our checkpoint with its companion files, an official
pickle, networks in memory) and the folder the bundled models are found in, checked out or installed."""
from __future__ import annotations

import pathlib

import pytest
import torch

import fashion_models.registry
from conftest import OFFICIAL, REPO, require
from editor.network import RANDOM_DEMO_BANNER, build_random_generator, random_demo_network
from fashion_models import Model, ModelCard, bundled_dir, load_model
from stylegan2.checkpoint import NetworkBundle, load_network_file, save_checkpoint


def test_a_model_folder_loads_with_its_companions_card_and_class_names(tmp_path):
    G = build_random_generator(16)
    path = save_checkpoint(tmp_path / "net.safetensors", G_ema=G, meta={"class_names": ["a"], "kimg": 12})
    bare = load_model(path)
    assert isinstance(bare, Model) and isinstance(bare, NetworkBundle)   # what training and tuning take too
    assert (bare.name, bare.resolution, bare.class_names, bare.banner) == ("net.safetensors", 16, ["a"], "")
    assert (bare.directions_path, bare.components_path) == (None, None)
    assert bare.card == ModelCard(name="net.safetensors", summary="trained 12 kimg")
    for name in ("directions.yaml", "components.npz"):
        (tmp_path / name).write_text("")
    (tmp_path / "card.yaml").write_text("name: Wax prints\nsummary: 16 px\nrepresentative:\n  - {class: a, seed: 4}\n")
    model = load_model(str(path))
    assert (model.directions_path, model.components_path) == (tmp_path / "directions.yaml", tmp_path / "components.npz")
    assert model.describe() == ModelCard(name="Wax prints", summary="16 px", start=("a", 4))
    assert all(torch.equal(a, b) for a, b in zip(model.generator().state_dict().values(), G.state_dict().values()))
    assert not any(p.requires_grad for p in model.generator().parameters())


def test_an_official_pickle_is_the_same_model_type():
    path = require(OFFICIAL / "tiny32c.pkl")
    model = load_model(path)
    direct = load_network_file(path)
    assert (model.name, model.resolution, model.G_ema.c_dim, model.sha256) == ("tiny32c.pkl", 32, 3, direct.sha256)
    assert model.D is not None and model.augment_p == pytest.approx(direct.augment_p)
    assert model.directions_path is None and model.describe().name == "tiny32c.pkl"


def test_the_random_demo_is_a_model_with_a_banner_and_no_card():
    demo = random_demo_network(16)
    assert (demo.banner, demo.card, demo.describe(), demo.resolution) == (
        RANDOM_DEMO_BANNER, None, ModelCard(name="random demo"), 16)


def test_bundled_models_are_found_checked_out_and_installed(tmp_path, monkeypatch):
    assert bundled_dir() == REPO / "models"                             # a checkout (editable or not)
    package = tmp_path / "site-packages" / "fashion_models"
    (package / "bundled" / "default").mkdir(parents=True)
    monkeypatch.setattr(fashion_models.registry, "_PACKAGE", package)
    assert bundled_dir() == package / "bundled"                         # a wheel: models/ mapped in there
    save_checkpoint(package / "bundled" / "default" / "network.safetensors", G_ema=build_random_generator(16))
    assert pathlib.Path(load_model("default").source).is_relative_to(package)
