"""Fitting directions: PCA vs numpy, σ, streaming, memory, planted direction, SeFa, layer groups."""
import tracemalloc

import numpy as np
import pytest
import torch

import conftest
import ganspace.fit as fit_module
from ganspace.components import Components, load_components
from ganspace.fit import FINDERS, WSampler, find, measure_sigma
from ganspace.layers import layer_groups, parse_layers
from ganspace.sampling import CLASS_MIX, iter_w
from ganspace.sefa import affine_layer_index


def fit(G, num_samples, k, estimator="pca", batch_size=10_000, seed=0, class_idx=CLASS_MIX, **options):
    """A PCA-family fit through the one finder interface."""
    return find(estimator, G, k, WSampler(G, batch_size, seed, class_idx), num_samples=num_samples, **options)


def tiny_generator(c_dim=0, seed=0):
    return conftest.tiny_generator(16, 32, c_dim, seed=seed, channel_max=32, num_fp16_res=0, conv_clamp=None)


class PlantedMapping(torch.nn.Module):
    """w = 0.3·z[:w_dim] + 4·z[-1]·u: covariance 0.09 I + 16 u uᵀ, so u is component 0."""

    def __init__(self, w_dim=16, num_ws=6):
        super().__init__()
        self.w_dim, self.num_ws = w_dim, num_ws
        self.u = torch.from_numpy(np.random.RandomState(5).randn(w_dim)).float()
        self.u /= self.u.norm()

    def forward(self, z, c, truncation_psi=1.0):
        w = 0.3 * z[:, :self.w_dim] + 4 * z[:, -1:] * self.u
        return w[:, None].repeat(1, self.num_ws, 1)


class PlantedGenerator:
    def __init__(self):
        self.mapping = PlantedMapping()
        self.w_dim, self.num_ws, self.z_dim, self.c_dim = 16, 6, 17, 0


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


def all_samples(G, n, seed=0, class_idx="mix"):
    return np.concatenate(list(iter_w(G, n, 10_000, seed, class_idx)))


