"""Adaptive discriminator augmentation (ADA), after Karras et al. 2020,
"Training Generative Adversarial Networks with Limited Data", Appendix B.

Every image the discriminator sees (reals and fakes) goes through `AugmentPipe`,
so D never sees an un-augmented distribution it could memorise; because the
pipeline is differentiable, G still gets useful gradients through it. Each op
fires per sample with probability `p * strength`, and `AdaptiveAugment` tunes `p`
from an overfitting signal (how often D is sure the reals are real).

Stages, in order: geometry, colour (one 4x4 matrix), image-space filtering
(4 frequency bands), additive noise, cutout. Geometry composes every geometric op
of a sample (x-flip, quarter turns, integer and fractional translation, scaling,
rotation, anisotropy) into one matrix and resamples the reflect-padded original
once, through a 2x sym6-filtered image; a sample whose only ops are pixel blits
(flip, quarter turn, integer shift) gets them as exact index shuffles instead.
A stage only touches the samples whose ops fired, so p = 0 is the identity bit
for bit.

Constructor kwargs, the `p` buffer and the `Hz_geom`/`Hz_fbank` filter buffers
carry the names of the official StyleGAN2-ADA AugmentPipe, so its pickled
init kwargs and state dict construct and load this class.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stylegan2.ops.upfirdn2d import downsample2d, setup_filter, upsample2d

# Symlet-6 analysis low-pass taps (12 taps, orthonormal: sum sqrt(2), unit energy), as
# published by Daubechies ("Ten Lectures on Wavelets", 1992, least-asymmetric family)
# and tabulated by PyWavelets, http://wavelets.pybytes.com/wavelet/sym6/ ("dec_lo").
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)

# Symlet-2 equals Daubechies-2 reversed; D2 has the closed form (1±√3, 3±√3) / (4√2).
_S3 = math.sqrt(3.0)
SYM2 = tuple(t / (4 * math.sqrt(2.0)) for t in (1 - _S3, 3 - _S3, 3 + _S3, 1 + _S3))

# Assumed 1/f image power per band (lowest band first), kept constant by the band gains.
BAND_EXPECTED_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)

_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
_FILTER = dict(imgfilter=1)
_NOISE = dict(noise=1)
_CUTOUT = dict(cutout=1)
AUGPIPE_PRESETS: dict[str, dict] = {
    "blit": _BLIT, "geom": _GEOM, "color": _COLOR, "filter": _FILTER, "noise": _NOISE, "cutout": _CUTOUT,
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, **_FILTER},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE, **_CUTOUT},
}


# ----------------------------------------------------------------------------- filters

def band_filters(lowpass: Sequence[float] = SYM2, num_bands: int = 4) -> np.ndarray:
    """Dyadic filter bank [num_bands, taps], lowest band first, whose rows sum to a unit impulse.

    lo = h * reverse(h) / 2 is a power-complementary half-band filter (orthonormal h), and
    hi = delta - lo its complement. Band k is the high-pass at scale 2^(B-1-k) behind the
    low-passes of all finer scales (the last band is the plain high-pass, band 0 keeps only
    the low-passes), so the sum over bands telescopes to the identity.
    """
    h = np.asarray(lowpass, dtype=np.float64)
    lo = np.convolve(h, h[::-1]) / 2
    hi = -lo
    hi[len(lo) // 2] += 1

    def at_scale(taps: np.ndarray, factor: int) -> np.ndarray:
        out = np.zeros((len(taps) - 1) * factor + 1)
        out[::factor] = taps
        return out

    rows = []
    for band in range(num_bands):
        coarse = num_bands - 1 - band  # number of low-pass stages before the band's high-pass
        taps = np.ones(1)
        for s in range(coarse):
            taps = np.convolve(taps, at_scale(lo, 2 ** s))
        if band > 0:
            taps = np.convolve(taps, at_scale(hi, 2 ** coarse))
        rows.append(taps)
    width = max(len(r) for r in rows)
    return np.stack([np.pad(r, (width - len(r)) // 2) for r in rows])


# ----------------------------------------------------------------------------- index helpers

def reflect_index(i: torch.Tensor, n: int) -> torch.Tensor:
    """Map any integer index into [0, n) by mirroring at the edges (edge pixel not repeated)."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def reflect_pad(images: torch.Tensor, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    """Mirror-pad by any amount (F.pad 'reflect' refuses pads >= the image size)."""
    h, w = images.shape[2:]
    ys = reflect_index(torch.arange(-y0, h + y1, device=images.device), h)
    xs = reflect_index(torch.arange(-x0, w + x1, device=images.device), w)
    return images.index_select(2, ys).index_select(3, xs)


def blit(images: torch.Tensor, flip: torch.Tensor, quarter_turns: torch.Tensor,
         shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    """Exact per-sample x-flip, then rotation by quarter turns, then integer shift (reflecting).

    All int tensors [N]. A quarter turn is the rotation `rotation_matrix(pi/2)` of the geometric
    stage (y points down), about the centre in pixel units, so on a portrait image it keeps the
    aspect (nothing is stretched): what turns out of the frame is cut, and the frame's uncovered
    ends are mirrored, as every other geometric op does. Shifts move the content right/down. Pure
    indexing: differentiable, and bit-exact (with both sides even, as every training size is).
    """
    n, c, h, w = images.shape
    # Doubled centred coordinates stay integers for even and odd sizes.
    ys, xs = torch.meshgrid(torch.arange(h, device=images.device), torch.arange(w, device=images.device),
                            indexing="ij")
    u = (2 * xs - (w - 1))[None].expand(n, h, w)
    v = (2 * ys - (h - 1))[None].expand(n, h, w)
    # Undo the shift, then the rotation, then the flip: output pixel -> source pixel.
    u = u - 2 * shift_x.view(n, 1, 1)
    v = v - 2 * shift_y.view(n, 1, 1)
    k = (quarter_turns % 4).view(n, 1, 1)
    u, v = (torch.where(k == 0, u, torch.where(k == 1, v, torch.where(k == 2, -u, -v))),
            torch.where(k == 0, v, torch.where(k == 1, -u, torch.where(k == 2, -v, u))))
    u = torch.where(flip.view(n, 1, 1) != 0, -u, u)
    src_x = reflect_index((u + (w - 1)) // 2, w)
    src_y = reflect_index((v + (h - 1)) // 2, h)
    index = (src_y * w + src_x).reshape(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)


# ----------------------------------------------------------------------------- geometry

def blit_matrix(flip: torch.Tensor, quarter_turns: torch.Tensor, shift_x: torch.Tensor,
                shift_y: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] forward matrix of `blit` (flip, then quarter turns, then shift), for composing with others."""
    sign = 1 - 2 * flip.to(torch.float64)
    theta = quarter_turns.to(torch.float64) * (math.pi / 2)
    m = (translation_matrix(shift_x.double(), shift_y.double()) @ rotation_matrix(theta)
         @ scale_matrix(sign, torch.ones_like(sign)))
    return m.round(decimals=12).float()  # cos(pi/2) is 6e-17, not 0


