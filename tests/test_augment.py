"""ADA augmentation pipeline: exact ops, colour algebra, filters, gradients and the p heuristic."""
import math

import numpy as np
import pytest
import torch

from conftest import OFFICIAL, require
from stylegan2 import legacy
from training.augment import (AUGPIPE_PRESETS, SYM2, SYM6, AdaptiveAugment, AugmentPipe, affine_resample, band_filters,
                              blit, blit_matrix, brightness_matrix, color_matrix_apply, contrast_matrix, hue_matrix, lumaflip_matrix,
                              saturation_matrix, translation_matrix)


def images(n=8, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2 - 1


def pipe_at(p, **kwargs):
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    return pipe


def mirror(i, n):
    """Naive reflect: bounce off the edges until inside (edge pixel not repeated)."""
    while i < 0 or i >= n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


# ----------------------------------------------------------------------------- identity and exact blits

@pytest.mark.parametrize("preset", sorted(AUGPIPE_PRESETS))
def test_p_zero_is_exact_identity(preset):
    x = images()
    assert torch.equal(pipe_at(0.0, **AUGPIPE_PRESETS[preset])(x), x)


def test_xflip_pipe_gives_exact_flips_of_both_kinds():
    x = images(n=32)
    torch.manual_seed(1)
    y = pipe_at(1.0, xflip=1)(x)
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(32)]
    same = [torch.equal(y[i], x[i]) for i in range(32)]
    assert all(f or s for f, s in zip(flipped, same))
    assert any(flipped) and any(same)


