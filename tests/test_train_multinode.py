"""Training across machines: torchrun with a c10d rendezvous, between two network namespaces joined by a veth pair.

The namespaces stand for two hosts: each has its own network stack and only the pair's private addresses
(10.200.0.1 and 10.200.0.2), so the rendezvous, the gloo traffic and the failure of one node are real, and
no packet leaves the two namespaces. Where namespaces cannot be made (no root, no `ip`), those tests skip.
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from conftest import REPO, free_port, make_dataset
from training import distributed, snapshot

TINY = ["--cbase", "128", "--cmax", "16", "--zdim", "16", "--map", "2", "--batch", "4", "--metrics", "none",
        "--cpu", "--threads", "1", "--tick", "0.008", "--snap", "1", "--deterministic", "--seed", "3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ADDR_A, ADDR_B = "10.200.0.1", "10.200.0.2"


def train_cmd(*args):
    return [sys.executable, str(REPO / "train.py"), *map(str, args)]


def start(cmd, netns=None, log=None):
    """A node: its own process group (so the whole node can be killed), output to a file."""
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def kill_node(proc, netns=None):
    """SIGKILL a node: its process group and, in a namespace, every process in it (torchrun's workers
    run in sessions of their own)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids_in(netns) if netns else []:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def pids_in(netns):
    return [int(p) for p in subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()]


def kill_training_processes(netns) -> int:
    """SIGKILL the training processes (torchrun's workers: they carry LOCAL_RANK) in a namespace."""
    killed = 0
    for pid in pids_in(netns):
        try:
            if b"\0LOCAL_RANK=" in b"\0" + pathlib.Path(f"/proc/{pid}/environ").read_bytes():
                os.kill(pid, signal.SIGKILL)
                killed += 1
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return killed


def finish(proc, timeout=240):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_node(proc)
        raise


def run_folders(*outdirs):
    return [d for o in outdirs if o.exists() for d in o.iterdir() if d.is_dir()]


def weights(run, kimg_label):
    return load_file(run / f"network-snapshot-{kimg_label}.safetensors")


def assert_same_weights(a, b):
    assert a.keys() == b.keys() and len(a) > 100
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# ----------------------------------------------------------------------------- two hosts

@pytest.fixture
def two_hosts():
    """Two network namespaces joined by a veth pair; always removed again, also when the test fails."""
    if shutil.which("ip") is None:
        pytest.skip("network namespaces need `ip` (Debian: apt-get install -y iproute2)")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b = f"afg-a{tag}", f"afg-b{tag}"
    steps = [["ip", "netns", "add", ns_a], ["ip", "netns", "add", ns_b],
             ["ip", "link", "add", f"va{tag}", "netns", ns_a, "type", "veth", "peer", "name", f"vb{tag}", "netns", ns_b],
             ["ip", "-n", ns_a, "addr", "add", f"{ADDR_A}/24", "dev", f"va{tag}"],
             ["ip", "-n", ns_b, "addr", "add", f"{ADDR_B}/24", "dev", f"vb{tag}"],
             ["ip", "-n", ns_a, "link", "set", f"va{tag}", "up"], ["ip", "-n", ns_b, "link", "set", f"vb{tag}", "up"],
             ["ip", "-n", ns_a, "link", "set", "lo", "up"], ["ip", "-n", ns_b, "link", "set", "lo", "up"]]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"network namespaces cannot be made here ({' '.join(step[:3])}: {done.stderr.strip()})")
        yield ns_a, ns_b
    finally:
        for ns in (ns_a, ns_b):  # deleting a namespace removes its end of the veth pair, and so the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.slow
