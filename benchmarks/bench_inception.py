"""Feature extraction speed: our Inception-v3 against torch.jit.load of the same archive, in one process.

  python benchmarks/bench_inception.py                     # 2 threads, batch 8, 64 px input
  python benchmarks/bench_inception.py --compile           # also torch.compile (first call compiles: minutes)
  python benchmarks/bench_inception.py --threads 1 --batch 16

The TorchScript module is the baseline (it is what the official detector runs); the benchmark is
the only place besides the tests that calls torch.jit.load, on the file `training.inception fetch` wrote.
Prints images per second (best of --rounds) and the ratio to the baseline; each variant takes the
same preprocessed 299×299 batch, and "ours, uint8 in" adds our resize from the input size.
"""
from __future__ import annotations

import time
import warnings

import click
import torch

from training.inception import FETCH_HINT, find_inception, load_inception, preprocess


def images_per_second(fn, x, rounds: int) -> float:
    with torch.no_grad():
        fn(x)  # warm-up (and compilation)
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - start)
    return len(x) / best


@click.command()
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False), help="Inception archive [fetched file].")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--size", type=int, default=64, show_default=True, help="Input resolution before the resize to 299.")
@click.option("--rounds", type=int, default=3, show_default=True)
@click.option("--compile", "with_compile", is_flag=True, help="Also time torch.compile of our layers.")
def main(path, threads, batch, size, rounds, with_compile):
    path = path or find_inception()
    if path is None:
        raise click.ClickException(f"no Inception-v3 weights: {FETCH_HINT}")
    torch.set_num_threads(threads)
    start = time.perf_counter()
    ours = load_inception(path)
    load_ours = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = torch.jit.load(str(path)).eval()
    load_reference = time.perf_counter() - start
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = preprocess(images)
    with torch.no_grad():
        error = ((ours.features(x) - reference(x)).abs().max() / reference(x).abs().max()).item()
    variants = {
        "torch.jit.load (baseline)": (reference, x),
        "ours (channels-last)": (ours.features, x),
        "ours (NCHW)": (lambda t: ours.layers(t.contiguous()).reshape(len(t), -1), x),
        f"ours, uint8 {size} px in": (ours, images),
    }
    if with_compile:
        compiled = torch.compile(ours.layers)
        variants["ours, torch.compile"] = (lambda t: compiled(t.contiguous(memory_format=torch.channels_last)), x)
    print(f"torch {torch.__version__}, {threads} threads, batch {batch}, input {size} px; "
          f"load: ours {load_ours:.1f} s, TorchScript {load_reference:.1f} s; max relative difference {error:.1e}")
    print(f"{'variant':<30}{'images/s':>10}{'vs baseline':>13}")
    baseline = None
    for name, (fn, inputs) in variants.items():
        rate = images_per_second(fn, inputs, rounds)
        baseline = baseline or rate
        print(f"{name:<30}{rate:>10.2f}{rate / baseline:>12.2f}x")


if __name__ == "__main__":
    main()
