"""projection/ and project.py: photo -> W / W+ -> the same pixels in generate.py; pivotal tuning; LPIPS."""
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import conftest
import generate
import project
from projection import latent
from projection.distance import (LPIPSError, VGG16Features, make_distance, pyramid_mse,
                                 vgg16_lpips_from_tensors)
from projection.projector import ProjectOptions, learning_rate, noise_regularization, project as run_projection
from projection.projector import w_statistics
from projection.target import TargetError, read_target
from projection.tuning import TuneOptions, save_tuned, tune
from fashion_models import load_model
from stylegan2.checkpoint import save_checkpoint
from stylegan2.render import seed_to_w, synthesize_uint8, to_uint8
from conftest import assert_differs_beyond_rounding, assert_within_one_level

pytestmark = pytest.mark.usefixtures("one_thread")
RES = 16
FAST = dict(w_avg_samples=2000)


def tiny_generator(c_dim: int = 0, noise_strength: float = 0.2):
    """A random 16 px generator whose noise inputs matter (a fresh one has noise_strength 0)."""
    return conftest.tiny_generator(RES, 32, c_dim, seed=1, channel_max=32, noise_strength=noise_strength
                                   ).requires_grad_(False)


def rendered(G, ws) -> torch.Tensor:
    with torch.no_grad():
        return G.synthesis(ws, noise_mode="const")


def mse(a, b) -> float:
    return float((a - b).square().mean())


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


@pytest.fixture(scope="module")
def G_silent():
    """Noise inputs off, so that the code alone decides the image and a known code can be recovered."""
    return tiny_generator(noise_strength=0.0)


@pytest.fixture(scope="module")
def known(G_silent):
    """A target G drew itself from the W of seed 5 (ψ 0.7)."""
    ws = seed_to_w(G_silent, 5, truncation_psi=0.7)
    return ws, rendered(G_silent, ws)


# ----------------------------------------------------------------------------- the method's pieces

def test_learning_rate_schedule_is_the_official_ramp():
    o = ProjectOptions()
    assert learning_rate(0.0, o) == 0.0                                        # warm-up starts at 0
    assert learning_rate(0.025, o) == pytest.approx(0.05)                       # half-way up
    assert learning_rate(0.5, o) == pytest.approx(0.1)                          # plateau
    assert learning_rate(0.875, o) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.5 * math.pi)))
    assert learning_rate(0.999, o) < 1e-5                                       # cosine down to ~0


def test_noise_regularization_by_hand():
    ones = torch.ones(8, 8)                         # one scale: both shifted products average to 1
    assert float(noise_regularization([ones])) == pytest.approx(2.0)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2.0 - 1  # ±1 checkerboard
    # 16 px: each shift multiplies neighbours of opposite sign (mean -1, squared 1); pooled to 8 px it is all 0
    assert float(noise_regularization([checker])) == pytest.approx(2.0)
    assert float(noise_regularization([ones, checker])) == pytest.approx(4.0)
    torch.manual_seed(0)
    white = torch.randn(64, 64)
    assert float(noise_regularization([white])) < 0.01


def test_w_statistics_match_a_float64_reference(G):
    w_avg, w_std = w_statistics(G, samples=500, seed=9)
    z = np.random.RandomState(9).randn(500, G.z_dim)
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z).float(), None)[:, 0].double().numpy()
    assert np.allclose(w_avg[0, 0].numpy(), w.mean(axis=0), atol=1e-5)
    assert w_std == pytest.approx(np.sqrt(((w - w.mean(axis=0)) ** 2).sum() / 500), rel=1e-5)


def test_pyramid_mse_averages_the_levels():
    torch.manual_seed(0)
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    by_hand = (((a - b) ** 2).mean() + ((a.reshape(1, 3, 8, 2, 8, 2).mean(dim=[3, 5])
                                         - b.reshape(1, 3, 8, 2, 8, 2).mean(dim=[3, 5])) ** 2).mean()) / 2
    assert float(pyramid_mse(a, b)[0]) == pytest.approx(float(by_hand), rel=1e-5)


# ----------------------------------------------------------------------------- projection

@pytest.mark.parametrize("w_plus", [False, True])
def test_projection_recovers_an_image_g_drew_from_a_known_w(G_silent, known, w_plus):
    G = G_silent
    ws_true, target = known
    start = mse(rendered(G, w_statistics(G, samples=2000)[0].repeat(1, G.num_ws, 1)), target)
    result = run_projection(G, target, make_distance(target), ProjectOptions(num_steps=300, w_plus=w_plus, **FAST))
    found = mse(rendered(result_generator(G, result), result.ws.unsqueeze(0)), target)
    # w_avg's image is far off; the projection lands within a small share of that distance
    assert start > 0.05
    assert found < (0.01 if w_plus else 0.001) and found < start / 30, (found, start)
    assert result.steps == 300 and not result.interrupted
    rows_equal = bool(torch.allclose(result.ws, result.ws[:1].expand_as(result.ws)))
    assert rows_equal is (not w_plus)                     # W: one w repeated; W+: one w per layer


