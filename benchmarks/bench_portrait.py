"""What portrait networks cost on a CPU: G forward and one training step, 64x64 vs 64x48 vs 128x96 (HxW).

  python benchmarks/bench_portrait.py                        # the default model's size, batch 16, 1 thread
  python benchmarks/bench_portrait.py --shapes 64x64,64x48 --repeats 9 --threads 2

Networks come from train.py's own option resolution (`resolve_options`) with the default model's widths
(--cbase 2048 --cmax 128 --zdim 128 --map 2) and the shape's base; a step is the loss's own phases
(training/loss.py) with bgc augmentation at p 0.2: G main + D main + 1/4 G reg + 1/16 D reg (the lazy
intervals). One process; the shapes are timed interleaved (a shared machine slows them alike) and the
table gives medians, s/kimg, and each shape's cost and pixel count relative to the first shape.
"""
from __future__ import annotations

import pathlib
import statistics
import sys
import time

import click
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from stylegan2.networks import Discriminator, Generator  # noqa: E402
from stylegan2.shapes import parse_resolution, network_shape  # noqa: E402
from training.augment import AUGPIPE_PRESETS, AugmentPipe  # noqa: E402
from training.config import TrainArgs, resolve_options  # noqa: E402
from training.loss import StyleGAN2Loss  # noqa: E402

LAZY_SHARE = {"Gmain": 1, "Dmain": 1, "Greg": 1 / 4, "Dreg": 1 / 16}
DEFAULT_MODEL = dict(cbase=2048, cmax=128, zdim=128, map_layers=2)


def build(shape: tuple[int, int], batch: int):
    resolution, base_shape = network_shape(*shape)
    opts = resolve_options(TrainArgs(data="bench", batch=batch, **DEFAULT_MODEL), resolution=resolution,
                           num_channels=3, label_dim=0, dataset_name="bench", base_shape=base_shape)
    torch.manual_seed(0)
    G, D = Generator(**opts.G_kwargs).train(), Discriminator(**opts.D_kwargs).train()
    pipe = AugmentPipe(**AUGPIPE_PRESETS["bgc"]).train().requires_grad_(False)
    pipe.p.fill_(0.2)
    loss = StyleGAN2Loss(G, D, augment_pipe=pipe, **opts.loss)
    c = torch.zeros(batch, 0)
    inputs = (torch.rand(batch, 3, *shape) * 2 - 1, c, torch.randn(batch, G.z_dim), c)
    return G, loss, inputs


def time_forward(G, batch: int) -> float:
    z = torch.randn(batch, G.z_dim)
    G.eval()
    with torch.no_grad():
        start = time.perf_counter()
        G(z, None, noise_mode="const")
        seconds = time.perf_counter() - start
    G.train()
    return seconds


def time_step(loss, inputs) -> float:
    total = 0.0
    for phase, share in LAZY_SHARE.items():
        for net in (loss.G, loss.D):
            net.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss.accumulate_gradients(phase, *inputs, gain=1.0)
        total += share * (time.perf_counter() - start)
    return total


@click.command()
@click.option("--shapes", default="64x64,64x48,128x96", show_default=True, help="HEIGHTxWIDTH list; the first is the baseline.")
@click.option("--batch", default=16, show_default=True, help="Images per step (the default model's batch).")
@click.option("--repeats", default=5, show_default=True, help="Timed rounds (after one warm-up round).")
@click.option("--threads", default=1, show_default=True, help="torch threads.")
def main(shapes, batch, repeats, threads):
    torch.set_num_threads(threads)
    shapes = [parse_resolution(s) for s in shapes.split(",")]
    setups = {shape: build(shape, batch) for shape in shapes}
    forward = {shape: [] for shape in shapes}
    step = {shape: [] for shape in shapes}
    for round_ in range(repeats + 1):
        for shape, (G, loss, inputs) in setups.items():
            f, s = time_forward(G, batch), time_step(loss, inputs)
            if round_:  # the first round warms caches and allocators
                forward[shape].append(f)
                step[shape].append(s)
    base = shapes[0]
    base_f, base_s = statistics.median(forward[base]), statistics.median(step[base])
    print(f"default model's widths (cbase 2048, cmax 128, zdim 128, map 2), batch {batch}, {threads} thread(s), "
          f"median of {repeats}")
    print(f"{'HxW':>8} {'pixels':>7} {'G fwd ms':>9} {'step ms':>8} {'s/kimg':>7} {'pixels x':>8} {'fwd x':>6} {'step x':>6}")
    for shape in shapes:
        f, s = statistics.median(forward[shape]), statistics.median(step[shape])
        pixels = shape[0] * shape[1]
        print(f"{shape[0]:>4}x{shape[1]:<3} {pixels:>7} {f * 1e3:>9.1f} {s * 1e3:>8.1f} {s / batch * 1e3:>7.1f} "
              f"{pixels / (base[0] * base[1]):>8.2f} {f / base_f:>6.2f} {s / base_s:>6.2f}")


if __name__ == "__main__":
    main()
