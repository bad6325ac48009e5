"""torchrun / DDP helpers: one process per GPU (or per CPU worker with gloo), on one node or several.

Ranks: `rank` is global (0..world_size-1) and decides the data shard, the random streams and who writes
(rank 0 only); `local_rank` is the process's index on its own node and decides the GPU and the share of
the node's CPU cores; `node` is torchrun's group rank. Nothing else assumes "one machine".

We all-reduce gradients by hand instead of wrapping modules in DistributedDataParallel: R1 and the
path-length penalty need double backward, which DDP's hooks do not support, and one flat all-reduce
per optimiser step is as fast.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import struct
import sys
import time
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
    node: int = 0
    num_nodes: int = 1
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def tag(self) -> str:
        """'node 1/2 rank 3/4 (local 1)': how log lines and errors name a process."""
        return (f"node {self.node}/{self.num_nodes} rank {self.rank}/{self.world_size} "
                f"(local {self.local_rank}/{self.local_world_size})")


class DistributedSetupError(RuntimeError):
    """The processes could not form their group or do not agree; the message says what to check."""


def cores_per_process(local_world_size: int = 1) -> int:
    """This node's usable CPU cores divided among its training processes (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(cores // max(local_world_size, 1), 1)


def default_workers(on_cuda: bool, local_world_size: int = 1) -> int:
    """DataLoader workers per process when --workers is not given.

    On a GPU, up to 3 per process (the official default) while this node has cores to spare. On a CPU
    the training math needs every core: loading a few small images in the main process costs far less
    than workers competing with it (the old default, 3 workers beside 2 threads on 2 cores, ran at
    440-518 s/kimg where two single-thread processes without workers ran at 114-145).
    """
    return min(3, cores_per_process(local_world_size) - 1) if on_cuda else 0


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The command that re-launches this script under torchrun with `nproc` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *argv]


def restart_count() -> int:
    """How often torchrun (--max-restarts) has restarted this process group: 0 on the first start."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def torchrun_world_size() -> int | None:
    return int(os.environ["WORLD_SIZE"]) if launched_by_torchrun() else None


# Rank 0 alone writes snapshots and computes metrics; on a CPU a metric's real features can take hours
# (fid50k_full, or the first fid2k_full on a busy machine), longer than the process group's timeout.
RANK0_PHASE_TIMEOUT_S = 24 * 3600
_rank0_wait_group = None


def open_rank0_wait_group(timeout_s: float = RANK0_PHASE_TIMEOUT_S) -> None:
    """A gloo group with a long timeout for `wait_for_rank0`; every rank calls this together, after joining."""
    global _rank0_wait_group
    _rank0_wait_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))


def wait_for_rank0() -> None:
    """Hold every rank here until rank 0 has finished its snapshot and metrics.

    Without it the other ranks wait in the next step's all-reduce, which times out after the process
    group's 30 minutes and kills the run (gloo's monitored barrier does not help: its sends keep the
    group's timeout). A barrier on a separate gloo group with a long timeout does.
    """
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier(group=_rank0_wait_group)


def init_distributed(gpus: int | None = None, force_cpu: bool = False, timeout_s: float = 1800) -> DistInfo:
    """Join the torchrun process group (NCCL on GPUs, gloo on CPU), or run as a single process.

    `gpus` (total processes) is checked against torchrun's world size when given. The device follows
    the local rank; the process group's store is the one torchrun's rendezvous set up (MASTER_ADDR).
    """
    use_cuda = torch.cuda.is_available() and not force_cpu
    if not launched_by_torchrun():
        if gpus not in (None, 1):
            raise RuntimeError(f"--gpus {gpus} needs torchrun; train.py launches it itself unless you run it "
                               f"inside torchrun already")
        return DistInfo(0, 1, 0, torch.device("cuda", 0) if use_cuda else torch.device("cpu"))
    rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    node = int(os.environ.get("GROUP_RANK", 0))
    num_nodes = max(world_size // max(local_world_size, 1), 1)
    if gpus is not None and world_size != gpus:
        raise RuntimeError(f"torchrun started {world_size} processes but --gpus x --nodes is {gpus}; make them agree")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    info = DistInfo(rank, world_size, local_rank, device, node, num_nodes, local_world_size)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "gloo" and num_nodes > 1:
            choose_gloo_interface(os.environ.get("MASTER_ADDR", ""))
        try:
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as exc:  # noqa: BLE001 - torch raises several types here; all mean "no group"
            endpoint = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
            raise DistributedSetupError(
                f"{info.tag}: could not join the process group at {endpoint} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). Check that every node can reach {endpoint}; "
                f"if that name is not reachable from the other nodes, give torchrun --local-addr with this "
                f"node's address") from exc
        open_rank0_wait_group()
    return info


def choose_gloo_interface(peer: str) -> str | None:
    """Bind gloo to the interface that routes to `peer` (the rank-0 node), unless GLOO_SOCKET_IFNAME is set.

    Gloo otherwise binds to whatever this machine's host name resolves to, which on many machines is a
    loopback address that the other nodes cannot reach.
    """
    if os.environ.get("GLOO_SOCKET_IFNAME") or not peer:
        return os.environ.get("GLOO_SOCKET_IFNAME")
    name = interface_with_address(local_address_towards(peer))
    if name:
        os.environ["GLOO_SOCKET_IFNAME"] = name
    return name


def local_address_towards(host: str, port: int = 9) -> str | None:
    """This machine's source address for traffic to `host` (a UDP connect sends no packet)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            return s.getsockname()[0]
    except OSError:
        return None


