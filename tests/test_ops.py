"""Every registered implementation of each op against independent naive float64 implementations, plus
gradcheck/gradgradcheck; and the registry's dispatch (impl=, the environment switch, declining, errors)."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylegan2 import ops
from stylegan2.ops.bias_act import ACTIVATIONS, bias_act
from stylegan2.ops.conv2d_resample import conv2d_resample
from stylegan2.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upsample2d


BIAS_ACT = ops.implementations("bias_act")
UPFIRDN2D = ops.implementations("upfirdn2d")
CONV2D_RESAMPLE = ops.implementations("conv2d_resample")

# ----------------------------------------------------------------------------- naive references

def naive_upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Explicit loops in float64; f is a 2-D numpy filter applied as a true convolution."""
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    z = np.zeros([n, c, h * up, w * up])
    z[:, :, ::up, ::up] = x
    x0, x1, y0, y1 = pad
    hp, wp = h * up + y0 + y1, w * up + x0 + x1
    p = np.zeros([n, c, hp, wp])
    for i in range(hp):
        for j in range(wp):
            si, sj = i - y0, j - x0
            if 0 <= si < h * up and 0 <= sj < w * up:
                p[:, :, i, j] = z[:, :, si, sj]
    f = np.asarray(f, dtype=np.float64) * gain
    fh, fw = f.shape
    out = np.zeros([n, c, hp - fh + 1, wp - fw + 1])
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            acc = 0
            for a in range(fh):
                for b in range(fw):
                    acc = acc + p[:, :, i + a, j + b] * f[fh - 1 - a, fw - 1 - b]
            out[:, :, i, j] = acc
    return out[:, :, ::down, ::down]


NAIVE_ACT = {
    "linear": lambda v: v,
    "relu": lambda v: np.maximum(v, 0),
    "lrelu": lambda v: np.where(v > 0, v, 0.2 * v),
    "tanh": np.tanh,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "elu": lambda v: np.where(v > 0, v, np.exp(v) - 1),
    "selu": lambda v: 1.0507009873554805 * np.where(v > 0, v, 1.6732632423543772 * (np.exp(v) - 1)),
    "softplus": lambda v: np.log1p(np.exp(v)),
    "swish": lambda v: v / (1 + np.exp(-v)),
}


# ----------------------------------------------------------------------------- bias_act

@pytest.mark.parametrize("impl", BIAS_ACT)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_matches_naive(act, impl):
    rng = np.random.RandomState(0)
    x = rng.randn(3, 5, 4, 4)
    b = rng.randn(5)
    expected_gain = math.sqrt(2) if act in ("relu", "lrelu", "swish") else 1.0
    want = NAIVE_ACT[act](x + b[None, :, None, None]) * expected_gain
    got = bias_act(torch.from_numpy(x), torch.from_numpy(b), act=act, impl=impl)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", BIAS_ACT)
def test_bias_act_gain_clamp_dim_and_alpha(impl):
    x = torch.linspace(-3, 3, 24, dtype=torch.float64).reshape(2, 3, 4)
    b = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    got = bias_act(x, b, dim=2, act="lrelu", alpha=0.1, gain=2.0, clamp=1.5, impl=impl)
    v = x.numpy() + b.numpy()[None, None, :]
    want = np.clip(np.where(v > 0, v, 0.1 * v) * 2.0, -1.5, 1.5)
    np.testing.assert_allclose(got.numpy(), want)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="gelu2", impl=impl)
    with pytest.raises(ValueError, match="does not match"):
        bias_act(x, b[:3], dim=2, impl=impl)


