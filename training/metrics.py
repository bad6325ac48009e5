"""FID and KID between a generator and a dataset, with StyleGAN2-ADA's conventions.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to feature-network
activations of real and generated images; KID (Bińkowski et al. 2018) is the unbiased MMD²
with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over random subsets.
Feature statistics stream in float64 (mean/covariance merged batch by batch), so 50k images
never sit in memory for FID; KID keeps the float32 features because it resamples them.
Real-image statistics are cached on disk, keyed by a dataset fingerprint and the network.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import tempfile

import numpy as np
import torch
from tqdm.auto import tqdm

from stylegan2.download import cache_root
from training.feature_net import HOW_TO, feature_net_fingerprint, load_feature_net


class FeatureNetworkUnavailable(RuntimeError):
    """No feature network could be found; the caller should skip the metric, not fail."""


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    kind: str             # 'fid' or 'kid'
    num_gen: int          # generated images
    max_real: int | None  # real images; None = the whole dataset ("_full")


METRICS: dict[str, MetricSpec] = {
    'fid50k_full': MetricSpec('fid', 50_000, None),
    'kid50k_full': MetricSpec('kid', 50_000, None),
    'fid10k': MetricSpec('fid', 10_000, 10_000),
    'fid10k_full': MetricSpec('fid', 10_000, None),
    'kid10k_full': MetricSpec('kid', 10_000, None),
}


# ----------------------------------------------------------------------------- streaming statistics

class FeatureStats:
    """Running float64 mean and scatter matrix (Chan et al.'s pairwise merge), optionally all features.

    Merging centred batch statistics avoids the cancellation of the raw-moment formula
    E[xxᵀ] - μμᵀ when features have a large mean. Covariance is the biased (ddof=0) one,
    as StyleGAN2-ADA's FID uses.
    """

    def __init__(self, keep_features: bool = False):
        self.keep_features = keep_features
        self.count = 0
        self._mean: torch.Tensor | None = None
        self._scatter: torch.Tensor | None = None
        self._features: list[np.ndarray] = []

    def append(self, features: torch.Tensor | np.ndarray) -> None:
        x = torch.as_tensor(features).detach()
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {tuple(x.shape)}")
        if self.keep_features:
            self._features.append(x.float().cpu().numpy())
        x = x.double()
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(dim=0)
        centred = x - mean_b
        scatter_b = centred.T @ centred
        if self.count == 0:
            self._mean, self._scatter = mean_b, scatter_b
        else:
            if mean_b.shape != self._mean.shape:
                raise ValueError(f"feature size changed from {self._mean.shape[0]} to {mean_b.shape[0]}")
            mean_b, scatter_b = mean_b.to(self._mean.device), scatter_b.to(self._mean.device)
            n = self.count + n_b
            delta = mean_b - self._mean
            self._mean = self._mean + delta * (n_b / n)
            self._scatter = self._scatter + scatter_b + torch.outer(delta, delta) * (self.count * n_b / n)
        self.count += n_b

    def _require_data(self) -> None:
        if self.count == 0:
            raise ValueError("no features were accumulated")

    @property
    def mean(self) -> np.ndarray:
        self._require_data()
        return self._mean.cpu().numpy()

    @property
    def cov(self) -> np.ndarray:
        self._require_data()
        return (self._scatter / self.count).cpu().numpy()

    @property
    def features(self) -> np.ndarray:
        if not self.keep_features:
            raise ValueError("these statistics were gathered without keep_features=True")
        self._require_data()
        return np.concatenate(self._features)

    @classmethod
    def of(cls, features: np.ndarray | torch.Tensor, keep_features: bool = False) -> 'FeatureStats':
        stats = cls(keep_features)
        stats.append(features)
        return stats

    def save(self, path: str | os.PathLike) -> None:
        """Atomic .npz write: an interrupted save never leaves a corrupt cache entry."""
        self._require_data()
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(count=np.int64(self.count), mean=self.mean, scatter=self._scatter.cpu().numpy())
        if self.keep_features:
            arrays['features'] = self.features
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix='.tmp.npz') as tmp:
            np.savez(tmp, **arrays)
        os.replace(tmp.name, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> 'FeatureStats':
        with np.load(path) as data:
            stats = cls(keep_features='features' in data)
            stats.count = int(data['count'])
            stats._mean = torch.from_numpy(data['mean'])
            stats._scatter = torch.from_numpy(data['scatter'])
            if stats.keep_features:
                stats._features = [data['features']]
        return stats


# ----------------------------------------------------------------------------- the two distances

def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½).

    Tr((Σ1 Σ2)^½) is the sum of square roots of the eigenvalues of Σ1^½ Σ2 Σ1^½, a symmetric
    PSD matrix with the same spectrum, so two symmetric eigendecompositions suffice (no
    general matrix square root, no complex round-off).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    vals, vecs = np.linalg.eigh(sigma1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = root1 @ sigma2 @ root1
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(np.square(mu1 - mu2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)


def _as_stats(x: FeatureStats | np.ndarray | torch.Tensor) -> FeatureStats:
    return x if isinstance(x, FeatureStats) else FeatureStats.of(x)


def fid_from_features(real: FeatureStats | np.ndarray, fake: FeatureStats | np.ndarray) -> float:
    """FID from feature arrays [N, D] or accumulated FeatureStats."""
    real, fake = _as_stats(real), _as_stats(fake)
    return frechet_distance(real.mean, real.cov, fake.mean, fake.cov)


def kid_from_features(real: FeatureStats | np.ndarray, fake: FeatureStats | np.ndarray, num_subsets: int = 100,
                      max_subset_size: int = 1000, seed: int = 0) -> float:
    """Mean over `num_subsets` random subsets of size m of the unbiased MMD² estimate

        1/(m(m−1)) Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j)] − 2/m² Σ_{i,j} k(x_i, y_j).
    """
    real = real.features if isinstance(real, FeatureStats) else np.asarray(real)
    fake = fake.features if isinstance(fake, FeatureStats) else np.asarray(fake)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    d = real.shape[1]
    m = min(len(real), len(fake), max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 real and 2 generated samples")
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)].astype(np.float64)
        y = real[rng.choice(len(real), m, replace=False)].astype(np.float64)
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += within - 2 * kxy.sum() / (m * m)
    return float(total / num_subsets)


# ----------------------------------------------------------------------------- features of images

def _to_feature_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] as every feature network here expects; gray is repeated to RGB."""
    return images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


