"""Generator and discriminator: names, shapes, truncation, noise, conditioning, precision paths."""
import json
import math

import pytest
import torch

from stylegan2 import networks
from stylegan2.networks import Discriminator, Generator, MinibatchStdLayer
from conftest import OFFICIAL, require, tiny_generator

TINY_SYN = dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None)


def tiny_G(res=16, c_dim=0, base_shape=(4, 4), **syn):
    return tiny_generator(res, c_dim=c_dim, base_shape=base_shape, **{**TINY_SYN, **syn})


def tiny_D(res=16, c_dim=0, **kw):
    torch.manual_seed(1)
    return Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, channel_base=256, channel_max=32, **kw)


# ----------------------------------------------------------------------------- names

def expected_G_keys(res: int, c_dim: int, map_layers: int, architecture: str = "skip") -> set[str]:
    """Written from the architecture description (StyleGAN2 Fig. 7, config F naming), not from our code.

    Every block: const (4x4) or an upsampling conv0, then conv1. 'skip': a toRGB per block; 'orig' and
    'resnet': a toRGB in the last block only; 'resnet': a bias-free 1x1 upsampling `skip` conv in every
    block after the first.
    """
    layer = ["weight", "noise_strength", "bias", "resample_filter", "noise_const", "affine.weight", "affine.bias"]
    torgb = ["weight", "bias", "affine.weight", "affine.bias"]
    keys = set()
    r = 4
    while r <= res:
        p = f"synthesis.b{r}."
        keys.add(p + "resample_filter")
        if r == 4:
            keys.add(p + "const")
        convs = ["conv1"] if r == 4 else ["conv0", "conv1"]
        keys |= {f"{p}{c}.{k}" for c in convs for k in layer}
        if architecture == "skip" or r == res:
            keys |= {f"{p}torgb.{k}" for k in torgb}
        if architecture == "resnet" and r > 4:
            keys |= {p + "skip.weight", p + "skip.resample_filter"}
        r *= 2
    keys.add("mapping.w_avg")
    keys |= {f"mapping.fc{i}.{k}" for i in range(map_layers) for k in ("weight", "bias")}
    if c_dim:
        keys |= {"mapping.embed.weight", "mapping.embed.bias"}
    return keys


def expected_D_keys(res: int, c_dim: int, architecture: str = "resnet") -> set[str]:
    """From the description: fromRGB in the first block ('orig', 'resnet') or in every block and the 4x4
    epilogue ('skip'); conv0, strided conv1; 'resnet' adds a bias-free 1x1 strided `skip`."""
    conv = ["weight", "bias", "resample_filter"]
    keys = set()
    r = res
    while r > 4:
        p = f"b{r}."
        keys.add(p + "resample_filter")
        if r == res or architecture == "skip":
            keys |= {p + "fromrgb." + k for k in conv}
        keys |= {p + c + "." + k for c in ("conv0", "conv1") for k in conv}
        if architecture == "resnet":
            keys |= {p + "skip.weight", p + "skip.resample_filter"}
        r //= 2
    keys |= {"b4.conv." + k for k in conv} | {f"b4.{n}.{k}" for n in ("fc", "out") for k in ("weight", "bias")}
    if architecture == "skip":
        keys |= {"b4.fromrgb." + k for k in conv}
    if c_dim:
        keys |= {"mapping.embed.weight", "mapping.embed.bias"}
        keys |= {f"mapping.fc{i}.{k}" for i in range(8) for k in ("weight", "bias")}
    return keys


