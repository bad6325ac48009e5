"""End-to-end training runs of tiny 16 px networks on the CPU, through the real CLI (in-process)."""
import json
import pathlib

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import train
from fashion_models import load_model
from training import loop, snapshot
from conftest import OFFICIAL, TINY, make_dataset, only_run, read_stats, require


pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(args):
    result = CliRunner().invoke(train.main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_a_few_ticks_write_snapshots_grids_and_stats(tmp_path):
    data = make_dataset(tmp_path / "data")
    result = run_cli(["--outdir", tmp_path / "runs", "--data", data, "--kimg", "0.024", "--snap", "2", "--p", "0.1", *TINY])
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "runs")
    assert run.name == "00000-data-auto1-ada"
    names = {p.name for p in run.iterdir()}
    assert {"reals.png", "fakes-init-000000.000.png", "fakes000000.016.png", "fakes000000.024.png", "log.txt",
            "training_options.json", "stats.jsonl"} <= names
    assert [s.label for s in snapshot.list_snapshots(run)] == ["000000.016", "000000.024"]
    stats = read_stats(run)
    assert [s["kimg"] for s in stats] == [0.008, 0.016, 0.024] and [s["tick"] for s in stats] == [0, 1, 2]
    for s in stats:
        for key in ("Loss/G/loss", "Loss/D/real", "Loss/D/fake", "sec_per_kimg"):
            assert np.isfinite(s[key])
    assert "Loss/r1_penalty" in stats[0] and "Loss/pl_penalty" in stats[0]  # lazy regularisers ran at step 0
    assert stats[-1]["ada_rt"] is not None and stats[-1]["augment_p"] != 0.1  # ADA moved p
    net = load_model(run / "network-snapshot-000000.024.safetensors")
    assert net.meta["cur_nimg"] == 24 and net.augment_p == pytest.approx(stats[-1]["augment_p"])
    assert net.G_ema.img_resolution == 16 and net.D is not None and net.G is not None
    grid = PIL.Image.open(run / "fakes000000.024.png")
    assert grid.size == (8 * 16, 8 * 16)
    assert "tick 2" in result.output and "eta" in result.output


def test_ada_raises_p_when_d_memorises_a_tiny_dataset_fixed_and_noaug_do_not_move_it(tmp_path):
    data = make_dataset(tmp_path / "data", n=4)
    args = ["--data", data, "--kimg", "0.048", "--snap", "100", "--tick", "0.016", *TINY[:-2]]
    assert run_cli(["--outdir", tmp_path / "ada", "--target", "0.2", *args]).exit_code == 0
    stats = read_stats(only_run(tmp_path / "ada"))
    assert stats[-1]["ada_rt"] > 0.2 and stats[-1]["augment_p"] > 0
    # every update moves p by batch * interval / (500 kimg) = 4 * 4 / 500000; 3 updates in 12 steps
    assert stats[-1]["augment_p"] == pytest.approx(round(stats[-1]["augment_p"] / 3.2e-5) * 3.2e-5, abs=1e-9)
    assert run_cli(["--outdir", tmp_path / "noaug", "--aug", "noaug", *args]).exit_code == 0
    run = only_run(tmp_path / "noaug")
    assert all(s["augment_p"] == 0 and s["ada_rt"] is None for s in read_stats(run))
    assert load_model(snapshot.list_snapshots(run)[-1].network_path).augment_p is None
    assert run_cli(["--outdir", tmp_path / "fixed", "--aug", "fixed", "--p", "0.3", *args]).exit_code == 0
    assert all(s["augment_p"] == pytest.approx(0.3) for s in read_stats(only_run(tmp_path / "fixed")))


