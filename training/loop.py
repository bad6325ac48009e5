"""The StyleGAN2-ADA training loop. Read it top to bottom: set-up, then one optimiser step per iteration,
with a tick (log line, stats, maybe a snapshot) every `opts.tick` kimg.

Exactness contract: everything that draws random numbers during training draws from the global RNGs of
this process (seeded per rank), and everything done between steps (grids, metrics, snapshots) runs
inside `preserved_rng`, so a run resumed from a snapshot replays the very same numbers.
"""
from __future__ import annotations

import copy
import json
import math
import os
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from stylegan2.checkpoint import load_network_file, save_checkpoint
from stylegan2.labels import drop_blocks
from stylegan2.networks import Discriminator, Generator
from stylegan2.render import to_uint8
from stylegan2.shapes import SQUARE, image_shape
from toolkit.images import image_grid, to_pil
from training import distributed, snapshot
from training.augment import AUGPIPE_PRESETS, AdaptiveAugment, AugmentPipe
from training.config import TrainingOptions
from training.dataset import ImageDataset, InfiniteSampler
from training.feature_net import load_feature_net
from training.loss import StyleGAN2Loss
from training.metrics import compute_metrics


class TrainingDiverged(RuntimeError):
    """A loss or weight became NaN/Inf; the last good snapshot is kept untouched."""


@dataclass
class Phase:
    name: str
    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    interval: int


