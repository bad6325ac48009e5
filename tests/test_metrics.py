"""FID/KID math against independent references, streaming statistics, feature-net loading, end to end."""
import functools
import http.server
import json
import os
import shutil
import threading
import zipfile

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch

import conftest
from conftest import image_folder

from toolkit.download import cached_path, file_sha256
from training import feature_net as fn
from training.dataset import ImageDataset
from training.inception import InceptionV3, cached_file
from training.metrics import (METRICS, FeatureNetworkUnavailable, FeatureStats, MetricSpec, compare_datasets,
                              compare_halves, compute_metric, compute_metrics, dataset_fingerprint, fid_from_features,
                              frechet_distance, kid_from_features, precision_recall, real_feature_stats)


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
    stats.save(tmp_path / "s.npz")
    back = FeatureStats.load(tmp_path / "s.npz")
    assert back.count == 50
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.cov, stats.cov)
    np.testing.assert_array_equal(back.features, stats.features)
    with pytest.raises(ValueError, match="no features"):
        FeatureStats().mean


# ----------------------------------------------------------------------------- feature network loading

class TinyFeatures(torch.nn.Module):
    """Stands in for Inception where the test is about the metric code: uint8 images -> 8-d features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1
        return torch.nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 1).flatten(1)


def test_load_feature_net_from_path_env_and_fetched_file(inception_file, monkeypatch, tmp_path):
    net = fn.load_feature_net(inception_file)
    assert isinstance(net, InceptionV3) and net.fingerprint.endswith(file_sha256(inception_file))
    monkeypatch.setenv(fn.INCEPTION_ENV, str(inception_file))
    assert isinstance(fn.load_feature_net(), InceptionV3)
    monkeypatch.delenv(fn.INCEPTION_ENV)
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    cached_file().parent.mkdir(parents=True)
    shutil.copyfile(inception_file, cached_file())  # where `python -m training.inception fetch` puts it
    assert isinstance(fn.load_feature_net(), InceptionV3)


def test_load_feature_net_from_local_url_caches_the_download(inception_file, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(inception_file.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{inception_file.name}"
        net = fn.load_feature_net(url, cache_dir=tmp_path / "dl")
        assert isinstance(net, InceptionV3) and cached_path(url, tmp_path / "dl").is_file()
        assert fn.load_feature_net(url.replace(inception_file.name, "missing.pt"), cache_dir=tmp_path / "dl") is None
    finally:
        server.shutdown()
        server.server_close()


def test_missing_feature_net_returns_none_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(fn.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    assert fn.load_feature_net() is None
    assert fn.load_feature_net(tmp_path / "nope.pt") is None
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    assert fn.load_feature_net(tmp_path / "junk.pt") is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all("python -m training.inception fetch" in line for line in lines)


# ----------------------------------------------------------------------------- end to end

class ArrayDataset:
    """The ImageDataset contract over arrays: uint8 [C, H, W] images and one-hot labels."""

    def __init__(self, images, labels=None, name="tiny"):
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

    def forward(self, images):
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        CountingFeatures.calls += 1
        return super().forward(images)


def tiny_generator(c_dim=0):
    return conftest.tiny_generator(c_dim=c_dim, seed=1, num_fp16_res=0, conv_clamp=None)


class Replay(torch.nn.Module):
    """A 'generator' that returns the dataset's own images, so FID must come out ~0."""

    z_dim, c_dim = 4, 0

    def __init__(self, images):
        super().__init__()
        self.pixels = torch.as_tensor(images).float()
        self.next = 0

    def forward(self, z, c, truncation_psi=1.0, noise_mode="random"):
        idx = torch.arange(self.next, self.next + len(z)) % len(self.pixels)
        self.next += len(z)
        return (self.pixels[idx] - 128) / 127.5


