"""Ways to find directions in a cloud of w samples.

- StreamingCovariance + pca_from_covariance: exact PCA with memory independent of N
  (float64 mean and scatter matrix merged batch by batch, Chan et al.'s update).
- fit_ipca: scikit-learn's IncrementalPCA, also streaming.
- fit_sparse_pca / fit_ica: SparsePCA / FastICA on an in-memory subsample, for sparse
  or independent (not orthogonal) directions.
All return unit rows with a fixed sign (largest-magnitude coordinate positive) so that
repeated fits give identical files.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch


class StreamingCovariance:
    """Running mean and covariance of rows, numerically stable for millions of samples."""

    def __init__(self, dim: int):
        self.count = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.scatter = np.zeros((dim, dim), dtype=np.float64)

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        centred = batch - batch_mean
        delta = batch_mean - self.mean
        total = self.count + n
        centred_t = torch.from_numpy(centred)   # torch's float64 GEMM is ~3x numpy's on our CPUs
        self.scatter += (centred_t.T @ centred_t).numpy() + np.outer(delta, delta) * (self.count * n / total)
        self.mean += delta * (n / total)
        self.count = total

    @property
    def covariance(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError("need at least 2 samples for a covariance")
        return self.scatter / (self.count - 1)


def canonical_signs(rows: np.ndarray) -> np.ndarray:
    """Flip each row so its largest-magnitude coordinate is positive."""
    idx = np.abs(rows).argmax(axis=1)
    signs = np.sign(rows[np.arange(len(rows)), idx])
    signs[signs == 0] = 1
    return rows * signs[:, None]


def pca_from_covariance(cov: np.ndarray, num_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Top eigenvectors (rows) and their share of the total variance."""
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1][:num_components]
    total = eigvals.clip(min=0).sum()
    return canonical_signs(eigvecs[:, order].T), eigvals[order].clip(min=0) / total


def fit_ipca(batches: Iterable[np.ndarray], num_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IncrementalPCA over the stream: (components, mean, variance ratios).

    Each batch is held back one step so a short last batch (fewer rows than components,
    which IncrementalPCA refuses) is merged into the one before it.
    """
    from sklearn.decomposition import IncrementalPCA
    ipca = IncrementalPCA(n_components=num_components)
    held = None
    for batch in batches:
        if held is None or len(batch) < num_components:
            held = batch if held is None else np.concatenate([held, batch])
            continue
        ipca.partial_fit(held)
        held = batch
    if held is None or len(held) < num_components:
        raise ValueError(f"IncrementalPCA needs at least {num_components} samples per batch; raise --batch or --samples")
    ipca.partial_fit(held)
    return canonical_signs(ipca.components_), ipca.mean_, ipca.explained_variance_ratio_


def _unit_rows_by_variance(directions: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalise non-orthogonal directions and order them by the variance they capture."""
    norms = np.linalg.norm(directions, axis=1)
    keep = norms > 1e-12
    directions = directions[keep] / norms[keep, None]
    centred = samples - samples.mean(axis=0)
    captured = (centred @ directions.T).var(axis=0) / centred.var(axis=0).sum()
    order = np.argsort(captured)[::-1]
    return canonical_signs(directions[order]), captured[order]


def fit_sparse_pca(samples: np.ndarray, num_components: int, seed: int, alpha: float = 1.0):
    """SparsePCA: directions touching few w coordinates. Returns (components, variance ratios)."""
    from sklearn.decomposition import MiniBatchSparsePCA
    model = MiniBatchSparsePCA(n_components=num_components, alpha=alpha, random_state=seed)
    model.fit(samples)
    return _unit_rows_by_variance(model.components_, samples)


def fit_ica(samples: np.ndarray, num_components: int, seed: int):
    """FastICA: each direction is how one independent source moves w (a mixing column)."""
    from sklearn.decomposition import FastICA
    model = FastICA(n_components=num_components, whiten="unit-variance", random_state=seed, max_iter=1000)
    model.fit(samples)
    return _unit_rows_by_variance(model.mixing_.T, samples)
