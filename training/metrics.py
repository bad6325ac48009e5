"""FID, KID, precision/recall and class accuracy between a generator (or an image set) and a dataset, StyleGAN2-ADA's way.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to Inception-v3 pool
features of real and generated images; KID (Bińkowski et al. 2018) is the unbiased MMD² with the
cubic polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over random subsets; improved precision
and recall (Kynkäänniemi et al. 2019) count the samples that fall inside the other set's k-NN balls,
on Inception features (`pr50k3_inception`) or, as officially, on VGG16 fc7 features (`pr50k3_full`,
`training.vgg16`, from a user-supplied file). Class accuracy (`class_knn5_full`, ours: not a published
metric) asks whether a conditional network draws the class it was given: a 5-nearest-neighbour vote among
the reals' Inception features, per class, beside the same vote for each real among the others.
Feature statistics stream in float64 (mean/covariance merged batch by batch), so 50k images never
sit in memory for FID; KID and precision/recall keep the float32 features.
Real-image features are cached on disk, keyed by a dataset fingerprint and the network's.
Portrait (e.g. 256x192) reals and fakes are padded to a square on mid grey, then resized like square
images (`_to_feature_input`): Inception sees undistorted garments, at the cost of a quarter of its
299x299 input spent on the constant border; FIDs of portrait and square models are not comparable.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import zipfile

import numpy as np
import torch
from tqdm.auto import tqdm

from stylegan2.compiled import compile_generator
from stylegan2.render import map_to_w, to_uint8_tensor
from toolkit.atomic import atomic_write
from toolkit.covariance import StreamingCovariance
from toolkit.download import cache_root
from training.feature_net import HOW_TO, feature_net_fingerprint, load_feature_net
from training.vgg16 import VGG16_ENV


class FeatureNetworkUnavailable(RuntimeError):
    """No feature network could be found; the caller should skip the metric, not fail."""


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    kind: str             # 'fid', 'kid', 'pr' or 'class'
    num_gen: int | None   # generated images; None = as many as the reals measured
    max_real: int | None  # real images; None = the whole dataset ("_full")
    about: str
    network: str = "inception"  # 'inception' (2048-d pool) or 'vgg16' (4096-d fc7, a user-supplied file)


METRICS: dict[str, MetricSpec] = {
    "fid50k_full": MetricSpec("fid", 50_000, None, "FID, 50k fakes vs all reals (the published protocol)"),
    "kid50k_full": MetricSpec("kid", 50_000, None, "KID, 50k fakes vs all reals (published protocol)"),
    "pr50k3_full": MetricSpec("pr", 50_000, None, "precision/recall (k=3), 50k fakes vs all reals, on VGG16 fc7 "
                              "features (the official metric; needs --vgg16)", "vgg16"),
    "pr50k3_inception": MetricSpec("pr", 50_000, None, "precision/recall (k=3), 50k fakes vs all reals, on "
                                   "Inception features: NOT comparable with the official VGG16 pr50k3_full"),
    "fid10k": MetricSpec("fid", 10_000, 10_000, "FID, 10k fakes vs 10k reals (quick)"),
    "fid10k_full": MetricSpec("fid", 10_000, None, "FID, 10k fakes vs all reals (quick)"),
    "kid10k_full": MetricSpec("kid", 10_000, None, "KID, 10k fakes vs all reals (quick)"),
    "fid2k_full": MetricSpec("fid", 2_000, None, "FID, 2k fakes vs all reals (CPU training default; biased "
                             "upwards, compare only with itself)"),
    "kid2k_full": MetricSpec("kid", 2_000, None, "KID, 2k fakes vs all reals (CPU training default; unbiased)"),
    "fid_full": MetricSpec("fid", None, None, "FID, as many fakes as reals (small data sets; real vs real)"),
    "kid_full": MetricSpec("kid", None, None, "KID, as many fakes as reals (small data sets; real vs real)"),
    "class_knn5_full": MetricSpec("class", None, None, "conditional networks: the share of fakes whose 5 nearest "
                                  "reals (Inception features) mostly carry the fake's class, averaged over the "
                                  "classes; _reals is the same for each real among the others (the ceiling)"),
}
CLASS_KNN_K = 5
GPU_DEFAULT = ["fid50k_full"]
CPU_DEFAULT = ["fid2k_full", "kid2k_full"]  # one set of 2k fakes serves both


# ----------------------------------------------------------------------------- streaming statistics

class FeatureStats:
    """Streaming float64 mean and covariance of features (`toolkit.covariance`), optionally all features.

    Covariance is the biased (ddof=0) one, as StyleGAN2-ADA's FID uses.
    """

    def __init__(self, keep_features: bool = False):
        self.keep_features = keep_features
        self._moments = StreamingCovariance()
        self._features: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []   # the conditioning label of each kept fake (class_knn)

    @property
    def count(self) -> int:
        return self._moments.count

    def append(self, features: torch.Tensor | np.ndarray, labels: np.ndarray | None = None) -> None:
        x = torch.as_tensor(features).detach()
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {tuple(x.shape)}")
        if self.keep_features:
            self._features.append(x.float().cpu().numpy())
            if labels is not None:
                self._labels.append(np.asarray(labels, np.float32))
        self._moments.update(x)

    def _require_data(self) -> None:
        if self.count == 0:
            raise ValueError("no features were accumulated")

    @property
    def mean(self) -> np.ndarray:
        self._require_data()
        return self._moments.mean

    @property
    def cov(self) -> np.ndarray:
        self._require_data()
        return self._moments.covariance(ddof=0)

    @property
    def features(self) -> np.ndarray:
        if not self.keep_features:
            raise ValueError("these statistics were gathered without keep_features=True")
        self._require_data()
        return np.concatenate(self._features)

    @property
    def labels(self) -> np.ndarray:
        """The labels given with the kept features, one row each."""
        if sum(map(len, self._labels)) != self.count:
            raise ValueError("these statistics were gathered without a label for every feature")
        return np.concatenate(self._labels)

    @classmethod
    def of(cls, features: np.ndarray | torch.Tensor, keep_features: bool = False,
           labels: np.ndarray | None = None) -> 'FeatureStats':
        stats = cls(keep_features)
        stats.append(features, labels)
        return stats

    def save(self, path: str | os.PathLike) -> None:
        """Atomic .npz write: an interrupted save never leaves a corrupt cache entry."""
        self._require_data()
        arrays = dict(count=np.int64(self.count), mean=self.mean, scatter=self._moments.scatter)
        if self.keep_features:
            arrays["features"] = self.features

        def write(tmp: pathlib.Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> 'FeatureStats':
        with np.load(path) as data:
            stats = cls(keep_features="features" in data)
            stats._moments = StreamingCovariance.from_state(data["count"], data["mean"], data["scatter"])
            if stats.keep_features:
                stats._features = [data["features"]]
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


def precision_recall(real: FeatureStats | np.ndarray, fake: FeatureStats | np.ndarray, k: int = 3,
                     batch_size: int = 1000) -> tuple[float, float]:
    """Improved precision and recall: the share of fakes inside the real manifold, and of reals inside the fake one.

    A manifold is the union of balls around its points, each as wide as the distance to the
    point's k-th nearest neighbour in the same set (the point itself not counted); a probe is
    inside when it lies in at least one ball (distance <= radius).
    """
    real = torch.as_tensor(real.features if isinstance(real, FeatureStats) else np.asarray(real)).float()
    fake = torch.as_tensor(fake.features if isinstance(fake, FeatureStats) else np.asarray(fake)).float()
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} real and {k} generated samples")

    def covered(manifold: torch.Tensor, probes: torch.Tensor) -> float:
        radii = torch.cat([torch.cdist(manifold[i:i + batch_size], manifold).kthvalue(k + 1, dim=1).values
                           for i in range(0, len(manifold), batch_size)])
        inside = [(torch.cdist(probes[i:i + batch_size], manifold) <= radii).any(dim=1)
                  for i in range(0, len(probes), batch_size)]
        return torch.cat(inside).double().mean().item()

    return covered(real, fake), covered(fake, real)


def knn_classes(reference: torch.Tensor, reference_classes: np.ndarray, probes: torch.Tensor, k: int,
                leave_self_out: bool = False, batch_size: int = 1000) -> np.ndarray:
    """The class of each probe by a vote of its k nearest reference points (Euclidean); a tie goes to the tied
    class with the nearest member. `leave_self_out`: the probes are the reference, each not counting itself."""
    predicted = []
    for start in range(0, len(probes), batch_size):
        distances = torch.cdist(probes[start:start + batch_size], reference)
        if leave_self_out:
            rows = torch.arange(len(distances))
            distances[rows, rows + start] = float("inf")
        nearest = distances.topk(k, dim=1, largest=False).indices.numpy()      # sorted, nearest first
        votes = reference_classes[nearest]
        n, rows = len(votes), np.arange(len(votes))
        counts = np.zeros((n, int(reference_classes.max()) + 1), np.int64)
        np.add.at(counts, (rows[:, None], votes), 1)
        first = np.full(counts.shape, k)                     # the rank of each class's nearest vote (k: none)
        for rank in range(k - 1, -1, -1):
            first[rows, votes[:, rank]] = rank
        scores = counts * (k + 1) + (k - first)              # votes first; among equal votes, the nearest
        predicted.append(scores.argmax(axis=1))
    return np.concatenate(predicted) if predicted else np.zeros(0, np.int64)


def class_accuracy(real: FeatureStats, real_labels: np.ndarray, fake: FeatureStats,
                   k: int = CLASS_KNN_K) -> tuple[float, float]:
    """(fakes, reals): the share of fakes whose k nearest reals mostly carry the fake's own class, and of reals
    whose k nearest other reals do, each averaged over the classes (so rare classes count as much as common
    ones). Labels are one-hot rows; the reals' figure is the ceiling that the features allow."""
    real_labels, fake_labels = np.asarray(real_labels), fake.labels
    for labels, what in ((real_labels, "dataset"), (fake_labels, "generator")):
        if labels.ndim != 2 or labels.shape[1] < 2 or not np.all(labels.sum(axis=1) == 1) or \
                not np.all((labels == 0) | (labels == 1)):
            raise ValueError(f"class_knn5_full needs one class per image (one-hot labels); the {what}'s are not")
    if len(real_labels) <= k:
        raise ValueError(f"class_knn5_full needs more than {k} real images")
    real_classes, fake_classes = real_labels.argmax(axis=1), fake_labels.argmax(axis=1)
    reference = torch.as_tensor(real.features).float()

    def per_class_mean(predicted: np.ndarray, truth: np.ndarray) -> float:
        return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))

    fakes = knn_classes(reference, real_classes, torch.as_tensor(fake.features).float(), k)
    reals = knn_classes(reference, real_classes, reference, k, leave_self_out=True)
    return per_class_mean(fakes, fake_classes), per_class_mean(reals, real_classes)


