"""Fit a components file for a generator: PCA-family estimators over sampled w, or SeFa."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ganspace.components import Components
from ganspace.estimators import StreamingCovariance, fit_ica, fit_ipca, fit_sparse_pca, pca_from_covariance
from ganspace.sampling import CLASS_MIX, iter_w
from ganspace.sefa import sefa_directions

ESTIMATORS = ("pca", "ipca", "sparsepca", "ica")
Progress = Optional[Callable[[int], None]]


def _stdev_seed(seed: int) -> list[int]:
    """A stream disjoint from the fitting one, so σ is measured on fresh samples."""
    return [seed, 2]


def projection_stats(G, comp: np.ndarray, mean: np.ndarray, num_samples: int, batch_size: int,
                     seed: int, class_idx=CLASS_MIX) -> tuple[np.ndarray, np.ndarray]:
    """Std of projections (w - mean)·v of fresh samples, and the mean of those samples."""
    stats = StreamingCovariance(comp.shape[0])
    w_sum = np.zeros(comp.shape[1])
    for batch in iter_w(G, num_samples, batch_size, _stdev_seed(seed), class_idx):
        stats.update((batch - mean) @ comp.T)
        w_sum += batch.sum(axis=0)
    return np.sqrt(np.diag(stats.covariance)), w_sum / stats.count


def fit_components(G, num_samples: int, num_components: int, estimator: str = "pca", seed: int = 0,
                   batch_size: int = 10_000, class_idx=CLASS_MIX, subsample: int = 20_000,
                   stdev_samples: int = 10_000, network_sha256: str | None = None,
                   progress: Progress = None) -> Components:
    """Principal (or sparse / independent) directions of W for generator G.

    `progress(n)` is called with the number of w samples just mapped.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if not 1 <= num_components <= G.w_dim:
        raise ValueError(f"--components must be in 1-{G.w_dim} (w_dim), got {num_components}")

    def batches(n):
        for batch in iter_w(G, n, batch_size, seed, class_idx):
            if progress:
                progress(len(batch))
            yield batch

    if estimator == "pca":
        stats = StreamingCovariance(G.w_dim)
        for batch in batches(num_samples):
            stats.update(batch)
        comp, var_ratio = pca_from_covariance(stats.covariance, num_components)
        mean, used = stats.mean, stats.count
    elif estimator == "ipca":
        comp, mean, var_ratio = fit_ipca(batches(num_samples), num_components)
        used = num_samples
    else:
        used = min(num_samples, subsample)
        samples = np.concatenate(list(batches(used)))
        fitter = fit_sparse_pca if estimator == "sparsepca" else fit_ica
        comp, var_ratio = fitter(samples, num_components, seed)
        mean = samples.mean(axis=0)
    stdev, _ = projection_stats(G, comp, mean, stdev_samples, batch_size, seed, class_idx)
    meta = dict(method="ganspace", estimator=estimator, num_samples=int(used), seed=seed,
                class_idx=_json_label(class_idx), network_sha256=network_sha256,
                num_ws=int(G.num_ws), w_dim=int(G.w_dim),
                stdev_samples=stdev_samples, orthonormal=estimator in ("pca", "ipca"),
                var_ratio_meaning="share of the total variance of W captured by each direction")
    return Components(comp, mean, stdev, var_ratio, meta)


def fit_sefa(G, num_components: int, layers: tuple[int, int] | None = None, seed: int = 0,
             batch_size: int = 10_000, class_idx=CLASS_MIX, stdev_samples: int = 10_000,
             network_sha256: str | None = None) -> Components:
    """SeFa directions in the components format; mean and σ measured on sampled w for comparability."""
    comp, var_ratio = sefa_directions(G, num_components, layers)
    mean = G.mapping.w_avg.detach().double().cpu().numpy() if hasattr(G.mapping, "w_avg") else None
    if mean is None:
        _, mean = projection_stats(G, comp, np.zeros(G.w_dim), stdev_samples, batch_size, seed, class_idx)
    stdev, _ = projection_stats(G, comp, mean, stdev_samples, batch_size, seed, class_idx)
    meta = dict(method="sefa", estimator="sefa", num_samples=0, seed=seed, class_idx=_json_label(class_idx),
                network_sha256=network_sha256, num_ws=int(G.num_ws), w_dim=int(G.w_dim),
                sefa_layers=list(layers) if layers else None, stdev_samples=stdev_samples, orthonormal=True,
                var_ratio_meaning="share of the eigenvalues of A^T A (stacked, row-normalised style affines)")
    return Components(comp, mean, stdev, var_ratio, meta)


def _json_label(class_idx):
    """The label a fit used, as JSON: a class, 'mix', or a multi-attribute label vector as a list."""
    return class_idx.tolist() if isinstance(class_idx, np.ndarray) else class_idx
