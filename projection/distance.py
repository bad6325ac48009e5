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
  the pyramid term.  With a supplied VGG16/LPIPS file it is LPIPS itself.
* ``InceptionFeatures`` (``--inception``): the same recipe on the FID Inception-v3 (``training.inception``,
  weights fetched once, read as data), tapped after ``conv_2`` (147 px, 64 ch), ``conv_4`` (71 px,
  192 ch) and ``mixed_2`` (35 px, 288 ch): three depths like LPIPS's five VGG taps, from edges to
  texture and parts.  Why these: the deeper maps (17 px and below) are nearly blind to where a 64 px
  garment's edges lie, and stopping at ``mixed_2`` costs about a third of the whole network.  Unit-length
  normalisation makes the features ignore overall brightness, so the pixel pyramid stays in the sum
  (weight 1) to hold colour.  No learned channel weights exist for Inception, so channels weigh equally.

A feature network here is any callable ``images in [-1, 1] [N, 3, H, W] -> list of [N, C, h, w] maps``.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from training.inception import preprocess
from training.vgg16 import VGG16Error as LPIPSError  # noqa: F401  (projection's name for it, caught by its users)
from training.vgg16 import VGG16Features, read_vgg16_tensors, vgg16_lpips_from_tensors

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


class InceptionFeatures(torch.nn.Module):
    """Inception-v3's maps at ``taps`` for images in [-1, 1]; the network beyond the last tap never runs."""

    TAPS = ("conv_2", "conv_4", "mixed_2")

    def __init__(self, inception: torch.nn.Module, taps: Sequence[str] = TAPS):
        super().__init__()
        names = [name for name, _ in inception.layers.named_children()]
        unknown = [t for t in taps if t not in names]
        if unknown:
            raise ValueError(f"Inception-v3 has no layer {unknown[0]!r} (layers: {', '.join(names)})")
        last = max(names.index(t) for t in taps)
        self.layers = torch.nn.Sequential(*list(inception.layers.children())[:last + 1])
        self.taps = {names.index(t) for t in taps}

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = preprocess((images + 1) * 127.5)   # the FID network's own input: 299 px, (x - 128) / 128
        maps = []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.taps:
                maps.append(x)
        return maps


def load_lpips(source: str | os.PathLike) -> tuple[VGG16Features, list[torch.Tensor] | None]:
    """VGG16 (+ LPIPS lin weights) from a path or an http(s) URL (downloaded once into the cache)."""
    tensors, what = read_vgg16_tensors(source)
    return vgg16_lpips_from_tensors(tensors, what)


def make_distance(target: torch.Tensor, lpips: str | os.PathLike | None = None,
                  inception: torch.nn.Module | None = None) -> Distance:
    """The projector's distance to ``target``: LPIPS when a source is given, else Inception-v3 features
    (plus the pixel pyramid) when a loaded network is given, else the pixel pyramid alone."""
    if inception is not None:
        return FeatureDistance(target, InceptionFeatures(inception).to(target.device), "Inception-v3 + pixel pyramid")
    if lpips is not None:
        net, weights = load_lpips(lpips)
        net = net.to(target.device)
        weights = None if weights is None else [w.to(target.device) for w in weights]
        return FeatureDistance(target, net, "LPIPS (VGG16)", weights, pixel_weight=0.0)
    return Distance(target)


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """Feature networks read RGB: a greyscale image's channel is repeated."""
    return images if images.shape[1] == 3 else images.repeat(1, 3, 1, 1)