# ----------------------------------------------------------------------------- features of images

PORTRAIT_PAD_LEVEL = 128  # Inception's zero input, (x - 128) / 128


def _to_feature_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] as every feature network here expects; gray is repeated to RGB.

    Portrait and landscape images are padded to a square (centred, on mid grey) before the network's
    own resize (299x299 for Inception), so garments keep their proportions instead of being stretched;
    reals and fakes both pass through here, so they are measured alike. Square images are untouched.
    """
    images = images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images
    h, w = images.shape[2:]
    if h != w:
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        images = torch.nn.functional.pad(images, (left, side - w - left, top, side - h - top),
                                         value=PORTRAIT_PAD_LEVEL)
    return images


def dataset_fingerprint(dataset) -> str:
    """A hash that changes when the dataset's images do (not its labels: features see only pixels).

    Datasets backed by a `path` hash cheaply: a zip's member names, sizes and CRCs (so a zip rebuilt with
    the same content, as on every new machine, keeps its cached features), a folder's file names, sizes
    and modification times; plus which of its images are selected (`image_names`, e.g. a --max-size
    sample). Others hash every image's bytes (one full read). So the conditional and unconditional views of
    one data set share a cache entry.
    """
    digest = hashlib.sha256(f"{type(dataset).__qualname__}|{getattr(dataset, 'name', '')}|{len(dataset)}".encode())
    path = getattr(dataset, "path", None)
    if path is not None and pathlib.Path(path).exists():
        path = pathlib.Path(path).resolve()
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for info in sorted(z.infolist(), key=lambda i: i.filename):
                    digest.update(f"{info.filename}|{info.file_size}|{info.CRC}\n".encode())
        else:
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for f in files:
                st = f.stat()
                digest.update(f"{f.relative_to(path.parent)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        digest.update("\n".join(getattr(dataset, "image_names", [])).encode())
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
                       device: str | torch.device = "cpu", keep_features: bool = False,
                       cache_dir: str | os.PathLike | None = None, progress: bool = True,
                       workers: int = 0) -> FeatureStats:
    """Feature statistics of the dataset's images, from the cache when the same dataset and network were seen.

    The key is the dataset's fingerprint, the network's (our Inception's includes its weights'
    sha256 and the preprocessing version) and the image count. An entry that kept the features
    serves both kinds of request; one without them is recomputed when features are wanted.
    """
    indices = _real_subset(dataset, max_real)
    key = hashlib.sha256(f"{dataset_fingerprint(dataset)}|{feature_net_fingerprint(feature_net)}|"
                         f"{len(indices)}".encode()).hexdigest()[:20]
    cache_file = pathlib.Path(cache_dir or cache_root() / "metrics") / f"{getattr(dataset, 'name', 'dataset')}-{key}.npz"
    if cache_file.is_file():
        try:
            cached = FeatureStats.load(cache_file)
            if cached.keep_features or not keep_features:
                return cached
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache entry: recompute and overwrite it
    stats = FeatureStats(keep_features)
    # Its own generator: a DataLoader otherwise draws its worker seed from the caller's RNG stream.
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices.tolist()), batch_size=batch_size,
                                         num_workers=workers, generator=torch.Generator().manual_seed(0))
    for images, _labels in tqdm(loader, desc="real features", unit="batch", disable=not progress):
        stats.append(feature_net(_to_feature_input(torch.as_tensor(images).to(device))))
    stats.save(cache_file)
    return stats


def _label_pool(dataset) -> np.ndarray:
    """Labels to draw generator conditions from, so fakes follow the dataset's class balance."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = np.stack([dataset[i][1] for i in range(len(dataset))])
    return np.asarray(labels, dtype=np.float32)


