"""Where a training step's time goes, phase by phase: eager vs channels-last vs torch.compile, and the data path.

  python benchmarks/bench_train_phases.py                       # the default model's architecture, batch 16
  python benchmarks/bench_train_phases.py --variants eager,channels-last --repeats 9
  python benchmarks/bench_train_phases.py --quick               # eager vs compiled, batch 8, 2 pairs (~8 min cold)

One process; the variants' timings of a phase are interleaved (a shared machine slows them alike) and
the table shows medians. Phases are the loss's own (training/loss.py): G main, G reg (path length,
half batch), D main, D reg (R1), each forward + backward through `accumulate_gradients` with the default
model's augmentation (bgc, p = 0.2). 'compiled' wraps G's mapping and synthesis and D in torch.compile;
the regularisation phases need double backward (path length: the gradient of the image w.r.t. w; R1: of
D's logits w.r.t. the reals), which compiled autograd graphs do not support, so 'compiled' does not run
them ("n/a (double backward)") and its full-step row uses eager times for them, as a compiled run would.
The data rows time decoding a batch from a zip of PNGs and the augmentation's forward, and give their
share of one full step (G main + D main + 1/4 G reg + 1/16 D reg, the lazy intervals).
"""
from __future__ import annotations

import pathlib
import statistics
import sys
import tempfile
import time
import zipfile

import click
import numpy as np
import PIL.Image
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from fashion_models import load_model  # noqa: E402
from training.augment import AUGPIPE_PRESETS, AugmentPipe  # noqa: E402
from training.dataset import ImageDataset  # noqa: E402
from training.loss import StyleGAN2Loss  # noqa: E402

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")
VARIANTS = ("eager", "channels-last", "compiled")
LAZY_SHARE = {"Gmain": 1, "Dmain": 1, "Greg": 1 / 4, "Dreg": 1 / 16}
DOUBLE_BACKWARD = {"Greg", "Dreg"}  # phases torch.compile cannot differentiate twice
NOT_RUN = "n/a (double backward)"


def build(variant: str, batch: int):
    from stylegan2.networks import Discriminator, Generator
    bundle = load_model("default")
    opts = bundle.meta["training_options"]
    torch.manual_seed(0)
    G = Generator(**bundle.G_ema.init_kwargs)
    G.load_state_dict(bundle.G_ema.state_dict())
    D = Discriminator(**opts["D_kwargs"])
    G.train().requires_grad_(True)
    D.train().requires_grad_(True)
    pipe = AugmentPipe(**AUGPIPE_PRESETS["bgc"]).train().requires_grad_(False)
    pipe.p.fill_(0.2)
    if variant == "channels-last":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    loss = StyleGAN2Loss(G, D, augment_pipe=pipe, **opts["loss"])
    if variant == "compiled":
        for module in (G.mapping, G.synthesis, D):
            module.compile()
    c = torch.zeros(batch, G.c_dim)
    c[torch.arange(batch), torch.arange(batch) % G.c_dim] = 1
    real = torch.rand(batch, 3, G.img_resolution, G.img_resolution) * 2 - 1
    if variant == "channels-last":
        real = real.contiguous(memory_format=torch.channels_last)
    return loss, (real, c, torch.randn(batch, G.z_dim), c)


def run_phase(loss, inputs, phase):
    for net in (loss.G, loss.D):
        net.zero_grad(set_to_none=True)
    loss.accumulate_gradients(phase, *inputs, gain=1.0)


