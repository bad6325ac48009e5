"""Eager vs compiled generator (stylegan2.compiled), in one process, timings interleaved.

  python benchmarks/bench_compile.py                     # every case, 2 threads
  python benchmarks/bench_compile.py --cases g64-b8,sheets --repeats 9
  python benchmarks/bench_compile.py --cold              # a fresh compile cache: the first start's cost
  python benchmarks/bench_compile.py --cases start       # a second start: fresh process, the project's cache
  python benchmarks/bench_compile.py --cases start --cold   # a first start, then a second on its cache

Cases: G forward (mapping + synthesis, 'const' noise) of the default model at batch 1 and 8 and of a
paper256 generator at batch 1; the mapping of 10k z (default model); and `ganspace sheets` for the
default model (12 components x 4 layer groups = 48 sheets). Each case times eager and compiled calls
alternately and prints medians and their ratio, so a shared, noisy machine slows both alike.
`metrics` renders 200 fakes as the metrics do, eager and compiled, and times their Inception features
(G's share of a metric), then changes the weights as EMA does and counts new compiled graphs.
`project-step` times one projector step (forward, distance, backward to w and the noise maps) and
`tune-step` one pivotal-tuning step (backward to the synthesis weights), eager vs their compiled path
(projection/, `compiled.CompiledStep`), batch 1, and say how far loss and gradient differ.
`start` runs the studio's warm-up (the default model, batch 1 then 8, as `editor.studio` does) in a fresh
process and prints the seconds to the first compiled render and to the end, the FX graph and AOTAutograd
cache hits and misses, and where the time went: dynamo's bytecode tracing, inductor (compiling, or on a
hit, loading the cached modules) and the rest. With --cold: first in an empty cache, then again on it.
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
from toolkit import memory  # noqa: E402
from fashion_models import load_model  # noqa: E402

CASES = ("g64-b1", "g64-b8", "g256-b1", "map64-10k", "sheets", "metrics", "project-step", "tune-step", "start")


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


def time_metrics_fakes(repeats: int, num: int = 200, batch: int = 32) -> None:
    """The metrics' two halves for `num` fakes of the default model (training.metrics' batches, 'random'
    noise): rendering them eager and compiled, and their Inception-v3 features; then whether changed
    weights (G_ema between snapshots) make the compiled module compile again."""
    from torch._dynamo.utils import counters

    from stylegan2.render import to_uint8_tensor
    from training.feature_net import load_feature_net
    from training.metrics import _to_feature_input
    net = load_feature_net()
    if net is None:
        raise click.ClickException("the metrics case needs Inception-v3 (python -m training.inception fetch)")
    eager = default_G()
    fast = copy.deepcopy(eager)
    compiled.compile_generator(fast, compile=True)

    def fakes(G, seed):
        torch.manual_seed(seed)
        c = torch.eye(G.c_dim)[torch.arange(batch) % G.c_dim] if G.c_dim else None
        return torch.cat([to_uint8_tensor(G(torch.randn(min(batch, num - i), G.z_dim),
                                             None if c is None else c[:min(batch, num - i)], noise_mode="random"))
                          for i in range(0, num, batch)])
    with torch.no_grad():
        t0 = time.perf_counter()
        fakes(fast, 0)
        first = time.perf_counter() - t0
        graphs = counters["stats"]["unique_graphs"]
        times = {"eager": [], "compiled": []}
        for r in range(repeats):
            for label, G in (("eager", eager), ("compiled", fast)):
                t0 = time.perf_counter()
                images = fakes(G, r)
                times[label].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(0, num, batch):
            net(_to_feature_input(images[i:i + batch]))
        features = time.perf_counter() - t0
        for p in fast.parameters():  # what an EMA update between snapshots does
            p.lerp_(torch.randn_like(p), 0.01)
        for p, q in zip(eager.parameters(), fast.parameters()):
            p.copy_(q)
        level = int((fakes(eager, 9).int() - fakes(fast, 9).int()).abs().max())
        again = counters["stats"]["unique_graphs"] - graphs
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    print(f"{'metrics':<12}{e * 1e3:>11.0f}{c * 1e3:>13.0f}{c / e:>15.2f}x{first:>14.1f}   {num} fakes (batch "
          f"{batch}); their Inception features {features * 1e3:.0f} ms: G's share {e / (e + features):.0%} eager, "
          f"{c / (c + features):.0%} compiled, a metric {(c + features) / (e + features):.2f}x; after a weight "
          f"change {again} new graphs, max level difference {level}", flush=True)


def time_projection_step(case: str, repeats: int) -> dict:
    """One projector step (`projection_step`: synthesis forward, pixel-pyramid distance and noise penalty,
    backward to w and the noise maps) or one pivotal-tuning step (`tuning_step`: backward to the synthesis
    weights) of the default model at batch 1, eager vs its compiled path (`compiled.CompiledStep`)."""
    from projection.distance import Distance
    from projection.projector import ProjectOptions, noise_buffers, projection_step
    from projection.tuning import tuning_step
    G = default_G()
    torch.manual_seed(0)
    distance = Distance(torch.rand(1, G.img_channels, G.img_resolution, G.img_resolution) * 2 - 1)
    noise = noise_buffers(G)
    with torch.no_grad():
        w = G.mapping(torch.randn(1, G.z_dim), torch.eye(1, G.c_dim) if G.c_dim else None)[:, :1]
    if case == "project-step":
        for buf in noise.values():
            buf.normal_().requires_grad_(True)
        leaves = [w.requires_grad_(True), *noise.values()]
        eager = projection_step(G, distance, noise, ProjectOptions())
    else:
        leaves = [p.requires_grad_(True) for p in G.synthesis.parameters()]
        eager = tuning_step(G, distance)
    fast = compiled.CompiledStep(eager, case)

    def step(fn):
        for t in leaves:
            t.grad = None
        out = fn(w.expand(1, G.num_ws, -1))
        return float(out[0] if isinstance(out, tuple) else out), torch.cat([t.grad.flatten() for t in leaves])

    t0 = time.perf_counter()
    value_c, grad_c = step(fast)  # compiles the forward and the backward
    first = time.perf_counter() - t0
    if fast.failed:
        raise click.ClickException(f"the {case} did not compile (see the note above)")
    value_e, grad_e = step(eager)
    agree = abs(value_c - value_e) / abs(value_e), float((grad_c - grad_e).norm() / grad_e.norm())
    times = {"eager": [], "compiled": []}
    for _ in range(repeats):
        for label, fn in (("eager", eager), ("compiled", fast)):
            t0 = time.perf_counter()
            step(fn)
            times[label].append(time.perf_counter() - t0)
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    return dict(case=case, eager=e, compiled=c, ratio=c / e, first=first,
                spread=(max(times["compiled"]) - min(times["compiled"])) / c, agree=agree)


def start_in_subprocess(label: str) -> None:
    """Run `start_child_run` in a fresh interpreter (nothing compiled or imported yet), with this one's cache."""
    import os
    import subprocess
    print(f"{label}:", flush=True)
    subprocess.run([sys.executable, __file__, "--start-child", "--threads", str(torch.get_num_threads())],
                   check=True, env=dict(os.environ))