def interface_with_address(address: str | None) -> str | None:
    """The network interface (Linux) that holds the IPv4 `address`, or None."""
    if not address:
        return None
    import fcntl  # Linux/macOS only; multi-node training is documented for Linux
    for _, name in socket.if_nameindex():
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
        except OSError:
            continue
        if socket.inet_ntoa(packed[20:24]) == address:
            return name
    return None


def is_local_address(host: str) -> bool:
    """Whether `host` names an address of this machine (we can bind to it): that node hosts the rendezvous."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    for *_, sockaddr in infos:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((sockaddr[0], 0))
                return True
        except OSError:
            continue
    return False


def hosts_rendezvous(host: str, port: int) -> bool:
    """This node hosts the rendezvous store: `host` is one of its addresses and nobody listens on `port` yet
    (a second node started on the same machine, as in tests, joins as a client)."""
    if not is_local_address(host):
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, port))
        return True
    except OSError:
        return False


def parse_endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--rendezvous {text!r}: write HOST:PORT, e.g. 10.0.0.1:29500 (the first node's address)")
    return host, int(port)


def wait_for_endpoint(host: str, port: int, timeout_s: float) -> None:
    """Wait until a TCP connection to host:port succeeds; raise DistributedSetupError naming it otherwise."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, max(timeout_s, 0.1))):
                return
        except OSError as exc:
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    raise DistributedSetupError(
        f"cannot reach the rendezvous endpoint {host}:{port} from this node "
        f"({local_address_towards(host) or 'no route'}) within {timeout_s:g} s ({last}). Start the first node "
        f"(the one at {host}) first, check that this node can reach that address, and that port {port} is "
        f"open in its firewall")


def multinode_torchrun_command(*, nodes: int, nproc: int, endpoint: str, max_restarts: int, timeout_s: float,
                               argv: list[str]) -> list[str]:
    """The torchrun command for one node of a multi-node run (c10d rendezvous at `endpoint`).

    The node whose address is the endpoint hosts the rendezvous; every node names its own address
    (`--local-addr`) so that rank 0's address reaches the others even where host names do not resolve.
    """
    host, port = parse_endpoint(endpoint)
    hosting = hosts_rendezvous(host, port)
    local_addr = host if hosting else local_address_towards(host)
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc_per_node={nproc}",
            "--rdzv_backend=c10d", f"--rdzv_endpoint={host}:{port}", "--rdzv_id=afro-fashion-gan",
            f"--rdzv_conf=is_host={int(hosting)},join_timeout={int(max(timeout_s, 1))}",
            f"--max-restarts={max_restarts}", "--monitor-interval=1",
            *([f"--local-addr={local_addr}"] if local_addr else []), *argv]


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


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s `obj` on every rank (pickled; for files of a snapshot, options)."""
    if world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def check_same_on_all_ranks(what: str, values: dict, info: DistInfo, hint: str) -> None:
    """Compare `values` (name -> JSON-able) across ranks by one hash; on a mismatch name the differing keys.

    Every rank raises the same DistributedSetupError, so the whole group stops at start instead of
    training on inconsistent settings.
    """
    if world_size() == 1:
        return
    if len(set(all_gather_objects(digest(values)))) == 1:
        return
    everyone = all_gather_objects((info.tag, values))
    ref_tag, ref = everyone[0]
    lines = []
    for tag, other in everyone[1:]:
        keys = sorted(k for k in set(ref) | set(other) if digest(ref.get(k)) != digest(other.get(k)))
        for key in keys:
            lines.append(f"  {key}: {_short(ref.get(key))} on {ref_tag}, {_short(other.get(key))} on {tag}")
    differing = sorted({line.split(":")[0].strip() for line in lines})
    raise DistributedSetupError(f"the processes disagree on the {what}: {', '.join(differing)} differ.\n"
                                + "\n".join(lines) + f"\n{hint}")


def _short(value, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