def test_pca_matches_numpy_svd_on_the_same_samples(G):
    comps = fit(G, 5000, 10, batch_size=700, stdev_samples=1000, seed=3)
    x = all_samples(G, 5000, seed=3)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(comps.comp @ vt[:10].T), np.eye(10), atol=2e-4)   # equal up to sign
    np.testing.assert_allclose(comps.comp @ comps.comp.T, np.eye(10), atol=1e-5)        # orthonormal
    np.testing.assert_allclose(comps.var_ratio, (s ** 2 / (s ** 2).sum())[:10], rtol=1e-4)
    np.testing.assert_allclose(comps.mean, x.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert comps.meta["num_samples"] == 5000 and comps.meta["num_ws"] == G.num_ws


def test_sigma_is_the_std_of_projections_of_fresh_samples(G):
    comps = fit(G, 4000, 5, batch_size=1000, stdev_samples=3000, seed=1)
    fresh = all_samples(G, 3000, seed=[1, 2])
    fitted = all_samples(G, 3000, seed=1)
    assert not np.allclose(fresh[:10], fitted[:10])                     # really other samples
    projections = (fresh - comps.mean.astype(np.float64)) @ comps.comp.T.astype(np.float64)
    np.testing.assert_allclose(comps.stdev, projections.std(axis=0, ddof=1), rtol=1e-4)
    # and close to sqrt(eigenvalue) of the fitted covariance, up to sampling noise
    eigvals = np.linalg.eigvalsh(np.cov(fitted.T))[::-1][:5]
    np.testing.assert_allclose(comps.stdev, np.sqrt(eigvals), rtol=0.1)


def test_streaming_fit_equals_in_memory_fit(G):
    one_batch = fit(G, 2000, 8, batch_size=2000, stdev_samples=300)
    many_batches = fit(G, 2000, 8, batch_size=137, stdev_samples=300)
    np.testing.assert_allclose(one_batch.comp, many_batches.comp, atol=1e-5)
    np.testing.assert_allclose(one_batch.var_ratio, many_batches.var_ratio, rtol=1e-5)
    ipca = fit(G, 2000, 8, estimator="ipca", batch_size=665, stdev_samples=300)   # last batch: 5 rows
    np.testing.assert_allclose(np.abs(ipca.comp @ one_batch.comp.T)[:3, :3], np.eye(3), atol=1e-3)
    np.testing.assert_allclose(ipca.mean, one_batch.mean, atol=1e-5)                         # all 2000 were used


@pytest.mark.parametrize("estimator", ["pca", "ipca"])
def test_memory_stays_flat_in_the_number_of_samples(monkeypatch, estimator):
    """Batches are handed over as fresh numpy arrays (seen by tracemalloc): keeping them would show."""
    real_iter_w = fit_module.iter_w
    monkeypatch.setattr(fit_module, "iter_w", lambda *a, **k: (np.array(b) for b in real_iter_w(*a, **k)))
    G = PlantedGenerator()

    def peak(n):
        tracemalloc.start()
        fit(G, n, 4, estimator=estimator, batch_size=500, stdev_samples=500)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(2_000), peak(40_000)    # the samples alone: 0.26 MB vs 5.1 MB
    assert large < 1.3 * small + 200_000, (small, large)


@pytest.mark.parametrize("estimator", ["pca", "ipca"])
def test_planted_direction_is_recovered_as_component_0(estimator):
    G = PlantedGenerator()
    comps = fit(G, 20_000, 3, estimator=estimator, batch_size=2000, stdev_samples=5000)
    u = G.mapping.u.double().numpy()
    assert abs(comps.comp[0] @ u) > 0.999
    expected_ratio = (16 + 0.09) / (16 + 0.09 * 16)
    assert comps.var_ratio[0] == pytest.approx(expected_ratio, rel=0.03)
    assert comps.stdev[0] == pytest.approx(np.sqrt(16.09), rel=0.03)


@pytest.mark.parametrize("estimator", ["sparsepca", "ica"])
def test_subsample_estimators_give_unit_directions_sorted_by_variance(estimator):
    G = PlantedGenerator()
    comps = fit(G, 50_000, 3, estimator=estimator, batch_size=1000, subsample=3000, stdev_samples=500)
    assert comps.meta["num_samples"] == 3000
    np.testing.assert_allclose(np.linalg.norm(comps.comp, axis=1), 1, atol=1e-5)
    assert np.all(np.diff(comps.var_ratio) <= 1e-7)
    assert abs(comps.comp[0] @ G.mapping.u.numpy()) > 0.95


def test_fit_is_deterministic_and_the_file_round_trips(G, tmp_path):
    a = fit(G, 2000, 4, batch_size=500, stdev_samples=500, network_sha256="ab" * 32)
    b = fit(G, 2000, 4, batch_size=500, stdev_samples=500, network_sha256="ab" * 32)
    np.testing.assert_array_equal(a.comp, b.comp)
    a.save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as raw:       # GANSpace's key names
        assert {"lat_comp", "lat_mean", "lat_stdev", "var_ratio"} <= set(raw.files)
    back = load_components(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.comp, a.comp)
    np.testing.assert_array_equal(back.stdev, a.stdev)
    assert back.meta["network_sha256"] == "ab" * 32 and back.meta["estimator"] == "pca"


def test_measure_sigma_of_any_vector_matches_the_planted_spread():
    """w = 0.3 z + 4 z_last u: σ along u is sqrt(0.3² + 4²) and 0.3 across it, whatever origin is used."""
    G = PlantedGenerator()
    u = G.mapping.u.double().numpy()
    across = np.random.RandomState(1).randn(16)
    across -= (across @ u) * u
    across /= np.linalg.norm(across)
    sampler = WSampler(G, batch_size=2000)
    stdev, mean = measure_sigma(sampler, u, None, 20_000)           # one vector: one σ
    assert stdev.shape == (1,) and stdev[0] == pytest.approx(np.hypot(0.3, 4), rel=0.03)
    both, _ = measure_sigma(sampler, np.stack([u, across]), np.ones(16), 20_000)
    np.testing.assert_allclose(both, [np.hypot(0.3, 4), 0.3], rtol=0.03)
    np.testing.assert_allclose(mean, 0, atol=0.1)


@pytest.mark.filterwarnings("ignore:FastICA did not converge")  # 1000 samples are enough for this test
@pytest.mark.parametrize("method", sorted(FINDERS))
def test_every_finder_gives_unit_directions_with_sigma_and_says_what_its_scores_mean(G, method, tmp_path):
    comps = find(method, G, 3, WSampler(G, batch_size=500), num_samples=1000, subsample=1000, stdev_samples=300)
    assert comps.comp.shape == (3, G.w_dim) and comps.meta["estimator"] == method and np.all(comps.stdev > 0)
    np.testing.assert_allclose(np.linalg.norm(comps.comp, axis=1), 1, atol=1e-5)
    comps.save(tmp_path / "c.npz")
    back = load_components(tmp_path / "c.npz")
    assert ("singular values" if method == "sefa" else "variance") in back.score_meaning
    assert back.score_label(0).endswith("of the style affines' energy" if method == "sefa" else "of variance")


def test_ganspace_style_file_with_k_1_wdim_components_loads(tmp_path):
    comp = np.eye(4, dtype=np.float32)[:, None, :]     # GANSpace dumps [K, 1, w_dim]
    np.savez(tmp_path / "g.npz", lat_comp=comp, lat_mean=np.zeros(4), lat_stdev=np.ones(4), var_ratio=np.ones(4) / 4)
    assert load_components(tmp_path / "g.npz").comp.shape == (4, 4)
    with pytest.raises(ValueError, match="inconsistent"):
        Components(np.eye(4), np.zeros(3), np.ones(4), np.ones(4))


def test_conditional_fit_for_one_class_and_for_the_mix():
    G = tiny_generator(c_dim=3)
    z = torch.from_numpy(np.random.RandomState(0).randn(600, 32)).float()
    with torch.no_grad():
        w_class1 = G.mapping(z, torch.eye(3)[[1] * 600])[:, 0].double().numpy()
        classes = np.random.RandomState([0, 1]).randint(0, 3, size=600)
        w_mix = G.mapping(z, torch.eye(3)[classes])[:, 0].double().numpy()
    one = fit(G, 600, 3, batch_size=200, stdev_samples=200, class_idx=1)
    mix = fit(G, 600, 3, batch_size=200, stdev_samples=200)
    np.testing.assert_allclose(one.mean, w_class1.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mix.mean, w_mix.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert one.meta["class_idx"] == 1 and mix.meta["class_idx"] == "mix"


def test_sefa_equals_svd_of_the_row_normalised_affines(G):
    names = ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.conv1", "b16.torgb"]
    weights = []
    for name in names:
        block, layer = name.split(".")
        affine = getattr(getattr(G.synthesis, block), layer).affine
        weights.append(affine.weight.detach().double().numpy() * affine.weight_gain)
    a = np.concatenate(weights)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    comps = find("sefa", G, 6, WSampler(G), stdev_samples=500)
    np.testing.assert_allclose(np.abs(comps.comp @ vt[:6].T), np.eye(6), atol=1e-5)
    np.testing.assert_allclose(comps.var_ratio, (s ** 2 / (s ** 2).sum())[:6], rtol=1e-5)
    np.testing.assert_allclose(comps.mean, G.mapping.w_avg.numpy())
    # layers 2-3 are fed to b8.conv1 and b8.torgb/b16.conv0 only
    sub = np.concatenate(weights[3:6])
    sub /= np.linalg.norm(sub, axis=1, keepdims=True)
    _, _, vt_sub = np.linalg.svd(sub, full_matrices=False)
    part = find("sefa", G, 2, WSampler(G), layers=(2, 3), stdev_samples=200)
    np.testing.assert_allclose(np.abs(part.comp @ vt_sub[:2].T), np.eye(2), atol=1e-5)


def test_affine_layer_indices_follow_the_order_of_use():
    assert [affine_layer_index(4, "conv1"), affine_layer_index(4, "torgb"), affine_layer_index(8, "conv0"),
            affine_layer_index(8, "conv1"), affine_layer_index(8, "torgb"), affine_layer_index(16, "conv0")] \
        == [0, 1, 1, 2, 3, 3]


@pytest.mark.parametrize("num_ws, expected", [
    (18, {"coarse": (0, 3), "middle": (4, 7), "fine": (8, 17)}),   # 1024 px: GANSpace's split by resolution
    (14, {"coarse": (0, 3), "middle": (4, 7), "fine": (8, 13)}),   # 256 px
    (10, {"coarse": (0, 3), "middle": (4, 7), "fine": (8, 9)}),    # 64 px
    (8, {"coarse": (0, 3), "middle": (4, 5), "fine": (6, 7)}),     # 32 px: levels split in thirds
    (6, {"coarse": (0, 1), "middle": (2, 3), "fine": (4, 5)}),     # 16 px
])
def test_layer_groups(num_ws, expected):
    groups = layer_groups(num_ws)
    assert groups == {"all": (0, num_ws - 1), **expected}
    covered = [i for g in ("coarse", "middle", "fine") for i in range(groups[g][0], groups[g][1] + 1)]
    assert covered == list(range(num_ws))


def test_parse_layers_is_inclusive_and_checked():
    assert parse_layers("2-5", 14) == (2, 5)
    assert parse_layers(" 3 ", 14) == (3, 3)
    assert parse_layers("Coarse", 14) == (0, 3)
    assert parse_layers([2, 5], 14) == parse_layers((2, 5), 14) == (2, 5)
    assert parse_layers(7, 14) == (7, 7)
    for bad in ("5-2", "14", "0-14", "abc", [1], True, "1-2-3"):
        with pytest.raises(ValueError):
            parse_layers(bad, 14)
