"""Two CPU processes with gloo: gradients are averaged, so both ranks hold identical weights."""
import datetime
import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from conftest import REPO, TINY, free_port, make_dataset, only_run
from fashion_models import load_model
from training import distributed, snapshot


def _worker(rank: int, port: int, results):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # different weights per rank
        net = torch.nn.Linear(3, 2)
        distributed.broadcast_module(net)
        synced = distributed.max_rank_difference(net)
        net.weight.grad = torch.full_like(net.weight, float(rank))  # rank 0: 0, rank 1: 1 -> mean 0.5
        net.bias.grad = torch.tensor([float("nan"), 2.0 * rank])
        distributed.all_reduce_mean_grads(net.parameters())
        grads = (net.weight.grad.tolist(), net.bias.grad.tolist())
        with torch.no_grad():
            net.weight[0, 0] += rank * 0.25
        results[rank] = (synced, distributed.max_rank_difference(net), grads)
    finally:
        torch.distributed.destroy_process_group()


def _slow_rank0_worker(rank: int, port: int, results):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                         timeout=datetime.timedelta(seconds=1))
    try:
        distributed.open_rank0_wait_group(timeout_s=60)
        if rank == 0:
            time.sleep(3)  # a "metric" three times longer than the group's timeout
        distributed.wait_for_rank0()
        total = torch.tensor([rank + 1.0])
        torch.distributed.all_reduce(total)
        results[rank] = total.item()
    finally:
        torch.distributed.destroy_process_group()


def test_ranks_wait_for_a_rank0_phase_longer_than_the_group_timeout():
    """The second default model's run died here: rank 1 timed out in an all-reduce after 30 minutes while
    rank 0 computed the first FID's real features."""
    results = mp.Manager().dict()
    mp.spawn(_slow_rank0_worker, args=(free_port(), results), nprocs=2, join=True)
    assert dict(results) == {0: 3.0, 1: 3.0}


@pytest.mark.slow
def test_gloo_helpers_broadcast_average_and_detect_divergence():
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(free_port(), results), nprocs=2, join=True)
    for rank in (0, 1):
        synced, diverged, (w_grad, b_grad) = results[rank]
        assert synced == 0.0 and diverged == pytest.approx(0.25, rel=1e-6)
        assert w_grad == [[0.5] * 3] * 2 and b_grad == [0.0, 1.0]  # NaN defused to 0, then averaged


@pytest.mark.slow
def test_two_process_training_keeps_ranks_identical(tmp_path):
    data = make_dataset(tmp_path / "data")
    outdir = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "train.py"), "--gpus", "2", "--outdir", str(outdir), "--data", str(data),
           "--kimg", "0.016", "--snap", "1", *TINY]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stdout and "2 per process x 2" in proc.stdout
    run = only_run(outdir)
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    snap_ticks = [s for s in stats if "ddp_max_diff" in s]
    assert len(snap_ticks) == 2 and all(s["ddp_max_diff"] == 0.0 for s in snap_ticks)
    assert all(abs(s["Loss/G/loss"]) < 1e3 for s in stats)
    state = snapshot.load_training_state(snapshot.list_snapshots(run)[-1].state_path)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # ranks draw different latents
    assert load_model(snapshot.list_snapshots(run)[-1].network_path).meta["cur_nimg"] == 16


@pytest.mark.slow
def test_a_one_process_run_continues_on_two(tmp_path):
    """--resume latest --gpus 2 moves a run: kimg, optimiser moments and ADA carry on; ranks stay identical."""
    data = make_dataset(tmp_path / "data")
    outdir = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, str(REPO / "train.py"), "--outdir", str(outdir), "--snap", "1"]
    first = subprocess.run(base + ["--data", str(data), "--kimg", "0.008", *TINY], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run = only_run(outdir)
    before = snapshot.load_training_state(snapshot.list_snapshots(run)[-1].state_path)
    assert before["world_size"] == 1 and before["cur_nimg"] == 8

    second = subprocess.run(base + ["--resume", "latest", "--gpus", "2", "--kimg", "0.016", "--cpu"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Moving the run to 2 process(es)" in second.stdout and "2 per process x 2" in second.stdout
    assert "a 1-process snapshot, on 2 processes" in (run / "log.txt").read_text()
    assert only_run(outdir) == run and json.loads((run / "training_options.json").read_text())["gpus"] == 2
    kimgs = [json.loads(line)["kimg"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert kimgs == [0.008, 0.016]  # the counter went on from the snapshot, not from zero
    after = snapshot.load_training_state(snapshot.list_snapshots(run)[-1].state_path)
    assert after["world_size"] == 2 and after["cur_nimg"] == 16 and after["batch_idx"] == before["batch_idx"] + 2
    assert after["sampler_position"] == 8 // 2 + 2 * 2  # half of one stream each, then two steps of 2
    assert len(after["ada"]) == 2 and after["optimizers"][0]["state"][0]["step"] > before["optimizers"][0]["state"][0]["step"]
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["ddp_max_diff"] == 0.0