@torch.no_grad()
def generated_feature_stats(G, dataset, feature_net: torch.nn.Module, num_gen: int, batch_size: int = 64,
                            device: str | torch.device = "cpu", keep_features: bool = False, seed: int = 0,
                            truncation_psi: float = 1.0, progress: bool = True,
                            truncation_centre: str = "global") -> FeatureStats:
    """Features of `num_gen` images from random z (and dataset labels when G is conditional, kept beside the
    features with `keep_features`), truncated towards `truncation_centre` (stylegan2.render.map_to_w).

    Draws from its own seeded RNG state, so the caller's (e.g. the training loop's) RNG stream
    is left exactly as it was.
    """
    device = torch.device(device)
    labels = _label_pool(dataset) if G.c_dim else None
    if labels is not None and labels.shape[1] != G.c_dim:
        raise ValueError(f"G is conditional with {G.c_dim} classes but the dataset has {labels.shape[1]} label "
                         f"columns; measure against the labelled dataset (use_labels=True)")
    stats = FeatureStats(keep_features)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        rng = np.random.RandomState(seed)
        with tqdm(total=num_gen, desc="generated features", unit="img", disable=not progress) as bar:
            while stats.count < num_gen:
                n = min(batch_size, num_gen - stats.count)
                z = torch.randn(n, G.z_dim, device=device)
                drawn = labels[rng.randint(len(labels), size=n)] if labels is not None else None
                c = torch.from_numpy(drawn).to(device) if drawn is not None else None
                if truncation_centre == "global":
                    img = G(z, c, truncation_psi=truncation_psi, noise_mode="random")
                else:
                    img = G.synthesis(map_to_w(G, z, c, truncation_psi, centre=truncation_centre), noise_mode="random")
                stats.append(feature_net(_to_feature_input(to_uint8_tensor(img))), drawn)
                bar.update(n)
    return stats