@pytest.mark.parametrize("impl", BIAS_ACT)
@pytest.mark.parametrize("act", ["linear", "lrelu", "tanh", "softplus", "swish"])
def test_bias_act_gradcheck_and_double_backward(act, impl):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act(x, b, act=act, clamp=1.2, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


# ----------------------------------------------------------------------------- upfirdn2d

CASES = [
    # up, down, padding (x0, x1, y0, y1), filter taps
    (1, 1, (0, 0, 0, 0), [1, 3, 3, 1]),
    (2, 1, (2, 1, 2, 1), [1, 3, 3, 1]),
    (1, 2, (1, 1, 1, 1), [1, 3, 3, 1]),
    (2, 2, (1, 2, 0, 3), [1, 2, 1]),
    (4, 1, (3, 2, 1, 0), [1, 3, 3, 1]),
    (1, 4, (0, 0, 2, 2), [1, 3, 3, 1]),
    (1, 1, (-1, 2, 1, -2), [1, 2, 3]),  # negative padding crops
    (3, 2, (0, 1, 1, 0), [[1, 2], [3, 4], [5, 6]]),  # asymmetric, non-square filter
]


@pytest.mark.parametrize("impl", UPFIRDN2D)
@pytest.mark.parametrize("up,down,pad,taps", CASES)
def test_upfirdn2d_matches_naive_loops(up, down, pad, taps, impl):
    rng = np.random.RandomState(1)
    x = rng.randn(2, 3, 5, 6)
    f = setup_filter(taps).double()
    got = upfirdn2d(torch.from_numpy(x), f, up=up, down=down, padding=list(pad), gain=1.5, impl=impl)
    want = naive_upfirdn2d(x, f.numpy(), up, down, pad, gain=1.5)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", UPFIRDN2D)
def test_separable_filter_equals_its_outer_product(impl):
    rng = np.random.RandomState(2)
    x = torch.from_numpy(rng.randn(1, 2, 9, 7))
    taps = [1, 4, 6, 8, 8, 6, 4, 1]
    f1 = setup_filter(taps).double()
    assert f1.ndim == 1  # >= 8 taps stay separable
    f2 = setup_filter(taps, separable=False).double()
    a = upfirdn2d(x, f1, up=2, padding=[3, 4, 3, 4], impl=impl)
    b = upfirdn2d(x, f2, up=2, padding=[3, 4, 3, 4], impl=ops.REFERENCE)
    torch.testing.assert_close(a, b)


def test_setup_filter_normalises_flips_and_gains():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and math.isclose(float(f.sum()), 1.0, rel_tol=1e-6)
    np.testing.assert_allclose(f.numpy(), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64)
    g = setup_filter([1, 2], normalize=False, flip_filter=True, gain=4)
    np.testing.assert_allclose(g.numpy(), np.array([[4, 2], [2, 1]]) * 4)  # gain ** (ndim / 2)


def test_resample_helpers_sizes_and_dc_gain():
    f = setup_filter([1, 3, 3, 1])
    x = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    up = upsample2d(x, f.double())
    down = downsample2d(x, f.double())
    assert up.shape[-2:] == (16, 16) and down.shape[-2:] == (4, 4)
    # A constant image stays constant away from the borders: the filters have unit DC gain.
    assert torch.allclose(up[..., 3:-3, 3:-3], torch.ones_like(up[..., 3:-3, 3:-3]))
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones_like(down[..., 1:-1, 1:-1]))


@pytest.mark.parametrize("impl", UPFIRDN2D)
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_upfirdn2d_gradcheck_and_double_backward(up, down, impl):
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    f = setup_filter([1, 3, 3, 1]).double()
    fn = lambda x: upfirdn2d(x, f, up=up, down=down, padding=[1, 2, 2, 1], impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ----------------------------------------------------------------------------- conv2d_resample

def definition_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight):
    """The op's definition, spelled out with the naive upfirdn2d: pad+up-filter, conv, down-filter."""
    fh, fw = f.shape
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0, px1, py0, py1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    one = np.ones([1, 1])
    y = naive_upfirdn2d(x.numpy(), f.numpy() if up > 1 else one, up=up, pad=(px0, px1, py0, py1), gain=up * up)
    wk = w if flip_weight else w.flip([2, 3])
    y = F.conv2d(torch.from_numpy(y), wk, groups=groups).numpy()
    if down > 1:
        y = naive_upfirdn2d(y, f.numpy(), down=down)
    return y