def test_conditional_training_on_dataset_json_labels(tmp_path):
    data = make_dataset(tmp_path / "data", n=6, classes=3)
    result = run_cli(["--outdir", tmp_path / "runs", "--data", data, "--cond", "--mirror", "--kimg", "0.008", *TINY])
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "runs")
    assert run.name == "00000-data-auto1-cond-mirror-ada" and "12 images (with mirrors)" in result.output
    net = load_model(snapshot.list_snapshots(run)[-1].network_path)
    assert net.G_ema.c_dim == 3 and net.D.c_dim == 3
    assert net.meta["class_names"] == ["k0", "k1", "k2"]  # for the studio's class picker
    with torch.no_grad():  # the label changes the picture
        z = torch.randn(1, 16)
        a, b = (net.G_ema(z, torch.eye(3)[[k]], noise_mode="const") for k in (0, 1))
    assert not torch.allclose(a, b)


def test_cond_without_labels_and_bad_flags_are_clear_errors(tmp_path):
    data = make_dataset(tmp_path / "data")
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "r"), "--data", str(data), "--cond"])
    assert result.exit_code != 0 and "--cond needs labels" in result.output
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "r"), "--resume", "latest"])
    assert result.exit_code != 0 and "no complete snapshot" in result.output
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "r"), "--data", str(data), "--metrics", "fid1"])
    assert result.exit_code != 0 and "unknown metric" in result.output
    assert not (tmp_path / "r").exists()


def test_dry_run_prints_the_resolved_options_and_writes_nothing(tmp_path):
    data = make_dataset(tmp_path / "data", res=32)
    result = run_cli(["--outdir", tmp_path / "runs", "--data", data, "--cfg", "paper256", "--gamma", "3", "--dry-run"])
    assert result.exit_code == 0
    opts = json.loads(result.output[: result.output.rindex("}") + 1])
    assert opts["batch"] == 64 and opts["loss"]["r1_gamma"] == 3 and opts["resolution"] == 32
    assert "00000-data-paper2561-ada" in result.output and not (tmp_path / "runs").exists()
    assert opts["metrics"] == (["fid50k_full"] if torch.cuda.is_available() else ["fid2k_full", "kid2k_full"])
    result = run_cli(["--outdir", tmp_path / "runs", "--data", data, "--cpu", "--dry-run"])  # --metrics auto
    assert json.loads(result.output[: result.output.rindex("}") + 1])["metrics"] == ["fid2k_full", "kid2k_full"]


def dry_run_options(output: str) -> dict:
    return json.loads(output[output.index("{\n"): output.rindex("}") + 1])


def test_dry_run_of_paper1024_has_the_published_channel_base(tmp_path):
    data = make_dataset(tmp_path / "data", n=2, res=1024)
    result = run_cli(["--outdir", tmp_path / "runs", "--data", data, "--cfg", "paper1024", "--dry-run"])
    assert result.exit_code == 0, result.output
    opts = dry_run_options(result.output)
    assert opts["G_kwargs"]["synthesis_kwargs"]["channel_base"] == opts["D_kwargs"]["channel_base"] == 32768


def test_transfer_learning_uses_the_published_ada_speed_and_no_ema_rampup(tmp_path, monkeypatch):
    """--resume of another network: ADA speed 100 kimg, no EMA ramp-up; --dry-run shows it and downloads nothing."""
    import toolkit.download

    def no_download(*args, **kwargs):
        raise AssertionError("--dry-run must not download")

    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(toolkit.download, "download", no_download)
    monkeypatch.setattr("fashion_models.registry.download", no_download)
    data = make_dataset(tmp_path / "data", res=256, n=2)
    base = ["--outdir", tmp_path / "runs", "--data", data, "--dry-run"]
    result = run_cli(base + ["--resume", "ffhq256"])
    assert result.exit_code == 0, result.output
    opts = dry_run_options(result.output)
    assert opts["ada_kimg"] == 100 and opts["ema_rampup"] is None
    assert "ADA speed 100 kimg, EMA ramp-up off" in result.output and "does not download ffhq256" in result.output
    opts = dry_run_options(run_cli(base + ["--resume", "ffhq256", "--ada-kimg", "300", "--ema-rampup", "0.1"]).output)
    assert opts["ada_kimg"] == 300 and opts["ema_rampup"] == 0.1  # explicit flags win
    opts = dry_run_options(run_cli(base).output)
    assert opts["ada_kimg"] == 500 and opts["ema_rampup"] == 0.05  # a run from scratch keeps auto's values
    assert dry_run_options(run_cli(base + ["--ema-rampup", "0"]).output)["ema_rampup"] is None