@pytest.mark.parametrize("res,c_dim", [(16, 0), (32, 3)])
def test_state_dict_names_follow_the_architecture(res, c_dim):
    G = tiny_G(res, c_dim)
    D = tiny_D(res, c_dim)
    assert set(G.state_dict()) == expected_G_keys(res, c_dim, 2)
    assert set(D.state_dict()) == expected_D_keys(res, c_dim)


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("res,c_dim", [(16, 0), (32, 3)])
def test_every_architecture_has_the_official_names(architecture, res, c_dim):
    G = tiny_G(res, c_dim, architecture=architecture)
    D = tiny_D(res, c_dim, architecture=architecture)
    assert set(G.state_dict()) == expected_G_keys(res, c_dim, 2, architecture)
    assert set(D.state_dict()) == expected_D_keys(res, c_dim, architecture)
    assert G.num_ws == 2 * int(math.log2(res)) - 2  # the same W+ layout in every architecture
    with torch.no_grad():
        img = G(torch.randn(2, 16), torch.eye(3)[:2] if c_dim else None, noise_mode="const")
        assert img.shape == (2, 3, res, res) and D(img, torch.eye(3)[:2] if c_dim else None).shape == (2, 1)


def test_upsampling_1x1_shortcut_is_a_1x1_conv_of_the_upsampled_input():
    """The 'resnet' G shortcut; 1x1 convolution commutes with the FIR upsampling, so the reference is simple."""
    from stylegan2.networks import Conv2dLayer
    from stylegan2.ops.upfirdn2d import upsample2d

    torch.manual_seed(3)
    layer = Conv2dLayer(4, 5, 1, bias=False, up=2).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = layer.weight[:, :, 0, 0] * layer.weight_gain
    reference = upsample2d(torch.einsum("oi,nihw->nohw", w, x), layer.resample_filter.double())
    torch.testing.assert_close(layer(x, gain=0.5), 0.5 * reference, rtol=1e-12, atol=1e-12)


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="'orig', 'skip', 'resnet'"):
        tiny_G(architecture="dense")
    with pytest.raises(ValueError, match="'orig', 'skip', 'resnet'"):
        tiny_D(architecture="dense")


def _shared_weights(dst, src):
    """Copy every tensor the two networks share by name; returns the names only dst has."""
    state = src.state_dict()
    own = {k: v for k, v in dst.state_dict().items() if k not in state}
    dst.load_state_dict({**own, **{k: v for k, v in state.items() if k in dst.state_dict()}})
    return set(own)


def _zero_(module, prefixes, biases_and_noise=False):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith(tuple(prefixes)) or (biases_and_noise and name.endswith(("bias", "noise_strength"))):
                p.zero_()


def test_skip_with_silent_extra_rgb_layers_is_orig():
    """'skip' adds one toRGB (G) / fromRGB (D) per block; with those zero it must compute exactly 'orig'."""
    G_orig, G_skip = tiny_G(architecture="orig").double(), tiny_G(architecture="skip").double()
    extra = _shared_weights(G_skip, G_orig)
    assert extra == {f"synthesis.b{r}.torgb.{k}" for r in (4, 8) for k in ("weight", "bias", "affine.weight",
                                                                          "affine.bias")}
    _zero_(G_skip, [f"synthesis.b{r}.torgb" for r in (4, 8)])
    ws = G_orig.mapping(torch.randn(3, 16, dtype=torch.float64), None)
    assert torch.equal(G_skip.synthesis(ws, noise_mode="const"), G_orig.synthesis(ws, noise_mode="const"))
    D_orig, D_skip = tiny_D(architecture="orig").double(), tiny_D(architecture="skip").double()
    extra = _shared_weights(D_skip, D_orig)
    assert {n.rsplit(".", 2)[0] for n in extra} == {"b8", "b4"}
    _zero_(D_skip, ["b8.fromrgb", "b4.fromrgb"])
    img = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    assert torch.equal(D_skip(img, None), D_orig(img, None))


