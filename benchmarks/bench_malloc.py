"""What glibc's handling of freed memory costs eager CPU work, with and without `toolkit.memory.keep_freed_memory`.

    python benchmarks/bench_malloc.py                        # every case, 3 interleaved pairs of child runs
    python benchmarks/bench_malloc.py --cases sheets --pairs 5

The setting is process-wide and cannot be undone, so each run is a fresh child process (the pair's two
runs alternate, so a shared machine slows both alike); the table gives medians of the children's own
timings of the work (model loading excluded), their system CPU time, minor page faults and peak memory.
Cases: g64-b8 (the default model's G, 40 eager renders of batch 8), sheets (`component_sheets`, the
default model's 48 sheets, eager), train-step (the default architecture, G main + D main at batch 8,
forward and backward, 6 steps).
"""
from __future__ import annotations

import json
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import click

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = ("g64-b8", "sheets", "train-step")


def child(case: str, keep: bool, threads: int) -> dict:
    """One measured run in this (fresh) process."""
    import torch
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from toolkit.memory import keep_freed_memory
    torch.set_num_threads(threads)
    took_effect = keep_freed_memory() if keep else False
    work = _prepare(case)
    work()                                                       # warm-up (first-call allocations)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    work()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return dict(wall=wall, sys=after.ru_stime - before.ru_stime, faults=after.ru_minflt - before.ru_minflt,
                peak_mb=after.ru_maxrss / 1024, took_effect=took_effect)


def _prepare(case: str):
    import torch
    from bench_compile import default_G
    if case == "g64-b8":
        G = default_G()
        ws = G.mapping(torch.randn(8, G.z_dim), torch.eye(G.c_dim)[torch.arange(8) % G.c_dim], truncation_psi=0.7)

        def render():
            with torch.no_grad():
                for _ in range(40):
                    G.synthesis(ws, noise_mode="const")
        return render
    if case == "sheets":
        from ganspace.components import load_components
        from ganspace.sheets import component_sheets
        G = default_G()
        comps = load_components(ROOT / "models" / "default" / "components.npz")
        out = tempfile.mkdtemp(prefix="bench-malloc-")

        def sheets():
            with torch.no_grad():
                component_sheets(G, comps, out, num_components=12)
        return sheets
    if case == "train-step":
        from bench_train_phases import build, run_phase
        loss, inputs = build("eager", 8)

        def steps():
            for _ in range(6):
                for phase in ("Gmain", "Dmain"):
                    run_phase(loss, inputs, phase)
        return steps
    raise click.BadParameter(f"unknown case {case!r}; choose from {', '.join(CASES)}", param_hint="--cases")


@click.command()
@click.option("--cases", default=",".join(CASES), show_default=True, help=f"Comma-separated, from: {', '.join(CASES)}.")
@click.option("--pairs", type=click.IntRange(min=1), default=3, show_default=True, help="Interleaved pairs of child runs.")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--child", "child_args", nargs=2, hidden=True)
def main(cases, pairs, threads, child_args):
    if child_args:
        case, keep = child_args
        print(json.dumps(child(case, keep == "keep", threads)))
        return
    print(f"{'case':<12}{'glibc':<10}{'wall s':>8}{'sys s':>8}{'minor faults':>14}{'peak MB':>9}")
    for case in cases.split(","):
        runs = {"default": [], "keep": []}
        for _ in range(pairs):
            for mode in runs:
                out = subprocess.run([sys.executable, __file__, "--threads", str(threads), "--child", case, mode],
                                     check=True, capture_output=True, text=True).stdout
                runs[mode].append(json.loads(out.strip().splitlines()[-1]))
        for mode, results in runs.items():
            med = {key: statistics.median(r[key] for r in results) for key in ("wall", "sys", "faults", "peak_mb")}
            note = "" if mode == "default" or all(r["took_effect"] for r in results) else "  (did not take effect)"
            print(f"{case:<12}{mode:<10}{med['wall']:>8.2f}{med['sys']:>8.2f}{med['faults']:>14,.0f}"
                  f"{med['peak_mb']:>9.0f}{note}", flush=True)
        ratio = statistics.median(r["wall"] for r in runs["keep"]) / statistics.median(r["wall"] for r in runs["default"])
        print(f"{case:<12}{'keep/default':<10}{ratio:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
