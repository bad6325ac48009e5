"""Train a StyleGAN2-ADA generator on a fashion dataset.

Examples:

\b
  # 256 px on one GPU, published heuristics, mirrored data, ADA on:
  python train.py --outdir runs --data fashion256.zip --mirror
\b
  # fine-tune FFHQ-256 on a 16 GB T4, conditional on the dataset's classes:
  python train.py --outdir runs --data fashion256.zip --cfg t4 --cond --mirror --resume ffhq256 --freezed 4
\b
  # a small 64 px model on a CPU or laptop GPU, custom widths:
  python train.py --outdir runs --data fashion64.zip --cfg auto --cbase 8192 --cmax 256 --map 4 --batch 16 \\
      --kimg 500 --tick 1 --snap 10 --metrics none
\b
  # continue the newest run in runs/ exactly where it stopped (also after a crash or kill -9):
  python train.py --outdir runs --resume latest
\b
  # four GPUs on this machine (train.py starts torchrun for you):
  python train.py --outdir runs --data fashion512.zip --gpus 4 --cfg paper512
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import click

from stylegan2.atomic import atomic_write_text, sweep_stale_temporaries
from training.augment import AUGPIPE_PRESETS
from training.config import (CFG_NAMES, Overrides, TrainingOptions, adopt_architecture, describe, on_processes,
                             resolve_options)
from training.metrics import CPU_DEFAULT, GPU_DEFAULT, METRICS

# May change on --resume latest. `data` too, so a run can move between machines (Colab -> laptop); it must be
# the same dataset (the loop checks resolution, channels and labels).
RESUMABLE_AFTER_RUN = ("kimg", "snap", "tick", "keep", "metrics", "feature_net", "workers", "data")


def parse_metrics(text: str, on_gpu: bool) -> list[str]:
    if text.strip().lower() in ("", "none"):
        return []
    if text.strip().lower() == "auto":
        return list(GPU_DEFAULT if on_gpu else CPU_DEFAULT)
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise click.BadParameter(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)} "
                                 f"or 'none'", param_hint="--metrics")
    return names


def next_run_dir(outdir: pathlib.Path, desc: str) -> pathlib.Path:
    existing = [int(m.group(1)) for d in outdir.iterdir() if (m := re.match(r"^(\d{5})-", d.name))] \
        if outdir.is_dir() else []
    return outdir / f"{max(existing, default=-1) + 1:05d}-{desc}"


def explicitly_given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


@click.command(help=__doc__, context_settings=dict(max_content_width=110))
@click.pass_context
# where
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Folder for numbered run folders.")
@click.option("--data", type=click.Path(exists=True), help="Dataset: dataset_tool.py zip, official layout, or folder of square images.")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True, help="Processes (GPUs); >1 launches torchrun. With --resume latest, moves the run to this many.")
# what
@click.option("--cfg", type=click.Choice(CFG_NAMES), default="auto", show_default=True, help="Hyper-parameter preset.")
@click.option("--cond", is_flag=True, help="Condition on the dataset's class labels (dataset.json).")
@click.option("--mirror", is_flag=True, help="Add x-flipped copies of the images.")
@click.option("--kimg", type=click.FloatRange(min=0, min_open=True), help="Training length in thousands of real images. [preset]")
@click.option("--batch", type=click.IntRange(min=1), help="Total batch size. [preset]")
@click.option("--batch-gpu", type=click.IntRange(min=1), help="Micro-batch per GPU; smaller = less memory, gradient accumulation. [preset]")
@click.option("--gamma", type=click.FloatRange(min=0), help="R1 regularisation weight. [preset]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate of G and D. [preset]")
@click.option("--ema", type=click.FloatRange(min=0, min_open=True), help="G_ema half-life in kimg. [preset]")
# architecture overrides
@click.option("--cbase", type=click.IntRange(min=1), help="Channel base (fmaps x 32768): width of all layers. [preset]")
@click.option("--cmax", type=click.IntRange(min=1), help="Maximum channels per layer. [512]")
@click.option("--map", "map_layers", type=click.IntRange(min=1), help="Mapping-network depth. [preset]")
@click.option("--zdim", type=click.IntRange(min=1), help="Size of z and w. [512]")
@click.option("--mbstd-group", type=click.IntRange(min=1), help="Minibatch-stddev group size. [preset]")
@click.option("--fp16-res", type=click.IntRange(min=0), help="Number of top resolutions run in fp16 on GPUs. [4]")
# augmentation
@click.option("--aug", type=click.Choice(["ada", "noaug", "fixed"]), default="ada", show_default=True, help="Augmentation mode.")
@click.option("--p", type=click.FloatRange(0, 1), help="Augment probability for --aug fixed (start value for ada).")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=0.6, show_default=True, help="ADA target for r_t.")
@click.option("--augpipe", type=click.Choice(list(AUGPIPE_PRESETS)), default="bgc", show_default=True, help="Augmentations used.")
@click.option("--ada-kimg", type=click.FloatRange(min=0, min_open=True), help="ADA adjustment speed: kimg for p to move by 1. [500; 100 when transfer learning]")
@click.option("--ema-rampup", type=click.FloatRange(min=0), help="G_ema ramp-up (half-life <= this x images seen), 0 = off. [preset; off when transfer learning]")
# transfer learning and resume
@click.option("--resume", help="ffhq256|ffhq512|ffhq1024|PATH|URL to fine-tune from, or 'latest' to continue the newest run in --outdir exactly.")
@click.option("--freezed", type=click.IntRange(min=0), default=0, show_default=True, help="Freeze the first N discriminator layers (Freeze-D).")
# schedule and outputs
@click.option("--tick", type=click.FloatRange(min=0, min_open=True), default=4, show_default=True, help="kimg per progress line.")
@click.option("--snap", type=click.IntRange(min=1), default=50, show_default=True, help="Snapshot every N ticks.")
@click.option("--keep", type=click.IntRange(min=1), default=5, show_default=True, help="Keep the newest N snapshots.")
@click.option("--metrics", default="auto", show_default=True, help=f"Comma-separated metrics at each snapshot ({', '.join(METRICS)}), 'none', or 'auto': {','.join(GPU_DEFAULT)} on a GPU, {','.join(CPU_DEFAULT)} on a CPU (one set of 2k fakes: ~5-7 min per snapshot on 2 quiet cores, ~30 on busy ones).")
@click.option("--feature-net", help="Inception-v3 archive (path or URL) for the metrics. [$AFRO_FASHION_INCEPTION, then the file `python -m training.inception fetch` wrote; metrics are skipped without one]")
# numerics
@click.option("--fp32", is_flag=True, help="Disable mixed precision (fp16 layers and conv clamping).")
@click.option("--allow-tf32", is_flag=True, help="Allow TF32 matmuls/convolutions on Ampere+ (off, like the paper).")
@click.option("--deterministic", is_flag=True, help="Reproducible bit for bit (slower): deterministic kernels, no autotuning.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--workers", type=click.IntRange(min=0), default=3, show_default=True, help="DataLoader worker processes.")
@click.option("--cpu", is_flag=True, help="Train on the CPU even if a GPU is present.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads per process. Small networks on a busy CPU often run much faster with 1-2.")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
def main(ctx, outdir, data, gpus, cfg, cond, mirror, kimg, batch, batch_gpu, gamma, lr, ema, cbase, cmax, map_layers,
         zdim, mbstd_group, fp16_res, aug, p, target, augpipe, ada_kimg, ema_rampup, resume, freezed, tick, snap, keep, metrics, feature_net, fp32,
         allow_tf32, deterministic, seed, workers, cpu, threads, dry_run):
    import torch

    from training import distributed

    metrics = parse_metrics(metrics, on_gpu=torch.cuda.is_available() and not cpu)
    if threads is not None:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for deterministic GEMMs
    outdir = pathlib.Path(outdir)
    resume_snapshot, resume_network = None, None
    if resume == "latest":
        opts, run_dir, resume_snapshot = options_for_latest(ctx, outdir, kimg=kimg, snap=snap, tick=tick, keep=keep,
                                                            metrics=metrics, feature_net=feature_net, workers=workers,
                                                            data=data, gpus=gpus)
    else:
        if data is None:
            raise click.UsageError("--data is required (except with --resume latest)")
        opts, resume_network = options_for_new_run(
            data=data, fetch=not dry_run, cfg=cfg, gpus=gpus, cond=cond, mirror=mirror, resume=resume, freezed=freezed,
            overrides=Overrides(batch=batch, batch_gpu=batch_gpu, gamma=gamma, kimg=kimg, lr=lr, ema=ema, cbase=cbase,
                                cmax=cmax, map=map_layers, zdim=zdim, mbstd_group=mbstd_group, fp16_res=fp16_res,
                                ada_kimg=ada_kimg, ema_rampup=ema_rampup),
            tick=tick, snap=snap, keep=keep, aug=aug, augpipe=augpipe, target=target, p=p, metrics=metrics,
            feature_net=feature_net, seed=seed,
            workers=workers, fp32=fp32, allow_tf32=allow_tf32, deterministic=deterministic)
        run_dir = None
    if dry_run:
        click.echo(opts.to_json())
        where = run_dir or next_run_dir(outdir, describe(opts))
        click.echo(f"Run folder would be: {where}" + (" (continuing it)" if resume_snapshot else ""))
        return
    if opts.gpus > 1 and not distributed.launched_by_torchrun():
        # Re-launch ourselves under torchrun, one process per GPU; its exit code is ours.
        cmd = distributed.torchrun_command(opts.gpus, [os.path.abspath(__file__), *sys.argv[1:]])
        click.echo(f"Launching: {' '.join(cmd)}")
        sys.exit(subprocess.call(cmd))

    dist = distributed.init_distributed(opts.gpus, force_cpu=cpu)
    try:
        if run_dir is None:
            if dist.is_main:
                run_dir = next_run_dir(outdir, describe(opts))
                run_dir.mkdir(parents=True, exist_ok=False)
                write_options(run_dir, opts)
            run_dir = pathlib.Path(distributed.all_gather_objects(str(run_dir))[0])
        elif dist.is_main:
            drop_stats_after(run_dir / "stats.jsonl", resume_snapshot.kimg)
            write_options(run_dir, opts)
        log = make_logger(run_dir / "log.txt") if dist.is_main else None
        if dist.is_main:
            log(f"Run folder: {run_dir}")
        from training.loop import TrainingDiverged, training_loop
        try:
            training_loop(opts, run_dir, dist, resume_network=resume_network, resume_snapshot=resume_snapshot,
                          **({"log": log} if log else {}))
        except TrainingDiverged as exc:
            raise click.ClickException(str(exc)) from exc
    finally:
        distributed.shutdown_distributed()


def options_for_new_run(*, data, resume, fetch=True, **kwargs):
    from training.dataset import ImageDataset

    dataset = ImageDataset(data, use_labels=kwargs["cond"], xflip=False)
    resume_network = load_transfer_source(resume, fetch) if resume else None
    if resume and resume_network is None:
        click.echo(f"--dry-run does not download {resume}: layer widths and architectures follow it when training starts")
    if resume_network is not None:
        res = resume_network.G_ema.img_resolution
        if res != dataset.resolution:
            raise click.ClickException(f"--resume {resume} is a {res}px network but {data} holds {dataset.resolution}px "
                                       f"images; re-make the dataset at {res}px (dataset_tool.py --resolution {res}) "
                                       f"or pick a {dataset.resolution}px source")
    try:
        opts = resolve_options(data=os.path.abspath(data), resolution=dataset.resolution,
                               num_channels=dataset.num_channels, label_dim=dataset.label_dim,
                               dataset_name=dataset.name, resume=resume, **kwargs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if resume_network is not None:
        D_init = getattr(resume_network.D, "init_kwargs", None)
        for change in adopt_architecture(opts, resume_network.G_ema.init_kwargs, D_init):
            click.echo(f"Architecture follows --resume: {change}")
    if resume:
        click.echo(f"Transfer learning from {resume}: ADA speed {opts.ada_kimg:g} kimg, EMA ramp-up "
                   f"{'off' if opts.ema_rampup is None else opts.ema_rampup} (--ada-kimg, --ema-rampup override)")
    return opts, resume_network


def load_transfer_source(resume: str, fetch: bool):
    """The network to fine-tune from; None when it would have to be downloaded and `fetch` is off (--dry-run)."""
    from stylegan2.checkpoint import NAMED_NETWORKS, load_network
    from stylegan2.download import cached_path
    from stylegan2.legacy import NetworkLoadError

    target = NAMED_NETWORKS.get(resume, resume)
    if not fetch and target.startswith(("http://", "https://")) and not cached_path(target).is_file():
        return None
    try:
        return load_network(resume)
    except NetworkLoadError as exc:
        raise click.ClickException(f"--resume {resume}: {exc}") from None


def options_for_latest(ctx, outdir: pathlib.Path, **new_values):
    from training.snapshot import latest_snapshot

    snap = latest_snapshot(outdir)
    if snap is None:
        raise click.ClickException(f"--resume latest: no complete snapshot in any run folder of {outdir}")
    opts = TrainingOptions.from_json((snap.run_dir / "training_options.json").read_text())
    for name in RESUMABLE_AFTER_RUN:
        if explicitly_given(ctx, name):
            setattr(opts, name, os.path.abspath(new_values[name]) if name == "data" else new_values[name])
    if explicitly_given(ctx, "gpus") and new_values["gpus"] != opts.gpus:
        try:
            opts = on_processes(opts, new_values["gpus"])
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        click.echo(f"Moving the run to {opts.gpus} process(es): the same global batch, {opts.batch_gpu} per process; "
                   f"random streams restart, so the continuation is not bit-exact")
    ignored = [n for n in ("cfg", "batch", "gamma", "cond", "mirror", "aug", "augpipe", "seed")
               if explicitly_given(ctx, n)]
    if ignored:
        click.echo(f"--resume latest continues {snap.run_dir.name} with its own options; ignoring "
                   f"{', '.join('--' + n for n in ignored)}")
    click.echo(f"Continuing {snap.run_dir} from {snap.network_path.name}")
    return opts, snap.run_dir, snap


def write_options(run_dir: pathlib.Path, opts: TrainingOptions) -> None:
    """Atomically: a kill while rewriting it on resume must not leave the run unresumable."""
    sweep_stale_temporaries(run_dir)  # what a killed run was writing when it died
    atomic_write_text(run_dir / "training_options.json", opts.to_json())


def drop_stats_after(path: pathlib.Path, kimg: float) -> None:
    """Forget ticks logged after the snapshot we resume from: they will be trained again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["kimg"] <= kimg + 1e-9:
                kept.append(line)
        except (ValueError, KeyError):
            continue  # a line cut short by a kill
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def make_logger(path: pathlib.Path):
    def log(message: str) -> None:
        click.echo(message)
        with open(path, "a", encoding="utf-8") as f:
            f.write(message + "\n")
    return log


if __name__ == "__main__":
    main()
