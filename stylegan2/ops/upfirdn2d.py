"""Upsample, pad, FIR-filter and downsample a batch of 2-D images, in one function.

StyleGAN2 resamples with a small low-pass FIR filter ([1, 3, 3, 1]) instead of
nearest or bilinear interpolation, to keep the generator free of aliasing.
The whole family of resampling ops is one primitive: insert `up - 1` zeros
between samples, pad (negative padding crops), convolve with the filter, keep
every `down`-th sample. The reference below is plain PyTorch (autograd gives the
gradient, which is itself an upfirdn2d); other implementations register behind the
same function (see `stylegan2.ops`).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from . import REFERENCE, dispatch, register

Padding = int | Sequence[int]


def setup_filter(f, normalize: bool = True, flip_filter: bool = False, gain: float = 1.0,
                 separable: bool | None = None, device=None) -> torch.Tensor:
    """Turn filter taps into the tensor upfirdn2d expects.

    A short 1-D list becomes its outer product (a 2-D filter, stored that way in
    the official checkpoints' `resample_filter` buffers); long 1-D lists (>= 8
    taps) stay separable by default. `gain` multiplies the filter's DC response.
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f.reshape(1)
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be 1-D or 2-D and non-empty, got shape {tuple(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """Padding as (x0, x1, y0, y1) from an int, [x, y] or [x0, x1, y0, y1]."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return tuple(padding)  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a 1-D (separable) or 2-D filter; (1, 1) for no filter."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[1], f.shape[0]


def _pad_or_crop(x: torch.Tensor, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    h, w = x.shape[2], x.shape[3]
    return x[:, :, max(-y0, 0): h - max(-y1, 0), max(-x0, 0): w - max(-x1, 0)]


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int | Sequence[int] = 1,
              down: int | Sequence[int] = 1, padding: Padding = 0, flip_filter: bool = False,
              gain: float = 1.0, impl: str | None = None) -> torch.Tensor:
    """Upsample by zero insertion, pad/crop, convolve with `f`, then downsample.

    x: [N, C, H, W]. f: 2-D [fh, fw], 1-D separable [taps], or None (identity).
    up/down: int or (x, y). padding: see `parse_padding`, in upsampled pixels.
    The filter is applied as a true convolution (flipped) unless `flip_filter`.
    Output size: (H * up + y0 + y1 - fh + 1) // down (rounded up), likewise for W.
    `impl` picks a registered implementation (None: the process default).
    """
    return dispatch("upfirdn2d", impl, x, f, up, down, padding, flip_filter, gain)


@register("upfirdn2d", REFERENCE)
def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    if x.ndim != 4:
        raise ValueError(f"expected [N, C, H, W] input, got shape {tuple(x.shape)}")
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    px0, px1, py0, py1 = parse_padding(padding)
    n, c, h, w = x.shape

    if upx > 1 or upy > 1:
        z = x.new_zeros([n, c, h * upy, w * upx])
        z[:, :, ::upy, ::upx] = x
        x = z
    x = _pad_or_crop(x, px0, px1, py0, py1)

    if f is None:
        x = x * gain if gain != 1 else x
        return x[:, :, ::downy, ::downx] if downx > 1 or downy > 1 else x

    # Downsampling is the conv's stride: samples that would be thrown away are never computed.
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        return F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c, stride=(downy, downx))
    x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c, stride=(1, downx))
    return F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c, stride=(downy, 1))


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1.0) -> torch.Tensor:
    """Upsample by `up` with an aligned low-pass filter; output is exactly `up` times larger."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    pads = [px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pads, flip_filter=flip_filter, gain=gain * up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1.0) -> torch.Tensor:
    """Low-pass then keep every `down`-th pixel; output is exactly `down` times smaller."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    pads = [px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=pads, flip_filter=flip_filter, gain=gain)