def test_transfer_from_a_local_network_applies_the_recipe_too(tmp_path):
    data = make_dataset(tmp_path / "data", res=16, n=2)
    result = run_cli(["--outdir", tmp_path / "runs", "--data", data, "--resume", require(OFFICIAL / "tiny16.pkl"),
                      "--dry-run"])
    assert result.exit_code == 0, result.output
    opts = dry_run_options(result.output)
    assert opts["ada_kimg"] == 100 and opts["ema_rampup"] is None
    assert opts["G_kwargs"]["synthesis_kwargs"]["channel_base"] == 512  # the source was read (no download needed)


def test_nan_loss_stops_with_the_tick_and_keeps_the_last_good_snapshot(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "data")
    real_accumulate = loop.StyleGAN2Loss.accumulate_gradients
    calls = {"n": 0}

    def poisoned(self, phase, *args, **kwargs):
        stats = real_accumulate(self, phase, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 10 and "Loss/G/loss" in stats:  # after the first tick (2 steps, ~6 calls)
            stats["Loss/G/loss"] = stats["Loss/G/loss"] * float("nan")
        return stats

    monkeypatch.setattr(loop.StyleGAN2Loss, "accumulate_gradients", poisoned)
    result = CliRunner().invoke(train.main, [str(a) for a in ["--outdir", tmp_path / "runs", "--data", data,
                                                                "--kimg", "0.04", "--snap", "1", *TINY]])
    assert result.exit_code == 1
    assert "diverged at tick" in result.output and "Loss/G/loss" in result.output
    run = only_run(tmp_path / "runs")
    snaps = snapshot.list_snapshots(run)
    assert snaps and snaps[-1].kimg < 0.04
    net = load_model(snaps[-1].network_path)
    assert all(torch.isfinite(p).all() for p in net.G.parameters())


def test_transfer_from_an_official_pickle_with_frozen_discriminator_layers(tmp_path):
    pkl = require(OFFICIAL / "tiny16.pkl")
    data = make_dataset(tmp_path / "data")
    args = ["--outdir", tmp_path / "runs", "--data", data, "--resume", pkl, "--freezed", "2", "--kimg", "0.008",
            "--batch", "4", "--metrics", "none", "--workers", "0", "--cpu", "--tick", "0.008"]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    assert "Architecture follows --resume: z_dim: 512 -> 64" in result.output
    source = load_model(pkl)
    net = load_model(snapshot.list_snapshots(only_run(tmp_path / "runs"))[-1].network_path)
    frozen = ["b16.fromrgb.weight", "b16.fromrgb.bias", "b16.conv0.weight"]  # layers 0 and 1 of D
    for name in frozen:
        assert torch.equal(net.D.state_dict()[name], source.D.state_dict()[name]), name
    assert not torch.equal(net.D.state_dict()["b16.conv1.weight"], source.D.state_dict()["b16.conv1.weight"])
    assert not torch.equal(net.G.state_dict()["synthesis.b16.conv1.weight"],
                           source.G.state_dict()["synthesis.b16.conv1.weight"])
    # G_ema starts as the source's G_ema and moved only a little (10-kimg half-life, ramped up)
    delta = (net.G_ema.synthesis.b16.conv1.weight - source.G_ema.synthesis.b16.conv1.weight).abs().max()
    assert 0 < delta < 0.1


@pytest.mark.slow
def test_portrait_run_from_a_square_pickle_trains_with_ada_and_resumes(tmp_path):
    """16x12 (3:4) data, transferred from the square official tiny16.pkl, ADA (quarter turns included) from
    p 0.5, one tick, then `--resume latest` for another: networks, grids and snapshots are portrait.
    Slow (~20 s on idle cores, 2 min on a busy machine): two runs of the official fixture's 64-channel
    architecture, each rendering two 64-image grids, the bulk of the time."""
    pkl = require(OFFICIAL / "tiny16.pkl")
    data = make_dataset(tmp_path / "data", width=12)
    common = ["--outdir", tmp_path / "runs", "--batch", "4", "--metrics", "none", "--workers", "0", "--cpu", "--snap", "1"]
    result = run_cli([*common, "--data", data, "--resume", pkl, "--kimg", "0.008", "--tick", "0.008", "--p", "0.5"])
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "runs")
    log = (run / "log.txt").read_text()
    assert "16x12px" in log and "synthesis.b4.const: centre (64, 4, 3) window of the source's (64, 4, 4)" in log
    assert "b4.fc.weight: centre (64, 768) window" in log and "fresh" not in log
    assert json.loads((run / "training_options.json").read_text())["G_kwargs"]["base_shape"] == [4, 3]
    assert PIL.Image.open(run / "fakes000000.008.png").size == (8 * 12, 8 * 16)
    assert PIL.Image.open(run / "reals.png").size == (8 * 12, 8 * 16)
    result = run_cli([*common, "--resume", "latest", "--kimg", "0.012", "--tick", "0.004"])
    assert result.exit_code == 0, result.output
    stats = read_stats(run)
    assert [s["kimg"] for s in stats] == [0.008, 0.012] and all(np.isfinite(s["Loss/D/real"]) for s in stats)
    net = load_model(snapshot.list_snapshots(run)[-1].network_path)
    assert net.meta["img_shape"] == [16, 12] and net.G_ema.img_shape == net.D.img_shape == (16, 12)
    with torch.no_grad():
        assert net.G_ema(torch.randn(2, 64), None).shape == (2, 3, 16, 12)


