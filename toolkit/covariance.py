"""Exact streaming mean and covariance of rows, in float64, with memory independent of their number.

Used by FID's feature statistics (`training.metrics.FeatureStats`) and GANSpace's PCA (`ganspace.fit`).
Batches are merged as centred statistics (Chan et al.'s pairwise update), which avoids the cancellation
of the raw-moment formula E[xxᵀ] − μμᵀ when rows have a large mean (Inception features do).
"""
from __future__ import annotations

import numpy as np
import torch


class StreamingCovariance:
    """Running float64 mean and scatter matrix Σ (x − μ)(x − μ)ᵀ of the rows passed to `update`.

    Torch tensors stay on their device (the first batch's); torch's float64 GEMM is also ~3x numpy's
    on our CPUs, so numpy batches go through it too.
    """

    def __init__(self, dim: int | None = None):
        self.dim = dim
        self.count = 0
        self._mean: torch.Tensor | None = None
        self._scatter: torch.Tensor | None = None

    def update(self, batch: np.ndarray | torch.Tensor) -> None:
        """Add the rows of a [N, D] batch (any float dtype; N may be 0)."""
        x = torch.as_tensor(batch).detach()
        if x.ndim != 2:
            raise ValueError(f"rows must be [N, D], got shape {tuple(x.shape)}")
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"row size changed from {self.dim} to {x.shape[1]}")
        self.dim = x.shape[1]
        n = x.shape[0]
        if n == 0:
            return
        x = x.to(torch.float64) if self._mean is None else x.to(self._mean.device, torch.float64)
        batch_mean = x.mean(dim=0)
        centred = x - batch_mean
        batch_scatter = centred.T @ centred
        if self._mean is None:
            self._mean, self._scatter = batch_mean, batch_scatter
        else:
            total = self.count + n
            delta = batch_mean - self._mean
            self._scatter = self._scatter + batch_scatter + torch.outer(delta, delta) * (self.count * n / total)
            self._mean = self._mean + delta * (n / total)
        self.count += n

    def _require(self, at_least: int = 1) -> None:
        if self.count < at_least:
            raise ValueError("no rows were accumulated" if self.count == 0 else
                             f"need at least {at_least} rows, got {self.count}")

    @property
    def mean(self) -> np.ndarray:
        self._require()
        return self._mean.cpu().numpy()

    @property
    def scatter(self) -> np.ndarray:
        self._require()
        return self._scatter.cpu().numpy()

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """scatter / (count − ddof): ddof=1 is numpy.cov's unbiased estimate, ddof=0 FID's biased one."""
        self._require(ddof + 1)
        return (self._scatter / (self.count - ddof)).cpu().numpy()

    @classmethod
    def from_state(cls, count: int, mean: np.ndarray, scatter: np.ndarray) -> StreamingCovariance:
        """Rebuild saved statistics (count, mean, scatter), e.g. a cache file."""
        stats = cls(int(np.shape(mean)[0]))
        stats.count = int(count)
        stats._mean = torch.as_tensor(np.asarray(mean, np.float64))
        stats._scatter = torch.as_tensor(np.asarray(scatter, np.float64))
        return stats
