"""Supervised directions from labels: the mean change of W when one attribute goes from value a to value b.

PCA directions need a person to name them; a conditional network already knows what its labels mean.
For each sample the same z and the same other attribute blocks (rows drawn from the data, or "any") are
mapped twice, once with the attribute at a and once at b, so the difference of the two W means is
measured on pairs and the other attributes cancel. The direction's σ is measured like a component's:
the spread of fresh samples' projections onto it, so its slider works in the same units as the PCA ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stylegan2.render import device_of

SIGMA_SEED_OFFSET = 1  # σ is measured on a fresh z stream (seed + 1), never on the samples that found the direction


@dataclass
class AttributeDirection:
    vector: np.ndarray      # [w_dim] unit vector, from a towards b
    shift: np.ndarray       # [w_dim] the mean difference itself, W(b) - W(a)
    sigma: float            # std of fresh samples' projections onto `vector`
    samples: int

    @property
    def shift_sigmas(self) -> float:
        """How far apart the two values' means lie, in σ units (a natural slider range)."""
        return float(np.linalg.norm(self.shift) / self.sigma) if self.sigma > 0 else float("inf")


@torch.no_grad()
def _mapped(G, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    device = device_of(G)
    ws = G.mapping(torch.from_numpy(z).float().to(device), torch.from_numpy(c).float().to(device),
                   truncation_psi=1.0)
    return ws[:, 0].double().cpu().numpy()


def with_block(rows: np.ndarray, start: int, stop: int, index: int) -> np.ndarray:
    """Copies of label `rows` whose block start:stop is set to the one-hot `index` (the other blocks kept)."""
    out = np.array(rows, np.float32, copy=True)
    out[:, start:stop] = 0
    out[:, start + index] = 1
    return out


def attribute_direction(G, labels_a: np.ndarray, labels_b: np.ndarray, sigma_labels: np.ndarray, seed: int = 0,
                        batch_size: int = 1000) -> AttributeDirection:
    """Mean of W(z, labels_b) - W(z, labels_a) over paired rows (one z per row, RandomState(seed)), and σ of
    the unit direction over fresh W(z', sigma_labels) (z' from seed + 1)."""
    if labels_a.shape != labels_b.shape or labels_a.shape[1] != G.c_dim:
        raise ValueError(f"labels must be two [N, {G.c_dim}] arrays of the same shape")
    z_rng = np.random.RandomState(seed)
    total = np.zeros(G.w_dim, np.float64)
    for start in range(0, len(labels_a), batch_size):
        stop = min(start + batch_size, len(labels_a))
        z = z_rng.randn(stop - start, G.z_dim)
        total += (_mapped(G, z, labels_b[start:stop]) - _mapped(G, z, labels_a[start:stop])).sum(0)
    shift = total / len(labels_a)
    norm = np.linalg.norm(shift)
    if not norm > 0:
        raise ValueError("the two values map to the same W: the network does not tell them apart")
    vector = shift / norm
    sigma_rng = np.random.RandomState(seed + SIGMA_SEED_OFFSET)
    projections = []
    for start in range(0, len(sigma_labels), batch_size):
        stop = min(start + batch_size, len(sigma_labels))
        projections.append(_mapped(G, sigma_rng.randn(stop - start, G.z_dim), sigma_labels[start:stop]) @ vector)
    sigma = float(np.concatenate(projections).std())
    return AttributeDirection(vector=vector, shift=shift, sigma=sigma, samples=len(labels_a))