def test_resume_with_the_wrong_resolution_says_what_to_do(tmp_path):
    pkl = require(OFFICIAL / "tiny16.pkl")
    data = make_dataset(tmp_path / "data", res=32)
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "r"), "--data", str(data), "--resume", str(pkl)])
    assert result.exit_code != 0 and "16px network" in result.output and "--resolution 16" in result.output


def test_conditional_run_resumed_from_unconditional_pickle(tmp_path):
    pkl = require(OFFICIAL / "tiny16.pkl")
    data = make_dataset(tmp_path / "data", classes=3)
    result = run_cli(["--outdir", tmp_path / "runs", "--data", data, "--cond", "--resume", pkl, "--kimg", "0.004",
                      "--batch", "4", "--metrics", "none", "--workers", "0", "--cpu", "--tick", "0.004"])
    assert result.exit_code == 0, result.output
    assert "mapping.embed.weight is new" in result.output and "z columns copied" in result.output
    net = load_model(snapshot.list_snapshots(only_run(tmp_path / "runs"))[-1].network_path)
    assert net.G_ema.c_dim == 3 and net.G_ema.z_dim == 64


class TinyFeatures(torch.nn.Module):
    """Stand-in for Inception: uint8 images -> 8 pooled features."""

    fingerprint = "tiny-test-features"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3)

    def forward(self, images):
        return self.conv(images.float() / 255).mean([2, 3])


