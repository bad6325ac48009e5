"""How far a generated image is from the photo: the projector's objective.

The official projector measures LPIPS (Zhang et al. 2018) on VGG16 features.  No package on the registry
ships VGG16/LPIPS weights, so we use them only when the user supplies a file (``--lpips PATH|URL``) and
otherwise build the same kind of distance from what we have:

* ``pyramid_mse``: mean squared pixel error averaged over an image pyramid (full size, 1/2, 1/4 ... down
  to 8 px).  The coarse levels weigh colour and silhouette more than pixel-exact detail, which is what a
  recognisable garment needs first, and they give smooth gradients from w_avg's far-off image.
* ``FeatureDistance``: LPIPS's recipe on any feature network: each layer's feature vector is normalised
  to unit length at every position, the squared differences are (optionally channel-weighted, as LPIPS's
  learned "lin" layers do) averaged over positions and summed over layers, plus ``pixel_weight`` times
  the pyramid term.  With Inception-v3 (``training.inception``, the FID network) its early and middle
  maps serve as the features; with a supplied VGG16/LPIPS file it is LPIPS itself.

A feature network here is any callable ``images in [-1, 1] [N, 3, H, W] -> list of [N, C, h, w] maps``.
"""
from __future__ import annotations

import os
import pathlib
import re
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

FeatureMaps = Callable[[torch.Tensor], Sequence[torch.Tensor]]
PYRAMID_MIN_SIDE = 8


def pyramid_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N] mean squared error averaged over the levels of a 2x average-pooled pyramid (a, b in [-1, 1])."""
    levels = []
    while True:
        levels.append((a - b).square().mean(dim=[1, 2, 3]))
        if min(a.shape[2:]) < 2 * PYRAMID_MIN_SIDE:
            break
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return torch.stack(levels).mean(dim=0)


def normalize_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit length over channels at every position (LPIPS's normalisation)."""
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + eps)


class Distance:
    """``distance(images) -> [N]`` to one fixed target; target features are computed once."""

    name = "pixel pyramid"

    def __init__(self, target: torch.Tensor):
        self.target = target.detach()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return pyramid_mse(images, self.target.expand_as(images))


class FeatureDistance(Distance):
    """LPIPS-style distance on ``feature_maps`` plus ``pixel_weight`` x the pixel pyramid."""

    def __init__(self, target: torch.Tensor, feature_maps: FeatureMaps, name: str,
                 channel_weights: Sequence[torch.Tensor] | None = None, pixel_weight: float = 1.0):
        super().__init__(target)
        self.feature_maps, self.name, self.pixel_weight = feature_maps, name, pixel_weight
        self.channel_weights = channel_weights
        with torch.no_grad():
            self.target_features = [normalize_channels(f) for f in feature_maps(_rgb(self.target))]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        total = self.pixel_weight * super().__call__(images) if self.pixel_weight else 0
        for idx, (feat, ref) in enumerate(zip(self.feature_maps(_rgb(images)), self.target_features)):
            diff = (normalize_channels(feat) - ref).square()
            if self.channel_weights is not None:
                diff = diff * self.channel_weights[idx].reshape(1, -1, 1, 1)
            total = total + diff.sum(dim=1).mean(dim=[1, 2])
        return total


# ----------------------------------------------------------------------------- VGG16 / LPIPS

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (1, 3, 6, 9, 12)          # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (conv indices)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's input scaling: ImageNet statistics in [-1, 1] units
LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPSError(ValueError):
    """A VGG16/LPIPS weights file we cannot use; the message says what was expected."""


class VGG16Features(torch.nn.Module):
    """VGG16's 13 convolutions (Simonyan & Zisserman 2015) returning LPIPS's five ReLU maps."""

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
            raise LPIPSError(f"{path}: not a plain state dict of tensors ({exc})") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise LPIPSError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
        return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    try:
        return safetensors.torch.load_file(path)
    except Exception as exc:
        raise LPIPSError(f"{path}: neither a .safetensors file nor a torch state dict ({exc})") from None


def vgg16_lpips_from_tensors(tensors: dict[str, torch.Tensor], what: str = "weights"
                             ) -> tuple[VGG16Features, list[torch.Tensor] | None]:
    """Our VGG16 and LPIPS's per-channel weights from a state dict in torchvision/LPIPS layout.

    Convolutions are recognised by shape in the natural order of their names (``features.0`` ...
    ``features.28``, with any prefix), LPIPS's "lin" weights as the five ``[1, C, 1, 1]`` tensors
    (None when the file has only VGG16, e.g. torchvision's ``vgg16-397923af.pth``).
    """
    net = VGG16Features()
    names = sorted(tensors, key=_natural_key)
    convs = [n for n in names if tensors[n].ndim == 4 and tuple(tensors[n].shape[2:]) == (3, 3)]
    expected = [tuple(c.weight.shape) for c in net.convs]
    found = [tuple(tensors[n].shape) for n in convs]
    if found != expected:
        raise LPIPSError(f"{what}: expected VGG16's 13 3x3 convolutions {expected}, found {found}")
    with torch.no_grad():
        for conv, name in zip(net.convs, convs):
            bias = re.sub(r"weight$", "bias", name)
            if bias not in tensors or tensors[bias].shape != conv.bias.shape:
                raise LPIPSError(f"{what}: no bias {bias!r} of shape {tuple(conv.bias.shape)} beside {name!r}")
            conv.weight.copy_(tensors[name].float())
            conv.bias.copy_(tensors[bias].float())
    lins = [tensors[n] for n in names if tensors[n].ndim == 4 and tensors[n].shape[0] == 1
            and tuple(tensors[n].shape[2:]) == (1, 1)]
    if not lins:
        return net.eval().requires_grad_(False), None
    if [int(t.shape[1]) for t in lins] != [64, 128, 256, 512, 512]:
        raise LPIPSError(f"{what}: LPIPS lin weights must be [1, C, 1, 1] for C = 64, 128, 256, 512, 512, "
                         f"found {[tuple(t.shape) for t in lins]}")
    return net.eval().requires_grad_(False), [t.float().reshape(-1) for t in lins]


def load_lpips(source: str | os.PathLike) -> tuple[VGG16Features, list[torch.Tensor] | None]:
    """VGG16 (+ LPIPS lin weights) from a path or an http(s) URL (downloaded once into the cache)."""
    from stylegan2.download import download

    text = os.fspath(source)
    path = download(text) if text.startswith(("http://", "https://")) else pathlib.Path(text).expanduser()
    if not path.is_file():
        raise LPIPSError(f"LPIPS/VGG16 weights not found: {path}")
    return vgg16_lpips_from_tensors(_read_tensors(path), str(path))


def make_distance(target: torch.Tensor, lpips: str | os.PathLike | None = None,
                  feature_maps: FeatureMaps | None = None) -> Distance:
    """The projector's distance to ``target``: LPIPS when a source is given, else features, else pixels."""
    if lpips is not None:
        net, weights = load_lpips(lpips)
        net = net.to(target.device)
        weights = None if weights is None else [w.to(target.device) for w in weights]
        return FeatureDistance(target, net, "LPIPS (VGG16)", weights, pixel_weight=0.0)
    if feature_maps is not None:
        return FeatureDistance(target, feature_maps, "features + pixel pyramid")
    return Distance(target)


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """Feature networks read RGB: a greyscale image's channel is repeated."""
    return images if images.shape[1] == 3 else images.repeat(1, 3, 1, 1)
