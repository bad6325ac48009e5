"""Training speed (sec/kimg) and peak GPU memory, measured by running the real train.py on random images.

The first tick (compilation, caches, grids) is dropped; the table shows the median of the rest.

    python benchmarks/bench_train_step.py                      # CPU configs
    python benchmarks/bench_train_step.py --configs paper256   # on a GPU: 256 px, batch 32, paper256
"""
from __future__ import annotations

import json
import pathlib
import statistics
import sys
import tempfile

import click
import numpy as np
import PIL.Image
import torch
from click.testing import CliRunner

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import train  # noqa: E402

# name -> (resolution, train.py flags, kimg per tick)
CONFIGS = {
    "tiny16": (16, ["--cbase", "128", "--cmax", "16", "--zdim", "16", "--map", "2", "--batch", "4"], 0.008),
    "small32": (32, ["--cbase", "1024", "--cmax", "64", "--zdim", "64", "--map", "2", "--batch", "8"], 0.016),
    "lite64": (64, ["--cbase", "4096", "--cmax", "128", "--zdim", "128", "--map", "2", "--batch", "16"], 0.032),
    "default64": (64, ["--cbase", "8192", "--cmax", "256", "--zdim", "256", "--map", "4", "--batch", "16"], 0.032),
    "paper256": (256, ["--cfg", "paper256", "--batch", "32"], 1.0),
    "paper256-fp32": (256, ["--cfg", "paper256", "--batch", "32", "--fp32"], 1.0),
    "t4-256": (256, ["--cfg", "t4"], 1.0),
}


def make_images(root: pathlib.Path, res: int, n: int = 64) -> pathlib.Path:
    root.mkdir(parents=True)
    rnd = np.random.RandomState(0)
    for i in range(n):
        PIL.Image.fromarray(rnd.randint(0, 256, (res, res, 3), dtype=np.uint8)).save(root / f"{i:04d}.png")
    return root


def measure(name: str, ticks: int, workers: int, cpu: bool) -> dict:
    res, flags, tick = CONFIGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        data = make_images(pathlib.Path(tmp) / f"bench{res}", res)
        args = ["--outdir", f"{tmp}/runs", "--data", str(data), "--kimg", str(tick * (ticks + 1)), "--tick", str(tick),
                "--snap", "1000", "--metrics", "none", "--workers", str(workers), *flags] + (["--cpu"] if cpu else [])
        result = CliRunner().invoke(train.main, args, catch_exceptions=False)
        if result.exit_code != 0:
            raise RuntimeError(result.output)
        (run,) = pathlib.Path(f"{tmp}/runs").iterdir()
        stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()][1:]
    mem = [s["gpu_mem_gb"] for s in stats if s.get("gpu_mem_gb") is not None]
    return {"config": name, "res": res, "sec_per_kimg": statistics.median(s["sec_per_kimg"] for s in stats),
            "peak_gpu_gb": max(mem) if mem else None, "ticks": len(stats)}


@click.command()
@click.option("--configs", default="tiny16,small32", show_default=True,
              help=f"Comma-separated, from: {', '.join(CONFIGS)}.")
@click.option("--ticks", type=int, default=3, show_default=True, help="Timed ticks per config (after one warm-up).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader workers.")
@click.option("--cpu", is_flag=True, help="Stay on the CPU even when a GPU is present.")
def main(configs, ticks, threads, workers, cpu):
    torch.set_num_threads(threads)
    device = "cpu" if cpu or not torch.cuda.is_available() else torch.cuda.get_device_name()
    print(f"device: {device}, torch {torch.__version__}, {threads} CPU thread(s)")
    print(f"{'config':<16}{'res':>5}{'sec/kimg':>12}{'peak GPU GB':>13}{'ticks':>7}")
    for name in configs.split(","):
        r = measure(name.strip(), ticks, workers, cpu)
        mem = f"{r['peak_gpu_gb']:.2f}" if r["peak_gpu_gb"] is not None else "-"
        print(f"{r['config']:<16}{r['res']:>5}{r['sec_per_kimg']:>12.1f}{mem:>13}{r['ticks']:>7}", flush=True)


if __name__ == "__main__":
    main()
