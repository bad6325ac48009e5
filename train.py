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

import dataclasses
import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import click

from toolkit.atomic import atomic_write_text, sweep_stale_temporaries
from training.augment import AUGPIPE_PRESETS
from training.config import (CFG_NAMES, TrainArgs, TrainingOptions, adopt_architecture, describe, on_processes,
                             resolve_options)
from training.metrics import CPU_DEFAULT, GPU_DEFAULT, METRICS

# May change on --resume latest. `data` too, so a run can move between machines (Colab -> laptop); it must be
# the same dataset (the loop checks resolution, channels and labels).
RESUMABLE_AFTER_RUN = ("kimg", "snap", "tick", "keep", "metrics", "feature_net", "workers", "data")
# May differ between the nodes of one run (each node's own path and cores); everything else must agree.
NODE_LOCAL_OPTIONS = ("data", "dataset_name", "workers")


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
    if any(METRICS[m].network == "vgg16" for m in names):  # a VGG16 file is calc_metrics.py's to take
        raise click.BadParameter("pr50k3_full needs VGG16 weights: measure a snapshot with calc_metrics.py --vgg16, "
                                 "or use pr50k3_inception here", param_hint="--metrics")
    return names


def next_run_dir(outdir: pathlib.Path, desc: str) -> pathlib.Path:
    existing = [int(m.group(1)) for d in outdir.iterdir() if (m := re.match(r"^(\d{5})-", d.name))] \
        if outdir.is_dir() else []
    return outdir / f"{max(existing, default=-1) + 1:05d}-{desc}"


def explicitly_given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