def _specs(names: list[str]) -> list[MetricSpec]:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    return [METRICS[n] for n in names]


VGG16_HOW_TO = (f"pr50k3_full needs VGG16 weights (a torchvision-layout state dict): give --vgg16 PATH|URL or "
                f"set ${VGG16_ENV}, or use pr50k3_inception (Inception features, not comparable)")


def _by_network(names: list[str], feature_net, vgg16, device) -> list[tuple[torch.nn.Module, list[str]]]:
    """The metrics grouped by the feature network they measure on, each with that network loaded.

    `feature_net` (Inception) defaults to `load_feature_net()`; `vgg16` has no default, as no
    package ships its weights. A missing network raises FeatureNetworkUnavailable so callers can skip.
    """
    _specs(names)
    groups = []
    for network in ("inception", "vgg16"):
        mine = [n for n in names if METRICS[n].network == network]
        if not mine:
            continue
        net = feature_net if network == "inception" else vgg16
        if net is None and network == "inception":
            net = load_feature_net(device=device)
        if net is None:
            raise FeatureNetworkUnavailable(VGG16_HOW_TO if network == "vgg16" else
                                            f"no feature network for {', '.join(mine)}: {HOW_TO}")
        groups.append((net.eval(), mine))
    return groups


def _values(name: str, kind: str, real: FeatureStats, fake: FeatureStats,
            real_labels: np.ndarray | None = None) -> dict[str, float]:
    if kind == "fid":
        return {name: fid_from_features(real, fake)}
    if kind == "kid":
        return {name: kid_from_features(real, fake)}
    if kind == "class":
        fakes, reals = class_accuracy(real, real_labels, fake)
        return {name: fakes, f"{name}_reals": reals}
    precision, recall = precision_recall(real, fake)
    return {f"{name}_precision": precision, f"{name}_recall": recall}


