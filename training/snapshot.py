"""Snapshots that survive SIGKILL, and the training state that makes `--resume latest` exact.

A snapshot is a pair written in this order: `training-state-<kimg>.pt` (optimisers, RNG states of every
rank, counters, sampler position, ADA state), then `network-snapshot-<kimg>.safetensors` (G, D, G_ema).
Each file is written to a temporary name, fsync'ed and renamed, so a file either exists complete or
not at all; a pair counts only when both exist and their counters agree, so a kill between the two
renames just leaves the previous pair as the latest.
"""
from __future__ import annotations

import contextlib
import pathlib
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from toolkit.atomic import atomic_write, atomic_write_bytes

NETWORK_PREFIX = "network-snapshot-"
STATE_PREFIX = "training-state-"
_LABEL = re.compile(rf"^{NETWORK_PREFIX}(\d{{6}}(?:\.\d{{3}})?)\.safetensors$")


def kimg_label(cur_nimg: int, tick_kimg: float) -> str:
    """Whole kimg like the official tool (`000120`), with decimals when ticks are shorter than 1 kimg."""
    if tick_kimg >= 1:
        return f"{cur_nimg // 1000:06d}"
    return f"{cur_nimg / 1000:010.3f}"


# ----------------------------------------------------------------------------- RNG state

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def capture_rng_state(device: torch.device) -> dict[str, Any]:
    """Every generator the loop draws from, as tensors and plain numbers (loadable with weights_only)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss_next": py_state[2]},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Side work (grids, metrics) must not move the training RNG, or a resumed run would differ."""
    state = capture_rng_state(device)
    try:
        yield
    finally:
        restore_rng_state(state, device)


# ----------------------------------------------------------------------------- training state

def capture_training_state(counters: dict[str, int], *, phases, loss, augment_pipe, ada, sampler, world_size: int,
                           device: torch.device, gather: Callable[[Any], list]) -> dict[str, Any]:
    """Everything besides the weights that `--resume latest` needs to go on bit for bit.

    `counters` are the loop's cur_nimg, cur_tick and batch_idx; `gather(obj)` returns every rank's obj
    (ADA statistics and RNG states are per rank). One Adam serves both phases of a network (`phases[::2]`).
    """
    return {
        **counters, "world_size": world_size,
        "optimizers": [phase.opt.state_dict() for phase in phases[::2]],
        "pl_mean": loss.pl_mean.detach().cpu(),
        "augment_p": augment_pipe.p.detach().cpu() if augment_pipe is not None else None,
        "ada": gather(ada.state_dict()) if ada is not None else None,
        "sampler_position": sampler.position,
        "rng": gather(capture_rng_state(device)),
    }


def restore_training_state(state: dict[str, Any], *, phases, loss, augment_pipe, ada, sampler, rank: int,
                           world_size: int, device: torch.device, rank_seed: int) -> int:
    """Put a captured state back into the loop's parts; returns the world size it was saved on.

    On the same world size the continuation is exact. On another one, per-rank random streams cannot be
    split or merged: they restart from seeds distinct from the run's start, while the data order goes on.
    """
    for phase_state, phase in zip(state["optimizers"], phases[::2]):
        phase.opt.load_state_dict(phase_state)
    loss.pl_mean.copy_(state["pl_mean"])
    if augment_pipe is not None:
        augment_pipe.p.copy_(state["augment_p"])
    saved_world = state["world_size"]
    if ada is not None:
        ada.load_state_dict(ada_state_for_rank(state["ada"], rank, world_size))
    # Each rank has consumed `position` indices of one global stream: the same point in it on any world size.
    sampler.position = state["sampler_position"] * saved_world // world_size
    if saved_world == world_size:
        restore_rng_state(state["rng"][rank], device)
    else:
        seed_everything(rank_seed + state["cur_nimg"] * world_size)
    return saved_world


# ----------------------------------------------------------------------------- snapshot files

@dataclass(frozen=True)
class Snapshot:
    run_dir: pathlib.Path
    label: str

    @property
    def network_path(self) -> pathlib.Path:
        return self.run_dir / f"{NETWORK_PREFIX}{self.label}.safetensors"

    @property
    def state_path(self) -> pathlib.Path:
        return self.run_dir / f"{STATE_PREFIX}{self.label}.pt"

    @property
    def kimg(self) -> float:
        return float(self.label)