@click.command(help=__doc__, context_settings=dict(max_content_width=110, help_option_names=["-h", "--help"]))
@click.pass_context
# where
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Folder for numbered run folders.")
@click.option("--data", type=click.Path(exists=True), help="Dataset: dataset_tool.py zip, official layout, or folder of images (square, or portrait such as 256x192).")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True, help="Processes (GPUs) per node; >1 launches torchrun. With --resume latest, moves the run to this many. [under torchrun: its world size]")
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True, help="Machines. >1 with --rendezvous: run the same command on every node; train.py starts torchrun (c10d) there.")
@click.option("--rendezvous", metavar="HOST:PORT", help="Rendezvous for --nodes > 1: the first node's address and a free port (e.g. 10.0.0.1:29500).")
@click.option("--rendezvous-timeout", type=click.FloatRange(min=0, min_open=True), default=600, show_default=True, help="Seconds to wait for every node to join (and for this node to reach --rendezvous).")
@click.option("--max-restarts", type=click.IntRange(min=0), default=3, show_default=True, help="With --nodes: torchrun restarts the group after a process or node fails; it resumes from the newest snapshot exactly.")
# what
@click.option("--cfg", type=click.Choice(CFG_NAMES), default="auto", show_default=True, help="Hyper-parameter preset.")
@click.option("--cond", is_flag=True, help="Condition on the dataset's class labels (dataset.json).")
@click.option("--attr-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True, help="With --cond: share of attribute blocks (the whole label of a one-hot dataset) zeroed at random in training, so an attribute can be left 'any' when sampling.")
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
@click.option("--workers", type=click.IntRange(min=0), help="DataLoader worker processes per training process. [GPU: up to 3 while the node has cores to spare; CPU: 0]")
@click.option("--cpu", is_flag=True, help="Train on the CPU even if a GPU is present.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads per process. [the node's cores / processes on it]")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
def main(ctx, **params):
    import torch

    from training import distributed

    args = TrainArgs(**params)
    args.metrics = parse_metrics(args.metrics, on_gpu=torch.cuda.is_available() and not args.cpu)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for deterministic GEMMs
    outdir = pathlib.Path(args.outdir)
    if args.nodes > 1 and not distributed.launched_by_torchrun() and not args.dry_run:
        sys.exit(launch_node(args.rendezvous, args.nodes, args.gpus, args.rendezvous_timeout, args.max_restarts))
    processes = args.gpus * args.nodes
    dist, shared_snapshot = None, None
    if distributed.launched_by_torchrun():
        # Join the group first: which snapshot to continue, and whether the nodes agree, are group decisions.
        if not (explicitly_given(ctx, "gpus") or explicitly_given(ctx, "nodes")):
            processes = distributed.torchrun_world_size()
        dist = join_group(processes, args.cpu)
        args.resume, shared_snapshot = resume_after_restart(dist, outdir, args.resume)
    on_cuda = torch.cuda.is_available() and not args.cpu
    local_processes = dist.local_world_size if dist else 1
    threads = args.threads
    if threads is None and not on_cuda:
        threads = distributed.cores_per_process(local_processes)
    if threads is not None:
        torch.set_num_threads(threads)
    if args.workers is None:
        args.workers = distributed.default_workers(on_cuda, local_processes)
    resume_snapshot, resume_network = None, None
    if args.resume == "latest":
        opts, run_dir, resume_snapshot = options_for_latest(ctx, outdir, args, processes, snapshot=shared_snapshot)
    else:
        if args.data is None:
            raise click.UsageError("--data is required (except with --resume latest)")
        opts, resume_network = options_for_new_run(args, processes, fetch=not args.dry_run)
        run_dir = None
    opts.workers = args.workers  # this node's choice, also on resume (cores differ between machines)
    if args.dry_run:
        click.echo(opts.to_json())
        where = run_dir or next_run_dir(outdir, describe(opts))
        click.echo(f"Run folder would be: {where}" + (" (continuing it)" if resume_snapshot else ""))
        suggest_cpu_layout(opts, on_cuda, threads, explicitly_given(ctx, "threads"))
        return
    if dist is None and opts.gpus > 1:
        # Re-launch ourselves under torchrun, one process per GPU; its exit code is ours.
        cmd = distributed.torchrun_command(opts.gpus, [os.path.abspath(__file__), *sys.argv[1:]])
        click.echo(f"Launching: {' '.join(cmd)}")
        sys.exit(subprocess.call(cmd))
    if dist is None:
        dist = join_group(opts.gpus, args.cpu)
    elif opts.gpus != dist.world_size:
        raise click.UsageError(f"torchrun started {dist.world_size} processes but this run needs {opts.gpus} "
                               f"(--gpus x --nodes, or the run being continued); make them agree")
    if dist.is_main:
        suggest_cpu_layout(opts, on_cuda, threads, explicitly_given(ctx, "threads"))
    try:
        check_nodes_agree(opts, dist)
        if run_dir is None:
            if dist.is_main:
                run_dir = next_run_dir(outdir, describe(opts))
                run_dir.mkdir(parents=True, exist_ok=False)
                write_options(run_dir, opts)
            run_dir = outdir / pathlib.Path(distributed.all_gather_objects(str(run_dir))[0]).name
        elif dist.is_main:
            drop_stats_after(run_dir / "stats.jsonl", resume_snapshot.kimg)
            write_options(run_dir, opts)
        click.echo(f"{dist.tag}: {socket.gethostname()}, device {dist.device}, {opts.workers} data-loader "
                   f"workers, {torch.get_num_threads()} threads")
        prefix = f"[node {dist.node} rank {dist.rank}] " if dist.num_nodes > 1 else ""
        log = make_logger(run_dir / "log.txt", prefix) if dist.is_main else None
        if dist.is_main:
            log(f"Run folder: {run_dir}")
            if dist.world_size > 1:
                log(f"{dist.world_size} processes on {dist.num_nodes} node(s); rank 0 writes this folder")
        from training.loop import TrainingDiverged, training_loop
        try:
            training_loop(opts, run_dir, dist, resume_network=resume_network, resume_snapshot=resume_snapshot,
                          **({"log": log} if log else {}))
        except TrainingDiverged as exc:
            raise click.ClickException(str(exc)) from exc
    except distributed.DistributedSetupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        distributed.shutdown_distributed()


def join_group(processes: int, cpu: bool):
    from training import distributed
    try:
        return distributed.init_distributed(processes, force_cpu=cpu)
    except (distributed.DistributedSetupError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None


def resume_after_restart(dist, outdir: pathlib.Path, resume: str | None):
    """Under torchrun: share the newest snapshot with every node, and continue from it after a restart.

    torchrun --max-restarts starts the same command again after a process or node failed; any rank's
    restart count > 0 turns it into `--resume latest` (when a snapshot exists), so the group goes on
    exactly from the newest complete snapshot on any node's disk instead of starting over.
    """
    from training import distributed
    from training.snapshot import share_newest_snapshot
    restarted = max(distributed.all_gather_objects(distributed.restart_count()))
    if resume != "latest" and not restarted:
        return resume, None
    snap = share_newest_snapshot(outdir, dist, distributed.all_gather_objects, distributed.broadcast_object)
    if snap is None:
        if resume == "latest":
            raise click.ClickException(f"--resume latest: no complete snapshot in any run folder of {outdir} "
                                       f"on any node")
        if dist.is_main:
            click.echo(f"Restart {restarted}: no snapshot yet, so the run starts over")
        return resume, None
    if resume != "latest" and dist.is_main:
        click.echo(f"Restart {restarted} of the process group: continuing from {snap.network_path.name} exactly")
    return "latest", snap


def launch_node(rdzv: str | None, nodes: int, gpus: int, timeout_s: float, max_restarts: int) -> int:
    """Run torchrun for this node of a multi-node run; turn rendezvous failures into one clear message."""
    from training import distributed
    if not rdzv:
        raise click.UsageError("--nodes > 1 needs --rendezvous HOST:PORT: the first node's address and a free port, "
                               "the same on every node")
    try:
        host, port = distributed.parse_endpoint(rdzv)
        if not distributed.is_local_address(host):
            distributed.wait_for_endpoint(host, port, timeout_s)
    except (ValueError, distributed.DistributedSetupError) as exc:
        raise click.ClickException(str(exc)) from None
    cmd = distributed.multinode_torchrun_command(nodes=nodes, nproc=gpus, endpoint=rdzv, max_restarts=max_restarts,
                                                 timeout_s=timeout_s, argv=[os.path.abspath(__file__), *sys.argv[1:]])
    click.echo(f"Launching: {' '.join(cmd)}")
    # A fresh store for each rendezvous round: torchrun otherwise keeps one across restarts, and a restarted
    # process could read a dead one's address from it (seen: restarts failing with "connection refused").
    env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", **os.environ}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, errors="replace", env=env)
    timed_out, explained, held_back = False, False, 0
    for line in proc.stderr:  # pass torchrun's messages through, watching for a rendezvous failure
        timed_out |= "RendezvousTimeoutError" in line or "RendezvousConnectionError" in line
        explained |= line.startswith("Error: ")
        if held_back or (explained and re.match(r"Traceback|[EWI]\d{4} ", line)):
            held_back += 1  # torchrun's own report about a process that already said what to fix
            continue
        sys.stderr.write(line)
    code = proc.wait()
    if held_back:
        click.echo(f"(torchrun's report on the failed process, {held_back} lines, is left out: the error above "
                   f"says what to fix)", err=True)
    if code and timed_out:
        click.echo(f"error: the rendezvous at {host}:{port} did not complete within {timeout_s:g} s: not all "
                   f"{nodes} nodes joined. Start the same command on every node (each with --nodes {nodes} "
                   f"--rendezvous {host}:{port}), check that they reach {host}:{port}, or raise --rendezvous-timeout", err=True)
    return code


def check_nodes_agree(opts: TrainingOptions, dist) -> None:
    """Every rank must train the same thing: compare the resolved options, code and dataset at start."""
    from training import distributed
    from training.dataset import ImageDataset
    if dist.world_size == 1:
        return
    comparable = {k: v for k, v in json.loads(opts.to_json()).items() if k not in NODE_LOCAL_OPTIONS}
    dataset = ImageDataset(opts.data, use_labels=opts.cond, xflip=opts.mirror).fingerprint()
    distributed.check_same_on_all_ranks(
        "training options, code and dataset",
        {**comparable, "code": code_version(), **{f"dataset {k}": v for k, v in dataset.items()}}, dist,
        "Start every node with the same train.py options and the same version of this code, reading the same "
        "dataset (copy the same file to each node, or use shared storage).")


def code_version() -> str:
    """sha256 of this checkout's Python sources that training runs (train.py and the packages it imports)."""
    import hashlib
    root = pathlib.Path(__file__).resolve().parent
    h = hashlib.sha256()
    packages = ("training", "stylegan2", "toolkit", "fashion_models")
    for path in sorted([root / "train.py", *(p for pkg in packages for p in (root / pkg).rglob("*.py"))]):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def suggest_cpu_layout(opts: TrainingOptions, on_cuda: bool, threads: int | None, threads_given: bool) -> None:
    """One process with several OpenMP threads is the slowest CPU layout on a busy machine: say what is faster."""
    from training import distributed
    cores = distributed.cores_per_process(1)
    if on_cuda or opts.gpus > 1 or cores < 2 or threads_given or opts.batch % cores:
        return
    click.echo(f"CPU: 1 process x {threads} threads. Add `--gpus {cores} --threads 1` to the command for {cores} "
               f"single-thread processes: as fast on idle cores, several times faster on a busy machine (README, CPU)")


def options_for_new_run(args: TrainArgs, processes: int, fetch: bool = True):
    """Options of a new run (from scratch or transfer learning): the preset, the flags, the dataset's facts."""
    from training.dataset import ImageDataset

    data, resume = args.data, args.resume
    dataset = ImageDataset(data, use_labels=args.cond, xflip=False)
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
        opts = resolve_options(dataclasses.replace(args, data=os.path.abspath(data)), resolution=dataset.resolution,
                               num_channels=dataset.num_channels, label_dim=dataset.label_dim,
                               dataset_name=dataset.name, processes=processes, base_shape=dataset.base_shape)
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
    from fashion_models import NAMED_NETWORKS, load_model
    from stylegan2.construct import NetworkLoadError
    from toolkit.download import cached_path

    target = NAMED_NETWORKS.get(resume, resume)
    if not fetch and target.startswith(("http://", "https://")) and not cached_path(target).is_file():
        return None
    try:
        return load_model(resume)
    except NetworkLoadError as exc:
        raise click.ClickException(f"--resume {resume}: {exc}") from None


def options_for_latest(ctx, outdir: pathlib.Path, args: TrainArgs, processes: int, snapshot=None):
    """The continued run's own options; only RESUMABLE_AFTER_RUN flags given on this command line replace them."""
    from training.snapshot import latest_snapshot

    snap = snapshot or latest_snapshot(outdir)
    if snap is None:
        raise click.ClickException(f"--resume latest: no complete snapshot in any run folder of {outdir}")
    opts = TrainingOptions.from_json((snap.run_dir / "training_options.json").read_text())
    for name in RESUMABLE_AFTER_RUN:
        if explicitly_given(ctx, name):
            value = getattr(args, name)
            setattr(opts, name, os.path.abspath(value) if name == "data" else value)
    if processes != opts.gpus and (explicitly_given(ctx, "gpus") or explicitly_given(ctx, "nodes")
                                   or "WORLD_SIZE" in os.environ):
        try:
            opts = on_processes(opts, processes)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        click.echo(f"Moving the run to {opts.gpus} process(es): the same global batch, {opts.batch_gpu} per process; "
                   f"random streams restart, so the continuation is not bit-exact")
    ignored = [n for n in ("cfg", "batch", "gamma", "cond", "mirror", "aug", "augpipe", "seed")
               if explicitly_given(ctx, n)]
    if ignored and ctx.params.get("resume") == "latest":  # not after a restart: the same command came again
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


def make_logger(path: pathlib.Path, prefix: str = ""):
    def log(message: str) -> None:
        message = prefix + message
        click.echo(message)
        with open(path, "a", encoding="utf-8") as f:
            f.write(message + "\n")
    return log


if __name__ == "__main__":
    main()