def test_resnet_with_silent_shortcuts_is_orig_scaled_by_sqrt_half_per_block():
    """Without biases and noise every layer is positively homogeneous, so a 'resnet' whose 1x1 shortcuts
    are zero computes 'orig' times sqrt(1/2) per block (to float32 rounding: synthesis runs in float32)."""
    G_orig, G_res = tiny_G(architecture="orig").double(), tiny_G(architecture="resnet").double()
    assert _shared_weights(G_res, G_orig) == {f"synthesis.b{r}.skip.{k}" for r in (8, 16)
                                              for k in ("weight", "resample_filter")}
    for G in (G_orig, G_res):
        _zero_(G, ["synthesis.b8.skip", "synthesis.b16.skip"], biases_and_noise=True)
    ws = G_orig.mapping(torch.randn(3, 16, dtype=torch.float64), None)
    torch.testing.assert_close(G_res.synthesis(ws), 0.5 * G_orig.synthesis(ws), rtol=1e-4, atol=1e-5)
    D_orig, D_res = tiny_D(architecture="orig").double(), tiny_D(architecture="resnet").double()
    _shared_weights(D_res, D_orig)
    for D in (D_orig, D_res):
        _zero_(D, ["b16.skip", "b8.skip"], biases_and_noise=True)
    img = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(D_res(img, None), 0.5 * D_orig(img, None), rtol=1e-4, atol=1e-6)  # mbstd's eps
    # and the shortcuts do matter once they are not zero
    with torch.no_grad():
        G_res.synthesis.b16.skip.weight.normal_()
    assert not torch.allclose(G_res.synthesis(ws), 0.5 * G_orig.synthesis(ws))


@pytest.mark.parametrize("name", ["tiny16", "tiny32c"])
def test_state_dict_names_and_sizes_equal_the_official_manifest(name):
    manifest = json.loads(require(OFFICIAL / "manifest.json").read_text())[name]
    G = Generator(**manifest["G_kwargs"])
    kw = manifest["G_kwargs"]
    D = Discriminator(c_dim=kw["c_dim"], img_resolution=kw["img_resolution"], img_channels=kw["img_channels"],
                      channel_base=kw["synthesis_kwargs"]["channel_base"],
                      channel_max=kw["synthesis_kwargs"]["channel_max"],
                      conv_clamp=kw["synthesis_kwargs"]["conv_clamp"])
    assert list(G.state_dict()) == manifest["G_state_keys"]  # order too
    assert list(D.state_dict()) == manifest["D_state_keys"]
    assert sum(p.numel() for p in G.parameters()) == manifest["G_params"]
    assert sum(p.numel() for p in D.parameters()) == manifest["D_params"]


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("res", [4, 8, 16, 32, 64, 128, 256, 512, 1024])
def test_construct_every_resolution(res):
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=8192, channel_max=8))
    assert G.num_ws == 2 * int(math.log2(res)) - 2
    D = Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=8192, channel_max=8)
    assert len(D.block_resolutions) == int(math.log2(res)) - 2
    if res <= 32:
        with torch.no_grad():
            img = G(torch.randn(2, 8), None, noise_mode="const")
            assert img.shape == (2, 3, res, res) and img.dtype == torch.float32
            assert D(img, None).shape == (2, 1)


@pytest.mark.parametrize("img_channels", [1, 3])
def test_grayscale_and_rgb(img_channels):
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=img_channels,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=128, channel_max=8))
    D = Discriminator(c_dim=0, img_resolution=8, img_channels=img_channels, channel_base=128, channel_max=8)
    img = G(torch.randn(4, 8), None)
    assert img.shape == (4, img_channels, 8, 8)
    assert D(img, None).shape == (4, 1)


def test_bad_resolution_and_bad_ws_are_clear_errors():
    with pytest.raises(ValueError, match="power of two"):
        Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=48, img_channels=3)
    with pytest.raises(ValueError, match="channel_base"):
        Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, img_channels=3,
                  synthesis_kwargs=dict(channel_base=32))
    G = tiny_G()
    with pytest.raises(ValueError, match=r"ws must be \[N, 6, 16\]"):
        G.synthesis(torch.zeros(1, 5, 16))


# ----------------------------------------------------------------------------- base shapes (portrait, landscape)

BASE_SHAPES = [(4, 4), (4, 3), (4, 2), (2, 4)]


