"""Multi-attribute labels: the block layout, block dropout, the mapping network's label embedding, and a
tiny multi-attribute network trained through train.py."""
import json
import math

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import train
from stylegan2.checkpoint import load_network_file
from stylegan2.labels import LabelLayout, LabelLayoutError, drop_blocks, layout_from_meta
from stylegan2.networks import MappingNetwork
from training import loop

LAYOUT = LabelLayout.build([("garment", ["dress", "skirt", "top"], ["dress", "skirt", "top"]),
                            ("fabric", ["ankara", "kente"], None),
                            ("sleeve", ["short", "long"], ["short sleeves", "long sleeves"])])


def test_layout_round_trips_and_names_values():
    again = LabelLayout.from_json(json.loads(json.dumps(LAYOUT.to_json())))
    assert again == LAYOUT and again.dim == 7 and again.offsets == [(0, 3), (3, 5), (5, 7)]
    vector = LAYOUT.encode({"garment": "skirt", "sleeve": "long sleeves", "fabric": None})   # captions work too
    assert vector.tolist() == [0, 1, 0, 0, 0, 0, 1]
    assert LAYOUT.decode(vector) == {"garment": "skirt", "fabric": None, "sleeve": "long"}
    assert LAYOUT.parse(["garment=top", "fabric=any"]) == {"garment": "top", "fabric": None}
    assert layout_from_meta({"label_layout": LAYOUT.to_json()}) == LAYOUT and layout_from_meta({}) is None


@pytest.mark.parametrize("specs,message", [(["colour=red"], "unknown attribute 'colour'"),
                                           (["garment=coat"], "unknown garment 'coat'"),
                                           (["garment"], "ATTRIBUTE=VALUE"),
                                           (["garment=top", "garment=dress"], "given twice")])
def test_bad_choices_say_what_is_allowed(specs, message):
    with pytest.raises(LabelLayoutError, match=message):
        LAYOUT.parse(specs)


def test_a_layout_with_gaps_is_refused():
    broken = LAYOUT.to_json()
    broken["blocks"][1]["offset"] = 4
    with pytest.raises(LabelLayoutError, match="offsets"):
        LabelLayout.from_json(broken)


def test_block_dropout_zeroes_whole_blocks_at_the_asked_rate():
    rng = np.random.RandomState(0)
    rows = np.stack([LAYOUT.encode({"garment": "dress", "fabric": "kente", "sleeve": "long"})] * 4000)
    dropped = drop_blocks(rows, LAYOUT.offsets, 0.25, rng)
    per_block = np.stack([dropped[:, a:b].sum(1) for a, b in LAYOUT.offsets], 1)
    assert set(np.unique(per_block)) == {0.0, 1.0}                    # a block is kept whole or zeroed whole
    assert abs((per_block == 0).mean() - 0.25) < 0.02
    assert np.array_equal(drop_blocks(rows, LAYOUT.offsets, 0.0, rng), rows)
    assert rows.sum() == 3 * 4000                                        # the input is not modified