def result_generator(G, result):
    return latent.ProjectedW(w=result.ws.unsqueeze(0).numpy(), noise={k: v.numpy() for k, v in result.noise.items()}
                             ).generator(G)


def test_projection_does_not_touch_g_and_keeps_the_best_code_on_ctrl_c(G, known):
    """(G has live noise inputs: the recorded distance must include the optimised noise maps.)"""
    _, target = known
    before = {k: v.clone() for k, v in G.state_dict().items()}
    seen = []

    def distance(images):
        if len(seen) == 12:
            raise KeyboardInterrupt
        d = pyramid_mse(images, target)
        seen.append(float(d.detach().sum()))
        return d

    result = run_projection(G, target, distance, ProjectOptions(num_steps=100, **FAST))
    assert result.interrupted and result.steps == 12
    assert result.distance == pytest.approx(min(seen))
    # the returned code really renders at the recorded distance
    assert float(pyramid_mse(rendered(result_generator(G, result), result.ws.unsqueeze(0)), target)[0]) \
        == pytest.approx(result.distance, rel=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())


def test_a_compiled_projection_follows_the_eager_one(G, known, recorded_graphs):
    """compile=True runs every step (forward, loss, backward to w and the noise maps) through dynamo's graphs
    and finds the eager code and noise maps: gradients reach both through the compiled step. (~8 s on 2 busy
    cores: dynamo traces the forward and AOTAutograd the backward.)"""
    _, target = known
    options = ProjectOptions(num_steps=15, **FAST)
    eager = run_projection(G, target, make_distance(target), options)
    assert not recorded_graphs  # off by default (the studio's projections stay eager)
    fast = run_projection(G, target, make_distance(target), options, compile=True)
    assert recorded_graphs
    torch.testing.assert_close(fast.ws, eager.ws, rtol=1e-4, atol=1e-5)
    assert fast.distance == pytest.approx(eager.distance, rel=1e-4)
    for name, value in eager.noise.items():
        torch.testing.assert_close(fast.noise[name], value, rtol=1e-4, atol=1e-5)


def test_a_failing_projector_compile_falls_back_to_eager_with_one_line(G, known, monkeypatch, capsys):
    from stylegan2 import compiled

    def failing_backend(gm, example_inputs):
        raise RuntimeError("simulated: no compiler\nsecond line")

    if compiled.missing_toolchain("cpu"):
        pytest.skip(compiled.missing_toolchain("cpu"))
    monkeypatch.setattr(compiled, "BACKEND", failing_backend)
    _, target = known
    options = ProjectOptions(num_steps=5, **FAST)
    eager = run_projection(G, target, make_distance(target), options)
    capsys.readouterr()
    fast = run_projection(G, target, make_distance(target), options, compile=True)
    assert capsys.readouterr().err.strip().splitlines() == [
        "note: compiling the projector's step failed (RuntimeError: simulated: no compiler); optimising without "
        "compilation"]
    assert torch.equal(fast.ws, eager.ws) and fast.distance == eager.distance


def test_conditional_projection_starts_at_the_class_mean():
    Gc = tiny_generator(c_dim=3)
    w0, _ = w_statistics(Gc, class_idx=0, samples=500)
    w2, _ = w_statistics(Gc, class_idx=2, samples=500)
    assert not torch.allclose(w0, w2)
    target = rendered(Gc, seed_to_w(Gc, 1, class_idx=2))
    result = run_projection(Gc, target, make_distance(target), ProjectOptions(num_steps=1, optimize_noise=False,
                                                                              w_avg_samples=500), class_idx=2)
    assert torch.allclose(result.ws[0], w2[0, 0], atol=0.05 * float(w2.norm()))


# ----------------------------------------------------------------------------- files and the CLI

@pytest.fixture(scope="module")
def network_file(G, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("net") / "tiny.safetensors", G_ema=G)


