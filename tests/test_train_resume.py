"""`--resume latest`: bitwise-identical continuation, and recovery after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import train
from conftest import REPO, TINY, make_dataset, only_run, read_stats
from fashion_models import load_model
from training import snapshot


pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(args):
    result = CliRunner().invoke(train.main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_half_plus_resume_plus_half_equals_straight_run_bitwise(tmp_path):
    data = make_dataset(tmp_path / "data", classes=2)
    # 3 steps per tick: the second half holds a path-length step (batch 4) and an ADA update (batch 4),
    # p starts at 0.3 so augmentation (its RNG included) is active; labels exercise label sampling.
    common = ["--data", data, "--cond", "--mirror", "--deterministic", "--p", "0.3", "--snap", "1",
              *TINY[:-2], "--tick", "0.012"]
    run_cli(["--outdir", tmp_path / "straight", "--kimg", "0.024", *common])
    run_cli(["--outdir", tmp_path / "split", "--kimg", "0.012", *common])
    # The run moves to another machine: same dataset, new path (--data may change on resume).
    moved = data.rename(tmp_path / "moved-data")
    result = run_cli(["--outdir", tmp_path / "split", "--resume", "latest", "--kimg", "0.024", "--data", moved])
    assert "Training for 0.024 kimg from 0.012 kimg" in result.output
    assert json.loads((only_run(tmp_path / "split") / "training_options.json").read_text())["data"] == str(moved)

    straight, split = only_run(tmp_path / "straight"), only_run(tmp_path / "split")
    a = load_file(straight / "network-snapshot-000000.024.safetensors")
    b = load_file(split / "network-snapshot-000000.024.safetensors")
    assert a.keys() == b.keys() and len(a) > 100
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"differs after resume: {different[:5]}"
    # and training did move the weights in the second half
    mid = load_file(straight / "network-snapshot-000000.012.safetensors")
    assert not torch.equal(mid["G.synthesis.b16.conv1.weight"], a["G.synthesis.b16.conv1.weight"])

    sa = snapshot.load_training_state(straight / "training-state-000000.024.pt")
    sb = snapshot.load_training_state(split / "training-state-000000.024.pt")
    for key in ("cur_nimg", "cur_tick", "batch_idx", "sampler_position", "ada"):
        assert sa[key] == sb[key], key
    assert torch.equal(sa["pl_mean"], sb["pl_mean"]) and torch.equal(sa["augment_p"], sb["augment_p"])
    for opt_a, opt_b in zip(sa["optimizers"], sb["optimizers"]):
        for (ka, va), (kb, vb) in zip(opt_a["state"].items(), opt_b["state"].items()):
            assert torch.equal(va["exp_avg"], vb["exp_avg"]) and torch.equal(va["exp_avg_sq"], vb["exp_avg_sq"])
    assert sa["cur_nimg"] == 24 and sa["batch_idx"] == 6 and sa["ada"][0]["p"] != 0.3
    # stats continue in the same file without a restart at 0
    assert [s["kimg"] for s in read_stats(split)] == [0.012, 0.024]


def test_resume_latest_refuses_a_dataset_with_other_classes(tmp_path):
    data = make_dataset(tmp_path / "data", classes=2)
    run_cli(["--outdir", tmp_path / "runs", "--data", data, "--cond", "--kimg", "0.012", "--snap", "1",
             *TINY[:-2], "--tick", "0.012"])
    other = make_dataset(tmp_path / "other", classes=3)
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "runs"), "--resume", "latest",
                                             "--kimg", "0.024", "--data", str(other)])
    assert result.exit_code != 0
    assert "with 3 classes, but the run was set up for 16x16px x3 with 2 classes" in str(result.exception)


def test_a_two_process_run_continues_on_one_with_gradient_accumulation(tmp_path):
    """A run moved from 2 processes to 1: the same global batch in 2 micro-batches, counters and ADA carried on."""
    data = make_dataset(tmp_path / "data")
    run_cli(["--outdir", tmp_path / "r", "--data", data, "--kimg", "0.004", *TINY[:-2], "--tick", "0.004"])
    run = only_run(tmp_path / "r")
    # Rewrite the run as if 2 processes (2 images each) had trained it: options, per-rank ADA and RNG, sampler.
    options = json.loads((run / "training_options.json").read_text())
    (run / "training_options.json").write_text(json.dumps({**options, "gpus": 2, "batch_gpu": 2}))
    state_path = snapshot.list_snapshots(run)[-1].state_path
    state = snapshot.load_training_state(state_path)
    ada = state["ada"][0]
    state.update(world_size=2, sampler_position=state["sampler_position"] // 2, rng=state["rng"] * 2,
                 ada=[{**ada, "stats": [1.0, 2.0]}, {**ada, "stats": [-3.0, 2.0]}])
    snapshot.save_training_state(state_path, state)
    result = run_cli(["--outdir", tmp_path / "r", "--resume", "latest", "--gpus", "1", "--kimg", "0.008"])
    assert "Moving the run to 1 process(es): the same global batch, 2 per process" in result.output
    assert "a 2-process snapshot, on 1 processes" in result.output
    assert "micro-batch 2" in result.output and "Training for 0.008 kimg from 0.004 kimg" in result.output
    after = snapshot.load_training_state(snapshot.list_snapshots(run)[-1].state_path)
    assert after["world_size"] == 1 and after["cur_nimg"] == 8 and after["sampler_position"] == 8
    assert len(after["ada"]) == 1 and [s["kimg"] for s in read_stats(run)] == [0.004, 0.008]


@pytest.mark.slow
def test_sigkilled_run_resumes_from_its_last_snapshot(tmp_path):
    data = make_dataset(tmp_path / "data")
    outdir = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(REPO / "train.py"), "--outdir", str(outdir), "--data", str(data), "--kimg", "10",
           "--snap", "1", "--keep", "3", *TINY]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if outdir.exists() and snapshot.latest_snapshot(outdir) is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.5)  # let it get into the middle of the next tick / snapshot
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    latest = snapshot.latest_snapshot(outdir)
    assert latest is not None and latest.kimg >= 0.008
    target = latest.kimg + 0.016
    result = run_cli(["--outdir", outdir, "--resume", "latest", "--kimg", f"{target:.3f}", "--workers", "0"])
    assert f"from {latest.kimg:g} kimg" in result.output
    run = only_run(outdir)
    snaps = snapshot.list_snapshots(run)
    assert snaps[-1].kimg == pytest.approx(target) and len(snaps) <= 3
    for snap in snaps:  # every remaining snapshot is complete and loads
        net = load_model(snap.network_path)
        assert net.meta["cur_nimg"] == round(snap.kimg * 1000)
        assert snapshot.load_training_state(snap.state_path)["cur_nimg"] == net.meta["cur_nimg"]
    kimgs = [s["kimg"] for s in read_stats(run)]
    assert kimgs == sorted(set(kimgs)) and kimgs[-1] == pytest.approx(target)
    assert json.loads((run / "training_options.json").read_text())["kimg"] == pytest.approx(target)
