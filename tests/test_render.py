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


def test_class_centre_is_the_mean_w_of_its_class_within_sampling_error():
    """An independent estimate (other z, float64) of each class's mean W agrees within 6 standard errors, and
    the classes' centres lie further apart than that: the centre is the class's, not the overall average."""
    from stylegan2.render import CENTRE_SAMPLES, class_centre

    G = tiny_generator(8, 8, c_dim=3, layers=1, channel_base=64, channel_max=8)
    centres = class_centre(G, class_labels(G, [0, 1, 2], 3)).double()
    n = 20_000
    z = torch.from_numpy(np.random.RandomState(123).randn(n, G.z_dim)).float()
    for k in range(3):
        w = G.mapping(z, class_labels(G, k, n))[:, 0].double()
        error = 6 * w.std(0) * (1 / CENTRE_SAMPLES + 1 / n) ** 0.5
        assert ((centres[k] - w.mean(0)).abs() <= error).all()
        assert ((centres[(k + 1) % 3] - w.mean(0)).abs() > error).any()
    assert torch.equal(class_centre(G, class_labels(G, [2, 2], 2)).double(), centres[[2, 2]])   # cached, same value


def test_truncation_towards_the_class_centre():
    """ψ pulls the class's own centre: ψ = 0 gives the centre on every layer, ψ = 0.6 the lerp (float64 reference),
    the cutoff leaves later layers as at ψ = 1; ψ = 1, global and unconditional networks are the mapping's own."""
    from stylegan2.render import class_centre, map_to_w

    G = tiny_generator(8, 8, c_dim=3, layers=1, channel_base=64, channel_max=8)
    z, c = torch.randn(4, G.z_dim), class_labels(G, [0, 1, 2, 1], 4)
    full = G.mapping(z, c).double()
    centre = class_centre(G, c).double()[:, None, :]
    torch.testing.assert_close(map_to_w(G, z, c, 0.0, centre="class").double(), centre.expand_as(full))
    torch.testing.assert_close(map_to_w(G, z, c, 0.6, centre="class").double(), centre + 0.6 * (full - centre))
    cut = map_to_w(G, z, c, 0.6, truncation_cutoff=2, centre="class").double()
    torch.testing.assert_close(cut[:, :2], (centre + 0.6 * (full - centre))[:, :2])
    torch.testing.assert_close(cut[:, 2:], full[:, 2:])
    assert not torch.allclose(map_to_w(G, z, c, 0.6, centre="class"), map_to_w(G, z, c, 0.6))
    torch.testing.assert_close(map_to_w(G, z, c, 0.6), G.mapping(z, c, truncation_psi=0.6))
    torch.testing.assert_close(map_to_w(G, z, c, 1.0, centre="class"), G.mapping(z, c))
    U = tiny_generator(8, 8, layers=1, channel_base=64, channel_max=8)
    zu, cu = torch.randn(2, U.z_dim), class_labels(U, None, 2)
    torch.testing.assert_close(map_to_w(U, zu, cu, 0.5, centre="class"), U.mapping(zu, cu, truncation_psi=0.5))
    with pytest.raises(ValueError, match="global, class"):
        map_to_w(G, z, c, 0.5, centre="average")
    torch.testing.assert_close(seed_to_w(G, [3], 0.6, 1, centre="class"),
                               map_to_w(G, torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).float(),
                                        class_labels(G, 1, 1), 0.6, centre="class"))