def test_label_embedding_normalisation_with_zero_blocks_and_multi_hot_matches_float64():
    """The mapping network embeds c linearly and scales it to unit second moment, as the paper's code does:
    a multi-hot label gets the same weight as a one-hot one (whatever the number of active blocks), a zero
    block adds nothing, and an all-zero label gives the normalised bias (zero at initialisation)."""
    torch.manual_seed(0)
    net = MappingNetwork(z_dim=4, c_dim=LAYOUT.dim, w_dim=6, num_ws=None, num_layers=1).double()
    c = np.stack([LAYOUT.encode(s) for s in ({}, {"garment": "top"}, {"garment": "top", "sleeve": "short"},
                                             {"garment": "dress", "fabric": "ankara", "sleeve": "long"})])
    z = np.random.RandomState(1).randn(len(c), 4)

    def reference(bias):
        W, gain = net.embed.weight.detach().numpy().astype(np.float64), 1 / math.sqrt(LAYOUT.dim)
        e = c @ (W * gain).T + bias
        y = e / np.sqrt((e ** 2).mean(1, keepdims=True) + 1e-8)
        x = np.concatenate([z / np.sqrt((z ** 2).mean(1, keepdims=True) + 1e-8), y], 1)
        fc = net.fc0
        h = x @ (fc.weight.detach().numpy() * fc.weight_gain).T + fc.bias.detach().numpy() * fc.bias_gain
        return np.where(h >= 0, h, 0.2 * h) * math.sqrt(2), y

    with torch.no_grad():
        out = net(torch.from_numpy(z), torch.from_numpy(c), update_w_avg=False).numpy()
    expected, y = reference(np.zeros(6))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)  # the network runs in float32
    assert np.all(y[0] == 0)                                   # all-zero label, zero bias: no label signal
    np.testing.assert_allclose((y[1:] ** 2).mean(1), 1, rtol=1e-6)  # one, two or three blocks: same weight
    with torch.no_grad():
        net.embed.bias.copy_(torch.linspace(-1e-3, 2e-3, 6))  # a trained bias: "any" is its own direction
        out = net(torch.from_numpy(z), torch.from_numpy(c), update_w_avg=False).numpy()
    expected, y = reference(np.linspace(-1e-3, 2e-3, 6))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)  # the network runs in float32
    ms = (np.linspace(-1e-3, 2e-3, 6) ** 2).mean()
    assert (y[0] ** 2).mean() == pytest.approx(ms / (ms + 1e-8)) and ms / (ms + 1e-8) > 0.99   # blown up to ~1


TINY = ["--cbase", "128", "--cmax", "16", "--zdim", "16", "--map", "2", "--batch", "4", "--metrics", "none",
        "--workers", "0", "--cpu", "--tick", "0.008"]


def multi_hot_folder(root, n=8, res=16):
    root.mkdir()
    rng = np.random.RandomState(0)
    choices = [{"garment": "dress", "fabric": "kente"}, {"garment": "skirt", "sleeve": "long"},
               {"garment": "top", "fabric": "ankara", "sleeve": "short"}, {}]
    labels = []
    for i in range(n):
        PIL.Image.fromarray(rng.randint(0, 256, (res, res, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
        labels.append([f"{i:02d}.png", LAYOUT.encode(choices[i % 4]).tolist()])
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "label_layout": LAYOUT.to_json()}))
    return root, np.array([row for _, row in labels], np.float32)


@pytest.mark.usefixtures("one_thread")
def test_tiny_multi_attribute_network_trains_with_block_dropout(tmp_path, monkeypatch):
    """A few ticks: c_dim is the layout's length, the snapshot names the blocks, fakes' labels are rows of
    the data (the joint distribution) with whole blocks dropped, and "any" renders."""
    data, rows = multi_hot_folder(tmp_path / "data")
    seen = []

    def spy(labels, offsets, p, rng):
        out = drop_blocks(labels, offsets, p, rng)
        seen.append((labels.copy(), out, list(offsets), p))
        return out

    monkeypatch.setattr(loop, "drop_blocks", spy)
    result = CliRunner().invoke(train.main, [str(a) for a in ["--outdir", tmp_path / "runs", "--data", data, "--cond",
                                             "--attr-dropout", "0.5", "--kimg", "0.016", "--snap", "2", *TINY]],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run,) = [d for d in (tmp_path / "runs").iterdir() if d.is_dir()]
    net = load_network_file(run / "network-snapshot-000000.016.safetensors")
    assert net.G_ema.c_dim == LAYOUT.dim and layout_from_meta(net.meta) == LAYOUT
    assert json.loads((run / "training_options.json").read_text())["attr_dropout"] == 0.5
    drawn = np.concatenate([before for before, _, _, _ in seen])
    row_set = {tuple(r) for r in rows}
    assert all(tuple(r) in row_set for r in drawn)                  # every label given to G or D is a data row
    after = np.concatenate([out for _, out, _, _ in seen])
    assert {offsets == LAYOUT.offsets and p == 0.5 for _, _, offsets, p in seen} == {True}
    kept = drawn.sum() and after.sum() / drawn.sum()
    assert 0.3 < kept < 0.7                                          # about half the active blocks dropped
    with torch.no_grad():
        img = net.G_ema(torch.randn(2, 16), torch.from_numpy(np.stack([LAYOUT.encode({}),
                                                                       LAYOUT.encode({"garment": "top"})])))
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