@pytest.mark.parametrize("base_shape", BASE_SHAPES)
def test_base_shape_changes_only_the_const_and_the_epilogue_fc(base_shape):
    """Every name is the official one; only synthesis.b4.const [C, h0, w0], the noise buffers [h, w] and
    D's b4.fc.weight (in_features C*h0*w0) differ from the square network."""
    h0, w0 = base_shape
    G, G_square = tiny_G(16, 3, base_shape=base_shape), tiny_G(16, 3)
    D, D_square = tiny_D(16, 3, base_shape=base_shape), tiny_D(16, 3)
    assert set(G.state_dict()) == expected_G_keys(16, 3, 2) and set(D.state_dict()) == expected_D_keys(16, 3)
    assert G.img_shape == D.img_shape == (4 * h0, 4 * w0)  # 16 px: two doublings of the base
    changed_G = {k for k, v in G.state_dict().items() if v.shape != G_square.state_dict()[k].shape}
    changed_D = {k for k, v in D.state_dict().items() if v.shape != D_square.state_dict()[k].shape}
    square = base_shape == (4, 4)
    assert changed_G == (set() if square else {"synthesis.b4.const"} | {k for k in G.state_dict() if "noise_const" in k})
    assert changed_D == (set() if square else {"b4.fc.weight"})
    C = G.synthesis.b4.const.shape[0]
    assert G.synthesis.b4.const.shape == (C, h0, w0)
    assert G.synthesis.b16.conv1.noise_const.shape == (4 * h0, 4 * w0)
    assert D.b4.fc.weight.shape == (D.b4.fc.out_features, D.b4.fc.out_features * h0 * w0)
    assert ("base_shape" in G.init_kwargs) == (not square)  # square kwargs stay the official ones


@pytest.mark.parametrize("base_shape", BASE_SHAPES[1:])
def test_non_square_networks_run_forward_and_backward(base_shape):
    G, D = tiny_G(16, 3, base_shape=base_shape).train(), tiny_D(16, 3, base_shape=base_shape)
    c = torch.eye(3)[[0, 1, 2, 0]]
    img = G(torch.randn(4, 16), c)
    assert img.shape == (4, 3, *G.img_shape)
    logits = D(img, c)
    assert logits.shape == (4, 1)
    logits.sum().backward()
    for name, p in [("const", G.synthesis.b4.const), ("mapping", G.mapping.fc0.weight), ("D fc", D.b4.fc.weight)]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    with torch.no_grad():  # const noise is deterministic per network, random noise is not
        G.eval()
        z = torch.randn(1, 16)
        assert torch.equal(G(z, c[:1], noise_mode="const"), G(z, c[:1], noise_mode="const"))


def test_square_base_shape_is_the_plain_network():
    G, G_given = tiny_G(16), tiny_G(16, base_shape=(4, 4))
    assert G.init_kwargs == G_given.init_kwargs
    for (k, a), (_, b) in zip(G.state_dict().items(), G_given.state_dict().items()):
        assert torch.equal(a, b), k


def test_bad_base_shape_and_wrong_image_size_are_clear_errors():
    for bad in [(3, 3), (4, 5), (4, 0), (4,), "4x3", (4, 2.5)]:
        with pytest.raises(ValueError, match="base_shape"):
            tiny_G(16, base_shape=bad)
    D = tiny_D(16, base_shape=(4, 3))
    with pytest.raises(ValueError, match="16x12"):
        D(torch.zeros(2, 3, 16, 16), None)


# ----------------------------------------------------------------------------- mapping

def test_truncation_moves_toward_w_avg_with_cutoff():
    G = tiny_G()
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(16))
        z = torch.randn(3, 16)
        w1 = G.mapping(z, None)
        w0 = G.mapping(z, None, truncation_psi=0.0)
        wh = G.mapping(z, None, truncation_psi=0.5)
        wc = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(w0, G.mapping.w_avg.expand_as(w0))
    assert torch.allclose(wh, 0.5 * (w1 + G.mapping.w_avg), atol=1e-6)
    assert torch.allclose(wc[:, :2], wh[:, :2]) and torch.equal(wc[:, 2:], w1[:, 2:])