def dataset_fingerprint(dataset) -> str:
    """A hash that changes when the dataset's images or labels do.

    Datasets backed by a `path` hash its file names, sizes and modification times, plus which of its
    images are selected (`image_names`, e.g. a --max-size sample) and the labels (cheap); others hash
    every image's bytes (one full read).
    """
    digest = hashlib.sha256(f"{type(dataset).__qualname__}|{getattr(dataset, 'name', '')}|{len(dataset)}".encode())
    path = getattr(dataset, 'path', None)
    if path is not None and pathlib.Path(path).exists():
        path = pathlib.Path(path).resolve()
        files = [path] if path.is_file() else sorted(p for p in path.rglob('*') if p.is_file())
        for f in files:
            st = f.stat()
            digest.update(f"{f.relative_to(path.parent)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        digest.update("\n".join(getattr(dataset, 'image_names', [])).encode())
        labels = getattr(dataset, 'labels', None)
        if labels is not None:
            digest.update(np.ascontiguousarray(labels, dtype=np.float32).tobytes())
    else:
        for i in range(len(dataset)):
            digest.update(np.ascontiguousarray(dataset[i][0]).tobytes())
    return digest.hexdigest()


def _real_subset(dataset, max_real: int | None) -> np.ndarray:
    """All indices, or a fixed random subset (datasets are often sorted by class)."""
    n = len(dataset)
    if max_real is None or max_real >= n:
        return np.arange(n)
    return np.sort(np.random.RandomState(0).choice(n, max_real, replace=False))


@torch.no_grad()
def real_feature_stats(dataset, feature_net: torch.nn.Module, max_real: int | None = None, batch_size: int = 64,
                       device: str | torch.device = 'cpu', keep_features: bool = False,
                       cache_dir: str | os.PathLike | None = None, progress: bool = True,
                       workers: int = 0) -> FeatureStats:
    """Feature statistics of the dataset's images, from the cache when the same dataset and network were seen."""
    indices = _real_subset(dataset, max_real)
    key = hashlib.sha256(f"{dataset_fingerprint(dataset)}|{feature_net_fingerprint(feature_net)}|"
                         f"{len(indices)}|{keep_features}".encode()).hexdigest()[:20]
    cache_file = pathlib.Path(cache_dir or cache_root() / 'metrics') / f"{getattr(dataset, 'name', 'dataset')}-{key}.npz"
    if cache_file.is_file():
        try:
            return FeatureStats.load(cache_file)
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache entry: recompute and overwrite it
    stats = FeatureStats(keep_features)
    # Its own generator: a DataLoader otherwise draws its worker seed from the caller's RNG stream.
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices.tolist()), batch_size=batch_size,
                                         num_workers=workers, generator=torch.Generator().manual_seed(0))
    for images, _labels in tqdm(loader, desc='real features', unit='batch', disable=not progress):
        stats.append(feature_net(_to_feature_input(torch.as_tensor(images).to(device))))
    stats.save(cache_file)
    return stats