def start_child_run() -> None:
    """The studio's warm-up from a cold process: seconds to the first compiled render, cache counters, phases."""
    from torch._dynamo.utils import compilation_time_metrics, counters
    t0 = time.perf_counter()
    G = default_G()
    loaded = time.perf_counter()
    compiled.compile_generator(G, compile=True, background=True)
    compiled.warm_up(G, (1,))
    first = time.perf_counter()
    compiled.warm_up(G, (compiled.RENDER_BATCH,))
    end = time.perf_counter()

    def seconds(key):  # dynamo's own timers (torch._dynamo.utils.compile_times), summed over graphs
        return sum(compilation_time_metrics.get(key, []))
    caches = {k: v for group in ("inductor", "aot_autograd") for k, v in counters[group].items() if "cache" in k}
    total, tracing, inductor = seconds("_compile.compile_inner"), seconds("bytecode_tracing"), \
        seconds("OutputGraph.call_user_compiler")
    print(f"  model loaded {loaded - t0:.1f} s; first compiled render (batch 1) {first - loaded:.1f} s, batch "
          f"{compiled.RENDER_BATCH} done {end - loaded:.1f} s; caches {caches}\n"
          f"  compile time {total:.1f} s: dynamo tracing {tracing:.1f} s, AOTAutograd + inductor (compile or load) "
          f"{inductor:.1f} s (of which importing the generated modules, with their C++ builds on a miss, "
          f"{seconds('PyCodeCache.load_by_key_path'):.1f} s), "
          f"guards and the rest {total - tracing - inductor:.1f} s", flush=True)


@click.command()
@click.option("--cases", default=",".join(CASES), show_default=True, help=f"Comma-separated, from: {', '.join(CASES)}.")
@click.option("--repeats", type=int, default=7, show_default=True, help="Interleaved eager/compiled pairs per case.")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--cold", is_flag=True, help="Compile into an empty cache (what a first start pays).")
@click.option("--keep-freed-memory/--glibc-default", default=True, show_default=True,
              help="Run as the CLIs do (toolkit/memory.py), or with glibc's own handling of freed memory.")
@click.option("--start-child", is_flag=True, hidden=True)
def main(cases, repeats, threads, cold, keep_freed_memory, start_child):
    torch.set_num_threads(threads)
    if keep_freed_memory:
        memory.keep_freed_memory()
    if start_child:
        return start_child_run()
    if cold:
        import os
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-inductor-")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cache "
          f"{'cold' if cold else compiled.cache_dir()}, freed memory {'kept' if keep_freed_memory else 'glibc default'}")
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
            if cold:
                start_in_subprocess("first start (empty cache)")
            start_in_subprocess("second start (warm cache)" if cold else "start (the project's cache)")
            continue
        if name == "metrics":
            time_metrics_fakes(max(1, repeats // 2))
            continue
        if name in ("project-step", "tune-step"):
            r = time_projection_step(name, repeats)
            print(f"{r['case']:<12}{r['eager'] * 1e3:>11.1f}{r['compiled'] * 1e3:>13.1f}{r['ratio']:>15.2f}x"
                  f"{r['first']:>14.1f}{r['spread']:>7.0%}   loss rel. diff {r['agree'][0]:.1e}, "
                  f"grad rel. diff {r['agree'][1]:.1e}", flush=True)
            continue
        if name not in makers:
            raise click.BadParameter(f"unknown case {name!r}; choose from {', '.join(CASES)}", param_hint="--cases")
        r = time_case(name, *makers[name], repeats=repeats if name != "sheets" else max(1, repeats // 3))
        print(f"{r['case']:<12}{r['eager'] * 1e3:>11.1f}{r['compiled'] * 1e3:>13.1f}{r['ratio']:>15.2f}x"
              f"{r['first']:>14.1f}{r['spread']:>7.0%}", flush=True)


if __name__ == "__main__":
    main()