def test_w_avg_tracks_mean_in_training_only():
    G = tiny_G()
    z = torch.randn(8, 16)
    G.mapping(z, None)  # eval: no update
    assert torch.count_nonzero(G.mapping.w_avg) == 0
    G.train()
    with torch.no_grad():
        w = G.mapping(z, None)[:, 0]
    assert torch.allclose(G.mapping.w_avg, (1 - 0.995) * w.mean(0), atol=1e-7)


def test_mapping_normalises_z_to_unit_second_moment():
    G = tiny_G()
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.allclose(G.mapping(z, None), G.mapping(z * 7.5, None), atol=1e-5)


# ----------------------------------------------------------------------------- noise

def test_noise_modes():
    G = tiny_G()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
        ws = G.mapping(torch.randn(1, 16), None)
        const_a = G.synthesis(ws, noise_mode="const")
        const_b = G.synthesis(ws, noise_mode="const")
        none = G.synthesis(ws, noise_mode="none")
        torch.manual_seed(1)
        rand_a = G.synthesis(ws, noise_mode="random")
        rand_b = G.synthesis(ws, noise_mode="random")
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
        const_zero = G.synthesis(ws, noise_mode="const")
    assert torch.equal(const_a, const_b)
    assert not torch.allclose(rand_a, rand_b)
    assert not torch.allclose(const_a, none)
    assert torch.allclose(const_zero, none, atol=1e-6)  # zero strength == no noise
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")


# ----------------------------------------------------------------------------- conditioning

def test_conditional_generator_and_discriminator():
    G = tiny_G(c_dim=4)
    D = tiny_D(c_dim=4)
    z = torch.randn(1, 16).repeat(2, 1)
    c = torch.eye(4)[[0, 2]]
    with torch.no_grad():
        img = G(z, c, noise_mode="const")
        logits = D(img, c)
        logits_swapped = D(img, c.flip(0))
    assert not torch.allclose(img[0], img[1])  # same z, different class
    assert logits.shape == (2, 1) and not torch.allclose(logits, logits_swapped)
    with pytest.raises(ValueError, match="conditional"):
        G(z, None)


# ----------------------------------------------------------------------------- numerics

def test_fused_and_unfused_modconv_agree_in_float64():
    G = tiny_G(conv_clamp=256).double()
    ws = G.mapping(torch.randn(3, 16, dtype=torch.float64), None).double()
    with torch.no_grad():
        fused = G.synthesis(ws.float(), noise_mode="const", fused_modconv=True)
        split = G.synthesis(ws.float(), noise_mode="const", fused_modconv=False)
    torch.testing.assert_close(fused, split, rtol=1e-5, atol=1e-5)


