"""Find the W (or W+) code, and the noise maps, whose image is closest to a photo.

The method of the official StyleGAN2(-ADA) projector (Karras et al. 2020, "Analyzing and improving the
image quality of StyleGAN", section 5), written from the paper and its published hyper-parameters:

* start at w_avg (the mean of ``w_avg_samples`` mapped z, for the photo's class on a conditional network);
* Adam on w and on every noise map, learning rate ramped up over the first 5 % of steps and down with a
  cosine over the last 25 %;
* Gaussian noise added to w, of scale σ_w · 0.05 · max(0, 1 − t / 0.75)², so the early steps explore
  instead of falling into the nearest basin (σ_w: the root of W's total variance);
* the noise maps re-normalised to zero mean and unit variance after every step, and penalised for spatial
  autocorrelation at every scale of their 2x pyramid (down to 8 px), weight 1e5, so that they cannot
  carry the picture themselves.

``w_plus=True`` optimises one w per layer (W+): a closer fit, at the cost of codes further from what
the mapping network produces (edits then behave a little less predictably).  The best code seen is
kept, so an interrupted run (Ctrl-C) still returns a usable result.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Callable

import numpy as np
import torch

from stylegan2 import compiled
from stylegan2.render import class_labels, device_of

ProgressFn = Callable[[int, int, float], None]   # (step, num_steps, distance)


@dataclasses.dataclass
class ProjectOptions:
    """The official projector's defaults; ``w_plus`` and ``optimize_noise`` are ours to switch."""

    num_steps: int = 1000
    w_avg_samples: int = 10_000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    w_plus: bool = False
    optimize_noise: bool = True
    seed: int = 303

    def __post_init__(self):
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {self.num_steps}")
        if self.w_avg_samples < 2:
            raise ValueError(f"w_avg_samples must be at least 2, got {self.w_avg_samples}")


@dataclasses.dataclass
class Projection:
    """The best code found: ``ws`` [num_ws, w_dim], the noise maps it was rendered with, its distance."""

    ws: torch.Tensor
    noise: dict[str, torch.Tensor]
    distance: float
    steps: int                 # optimisation steps actually run
    interrupted: bool = False
    frames: list[np.ndarray] = dataclasses.field(default_factory=list)   # uint8 HWC, when recorded


def noise_buffers(G) -> dict[str, torch.Tensor]:
    """The synthesis network's constant noise maps by buffer name (``b8.conv0.noise_const`` ...)."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")}


def with_noise(G, noise: dict[str, torch.Tensor]):
    """A copy of G whose constant noise maps are ``noise`` (the maps a projection was rendered with)."""
    G = copy.deepcopy(G)
    buffers = noise_buffers(G)
    unknown = sorted(set(noise) - set(buffers))
    if unknown:
        raise ValueError(f"noise maps {unknown[:3]} do not belong to this network")
    with torch.no_grad():
        for name, value in noise.items():
            if tuple(value.shape) != tuple(buffers[name].shape):
                raise ValueError(f"noise map {name} has shape {tuple(value.shape)}, "
                                 f"this network needs {tuple(buffers[name].shape)}")
            buffers[name].copy_(torch.as_tensor(value))
    return G


@torch.no_grad()
def w_statistics(G, class_idx=None, samples: int = 10_000, seed: int = 123) -> tuple[torch.Tensor, float]:
    """(w_avg [1, 1, w_dim], σ_w): mean of mapped z and the root of the summed per-dimension variance."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(samples, G.z_dim)).float().to(device_of(G))
    c = class_labels(G, class_idx, samples)
    w = torch.cat([G.mapping(zb, cb)[:, :1] for zb, cb in zip(z.split(2048), c.split(2048))]).double()
    w_avg = w.mean(dim=0, keepdim=True)
    w_std = float(((w - w_avg).square().sum() / samples).sqrt())
    return w_avg.float(), w_std