def training_loop(opts: TrainingOptions, run_dir: pathlib.Path, dist: distributed.DistInfo,
                  resume_network=None, resume_snapshot: snapshot.Snapshot | None = None,
                  log=print) -> None:
    """Train until opts.kimg; `resume_network` is a transfer source, `resume_snapshot` an exact restart."""
    device = dist.device
    is_main = dist.is_main
    log = log if is_main else (lambda *a, **k: None)
    start_time = time.time()

    # ------------------------------------------------------------------ numerics and seeds
    torch.backends.cudnn.benchmark = not opts.deterministic
    torch.backends.cuda.matmul.allow_tf32 = opts.allow_tf32
    torch.backends.cudnn.allow_tf32 = opts.allow_tf32
    if opts.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    rank_seed = opts.seed * dist.world_size + dist.rank
    snapshot.seed_everything(rank_seed)

    # ------------------------------------------------------------------ data
    dataset = ImageDataset(opts.data, use_labels=opts.cond, xflip=opts.mirror, seed=opts.seed)
    height, width = image_shape(opts.resolution, opts.G_kwargs.get("base_shape", SQUARE))
    if (dataset.image_shape != [opts.num_channels, height, width]
            or (opts.cond and dataset.label_dim != opts.label_dim)):
        raise ValueError(f"dataset {opts.data} is {dataset.height}x{dataset.width}px x{dataset.num_channels} with "
                         f"{dataset.label_dim} classes, but the run was set up for {height}x{width}px "
                         f"x{opts.num_channels} with {opts.label_dim} classes")
    batch_per_gpu = opts.batch // dist.world_size
    sampler = InfiniteSampler(len(dataset), rank=dist.rank, num_replicas=dist.world_size, seed=opts.seed)
    labels = dataset.labels.astype(np.float32) if opts.cond else None  # fakes' labels: rows of the data (joint)
    # --attr-dropout zeroes whole attribute blocks (the whole label of a one-hot dataset) of reals and fakes alike
    label_blocks = dataset.label_layout.offsets if dataset.label_layout else [(0, dataset.label_dim)]
    log(f"Dataset: {dataset.name}, {len(dataset)} images{' (with mirrors)' if opts.mirror else ''}, "
        f"{height}x{width}px, {'labels ' + str(dataset.label_dim) if opts.cond else 'unconditional'}")

    # ------------------------------------------------------------------ networks
    G = Generator(**opts.G_kwargs).to(device).train()
    D = Discriminator(**opts.D_kwargs).to(device).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G_trainable = [p for p in G.parameters() if p.requires_grad]
    D_trainable = [p for p in D.parameters() if p.requires_grad]  # frozen (--freezed) layers excluded
    augment_p_from_resume = None
    if resume_snapshot is not None:
        bundle = load_network_file(resume_snapshot.network_path)
        snapshot.load_exact(bundle, G=G, D=D, G_ema=G_ema)
    elif resume_network is not None:
        for name, dst in (("G", G), ("D", D), ("G_ema", G_ema)):
            src = getattr(resume_network, name) or (resume_network.G_ema if name == "G" else None)
            if src is None:
                log(f"Transfer: the source has no {name}; it starts from scratch")
                continue
            for note in snapshot.transfer_weights(src, dst):
                log(f"Transfer {name}: {note}")
        augment_p_from_resume = resume_network.augment_p
        log(f"Transfer learning from {opts.resume}")
    for module in (G, D, G_ema):
        distributed.broadcast_module(module)
    G.requires_grad_(False)
    D.requires_grad_(False)
    running_stats = [b for name, b in G.named_buffers() if name.endswith("w_avg")]  # the only buffers training moves
    log(f"G: {count_params(G):,} parameters, D: {count_params(D):,} parameters "
        f"({sum(p.numel() for p in D_trainable):,} trainable)")

    # ------------------------------------------------------------------ augmentation
    augment_pipe, ada = None, None
    if opts.aug != "noaug":
        if opts.augpipe not in AUGPIPE_PRESETS:
            raise ValueError(f"unknown --augpipe {opts.augpipe!r}; choose one of {', '.join(AUGPIPE_PRESETS)}")
        augment_pipe = AugmentPipe(**AUGPIPE_PRESETS[opts.augpipe]).to(device).train().requires_grad_(False)
        start_p = opts.p
        if opts.aug == "ada" and augment_p_from_resume is not None and opts.p == 0:
            start_p = float(augment_p_from_resume)
            log(f"Augment p = {start_p:.3f}, taken over from the transfer source")
        augment_pipe.p.copy_(torch.as_tensor(start_p))
        if opts.aug == "ada":
            ada = AdaptiveAugment(augment_pipe, target=opts.target, interval=opts.ada_interval,
                                  speed_kimg=opts.ada_kimg,
                                  reduce=distributed.all_reduce_sum if dist.world_size > 1 else None)

    # ------------------------------------------------------------------ loss and optimisers
    loss = StyleGAN2Loss(G, D, augment_pipe=augment_pipe, **opts.loss)
    phases = build_phases(G_trainable, D_trainable, opts)

    # ------------------------------------------------------------------ counters (maybe restored)
    cur_nimg, cur_tick, batch_idx = 0, 0, 0
    if resume_snapshot is not None:
        state = snapshot.load_training_state(resume_snapshot.state_path)
        saved_world = snapshot.restore_training_state(state, phases=phases, loss=loss, augment_pipe=augment_pipe,
                                                      ada=ada, sampler=sampler, rank=dist.rank,
                                                      world_size=dist.world_size, device=device, rank_seed=rank_seed)
        cur_nimg, cur_tick, batch_idx = state["cur_nimg"], state["cur_tick"], state["batch_idx"]
        if saved_world == dist.world_size:
            log(f"Resuming exactly from {resume_snapshot.network_path}")
        else:
            log(f"Resuming from {resume_snapshot.network_path}, a {saved_world}-process snapshot, on "
                f"{dist.world_size} processes: weights, optimiser moments, counters, ADA and data order "
                f"continue; random streams restart (not bit-exact)")
    data_iter = iter(torch.utils.data.DataLoader(
        dataset, batch_size=batch_per_gpu, sampler=sampler, num_workers=opts.workers,
        pin_memory=device.type == "cuda", prefetch_factor=2 if opts.workers > 0 else None,
        persistent_workers=opts.workers > 0, generator=torch.Generator().manual_seed(opts.seed)))

    # ------------------------------------------------------------------ start images
    grid = None
    # The metrics render their own copy of G_ema: on the compiled path (2k+ fakes, auto) it keeps its graphs
    # across snapshots, as each snapshot copies the weights in (no recompile); the grids render G_ema eager.
    metrics_G = None
    if is_main:
        with snapshot.preserved_rng(device):
            grid = make_grid_inputs(G, dataset, labels, opts, device)
            save_grid(grid.reals, grid.shape, run_dir / "reals.png")
            save_grid(render_grid(G_ema, grid, opts.batch_gpu), grid.shape,
                      run_dir / f"fakes-init-{snapshot.kimg_label(cur_nimg, opts.tick)}.png")

    # ------------------------------------------------------------------ metrics (rank 0)
    feature_net = None
    if is_main and opts.metrics:
        feature_net = load_feature_net(opts.feature_net, device=device)
        if feature_net is None:
            log(f"Metrics {','.join(opts.metrics)} will be skipped: no feature network (see the line above)")

    tensorboard = open_tensorboard(run_dir) if is_main else None

    # ------------------------------------------------------------------ the loop
    total_nimg = int(round(opts.kimg * 1000))
    tick_nimg = max(int(round(opts.tick * 1000)), 1)
    tick_start_nimg, tick_start_time = cur_nimg, time.time()
    tick_stats = TickStats(device)
    bar = TickBar(enabled=is_main)
    log(f"Training for {opts.kimg:g} kimg from {cur_nimg / 1000:g} kimg, batch {opts.batch} "
        f"({batch_per_gpu} per process x {dist.world_size}, micro-batch {opts.batch_gpu})")
    done = cur_nimg >= total_nimg
    while not done:
        # Fetch reals and draw latents and labels for every phase.
        real_img, real_c = next(data_iter)
        sampler.position += batch_per_gpu
        real_img = (real_img.to(device).to(torch.float32) / 127.5 - 1).split(opts.batch_gpu)
        if opts.attr_dropout:
            real_c = torch.from_numpy(drop_blocks(real_c.numpy(), label_blocks, opts.attr_dropout, np.random))
        real_c = real_c.to(device).split(opts.batch_gpu)
        gen_z = torch.randn([len(phases), batch_per_gpu, G.z_dim], device=device)
        if labels is not None:
            picks = np.random.randint(len(labels), size=len(phases) * batch_per_gpu)
            gen_c = drop_blocks(labels[picks], label_blocks, opts.attr_dropout, np.random)
            gen_c = torch.from_numpy(gen_c).to(device).reshape(len(phases), batch_per_gpu, -1)
        else:
            gen_c = torch.zeros([len(phases), batch_per_gpu, 0], device=device)

        # One optimiser step per phase that is due at this batch.
        for phase, phase_z, phase_c in zip(phases, gen_z, gen_c):
            if batch_idx % phase.interval != 0:
                continue
            rounds = list(zip(real_img, real_c, phase_z.split(opts.batch_gpu), phase_c.split(opts.batch_gpu)))
            for stats in step_phase(phase, loss, rounds):
                tick_stats.add(stats)
                if ada is not None and "Loss/scores/real" in stats:
                    ada.accumulate(stats["Loss/scores/real"])  # main and R1 passes alike

        # G_ema: exponential moving average with a half-life of ema_kimg (ramped up early in training).
        distributed.all_reduce_mean_([*running_stats, loss.pl_mean])
        update_ema(G_ema, G, cur_nimg=cur_nimg, batch=opts.batch, ema_kimg=opts.ema_kimg, rampup=opts.ema_rampup)

        cur_nimg += opts.batch
        batch_idx += 1
        bar.update(cur_nimg - tick_start_nimg, min(tick_nimg, total_nimg - tick_start_nimg), cur_tick)

        # ADA: nudge p towards the overfitting target every `ada_interval` steps.
        if ada is not None and batch_idx % opts.ada_interval == 0:
            ada.update(opts.batch)

        # Tick: log, check health, maybe snapshot.
        done = cur_nimg >= total_nimg
        if not done and cur_nimg < tick_start_nimg + tick_nimg:
            continue
        bar.close()
        tick_time = time.time() - tick_start_time
        summary = tick_stats.reduce_and_reset()
        tick_kimg = (cur_nimg - tick_start_nimg) / 1000
        sec_per_kimg = tick_time / max(tick_kimg, 1e-9)
        eta = max(total_nimg - cur_nimg, 0) / 1000 * sec_per_kimg  # the last batch may overshoot the total
        record = {
            "tick": cur_tick, "kimg": cur_nimg / 1000, "timestamp": time.time(), "total_sec": time.time() - start_time,
            "sec_per_tick": tick_time, "sec_per_kimg": sec_per_kimg, "eta_sec": eta,
            **summary,
            "augment_p": float(augment_pipe.p) if augment_pipe is not None else 0.0,
            "ada_rt": float(ada.rt) if ada is not None and ada.rt is not None else None,
            "gpu_mem_gb": torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None,
        }
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        log(progress_line(record))
        bad = [k for k, v in summary.items() if k.startswith("Loss/") and not math.isfinite(v)]
        bad += [f"weight {n}" for n, t in named_tensors(G, D) if not torch.isfinite(t).all()]
        if bad:
            raise TrainingDiverged(f"training diverged at tick {cur_tick} (kimg {cur_nimg / 1000:g}): non-finite "
                                   f"{', '.join(bad[:5])}. The last good snapshot is kept; resume from it with "
                                   f"a lower --gamma or learning rate, or --fp32.")

        cur_tick += 1
        if done or cur_tick % opts.snap == 0:
            record["ddp_max_diff"] = max(distributed.max_rank_difference(m) for m in (G, D, G_ema))
            if record["ddp_max_diff"] != 0:
                raise RuntimeError(f"processes disagree on the weights (max difference {record['ddp_max_diff']}); "
                                   f"this is a bug in gradient synchronisation")
            state = snapshot.capture_training_state(
                dict(cur_nimg=cur_nimg, cur_tick=cur_tick, batch_idx=batch_idx), phases=phases, loss=loss,
                augment_pipe=augment_pipe, ada=ada, sampler=sampler, world_size=dist.world_size, device=device,
                gather=distributed.all_gather_objects)
            if is_main:
                with snapshot.preserved_rng(device):
                    label = snapshot.kimg_label(cur_nimg, opts.tick)
                    save_grid(render_grid(G_ema, grid, opts.batch_gpu), grid.shape, run_dir / f"fakes{label}.png")
                    meta = {"kimg": cur_nimg / 1000, "cur_nimg": cur_nimg, "tick": cur_tick,
                            "augment_p": record["augment_p"] if augment_pipe is not None else None,
                            "augment_kwargs": AUGPIPE_PRESETS[opts.augpipe] if augment_pipe is not None else None,
                            "training_options": json.loads(opts.to_json()),
                            # The studio's class picker and generate.py --class show these names.
                            "class_names": dataset.class_names if opts.cond else None,
                            "label_layout": dataset.label_layout.to_json()
                            if opts.cond and dataset.label_layout else None}
                    snapshot.write_snapshot(
                        snapshot.Snapshot(run_dir, label), state,
                        lambda path: save_checkpoint(path, G=G, D=D, G_ema=G_ema, meta=meta),
                        keep=opts.keep)
                    # Metrics come last: a kill during a long FID must not cost the snapshot.
                    metrics_start = time.time()
                    record["metrics"] = {}
                    if feature_net is not None:
                        if metrics_G is None:
                            metrics_G = copy.deepcopy(G_ema)
                        metrics_G.load_state_dict(G_ema.state_dict())
                        record["metrics"] = compute_metrics(opts.metrics, metrics_G, dataset, feature_net=feature_net,
                                                            device=device, seed=opts.seed)
                    for name, value in record["metrics"].items():
                        log(f"Metric {name} at {cur_nimg / 1000:g} kimg: {value:.4f}")
                    if record["metrics"]:
                        log(f"Metrics took {time.time() - metrics_start:.0f} s")
            distributed.wait_for_rank0()
        if is_main:
            append_stats(run_dir / "stats.jsonl", record)
            if tensorboard is not None:
                scalars = {**record, **{f"Metrics/{k}": v for k, v in record.get("metrics", {}).items()}}
                for key, value in scalars.items():
                    if isinstance(value, (int, float)) and key not in ("tick", "kimg", "timestamp"):
                        tensorboard.add_scalar(key, value, global_step=int(cur_nimg / 1000), walltime=record["timestamp"])
                tensorboard.flush()
        tick_start_nimg, tick_start_time = cur_nimg, time.time()
    log(f"Done: {cur_nimg / 1000:g} kimg in {time.time() - start_time:.0f} s. Snapshots in {run_dir}")


