"""Fused bias + activation + gain + clamp.

StyleGAN2 applies this sequence after nearly every layer. The reference below is
plain PyTorch (autograd gives first and second derivatives, which lazy R1 needs);
other implementations register behind the same `bias_act` function (see `stylegan2.ops`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import REFERENCE, dispatch, register


@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    default_alpha: float
    default_gain: float


# Default gains keep the signal's second moment roughly constant through a layer
# (He et al. 2015): sqrt(2) for rectifiers, 1 otherwise.
ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: x * torch.sigmoid(x), 0.0, math.sqrt(2)),
}


def default_gain(act: str) -> float:
    return ACTIVATIONS[act].default_gain


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Return clamp(act(x + b) * gain), with `b` broadcast along dimension `dim`.

    `alpha` is the leaky slope (lrelu), `gain` defaults to the activation's own
    gain, `clamp` (if not None) bounds the output to [-clamp, clamp]; `impl` picks a
    registered implementation (None: the process default).
    """
    return dispatch("bias_act", impl, x, b, dim, act, alpha, gain, clamp)


@register("bias_act", REFERENCE)
def _bias_act_ref(x, b, dim, act, alpha, gain, clamp):
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = spec.default_alpha if alpha is None else float(alpha)
    gain = spec.default_gain if gain is None else float(gain)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {tuple(b.shape)} does not match dim {dim} of input {tuple(x.shape)}")
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