def _prefix(stats: FeatureStats, n: int) -> FeatureStats:
    """The statistics of the first n samples of a run that kept its features (and their labels, if any)."""
    if n == stats.count:
        return stats
    return FeatureStats.of(stats.features[:n], keep_features=True, labels=stats.labels[:n] if stats._labels else None)


def compute_metrics(names: list[str], G, dataset, feature_net: torch.nn.Module | None = None,
                    num_gen: int | None = None, batch_size: int = 64, device: str | torch.device = "cpu",
                    cache_dir: str | os.PathLike | None = None, progress: bool = True, seed: int = 0,
                    truncation_psi: float = 1.0, vgg16: torch.nn.Module | None = None,
                    compile: bool | None = None, truncation_centre: str = "global") -> dict[str, float]:
    """Metrics of METRICS for generator G against `dataset` (FID/KID: lower is better), by result name.

    One run of fakes per feature network (its largest count) serves that network's metrics: smaller
    counts use its first images, so `fid2k_full,kid2k_full` costs one set of 2k fakes (the same seed
    gives `pr50k3_full`'s VGG16 the same fakes). `feature_net` (Inception) defaults to
    `load_feature_net()`, `vgg16` (for pr50k3_full) to none; a missing one raises
    FeatureNetworkUnavailable so the caller can skip. `num_gen` overrides every metric's fake count
    (quick looks; not comparable). Precision/recall report `<name>_precision` and `<name>_recall`, class
    accuracy `<name>` (fakes) and `<name>_reals`.
    `compile`: render the fakes through G's compiled path (`stylegan2.compiled`, in place; None: the
    switch's auto, by the fake count); its graphs survive weight updates, so a training run's G_ema
    compiles once for all its snapshots.
    """
    if len(dataset) == 0:
        raise ValueError(f"dataset {getattr(dataset, 'name', '')!r} is empty")
    if not getattr(G, "c_dim", 0) and any(spec.kind == "class" for spec in _specs(names)):
        raise ValueError("class_knn5_full measures a conditional network's classes; this one has none")
    results: dict[str, float] = {}
    for net, group in _by_network(names, feature_net, vgg16, device):
        specs = _specs(group)
        keep = any(spec.kind != "fid" for spec in specs)
        reals = {max_real: real_feature_stats(dataset, net, max_real, batch_size, device, keep, cache_dir, progress)
                 for max_real in {spec.max_real for spec in specs}}
        counts = [num_gen or spec.num_gen or reals[spec.max_real].count for spec in specs]
        compile_generator(G, compile, images=max(counts))
        fakes = generated_feature_stats(G, dataset, net, max(counts), batch_size, device,
                                        keep or len(set(counts)) > 1, seed, truncation_psi, progress,
                                        truncation_centre)
        for name, spec, count in zip(group, specs, counts):
            real_labels = _label_pool(dataset)[_real_subset(dataset, spec.max_real)] if spec.kind == "class" else None
            results.update(_values(name, spec.kind, reals[spec.max_real], _prefix(fakes, count), real_labels))
    return {name: results[name] for name in _result_names(names)}