def save_training_state(path: pathlib.Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_training_state(path: pathlib.Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one and what to do
        raise RuntimeError(f"cannot read training state {path}: {exc}. Delete this snapshot pair to resume "
                           f"from the previous one.") from exc


def ada_state_for_rank(saved: dict | list[dict], rank: int, world_size: int) -> dict:
    """This rank's ADA state from a training state that holds every rank's (older ones: rank 0's only).

    Until the next update sums them, each rank's r_t statistics are its own; on another world size
    rank 0 takes their sum and the other ranks start from zero, so no sign is counted twice.
    """
    states = saved if isinstance(saved, list) else [saved]
    if len(states) == world_size:
        return states[rank]
    total = [sum(s.get("stats", [0.0, 0.0])[i] for s in states) for i in range(2)]
    return {**states[0], "stats": total if rank == 0 else [0.0, 0.0]}


def list_snapshots(run_dir: pathlib.Path) -> list[Snapshot]:
    """Complete pairs (network + state) in a run folder, oldest first."""
    run_dir = pathlib.Path(run_dir)
    found = []
    for path in run_dir.glob(f"{NETWORK_PREFIX}*.safetensors"):
        match = _LABEL.match(path.name)
        if match:
            snap = Snapshot(run_dir, match.group(1))
            if snap.state_path.exists():
                found.append(snap)
    return sorted(found, key=lambda s: s.kimg)


def latest_snapshot(outdir: pathlib.Path) -> Snapshot | None:
    """Newest complete snapshot of the most recent run folder in `outdir` that has one."""
    outdir = pathlib.Path(outdir)
    if not outdir.is_dir():
        return None
    runs = sorted((d for d in outdir.iterdir() if d.is_dir() and re.match(r"^\d{5}-", d.name)),
                  key=lambda d: int(d.name[:5]), reverse=True)
    for run in runs:
        snaps = list_snapshots(run)
        if snaps:
            return snaps[-1]
    return None


def write_snapshot(snap: Snapshot, state: dict[str, Any], write_network: Callable[[pathlib.Path], None],
                   keep: int) -> None:
    """Write state then network (both atomic), then drop all but the newest `keep` pairs."""
    save_training_state(snap.state_path, state)
    write_network(snap.network_path)
    for old in list_snapshots(snap.run_dir)[:-keep]:
        old.network_path.unlink(missing_ok=True)  # network first: a lone state file is ignored
        old.state_path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- resume

def load_exact(bundle, **modules: torch.nn.Module) -> None:
    """Exact resume: every parameter and buffer of our networks comes from the snapshot, bit for bit."""
    for name, dst in modules.items():
        src = getattr(bundle, name, None)
        if src is None:
            raise RuntimeError(f"the snapshot has no {name}; it cannot be resumed exactly")
        try:
            dst.load_state_dict(src.state_dict(), strict=True)
        except RuntimeError as exc:
            raise RuntimeError(f"the snapshot's {name} does not match this run's options: {exc}") from exc


def centre_crop(source: torch.Tensor, shape, src_base, dst_base) -> torch.Tensor | None:
    """The window of `source`'s last two dims [H, W] that a network of base `dst_base` keeps of one of
    base `src_base` (None when it does not fit inside).

    Every resolution crops the same window of the image: whole base cells, centred, so a 4x4 -> 4x3
    crop drops the last column (an odd difference cannot be centred: it leans left/up by half a cell)
    and 4x4 -> 4x2 drops one column each side.
    """
    corner = []
    for size, kept, cells, kept_cells in zip(source.shape[-2:], shape[-2:], src_base, dst_base):
        if size % cells or size // cells * kept_cells != kept or kept_cells > cells:
            return None
        corner.append((cells - kept_cells) // 2 * (size // cells))
    if source.shape[:-2] != tuple(shape[:-2]):
        return None
    (top, left), (h, w) = corner, shape[-2:]
    return source[..., top:top + h, left:left + w]


@torch.no_grad()
def transfer_weights(src: torch.nn.Module, dst: torch.nn.Module) -> list[str]:
    """Transfer learning: copy every tensor whose name and shape agree; return notes on the rest.

    Two mismatches are repaired rather than skipped. A conditional generator started from an
    unconditional one has a wider first mapping layer (z and the label embedding are concatenated):
    its z columns get the source weights, rescaled for the wider fan-in, and its label columns start
    at zero, so the new network first draws exactly what the source drew and learns to use labels.
    A portrait (or landscape) network started from a square one keeps the centre window of the
    learned constant and the noise buffers (`centre_crop`), and D's epilogue fc keeps the weights of
    the feature positions inside that window. Its stored weights are copied unscaled: the equalised
    learning rate divides by the new, smaller fan-in, which keeps the fc's output on the scale of
    the source's (for roughly independent positions) instead of shrinking it by sqrt(h0*w0/16).
    """
    src_state = src.state_dict()
    src_base, dst_base = getattr(src, "base_shape", (4, 4)), getattr(dst, "base_shape", (4, 4))
    notes = []
    for name, tensor in dst.state_dict().items():
        if name not in src_state:
            notes.append(f"{name} is new (initialised fresh)")
            continue
        source = src_state[name].to(tensor.device, tensor.dtype)
        crop = None
        if source.shape != tensor.shape and name.endswith(("b4.const", "noise_const")):
            crop = centre_crop(source, tensor.shape, src_base, dst_base)
        elif source.shape != tensor.shape and name == "b4.fc.weight":
            channels = source.shape[0]  # the epilogue fc reads [C, h0, w0] features and writes C
            if source.shape[1] == channels * src_base[0] * src_base[1] and tensor.shape[0] == channels:
                crop = centre_crop(source.reshape(channels, channels, *src_base), (channels, channels, *dst_base),
                                   src_base, dst_base)
                crop = None if crop is None else crop.reshape(tensor.shape)
        if source.shape == tensor.shape:
            tensor.copy_(source)
        elif crop is not None:
            tensor.copy_(crop)
            notes.append(f"{name}: centre {tuple(tensor.shape)} window of the source's {tuple(source.shape)}")
        elif name.endswith("mapping.fc0.weight") and source.shape[0] == tensor.shape[0] \
                and source.shape[1] < tensor.shape[1]:
            # weight_gain = lr_mul / sqrt(fan_in): keep the z part's effective weights unchanged.
            tensor.zero_()
            tensor[:, :source.shape[1]] = source * np.sqrt(tensor.shape[1] / source.shape[1])
            notes.append(f"{name}: z columns copied, label columns start at zero")
        else:
            notes.append(f"{name}: shape {tuple(source.shape)} -> {tuple(tensor.shape)}, initialised fresh")
    return notes


# ----------------------------------------------------------------------------- several nodes

RUN_FILES = ("training_options.json", "stats.jsonl", "log.txt")  # what a run folder needs to go on


def share_newest_snapshot(outdir: pathlib.Path, info, gather, broadcast) -> Snapshot | None:
    """Make the group's newest complete snapshot readable on every node; returns it (None: there is none).

    Each rank looks in its own `outdir`. The newest pair (most images; ties: the lowest rank) wins; a node
    that lacks it (no shared storage, a replaced machine) gets the pair and the run's option, stats and
    log files from the rank that has it, written atomically into the same run-folder name by the
    lowest rank of that node. `gather(obj)` returns every rank's obj; `broadcast(obj, src)` rank src's.
    """
    outdir = pathlib.Path(outdir)
    mine = latest_snapshot(outdir)
    ident = None if mine is None else (mine.run_dir.name, mine.label, mine.network_path.stat().st_size,
                                       mine.state_path.stat().st_size)
    everyone = gather((info.node, ident))
    held = [(float(i[1]), -rank, rank) for rank, (_, i) in enumerate(everyone) if i is not None]
    if not held:
        return None
    src = max(held)[2]
    best = everyone[src][1]
    lacking = [rank for rank, (_, i) in enumerate(everyone) if i != best]
    if lacking:
        payload = None
        if info.rank == src:
            files = [mine.network_path, mine.state_path, *(mine.run_dir / n for n in RUN_FILES)]
            payload = {p.name: p.read_bytes() for p in files if p.exists()}
        payload = broadcast(payload, src)
        writers = {}
        for rank in lacking:
            writers.setdefault(everyone[rank][0], rank)  # one writer per node: its lowest lacking rank
        if info.rank in writers.values():
            run_dir = outdir / best[0]
            for name, data in payload.items():
                atomic_write_bytes(run_dir / name, data)
    gather(None)  # every writer has finished before anyone reads
    return Snapshot(outdir / best[0], best[1])