def test_metrics_are_computed_at_snapshots_or_skipped_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AFRO_FASHION_INCEPTION", raising=False)
    data = make_dataset(tmp_path / "data")
    args = ["--data", data, "--kimg", "0.008", "--metrics", "fid10k_full,kid10k_full",
            *[a for a in TINY if a not in ("--metrics", "none")]]
    result = run_cli(["--outdir", tmp_path / "skip", *args])
    assert result.exit_code == 0 and "will be skipped" in result.output
    assert read_stats(only_run(tmp_path / "skip"))[-1]["metrics"] == {}

    real_compute = loop.compute_metrics
    monkeypatch.setattr(loop, "load_feature_net", lambda source, device: TinyFeatures())
    monkeypatch.setattr(loop, "compute_metrics", lambda *a, **k: real_compute(*a, num_gen=64, **k))
    result = run_cli(["--outdir", tmp_path / "with", *args])
    assert result.exit_code == 0, result.output
    metrics = read_stats(only_run(tmp_path / "with"))[-1]["metrics"]
    assert set(metrics) == {"fid10k_full", "kid10k_full"} and metrics["fid10k_full"] > 0
    assert "Metric fid10k_full at 0.008 kimg" in result.output and "Metrics took" in result.output



def test_a_default_cpu_run_loads_in_process_and_says_what_layout_is_faster(tmp_path, monkeypatch):
    """No --workers/--threads: 0 loader workers on a CPU (they compete with the math), and the better layout."""
    from training import distributed
    monkeypatch.setattr(distributed, "cores_per_process", lambda local_world_size=1: 2)
    data = make_dataset(tmp_path / "data")
    result = run_cli(["--outdir", tmp_path / "runs", "--data", data, "--cfg", "tiny", "--kimg", "0.008",
                      "--tick", "0.008", "--metrics", "none", "--cpu"])
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "runs")
    options = json.loads((run / "training_options.json").read_text())
    assert options["workers"] == 0 and options["cfg"] == "tiny"
    assert "CPU: 1 process x 2 threads. Add `--gpus 2 --threads 1` to the command" in result.output
    assert "0 data-loader workers, 2 threads" in result.output


def test_tiny_preset_is_narrow_and_short():
    from training.config import TrainArgs, resolve_options

    facts = dict(resolution=64, num_channels=3, label_dim=0, dataset_name="d")
    opts = resolve_options(TrainArgs(data="d", cfg="tiny"), **facts)
    syn = opts.G_kwargs["synthesis_kwargs"]
    assert (syn["channel_base"], syn["channel_max"], opts.D_kwargs["channel_max"]) == (1024, 32, 32)
    assert opts.batch == 8 and opts.kimg == 10 and opts.G_kwargs["mapping_kwargs"]["num_layers"] == 2
    assert resolve_options(TrainArgs(data="d", cfg="tiny", cmax=32), **facts).G_kwargs["synthesis_kwargs"]["channel_max"] == 32
    assert "--cfg tiny" in (pathlib.Path(train.__file__).parent / "README.md").read_text()


def test_the_last_tick_shows_no_negative_eta(tmp_path):
    """--kimg 0.010 with batch 4 ends at 12 images: the overshoot once printed 'eta -1h59m59s'."""
    data = make_dataset(tmp_path / "data")
    result = run_cli(["--outdir", tmp_path / "runs", "--data", data, "--kimg", "0.010", *TINY])
    assert result.exit_code == 0, result.output
    ticks = [line for line in result.output.splitlines() if line.startswith("tick ")]
    assert len(ticks) == 2 and "eta 0h00m00s" in ticks[-1] and "eta -" not in result.output
    assert read_stats(only_run(tmp_path / "runs"))[-1]["eta_sec"] == 0
    assert loop.format_duration(-3) == "0h00m00s" and loop.format_duration(3725.9) == "1h02m05s"


def test_tick_bar_shows_the_share_of_the_tick_and_kimg_per_second():
    import io
    out = io.StringIO()
    bar = loop.TickBar(enabled=True, file=out)
    for nimg in (4, 8, 12, 16):
        bar.update(nimg, 16, tick=3)
    bar.close()
    text = out.getvalue()
    assert "tick 3" in text and "0.016/0.016 kimg" in text and "100%" in text and "kimg/s" in text
    silent = io.StringIO()
    off = loop.TickBar(enabled=False, file=silent)  # other ranks
    off.update(4, 16, tick=0)
    off.close()
    assert silent.getvalue() == "" and not loop.TickBar(enabled=True).enabled  # stderr under pytest is no terminal
