"""VGG16 (Simonyan & Zisserman 2015) read from a user-supplied torchvision-layout state dict, as data.

No package on the registry ships VGG16 weights, so both users of VGG16 take a file the user supplies
(``.pth`` read with PyTorch's weights-only unpickler, or ``.safetensors``; a path or an http(s) URL,
downloaded once through ``toolkit.download``): the projector's LPIPS distance
(``projection.distance``: the five ReLU maps of ``VGG16Features``) and the official precision/recall
``pr50k3_full`` (``VGG16FC7``: the 4096-d fc7 features). Layers are found by shape in the natural
order of their names (``features.0`` ... ``features.28``, ``classifier.0/3/6``, with any prefix).
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import re

import torch
import torch.nn.functional as F

VGG16_ENV = "AFRO_FASHION_VGG16"
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (1, 3, 6, 9, 12)          # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (conv indices)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's input scaling: ImageNet statistics in [-1, 1] units
LPIPS_SCALE = (0.458, 0.448, 0.450)
IMAGENET_MEAN = (0.485, 0.456, 0.406)   # torchvision's VGG16 was trained on (x/255 - mean) / std
IMAGENET_STD = (0.229, 0.224, 0.225)
FC_SHAPES = ((4096, 512 * 7 * 7), (4096, 4096))  # fc6 (classifier.0), fc7 (classifier.3)
FC7_VERSION = "vgg16-fc7-relu-area224-imagenet-v1"  # bump when the preprocessing changes (cache keys)


class VGG16Error(ValueError):
    """A VGG16 weights file we cannot use; the message says what was expected."""


class VGG16Features(torch.nn.Module):
    """VGG16's 13 convolutions returning LPIPS's five ReLU maps (images in [-1, 1], LPIPS's scaling)."""

    def __init__(self):
        super().__init__()
        convs, cin = [], 3
        for item in VGG16_LAYOUT:
            if item != "M":
                convs.append(torch.nn.Conv2d(cin, item, 3, padding=1))
                cin = item
        self.convs = torch.nn.ModuleList(convs)
        self.pool_after = {1, 3, 6, 9}
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).reshape(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.shift) / self.scale
        maps = []
        for idx, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if idx in LPIPS_TAPS:
                maps.append(x)
            if idx in self.pool_after:
                x = F.max_pool2d(x, 2)
        return maps


