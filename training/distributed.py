"""torchrun / DDP helpers: one process per GPU (or per CPU worker with gloo), rank 0 writes.

We all-reduce gradients by hand instead of wrapping modules in DistributedDataParallel: R1 and the
path-length penalty need double backward, which DDP's hooks do not support, and one flat all-reduce
per optimiser step is as fast.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The command that re-launches this script under torchrun with `nproc` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *argv]


def init_distributed(gpus: int, force_cpu: bool = False) -> DistInfo:
    """Join the torchrun process group (NCCL on GPUs, gloo on CPU), or run as a single process."""
    use_cuda = torch.cuda.is_available() and not force_cpu
    if not launched_by_torchrun():
        if gpus != 1:
            raise RuntimeError(f"--gpus {gpus} needs torchrun; train.py launches it itself unless you run it "
                               f"inside torchrun already")
        return DistInfo(0, 1, 0, torch.device("cuda", 0) if use_cuda else torch.device("cpu"))
    rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if world_size != gpus:
        raise RuntimeError(f"torchrun started {world_size} processes but --gpus is {gpus}; make them agree")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if world_size() == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=src)


def all_reduce_mean_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients over ranks in one flat all-reduce, and defuse NaN/Inf like the paper's code.

    Non-finite gradients are zeroed (infinities clipped) so one bad batch cannot poison Adam's moments;
    non-finite *losses* are caught and reported by the loop instead.
    """
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    if world_size() > 1:
        dist.all_reduce(flat)
        flat /= world_size()
    torch.nan_to_num(flat, nan=0.0, posinf=1e5, neginf=-1e5, out=flat)
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(g.reshape(p.shape))


def all_reduce_mean_(tensors: Iterable[torch.Tensor]) -> None:
    """Average running statistics (w_avg, pl_mean) over ranks so every rank keeps the same copy.

    They are lerps of per-batch means, so averaging the ranks' updates equals one update with the
    global batch: the result matches single-process training with the same total batch.
    """
    if world_size() == 1:
        return
    for tensor in tensors:
        dist.all_reduce(tensor)
        tensor /= world_size()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a (stats) tensor over ranks, in place; a no-op when single-process."""
    if world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def all_gather_objects(obj):
    """Every rank's `obj`, in rank order (used to save each rank's RNG state)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def max_rank_difference(module: torch.nn.Module) -> float:
    """Largest |value - rank 0's value| over all parameters and buffers: 0.0 when ranks agree exactly."""
    if world_size() == 1:
        return 0.0
    worst = torch.zeros([], dtype=torch.float64)
    for tensor in [*module.parameters(), *module.buffers()]:
        reference = tensor.detach().clone()
        dist.broadcast(reference, src=0)
        diff = (tensor.detach().double() - reference.double()).abs().max().cpu()
        if torch.isnan(diff):
            diff = torch.tensor(float("inf"), dtype=torch.float64)
        worst = torch.maximum(worst, diff)
    worst = worst.to(next(iter(module.parameters())).device)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)
