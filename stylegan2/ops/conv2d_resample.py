"""2-D convolution combined with FIR up/down-sampling.

Definition (what every path below computes): upsample `x` by zero insertion,
pad by `padding` plus the filter's own alignment padding, low-pass with `f`
(gain up**2), convolve with `w` without padding, then low-pass and keep every
`down`-th pixel. The paths reorder these linear, shift-invariant steps so no
work is spent on inserted zeros (transposed convolution) or on pixels that are
thrown away (strided convolution).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import REFERENCE, dispatch, register
from .upfirdn2d import Padding, filter_size, parse_padding, upfirdn2d


def _conv(x, w, stride=1, padding=0, groups=1, flip_weight=True):
    """F.conv2d is a correlation; flip_weight=False makes it a true convolution."""
    if not flip_weight:
        w = w.flip([2, 3])
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _conv_transpose_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[G*O, I, k, k] conv weight -> [G*I, O, k, k] conv_transpose2d weight."""
    out_ch, in_ch, kh, kw = w.shape
    w = w.reshape(groups, out_ch // groups, in_ch, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_ch, out_ch // groups, kh, kw)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding: Padding = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False, impl: str | None = None) -> torch.Tensor:
    """Convolve x [N, C, H, W] with w [O, C/groups, kh, kw], resampling by up/down with filter f.

    `impl` picks a registered implementation (None: the process default).
    """
    return dispatch("conv2d_resample", impl, x, w, f, up, down, padding, groups, flip_weight, flip_filter)


@register("conv2d_resample", REFERENCE)
def _conv2d_resample_ref(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    if (up > 1 or down > 1) and f is None:
        raise ValueError("resampling needs a filter f (see setup_filter)")
    kh, kw = w.shape[2], w.shape[3]
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2

    if up > 1:
        # conv_transpose2d == zero insertion followed by a true convolution ("full" mode),
        # so the padding that the definition applies before the conv moves after it.
        wt = w if not flip_weight else w.flip([2, 3])
        x = F.conv_transpose2d(x, _conv_transpose_weight(wt, groups), stride=up, groups=groups)
        pads = [px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)]
        x = upfirdn2d(x, f, padding=pads, gain=up * up, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    if down > 1:
        if kh == 1 and kw == 1:  # a 1x1 conv commutes with downsampling: shrink first
            x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
            return _conv(x, w, groups=groups, flip_weight=flip_weight)
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=(py0, px0), groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return _conv(x, w, groups=groups, flip_weight=flip_weight)