def test_blit_flip_matches_torch_flip():
    x = images(n=3, h=6, w=7)
    one, zero = torch.ones(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    assert torch.equal(blit(x, one, zero, zero, zero), x.flip(-1))


def test_integer_translation_matches_hand_made_reflecting_shift():
    x = images(n=2, c=2, h=5, w=7)
    sx, sy = torch.tensor([2, -3]), torch.tensor([-1, 4])
    zero = torch.zeros(2, dtype=torch.long)
    y = blit(x, zero, zero, sx, sy)
    for n in range(2):
        for r in range(5):
            for c in range(7):
                src = x[n, :, mirror(r - int(sy[n]), 5), mirror(c - int(sx[n]), 7)]
                assert torch.equal(y[n, :, r, c], src)
    # Spelled out for one row: shifting right by 2 mirrors columns 2, 1 into the gap.
    row = x[0, 0, mirror(0 + 1, 5)]
    assert torch.equal(y[0, 0, 0], torch.cat([row[[2, 1]], row[:5]]))


def test_xint_pipe_shifts_within_xint_max():
    x = images(n=16, w=16)
    torch.manual_seed(2)
    y = pipe_at(1.0, xint=1, xint_max=0.125)(x)
    zero = torch.zeros(1, dtype=torch.long)
    limit = round(0.125 * 16)
    shifts = []
    for i in range(16):
        found = [(a, b) for a in range(-limit, limit + 1) for b in range(-limit, limit + 1)
                 if torch.equal(blit(x[i:i + 1], zero, zero, torch.tensor([a]), torch.tensor([b])), y[i:i + 1])]
        assert found, f"sample {i} is not an integer shift within ±{limit}"
        shifts.append(found[0])
    assert len(set(shifts)) > 3


def quarter_turns(x, k):
    """blit with rotation only: each sample turned by its own number of quarter turns."""
    k = torch.as_tensor(k).expand(x.shape[0])
    zeros = torch.zeros_like(k)
    return blit(x, zeros, k, zeros, zeros)


def test_quarter_turns_four_times_are_identity_and_match_rot90():
    x = images(n=4, h=6, w=6)
    y = x
    for _ in range(4):
        y = quarter_turns(y, 1)
    assert torch.equal(y, x)
    k = torch.tensor([0, 1, 2, 3])
    y = quarter_turns(x, k)
    for i in range(4):
        assert torch.equal(y[i], torch.rot90(x[i], int(k[i]), dims=(2, 1)))


def analytic(u, v):
    """A smooth non-symmetric function of centred pixel coordinates (x right, y down)."""
    return 0.5 * torch.cos(0.35 * u + 0.2 * v + 0.4) + 0.03 * u - 0.02 * v + 0.01 * u * v / 8


def portrait(h=16, w=12):
    v, u = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    return analytic(u, v)[None, None], u, v


def test_quarter_turn_and_flip_of_a_portrait_image_are_the_exact_rotation_about_its_centre():
    """Rotating the 16x12 (HxW) frame's content by 90 degrees: out(u, v) = f(R^-1 (u, v)) = f(v, -u) wherever
    that source point lies in the image (rows 2..13; the two rows at each end are mirrored); no stretching."""
    x, u, v = portrait()
    zero = torch.zeros(1, dtype=torch.long)
    turned = quarter_turns(x, 1)
    inside = (slice(None), slice(None), slice(2, 14), slice(None))
    torch.testing.assert_close(turned[inside], analytic(v, -u)[None, None][inside], atol=1e-6, rtol=0)
    torch.testing.assert_close(blit(x, zero + 1, zero, zero, zero), analytic(-u, v)[None, None], atol=1e-6, rtol=0)
    y = x
    for _ in range(4):
        y = quarter_turns(y, 1)
    assert not torch.equal(y, x)  # the mirrored ends do not come back: content really left the frame
    # the resampled path (used when a general op fires too) agrees with the exact one inside its border
    resampled = affine_resample(x, blit_matrix(zero, zero + 1, zero, zero), AugmentPipe().Hz_geom)
    core = (slice(None), slice(None), slice(5, 11), slice(3, 9))
    assert float((resampled - turned)[core].abs().max()) < 1e-3


def test_general_rotation_of_a_portrait_image_keeps_its_aspect():
    """30 degrees through the 2x filter: equal to the analytic rotation about the centre in pixel units, where
    the source point lies 3+ px inside the image; coordinates normalised per side would shear it."""
    h, w = 24, 16
    x, u, v = portrait(h, w)
    theta = torch.tensor([math.pi / 6])
    from training.augment import rotation_matrix
    out = affine_resample(x, rotation_matrix(theta), AugmentPipe().Hz_geom)[0, 0]
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    su, sv = c * u + s * v, -s * u + c * v  # R^-1 (u, v)
    inside = (su.abs() < (w - 1) / 2 - 3) & (sv.abs() < (h - 1) / 2 - 3) & (u.abs() < (w - 1) / 2 - 3) \
        & (v.abs() < (h - 1) / 2 - 3)
    assert inside.sum() > 50
    error = (out - analytic(su, sv))[inside].abs().max()
    assert float(error) < 0.02
    sheared = analytic(c * u + s * v * w / h, -s * u * h / w + c * v)  # what per-side normalised coordinates give
    assert float((out - sheared)[inside].abs().max()) > 5 * float(error)


# ----------------------------------------------------------------------------- geometry through the 2x filter

def test_sym6_and_sym2_are_orthonormal_lowpass_filters():
    for taps in (SYM6, SYM2):
        h = np.asarray(taps)
        assert h.sum() == pytest.approx(math.sqrt(2), abs=1e-12)
        for shift in range(0, len(h) // 2):
            dot = float(np.dot(h[:len(h) - 2 * shift], h[2 * shift:]))
            assert dot == pytest.approx(1.0 if shift == 0 else 0.0, abs=1e-9)
    # D2 reversed, from its closed form: first tap (1 - sqrt 3) / (4 sqrt 2).
    assert SYM2[0] == pytest.approx(-0.1294095225512604, abs=1e-12)


def test_identity_and_integer_translation_resample_exactly():
    pipe = AugmentPipe()
    x = images(n=3, h=12, w=12)
    eye = torch.eye(3).repeat(3, 1, 1)
    torch.testing.assert_close(affine_resample(x, eye, pipe.Hz_geom), x, atol=2e-6, rtol=0)
    tx, ty = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.0, 1.0, -4.0])
    shifted = affine_resample(x, translation_matrix(tx, ty), pipe.Hz_geom)
    zero = torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(shifted, blit(x, zero, zero, tx.long(), ty.long()), atol=2e-6, rtol=0)


def smooth_image(n=32, c=2):
    """Low frequencies plus a ramp: bilinear interpolation of its 2x image is good to ~1e-4."""
    v, u = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    img = 0.5 * torch.cos(2 * math.pi * (0.6 * u + 0.3 * v) / n + 0.4) + 0.02 * (u - 1.5 * v)
    return torch.stack([img, img.flip(0) * 0.8][:c])[None]