def test_two_nodes_train_like_one_node_and_resume_exactly_after_losing_one(tmp_path, two_hosts):
    """2 nodes x 1 process == 1 node x 2 processes, bit for bit; a node killed mid-run, the group resumes exactly.

    Bitwise is the right promise here: the same global ranks draw the same numbers and read the same shards
    wherever they run, deterministic mode fixes the kernels, and the all-reduced sum of two gradients is the
    same in either order (float addition of two terms commutes), so the two layouts do the same arithmetic.
    """
    ns_a, ns_b = two_hosts
    data = make_dataset(tmp_path / "data")
    kimg = "0.064"
    common = ["--data", data, "--kimg", kimg, "--keep", "20", *TINY]

    reference = subprocess.run(train_cmd("--outdir", tmp_path / "ref", "--gpus", "2", *common), cwd=REPO, env=ENV,
                               capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]
    (ref_run,) = run_folders(tmp_path / "ref")

    port = 29400 + os.getpid() % 500
    node = ["--nodes", "2", "--gpus", "1", "--rendezvous", f"{ADDR_A}:{port}", "--rendezvous-timeout", "120",
            "--max-restarts", "2", *common]
    out_a, out_b = tmp_path / "node-a", tmp_path / "node-b"  # no shared storage: each node has its own disk
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("a", "b")}
    a = start(train_cmd("--outdir", out_a, *node), ns_a, logs["a"])
    b = start(train_cmd("--outdir", out_b, *node), ns_b, logs["b"])
    try:
        deadline = time.time() + 180
        while time.time() < deadline and a.poll() is None and b.poll() is None:
            snaps = [s for run in run_folders(out_a, out_b) for s in snapshot.list_snapshots(run)]
            if snaps:
                break
            time.sleep(0.02)
        assert a.poll() is None and b.poll() is None, (tmp_path / "a.log").read_text()[-3000:]
        assert kill_training_processes(ns_b) == 1  # node B's training process dies mid-run (SIGKILL)
        (first_run,) = run_folders(out_a, out_b)
        first = snapshot.list_snapshots(first_run)[0]
        assert first.kimg < float(kimg), "the run ended before the node could be killed"
        first_weights = weights(first_run, first.label)
        assert finish(a) == 0, (tmp_path / "a.log").read_text()[-4000:]
        assert finish(b) == 0, (tmp_path / "b.log").read_text()[-4000:]
    finally:
        for proc, ns in ((a, ns_a), (b, ns_b)):
            kill_node(proc, ns)
        for f in logs.values():
            f.close()
    text = {name: (tmp_path / f"{name}.log").read_text() for name in logs}
    both = text["a"] + text["b"]

    # Before the kill, 2 nodes computed exactly what 1 node with 2 processes did.
    assert_same_weights(first_weights, weights(ref_run, first.label))
    # After it, the restarted group went on from the newest snapshot and ended on the very same weights.
    assert "Restart 1 of the process group: continuing from" in both
    assert "Resuming exactly from" in both
    finals = [run for run in run_folders(out_a, out_b) if (run / f"network-snapshot-000000.{kimg[2:]}.safetensors").exists()]
    assert len(finals) == 1
    assert_same_weights(weights(finals[0], f"000000.{kimg[2:]}"), weights(ref_run, f"000000.{kimg[2:]}"))
    # Only rank 0 wrote; log lines name node and rank; each process said which it is.
    assert "node 0/2 rank 0/2 (local 0/1)" in both and "node 1/2 rank 1/2 (local 0/1)" in both
    assert "[node " in (finals[0] / "log.txt").read_text()
    stats = [json.loads(line) for line in (finals[0] / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == [(i + 1) * 8 / 1000 for i in range(8)] and stats[-1]["ddp_max_diff"] == 0


@pytest.mark.slow
def test_a_node_that_cannot_reach_the_rendezvous_names_it(tmp_path, two_hosts):
    ns_a, ns_b = two_hosts
    port = 29900 + os.getpid() % 50
    proc = subprocess.run(["ip", "netns", "exec", ns_b, *train_cmd(
        "--outdir", tmp_path / "r", "--data", make_dataset(tmp_path / "data"), "--nodes", "2",
        "--rendezvous", f"{ADDR_A}:{port}", "--rendezvous-timeout", "2", *TINY)], cwd=REPO, env=ENV, capture_output=True,
        text=True, timeout=120)
    assert proc.returncode != 0
    assert f"cannot reach the rendezvous endpoint {ADDR_A}:{port} from this node ({ADDR_B}) within 2 s" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- on one machine (loopback)

def test_unreachable_endpoint_message_names_host_and_port():
    port = free_port()  # nothing listens there
    with pytest.raises(distributed.DistributedSetupError) as info:
        distributed.wait_for_endpoint("127.0.0.1", port, timeout_s=0.5)
    assert f"cannot reach the rendezvous endpoint 127.0.0.1:{port}" in str(info.value)
    assert f"port {port} is open" in str(info.value)
    with pytest.raises(ValueError, match="write HOST:PORT"):
        distributed.parse_endpoint("10.0.0.1")


@pytest.mark.slow
def test_first_node_alone_times_out_naming_the_endpoint(tmp_path):
    port = free_port()
    proc = subprocess.run(train_cmd("--outdir", tmp_path / "r", "--data", make_dataset(tmp_path / "data"),
                                    "--nodes", "2", "--rendezvous", f"127.0.0.1:{port}", "--rendezvous-timeout", "3", *TINY),
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"the rendezvous at 127.0.0.1:{port} did not complete within 3 s: not all 2 nodes joined" in proc.stderr


def two_loopback_nodes(tmp_path, args_a, args_b):
    """Two torchrun agents on this machine forming one 2-node group; returns their outputs."""
    port = free_port()
    node = ["--nodes", "2", "--gpus", "1", "--rendezvous", f"127.0.0.1:{port}", "--rendezvous-timeout", "60", "--max-restarts", "0"]
    logs = [open(tmp_path / f"n{i}.log", "w") for i in range(2)]
    procs = [start(train_cmd("--outdir", tmp_path / "out0", *node, *args_a), log=logs[0])]
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # the first node hosts the rendezvous before the second one starts
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        procs.append(start(train_cmd("--outdir", tmp_path / "out1", *node, *args_b), log=logs[1]))
        codes = [finish(p, 180) for p in procs]
    finally:
        for p in procs:
            kill_node(p)
        for f in logs:
            f.close()
    return codes, [(tmp_path / f"n{i}.log").read_text() for i in range(2)]


@pytest.mark.slow
def test_nodes_with_other_options_or_another_dataset_refuse_to_start(tmp_path):
    data = make_dataset(tmp_path / "data")
    other = make_dataset(tmp_path / "elsewhere" / "data", seed=1)  # same name and size, other pictures
    common = ["--kimg", "0.008", *TINY]
    codes, logs = two_loopback_nodes(tmp_path, ["--data", data, "--gamma", "1", *common],
                                     ["--data", other, "--gamma", "2", "--mirror", *common])
    assert codes[0] != 0 and codes[1] != 0
    text = logs[0] + logs[1]
    assert ("the processes disagree on the training options, code and dataset: dataset files, dataset images, "
            "loss, mirror differ") in text
    assert '"r1_gamma": 1.0' in text and '"r1_gamma": 2.0' in text and "copy the same file" in text
    assert "Traceback" not in text and "is left out: the error above says what to fix" in text
    assert not run_folders(tmp_path / "out0", tmp_path / "out1")


def _share_worker(rank, port, roots, results):
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=3)
    try:
        info = distributed.DistInfo(rank, 3, 0, torch.device("cpu"), node=rank, num_nodes=3)
        snap = snapshot.share_newest_snapshot(roots[rank], info, distributed.all_gather_objects,
                                              distributed.broadcast_object)
        results[rank] = (str(snap.network_path), snap.network_path.read_bytes(), snap.state_path.read_bytes(),
                         (snap.run_dir / "stats.jsonl").read_text())
    finally:
        torch.distributed.destroy_process_group()


def fake_pair(run_dir, label, content):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"network-snapshot-{label}.safetensors").write_bytes(content)
    (run_dir / f"training-state-{label}.pt").write_bytes(content * 2)
    (run_dir / "stats.jsonl").write_text(f"{label}\n")


@pytest.mark.slow
def test_the_newest_snapshot_reaches_nodes_that_lack_it(tmp_path):
    """Node 0 has an older pair, node 1 the newest, node 2 nothing: afterwards all three read node 1's."""
    roots = [tmp_path / f"node{i}" for i in range(3)]
    fake_pair(roots[0] / "00000-x", "000004", b"old")
    fake_pair(roots[1] / "00000-x", "000008", b"new")
    roots[2].mkdir()
    results = mp.Manager().dict()
    port = free_port()
    mp.spawn(_share_worker, args=(port, roots, results), nprocs=3, join=True)
    for rank in range(3):
        path, network, state, stats = results[rank]
        assert path == str(roots[rank] / "00000-x" / "network-snapshot-000008.safetensors")
        assert (network, state, stats) == (b"new", b"newnew", "000008\n")
    assert snapshot.latest_snapshot(roots[0]).label == "000008"


def test_gloo_interface_is_the_one_that_routes_to_rank_zero(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    assert distributed.local_address_towards("127.0.0.1") == "127.0.0.1"
    loopback = distributed.interface_with_address("127.0.0.1")
    assert loopback is not None and loopback.startswith("lo")
    assert distributed.choose_gloo_interface("127.0.0.1") == loopback == os.environ["GLOO_SOCKET_IFNAME"]
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth9")  # the user's choice wins
    assert distributed.choose_gloo_interface("127.0.0.1") == "eth9"
    assert distributed.is_local_address("127.0.0.1") and not distributed.is_local_address("192.0.2.1")


def test_comparing_options_names_the_keys_that_differ(monkeypatch):
    """The comparison logic without processes: three ranks, one disagrees on two keys."""
    info = distributed.DistInfo(0, 3, 0, torch.device("cpu"))
    views = [{"batch": 4, "gamma": 1.0, "seed": 0}, {"batch": 4, "gamma": 1.0, "seed": 0},
             {"batch": 8, "gamma": 1.0, "seed": 5}]
    tags = ["node 0/3 rank 0/3", "node 1/3 rank 1/3", "node 2/3 rank 2/3"]
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    calls = iter([[distributed.digest(v) for v in views], list(zip(tags, views))])
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj: next(calls))
    with pytest.raises(distributed.DistributedSetupError) as err:
        distributed.check_same_on_all_ranks("training options", views[0], info, "Start every node alike.")
    text = str(err.value)
    assert text.startswith("the processes disagree on the training options: batch, seed differ")
    assert "batch: 4 on node 0/3 rank 0/3, 8 on node 2/3 rank 2/3" in text and "gamma" not in text
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj: [obj] * 3)
    distributed.check_same_on_all_ranks("training options", views[0], info, "")  # agreement: no error