def translation_matrix(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] homogeneous 2-D translation."""
    m = torch.eye(3, dtype=tx.dtype, device=tx.device).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def scale_matrix(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] homogeneous 2-D scaling about the image centre."""
    m = torch.eye(3, dtype=sx.dtype, device=sx.device).repeat(sx.shape[0], 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def rotation_matrix(theta: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] homogeneous 2-D rotation about the image centre."""
    m = torch.eye(3, dtype=theta.dtype, device=theta.device).repeat(theta.shape[0], 1, 1)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


@functools.lru_cache(maxsize=8)
def _resampling_grid(taps: tuple[float, ...]) -> tuple[float, float]:
    """Where our 2x chain puts its samples, measured on a ramp (exact: the chain is linear and shift-invariant).

    Returns (beta, gamma): `upsample2d` sample j of an image lies at source pixel j / 2 + beta, and
    `downsample2d` (mirrored filter) output pixel i reads its input at 2 i + gamma. For a symmetric
    filter these are -1/4 and 1/2; sym6 is asymmetric and shifts them (about -0.05 and 0.10), which a
    transform that assumed the symmetric grid would turn into a sub-pixel offset (0.4 px on an x-flip).
    """
    f = torch.tensor(taps, dtype=torch.float64)
    n = 4 * len(taps)
    ramp = torch.arange(n, dtype=torch.float64).expand(1, 1, n, n)  # constant down the columns
    j = n  # an upsampled sample far from both borders
    beta = float(upsample2d(ramp, f)[0, 0, j, j]) - j / 2
    i = n // 4  # the middle of the half-size output
    gamma = float(downsample2d(ramp, f, flip_filter=True)[0, 0, i, i]) - 2 * i
    return beta, gamma


def affine_resample(images: torch.Tensor, matrix: torch.Tensor, lowpass: torch.Tensor) -> torch.Tensor:
    """Warp each sample by its forward affine `matrix` [N, 3, 3] (centred pixel coordinates).

    Out-of-image content is mirrored (reflect padding, so no black borders D could key on).
    To keep aliasing down the image is upsampled 2x with `lowpass`, sampled bilinearly, and
    brought back down with the mirrored filter: up * down is then a zero-phase half-band
    filter, so an identity matrix reproduces the input up to rounding. Both sampling grids
    are the ones the filter really produces (`_resampling_grid`), so flips and rotations land
    on the pixel centres.
    """
    n, c, h, w = images.shape
    margin = lowpass.shape[0] // 4  # output border the down-sampling filter reads from
    inverse = torch.linalg.inv(matrix.double()).float()
    beta, gamma = _resampling_grid(tuple(lowpass.double().tolist()))

    # Centres of the 2x samples the down-sampler turns into output pixels (with margin): sample k
    # lies at output pixel (k - gamma) / 2 - margin; in centred coordinates.
    out_w, out_h = 2 * (w + 2 * margin), 2 * (h + 2 * margin)
    qx = (torch.arange(out_w, device=images.device) - gamma) / 2 - margin - (w - 1) / 2
    qy = (torch.arange(out_h, device=images.device) - gamma) / 2 - margin - (h - 1) / 2
    gy, gx = torch.meshgrid(qy, qx, indexing="ij")
    q = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(1, -1, 3)
    src = (q @ inverse.transpose(1, 2))[..., :2]  # [N, out_h * out_w, xy], centred source coords

    # Mirror-pad the source so every sample position (plus filter support) lies inside it; at most
    # one mirrored copy per side bounds the cost (rare samples reaching further see zeros there).
    half = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=images.device)
    reach = torch.cat([-src.amin(dim=(0, 1)) - half, src.amax(dim=(0, 1)) - half])  # x0, y0, x1, y1
    limit = torch.tensor([w - 1, h - 1] * 2, device=images.device)
    px0, py0, px1, py1 = torch.minimum(reach.clamp(min=0).ceil() + margin + 1, limit).int().tolist()
    padded = upsample2d(reflect_pad(images, px0, px1, py0, py1), lowpass)

    # Centred source coordinate -> index j of the 2x image (j / 2 + beta = padded pixel) -> grid_sample's
    # [-1, 1] (align_corners=False).
    up_h, up_w = padded.shape[2:]
    jx = 2 * (src[..., 0] + (w - 1) / 2 + px0 - beta)
    jy = 2 * (src[..., 1] + (h - 1) / 2 + py0 - beta)
    grid = torch.stack([(2 * jx + 1) / up_w - 1, (2 * jy + 1) / up_h - 1], dim=-1).reshape(n, out_h, out_w, 2)
    sampled = F.grid_sample(padded, grid.to(padded.dtype), mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    out = downsample2d(sampled, lowpass, flip_filter=True)
    return out[:, :, margin:margin + h, margin:margin + w]


# ----------------------------------------------------------------------------- colour

_LUMA_AXIS = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3.0)


def color_matrix_apply(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply per-sample 4x4 homogeneous RGB matrices; grayscale images use the mean RGB response."""
    n, c, h, w = images.shape
    flat = images.reshape(n, c, h * w)
    matrix = matrix.to(images.dtype)
    if c == 3:
        out = matrix[:, :3, :3] @ flat + matrix[:, :3, 3:]
    elif c == 1:
        mean_row = matrix[:, :3, :].mean(dim=1, keepdim=True)  # gray in -> mean of RGB out
        out = flat * mean_row[:, :, :3].sum(dim=2, keepdim=True) + mean_row[:, :, 3:]
    else:
        raise ValueError(f"colour augmentation needs 1 or 3 channels, got {c}")
    return out.reshape(n, c, h, w)


def _eye4(n: int, device) -> torch.Tensor:
    return torch.eye(4, device=device).repeat(n, 1, 1)


def brightness_matrix(b: torch.Tensor) -> torch.Tensor:
    """Add b to every channel."""
    m = _eye4(b.shape[0], b.device)
    m[:, :3, 3] = b[:, None]
    return m


def contrast_matrix(c: torch.Tensor) -> torch.Tensor:
    """Scale every channel by c around 0 (mid-gray in [-1, 1] images)."""
    m = _eye4(c.shape[0], c.device)
    m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = c
    return m


def lumaflip_matrix(flip: torch.Tensor) -> torch.Tensor:
    """Householder reflection of the luma (gray) axis where flip == 1; identity where 0."""
    v = _LUMA_AXIS.to(flip.device)
    return _eye4(flip.shape[0], flip.device) - 2 * torch.outer(v, v) * flip.view(-1, 1, 1)


def hue_matrix(theta: torch.Tensor) -> torch.Tensor:
    """Rotate colours by theta around the luma axis (Rodrigues), keeping grays gray."""
    v = _LUMA_AXIS.to(theta.device)[:3]
    cross = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], device=theta.device)
    c, s = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    m = _eye4(theta.shape[0], theta.device)
    m[:, :3, :3] = c * torch.eye(3, device=theta.device) + s * cross + (1 - c) * torch.outer(v, v)
    return m


