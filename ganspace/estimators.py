"""Ways to find directions in a cloud of w samples.

- pca_from_covariance over `toolkit.covariance.StreamingCovariance`: exact PCA with memory
  independent of N (float64 mean and scatter matrix merged batch by batch, Chan et al.'s update).
- fit_ipca: scikit-learn's IncrementalPCA, also streaming.
- fit_sparse_pca / fit_ica: SparsePCA / FastICA on an in-memory subsample, for sparse
  or independent (not orthogonal) directions.
All return unit rows with a fixed sign (largest-magnitude coordinate positive) so that
repeated fits give identical files.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


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