def _label_pool(dataset) -> np.ndarray:
    """Labels to draw generator conditions from, so fakes follow the dataset's class balance."""
    labels = getattr(dataset, 'labels', None)
    if labels is None:
        labels = np.stack([dataset[i][1] for i in range(len(dataset))])
    return np.asarray(labels, dtype=np.float32)


@torch.no_grad()
def generated_feature_stats(G, dataset, feature_net: torch.nn.Module, num_gen: int, batch_size: int = 64,
                            device: str | torch.device = 'cpu', keep_features: bool = False, seed: int = 0,
                            truncation_psi: float = 1.0, progress: bool = True) -> FeatureStats:
    """Features of `num_gen` images from random z (and dataset labels when G is conditional).

    Draws from its own seeded RNG state, so the caller's (e.g. the training loop's) RNG stream
    is left exactly as it was.
    """
    device = torch.device(device)
    labels = _label_pool(dataset) if G.c_dim else None
    if labels is not None and labels.shape[1] != G.c_dim:
        raise ValueError(f"G is conditional with {G.c_dim} classes but the dataset has {labels.shape[1]} label "
                         f"columns; measure against the labelled dataset (use_labels=True)")
    stats = FeatureStats(keep_features)
    with torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []):
        torch.manual_seed(seed)
        rng = np.random.RandomState(seed)
        with tqdm(total=num_gen, desc='generated features', unit='img', disable=not progress) as bar:
            while stats.count < num_gen:
                n = min(batch_size, num_gen - stats.count)
                z = torch.randn(n, G.z_dim, device=device)
                c = torch.from_numpy(labels[rng.randint(len(labels), size=n)]).to(device) if labels is not None else None
                img = G(z, c, truncation_psi=truncation_psi, noise_mode='random')
                pixels = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # stylegan2.render's pixel convention
                stats.append(feature_net(_to_feature_input(pixels)))
                bar.update(n)
    return stats


def compute_metric(name: str, G, dataset, feature_net: torch.nn.Module | None = None, num_gen: int | None = None,
                   batch_size: int = 64, device: str | torch.device = 'cpu', cache_dir: str | os.PathLike | None = None,
                   progress: bool = True, seed: int = 0) -> float:
    """One metric of METRICS for generator G against `dataset` (lower is better).

    `feature_net` defaults to `load_feature_net()` (env AFRO_FASHION_INCEPTION); if none can
    be found FeatureNetworkUnavailable is raised so the caller can skip the metric.
    `num_gen` overrides the metric's generated-image count (quick looks; not comparable).
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    spec = METRICS[name]
    if feature_net is None:
        feature_net = load_feature_net(device=device)
        if feature_net is None:
            raise FeatureNetworkUnavailable(f"no feature network for {name}: {HOW_TO}")
    if len(dataset) == 0:
        raise ValueError(f"dataset {getattr(dataset, 'name', '')!r} is empty")
    keep = spec.kind == 'kid'
    was_training = feature_net.training
    feature_net.eval()
    try:
        real = real_feature_stats(dataset, feature_net, spec.max_real, batch_size, device, keep, cache_dir, progress)
        fake = generated_feature_stats(G, dataset, feature_net, num_gen or spec.num_gen, batch_size, device, keep,
                                       seed, progress=progress)
    finally:
        feature_net.train(was_training)
    return fid_from_features(real, fake) if spec.kind == 'fid' else kid_from_features(real, fake)
