"""SeFa (Shen & Zhou, CVPR 2021): closed-form directions from the style affines.

A direction v that moves many styles strongly maximises |A v|^2, where A stacks the
affine weights of the chosen layers; so the directions are the top eigenvectors of
A^T A.  Each affine output row is normalised first (as the SeFa authors do), so layers
with large weights or weight gains do not dominate.
"""
from __future__ import annotations

import re

import numpy as np

from ganspace.estimators import canonical_signs

_AFFINE_NAME = re.compile(r"(?:^|\.)synthesis\.b(\d+)\.(conv0|conv1|torgb)\.affine$")


def affine_layer_index(resolution: int, kind: str) -> int:
    """W+ layer that feeds an affine: b4.conv1=0, b4.torgb=1=b8.conv0, b8.conv1=2, ..."""
    base = 2 * int(np.log2(resolution)) - 4
    return {"conv0": base - 1, "conv1": base, "torgb": base + 1}[kind]


def style_affines(G) -> list[tuple[int, str, np.ndarray]]:
    """(layer index, module name, effective weight [out, w_dim]) for every style affine, in layer order."""
    found = []
    for name, module in G.named_modules():
        match = _AFFINE_NAME.search(name)
        if match:
            weight = module.weight.detach().double().cpu().numpy() * float(getattr(module, "weight_gain", 1.0))
            found.append((affine_layer_index(int(match.group(1)), match.group(2)), name, weight))
    if not found:
        raise ValueError("no style affines (synthesis.b{res}.conv0/conv1/torgb.affine) found: SeFa needs a StyleGAN2 generator")
    return sorted(found, key=lambda item: (item[0], item[1]))


def sefa_directions(G, num_components: int, layers: tuple[int, int] | None = None):
    """Top eigenvectors of A^T A over the affines of `layers` (inclusive; all when None).

    Returns (unit rows [K, w_dim], eigenvalue shares [K]).
    """
    weights = [w for idx, _, w in style_affines(G) if layers is None or layers[0] <= idx <= layers[1]]
    if not weights:
        raise ValueError(f"no style affines feed layers {layers}")
    stacked = np.concatenate(weights, axis=0)
    stacked = stacked / np.linalg.norm(stacked, axis=1, keepdims=True)
    eigvals, eigvecs = np.linalg.eigh(stacked.T @ stacked)
    order = np.argsort(eigvals)[::-1][:num_components]
    return canonical_signs(eigvecs[:, order].T), eigvals[order] / eigvals.sum()
