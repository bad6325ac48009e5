"""Training speed (sec/kimg) and peak GPU memory, measured by running the real train.py on random images.

The first tick (compilation, caches, grids) is dropped; the table shows the median of the rest.

    python benchmarks/bench_train_step.py                      # CPU configs
    python benchmarks/bench_train_step.py --configs paper256   # on a GPU: 256 px, batch 32, paper256
    python benchmarks/bench_train_step.py --configs demo64 --layouts 1x1,1x2,2x1   # CPU: threads vs processes

Each config runs once per layout PROCESSESxTHREADS (processes are GPUs, or gloo processes on a CPU);
the "vs first" column is the speed-up over the first layout.
"""
from __future__ import annotations

import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

import click
import numpy as np
import PIL.Image
import torch

TRAIN_PY = pathlib.Path(__file__).resolve().parents[1] / "train.py"

# name -> (resolution, train.py flags, kimg per tick)
CONFIGS = {
    "tiny16": (16, ["--cbase", "128", "--cmax", "16", "--zdim", "16", "--map", "2", "--batch", "4"], 0.008),
    "small32": (32, ["--cbase", "1024", "--cmax", "64", "--zdim", "64", "--map", "2", "--batch", "8"], 0.016),
    "tiny64": (64, ["--cfg", "tiny"], 0.032),  # the --cfg tiny preset for a first CPU run
    "demo64": (64, ["--cbase", "2048", "--cmax", "128", "--zdim", "128", "--map", "2", "--batch", "16"], 0.128),
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


def measure(name: str, ticks: int, workers: int, cpu: bool, gpus: int = 1, threads: int = 1) -> dict:
    res, flags, tick = CONFIGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        data = make_images(pathlib.Path(tmp) / f"bench{res}", res)
        args = ["--outdir", f"{tmp}/runs", "--data", str(data), "--kimg", str(tick * (ticks + 1)), "--tick", str(tick),
                "--snap", "1000", "--metrics", "none", "--workers", str(workers), "--gpus", str(gpus),
                "--threads", str(threads), *flags] + (["--cpu"] if cpu else [])
        # A process of its own per layout: thread settings never leak, and --gpus N can start torchrun.
        result = subprocess.run([sys.executable, str(TRAIN_PY), *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stdout[-3000:] + result.stderr[-3000:])
        (run,) = pathlib.Path(f"{tmp}/runs").iterdir()
        stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()][1:]
    mem = [s["gpu_mem_gb"] for s in stats if s.get("gpu_mem_gb") is not None]
    return {"config": name, "res": res, "sec_per_kimg": statistics.median(s["sec_per_kimg"] for s in stats),
            "peak_gpu_gb": max(mem) if mem else None, "ticks": len(stats)}


@click.command()
@click.option("--configs", default="tiny16,small32", show_default=True,
              help=f"Comma-separated, from: {', '.join(CONFIGS)}.")
@click.option("--ticks", type=int, default=3, show_default=True, help="Timed ticks per config (after one warm-up).")
@click.option("--layouts", default="1x1", show_default=True,
              help="Comma-separated PROCESSESxTHREADS to compare, e.g. 1x2,2x1 (threads per process).")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader workers.")
@click.option("--cpu", is_flag=True, help="Stay on the CPU even when a GPU is present.")
def main(configs, ticks, layouts, workers, cpu):
    device = "cpu" if cpu or not torch.cuda.is_available() else torch.cuda.get_device_name()
    print(f"device: {device}, torch {torch.__version__}")
    print(f"{'config':<16}{'res':>5}{'layout':>8}{'sec/kimg':>12}{'vs first':>10}{'peak GPU GB':>13}{'ticks':>7}")
    for name in configs.split(","):
        baseline = None
        for layout in layouts.split(","):
            procs, threads = (int(v) for v in layout.lower().split("x"))
            r = measure(name.strip(), ticks, workers, cpu, gpus=procs, threads=threads)
            baseline = baseline or r["sec_per_kimg"]
            mem = f"{r['peak_gpu_gb']:.2f}" if r["peak_gpu_gb"] is not None else "-"
            print(f"{r['config']:<16}{r['res']:>5}{layout:>8}{r['sec_per_kimg']:>12.1f}"
                  f"{baseline / r['sec_per_kimg']:>9.2f}x{mem:>13}{r['ticks']:>7}", flush=True)


if __name__ == "__main__":
    main()