@pytest.mark.parametrize("what", ["identity", "xflip", "rotate90", "rotate270", "flip+rotate90"])
def test_resampled_flips_and_quarter_turns_equal_the_exact_ones(what):
    """The transform is centred on the grid our up/down chain really samples (sym6 is asymmetric)."""
    x = smooth_image()
    flip, turns = {"identity": (0, 0), "xflip": (1, 0), "rotate90": (0, 1), "rotate270": (0, 3),
                   "flip+rotate90": (1, 1)}[what]
    flip, turns, zero = torch.tensor([flip]), torch.tensor([turns]), torch.zeros(1, dtype=torch.long)
    exact = blit(x, flip, turns, zero, zero)
    resampled = affine_resample(x, blit_matrix(flip, turns, zero, zero), AugmentPipe().Hz_geom)
    border = 3
    inside = (slice(None), slice(None), slice(border, -border), slice(border, -border))
    assert float((resampled - exact)[inside].abs().max()) < 1e-3


def test_resampling_grid_of_the_chain_is_measured_not_assumed():
    from training.augment import _resampling_grid
    assert _resampling_grid((0.125, 0.375, 0.375, 0.125)) == pytest.approx((-0.25, 0.5), abs=1e-12)  # symmetric
    beta, gamma = _resampling_grid(tuple(AugmentPipe().Hz_geom.double().tolist()))
    assert beta == pytest.approx(-0.0491, abs=1e-3) and gamma == pytest.approx(-2 * beta, abs=1e-5)


def reflect_symmetric(n, points):
    """F(x, y) = cos(pi x / (n-1)) cos(2 pi y / (n-1)) + ..: symmetric about the first and last pixel centres,
    so mirror padding of its samples IS its continuation; evaluate it at [..., 2] pixel coordinates."""
    k = math.pi / (n - 1)
    x, y = points[..., 0], points[..., 1]
    return 0.6 * torch.cos(k * x) * torch.cos(2 * k * y) + 0.3 * torch.cos(2 * k * x + 0 * y) - 0.2 * torch.cos(k * y)


def test_integer_translation_and_general_geometry_resample_once_from_the_original():
    """All geometric ops, the integer translation included, make one matrix applied to the padded original.

    Shifting first and mirroring the shifted image would put other content in the border band (up to 1.28).
    The reference is the continuous image, warped analytically.
    """
    n = 32
    grid = torch.stack(torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                                      indexing="xy"), dim=-1)  # [H, W, (x, y)]
    x = reflect_symmetric(n, grid).float()[None, None].repeat(24, 1, 1, 1)
    pipe = pipe_at(1.0, xint=1, scale=1, rotate=1, scale_std=0.2, rotate_max=0.25)
    torch.manual_seed(21)
    draws = pipe.draw_geometry(24, n, n, "cpu")
    torch.manual_seed(21)
    y = pipe._geometry_stage(x)
    composed = draws.general.double() @ blit_matrix(draws.flip, draws.turns, draws.shift_x, draws.shift_y).double()
    centred = torch.cat([grid - (n - 1) / 2, torch.ones(n, n, 1, dtype=torch.float64)], dim=-1)
    source = centred.reshape(1, -1, 3) @ torch.linalg.inv(composed).transpose(1, 2)
    expected = reflect_symmetric(n, source[..., :2] + (n - 1) / 2).reshape(24, 1, n, n)
    moved = draws.general_fired & ((draws.shift_x != 0) | (draws.shift_y != 0))
    assert moved.sum() >= 12
    assert float((y.double() - expected)[moved].abs().max()) < 2e-3


def test_pixel_blits_alone_stay_exact():
    x = images(n=16)
    pipe = pipe_at(1.0, **AUGPIPE_PRESETS["blit"])
    torch.manual_seed(22)
    draws = pipe.draw_geometry(16, 16, 16, "cpu")
    torch.manual_seed(22)
    assert torch.equal(pipe(x), blit(x, draws.flip, draws.turns, draws.shift_x, draws.shift_y))
    assert not draws.general_fired.any() and draws.blit_fired.sum() > 8


