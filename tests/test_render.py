"""stylegan2.render: the shared seed, label and pixel conventions."""
import numpy as np
import pytest
import torch

from conftest import tiny_generator
from stylegan2.render import class_labels, seed_to_w, to_uint8


def test_to_uint8_rounds_like_the_official_generate_py():
    img = torch.tensor([-1.5, -1.0, -0.004, 0.0, 0.996, 1.0]).reshape(1, 1, 1, 6)
    # (x * 127.5 + 128) clamped to [0, 255] then truncated toward zero by the uint8 cast
    assert to_uint8(img)[0, 0, :, 0].tolist() == [0, 0, 127, 128, 254, 255]


def test_class_labels_and_seeds_batch():
    G = tiny_generator(8, 8, c_dim=3, layers=1, channel_base=64, channel_max=8, eval_mode=False)
    c = class_labels(G, [2, 0], 2)
    assert c.tolist() == [[0, 0, 1], [1, 0, 0]]
    for bad in (None, 3, -1):
        with pytest.raises(ValueError):
            class_labels(G, bad, 1)
    both = seed_to_w(G, [5, 9], class_idx=[1, 2])
    single = seed_to_w(G, 9, class_idx=2)
    assert both.shape == (2, G.num_ws, 8) and torch.allclose(both[1:], single, atol=1e-6)


def test_classes_for_seeds_spreads_seeds_over_classes_only_when_no_class_is_given():
    from stylegan2.render import classes_for_seeds

    class Cond:
        c_dim = 3

    class Uncond:
        c_dim = 0

    assert classes_for_seeds(Cond(), [0, 1, 5, 9], None) == [0, 1, 2, 0]
    assert classes_for_seeds(Cond(), [0, 1], 2) == 2
    assert classes_for_seeds(Uncond(), [0, 1], None) is None


def test_class_choices_name_what_class_accepts():
    from stylegan2.render import class_choices
    names = ["dress", "hat", "longsleeve", "outwear", "pants"]
    assert class_choices(5, names, allow_all=True) == "a class name (dress, hat, longsleeve, outwear, ...), " \
                                                      "an index from 0 to 4 or all"
    assert class_choices(3) == "an index from 0 to 2"


def test_generate_without_class_on_a_conditional_network_suggests_accepted_values(tmp_path):
    from click.testing import CliRunner

    import generate
    from stylegan2.checkpoint import save_checkpoint
    G = tiny_generator(8, 8, c_dim=3, layers=1, channel_base=64, channel_max=8, eval_mode=False)
    network = save_checkpoint(tmp_path / "c.safetensors", G_ema=G, meta={"class_names": ["dress", "hat", "shoes"]})
    result = CliRunner().invoke(generate.main, ["--network", str(network), "--seeds", "0", "--outdir", str(tmp_path)])
    assert result.exit_code != 0
    assert "pass --class with a class name (dress, hat, shoes), an index from 0 to 2 or all" in result.output
    assert "--class 0-2" not in result.output


def test_generate_writes_portrait_images_and_grid_unstretched(tmp_path):
    """A 3:4 network: generate.py's PNGs are 12 wide x 16 tall, its grid tiles them (2 px padding)."""
    from click.testing import CliRunner
    from PIL import Image

    import generate
    from stylegan2.checkpoint import save_checkpoint
    G = tiny_generator(16, 8, layers=1, channel_base=64, channel_max=8, base_shape=(4, 3), eval_mode=False)
    network = save_checkpoint(tmp_path / "p.safetensors", G_ema=G)
    result = CliRunner().invoke(generate.main, ["--network", str(network), "--seeds", "0-3", "--outdir",
                                                str(tmp_path / "out"), "--grid", "--noise-mode", "const"])
    assert result.exit_code == 0, result.output
    singles = sorted(p for p in (tmp_path / "out").glob("*.png") if p.name != "grid.png")
    assert len(singles) == 4 and {Image.open(p).size for p in singles} == {(12, 16)}
    grid = np.asarray(Image.open(tmp_path / "out" / "grid.png"))
    assert grid.shape == (2 * 16 + 3 * 2, 2 * 12 + 3 * 2, 3)  # 2x2 tiles
    np.testing.assert_array_equal(grid[2:18, 2:14], np.asarray(Image.open(singles[0])))