def test_project_cli_writes_the_official_file_that_generate_renders_to_the_same_pixels(G, known, network_file,
                                                                                       tmp_path):
    _, target = known
    Image.fromarray(to_uint8(target)[0]).resize((48, 64)).save(tmp_path / "photo.png")   # not square: padded
    out = tmp_path / "out"
    result = CliRunner().invoke(project.main, ["--network", str(network_file), "--target", str(tmp_path / "photo.png"),
                                               "--outdir", str(out), "--num-steps", "40", "--save-video", "true"])
    assert result.exit_code == 0, result.output
    for name in ("target.png", "proj.png", "projected_w.npz", "proj.gif"):
        assert (out / name).is_file(), name
    assert Image.open(out / "target.png").size == (RES, RES)
    gif = Image.open(out / "proj.gif")
    assert gif.n_frames > 10 and gif.size == (2 * RES, RES)
    with np.load(out / "projected_w.npz", allow_pickle=False) as npz:   # the official layout
        assert npz["w"].shape == (1, G.num_ws, G.w_dim) and npz["w"].dtype == np.float32
        assert str(npz["network_sha256"]) == load_model(network_file).sha256
    result = CliRunner().invoke(generate.main, ["--network", str(network_file), "--projected-w",
                                                str(out / "projected_w.npz"), "--outdir", str(tmp_path / "gen")])
    assert result.exit_code == 0, result.output
    proj = np.asarray(Image.open(out / "proj.png"))
    assert_within_one_level(np.asarray(Image.open(tmp_path / "gen" / "proj00.png")), proj)
    # the saved noise maps are what makes that true: 'w' alone (as the official tools read it) draws other pixels
    np.savez(tmp_path / "w_only.npz", w=np.load(out / "projected_w.npz")["w"])
    official_view = synthesize_uint8(G, latent.load(tmp_path / "w_only.npz").ws(G))[0]
    assert_differs_beyond_rounding(official_view, proj)


def test_project_cli_tune_writes_a_network_that_redraws_proj_tuned(known, network_file, tmp_path):
    _, target = known
    Image.fromarray(to_uint8(target)[0]).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(project.main, ["--network", str(network_file), "--target", str(tmp_path / "photo.png"),
                                               "--outdir", str(out), "--num-steps", "5", "--w-plus", "--tune",
                                               "--tune-steps", "5"])
    assert result.exit_code == 0, result.output
    tuned = load_model(out / "tuned.safetensors")
    assert tuned.meta["tuned_from"]["network_sha256"] == load_model(network_file).sha256
    result = CliRunner().invoke(generate.main, ["--network", str(out / "tuned.safetensors"), "--projected-w",
                                                str(out / "projected_w.npz"), "--outdir", str(tmp_path / "gen")])
    assert result.exit_code == 0, result.output
    assert_within_one_level(np.asarray(Image.open(tmp_path / "gen" / "proj00.png")),
                            np.asarray(Image.open(out / "proj_tuned.png")))


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"not an image at all", "not an image"),
                                              (None, "cannot read")])