def test_compute_metric_end_to_end_with_cache(tmp_path):
    rng = np.random.RandomState(7)
    dataset = ArrayDataset(rng.randint(0, 256, (24, 3, 16, 16)).astype(np.uint8))
    net = CountingFeatures()
    calls_before = CountingFeatures.calls
    fid = compute_metric("fid10k_full", tiny_generator(), dataset, net, num_gen=20, batch_size=8, cache_dir=tmp_path,
                         progress=False)
    assert np.isfinite(fid) and fid > 0
    calls_first = CountingFeatures.calls
    assert calls_first - calls_before == 3 + 3  # 24 reals and 20 fakes in batches of 8
    again = compute_metric("fid10k_full", tiny_generator(), dataset, net, num_gen=20, batch_size=8, cache_dir=tmp_path,
                           progress=False)
    assert again == fid  # same seed, same numbers
    assert CountingFeatures.calls - calls_first == 3  # reals came from the cache
    assert len(list(tmp_path.glob("tiny-*.npz"))) == 1
    dataset.images[0, 0, 0, 0] ^= 1  # changed content -> new cache entry
    compute_metric("fid10k_full", tiny_generator(), dataset, net, num_gen=8, batch_size=8, cache_dir=tmp_path,
                   progress=False)
    assert len(list(tmp_path.glob("tiny-*.npz"))) == 2


def test_cache_is_keyed_by_the_network_and_upgraded_when_features_are_needed(tmp_path):
    rng = np.random.RandomState(16)
    dataset = ArrayDataset(rng.randint(0, 256, (10, 3, 16, 16)).astype(np.uint8))
    old, new = CountingFeatures(), CountingFeatures()
    old.fingerprint, new.fingerprint = "inception:v1:abc", "inception:v2:abc"  # same weights, other preprocessing
    real_feature_stats(dataset, old, batch_size=5, cache_dir=tmp_path, progress=False)
    real_feature_stats(dataset, new, batch_size=5, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("tiny-*.npz"))) == 2
    calls = CountingFeatures.calls
    assert not real_feature_stats(dataset, new, batch_size=5, cache_dir=tmp_path, progress=False).keep_features
    assert CountingFeatures.calls == calls  # FID statistics came from the cache
    with_features = real_feature_stats(dataset, new, batch_size=5, keep_features=True, cache_dir=tmp_path,
                                       progress=False)
    assert with_features.features.shape == (10, 8) and CountingFeatures.calls == calls + 2  # recomputed once
    real_feature_stats(dataset, new, batch_size=5, cache_dir=tmp_path, progress=False)  # and served both since
    assert CountingFeatures.calls == calls + 2 and len(list(tmp_path.glob("tiny-*.npz"))) == 2