# ============================================================================ helpers

def build_phases(G_params, D_params, opts: TrainingOptions) -> list[Phase]:
    """Gmain, Greg, Dmain, Dreg with one Adam per network.

    Lazy regularisation runs the regulariser only every `reg_interval` steps; Adam's learning rate
    and betas are scaled by c = interval / (interval + 1) so that one "main + reg" cycle moves the
    weights like `interval` ordinary steps would (StyleGAN2, Appendix B).
    """
    phases = []
    for name, params, opt_kwargs, reg_interval in (("G", G_params, opts.G_opt, opts.G_reg_interval),
                                                  ("D", D_params, opts.D_opt, opts.D_reg_interval)):
        c = reg_interval / (reg_interval + 1)
        opt = torch.optim.Adam(params, lr=opt_kwargs["lr"] * c, betas=[b ** c for b in opt_kwargs["betas"]],
                               eps=opt_kwargs["eps"])
        phases.append(Phase(f"{name}main", params, opt, 1))
        phases.append(Phase(f"{name}reg", params, opt, reg_interval))
    return phases


def step_phase(phase: Phase, loss: StyleGAN2Loss, rounds: list[tuple]) -> list[dict[str, torch.Tensor]]:
    """One optimiser step of `phase` over this process's micro-batches (img, c, z, gen_c); returns their stats.

    The rounds' gradients are averaged (gain / rounds), so the step does not depend on how a batch is
    split into micro-batches. (The official code sums them, which on one GPU makes Adam's eps relatively
    `rounds` times smaller; its paper runs used one round per GPU, which this matches.)
    """
    phase.opt.zero_grad(set_to_none=True)
    for p in phase.params:
        p.requires_grad_(True)
    stats = [loss.accumulate_gradients(phase.name, img, c, z, gen_c, gain=phase.interval / len(rounds))
             for img, c, z, gen_c in rounds]
    for p in phase.params:
        p.requires_grad_(False)
    distributed.all_reduce_mean_grads(phase.params)
    phase.opt.step()
    return stats


