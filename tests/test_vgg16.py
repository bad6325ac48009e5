"""VGG16 read from a user-supplied state dict: fc7 features against a float64 reference, safety, pr50k3_full."""
import json

import numpy as np
import pytest
import safetensors.torch
import torch
from click.testing import CliRunner

from conftest import image_folder, tiny_generator
from training.vgg16 import VGG16_ENV, VGG16Error, load_vgg16_fc7

CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)   # torchvision's features.N
CONV_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL_AFTER = (1, 3, 6, 9, 12)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.fixture(scope="module")
def vgg_state():
    """A random VGG16 in torchvision's layout with the real shapes (He-scaled, so activations stay O(1))."""
    gen = torch.Generator().manual_seed(0)
    state, cin = {}, 3
    for idx, cout in zip(CONV_INDICES, CONV_CHANNELS):
        state[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
        state[f"features.{idx}.bias"] = torch.randn(cout, generator=gen) * 0.05
        cin = cout
    for idx, (cout, cin) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (1000, 4096))):
        state[f"classifier.{idx}.weight"] = torch.randn(cout, cin, generator=gen) * (2 / cin) ** 0.5
        state[f"classifier.{idx}.bias"] = torch.randn(cout, generator=gen) * 0.05
    return state


@pytest.fixture(scope="module")
def vgg_file(vgg_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(vgg_state, path)
    return path


def fc7_by_hand(state, pixels: torch.Tensor) -> torch.Tensor:
    """float64: 2x2 box average (448 -> 224), ImageNet normalisation, 13 conv+ReLU, 5 max-pools, fc6, fc7, ReLUs."""
    x = pixels.double()
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).reshape(1, 3, 1, 1)
    x = (x / 255 - mean) / std
    for n_conv, idx in enumerate(CONV_INDICES):
        x = torch.nn.functional.conv2d(x, state[f"features.{idx}.weight"].double(),
                                       state[f"features.{idx}.bias"].double(), padding=1).clamp(min=0)
        if n_conv in POOL_AFTER:
            x = torch.nn.functional.max_pool2d(x, 2)
    x = x.flatten(1)
    for idx in (0, 3):
        x = (x @ state[f"classifier.{idx}.weight"].double().T + state[f"classifier.{idx}.bias"].double()).clamp(min=0)
    return x


def test_fc7_features_equal_a_float64_reference_from_pth_and_safetensors(vgg_state, vgg_file, tmp_path):
    pixels = torch.from_numpy(np.random.RandomState(3).randint(0, 256, (2, 3, 448, 448)).astype(np.uint8))
    expected = fc7_by_hand(vgg_state, pixels)
    assert expected.shape == (2, 4096) and (expected > 0).float().mean() > 0.1   # a live, non-trivial signal
    safe = tmp_path / "vgg16.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in vgg_state.items()}, safe)
    for source in (vgg_file, safe):
        with torch.no_grad():
            ours = load_vgg16_fc7(source)(pixels).double()
        assert ours.shape == (2, 4096)
        assert float((ours - expected).norm() / expected.norm()) < 1e-4


def test_vgg16_files_with_code_or_missing_layers_are_refused(vgg_state, tmp_path, capsys):
    torch.save({"features.0.weight": torch.zeros(1), "evil": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(VGG16Error, match="plain state dict"):
        load_vgg16_fc7(tmp_path / "evil.pth")
    assert "must never run" not in capsys.readouterr().out
    torch.save({k: v for k, v in vgg_state.items() if not k.startswith("classifier.3")}, tmp_path / "no_fc7.pth")
    with pytest.raises(VGG16Error, match="fc7"):
        load_vgg16_fc7(tmp_path / "no_fc7.pth")
    with pytest.raises(VGG16Error, match="not found"):
        load_vgg16_fc7(tmp_path / "missing.pth")


def _tiny_network(folder):
    from stylegan2.checkpoint import save_checkpoint

    G = tiny_generator(seed=1, num_fp16_res=0, conv_clamp=None)
    folder.mkdir()
    save_checkpoint(folder / "network-snapshot-000001.safetensors", G_ema=G)
    return folder / "network-snapshot-000001.safetensors"


def test_pr50k3_full_without_a_vgg16_source_says_how_in_one_line(tmp_path, monkeypatch):
    import calc_metrics

    monkeypatch.delenv(VGG16_ENV, raising=False)
    data = image_folder(tmp_path / "a", np.zeros((4, 3, 16, 16), np.uint8))
    result = CliRunner().invoke(calc_metrics.main, ["--network", str(tmp_path / "none.safetensors"),
                                                    "--data", str(data), "--metrics", "pr50k3_full"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.output.strip().splitlines()
    assert len(message) == 1 and "--vgg16" in message[0] and "pr50k3_inception" in message[0]
    result = CliRunner().invoke(calc_metrics.main, ["--help"])
    assert "pr50k3_full" in result.output and "--vgg16" in result.output
    torch.save({"evil": _Payload()}, tmp_path / "evil.pth")
    result = CliRunner().invoke(calc_metrics.main, ["--network", str(tmp_path / "none.safetensors"), "--data",
                                                    str(data), "--metrics", "pr50k3_full", "--vgg16",
                                                    str(tmp_path / "evil.pth")])
    assert result.exit_code == 1 and "plain state dict" in result.output and "must never run" not in result.output


@pytest.mark.slow
def test_calc_metrics_pr50k3_full_with_a_vgg16_file_writes_its_json_line(vgg_file, tmp_path, monkeypatch):
    import calc_metrics

    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AFRO_FASHION_INCEPTION", str(tmp_path / "no-inception.pt"))  # not needed for VGG16 metrics
    monkeypatch.setenv(VGG16_ENV, str(vgg_file))
    images = np.random.RandomState(5).randint(0, 256, (5, 3, 16, 16)).astype(np.uint8)
    data = image_folder(tmp_path / "a", images)
    network = _tiny_network(tmp_path / "run")
    result = CliRunner().invoke(calc_metrics.main, ["--network", str(network), "--data", str(data), "--metrics",
                                                    "pr50k3_full", "--num-gen", "4", "--batch", "5"])
    assert result.exit_code == 0, result.output
    line = json.loads((network.parent / "metric-pr50k3_full.jsonl").read_text())
    assert line["metric"] == "pr50k3_full" and line["num_gen"] == 4
    assert set(line["results"]) == {"pr50k3_full_precision", "pr50k3_full_recall"}
    assert all(0.0 <= v <= 1.0 for v in line["results"].values())
    # the reals went through our fc7 network: the cached features equal the network applied directly
    cached = list((tmp_path / "cache" / "metrics").glob("*.npz"))
    assert len(cached) == 1
    with torch.no_grad():
        direct = load_vgg16_fc7(vgg_file)(torch.from_numpy(images)).numpy()
    with np.load(cached[0]) as stored:
        assert stored["features"].shape == (5, 4096)
        np.testing.assert_allclose(stored["features"], direct, rtol=1e-4, atol=1e-5 * np.abs(direct).max())


def test_train_refuses_pr50k3_full_up_front_instead_of_failing_at_the_first_snapshot():
    import click

    from train import parse_metrics

    with pytest.raises(click.BadParameter, match="calc_metrics.py --vgg16"):
        parse_metrics("fid2k_full,pr50k3_full", on_gpu=False)
    assert parse_metrics("pr50k3_inception", on_gpu=False) == ["pr50k3_inception"]