def _result_names(names: list[str]) -> list[str]:
    """Result keys in the order the metrics were asked for (precision/recall give two)."""
    extra = {"pr": ("_precision", "_recall"), "class": ("", "_reals")}
    return [n + suffix for n in names for suffix in extra.get(METRICS[n].kind, ("",))]


def compute_metric(name: str, G, dataset, feature_net: torch.nn.Module | None = None, **kwargs) -> float:
    """One FID or KID value (see compute_metrics for the arguments)."""
    if name in METRICS and METRICS[name].kind in ("pr", "class"):
        raise ValueError(f"{name} has two values ({', '.join(_result_names([name]))}): use compute_metrics")
    return compute_metrics([name], G, dataset, feature_net, **kwargs)[name]


def _refuse_class(names: list[str]) -> None:
    if any(spec.kind == "class" for spec in _specs(names)):
        raise ValueError("class_knn5_full measures a generator; its _reals figure is the real images' own ceiling")


def compare_datasets(names: list[str], data, reference, feature_net: torch.nn.Module | None = None,
                     batch_size: int = 64, device: str | torch.device = "cpu",
                     cache_dir: str | os.PathLike | None = None, progress: bool = True,
                     vgg16: torch.nn.Module | None = None) -> dict[str, float]:
    """Real vs real: every image of `data` in the place of the fakes, against `reference` (both cached)."""
    _refuse_class(names)
    results: dict[str, float] = {}
    for net, group in _by_network(names, feature_net, vgg16, device):
        specs = _specs(group)
        keep = any(spec.kind != "fid" for spec in specs)
        probe = real_feature_stats(data, net, None, batch_size, device, keep, cache_dir, progress)
        reals = {max_real: real_feature_stats(reference, net, max_real, batch_size, device, keep, cache_dir,
                                              progress) for max_real in {spec.max_real for spec in specs}}
        for name, spec in zip(group, specs):
            results.update(_values(name, spec.kind, reals[spec.max_real], probe))
    return {name: results[name] for name in _result_names(names)}


def compare_halves(names: list[str], dataset, feature_net: torch.nn.Module | None = None, seed: int = 0,
                   batch_size: int = 64, device: str | torch.device = "cpu",
                   cache_dir: str | os.PathLike | None = None, progress: bool = True,
                   vgg16: torch.nn.Module | None = None) -> dict[str, float]:
    """The floor that sample size sets: one random half of the dataset against the other (cached features)."""
    _refuse_class(names)
    results: dict[str, float] = {}
    for net, group in _by_network(names, feature_net, vgg16, device):
        stats = real_feature_stats(dataset, net, None, batch_size, device, True, cache_dir, progress)
        order = np.random.RandomState(seed).permutation(stats.count)
        half = stats.count // 2
        features = stats.features
        first, second = (FeatureStats.of(features[order[a:b]], keep_features=True)
                         for a, b in ((0, half), (half, 2 * half)))
        for name in group:
            results.update(_values(name, METRICS[name].kind, first, second))
    return {name: results[name] for name in _result_names(names)}