@torch.no_grad()
def update_ema(G_ema, G, cur_nimg: int, batch: int, ema_kimg: float, rampup: float | None) -> float:
    """G_ema <- lerp towards G with a half-life of ema_kimg (shorter early on with ramp-up); returns beta."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
    return beta


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def named_tensors(*modules):
    for module in modules:
        yield from module.named_parameters()


class TickStats:
    """Per-tick means of the loss statistics, summed on-device and reduced over ranks once per tick."""

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for key, value in stats.items():
            value = value.detach().to(torch.float64).flatten()
            acc = self.sums.setdefault(key, torch.zeros([2], dtype=torch.float64, device=self.device))
            acc += torch.stack([value.sum(), torch.tensor(value.numel(), dtype=torch.float64, device=self.device)])

    def reduce_and_reset(self) -> dict[str, float]:
        keys = sorted(self.sums)
        if not keys:
            return {}
        packed = distributed.all_reduce_sum(torch.stack([self.sums[k] for k in keys]))
        self.sums = {}
        return {k: float(s / n) if n > 0 else math.nan for k, (s, n) in zip(keys, packed.tolist())}


def format_duration(seconds: float) -> str:
    """'2h05m09s'; never negative."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


class TickBar:
    """A bar within the tick on rank 0, to a terminal only: on a CPU one tick can take half an hour.

    Shows the share of the tick done and the speed in kimg/s; it disappears when the tick's line prints.
    """

    def __init__(self, enabled: bool, file=None):
        self.file = file if file is not None else sys.stderr
        self.enabled = enabled and (file is not None or self.file.isatty())
        self.bar, self.started = None, 0.0

    def update(self, nimg: int, tick_nimg: int, tick: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=tick_nimg / 1000, desc=f"tick {tick}", file=self.file, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n:.3f}/{total:.3f} kimg "
                                       "[{elapsed}<{remaining}{postfix}]")
            self.started = time.time()
        rate = nimg / 1000 / max(time.time() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{rate:.3g} kimg/s", refresh=False)
        self.bar.update(nimg / 1000 - self.bar.n)
        self.bar.refresh()  # once per optimiser step (seconds apart on a CPU); tqdm waits for whole units

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_line(r: dict) -> str:
    parts = [f"tick {r['tick']:<5d}", f"kimg {r['kimg']:<9.3f}", f"sec/kimg {r['sec_per_kimg']:<8.2f}",
             f"eta {format_duration(r['eta_sec'])}"]
    for key, short in (("Loss/G/loss", "G"), ("Loss/D/real", "Dreal"), ("Loss/D/fake", "Dfake"),
                       ("Loss/r1_penalty", "r1"), ("Loss/pl_penalty", "pl")):
        if key in r:
            parts.append(f"{short} {r[key]:.3f}")
    parts.append(f"augment {r['augment_p']:.3f}")
    if r.get("gpu_mem_gb") is not None:
        parts.append(f"gpumem {r['gpu_mem_gb']:.2f}GB")
    return "  ".join(parts)


def open_tensorboard(run_dir: pathlib.Path):
    """TensorBoard events beside stats.jsonl when tensorboard is installed (it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir))


def append_stats(path: pathlib.Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, allow_nan=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass
class GridInputs:
    shape: tuple[int, int]  # (columns, rows)
    reals: np.ndarray       # uint8 [N, H, W, C]
    z: torch.Tensor
    c: torch.Tensor


def make_grid_inputs(G, dataset, labels, opts: TrainingOptions, device) -> GridInputs:
    """Fixed reals and fixed latents (seeded by --seed) for the reals.png / fakes*.png grids."""
    cols = int(np.clip(1280 // opts.resolution, 4, 8))
    rows = int(np.clip(720 // opts.resolution, 4, 8))
    n = cols * rows
    rnd = np.random.RandomState(opts.seed)
    order = rnd.permutation(len(dataset))[:n]
    order = np.resize(order, n)
    reals = np.stack([dataset[int(i)][0] for i in order]).transpose(0, 2, 3, 1)
    z = torch.from_numpy(rnd.randn(n, G.z_dim).astype(np.float32)).to(device)
    if labels is not None:  # one row per class (per distinct attribute combination of the data), cycling
        if dataset.label_layout is None:
            label_rows = np.eye(labels.shape[1], dtype=np.float32)
        else:
            label_rows = np.unique(labels, axis=0)
            label_rows = label_rows[rnd.permutation(len(label_rows))]
        c = torch.from_numpy(label_rows[np.arange(n) // cols % len(label_rows)]).to(device)
    else:
        c = torch.zeros([n, 0], device=device)
    return GridInputs((cols, rows), reals, z, c)


@torch.no_grad()
def render_grid(G_ema, grid: GridInputs, batch: int) -> np.ndarray:
    images = []
    for z, c in zip(grid.z.split(batch), grid.c.split(batch)):
        img = G_ema(z, c, noise_mode="const")
        images.append(to_uint8(img))
    return np.concatenate(images)


def save_grid(images: np.ndarray, shape: tuple[int, int], path: pathlib.Path) -> None:
    """The official reals.png / fakes*.png layout: (columns, rows) images edge to edge."""
    cols, rows = shape
    to_pil(image_grid(images[: cols * rows], cols=cols, pad=0)).save(path)