class VGG16FC7(torch.nn.Module):
    """uint8 [N, 3, H, W] -> the 4096-d fc7 features that improved precision/recall (k = 3) measures.

    * Layer: the output of the second fully-connected layer (fc7, torchvision's ``classifier.3``)
      **after its ReLU**. Kynkäänniemi et al. 2019 use "the second fully-connected layer" of VGG16;
      the Keras/TF VGG16 their code builds on names that layer ``fc2`` with the ReLU inside it, so the
      post-ReLU activation is what its output is. Dropout is off (evaluation).
    * Resize: every image to 224x224 with area averaging (``F.interpolate(mode='area')``; for the usual
      256/512/1024 px data an exact box filter). This is our choice: we found no documentation of how
      StyleGAN2-ADA's VGG16 detector resizes, so it may differ. Images already 224x224 are not touched.
    * Normalisation: ``(x / 255 - ImageNet mean) / ImageNet std``, the input torchvision's VGG16 weights
      were trained on. The official detector is a converted TensorFlow VGG16 whose exact input scaling
      we could not establish with confidence, so features from other weights than the official ones
      (and hence our ``pr50k3_full``) are close to, not guaranteed equal to, published figures.
    """

    def __init__(self):
        super().__init__()
        self.convs = VGG16Features().convs
        self.fc6 = torch.nn.Linear(*FC_SHAPES[0][::-1])
        self.fc7 = torch.nn.Linear(*FC_SHAPES[1][::-1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.mean.dtype)
        if tuple(x.shape[2:]) != (224, 224):
            x = F.interpolate(x, size=(224, 224), mode="area")
        x = (x - self.mean) / self.std
        for idx, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if idx in (1, 3, 6, 9, 12):
                x = F.max_pool2d(x, 2)
        x = F.relu(self.fc6(x.flatten(1)))
        return F.relu(self.fc7(x))


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_tensors(path: pathlib.Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a torch.save state dict, read without running code from the file."""
    import safetensors.torch

    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"PK":  # torch.save zip: PyTorch's weights-only unpickler admits tensors and plain containers
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise VGG16Error(f"{path}: not a plain state dict of tensors ({exc})") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise VGG16Error(f"{path}: expected a dict of tensors, found {type(state).__name__}")
        return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    try:
        return safetensors.torch.load_file(path)
    except Exception as exc:
        raise VGG16Error(f"{path}: neither a .safetensors file nor a torch state dict ({exc})") from None


def read_vgg16_tensors(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a VGG16 file given as a path or an http(s) URL (downloaded once), and its path."""
    from toolkit.download import download

    text = os.fspath(source)
    path = download(text) if text.startswith(("http://", "https://")) else pathlib.Path(text).expanduser()
    if not path.is_file():
        raise VGG16Error(f"VGG16 weights not found: {path}")
    return _read_tensors(path), str(path)


def _load_convs(convs: torch.nn.ModuleList, tensors: dict[str, torch.Tensor], names: list[str], what: str) -> None:
    found_names = [n for n in names if tensors[n].ndim == 4 and tuple(tensors[n].shape[2:]) == (3, 3)]
    expected = [tuple(c.weight.shape) for c in convs]
    found = [tuple(tensors[n].shape) for n in found_names]
    if found != expected:
        raise VGG16Error(f"{what}: expected VGG16's 13 3x3 convolutions {expected}, found {found}")
    _copy_layers(convs, tensors, found_names, what)


def _copy_layers(layers, tensors: dict[str, torch.Tensor], weight_names: list[str], what: str) -> None:
    with torch.no_grad():
        for layer, name in zip(layers, weight_names):
            bias = re.sub(r"weight$", "bias", name)
            if bias not in tensors or tensors[bias].shape != layer.bias.shape:
                raise VGG16Error(f"{what}: no bias {bias!r} of shape {tuple(layer.bias.shape)} beside {name!r}")
            layer.weight.copy_(tensors[name].float())
            layer.bias.copy_(tensors[bias].float())


def vgg16_lpips_from_tensors(tensors: dict[str, torch.Tensor], what: str = "weights"
                             ) -> tuple[VGG16Features, list[torch.Tensor] | None]:
    """Our VGG16 convolutions and LPIPS's per-channel weights from a torchvision/LPIPS-layout state dict.

    LPIPS's "lin" weights are the five ``[1, C, 1, 1]`` tensors (None when the file has only VGG16,
    e.g. torchvision's ``vgg16-397923af.pth``).
    """
    net = VGG16Features()
    names = sorted(tensors, key=_natural_key)
    _load_convs(net.convs, tensors, names, what)
    lins = [tensors[n] for n in names if tensors[n].ndim == 4 and tensors[n].shape[0] == 1
            and tuple(tensors[n].shape[2:]) == (1, 1)]
    if not lins:
        return net.eval().requires_grad_(False), None
    if [int(t.shape[1]) for t in lins] != [64, 128, 256, 512, 512]:
        raise VGG16Error(f"{what}: LPIPS lin weights must be [1, C, 1, 1] for C = 64, 128, 256, 512, 512, "
                         f"found {[tuple(t.shape) for t in lins]}")
    return net.eval().requires_grad_(False), [t.float().reshape(-1) for t in lins]


def vgg16_fc7_from_tensors(tensors: dict[str, torch.Tensor], what: str = "weights") -> VGG16FC7:
    """Our fc7 feature network from a torchvision-layout VGG16 state dict (classifier.6 is not needed)."""
    net = VGG16FC7()
    names = sorted(tensors, key=_natural_key)
    _load_convs(net.convs, tensors, names, what)
    fcs = [next((n for n in names if n.endswith("weight") and tuple(tensors[n].shape) == shape), None)
           for shape in FC_SHAPES]
    if None in fcs:
        raise VGG16Error(f"{what}: expected VGG16's fully-connected layers fc6 {FC_SHAPES[0]} and fc7 "
                         f"{FC_SHAPES[1]} (torchvision's classifier.0 and classifier.3); found "
                         f"{[tuple(tensors[n].shape) for n in names if tensors[n].ndim == 2]}")
    _copy_layers([net.fc6, net.fc7], tensors, fcs, what)
    digest = hashlib.sha256(FC7_VERSION.encode())
    for name in names:
        digest.update(name.encode())
        digest.update(tensors[name].detach().float().contiguous().numpy().tobytes())
    net.fingerprint = f"{FC7_VERSION}-{digest.hexdigest()[:16]}"
    return net.eval().requires_grad_(False)


def load_vgg16_fc7(source: str | os.PathLike, device: str | torch.device = "cpu") -> VGG16FC7:
    """The fc7 feature network from a path or URL (see the module docstring)."""
    tensors, what = read_vgg16_tensors(source)
    return vgg16_fc7_from_tensors(tensors, what).to(device)