def test_unreadable_photos_get_a_clear_message(network_file, tmp_path, content, message):
    photo = tmp_path / "photo.jpg"
    if content is not None:
        photo.write_bytes(content)
    result = CliRunner().invoke(project.main, ["--network", str(network_file), "--target", str(photo),
                                               "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "projected_w.npz").exists()


def test_conditional_network_needs_a_class(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", G_ema=tiny_generator(c_dim=3),
                           meta={"class_names": ["dress", "hat", "shirt"]})
    Image.new("RGB", (20, 20), (200, 10, 10)).save(tmp_path / "p.png")
    result = CliRunner().invoke(project.main, ["--network", str(path), "--target", str(tmp_path / "p.png"),
                                               "--outdir", str(tmp_path / "o")])
    assert result.exit_code == 2 and "dress, hat, shirt" in result.output
    result = CliRunner().invoke(project.main, ["--network", str(path), "--target", str(tmp_path / "p.png"),
                                               "--outdir", str(tmp_path / "o"), "--class", "shirt", "--num-steps", "2"])
    assert result.exit_code == 0, result.output
    assert int(latent.load(tmp_path / "o" / "projected_w.npz").meta["class_idx"]) == 2


def test_read_target_frames_like_the_dataset_tool(tmp_path):
    from fashion_data.framing import frame_image

    rng = np.random.RandomState(0)
    photo = Image.fromarray(rng.randint(0, 255, (50, 30, 3), np.uint8))
    photo.save(tmp_path / "p.png")
    target = read_target(tmp_path / "p.png", RES)
    expected = np.asarray(frame_image(photo, RES, "pad"))
    assert np.array_equal(np.asarray(target.image), expected)
    assert torch.allclose(target.tensor[0].permute(1, 2, 0), torch.from_numpy(expected / 127.5 - 1).float(), atol=1e-6)
    # the target's value sits in the middle of the pixel level generate.py would write for it
    assert np.array_equal(to_uint8(target.tensor)[0], expected)
    with pytest.raises(TargetError):
        read_target(tmp_path / "p.png", RES, channels=4)


def test_latent_file_refuses_pickles_and_wrong_shapes(G, tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "obj.npz", w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(latent.LatentError):
        latent.load(tmp_path / "obj.npz")
    np.savez(tmp_path / "now.npz", x=np.zeros(3))
    with pytest.raises(latent.LatentError, match="no 'w'"):
        latent.load(tmp_path / "now.npz")
    bad = latent.ProjectedW(w=np.zeros((1, G.num_ws, G.w_dim), np.float32), noise={"b4.conv1.noise_const": np.zeros((8, 8))})
    with pytest.raises(latent.LatentError, match="shape"):
        bad.generator(G)


# ----------------------------------------------------------------------------- pivotal tuning

def test_tune_lowers_the_distance_and_the_tuned_network_opens_with_its_parents_directions(G, tmp_path):
    from fashion_models import companion_files
    from ganspace.components import Components
    from ganspace.directions import load_directions

    parent_path = save_checkpoint(tmp_path / "parent" / "network.safetensors", G_ema=G)
    parent = load_model(parent_path)
    rng = np.random.RandomState(0)
    Components(np.linalg.qr(rng.randn(G.w_dim, 3))[0].T, np.zeros(G.w_dim), np.ones(3), np.full(3, 1 / 3),
               {"num_ws": int(G.num_ws)}).save(tmp_path / "parent" / "components.npz")
    (tmp_path / "parent" / "directions.yaml").write_text(
        f"network_sha256: {parent.sha256}\ncomponents: components.npz\ndirections:\n"
        "  - name: sleeves\n    component: 1\n    layers: 0-2\n")

    target = rendered(tiny_generator(noise_strength=0.0), seed_to_w(G, 11))   # another network's image
    torch.manual_seed(3)
    target = (target + 0.3 * torch.randn_like(target)).clamp(-1, 1)        # and noise: out of G's reach
    distance = make_distance(target)
    found = run_projection(G, target, distance, ProjectOptions(num_steps=60, **FAST))
    tuned = tune(G, found.ws, found.noise, distance, TuneOptions(num_steps=40, learning_rate=3e-3))
    assert tuned.distance_before == pytest.approx(found.distance, rel=1e-4)
    assert tuned.distance_after < 0.7 * tuned.distance_before

    path = save_tuned(tmp_path / "out" / "tuned.safetensors", tuned, parent, "ab" * 32, TuneOptions())
    again = load_model(path)
    assert_within_one_level(synthesize_uint8(again.G_ema, found.ws.unsqueeze(0)),
                            synthesize_uint8(tuned.G, found.ws.unsqueeze(0)))
    assert again.meta["tuned_from"]["network_sha256"] == parent.sha256
    assert again.meta["tuned_from"]["target_sha256"] == "ab" * 32
    # the mapping is the parent's, so W, and the parent's directions, mean the same on the tuned network
    assert all(torch.equal(a, b) for a, b in zip(again.G_ema.mapping.state_dict().values(),
                                                 G.mapping.state_dict().values()))
    directions_path, _ = companion_files(path)
    assert directions_path == tmp_path / "out" / "directions.yaml"
    theirs = load_directions(tmp_path / "parent" / "directions.yaml", network_sha256=parent.sha256)
    ours = load_directions(directions_path, network_sha256=again.sha256)   # made for the tuned file
    assert [d.name for d in ours.directions] == ["sleeves"]
    assert np.allclose(ours.directions[0].vector, theirs.directions[0].vector)
    assert ours.directions[0].layers == (0, 2)
    # and the studio, opened as `python -m editor --network out/tuned.safetensors` opens it, has the slider
    from editor.network import load_studio_network
    from editor.studio import Studio

    loaded = load_studio_network(str(path))
    studio = Studio(loaded, *companion_files(loaded.source), labels_path=tmp_path / "labels.yaml")
    assert [d.name for d in studio.directions] == ["sleeves"]


# ----------------------------------------------------------------------------- LPIPS from a supplied file

TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def lpips_state(seed=0) -> dict:
    """A random state dict in the layout of torchvision's VGG16 + LPIPS's lin layers (with a prefix)."""
    torch.manual_seed(seed)
    net = VGG16Features()
    state = {}
    for idx, conv in zip(TORCHVISION_CONV_INDICES, net.convs):
        state[f"net.features.{idx}.weight"] = conv.weight.detach().clone() * 2
        state[f"net.features.{idx}.bias"] = torch.randn(conv.bias.shape) * 0.1
    state["net.classifier.0.weight"] = torch.randn(10, 20)       # ignored
    for i, c in enumerate((64, 128, 256, 512, 512)):
        state[f"lin{i}.model.1.weight"] = torch.rand(1, c, 1, 1)
    return state


def lpips_by_hand(state, a, b) -> float:
    """LPIPS in float64 straight from the tensors: scaling, convs, 4 max-pools, 5 taps, unit-normalise, weights."""
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).reshape(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).reshape(1, 3, 1, 1)
    feats = []
    for x in (a.double(), b.double()):
        x = (x - shift) / scale
        taps = []
        for n, idx in enumerate(TORCHVISION_CONV_INDICES):
            x = torch.relu(torch.nn.functional.conv2d(x, state[f"net.features.{idx}.weight"].double(),
                                                      state[f"net.features.{idx}.bias"].double(), padding=1))
            if n in (1, 3, 6, 9, 12):
                taps.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
            if n in (1, 3, 6, 9):
                x = torch.nn.functional.max_pool2d(x, 2)
        feats.append(taps)
    total = 0.0
    for i, (fa, fb) in enumerate(zip(*feats)):
        w = state[f"lin{i}.model.1.weight"].double().reshape(1, -1, 1, 1)
        total += float(((fa - fb).square() * w).sum(dim=1).mean())
    return total


def test_lpips_loads_a_supplied_state_dict_and_matches_the_formula(tmp_path):
    from projection.distance import load_lpips

    state = lpips_state()
    torch.save(state, tmp_path / "lpips.pth")
    net, weights = load_lpips(tmp_path / "lpips.pth")
    torch.manual_seed(1)
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    dist = make_distance(a, lpips=tmp_path / "lpips.pth")
    assert dist.name == "LPIPS (VGG16)"
    assert float(dist(b)[0]) == pytest.approx(lpips_by_hand(state, a, b), rel=1e-4)
    assert float(dist(a)[0]) == pytest.approx(0.0, abs=1e-6)
    grey = make_distance(a[:, :1], lpips=tmp_path / "lpips.pth")   # greyscale networks: the channel repeated
    assert float(grey(b[:, :1])[0]) == pytest.approx(lpips_by_hand(state, a[:, :1].repeat(1, 3, 1, 1),
                                                                   b[:, :1].repeat(1, 3, 1, 1)), rel=1e-4)
    # torchvision's plain VGG16 file (no lin layers): unweighted features
    plain = {k: v for k, v in state.items() if not k.startswith("lin")}
    assert vgg16_lpips_from_tensors(plain)[1] is None
    with pytest.raises(LPIPSError, match="13"):
        vgg16_lpips_from_tensors({k: v for k, v in plain.items() if "features.28." not in k})


def test_lpips_file_with_code_in_it_is_refused_without_running_it(tmp_path, capsys):
    from projection.distance import load_lpips

    torch.save({"w": torch.zeros(1), "evil": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(LPIPSError, match="plain state dict"):
        load_lpips(tmp_path / "evil.pth")
    assert "must never run" not in capsys.readouterr().out
    with pytest.raises(LPIPSError, match="not found"):
        load_lpips(tmp_path / "missing.pth")


def test_inception_distance_is_zero_on_itself_symmetric_and_sees_shifts_and_blur_more_than_noise(inception):
    """The real FID Inception-v3 (skips without its weights; ~3 s: five 299 px images through mixed_2)."""
    from projection.distance import InceptionFeatures

    rng = torch.Generator().manual_seed(0)
    a = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=rng), size=32, mode="bilinear") * 2 - 1
    noisy = (a + 0.02 * torch.randn(a.shape, generator=rng)).clamp(-1, 1)
    shifted = torch.roll(a, 4, dims=3)
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.avg_pool2d(a, 5, 1, 2, count_include_pad=False),
                                             5, 1, 2, count_include_pad=False)
    with torch.no_grad():
        to_a = make_distance(a, inception=inception)
        assert to_a.name.startswith("Inception")
        assert abs(float(to_a(a)[0])) < 1e-6
        assert float(to_a(shifted)[0]) == pytest.approx(float(make_distance(shifted, inception=inception)(a)[0]),
                                                        rel=1e-4)
        small = float(to_a(noisy)[0])
        assert 0 < small < float(to_a(shifted)[0]) and small < float(to_a(blurred)[0])
        assert [m.shape[1] for m in InceptionFeatures(inception)(a)] == [64, 192, 288]
        with pytest.raises(ValueError, match="no layer"):
            InceptionFeatures(inception, taps=("conv_99",))