def test_geometric_scale_shrinks_a_centred_square():
    pipe = pipe_at(1.0, scale=1, scale_std=1.0)
    x = -torch.ones(16, 1, 32, 32)
    x[:, :, 8:24, 8:24] = 1
    torch.manual_seed(3)
    y = pipe(x)
    areas = (y > 0).float().sum(dim=(1, 2, 3))
    assert (areas != 256).sum() >= 8  # most samples rescaled
    assert torch.isfinite(y).all()


# ----------------------------------------------------------------------------- colour

def test_brightness_adds_and_contrast_scales():
    x = images(n=2)
    b, c = torch.tensor([0.3, -0.1]), torch.tensor([2.0, 0.5])
    torch.testing.assert_close(color_matrix_apply(x, brightness_matrix(b)), x + b.view(2, 1, 1, 1))
    torch.testing.assert_close(color_matrix_apply(x, contrast_matrix(c)), x * c.view(2, 1, 1, 1))


def test_hue_and_saturation_keep_grays_gray_and_lumaflip_negates_them():
    gray = torch.linspace(-1, 1, 5).view(1, 1, 1, 5).expand(1, 3, 4, 5).contiguous()
    for matrix in (hue_matrix(torch.tensor([1.234])), saturation_matrix(torch.tensor([3.0]))):
        torch.testing.assert_close(color_matrix_apply(gray, matrix), gray, atol=1e-6, rtol=0)
    torch.testing.assert_close(color_matrix_apply(gray, lumaflip_matrix(torch.tensor([1.0]))), -gray, atol=1e-6, rtol=0)


def test_hue_third_turn_cycles_channels_and_zero_saturation_gives_mean():
    rgb = torch.tensor([0.9, -0.2, 0.4]).view(1, 3, 1, 1)
    cycled = color_matrix_apply(rgb, hue_matrix(torch.tensor([2 * math.pi / 3])))
    torch.testing.assert_close(cycled.flatten(), rgb.flatten()[[2, 0, 1]], atol=1e-6, rtol=0)
    gray = color_matrix_apply(rgb, saturation_matrix(torch.tensor([0.0])))
    torch.testing.assert_close(gray.flatten(), torch.full((3,), 1.1 / 3), atol=1e-6, rtol=0)
    # A luma flip keeps the chroma: the channel differences survive.
    flipped = color_matrix_apply(rgb, lumaflip_matrix(torch.tensor([1.0]))).flatten()
    torch.testing.assert_close(flipped - flipped.mean(), rgb.flatten() - rgb.mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(flipped.mean(), -rgb.mean(), atol=1e-6, rtol=0)


def test_brightness_pipe_offsets_each_sample_uniformly():
    x = images(n=16)
    torch.manual_seed(4)
    d = pipe_at(1.0, brightness=1)(x) - x
    per_sample = d.flatten(1)
    torch.testing.assert_close(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-6, rtol=0)
    assert 0.05 < per_sample[:, 0].std() < 0.5  # brightness_std = 0.2


def test_grayscale_images_go_through_every_stage():
    torch.manual_seed(5)
    y = pipe_at(1.0, **AUGPIPE_PRESETS["bgcfnc"])(images(n=4, c=1))
    assert y.shape == (4, 1, 16, 16) and torch.isfinite(y).all()


# ----------------------------------------------------------------------------- filtering, noise, cutout

def test_band_filters_sum_to_impulse_and_split_dc():
    bank = band_filters()
    assert bank.shape == (4, 43)
    impulse = np.zeros(43)
    impulse[21] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-12)
    np.testing.assert_allclose(bank.sum(axis=1), [1, 0, 0, 0], atol=1e-12)  # only the lowest band passes DC
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-15)             # zero phase
    nyquist = bank @ ((-1.0) ** (np.arange(43) - 21))  # response at the Nyquist frequency
    np.testing.assert_allclose(nyquist, [0, 0, 0, 1], atol=1e-12)           # only the highest passes Nyquist