def saturation_matrix(s: torch.Tensor) -> torch.Tensor:
    """Keep the luma component, scale the chroma (orthogonal to the luma axis) by s."""
    v = _LUMA_AXIS.to(s.device)
    vvt = torch.outer(v, v)
    m = _eye4(s.shape[0], s.device)
    m[:, :3, :3] = vvt[:3, :3] + (torch.eye(3, device=s.device) - vvt[:3, :3]) * s.view(-1, 1, 1)
    return m


# ----------------------------------------------------------------------------- the pipeline

class GeometryDraws(NamedTuple):
    """Per-sample geometric ops: blit parameters (long [N]) and the general affine part [N, 3, 3]."""

    flip: torch.Tensor
    turns: torch.Tensor
    shift_x: torch.Tensor
    shift_y: torch.Tensor
    general: torch.Tensor
    blit_fired: torch.Tensor
    general_fired: torch.Tensor


class AugmentPipe(torch.nn.Module):
    """The 18 ADA augmentations; kwargs are op strengths (multiplying p) and their ranges."""

    def __init__(self, xflip=0, rotate90=0, xint=0, xint_max=0.125,
                 scale=0, rotate=0, aniso=0, xfrac=0, scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125,
                 brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0,
                 brightness_std=0.2, contrast_std=0.5, hue_max=1, saturation_std=1,
                 imgfilter=0, imgfilter_bands=(1, 1, 1, 1), imgfilter_std=1,
                 noise=0, cutout=0, noise_std=0.1, cutout_size=0.5):
        super().__init__()
        self.register_buffer("p", torch.zeros([]))
        self.xflip, self.rotate90, self.xint, self.xint_max = float(xflip), float(rotate90), float(xint), float(xint_max)
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.scale_std, self.rotate_max = float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        self.imgfilter, self.imgfilter_bands = float(imgfilter), [float(b) for b in imgfilter_bands]
        self.imgfilter_std = float(imgfilter_std)
        self.noise, self.cutout, self.noise_std, self.cutout_size = float(noise), float(cutout), float(noise_std), float(cutout_size)
        fbank = band_filters(SYM2, num_bands=len(BAND_EXPECTED_POWER))
        if len(self.imgfilter_bands) != fbank.shape[0]:
            raise ValueError(f"imgfilter_bands needs {fbank.shape[0]} entries, got {len(self.imgfilter_bands)}")
        self.register_buffer("Hz_geom", setup_filter(SYM6))
        self.register_buffer("Hz_fbank", torch.as_tensor(fbank, dtype=torch.float32))

    def extra_repr(self) -> str:
        on = [k for k in ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast",
                          "lumaflip", "hue", "saturation", "imgfilter", "noise", "cutout") if getattr(self, k)]
        return f"p={float(self.p):.4f}, ops={','.join(on) or 'none'}"

    # Random draws: one per sample, `fire` says where an op with this strength happens.
    def _fire(self, n: int, strength: float, device) -> torch.Tensor:
        return torch.rand(n, device=device) < self.p * strength

    @staticmethod
    def _replace(images: torch.Tensor, fired: torch.Tensor, transform: Callable) -> torch.Tensor:
        """Run `transform(subset, index)` on the fired samples only; others pass through untouched."""
        index = fired.nonzero().squeeze(1)
        if index.numel() == 0:
            return images
        return images.index_copy(0, index, transform(images.index_select(0, index), index))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
        if float(self.p) == 0:
            return images
        images = self._geometry_stage(images)
        images = self._color_stage(images)
        images = self._filter_stage(images)
        images = self._noise_stage(images)
        return self._cutout_stage(images)

    def draw_geometry(self, n: int, h: int, w: int, device) -> GeometryDraws:
        """The random geometric ops of n samples: blit parameters and the general affine part."""
        zero = torch.zeros(n, dtype=torch.long, device=device)
        f_flip, f_rot, f_int = (self._fire(n, s, device) for s in (self.xflip, self.rotate90, self.xint))
        flip = torch.where(f_flip, torch.randint(0, 2, (n,), device=device), zero)
        turns = torch.where(f_rot, torch.randint(0, 4, (n,), device=device), zero)
        t = (torch.rand(n, 2, device=device) * 2 - 1) * self.xint_max
        sx = torch.where(f_int, torch.round(t[:, 0] * w).long(), zero)
        sy = torch.where(f_int, torch.round(t[:, 1] * h).long(), zero)

        one = torch.ones(n, device=device)
        f_scale = self._fire(n, self.scale, device)
        s = torch.where(f_scale, torch.exp2(torch.randn(n, device=device) * self.scale_std), one)
        # Pre- and post-rotation each fire with q such that 1 - (1 - q)^2 = p * rotate.
        q = 1 - math.sqrt(min(max(1 - float(self.p) * self.rotate, 0.0), 1.0))
        f_pre = torch.rand(n, device=device) < q
        pre = torch.where(f_pre, (torch.rand(n, device=device) * 2 - 1) * math.pi * self.rotate_max, 0 * one)
        f_aniso = self._fire(n, self.aniso, device)
        a = torch.where(f_aniso, torch.exp2(torch.randn(n, device=device) * self.aniso_std), one)
        f_post = torch.rand(n, device=device) < q
        post = torch.where(f_post, (torch.rand(n, device=device) * 2 - 1) * math.pi * self.rotate_max, 0 * one)
        f_frac = self._fire(n, self.xfrac, device)
        t = torch.where(f_frac[:, None], torch.randn(n, 2, device=device) * self.xfrac_std, 0 * one[:, None])
        general = (translation_matrix(t[:, 0] * w, t[:, 1] * h) @ rotation_matrix(post) @ scale_matrix(a, 1 / a)
                   @ rotation_matrix(pre) @ scale_matrix(s, s))
        return GeometryDraws(flip, turns, sx, sy, general, blit_fired=f_flip | f_rot | f_int,
                             general_fired=f_scale | f_pre | f_aniso | f_post | f_frac)

    def _geometry_stage(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        g = self.draw_geometry(n, h, w, x.device)
        # Blits happen first: matrix = general @ blit, resampled once from the original.
        matrix = g.general @ blit_matrix(g.flip, g.turns, g.shift_x, g.shift_y).to(x.device)
        x = self._replace(x, g.general_fired, lambda sub, i: affine_resample(sub, matrix[i], self.Hz_geom))
        return self._replace(x, g.blit_fired & ~g.general_fired,
                             lambda sub, i: blit(sub, g.flip[i], g.turns[i], g.shift_x[i], g.shift_y[i]))

    def _color_stage(self, x: torch.Tensor) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        f_b, f_c, f_l, f_h, f_s = (self._fire(n, s, dev) for s in
                                   (self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation))
        zero, one = torch.zeros(n, device=dev), torch.ones(n, device=dev)
        b = torch.where(f_b, torch.randn(n, device=dev) * self.brightness_std, zero)
        c = torch.where(f_c, torch.exp2(torch.randn(n, device=dev) * self.contrast_std), one)
        flip = torch.where(f_l, torch.randint(0, 2, (n,), device=dev).float(), zero)
        theta = torch.where(f_h, (torch.rand(n, device=dev) * 2 - 1) * math.pi * self.hue_max, zero)
        s = torch.where(f_s, torch.exp2(torch.randn(n, device=dev) * self.saturation_std), one)
        matrix = (saturation_matrix(s) @ hue_matrix(theta) @ lumaflip_matrix(flip)
                  @ contrast_matrix(c) @ brightness_matrix(b))
        return self._replace(x, f_b | f_c | f_l | f_h | f_s, lambda sub, i: color_matrix_apply(sub, matrix[i]))

    def band_gains(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample band gains [N, bands] and which bands fired [N, bands].

        As in the method, each band on its own draws a lognormal gain (where it fires), its gain vector
        is normalised to keep the assumed 1/f power, and the bands' vectors multiply: one band keeps the
        power exactly, several keep it only on average.
        """
        expected = torch.tensor(BAND_EXPECTED_POWER, device=device)
        fired = torch.stack([self._fire(n, self.imgfilter * b, device) for b in self.imgfilter_bands], dim=1)
        draws = torch.exp2(torch.randn(n, len(expected), device=device) * self.imgfilter_std)
        gains = torch.ones(n, len(expected), device=device)
        for band in range(len(expected)):
            t = torch.ones_like(gains)
            t[:, band] = torch.where(fired[:, band], draws[:, band], 1.0)
            gains = gains * t / (expected * t.square()).sum(dim=1, keepdim=True).sqrt()
        return gains, fired

    def _filter_stage(self, x: torch.Tensor) -> torch.Tensor:
        if self.imgfilter == 0:
            return x
        gains, fired = self.band_gains(x.shape[0], x.device)
        fired = fired.any(dim=1)
        kernels = gains @ self.Hz_fbank  # [N, taps], symmetric: separable, no flip needed

        def apply(sub, i):
            m, c, h, w = sub.shape
            k = kernels[i].to(sub.dtype).repeat_interleave(c, dim=0)[:, None, None, :]  # [m*c, 1, 1, taps]
            r = k.shape[-1] // 2
            y = reflect_pad(sub, r, r, r, r).reshape(1, m * c, h + 2 * r, w + 2 * r)
            y = F.conv2d(y, k, groups=m * c)
            y = F.conv2d(y, k.transpose(2, 3), groups=m * c)
            return y.reshape(m, c, h, w)
        return self._replace(x, fired, apply)

    def _noise_stage(self, x: torch.Tensor) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        fired = self._fire(n, self.noise, dev)
        sigma = torch.randn(n, device=dev).abs() * self.noise_std
        return self._replace(x, fired, lambda sub, i: sub + torch.randn_like(sub) * sigma[i].view(-1, 1, 1, 1))

    def _cutout_stage(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device
        fired = self._fire(n, self.cutout, dev)
        centre = torch.rand(n, 2, device=dev)

        def apply(sub, i):
            cx, cy = centre[i, 0].view(-1, 1, 1, 1), centre[i, 1].view(-1, 1, 1, 1)
            xs = ((torch.arange(w, device=dev) + 0.5) / w).view(1, 1, 1, w)
            ys = ((torch.arange(h, device=dev) + 0.5) / h).view(1, 1, h, 1)
            inside = ((xs - cx).abs() < self.cutout_size / 2) & ((ys - cy).abs() < self.cutout_size / 2)
            return sub * (~inside).to(sub.dtype)
        return self._replace(x, fired, apply)


# ----------------------------------------------------------------------------- the ADA heuristic

class AdaptiveAugment:
    """Tune `pipe.p` from r_t = E[sign(D(real))]: more augmentation while D over-trusts reals.

    Call `accumulate(real_logits)` each step and `update(batch_size)` every `interval` steps,
    with the global batch size. For multi-GPU training pass `reduce`, a function that sums the
    2-element stats tensor [sum of signs, count] across ranks and returns it, e.g.
    `lambda t: (torch.distributed.all_reduce(t), t)[1]`; every rank then applies the same step.
    """

    def __init__(self, pipe: AugmentPipe, target: float = 0.6, interval: int = 4, speed_kimg: float = 500,
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if interval < 1 or speed_kimg <= 0:
            raise ValueError("interval must be >= 1 and speed_kimg > 0")
        self.pipe, self.target, self.interval, self.speed_kimg = pipe, float(target), int(interval), float(speed_kimg)
        self.reduce = reduce
        self.stats = torch.zeros(2, dtype=torch.float64, device=pipe.p.device)
        self.rt: float | None = None

    @property
    def p(self) -> float:
        return float(self.pipe.p)

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add the signs of D's logits on (augmented) reals; no device sync."""
        logits = real_logits.detach()
        self.stats = self.stats.to(logits.device)
        self.stats[0] += torch.sign(logits).sum().double()
        self.stats[1] += logits.numel()

    def update(self, batch_size: int) -> float | None:
        """Step p by ±batch_size*interval/(speed_kimg*1000) toward r_t = target; returns r_t (None if no data)."""
        stats = self.reduce(self.stats.clone()) if self.reduce is not None else self.stats
        total, count = (float(v) for v in stats)
        self.stats = torch.zeros_like(self.stats)
        if count == 0:
            return None
        self.rt = total / count
        step = np.sign(self.rt - self.target) * batch_size * self.interval / (self.speed_kimg * 1000)
        self.pipe.p.copy_(torch.clamp(self.pipe.p + float(step), min=0))
        return self.rt

    def state_dict(self) -> dict:
        return {"p": self.p, "rt": self.rt, "stats": self.stats.tolist(), "target": self.target,
                "interval": self.interval, "speed_kimg": self.speed_kimg}

    def load_state_dict(self, state: dict) -> None:
        self.pipe.p.fill_(float(state["p"]))
        self.rt = state.get("rt")
        self.stats = torch.tensor(state.get("stats", [0.0, 0.0]), dtype=torch.float64, device=self.pipe.p.device)
        self.target = float(state.get("target", self.target))
        self.interval = int(state.get("interval", self.interval))
        self.speed_kimg = float(state.get("speed_kimg", self.speed_kimg))
