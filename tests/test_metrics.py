"""FID/KID math against independent references, streaming statistics, feature-net loading, end to end."""
import functools
import http.server
import threading

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch

from stylegan2.download import cached_path
from stylegan2.networks import Generator
from training import feature_net as fn
from training.dataset import ImageDataset
from training.metrics import (METRICS, FeatureNetworkUnavailable, FeatureStats, compute_metric, dataset_fingerprint,
                              fid_from_features, frechet_distance, kid_from_features, real_feature_stats)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # tests script a stand-in net


def random_cov(d, rng):
    a = rng.randn(d, d)
    return a @ a.T / d + 0.1 * np.eye(d)


# ----------------------------------------------------------------------------- Fréchet distance

def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.RandomState(0)
    d = 12
    mu1, mu2 = rng.randn(d), rng.randn(d)
    s1, s2 = random_cov(d, rng), random_cov(d, rng)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-9)


def test_frechet_distance_closed_forms():
    rng = np.random.RandomState(1)
    d = 8
    mu, s = rng.randn(d), random_cov(d, rng)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9
    mu1, mu2 = rng.randn(d), rng.randn(d)
    v1, v2 = rng.rand(d) + 0.1, rng.rand(d) + 0.1
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_fid_from_features_of_samples_approaches_the_population_value():
    rng = np.random.RandomState(2)
    real = rng.randn(20000, 4)
    fake = rng.randn(20000, 4) * 2 + 1  # N(1, 4 I): FID = 4 * 1 + 4 * (1 + 4 - 2 * 2) = 8
    assert fid_from_features(real, fake) == pytest.approx(8.0, rel=0.05)
    assert fid_from_features(real, real) == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------------------- KID

def naive_kid(x, y):
    """Unbiased MMD² with k(a, b) = (a·b / d + 1)³, written out as loops."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_naive_double_loop():
    rng = np.random.RandomState(3)
    real, fake = rng.randn(9, 5), rng.randn(9, 5) * 1.5 + 0.3
    # One subset of the full size is a permutation of everything: the estimator is the full-sample one.
    assert kid_from_features(real, fake, num_subsets=1, max_subset_size=100) == pytest.approx(naive_kid(real, fake),
                                                                                              rel=1e-10)


def test_kid_is_near_zero_for_same_distribution_and_positive_otherwise():
    rng = np.random.RandomState(4)
    a, b = rng.randn(400, 16), rng.randn(400, 16)
    same = kid_from_features(a, b, num_subsets=20, max_subset_size=200)
    different = kid_from_features(a, b + 0.5, num_subsets=20, max_subset_size=200)
    assert abs(same) < 0.01 < different


# ----------------------------------------------------------------------------- streaming statistics

def test_streaming_stats_equal_numpy_mean_and_cov():
    rng = np.random.RandomState(5)
    x = rng.randn(1000, 6) * np.arange(1, 7) + 1e4  # large mean: the naive raw-moment formula would cancel badly
    stats = FeatureStats(keep_features=True)
    for chunk in np.split(x, [1, 7, 300, 301, 999]):
        stats.append(torch.from_numpy(chunk) if len(chunk) == 1 else chunk)  # tensors and arrays both work
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False, bias=True), rtol=1e-9)
    np.testing.assert_allclose(stats.features, x.astype(np.float32))


def test_stats_save_load_round_trip(tmp_path):
    stats = FeatureStats.of(np.random.RandomState(6).randn(50, 3), keep_features=True)
    stats.save(tmp_path / 's.npz')
    back = FeatureStats.load(tmp_path / 's.npz')
    assert back.count == 50
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.cov, stats.cov)
    np.testing.assert_array_equal(back.features, stats.features)
    with pytest.raises(ValueError, match="no features"):
        FeatureStats().mean


# ----------------------------------------------------------------------------- feature network loading

class TinyFeatures(torch.nn.Module):
    """Stands in for Inception: uint8 images -> 8-d features (scriptable, with the official keyword)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = images.float() / 127.5 - 1
        feats = torch.nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 1).flatten(1)
        return feats if return_features else feats.softmax(dim=1)