def time_data(batch: int, res: int, repeats: int) -> tuple[float, float]:
    """(decode seconds, augmentation seconds) for one batch."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "data.zip"
        rnd = np.random.RandomState(0)
        with zipfile.ZipFile(path, "w") as zf:
            for i in range(batch * 4):
                image = PIL.Image.fromarray(rnd.randint(0, 256, (res, res, 3), dtype=np.uint8))
                with zf.open(f"{i:05d}.png", "w") as f:
                    image.save(f, format="PNG")
        dataset = ImageDataset(path, xflip=True)
        decode = []
        for r in range(repeats):
            t0 = time.perf_counter()
            imgs = np.stack([dataset[(r * batch + i) % len(dataset)][0] for i in range(batch)])
            decode.append(time.perf_counter() - t0)
    pipe = AugmentPipe(**AUGPIPE_PRESETS["bgc"]).train()
    pipe.p.fill_(0.2)
    x = torch.from_numpy(imgs).float() / 127.5 - 1
    aug = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipe(x)
        aug.append(time.perf_counter() - t0)
    return statistics.median(decode), statistics.median(aug)


def full_step(medians, variant: str, baseline: str) -> float | None:
    """A step's seconds: G main + D main + the lazy share of the reg phases; a phase `variant` cannot run
    (double backward) counts at the baseline's time, as a run using that variant would run it."""
    total = 0.0
    for p in PHASES:
        m = medians[(p, variant)]
        if m is None and variant == "compiled" and p in DOUBLE_BACKWARD:
            m = medians[(p, baseline)]
        if m is None:
            return None
        total += m * LAZY_SHARE[p]
    return total


@click.command()
@click.option("--variants", default=",".join(VARIANTS), show_default=True)
@click.option("--phases", "phases", default=",".join(PHASES), show_default=True,
              help="Phases to time (the full-step row needs all four).")
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--quick", is_flag=True, help="Eager vs compiled only, batch 8, 2 pairs: the compiled column in minutes.")
def main(variants, phases, batch, repeats, threads, quick):
    torch.set_num_threads(threads)
    if quick:
        variants, batch, repeats = "eager,compiled", 8, 2
    variants = [v.strip() for v in variants.split(",")]
    phases = [p.strip() for p in phases.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, default model's architecture, batch {batch}")
    setups = {v: build(v, batch) for v in variants}
    times: dict[tuple[str, str], list[float] | str] = {}
    for phase in phases:
        for v in variants:  # warm-up (and compile) outside the timing
            if v == "compiled" and phase in DOUBLE_BACKWARD:
                times[(phase, v)] = NOT_RUN
                continue
            try:
                t0 = time.perf_counter()
                run_phase(*setups[v], phase)
                print(f"  {phase:<6} {v:<14} first call {time.perf_counter() - t0:6.1f} s", flush=True)
                times[(phase, v)] = []
            except Exception as error:  # noqa: BLE001 - a variant that cannot run a phase is a result
                times[(phase, v)] = type(error).__name__
                print(f"  {phase:<6} {v:<14} cannot run: {type(error).__name__}: "
                      f"{(str(error).strip().splitlines() or [''])[0][:100]}", flush=True)
        for _ in range(repeats):
            for v in variants:
                if isinstance(times[(phase, v)], list):
                    t0 = time.perf_counter()
                    run_phase(*setups[v], phase)
                    times[(phase, v)].append(time.perf_counter() - t0)
    print(f"\n{'phase':<8}" + "".join(f"{v + ' ms':>22}" for v in variants) + "".join(
        f"{v + '/eager':>20}" for v in variants[1:]))
    medians = {k: statistics.median(t) if isinstance(t, list) else None for k, t in times.items()}
    for phase in phases:
        row = f"{phase:<8}"
        for v in variants:
            m, label = medians[(phase, v)], NOT_RUN if times[(phase, v)] == NOT_RUN else "n/a"
            row += f"{m * 1e3:>22.0f}" if m is not None else f"{label:>22}"
        for v in variants[1:]:
            m, e = medians[(phase, v)], medians[(phase, variants[0])]
            row += f"{m / e:>19.2f}x" if m is not None and e else f"{'-':>20}"
        print(row)
    if set(phases) != set(PHASES):
        return
    steps = {v: full_step(medians, v, variants[0]) for v in variants}
    step = steps[variants[0]]
    decode, aug = time_data(batch, setups[variants[0]][0].G.img_resolution, repeats)
    print(f"\nfull step (lazy phases amortised, {batch} images): " + ", ".join(
        f"{v} {s * 1e3:.0f} ms ({s / step:.2f}x)" if s else f"{v} n/a" for v, s in steps.items()))
    print(f"data path: decode {decode * 1e3:.1f} ms ({decode / step:.1%} of a step), "
          f"augmentation forward {aug * 1e3:.1f} ms per batch (inside the phases: fakes in G main, fakes and "
          f"reals in D main, so x3 per step: {3 * aug / step:.1%})")


if __name__ == "__main__":
    main()
