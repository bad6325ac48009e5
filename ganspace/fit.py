"""Direction finders behind one interface: `find(method, G, k, sampler, ...) -> Components`.

A finder returns unit directions in W (rows), the mean they are measured from, and one score per direction
whose meaning it declares (the PCA family: each direction's share of W's variance; SeFa: its share of the
eigenvalues of AᵀA, the squared singular values of the stacked style affines). `find` then measures every
direction's σ on fresh samples with `measure_sigma`, which is public: any vector direction (an attribute
direction, a hand-made one) gets its σ the same way. A new finder is one function under `@finder(...)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

from ganspace.components import Components
from ganspace.estimators import fit_ica, fit_ipca, fit_sparse_pca, pca_from_covariance
from ganspace.sampling import CLASS_MIX, iter_w
from ganspace.sefa import sefa_directions
from toolkit.covariance import StreamingCovariance

Progress = Optional[Callable[[int], None]]
VARIANCE_SHARE = "share of the total variance of W captured by each direction"


@dataclass
class WSampler:
    """Where finders get w: untruncated mapping(z, c) in batches, from two disjoint seeded streams
    (one to fit on, one to measure σ on, so σ is never measured on the samples that chose the direction)."""

    G: object
    batch_size: int = 10_000
    seed: int = 0
    class_idx: object = CLASS_MIX
    progress: Progress = None  # called with the number of w just mapped for fitting

    def batches(self, n: int) -> Iterator[np.ndarray]:
        for batch in iter_w(self.G, n, self.batch_size, self.seed, self.class_idx):
            if self.progress:
                self.progress(len(batch))
            yield batch

    def fresh(self, n: int) -> Iterator[np.ndarray]:
        return iter_w(self.G, n, self.batch_size, [self.seed, 2], self.class_idx)


@dataclass
class Found:
    """What a finder returns: unit rows [K, w_dim], one score each, the mean (None: measure it) and facts."""

    comp: np.ndarray
    scores: np.ndarray
    mean: np.ndarray | None
    meta: dict


@dataclass(frozen=True)
class Finder:
    run: Callable[..., Found]
    score_meaning: str
    orthonormal: bool


FINDERS: dict[str, Finder] = {}


def finder(name: str, score_meaning: str, orthonormal: bool):
    """Register `run(G, k, sampler, **options) -> Found` as the finder `name`."""
    def register(run: Callable[..., Found]) -> Callable[..., Found]:
        FINDERS[name] = Finder(run, score_meaning, orthonormal)
        return run
    return register


def measure_sigma(sampler: WSampler, directions: np.ndarray, mean: np.ndarray | None = None,
                  num_samples: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """σ of (w − mean)·v over fresh samples for each row v of `directions` (one vector is fine), and their mean.

    With mean=None the samples' own mean is used (σ does not depend on it; only `absolute` edits do).
    """
    directions = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    origin = np.zeros(directions.shape[1]) if mean is None else np.asarray(mean, dtype=np.float64)
    stats = StreamingCovariance(directions.shape[0])
    w_sum = np.zeros(directions.shape[1])
    for batch in sampler.fresh(num_samples):
        stats.update((batch - origin) @ directions.T)
        w_sum += batch.sum(axis=0)
    return np.sqrt(np.diag(stats.covariance())), w_sum / stats.count


def find(method: str, G, k: int, sampler: WSampler, *, stdev_samples: int = 10_000,
         network_sha256: str | None = None, **options) -> Components:
    """`k` directions of W for generator G by `method` (see FINDERS), with σ and provenance, as a Components file.

    `options` go to the finder: num_samples (pca, ipca, sparsepca, ica), subsample (sparsepca, ica),
    layers (sefa).
    """
    if method not in FINDERS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(FINDERS)}")
    if not 1 <= k <= G.w_dim:
        raise ValueError(f"--components must be in 1-{G.w_dim} (w_dim), got {k}")
    chosen = FINDERS[method]
    found = chosen.run(G, k, sampler, **options)
    mean = found.mean
    if mean is None:
        _, mean = measure_sigma(sampler, found.comp, None, stdev_samples)
    stdev, _ = measure_sigma(sampler, found.comp, mean, stdev_samples)
    meta = dict(method="sefa" if method == "sefa" else "ganspace", estimator=method, seed=sampler.seed,
                class_idx=_json_label(sampler.class_idx), network_sha256=network_sha256, num_ws=int(G.num_ws), w_dim=int(G.w_dim),
                stdev_samples=stdev_samples, orthonormal=chosen.orthonormal, var_ratio_meaning=chosen.score_meaning,
                **found.meta)
    return Components(found.comp, mean, stdev, found.scores, meta)


@finder("pca", VARIANCE_SHARE, orthonormal=True)
def _pca(G, k, sampler, num_samples=1_000_000, **_):
    stats = StreamingCovariance(G.w_dim)
    for batch in sampler.batches(num_samples):
        stats.update(batch)
    comp, var_ratio = pca_from_covariance(stats.covariance(), k)
    return Found(comp, var_ratio, stats.mean, dict(num_samples=int(stats.count)))


@finder("ipca", VARIANCE_SHARE, orthonormal=True)
def _ipca(G, k, sampler, num_samples=1_000_000, **_):
    comp, mean, var_ratio = fit_ipca(sampler.batches(num_samples), k)
    return Found(comp, var_ratio, mean, dict(num_samples=int(num_samples)))


def _in_memory(fit):
    def run(G, k, sampler, num_samples=1_000_000, subsample=20_000, **_):
        used = min(num_samples, subsample)
        samples = np.concatenate(list(sampler.batches(used)))
        comp, var_ratio = fit(samples, k, sampler.seed)
        return Found(comp, var_ratio, samples.mean(axis=0), dict(num_samples=int(used)))
    return run


finder("sparsepca", VARIANCE_SHARE, orthonormal=False)(_in_memory(fit_sparse_pca))
finder("ica", VARIANCE_SHARE, orthonormal=False)(_in_memory(fit_ica))


@finder("sefa", "share of the eigenvalues of A^T A (squared singular values of the stacked, row-normalised "
                "style affines)", orthonormal=True)
def _sefa(G, k, sampler, layers: tuple[int, int] | None = None, **_):
    comp, shares = sefa_directions(G, k, layers)
    mean = G.mapping.w_avg.detach().double().cpu().numpy() if hasattr(G.mapping, "w_avg") else None
    return Found(comp, shares, mean, dict(num_samples=0, sefa_layers=list(layers) if layers else None))


def _json_label(class_idx):
    """The label a fit used, as JSON: a class, 'mix', or a multi-attribute label vector as a list."""
    return class_idx.tolist() if isinstance(class_idx, np.ndarray) else class_idx
