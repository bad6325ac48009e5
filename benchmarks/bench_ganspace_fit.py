"""Time `ganspace fit` (z -> w mapping included) for several sample counts and estimators.

Uses a randomly initialised generator with the mapping network of the published configs
(8 layers, z/w 512) unless told otherwise; the synthesis network is never run by fit.
Prints a Markdown table: samples, estimator, seconds, samples/s, and the split between
mapping and estimation.

    .venv/bin/python benchmarks/bench_ganspace_fit.py --samples 100000,1000000
"""
import time

import click
import numpy as np
import torch

from ganspace.fit import WSampler, find
from ganspace.sampling import iter_w
from stylegan2.networks import Generator


def build_generator(w_dim: int, mapping_layers: int, device: str):
    torch.manual_seed(0)
    G = Generator(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=256, img_channels=3,
                  mapping_kwargs=dict(num_layers=mapping_layers),
                  synthesis_kwargs=dict(channel_base=1024, channel_max=32, num_fp16_res=0))
    return G.eval().requires_grad_(False).to(device)


@click.command()
@click.option("--samples", default="100000,1000000", show_default=True, help="Comma-separated sample counts.")
@click.option("--estimators", default="pca", show_default=True, help="Comma-separated: pca, ipca.")
@click.option("--components", "num_components", type=int, default=80, show_default=True)
@click.option("--w-dim", type=int, default=512, show_default=True)
@click.option("--mapping-layers", type=int, default=8, show_default=True)
@click.option("--batch", "batch_size", type=int, default=10_000, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def main(samples, estimators, num_components, w_dim, mapping_layers, batch_size, device):
    G = build_generator(w_dim, mapping_layers, device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"w_dim {w_dim}, {mapping_layers} mapping layers, batch {batch_size}, K {num_components}\n")
    print("| samples | estimator | total s | mapping only s | samples/s |")
    print("|---:|---|---:|---:|---:|")
    for n in [int(s) for s in samples.split(",")]:
        start = time.perf_counter()
        for _ in iter_w(G, n, batch_size, seed=0):
            pass
        mapping_s = time.perf_counter() - start
        for estimator in estimators.split(","):
            start = time.perf_counter()
            comps = find(estimator, G, num_components, WSampler(G, batch_size), num_samples=n, stdev_samples=10_000)
            total = time.perf_counter() - start
            assert np.isfinite(comps.comp).all()
            print(f"| {n:,} | {estimator} | {total:.1f} | {mapping_s:.1f} | {n / total:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