def test_band_gains_normalise_each_band_and_multiply():
    """Per band: gain vector (1, .., g_k, .., 1) normalised to unit expected power; the bands' vectors multiply."""
    expected = torch.tensor([10, 1, 1, 1], dtype=torch.float64) / 13
    pipe = pipe_at(1.0, imgfilter=1)
    torch.manual_seed(6)
    gains, fired = pipe.band_gains(256, "cpu")
    # Replay the draws and build the product by hand in float64.
    torch.manual_seed(6)
    for _ in range(4):
        torch.rand(256)  # the four firing draws
    draws = torch.exp2(torch.randn(256, 4) * pipe.imgfilter_std).double()
    by_hand = torch.ones(256, 4, dtype=torch.float64)
    for k in range(4):
        t = torch.ones(256, 4, dtype=torch.float64)
        t[:, k] = draws[:, k]
        by_hand *= t / (expected * t.square()).sum(dim=1, keepdim=True).sqrt()
    torch.testing.assert_close(gains.double(), by_hand, rtol=1e-5, atol=0)
    power = (expected * gains.double().square()).sum(dim=1)
    assert 0.5 < float(power.median()) < 2 and float(power.max() / power.min()) > 3  # ~1 on average only
    assert fired.shape == (256, 4) and fired.all()
    # One band alone keeps the power exactly.
    single = pipe_at(1.0, imgfilter=1, imgfilter_bands=(0, 0, 1, 0))
    gains, fired = single.band_gains(64, "cpu")
    assert fired[:, 2].all() and not fired[:, [0, 1, 3]].any()
    torch.testing.assert_close((expected * gains.double().square()).sum(dim=1), torch.ones(64, dtype=torch.float64),
                               rtol=1e-6, atol=0)
    assert gains[:, 2].std() > 0.1


def test_filter_pipe_keeps_constant_images_constant_and_changes_textures():
    pipe = pipe_at(1.0, imgfilter=1)
    const = torch.full((4, 3, 16, 16), 0.5)
    torch.manual_seed(7)
    y = pipe(const)
    assert torch.allclose(y, y[:, :, :1, :1].expand_as(y), atol=1e-5)
    torch.manual_seed(7)
    assert not torch.allclose(pipe(images(n=4)), images(n=4), atol=1e-2)


def test_cutout_zeroes_one_square_of_the_given_size():
    x = torch.rand(8, 3, 16, 16) + 0.5  # no zeros in the input
    torch.manual_seed(8)
    y = pipe_at(1.0, cutout=1, cutout_size=0.5)(x)
    for i in range(8):
        zeros = (y[i] == 0).all(dim=0)
        assert torch.equal(y[i][:, ~zeros], x[i][:, ~zeros])
        rows, cols = zeros.any(dim=1).nonzero().flatten(), zeros.any(dim=0).nonzero().flatten()
        assert zeros.sum() == len(rows) * len(cols)  # a rectangle
        assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8


def test_noise_pipe_adds_zero_mean_noise():
    x = torch.zeros(8, 3, 32, 32)
    torch.manual_seed(9)
    y = pipe_at(1.0, noise=1, noise_std=0.1)(x)
    assert y.abs().sum() > 0
    assert abs(float(y.mean())) < 0.01


# ----------------------------------------------------------------------------- gradients and determinism

def test_gradients_flow_through_bgc_and_match_the_affine_map():
    pipe = pipe_at(1.0, **AUGPIPE_PRESETS["bgc"])
    x = images(n=6).requires_grad_(True)
    d = images(n=6, seed=1)
    w = images(n=6, seed=2)
    torch.manual_seed(10)
    y = pipe(x)
    (grad,) = torch.autograd.grad((w * y).sum(), x)
    assert torch.isfinite(grad).all() and (grad.flatten(1).abs().sum(dim=1) > 0).all()
    # With the random draws fixed, the pipe is affine in x: f(x + d) - f(x) = J d exactly.
    torch.manual_seed(10)
    y_shift = pipe(x.detach() + d)
    lhs = float((w * (y_shift - y.detach())).sum())
    assert lhs == pytest.approx(float((grad * d).sum()), rel=1e-3, abs=1e-3)


def test_second_order_gradients_for_r1():
    pipe = pipe_at(1.0, **AUGPIPE_PRESETS["bgc"])
    x = images(n=4).requires_grad_(True)
    weight = torch.randn(3, 3, 3, 3, requires_grad=True)
    torch.manual_seed(11)
    logits = torch.nn.functional.conv2d(pipe(x), weight).tanh().sum()
    (grad,) = torch.autograd.grad(logits, x, create_graph=True)
    grad.square().sum().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


