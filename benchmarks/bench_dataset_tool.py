"""Images per second of dataset_tool on generated photos of mixed sizes, for 1 and 2 workers.

    .venv/bin/python benchmarks/bench_dataset_tool.py [--count 1000] [--resolution 256] [--workers 1,2]

The photos are JPEGs like shop shots (300 to 2000 px on the long side, portrait
and landscape, some PNG); they are generated once into a temporary folder.
"""
from __future__ import annotations

import os
import pathlib
import platform
import resource
import tempfile
import time

import click
import numpy as np
from PIL import Image
from tqdm import tqdm

from fashion_data.pipeline import BuildOptions, build_dataset


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers: comparable even on a busy shared machine."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def make_photos(folder: pathlib.Path, count: int, seed: int = 0) -> int:
    """Smooth random 'garments' with some texture; returns total bytes written."""
    rng = np.random.RandomState(seed)
    texture = Image.effect_noise((2000, 2000), 40).convert("RGB")   # sensor-like grain, cropped per photo
    total = 0
    for i in tqdm(range(count), desc="generating photos", unit="img"):
        long_side = int(rng.randint(300, 2001))
        short_side = int(long_side * rng.uniform(0.6, 1.0))
        size = (short_side, long_side) if rng.rand() < 0.7 else (long_side, short_side)
        grid = rng.randint(0, 256, (6, 6, 3)).astype(np.uint8)
        image = Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC)
        image = Image.blend(image, texture.crop((0, 0) + size), 0.15)
        path = folder / f"{i // 100:03d}" / (f"photo_{i:05d}.png" if i % 10 == 0 else f"photo_{i:05d}.jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90, compress_level=1)
        total += path.stat().st_size
    return total


@click.command()
@click.option("--count", default=1000, show_default=True, help="Number of generated photos.")
@click.option("--resolution", default=256, show_default=True)
@click.option("--workers", default="1,2", show_default=True, help="Comma-separated worker counts to time.")
@click.option("--transform", default="pad", show_default=True)
def main(count, resolution, workers, transform):
    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        megabytes = make_photos(scratch / "photos", count) / 1e6
        rows = []
        for n in [int(w) for w in workers.split(",")]:
            started, cpu_started = time.perf_counter(), cpu_seconds()
            report = build_dataset(BuildOptions(source=str(scratch / "photos"), dest=str(scratch / f"out{n}.zip"),
                                                resolution=resolution, transform=transform, workers=n), progress=True)
            seconds = time.perf_counter() - started
            cpu = cpu_seconds() - cpu_started
            rows.append((n, report.written, seconds, report.written / seconds, cpu / report.written * 1000,
                         os.path.getsize(scratch / f"out{n}.zip") / 1e6))
    print(f"\n{count} photos ({megabytes:.0f} MB), {resolution}px, --transform {transform}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'workers':>7} | {'written':>7} | {'seconds':>7} | {'img/s':>6} | {'CPU ms/img':>10} | {'zip MB':>6}")
    for n, written, seconds, rate, cpu_ms, size in rows:
        print(f"{n:>7} | {written:>7} | {seconds:>7.1f} | {rate:>6.1f} | {cpu_ms:>10.1f} | {size:>6.1f}")


if __name__ == "__main__":
    main()