def test_generator_that_replays_the_data_scores_zero(tmp_path):
    rng = np.random.RandomState(8)
    images = rng.randint(0, 256, (16, 1, 16, 16)).astype(np.uint8)  # grayscale goes through as RGB
    fid = compute_metric("fid10k_full", Replay(images), ArrayDataset(images), TinyFeatures(), num_gen=16,
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
    kid = compute_metric("kid10k_full", G, dataset, net, num_gen=12, batch_size=6,
                         cache_dir=tmp_path, progress=False)
    assert np.isfinite(kid)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    with pytest.raises(ValueError, match="use_labels"):
        compute_metric("kid10k_full", G, ArrayDataset(dataset.images), net, num_gen=4, cache_dir=tmp_path,
                       progress=False)


def test_fid10k_uses_a_fixed_subset_of_reals(tmp_path):
    rng = np.random.RandomState(10)
    dataset = ArrayDataset(rng.randint(0, 256, (30, 3, 16, 16)).astype(np.uint8))
    stats = real_feature_stats(dataset, TinyFeatures(), max_real=12, batch_size=8, cache_dir=tmp_path, progress=False)
    assert stats.count == 12


def test_path_backed_fingerprint_reads_no_images_and_tracks_file_changes(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(bytes([i]) * 10)
    dataset = ArrayDataset(np.zeros((3, 3, 16, 16), np.uint8), name="photos")
    dataset.path = folder
    first = dataset_fingerprint(dataset)
    assert dataset.reads == 0 and dataset_fingerprint(dataset) == first
    (folder / "1.png").write_bytes(b"changed, and longer")
    assert dataset_fingerprint(dataset) != first


def test_a_rebuilt_zip_with_the_same_content_keeps_its_fingerprint(tmp_path):
    """dataset_tool.py run again on a new machine writes the same members at another time: same cache key."""
    def build(name, members, date):
        path = tmp_path / name / "data.zip"
        path.parent.mkdir()
        with zipfile.ZipFile(path, "w") as z:
            for member, data in members.items():
                z.writestr(zipfile.ZipInfo(member, date_time=date), data)
        os.utime(path, (date[2] * 86400, date[2] * 86400))  # the file's own time differs too
        dataset = ArrayDataset(np.zeros((2, 3, 16, 16), np.uint8), name="data")
        dataset.path = path
        return dataset
    members = {"00000.png": b"first image", "00001.png": b"second image"}
    first = dataset_fingerprint(build("a", members, (2026, 12, 1, 10, 0, 0)))
    assert dataset_fingerprint(build("b", members, (2026, 12, 3, 7, 30, 0))) == first
    changed = dataset_fingerprint(build("c", {**members, "00001.png": b"second imagE"}, (2026, 12, 1, 10, 0, 0)))
    assert changed != first


def test_unknown_metric_and_missing_network(monkeypatch, tmp_path):
    dataset = ArrayDataset(np.zeros((2, 3, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="fid50k_full"):
        compute_metric("fid1k", tiny_generator(), dataset, TinyFeatures())
    monkeypatch.delenv(fn.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FeatureNetworkUnavailable, match=fn.INCEPTION_ENV):
        compute_metric("fid50k_full", tiny_generator(), dataset)
    with pytest.raises(ValueError, match="compute_metrics"):
        compute_metric("pr50k3_inception", tiny_generator(), dataset, TinyFeatures())
    assert {"fid50k_full", "kid50k_full", "pr50k3_inception", "fid_full", "kid_full"} <= set(METRICS)


def test_fingerprint_tells_apart_equal_size_samples_of_one_dataset(tmp_path):
    """Two --max-size samples (other seeds) of the same folder hold other images: their cached stats must differ."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(12):
        PIL.Image.fromarray(rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    a, b = (ImageDataset(folder, max_size=6, seed=seed) for seed in (0, 1))
    assert len(a) == len(b) and a.image_names != b.image_names
    assert dataset_fingerprint(a) != dataset_fingerprint(b)
    assert dataset_fingerprint(a) == dataset_fingerprint(ImageDataset(folder, max_size=6, seed=0))
    stats_a, stats_b = (real_feature_stats(d, TinyFeatures(), batch_size=6, cache_dir=tmp_path / "cache",
                                           progress=False) for d in (a, b))
    assert not np.allclose(stats_a.mean, stats_b.mean)


# ----------------------------------------------------------------------------- precision and recall

def naive_precision_recall(real, fake, k):
    """Kynkäänniemi et al.'s definition written as loops in float64."""
    def dist(a, b):
        return float(np.sqrt(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))

    def share_inside(manifold, probes):
        radii = [sorted(dist(p, q) for q in manifold)[k] for p in manifold]  # [0] is the point itself
        return sum(any(dist(x, p) <= r for p, r in zip(manifold, radii)) for x in probes) / len(probes)
    return share_inside(real, fake), share_inside(fake, real)


def test_precision_recall_match_naive_loops():
    rng = np.random.RandomState(11)
    real = rng.randn(40, 5).astype(np.float32)
    fake = (rng.randn(30, 5) + 1).astype(np.float32)  # shifted: some fakes and some reals fall outside
    expected = naive_precision_recall(real, fake, k=3)
    got = precision_recall(real, fake, k=3, batch_size=7)  # batches that do not divide the sets
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1 and expected[0] != expected[1]
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    with pytest.raises(ValueError, match="more than 3"):
        precision_recall(real[:3], fake, k=3)


# ----------------------------------------------------------------------------- several metrics, one set of fakes

def test_metrics_share_one_run_of_fakes_and_full_means_as_many_as_reals(tmp_path):
    rng = np.random.RandomState(12)
    dataset = ArrayDataset(rng.randint(0, 256, (24, 3, 16, 16)).astype(np.uint8))
    net = CountingFeatures()
    before = CountingFeatures.calls
    results = compute_metrics(["fid10k_full", "kid10k_full", "pr50k3_inception"], tiny_generator(), dataset, net,
                              num_gen=16, batch_size=8, cache_dir=tmp_path, progress=False)
    assert CountingFeatures.calls - before == 3 + 2  # 24 reals once, 16 fakes once for all three metrics
    assert set(results) == {"fid10k_full", "kid10k_full", "pr50k3_inception_precision", "pr50k3_inception_recall"}
    alone = compute_metric("fid10k_full", tiny_generator(), dataset, net, num_gen=16, batch_size=8,
                           cache_dir=tmp_path, progress=False)
    assert alone == pytest.approx(results["fid10k_full"], rel=1e-12)
    before = CountingFeatures.calls
    compute_metrics(["fid_full"], tiny_generator(), dataset, net, batch_size=8, cache_dir=tmp_path, progress=False)
    assert CountingFeatures.calls - before == 3  # reals cached; 24 fakes, as many as reals


def test_fewer_fakes_are_the_first_images_of_the_larger_run(tmp_path, monkeypatch):
    monkeypatch.setitem(METRICS, "fid12_full", MetricSpec("fid", 12, None, "test"))
    rng = np.random.RandomState(13)
    images = rng.randint(0, 256, (20, 3, 16, 16)).astype(np.uint8)
    net = CountingFeatures()
    before = CountingFeatures.calls
    both = compute_metrics(["fid_full", "fid12_full"], Replay(images), ArrayDataset(images), net, batch_size=8,
                           cache_dir=tmp_path, progress=False)
    assert CountingFeatures.calls - before == 3 + 3  # 20 reals, then one run of 20 fakes (batches of 8)
    features = net(torch.from_numpy(images)).detach().numpy()
    assert abs(both["fid_full"]) < 1e-6  # the replayed fakes are the reals
    assert both["fid12_full"] == pytest.approx(fid_from_features(features, features[:12]), rel=1e-6)


def test_real_vs_real_and_halves_against_direct_computation(tmp_path):
    rng = np.random.RandomState(14)
    a = ArrayDataset(rng.randint(0, 256, (18, 3, 16, 16)).astype(np.uint8), name="a")
    b = ArrayDataset(rng.randint(0, 128, (14, 3, 16, 16)).astype(np.uint8), name="b")
    net = CountingFeatures()
    features = {d.name: net(torch.from_numpy(d.images)).detach().numpy() for d in (a, b)}
    got = compare_datasets(["fid_full", "kid_full"], a, b, net, batch_size=5, cache_dir=tmp_path, progress=False)
    assert got["fid_full"] == pytest.approx(fid_from_features(features["b"], features["a"]), rel=1e-5)
    assert got["kid_full"] == pytest.approx(kid_from_features(features["b"], features["a"]), rel=1e-4)
    assert compare_datasets(["fid_full"], a, a, net, cache_dir=tmp_path, progress=False)["fid_full"] < 1e-6
    calls = CountingFeatures.calls
    halves = compare_halves(["fid_full"], a, net, seed=3, cache_dir=tmp_path, progress=False)
    assert CountingFeatures.calls == calls  # the cached features of a were reused
    order = np.random.RandomState(3).permutation(18)
    expected = fid_from_features(features["a"][order[:9]], features["a"][order[9:]])
    assert halves["fid_full"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_fid_on_real_photos_is_zero_for_itself_and_grows_with_blur_and_noise(inception, tmp_path):
    import PIL.ImageFilter
    from conftest import CLOTHING, require

    photos = sorted(require(CLOTHING).rglob("*.jpg"))[::200][:12]
    images = [PIL.Image.open(p).convert("RGB").resize((64, 64), PIL.Image.LANCZOS) for p in photos]
    rng = np.random.RandomState(0)

    def features(pictures):
        array = np.stack([np.asarray(im) for im in pictures]).transpose(0, 3, 1, 2)
        with torch.no_grad():
            return inception(torch.from_numpy(np.ascontiguousarray(array))).numpy()

    def noisy(im, sigma):
        pixels = np.asarray(im).astype(np.float64) + rng.randn(64, 64, 3) * sigma
        return PIL.Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))

    clean = features(images)
    blur = [fid_from_features(clean, features([i.filter(PIL.ImageFilter.GaussianBlur(r)) for i in images]))
            for r in (0.5, 1.5, 4)]
    noise = [fid_from_features(clean, features([noisy(i, s) for i in images])) for s in (4, 16, 48)]
    assert fid_from_features(clean, clean) < 1e-3 * noise[0]
    assert all(x < y for x, y in zip(blur, blur[1:])), blur
    assert all(x < y for x, y in zip(noise, noise[1:])), noise


# ----------------------------------------------------------------------------- calc_metrics.py

def test_calc_metrics_usage_errors_need_no_weights(tmp_path):
    from click.testing import CliRunner

    import calc_metrics
    data = image_folder(tmp_path / "a", np.zeros((2, 3, 8, 8), np.uint8))
    result = CliRunner().invoke(calc_metrics.main, ["--data", str(data), "--metrics", "fid1k"])
    assert result.exit_code == 2 and "fid50k_full" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(calc_metrics.main, ["--data", str(data)])
    assert result.exit_code == 2 and "--reference" in result.output


@pytest.mark.slow
def test_calc_metrics_real_vs_real_and_a_network(inception_file, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import calc_metrics
    from stylegan2.checkpoint import save_checkpoint
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    rng = np.random.RandomState(15)
    a = image_folder(tmp_path / "a", rng.randint(0, 256, (5, 3, 16, 16)).astype(np.uint8))
    b = image_folder(tmp_path / "b", np.repeat(rng.randint(0, 256, (5, 3, 4, 4)), 4, 2).repeat(4, 3).astype(np.uint8))
    common = ["--feature-net", str(inception_file), "--batch", "5"]
    result = CliRunner().invoke(calc_metrics.main, ["--data", str(a), "--reference", str(b), "--metrics",
                                                    "fid_full,kid_full", "--outdir", str(tmp_path / "out"), *common])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("FID ") and float(last.split()[1]) > 1
    line = json.loads((tmp_path / "out" / "metric-fid_full.jsonl").read_text().splitlines()[-1])
    assert line["metric"] == "fid_full" and line["results"]["fid_full"] == pytest.approx(float(last.split()[1]), 1e-3)
    assert "kid_full" in json.loads((tmp_path / "out" / "metric-kid_full.jsonl").read_text())["results"]

    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "network-snapshot-000001.safetensors", G_ema=tiny_generator())
    result = CliRunner().invoke(calc_metrics.main, ["--network", str(run / "network-snapshot-000001.safetensors"),
                                                    "--data", str(a), "--metrics", "fid_full", "--num-gen", "4",
                                                    *common])
    assert result.exit_code == 0, result.output
    line = json.loads((run / "metric-fid_full.jsonl").read_text())  # beside the network: its folder is writable
    assert line["results"]["fid_full"] > 0 and line["num_gen"] == 4


def test_compiled_fakes_give_the_eager_fid_and_calc_metrics_passes_the_switch(recorded_graphs, tmp_path,
                                                                              monkeypatch):
    """compile=True renders the fakes through compiled graphs and gives the eager FID (relative 1e-6: the
    recording backend runs dynamo's traced graph, inductor's numerics are test_compiled.py's); calc_metrics'
    --compile/--no-compile reach compute_metrics as True/False."""
    rng = np.random.RandomState(5)
    dataset = ArrayDataset(rng.randint(0, 256, (12, 3, 16, 16)).astype(np.uint8))
    fids = {}
    for compile_ in (False, True):
        fids[compile_] = compute_metric("fid_full", tiny_generator(), dataset, TinyFeatures(), num_gen=8, batch_size=4,
                                        cache_dir=tmp_path, progress=False, compile=compile_)
        assert bool(recorded_graphs) == compile_
    assert fids[True] == pytest.approx(fids[False], rel=1e-6)

    from click.testing import CliRunner

    import calc_metrics
    from stylegan2.checkpoint import save_checkpoint
    seen = []
    monkeypatch.setattr(calc_metrics, "compute_metrics", lambda *a, compile=None, **k: seen.append(compile) or {"fid_full": 1.0})
    monkeypatch.setattr(calc_metrics, "load_feature_net", lambda *a, **k: TinyFeatures())
    network = tmp_path / "G.safetensors"
    save_checkpoint(network, G_ema=tiny_generator())
    data = image_folder(tmp_path / "a", rng.randint(0, 256, (3, 3, 16, 16)).astype(np.uint8))
    for flags in (["--compile"], ["--no-compile"], []):
        result = CliRunner().invoke(calc_metrics.main, ["--network", str(network), "--data", str(data), "--metrics",
                                                        "fid_full", "--outdir", str(tmp_path / "out"), *flags])
        assert result.exit_code == 0, result.output
    assert seen == [True, False, None]


class Recording(TinyFeatures):
    """Keeps every batch it is shown."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images):
        self.seen.append(images.clone())
        return super().forward(images)


def test_portrait_reals_and_fakes_are_padded_to_a_square_alike(tmp_path):
    """16x12 (HxW) images reach the feature network as 16x16: the image in the centre columns, untouched,
    two columns of mid grey (128) each side, for the reals and for the generator's fakes."""
    rng = np.random.RandomState(3)
    reals = rng.randint(0, 256, (8, 3, 16, 12)).astype(np.uint8)
    G = conftest.tiny_generator(16, 16, seed=1, base_shape=(4, 3))
    net = Recording()
    fid = compute_metric("fid10k_full", G, ArrayDataset(reals, name="portrait"), net, num_gen=8, batch_size=8,
                         cache_dir=tmp_path, progress=False)
    assert np.isfinite(fid)
    real_input, fake_input = net.seen
    for batch in (real_input, fake_input):
        assert batch.shape == (8, 3, 16, 16) and batch.dtype == torch.uint8
        assert (batch[..., :2] == 128).all() and (batch[..., 14:] == 128).all()
    assert torch.equal(real_input[..., 2:14], torch.from_numpy(reals))
    assert (fake_input[..., 2:14] != 128).float().mean() > 0.9  # the fakes' own pixels
    assert compute_metric("fid10k_full", Replay(reals), ArrayDataset(reals, name="portrait"), TinyFeatures(),
                          num_gen=8, batch_size=8, cache_dir=tmp_path, progress=False) == pytest.approx(0, abs=1e-3)


def naive_knn_class(reference, classes, probe, k, skip=None):
    """A plain loop: the k nearest (skipping index `skip`), most votes wins, a tie goes to the nearest tied class."""
    order = [i for i in np.argsort(np.linalg.norm(reference - probe, axis=1), kind="stable") if i != skip][:k]
    votes = [int(classes[i]) for i in order]
    best = max(votes.count(c) for c in set(votes))
    return next(c for c in votes if votes.count(c) == best)


def test_knn_classes_match_a_naive_vote():
    from training.metrics import knn_classes

    rng = np.random.RandomState(11)
    reference, classes, probes = rng.randn(40, 6), rng.randint(0, 4, 40), rng.randn(15, 6)
    for k in (1, 4, 5):
        got = knn_classes(torch.tensor(reference), classes, torch.tensor(probes), k, batch_size=7)
        assert got.tolist() == [naive_knn_class(reference, classes, p, k) for p in probes]
        own = knn_classes(torch.tensor(reference), classes, torch.tensor(reference), k, leave_self_out=True,
                          batch_size=7)
        assert own.tolist() == [naive_knn_class(reference, classes, p, k, skip=i) for i, p in enumerate(reference)]


def test_class_accuracy_by_hand():
    """Reals of class 0 at 0..5 and class 1 at 100..105 (1-d): every real's 5 neighbours share its class (1.0);
    fakes of class 0 at 2, 3 and 102 (2 of 3 right) and of class 1 at 103, 104 (both right): (2/3 + 1) / 2."""
    from training.metrics import class_accuracy

    eye = np.eye(2, dtype=np.float32)
    real = FeatureStats.of(np.r_[np.arange(6), 100 + np.arange(6)][:, None].astype(np.float32), keep_features=True)
    fake = FeatureStats.of(np.array([[2.0], [3.0], [102.0], [103.0], [104.0]], np.float32), keep_features=True,
                           labels=eye[[0, 0, 0, 1, 1]])
    fakes, reals = class_accuracy(real, eye[[0] * 6 + [1] * 6], fake)
    assert reals == 1.0 and abs(fakes - (2 / 3 + 1) / 2) < 1e-12
    with pytest.raises(ValueError, match="one-hot"):
        class_accuracy(real, np.full((12, 2), 0.5, np.float32), fake)
    with pytest.raises(ValueError, match="without a label"):
        class_accuracy(real, eye[[0] * 6 + [1] * 6], FeatureStats.of(np.zeros((3, 1)), keep_features=True))


class ClassColour(torch.nn.Module):
    """A conditional 'generator' drawing a flat image in its class's colour (red, green, blue), or the next
    class's with shift=1."""

    z_dim, c_dim = 4, 3

    def __init__(self, shift=0):
        super().__init__()
        self.shift = shift

    def forward(self, z, c, truncation_psi=1.0, noise_mode="random"):
        colour = torch.roll(torch.eye(3), self.shift, dims=0)[c.argmax(dim=1)]
        return (colour[:, :, None, None] * 2 - 1).expand(len(z), 3, 16, 16)


def test_class_knn_end_to_end_rewards_the_right_class_only(tmp_path):
    rng = np.random.RandomState(12)
    classes = rng.randint(0, 3, 30)
    images = (np.eye(3)[classes][:, :, None, None] * 230 + rng.randint(0, 20, (30, 3, 16, 16))).astype(np.uint8)
    dataset = ArrayDataset(images, np.eye(3, dtype=np.float32)[classes])
    kwargs = dict(num_gen=24, batch_size=8, cache_dir=tmp_path, progress=False)
    right = compute_metrics(["class_knn5_full"], ClassColour(), dataset, TinyFeatures(), **kwargs)
    assert right == {"class_knn5_full": 1.0, "class_knn5_full_reals": 1.0}
    wrong = compute_metrics(["class_knn5_full", "fid_full"], ClassColour(shift=1), dataset, TinyFeatures(), **kwargs)
    assert wrong["class_knn5_full"] == 0.0 and list(wrong) == ["class_knn5_full", "class_knn5_full_reals", "fid_full"]
    with pytest.raises(ValueError, match="conditional"):
        compute_metrics(["class_knn5_full"], Replay(images), ArrayDataset(images), TinyFeatures(), **kwargs)
    with pytest.raises(ValueError, match="measures a generator"):
        compare_halves(["class_knn5_full"], dataset, TinyFeatures(), cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="use compute_metrics"):
        compute_metric("class_knn5_full", ClassColour(), dataset, TinyFeatures(), **kwargs)


def test_fakes_can_be_truncated_towards_their_class(tmp_path):
    """truncation_centre='class' renders map_to_w's codes: the features equal those of the same z and labels
    drawn by hand, and differ from the global average's."""
    from stylegan2.render import map_to_w
    from training.metrics import generated_feature_stats

    rng = np.random.RandomState(13)
    labels = np.eye(3, dtype=np.float32)[rng.randint(0, 3, 10)]
    dataset = ArrayDataset(rng.randint(0, 256, (10, 3, 16, 16)).astype(np.uint8), labels)
    G, net = tiny_generator(c_dim=3), TinyFeatures()
    stats = generated_feature_stats(G, dataset, net, 6, batch_size=6, keep_features=True, truncation_psi=0.5,
                                    progress=False, truncation_centre="class")
    torch.manual_seed(0)
    z = torch.randn(6, G.z_dim)
    c = labels[np.random.RandomState(0).randint(len(labels), size=6)]
    with torch.no_grad():
        img = G.synthesis(map_to_w(G, z, torch.from_numpy(c), 0.5, centre="class"), noise_mode="random")
        expected = net((img * 127.5 + 128).clamp(0, 255).to(torch.uint8))
    np.testing.assert_allclose(stats.features, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stats.labels, c)
    plain = generated_feature_stats(G, dataset, net, 6, batch_size=6, keep_features=True, truncation_psi=0.5,
                                    progress=False)
    assert not np.allclose(plain.features, stats.features)