@pytest.fixture
def scripted_net(tmp_path):
    path = tmp_path / 'tiny-inception.pt'
    torch.jit.save(torch.jit.script(TinyFeatures()), str(path))
    return path


def test_load_feature_net_from_path_and_env(scripted_net, monkeypatch):
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    net = fn.load_feature_net(scripted_net)
    torch.testing.assert_close(net(x), TinyFeatures()(x, return_features=True))
    assert net.fingerprint == fn.file_sha256(scripted_net)
    monkeypatch.setenv(fn.INCEPTION_ENV, str(scripted_net))
    assert fn.load_feature_net() is not None


def test_load_feature_net_from_local_url_caches_the_download(scripted_net, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(scripted_net.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{scripted_net.name}"
        net = fn.load_feature_net(url, cache_dir=tmp_path / 'dl')
        assert net is not None and cached_path(url, tmp_path / 'dl').is_file()
        assert fn.load_feature_net(url.replace(scripted_net.name, 'missing.pt'), cache_dir=tmp_path / 'dl') is None
    finally:
        server.shutdown()
        server.server_close()


def test_missing_feature_net_returns_none_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(fn.INCEPTION_ENV, raising=False)
    assert fn.load_feature_net() is None
    assert fn.load_feature_net(tmp_path / 'nope.pt') is None
    (tmp_path / 'junk.pt').write_bytes(b'not torchscript')
    assert fn.load_feature_net(tmp_path / 'junk.pt') is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(fn.INCEPTION_ENV in line for line in lines)


# ----------------------------------------------------------------------------- end to end

class ArrayDataset:
    """The ImageDataset contract over arrays: uint8 [C, H, W] images and one-hot labels."""

    def __init__(self, images, labels=None, name='tiny'):
        self.images = images
        self.labels = labels if labels is not None else np.zeros([len(images), 0], np.float32)
        self.name = name
        self.reads = 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.reads += 1
        return self.images[i], self.labels[i]


class CountingFeatures(TinyFeatures):
    calls = 0

    def forward(self, images, return_features: bool = True):
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        CountingFeatures.calls += 1
        return super().forward(images, return_features=True)


def tiny_generator(c_dim=0):
    torch.manual_seed(1)
    return Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=16, img_channels=3,
                     mapping_kwargs=dict(num_layers=2),
                     synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=None)).eval()


class Replay(torch.nn.Module):
    """A 'generator' that returns the dataset's own images, so FID must come out ~0."""

    z_dim, c_dim = 4, 0

    def __init__(self, images):
        super().__init__()
        self.pixels = torch.as_tensor(images).float()
        self.next = 0

    def forward(self, z, c, truncation_psi=1.0, noise_mode='random'):
        idx = torch.arange(self.next, self.next + len(z)) % len(self.pixels)
        self.next += len(z)
        return (self.pixels[idx] - 128) / 127.5


def test_compute_metric_end_to_end_with_cache(tmp_path):
    rng = np.random.RandomState(7)
    dataset = ArrayDataset(rng.randint(0, 256, (24, 3, 16, 16)).astype(np.uint8))
    net = CountingFeatures()
    calls_before = CountingFeatures.calls
    fid = compute_metric('fid10k_full', tiny_generator(), dataset, net, num_gen=20, batch_size=8, cache_dir=tmp_path,
                         progress=False)
    assert np.isfinite(fid) and fid > 0
    calls_first = CountingFeatures.calls
    assert calls_first - calls_before == 3 + 3  # 24 reals and 20 fakes in batches of 8
    again = compute_metric('fid10k_full', tiny_generator(), dataset, net, num_gen=20, batch_size=8, cache_dir=tmp_path,
                           progress=False)
    assert again == fid  # same seed, same numbers
    assert CountingFeatures.calls - calls_first == 3  # reals came from the cache
    assert len(list(tmp_path.glob('tiny-*.npz'))) == 1
    dataset.images[0, 0, 0, 0] ^= 1  # changed content -> new cache entry
    compute_metric('fid10k_full', tiny_generator(), dataset, net, num_gen=8, batch_size=8, cache_dir=tmp_path,
                   progress=False)
    assert len(list(tmp_path.glob('tiny-*.npz'))) == 2