def test_same_seed_same_output_other_seed_other_output():
    pipe = pipe_at(0.8, **AUGPIPE_PRESETS["bgcfnc"])
    x = images(n=8)
    outs = []
    for seed in (12, 12, 13):
        torch.manual_seed(seed)
        outs.append(pipe(x))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


# ----------------------------------------------------------------------------- construction and official kwargs

def test_presets_construct_and_state_dict_names():
    for name, kwargs in AUGPIPE_PRESETS.items():
        pipe = AugmentPipe(**kwargs)
        assert set(pipe.state_dict()) == {"p", "Hz_geom", "Hz_fbank"}, name
    assert AUGPIPE_PRESETS["bgc"] == dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                                          brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    with pytest.raises(ValueError, match="imgfilter_bands"):
        AugmentPipe(imgfilter_bands=[1, 1])


def test_official_pickle_augment_pipe_constructs_ours_with_identical_filters():
    record = legacy.read_official_pickle(require(OFFICIAL / "tiny32c.pkl"))["augment_pipe"]
    pipe = AugmentPipe(*record.init_args, **record.init_kwargs)
    state = legacy.record_state_dict(record)
    torch.testing.assert_close(pipe.Hz_geom, state["Hz_geom"], atol=1e-7, rtol=0)
    torch.testing.assert_close(pipe.Hz_fbank, state["Hz_fbank"], atol=1e-7, rtol=0)
    pipe.load_state_dict(state)
    assert float(pipe.p) == pytest.approx(0.25)
    assert pipe.xflip == 1 and pipe.saturation == 1 and pipe.imgfilter == 0
    torch.manual_seed(0)
    x = images(n=8, h=32, w=32)
    y = pipe(x)
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.equal(y, x)


# ----------------------------------------------------------------------------- ADA heuristic

def test_ada_raises_p_when_reals_look_too_real_and_clamps_at_zero():
    pipe = AugmentPipe(**AUGPIPE_PRESETS["bgc"])
    ada = AdaptiveAugment(pipe, target=0.6, interval=4, speed_kimg=500)
    step = 64 * 4 / 500_000
    for _ in range(4):
        ada.accumulate(torch.tensor([[1.0], [2.0], [0.5], [-1.0]]))  # r_t = 0.5 < target
    assert ada.update(64) == pytest.approx(0.5)
    assert ada.p == 0.0  # clamped
    for k in range(1, 4):
        ada.accumulate(torch.ones(8, 1))
        assert ada.update(64) == 1.0
        assert ada.p == pytest.approx(k * step, rel=1e-6)
    ada.accumulate(-torch.ones(8, 1))
    ada.update(64)
    assert ada.p == pytest.approx(2 * step, rel=1e-6) and ada.rt == -1.0
    assert ada.update(64) is None and ada.p == pytest.approx(2 * step, rel=1e-6)  # no data, no step


def test_ada_state_dict_resumes_exactly():
    ada = AdaptiveAugment(AugmentPipe(xflip=1), speed_kimg=100)
    ada.accumulate(torch.ones(4))
    ada.update(32)
    ada.accumulate(torch.tensor([1.0, -1.0, 1.0]))  # pending, not yet applied
    resumed = AdaptiveAugment(AugmentPipe(xflip=1), speed_kimg=100)
    resumed.load_state_dict(ada.state_dict())
    assert resumed.p == ada.p and resumed.rt == ada.rt
    assert ada.update(32) == resumed.update(32) == pytest.approx(1 / 3)
    assert resumed.p == ada.p


def test_ada_reduce_sums_statistics_across_ranks():
    other_rank = torch.tensor([-10.0, 10.0], dtype=torch.float64)  # another rank saw only negatives
    seen = []

    def all_reduce(stats):
        seen.append(stats.clone())
        return stats + other_rank

    ada = AdaptiveAugment(AugmentPipe(xflip=1), reduce=all_reduce)
    ada.pipe.p.fill_(0.5)
    ada.accumulate(torch.ones(2))
    assert ada.update(64) == pytest.approx(-8 / 12)
    assert torch.equal(seen[0], torch.tensor([2.0, 2.0], dtype=torch.float64))
    assert ada.p < 0.5
