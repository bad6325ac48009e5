"""Eager vs compiled generator (stylegan2.compiled), in one process, timings interleaved.

  python benchmarks/bench_compile.py                     # every case, 2 threads
  python benchmarks/bench_compile.py --cases g64-b8,sheets --repeats 9
  python benchmarks/bench_compile.py --cold              # a fresh compile cache: the first start's cost
  python benchmarks/bench_compile.py --cases start       # a start's warm-up (batch 1 and 8), alone in a process

Cases: G forward (mapping + synthesis, 'const' noise) of the default model at batch 1 and 8 and of a
paper256 generator at batch 1; the mapping of 10k z (default model); and `ganspace sheets` for the
default model (12 components x 4 layer groups = 48 sheets). Each case times eager and compiled calls
alternately and prints medians and their ratio, so a shared, noisy machine slows both alike.
`start` times what the studio's background warm-up costs at a start (the default model, batch 1 and 8):
run it alone, once with --cold and once without, to see what the on-disk cache saves.
"""
from __future__ import annotations

import copy
import pathlib
import statistics
import sys
import tempfile
import time

import click
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_generator import CONFIGS, build  # noqa: E402

from stylegan2 import compiled  # noqa: E402
from fashion_models import load_model  # noqa: E402

CASES = ("g64-b1", "g64-b8", "g256-b1", "map64-10k", "sheets", "start")


def default_G():
    return load_model("default").G_ema.eval().requires_grad_(False)


def paper256_G():
    torch.manual_seed(0)
    G, _ = build(CONFIGS["paper256"]["res"], CONFIGS["paper256"]["fmaps"], "cpu")
    return G.requires_grad_(False)


def forward_case(G, batch: int):
    z = torch.randn(batch, G.z_dim)
    c = torch.zeros(batch, G.c_dim)
    if G.c_dim:
        c[:, 0] = 1

    def run(net):
        return net.synthesis(net.mapping(z, c, truncation_psi=0.7), noise_mode="const")
    return run


def mapping_case(G, n: int = 10_000):
    z = torch.randn(n, G.z_dim)
    c = torch.zeros(n, G.c_dim)
    if G.c_dim:
        c[torch.arange(n), torch.arange(n) % G.c_dim] = 1
    return lambda net: net.mapping(z, c)


def sheets_case(G):
    from ganspace.components import load_components
    from ganspace.sheets import component_sheets
    comps = load_components(pathlib.Path(__file__).resolve().parents[1] / "models" / "default" / "components.npz")
    out = tempfile.mkdtemp(prefix="bench-sheets-")
    return lambda net: component_sheets(net, comps, out, num_components=12)


def time_case(name: str, make_G, make_run, repeats: int) -> dict:
    eager = make_G()
    fast = copy.deepcopy(eager)
    if not compiled.compile_generator(fast, compile=True):
        raise click.ClickException("compilation is not possible here (see the note above)")
    run = make_run(eager)
    with torch.no_grad():
        t0 = time.perf_counter()
        run(fast)  # compiles (or loads the compile cache)
        first = time.perf_counter() - t0
        run(eager)
        times = {"eager": [], "compiled": []}
        for _ in range(repeats):
            for label, net in (("eager", eager), ("compiled", fast)):
                t0 = time.perf_counter()
                run(net)
                times[label].append(time.perf_counter() - t0)
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    return dict(case=name, eager=e, compiled=c, ratio=c / e, first=first,
                spread=(max(times["compiled"]) - min(times["compiled"])) / c)


@click.command()
@click.option("--cases", default=",".join(CASES), show_default=True, help=f"Comma-separated, from: {', '.join(CASES)}.")
@click.option("--repeats", type=int, default=7, show_default=True, help="Interleaved eager/compiled pairs per case.")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--cold", is_flag=True, help="Compile into an empty cache (what a first start pays).")
def main(cases, repeats, threads, cold):
    torch.set_num_threads(threads)
    if cold:
        import os
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-inductor-")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cache "
          f"{'cold' if cold else compiled.cache_dir()}")
    print(f"{'case':<12}{'eager ms':>11}{'compiled ms':>13}{'compiled/eager':>16}{'first call s':>14}{'spread':>8}")
    makers = {
        "g64-b1": (default_G, lambda G: forward_case(G, 1)),
        "g64-b8": (default_G, lambda G: forward_case(G, 8)),
        "g256-b1": (paper256_G, lambda G: forward_case(G, 1)),
        "map64-10k": (default_G, mapping_case),
        "sheets": (default_G, sheets_case),
    }
    for name in cases.split(","):
        name = name.strip()
        if name == "start":
            G = default_G()
            t0, cpu0 = time.perf_counter(), time.process_time()
            compiled.compile_generator(G, compile=True, background=True)
            compiled.warm_up(G, (1, compiled.RENDER_BATCH))
            from torch._dynamo.utils import counters
            hits = {k: v for group in ("inductor", "aot_autograd") for k, v in counters[group].items() if "cache" in k}
            print(f"{'start':<12}{'':>11}{'':>13}{'':>16}{time.perf_counter() - t0:>14.1f}   "
                  f"CPU {time.process_time() - cpu0:.1f} s, {hits}", flush=True)
            continue
        if name not in makers:
            raise click.BadParameter(f"unknown case {name!r}; choose from {', '.join(CASES)}", param_hint="--cases")
        r = time_case(name, *makers[name], repeats=repeats if name != "sheets" else max(1, repeats // 3))
        print(f"{r['case']:<12}{r['eager'] * 1e3:>11.1f}{r['compiled'] * 1e3:>13.1f}{r['ratio']:>15.2f}x"
              f"{r['first']:>14.1f}{r['spread']:>7.0%}", flush=True)


if __name__ == "__main__":
    main()