def learning_rate(t: float, options: ProjectOptions) -> float:
    """The official schedule at progress t in [0, 1): linear warm-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / options.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / options.lr_rampup_length)
    return options.initial_learning_rate * ramp


def noise_regularization(maps) -> torch.Tensor:
    """Squared autocorrelation of each map with its one-pixel shifts, at every 2x-pooled scale down to 8 px."""
    total = 0.0
    for v in maps:
        v = v[None, None]
        while True:
            total = total + (v * torch.roll(v, 1, dims=3)).mean().square() + (v * torch.roll(v, 1, dims=2)).mean().square()
            if v.shape[2] <= 8:
                break
            v = torch.nn.functional.avg_pool2d(v, 2)
    return total


def projection_step(G, distance: Callable[[torch.Tensor], torch.Tensor], noise: dict[str, torch.Tensor],
                    options: ProjectOptions) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """One step's forward, loss and backward: ``ws`` -> (distance, images), both detached; the gradients
    land on whatever ``ws`` came from and on the noise maps. The unit the compiled path compiles."""
    maps = list(noise.values())

    def step(ws: torch.Tensor):
        images = G.synthesis(ws, noise_mode="const")
        dist = distance(images).sum()
        loss = dist + options.regularize_noise_weight * noise_regularization(maps) if options.optimize_noise else dist
        loss.backward()
        return dist.detach(), images.detach()
    return step


def project(G, target: torch.Tensor, distance: Callable[[torch.Tensor], torch.Tensor],
            options: ProjectOptions | None = None, class_idx=None, progress: ProgressFn | None = None,
            record_every: int = 0, compile: bool | None = False) -> Projection:
    """Optimise a code for ``target`` ([1, C, H, W] in [-1, 1]); ``distance(images) -> [N]``.

    ``G`` is not modified (a copy carries the optimised noise maps).  Ctrl-C stops the search and
    returns the best code so far with ``interrupted=True``.  ``record_every`` > 0 keeps a
    side-by-side (target | current) frame every that many steps, for a progress video.
    ``compile``: run each step through torch.compile (``stylegan2.compiled.compile_step``; None: the
    switch, auto by step count). Off by default: the first compiled step waits for the compile (minutes).
    """
    options = options or ProjectOptions()
    G = copy.deepcopy(G).eval().requires_grad_(False)
    device = device_of(G)
    target = target.to(device)
    generator = torch.Generator(device="cpu").manual_seed(options.seed)
    w_avg, w_std = w_statistics(G, class_idx, options.w_avg_samples)
    num_ws = G.num_ws if options.w_plus else 1
    w_opt = w_avg.repeat(1, num_ws, 1).to(device).requires_grad_(True)

    noise = noise_buffers(G)
    params = [w_opt]
    if options.optimize_noise:
        with torch.no_grad():
            for buf in noise.values():
                buf.copy_(torch.randn(buf.shape, generator=generator))
                buf.requires_grad_(True)
        params += list(noise.values())
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=options.initial_learning_rate)

    best = Projection(ws=w_opt.detach().expand(1, G.num_ws, -1)[0].clone(),
                      noise={k: v.detach().clone() for k, v in noise.items()}, distance=math.inf, steps=0)
    target_u8 = _uint8(target)
    run_step = compiled.compile_step(projection_step(G, distance, noise, options), "the projector's step", compile,
                                     device, images=options.num_steps * compiled.STEP_RENDERS)
    step = 0
    try:
        for step in range(options.num_steps):
            t = step / options.num_steps
            noise_scale = w_std * options.initial_noise_factor * max(0.0, 1.0 - t / options.noise_ramp_length) ** 2
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(t, options)
            w_noise = torch.randn(w_opt.shape, generator=generator).to(device) * noise_scale
            ws = (w_opt + w_noise).expand(1, G.num_ws, -1)
            optimizer.zero_grad(set_to_none=True)
            dist, images = run_step(ws)
            if float(dist) < best.distance:
                best.ws, best.distance = ws.detach()[0].clone(), float(dist)
                best.noise = {k: v.detach().clone() for k, v in noise.items()}
            if record_every and step % record_every == 0:
                best.frames.append(np.concatenate([target_u8, _uint8(images)], axis=1))
            optimizer.step()
            if options.optimize_noise:
                with torch.no_grad():
                    for buf in noise.values():
                        buf -= buf.mean()
                        buf *= buf.square().mean().rsqrt()
            if progress is not None:
                progress(step + 1, options.num_steps, float(dist))
        step = options.num_steps
    except KeyboardInterrupt:
        best.interrupted = True
    best.steps = step
    if not best.interrupted:   # the last update has not been measured yet
        with torch.no_grad():
            ws = w_opt.detach().expand(1, G.num_ws, -1)
            images = G.synthesis(ws, noise_mode="const")
            dist = float(distance(images).sum())
        if dist < best.distance:
            best.ws, best.distance = ws[0].clone(), dist
            best.noise = {k: v.detach().clone() for k, v in noise.items()}
        if record_every:
            best.frames.append(np.concatenate([target_u8, _uint8(images)], axis=1))
    return best


def _uint8(images: torch.Tensor) -> np.ndarray:
    from stylegan2.render import to_uint8

    return to_uint8(images)[0]