def test_modconv_picks_the_side_with_fewer_numbers_and_every_choice_agrees():
    from stylegan2.networks import fuse_is_cheaper
    assert not fuse_is_cheaper((512, 512, 3, 3), (1, 512, 4, 4))            # 2.4M weights vs 16k activations
    assert fuse_is_cheaper((64, 64, 3, 3), (1, 64, 256, 256))               # 37k weights vs 8.4M
    assert not fuse_is_cheaper((64, 128, 3, 3), (1, 128, 8, 8), up=2)       # 73,728 vs 8,192 + 16,384
    assert fuse_is_cheaper((4, 8, 3, 3), (1, 8, 16, 16), up=2)              # 288 vs 2,048 + 4,096
    # 32 channels at 4-8 px (split is cheaper), 16-8 at 16-32 px (fused): auto mixes both in one render
    G = tiny_G(res=32, channel_base=256, channel_max=32)
    ws = G.mapping(torch.randn(1, 16), None)
    choices = []  # per modulated conv: True when it convolved with a per-sample weight (fused)
    parameters = {p.data_ptr() for p in G.parameters()}
    original = networks.conv2d_resample

    def spy(x, w, *args, **kwargs):
        choices.append(w.data_ptr() not in parameters)
        return original(x, w, *args, **kwargs)
    with torch.no_grad():
        fused = G.synthesis(ws, noise_mode="const", fused_modconv=True)
        split = G.synthesis(ws, noise_mode="const", fused_modconv=False)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(networks, "conv2d_resample", spy)
            auto = G.synthesis(ws, noise_mode="const")                      # one image on a CPU: per layer
    layers = [m for m in G.synthesis.modules() if hasattr(m, "affine")]
    assert len(choices) == len(layers) and True in choices and False in choices
    # blocks compute in float32 (their dtype), so float32 rounding; the float64 check of each side is below
    torch.testing.assert_close(auto, fused, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(split, fused, rtol=1e-5, atol=1e-5)


def test_split_modconv_gradients_match_the_per_sample_weights_in_float64():
    """Split demodulation never builds the per-sample weights; its gradients are those of Eq. 3 as written."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    out = networks.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=False)
    w = weight.unsqueeze(0) * styles.reshape(2, 1, 5, 1, 1)                   # the paper's w' (Eq. 1)
    w = w / (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).sqrt()       # w'' (Eq. 3)
    naive = torch.stack([torch.nn.functional.conv2d(x[n:n + 1], w[n], padding=1)[0] for n in range(2)])
    torch.testing.assert_close(out, naive, rtol=1e-12, atol=1e-12)
    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum(), (x, weight, styles))
    naive_grads = torch.autograd.grad((naive * probe).sum(), (x, weight, styles))
    for got, want in zip(grads, naive_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_fp16_blocks_fall_back_to_fp32_off_cuda_and_under_force_fp32():
    G32 = tiny_G(num_fp16_res=0)
    G16 = tiny_G(num_fp16_res=2)
    G16.load_state_dict(G32.state_dict())
    assert [b.use_fp16 for b in G16.synthesis.blocks()] == [False, True, True]
    ws = G32.mapping(torch.randn(2, 16), None)
    with torch.no_grad():
        a = G32.synthesis(ws, noise_mode="const")
        b = G16.synthesis(ws, noise_mode="const")
        c = G16.synthesis(ws, noise_mode="const", force_fp32=True)
    assert b.dtype == torch.float32
    assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_blocks_on_cuda_close_to_fp32():
    G = tiny_G(num_fp16_res=2, conv_clamp=256).cuda()
    ws = G.mapping(torch.randn(4, 16, device="cuda"), None)
    with torch.no_grad():
        half = G.synthesis(ws, noise_mode="const")
        full = G.synthesis(ws, noise_mode="const", force_fp32=True)
    assert half.dtype == torch.float32
    assert (half - full).abs().max() < 0.05


def test_minibatch_stddev_matches_naive_groups():
    torch.manual_seed(5)
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    y = MinibatchStdLayer(group_size=4, num_channels=2)(x)
    assert y.shape == (8, 6, 3, 3)
    n_groups = 2
    for i in range(8):
        members = [j for j in range(8) if j % n_groups == i % n_groups]
        for f in range(2):
            feats = x[members][:, 2 * f:2 * f + 2]  # [G, c, H, W]
            std = (feats.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            assert torch.allclose(y[i, 4 + f], std.expand(3, 3))


def test_discriminator_gradients_reach_the_image_twice():
    """R1 needs d/dtheta of |dD/dx|^2: the double backward must work through every layer."""
    D = tiny_D(c_dim=0, conv_clamp=256)
    img = torch.randn(4, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(D(img, None).sum(), img, create_graph=True)
    grad.square().sum().backward()
    # Every parameter but the last bias (a constant offset of the logit) shapes dD/dx.
    missing = [n for n, p in D.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == ["b4.out.bias"]
