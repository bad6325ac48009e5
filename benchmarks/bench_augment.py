"""Cost of ADA augmentation per training step, and of the FID/KID math at full size.

    .venv/bin/python benchmarks/bench_augment.py [--batch 32] [--resolutions 64,256] [--device cpu] [--repeats 3]

Part 1 times AugmentPipe forward + backward (what a D step pays, fakes need the gradient)
for several presets and p. Part 2 times the metric math on Inception-sized features
(2048-d): streaming statistics of 50k vectors, the Fréchet distance, and KID's 100 subsets.
Prints tables; no pass/fail.
"""
from __future__ import annotations

import platform
import sys
import time

import click
import numpy as np
import torch

from training.augment import AUGPIPE_PRESETS, AugmentPipe
from training.metrics import FeatureStats, frechet_distance, kid_from_features


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of `fn()` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_pipe(batch: int, resolutions: list[int], device: torch.device, repeats: int) -> None:
    print(f"\nAugmentPipe forward+backward, batch {batch}, median of {repeats} (ms)")
    cases = [("bgc", 0.0), ("bgc", 0.2), ("bgc", 0.6), ("bgc", 1.0), ("bgcfnc", 0.6), ("blit", 1.0), ("color", 1.0)]
    print(f"{'preset':<8} {'p':>4} " + " ".join(f"{f'{r}px':>9}" for r in resolutions))
    for preset, p in cases:
        pipe = AugmentPipe(**AUGPIPE_PRESETS[preset]).to(device)
        pipe.p.fill_(p)
        cells = []
        for res in resolutions:
            x = torch.randn(batch, 3, res, res, device=device, requires_grad=True)

            def step():
                pipe(x).square().mean().backward()
            cells.append(f"{timed(step, repeats, device) * 1000:9.1f}")
        print(f"{preset:<8} {p:>4.1f} " + " ".join(cells))


def bench_metric_math(num: int, dim: int, repeats: int) -> None:
    print(f"\nMetric math on {num} x {dim} float32 features (s)")
    rng = np.random.RandomState(0)
    real = rng.randn(num, dim).astype(np.float32)
    fake = (rng.randn(num, dim) * 1.1 + 0.05).astype(np.float32)

    def stream():
        stats = FeatureStats()
        for chunk in np.array_split(real, max(num // 256, 1)):
            stats.append(chunk)
        return stats
    t_stream = timed(stream, repeats, torch.device("cpu"))
    a, b = stream(), FeatureStats.of(fake)
    t_fid = timed(lambda: frechet_distance(a.mean, a.cov, b.mean, b.cov), repeats, torch.device("cpu"))
    t_kid = timed(lambda: kid_from_features(real, fake), 1, torch.device("cpu"))
    print(f"{'streaming mean/cov (batches of 256)':<40} {t_stream:8.2f}")
    print(f"{'Fréchet distance (two eigh)':<40} {t_fid:8.2f}")
    print(f"{'KID (100 subsets of 1000)':<40} {t_kid:8.2f}")


@click.command()
@click.option("--batch", default=32, show_default=True, help="Images per augmented batch.")
@click.option("--resolutions", default="64,256", show_default=True, help="Comma-separated square sizes.")
@click.option("--device", default="cpu", show_default=True, help="'cpu' or 'cuda'.")
@click.option("--repeats", default=3, show_default=True, help="Timed repeats per cell (median reported).")
@click.option("--features", default=50_000, show_default=True, help="Feature vectors for the metric math (0 skips).")
def main(batch, resolutions, device, repeats, features):
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as they finish, even when piped
    device = torch.device(device)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, device {device}")
    bench_pipe(batch, [int(r) for r in resolutions.split(",")], device, repeats)
    if features:
        bench_metric_math(features, 2048, repeats=1)


if __name__ == "__main__":
    main()