@pytest.mark.parametrize("impl", CONV2D_RESAMPLE)
@pytest.mark.parametrize("k,up,down,padding,groups,flip", [
    (3, 1, 1, 1, 1, True), (3, 2, 1, 1, 1, False), (3, 2, 1, 1, 2, False), (3, 1, 2, 1, 1, True),
    (1, 1, 2, 0, 1, True), (1, 2, 1, 0, 1, True), (3, 2, 2, 1, 1, True), (3, 1, 1, 0, 1, False),
])
def test_conv2d_resample_fast_paths_match_definition(k, up, down, padding, groups, flip, impl):
    torch.manual_seed(3)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    got = conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip, impl=impl)
    want = definition_conv2d_resample(x, w, f, up, down, padding, groups, flip)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("impl", CONV2D_RESAMPLE)
def test_conv2d_resample_double_backward(impl):
    torch.manual_seed(4)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    f = setup_filter([1, 3, 3, 1]).double()
    fn = lambda x, w: conv2d_resample(x, w, f=f, down=2, padding=1, impl=impl)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, w))


# ----------------------------------------------------------------------------- the registry

@pytest.fixture
def doubling_bias_act(monkeypatch):
    """A second bias_act implementation (reference output times two) that declines float32 inputs."""
    monkeypatch.setitem(ops._registry, "bias_act", dict(ops._registry["bias_act"]))
    ops.register("bias_act", "double", accepts=lambda x, *a: x.dtype == torch.float64)(
        lambda *args: 2 * ops._registry["bias_act"][ops.REFERENCE].fn(*args))
    return "double"


def test_every_op_has_its_reference_first():
    for op in ("bias_act", "upfirdn2d", "conv2d_resample"):
        assert ops.implementations(op)[0] == ops.REFERENCE


def test_dispatch_by_argument_by_choice_and_declined_calls(doubling_bias_act, monkeypatch):
    x = torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(1, 6)
    ref = bias_act(x, act="lrelu")
    torch.testing.assert_close(bias_act(x, act="lrelu", impl="double"), 2 * ref)
    monkeypatch.setattr(ops, "_choice", ops.parse_choice("bias_act=double"))
    torch.testing.assert_close(bias_act(x, act="lrelu"), 2 * ref)           # the process choice
    torch.testing.assert_close(bias_act(x.float(), act="lrelu"), ref.float())  # declined: the reference ran
    monkeypatch.setattr(ops, "_choice", ops.parse_choice("double"))         # for every op: only bias_act has it
    torch.testing.assert_close(bias_act(x, act="lrelu"), 2 * ref)
    f = setup_filter([1, 3, 3, 1]).double()
    torch.testing.assert_close(upfirdn2d(x.reshape(1, 1, 2, 3), f, padding=2),
                               upfirdn2d(x.reshape(1, 1, 2, 3), f, padding=2, impl=ops.REFERENCE))


def test_unknown_implementations_are_refused_with_the_registered_names(monkeypatch):
    with pytest.raises(ValueError, match="no implementation 'nope'; registered: ref"):
        bias_act(torch.ones(1, 2), impl="nope")
    monkeypatch.setattr(ops, "_choice", ops.parse_choice("upfirdn2d=nope"))
    with pytest.raises(ValueError, match="upfirdn2d: no implementation 'nope'"):
        upfirdn2d(torch.ones(1, 1, 2, 2), None)
    assert ops.parse_choice(" cuda ") == {"*": "cuda"}
    assert ops.parse_choice("upfirdn2d=cuda, bias_act=ref") == {"upfirdn2d": "cuda", "bias_act": "ref"}
    with pytest.raises(ValueError, match="cannot read"):
        ops.parse_choice("upfirdn2d=")


def test_the_environment_switch_is_read_at_import():
    env = dict(os.environ, **{ops.OPS_ENV: "upfirdn2d=cuda"})
    code = ("import torch; from stylegan2.ops.upfirdn2d import upfirdn2d\n"
            "try:\n    upfirdn2d(torch.ones(1, 1, 2, 2), None)\nexcept ValueError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "upfirdn2d: no implementation 'cuda'" in out.stdout