def test_generator_that_replays_the_data_scores_zero(tmp_path):
    rng = np.random.RandomState(8)
    images = rng.randint(0, 256, (16, 1, 16, 16)).astype(np.uint8)  # grayscale goes through as RGB
    fid = compute_metric('fid10k_full', Replay(images), ArrayDataset(images), TinyFeatures(), num_gen=16,
                         batch_size=5, cache_dir=tmp_path, progress=False)
    assert abs(fid) < 1e-6


def test_conditional_generator_and_kid(tmp_path):
    rng = np.random.RandomState(9)
    labels = np.eye(3, dtype=np.float32)[rng.randint(0, 3, 20)]
    dataset = ArrayDataset(rng.randint(0, 256, (20, 3, 16, 16)).astype(np.uint8), labels)
    G, net = tiny_generator(c_dim=3), TinyFeatures()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    kid = compute_metric('kid10k_full', G, dataset, net, num_gen=12, batch_size=6,
                         cache_dir=tmp_path, progress=False)
    assert np.isfinite(kid)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    with pytest.raises(ValueError, match="use_labels"):
        compute_metric('kid10k_full', G, ArrayDataset(dataset.images), net, num_gen=4, cache_dir=tmp_path,
                       progress=False)


def test_fid10k_uses_a_fixed_subset_of_reals(tmp_path):
    rng = np.random.RandomState(10)
    dataset = ArrayDataset(rng.randint(0, 256, (30, 3, 16, 16)).astype(np.uint8))
    stats = real_feature_stats(dataset, TinyFeatures(), max_real=12, batch_size=8, cache_dir=tmp_path, progress=False)
    assert stats.count == 12


def test_path_backed_fingerprint_reads_no_images_and_tracks_file_changes(tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for i in range(3):
        (folder / f'{i}.png').write_bytes(bytes([i]) * 10)
    dataset = ArrayDataset(np.zeros((3, 3, 16, 16), np.uint8), name='photos')
    dataset.path = folder
    first = dataset_fingerprint(dataset)
    assert dataset.reads == 0 and dataset_fingerprint(dataset) == first
    (folder / '1.png').write_bytes(b'changed, and longer')
    assert dataset_fingerprint(dataset) != first


def test_unknown_metric_and_missing_network(monkeypatch):
    dataset = ArrayDataset(np.zeros((2, 3, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="fid50k_full"):
        compute_metric('fid1k', tiny_generator(), dataset, TinyFeatures())
    monkeypatch.delenv(fn.INCEPTION_ENV, raising=False)
    with pytest.raises(FeatureNetworkUnavailable, match=fn.INCEPTION_ENV):
        compute_metric('fid50k_full', tiny_generator(), dataset)
    assert set(METRICS) == {'fid50k_full', 'kid50k_full', 'fid10k', 'fid10k_full', 'kid10k_full'}


def test_fingerprint_tells_apart_equal_size_samples_of_one_dataset(tmp_path):
    """Two --max-size samples (other seeds) of the same folder hold other images: their cached stats must differ."""
    folder = tmp_path / 'photos'
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(12):
        PIL.Image.fromarray(rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f'{i:02d}.png')
    a, b = (ImageDataset(folder, max_size=6, seed=seed) for seed in (0, 1))
    assert len(a) == len(b) and a.image_names != b.image_names
    assert dataset_fingerprint(a) != dataset_fingerprint(b)
    assert dataset_fingerprint(a) == dataset_fingerprint(ImageDataset(folder, max_size=6, seed=0))
    stats_a, stats_b = (real_feature_stats(d, TinyFeatures(), batch_size=6, cache_dir=tmp_path / 'cache',
                                           progress=False) for d in (a, b))
    assert not np.allclose(stats_a.mean, stats_b.mean)
