"""Training configurations: the published presets, the `auto` heuristics and the fully resolved options.

Everything the loop needs is resolved here, once, into a `TrainingOptions` that is written to the run
folder as JSON; the loop never re-derives a hyper-parameter, so a run can be reproduced or resumed from
its JSON alone.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from stylegan2.shapes import SQUARE, image_shape, shape_kwargs


@dataclass(frozen=True)
class CfgSpec:
    """One preset, in the units of the StyleGAN2-ADA paper (Appendix: configurations)."""

    ref_gpus: int        # GPUs the preset was tuned for; batch_gpu = mb // ref_gpus unless given
    kimg: float          # training length in thousands of real images shown to D
    mb: int              # total minibatch over all GPUs
    mbstd: int           # minibatch-stddev group size
    fmaps: float         # feature-map scale: channel_base = fmaps * 32768
    lrate: float         # Adam learning rate of G and D
    gamma: float         # R1 weight
    ema: float           # G_ema half-life in kimg
    ramp: float | None   # G_ema ramp-up: half-life <= ramp * cur_nimg
    map: int             # mapping-network depth
    batch_gpu: int | None = None  # per-GPU micro-batch (gradient accumulation when < mb // gpus)
    cmax: int = 512      # maximum channels per layer


# Published presets (StyleGAN2-ADA paper, Appendix A and the official tool's --cfg table).
PUBLISHED_CFGS: dict[str, CfgSpec] = {
    "stylegan2": CfgSpec(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10, ema=10, ramp=None, map=8),
    "paper256": CfgSpec(ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1, ema=20, ramp=None, map=8),
    "paper512": CfgSpec(ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=1, lrate=0.0025, gamma=0.5, ema=20, ramp=None, map=8),
    "paper1024": CfgSpec(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=2, ema=10, ramp=None, map=8),
    "cifar": CfgSpec(ref_gpus=2, kimg=100000, mb=64, mbstd=32, fmaps=1, lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
}
# Ours, not published: a first run on a CPU in minutes (narrow layers, short), to see the whole path work.
OWN_CFGS: dict[str, CfgSpec] = {
    "tiny": CfgSpec(ref_gpus=1, kimg=10, mb=8, mbstd=4, fmaps=1024 / 32768, lrate=0.0025, gamma=0.1, ema=2, ramp=0.05, map=2, cmax=32),
}
CFG_NAMES = ["auto", *PUBLISHED_CFGS, *OWN_CFGS, "t4", "a100"]

# Transfer learning (--resume of another network), as published: ADA reacts faster at the start and
# G_ema averages the transferred weights from the first step (no ramp-up).
TRANSFER_ADA_KIMG = 100
DEFAULT_ADA_KIMG = 500

# Single-GPU presets: (total batch, per-GPU micro-batch) by resolution. Sized from the published
# memory figures (auto cfg on a V100: batch 16 at 256 px takes ~5 GB, batch 8 at 512 px ~7.6 GB, fp16
# in the top 4 resolutions); T4 = 16 GB, A100 = 40 GB (the 80 GB card fits the same with headroom).
GPU_PRESET_BATCHES: dict[str, dict[int, tuple[int, int]]] = {
    "t4": {128: (32, 32), 256: (32, 16), 512: (16, 8), 1024: (8, 4)},
    "a100": {128: (64, 64), 256: (64, 64), 512: (64, 32), 1024: (32, 16)},
}


def auto_spec(resolution: int, gpus: int, pixels: int | None = None) -> CfgSpec:
    """The official `auto` heuristics: batch and R1 weight scale with resolution and GPU count.

    The batch and R1 weight follow the pixel count (a 256x192 portrait set is sized like a 222 px square,
    its per-GPU batch rounded down to a power of two so the mbstd groups divide it); the widths and
    learning rate follow the longer side, which fixes the number of blocks.
    """
    pixels = resolution ** 2 if pixels is None else pixels
    per_gpu = 2 ** math.floor(math.log2(4096 / math.sqrt(pixels)))
    mb = max(min(gpus * min(per_gpu, 32), 64), gpus)
    return CfgSpec(
        ref_gpus=gpus, kimg=25000, mb=mb, mbstd=min(mb // gpus, 4),
        fmaps=1 if resolution >= 512 else 0.5,
        lrate=0.002 if resolution >= 1024 else 0.0025,
        gamma=0.0002 * pixels / mb, ema=mb * 10 / 32, ramp=0.05, map=2,
    )


def gpu_spec(name: str, resolution: int, gpus: int, pixels: int | None = None) -> CfgSpec:
    """t4 / a100: `auto`-style hyper-parameters with a batch that fits the card (8 mapping layers, as FFHQ);
    memory and R1 follow the pixel count, as in `auto_spec`."""
    table = GPU_PRESET_BATCHES[name]
    pixels = resolution ** 2 if pixels is None else pixels
    key = min((r for r in table if r ** 2 >= pixels), default=max(table))
    mb, batch_gpu = table[key]
    mb *= gpus
    return CfgSpec(
        ref_gpus=gpus, kimg=25000, mb=mb, mbstd=min(batch_gpu, 4),
        fmaps=1 if resolution >= 512 else 0.5,
        lrate=0.002 if resolution >= 1024 else 0.0025,
        gamma=0.0002 * pixels / mb, ema=mb * 10 / 32, ramp=0.05, map=8, batch_gpu=batch_gpu,
    )


def cfg_spec(cfg: str, resolution: int, gpus: int, pixels: int | None = None) -> CfgSpec:
    if cfg == "auto":
        return auto_spec(resolution, gpus, pixels)
    if cfg in GPU_PRESET_BATCHES:
        return gpu_spec(cfg, resolution, gpus, pixels)
    if cfg in PUBLISHED_CFGS or cfg in OWN_CFGS:
        return PUBLISHED_CFGS.get(cfg) or OWN_CFGS[cfg]
    raise ValueError(f"unknown --cfg {cfg!r}; choose one of {', '.join(CFG_NAMES)}")


@dataclass
class TrainingOptions:
    """Every resolved setting of one run (saved as training_options.json)."""

    # data
    data: str
    resolution: int
    num_channels: int
    label_dim: int
    cond: bool
    mirror: bool
    dataset_name: str
    # schedule
    gpus: int
    batch: int
    batch_gpu: int
    kimg: float
    tick: float
    snap: int
    keep: int
    # networks and optimisers
    cfg: str
    G_kwargs: dict
    D_kwargs: dict
    G_opt: dict
    D_opt: dict
    ema_kimg: float
    ema_rampup: float | None
    # loss
    loss: dict
    G_reg_interval: int = 4
    D_reg_interval: int = 16
    # augmentation
    aug: str = "ada"
    augpipe: str = "bgc"
    target: float = 0.6
    p: float = 0.0
    ada_interval: int = 4
    ada_kimg: float = DEFAULT_ADA_KIMG
    # transfer learning / resume
    resume: str | None = None
    freezed: int = 0
    # misc
    metrics: list[str] = field(default_factory=list)
    feature_net: str | None = None  # path/URL of the FID feature network (default: $AFRO_FASHION_INCEPTION)
    seed: int = 0
    workers: int = 3
    fp32: bool = False
    allow_tf32: bool = False
    deterministic: bool = False
    attr_dropout: float = 0.0    # share of label blocks zeroed in training, so "any" works at sampling

    @property
    def rounds(self) -> int:
        """Gradient-accumulation rounds per step on each GPU."""
        return self.batch // (self.gpus * self.batch_gpu)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainingOptions":
        values = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"training options JSON has unknown keys {sorted(unknown)}; was it written by a newer version?")
        return cls(**values)


def on_processes(opts: TrainingOptions, gpus: int) -> TrainingOptions:
    """The same run on another number of processes: the global batch stays, each process takes its share.

    Used when `--resume latest` is given a new `--gpus` (a run moved to a bigger or smaller machine).
    """
    if gpus < 1:
        raise ValueError("--gpus must be at least 1")
    mbstd = opts.D_kwargs.get("epilogue_kwargs", {}).get("mbstd_group_size", 1)
    try:
        batch_gpu, _ = split_batch(opts.batch, gpus, opts.batch_gpu, mbstd)
    except ValueError as exc:
        raise ValueError(f"this run's batch of {opts.batch} cannot be split over {gpus} processes ({exc}); "
                         f"pick a --gpus that divides it") from None
    return dataclasses.replace(opts, gpus=gpus, batch_gpu=batch_gpu)


def split_batch(batch: int, gpus: int, batch_gpu: int, mbstd: int) -> tuple[int, int]:
    """(micro-batch per process, minibatch-stddev group) for a global `batch` over `gpus` processes.

    The micro-batch is capped at each process's share; the group at the micro-batch, which it must divide.
    """
    batch_gpu = min(batch_gpu, batch // gpus) if batch >= gpus else batch_gpu
    if batch < 1 or batch_gpu < 1 or batch % (gpus * batch_gpu) != 0:
        raise ValueError(f"--batch {batch} must be a positive multiple of gpus ({gpus}) x batch-gpu ({batch_gpu})")
    mbstd = min(mbstd, batch_gpu)
    if batch_gpu % mbstd != 0:
        raise ValueError(f"the per-GPU batch {batch_gpu} must be a multiple of the mbstd group size {mbstd}; "
                         f"set --mbstd-group to a divisor of it")
    return batch_gpu, mbstd


@dataclass
class TrainArgs:
    """What train.py was asked for: one field per command-line flag, filled straight from click's parameters.

    None means "the preset's value" (or, for workers and threads, the machine's choice). `resolve_options`
    turns these, with the dataset's facts, into the complete TrainingOptions a run saves.
    """

    outdir: str = "."
    data: str | None = None
    # processes
    gpus: int = 1
    nodes: int = 1
    rendezvous: str | None = None
    rendezvous_timeout: float = 600
    max_restarts: int = 3
    # what
    cfg: str = "auto"
    cond: bool = False
    attr_dropout: float = 0.0
    mirror: bool = False
    kimg: float | None = None
    batch: int | None = None
    batch_gpu: int | None = None
    gamma: float | None = None
    lr: float | None = None
    ema: float | None = None
    # architecture overrides
    cbase: int | None = None
    cmax: int | None = None
    map_layers: int | None = None
    zdim: int | None = None
    mbstd_group: int | None = None
    fp16_res: int | None = None
    # augmentation
    aug: str = "ada"
    p: float | None = None
    target: float = 0.6
    augpipe: str = "bgc"
    ada_kimg: float | None = None
    ema_rampup: float | None = None  # 0 = no ramp-up
    # transfer learning and resume
    resume: str | None = None
    freezed: int = 0
    # schedule and outputs
    tick: float = 4
    snap: int = 50
    keep: int = 5
    metrics: str | list[str] = "auto"  # train.py turns the text into names before resolving
    feature_net: str | None = None
    # numerics and machine
    fp32: bool = False
    allow_tf32: bool = False
    deterministic: bool = False
    seed: int = 0
    workers: int | None = None
    cpu: bool = False
    threads: int | None = None
    dry_run: bool = False


def resolve_options(args: TrainArgs, *, resolution: int, num_channels: int, label_dim: int, dataset_name: str,
                    processes: int | None = None, base_shape=SQUARE) -> TrainingOptions:
    """Turn the user's choices into complete options for `processes` (default: gpus x nodes), checking that
    they are consistent. `args.data` is recorded as given (train.py makes it absolute).

    `resolution` is the images' longer side and `base_shape` the networks' (h0, w0) (portrait: (4, 3)).
    """
    gpus = processes if processes is not None else args.gpus * args.nodes
    if gpus < 1:
        raise ValueError("--gpus must be at least 1")
    if args.cond and label_dim == 0:
        raise ValueError("--cond needs labels: the dataset has no dataset.json labels (see dataset_tool.py)")
    if args.attr_dropout and not args.cond:
        raise ValueError("--attr-dropout drops label blocks: it needs --cond")
    if not 0 <= args.attr_dropout < 1:
        raise ValueError(f"--attr-dropout must be in [0, 1), got {args.attr_dropout}")
    height, width = image_shape(resolution, base_shape)
    spec = cfg_spec(args.cfg, resolution, gpus, pixels=height * width)

    batch = args.batch if args.batch is not None else spec.mb
    if args.batch_gpu is not None:
        batch_gpu = args.batch_gpu
    elif args.batch is not None:
        batch_gpu = batch // gpus
    elif spec.batch_gpu is not None:
        batch_gpu = spec.batch_gpu
    else:
        batch_gpu = max(spec.mb // spec.ref_gpus, 1)
    mbstd = args.mbstd_group if args.mbstd_group is not None else spec.mbstd
    batch_gpu, mbstd = split_batch(batch, gpus, batch_gpu, mbstd)

    channel_base = args.cbase if args.cbase is not None else int(spec.fmaps * 32768)
    channel_max = args.cmax if args.cmax is not None else spec.cmax
    zdim = args.zdim if args.zdim is not None else 512
    num_fp16_res = 0 if args.fp32 else (args.fp16_res if args.fp16_res is not None else 4)
    conv_clamp = None if args.fp32 else 256
    G_kwargs = dict(
        z_dim=zdim, c_dim=label_dim if args.cond else 0, w_dim=zdim, img_resolution=resolution,
        img_channels=num_channels,
        mapping_kwargs=dict(num_layers=args.map_layers if args.map_layers is not None else spec.map),
        synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
                              conv_clamp=conv_clamp, architecture="skip"),
        **shape_kwargs(base_shape),
    )
    D_kwargs = dict(
        c_dim=label_dim if args.cond else 0, img_resolution=resolution, img_channels=num_channels,
        architecture="orig" if args.cfg == "cifar" else "resnet",  # the published CIFAR-10 setup uses a plain D
        channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp,
        block_kwargs=dict(freeze_layers=args.freezed), epilogue_kwargs=dict(mbstd_group_size=mbstd),
        **shape_kwargs(base_shape),
    )
    lr = args.lr if args.lr is not None else spec.lrate
    opt = dict(lr=lr, betas=[0.0, 0.99], eps=1e-8)
    gamma = args.gamma if args.gamma is not None else spec.gamma
    loss = dict(r1_gamma=gamma, style_mixing_prob=0.9, pl_weight=2.0, pl_batch_shrink=2, pl_decay=0.01)
    if args.cfg == "cifar":  # the published CIFAR setup turns both generator regularisers off
        loss.update(style_mixing_prob=0.0, pl_weight=0.0)

    if args.aug not in ("ada", "noaug", "fixed"):
        raise ValueError(f"--aug must be ada, noaug or fixed, got {args.aug!r}")
    if args.aug == "fixed" and args.p is None:
        raise ValueError("--aug fixed needs --p (the fixed augmentation probability)")
    if args.p is not None and not 0 <= args.p <= 1:
        raise ValueError(f"--p must be in [0, 1], got {args.p}")
    if not 0 < args.target <= 1:
        raise ValueError(f"--target must be in (0, 1], got {args.target}")
    if args.freezed < 0:
        raise ValueError("--freezed must be >= 0")
    transfer = args.resume is not None  # `--resume latest` continues a run and never gets here
    ada_kimg = args.ada_kimg if args.ada_kimg is not None else TRANSFER_ADA_KIMG if transfer else DEFAULT_ADA_KIMG
    if args.ema_rampup is not None:
        ema_rampup = args.ema_rampup or None
    else:
        ema_rampup = None if transfer else spec.ramp
    if ada_kimg <= 0 or (ema_rampup is not None and ema_rampup < 0):
        raise ValueError("--ada-kimg must be > 0 and --ema-rampup >= 0")
    kimg = args.kimg if args.kimg is not None else spec.kimg
    if kimg <= 0 or args.tick <= 0 or args.snap < 1 or args.keep < 1:
        raise ValueError("--kimg and --tick must be > 0, --snap and --keep >= 1")

    p = (args.p if args.p is not None else 0.0) if args.aug != "noaug" else 0.0
    return TrainingOptions(
        data=str(args.data), resolution=resolution, num_channels=num_channels, label_dim=label_dim, cond=args.cond,
        mirror=args.mirror, dataset_name=dataset_name, gpus=gpus, batch=batch, batch_gpu=batch_gpu, kimg=kimg,
        tick=args.tick, snap=args.snap, keep=args.keep, cfg=args.cfg, G_kwargs=G_kwargs, D_kwargs=D_kwargs,
        G_opt=dict(opt), D_opt=dict(opt), ema_kimg=args.ema if args.ema is not None else spec.ema,
        ema_rampup=ema_rampup, loss=loss, aug=args.aug, augpipe=args.augpipe, target=args.target, p=p,
        ada_kimg=ada_kimg, resume=args.resume, freezed=args.freezed,
        metrics=[] if isinstance(args.metrics, str) else list(args.metrics),
        feature_net=args.feature_net, seed=args.seed, workers=args.workers if args.workers is not None else 3,
        fp32=args.fp32, allow_tf32=args.allow_tf32, deterministic=args.deterministic, attr_dropout=args.attr_dropout,
    )


def adopt_architecture(opts: TrainingOptions, G_init: dict[str, Any], D_init: dict[str, Any] | None) -> list[str]:
    """Make our networks' shapes follow a network we transfer from (FFHQ etc.); returns what changed.

    Transfer learning copies weights by name, which only works when the layer widths agree, so the
    widths, architectures, latent sizes and mapping depth come from the source; precision, labels and
    D's mini-batch settings stay ours.
    """
    changes = []
    G_src_syn = G_init.get("synthesis_kwargs", {})
    pairs = [
        (opts.G_kwargs, "z_dim", G_init.get("z_dim")),
        (opts.G_kwargs, "w_dim", G_init.get("w_dim")),
        (opts.G_kwargs["mapping_kwargs"], "num_layers", G_init.get("mapping_kwargs", {}).get("num_layers", 8)),
        (opts.G_kwargs["synthesis_kwargs"], "channel_base", G_src_syn.get("channel_base", 32768)),
        (opts.G_kwargs["synthesis_kwargs"], "channel_max", G_src_syn.get("channel_max", 512)),
        (opts.G_kwargs["synthesis_kwargs"], "architecture", G_src_syn.get("architecture", "skip")),
    ]
    if D_init is not None:
        pairs += [(opts.D_kwargs, "channel_base", D_init.get("channel_base", 32768)),
                  (opts.D_kwargs, "channel_max", D_init.get("channel_max", 512)),
                  (opts.D_kwargs, "architecture", D_init.get("architecture", "resnet"))]
    else:
        pairs += [(opts.D_kwargs, "channel_base", G_src_syn.get("channel_base", 32768)),
                  (opts.D_kwargs, "channel_max", G_src_syn.get("channel_max", 512))]
    for target, key, value in pairs:
        if value is not None and target.get(key) != value:
            changes.append(f"{key}: {target.get(key)} -> {value}")
            target[key] = value
    return changes


def describe(opts: TrainingOptions) -> str:
    """Short run-folder suffix, e.g. 'fashion-auto1-cond-mirror-ada-resumeffhq256'."""
    parts = [opts.dataset_name, f"{opts.cfg}{opts.gpus}"]
    if opts.cond:
        parts.append("cond")
    if opts.mirror:
        parts.append("mirror")
    parts.append(opts.aug if opts.aug != "fixed" else f"p{opts.p:g}")
    if opts.resume:
        name = opts.resume.rstrip("/").split("/")[-1].split(".")[0]
        parts.append(f"resume{name}"[:40])
    if opts.freezed:
        parts.append(f"freezed{opts.freezed}")
    return "-".join(p.replace(" ", "_") for p in parts)
