"""Unit tests of the training pieces: presets, loss terms, EMA, lazy-regularisation Adam, sampler, snapshots."""
import math
import os
import pathlib
import random

import numpy as np
import pytest
import torch

from conftest import tiny_generator
from stylegan2.networks import Discriminator, Generator
from training import snapshot
from training.config import PUBLISHED_CFGS, TrainArgs, auto_spec, on_processes, resolve_options
from training.dataset import InfiniteSampler
from training.loop import build_phases, step_phase, update_ema
from training.loss import StyleGAN2Loss


pytestmark = pytest.mark.usefixtures("one_thread")


def options(resolution=256, label_dim=0, base_shape=(4, 4), **flags):
    """Resolved options for train.py flags (TrainArgs fields) on a 3-channel dataset (networks' base `base_shape`)."""
    return resolve_options(TrainArgs(data="x", **flags), resolution=resolution, num_channels=3, label_dim=label_dim,
                           dataset_name="x", base_shape=base_shape)


# ----------------------------------------------------------------------------- config

def test_auto_heuristics_match_the_published_formulas():
    s = auto_spec(256, 1)
    assert (s.mb, s.mbstd, s.fmaps, s.lrate, s.map, s.ramp) == (16, 4, 0.5, 0.0025, 2, 0.05)
    assert s.gamma == pytest.approx(0.0002 * 256 ** 2 / 16) and s.ema == pytest.approx(16 * 10 / 32)
    s = auto_spec(1024, 8)
    assert (s.mb, s.mbstd, s.fmaps, s.lrate) == (32, 4, 1, 0.002)
    s = auto_spec(32, 4)  # min(4096 // 32, 32) * 4 = 128 -> capped at 64
    assert (s.mb, s.mbstd) == (64, 4)


def test_portrait_presets_scale_batch_and_r1_by_pixel_count():
    """256x192 has 49,152 pixels, a 221.7 px square: batch 4096 / 221.7 = 18.5 -> 16 (a power of two),
    gamma 0.0002 * 49152 / 16 (3/4 of the square's); 128x96: 36.9 -> 32 (capped at 32); widths follow the
    longer side (256 px: fmaps 0.5)."""
    s = auto_spec(256, 1, pixels=256 * 192)
    assert (s.mb, s.mbstd, s.fmaps) == (16, 4, 0.5) and s.gamma == pytest.approx(0.0002 * 49152 / 16)
    assert auto_spec(128, 1, pixels=128 * 96).mb == 32 and auto_spec(1024, 1, pixels=1024 * 512).mb == 4
    for res in (64, 256, 1024):
        assert auto_spec(res, 2, pixels=res * res) == auto_spec(res, 2)
    opts = options(base_shape=(4, 3))
    assert opts.G_kwargs["base_shape"] == opts.D_kwargs["base_shape"] == [4, 3] and opts.batch == 16
    assert opts.loss["r1_gamma"] == pytest.approx(0.75 * options().loss["r1_gamma"])
    assert "base_shape" not in options().G_kwargs and "base_shape" not in options().D_kwargs


def test_published_presets_resolve_to_network_kwargs():
    assert PUBLISHED_CFGS["paper256"].mb == 64 and PUBLISHED_CFGS["cifar"].mbstd == 32
    o = options(cfg="paper256")
    assert o.batch == 64 and o.batch_gpu == 8 and o.rounds == 8
    assert o.G_kwargs["synthesis_kwargs"] == dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256,
                                                  architecture="skip")
    assert o.D_kwargs["architecture"] == "resnet"  # config F
    assert o.G_kwargs["mapping_kwargs"]["num_layers"] == 8 and o.D_kwargs["epilogue_kwargs"]["mbstd_group_size"] == 8
    assert o.loss["r1_gamma"] == 1 and o.ema_kimg == 20 and o.ema_rampup is None
    assert o.G_opt == dict(lr=0.0025, betas=[0.0, 0.99], eps=1e-8)
    cifar = options(cfg="cifar", resolution=32)
    assert cifar.loss["pl_weight"] == 0 and cifar.loss["style_mixing_prob"] == 0
    assert cifar.D_kwargs["architecture"] == "orig" and cifar.G_kwargs["synthesis_kwargs"]["architecture"] == "skip"


# The published table (StyleGAN2-ADA, Appendix A, and the official --cfg table), typed in from the paper:
# (mb, mbstd, fmaps, lrate, gamma, ema, ramp, map).
PAPER_TABLE = {
    "stylegan2": (32, 4, 1, 0.002, 10, 10, None, 8),
    "paper256": (64, 8, 0.5, 0.0025, 1, 20, None, 8),
    "paper512": (64, 8, 1, 0.0025, 0.5, 20, None, 8),
    "paper1024": (32, 4, 1, 0.002, 2, 10, None, 8),
    "cifar": (64, 32, 1, 0.0025, 0.01, 500, 0.05, 2),
}


@pytest.mark.parametrize("cfg", sorted(PAPER_TABLE))
def test_every_published_preset_has_the_papers_feature_map_scale(cfg):
    mb, mbstd, fmaps, lrate, gamma, ema, ramp, map_layers = PAPER_TABLE[cfg]
    spec = PUBLISHED_CFGS[cfg]
    assert (spec.mb, spec.mbstd, spec.fmaps, spec.lrate, spec.gamma, spec.ema, spec.ramp, spec.map) == PAPER_TABLE[cfg]
    o = options(cfg=cfg, resolution=32 if cfg == "cifar" else int(cfg[5:]) if cfg.startswith("paper") else 256)
    assert o.G_kwargs["synthesis_kwargs"]["channel_base"] == o.D_kwargs["channel_base"] == int(fmaps * 32768)
    assert set(PUBLISHED_CFGS) == set(PAPER_TABLE)


@pytest.mark.parametrize("res, fmaps", [(32, 0.5), (256, 0.5), (512, 1), (1024, 1)])
def test_auto_and_gpu_presets_feature_map_scale_follows_resolution(res, fmaps):
    for cfg in ("auto", "t4", "a100"):
        assert options(cfg=cfg, resolution=res).G_kwargs["synthesis_kwargs"]["channel_base"] == int(fmaps * 32768)


def test_gpu_presets_and_overrides():
    t4 = options(cfg="t4")
    assert (t4.batch, t4.batch_gpu, t4.rounds) == (32, 16, 2)
    assert options(cfg="t4", resolution=512).batch_gpu == 8
    assert options(cfg="a100", resolution=512).batch == 64
    o = options(cfg="auto", resolution=64, cbase=8192, cmax=256, map_layers=4, zdim=128, batch=8)
    assert o.G_kwargs["synthesis_kwargs"]["channel_base"] == 8192 and o.D_kwargs["channel_max"] == 256
    assert o.G_kwargs["mapping_kwargs"]["num_layers"] == 4 and o.G_kwargs["w_dim"] == 128 and o.batch_gpu == 8
    fp32 = options(fp32=True)
    assert fp32.G_kwargs["synthesis_kwargs"]["num_fp16_res"] == 0 and fp32.D_kwargs["conv_clamp"] is None


@pytest.mark.parametrize("kw, words", [
    (dict(cond=True), "--cond needs labels"),
    (dict(batch=6, batch_gpu=4), "multiple"),
    (dict(aug="fixed"), "--p"),
    (dict(cfg="nope"), "unknown --cfg"),
])
def test_inconsistent_options_are_clear_errors(kw, words):
    with pytest.raises(ValueError, match=words):
        options(**kw)


# train.py's public flags as they were before the options were defined once (issue #14, point 5), with
# --attr-dropout (multi-attribute conditioning, #23).
TRAIN_FLAGS = ["--outdir", "--data", "--gpus", "--nodes", "--rendezvous", "--rendezvous-timeout", "--max-restarts",
               "--cfg", "--cond", "--attr-dropout", "--mirror", "--kimg", "--batch", "--batch-gpu", "--gamma", "--lr", "--ema", "--cbase",
               "--cmax", "--map", "--zdim", "--mbstd-group", "--fp16-res", "--aug", "--p", "--target", "--augpipe",
               "--ada-kimg", "--ema-rampup", "--resume", "--freezed", "--tick", "--snap", "--keep", "--metrics",
               "--feature-net", "--fp32", "--allow-tf32", "--deterministic", "--seed", "--workers", "--cpu",
               "--threads", "--dry-run"]


def test_train_py_flags_are_unchanged_and_each_fills_one_train_args_field_with_its_default():
    import dataclasses

    import click
    from click.testing import CliRunner

    import train

    params = [p for p in train.main.params if isinstance(p, click.Option)]
    assert [name for p in params for name in p.opts] == TRAIN_FLAGS
    help_text = CliRunner().invoke(train.main, ["--help"]).output
    assert all(flag in help_text for flag in TRAIN_FLAGS)
    fields = {f.name: f.default for f in dataclasses.fields(TrainArgs)}
    assert sorted(p.name for p in params) == sorted(fields)
    parsed = train.main.make_context("train.py", ["--outdir", "runs"]).params   # what main(**params) receives
    assert parsed == {**fields, "outdir": "runs"}


def test_options_json_roundtrip():
    o = options(cfg="t4", cond=False, metrics=["fid10k"])
    assert type(o).from_json(o.to_json()) == o


def test_moving_a_run_to_more_processes_keeps_the_global_batch():
    o = options(cfg="auto", resolution=64, batch=16)  # one process, micro-batch 16, mbstd 4
    assert (o.gpus, o.batch_gpu, o.rounds) == (1, 16, 1)
    two = on_processes(o, 2)
    assert (two.gpus, two.batch, two.batch_gpu, two.rounds) == (2, 16, 8, 1)
    assert two.G_kwargs == o.G_kwargs and two.loss == o.loss and two.ema_kimg == o.ema_kimg
    assert on_processes(two, 1).batch_gpu == 8 and on_processes(two, 1).rounds == 2  # fewer: accumulate instead
    with pytest.raises(ValueError, match="cannot be split over 3 processes"):
        on_processes(o, 3)
    with pytest.raises(ValueError, match="cannot be split over 32"):
        on_processes(o, 32)


# ----------------------------------------------------------------------------- optimisers and EMA

def test_lazy_regularisation_scales_adam_lr_and_betas():
    o = options(cfg="paper256")
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    phases = build_phases(list(G.parameters()), list(D.parameters()), o)
    assert [(p.name, p.interval) for p in phases] == [("Gmain", 1), ("Greg", 4), ("Dmain", 1), ("Dreg", 16)]
    g, d = phases[0].opt.param_groups[0], phases[2].opt.param_groups[0]
    assert g["lr"] == pytest.approx(0.0025 * 4 / 5) and g["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    assert d["lr"] == pytest.approx(0.0025 * 16 / 17) and d["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert g["betas"][0] == 0 and g["eps"] == 1e-8 and phases[0].opt is phases[1].opt


def test_ema_half_life_and_rampup():
    G, G_ema = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    G.register_buffer("tracked", torch.tensor([5.0]))
    G_ema.register_buffer("tracked", torch.tensor([0.0]))
    before = G_ema.weight.detach().double().clone()
    beta = update_ema(G_ema, G, cur_nimg=100_000, batch=32, ema_kimg=10, rampup=None)
    assert beta == pytest.approx(0.5 ** (32 / 10_000))
    expected = G.weight.detach().double() + (before - G.weight.detach().double()) * beta
    assert torch.allclose(G_ema.weight.double(), expected, atol=1e-6)
    assert G_ema.tracked.item() == 5.0  # buffers are copied, not averaged
    # ramp-up: early in training the half-life is cur_nimg * rampup
    assert update_ema(G_ema, G, cur_nimg=1000, batch=32, ema_kimg=10, rampup=0.05) == pytest.approx(0.5 ** (32 / 50))
    # a 10-kimg half-life halves the distance after 10k images
    G_ema.weight.data.zero_()
    G.weight.data.fill_(1.0)
    for _ in range(10_000 // 40):
        update_ema(G_ema, G, cur_nimg=10**9, batch=40, ema_kimg=10, rampup=None)
    assert G_ema.weight.mean().item() == pytest.approx(0.5, abs=1e-4)


# ----------------------------------------------------------------------------- loss

class LinearD(torch.nn.Module):
    """D(x) = <a, x>: R1 = |a|^2 per sample, so every gradient is known in closed form."""

    def __init__(self, shape):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(shape, dtype=torch.float64))

    def forward(self, img, c):
        return (img * self.a).sum([1, 2, 3]).unsqueeze(1)


class LinearG(torch.nn.Module):
    """ws = z repeated (or per-layer linear maps); img = sum over layers of ws_l @ A_l."""

    def __init__(self, z_dim=3, num_ws=4, res=4):
        super().__init__()
        self.z_dim, self.num_ws, self.res = z_dim, num_ws, res
        self.A = torch.nn.Parameter(torch.randn(num_ws, z_dim, 3 * res * res, dtype=torch.float64))
        self.scale = torch.nn.Parameter(torch.ones([], dtype=torch.float64))  # puts ws in the autograd graph
        self.mapping = self._map
        self.synthesis = self._syn

    def _map(self, z, c, update_w_avg=None):
        return (z * self.scale).unsqueeze(1).repeat(1, self.num_ws, 1)

    def _syn(self, ws):
        return torch.einsum("nlw,lwp->np", ws, self.A).reshape(-1, 3, self.res, self.res)


def test_r1_gradient_is_gamma_times_a_times_gain():
    D = LinearD([3, 4, 4])
    loss = StyleGAN2Loss(LinearG(), D, r1_gamma=3.0)
    real = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    stats = loss.accumulate_gradients("Dreg", real, torch.zeros(5, 0), torch.randn(5, 3), torch.zeros(5, 0), gain=16)
    # loss = mean_n(gamma/2 * |a|^2) * gain  ->  d/da = gamma * a * gain
    assert torch.allclose(D.a.grad, 3.0 * D.a.detach() * 16)
    assert torch.allclose(stats["Loss/r1_penalty"], D.a.detach().square().sum().expand(5))


def test_nonsaturating_losses_match_softplus_by_hand():
    G, D = LinearG(), LinearD([3, 4, 4])
    loss = StyleGAN2Loss(G, D, style_mixing_prob=0.0)
    z = torch.randn(6, 3, dtype=torch.float64)
    real = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    c = torch.zeros(6, 0)
    s = loss.accumulate_gradients("Gmain", real, c, z, c, gain=1)
    logits = D(G.synthesis(G.mapping(z, c)), c).detach()
    assert torch.allclose(s["Loss/G/loss"], torch.log1p(torch.exp(-logits)))
    s = loss.accumulate_gradients("Dmain", real, c, z, c, gain=1)
    assert torch.allclose(s["Loss/D/fake"], torch.log1p(torch.exp(logits)))
    assert torch.allclose(s["Loss/D/real"], torch.log1p(torch.exp(-D(real, c).detach())))
    assert set(s) >= {"Loss/signs/real", "Loss/scores/real"} and "Loss/r1_penalty" not in s


def test_path_length_gradient_flows_through_the_freshly_updated_mean():
    """The penalty uses pl_mean = lerp(old, mean(lengths), decay) inside the graph; only the stored value is detached."""
    G, D = LinearG(res=4), LinearD([3, 4, 4])
    loss = StyleGAN2Loss(G, D, style_mixing_prob=0.0, pl_weight=2.0, pl_batch_shrink=2, pl_decay=0.01)
    loss.pl_mean = torch.zeros([], dtype=torch.float64)
    z = torch.randn(8, 3, dtype=torch.float64)
    c = torch.zeros(8, 0)
    old_mean = 0.0
    for step in range(2):  # the second step starts from a non-zero running mean
        G.A.grad = None
        torch.manual_seed(7 + step)
        loss.accumulate_gradients("Greg", None, c, z, c, gain=4)
        torch.manual_seed(7 + step)
        y = torch.randn(4, 3, 4, 4, dtype=torch.float64) / 4.0  # noise / sqrt(H*W), for the first 8 // 2 samples
        # d(img . y)/d ws[n, l] = A_l @ y_n  (independent of n's latent: the generator is linear)
        A = G.A.detach().clone().requires_grad_(True)
        lengths = torch.einsum("lwp,np->nlw", A, y.reshape(4, -1)).square().sum(2).mean(1).sqrt()
        fresh = old_mean + 0.01 * (lengths.mean() - old_mean)  # in the graph
        assert loss.pl_mean.item() == pytest.approx(fresh.item(), rel=1e-9)
        assert not loss.pl_mean.requires_grad
        ((lengths - fresh) ** 2 * 2.0).mean().mul(4).backward()
        assert torch.allclose(G.A.grad, A.grad, rtol=1e-9, atol=1e-12)
        # The detached mean would give a measurably different gradient: this test can tell them apart.
        A_detached = A.detach().clone().requires_grad_(True)
        L = torch.einsum("lwp,np->nlw", A_detached, y.reshape(4, -1)).square().sum(2).mean(1).sqrt()
        ((L - fresh.detach()) ** 2 * 2.0).mean().mul(4).backward()
        assert (A_detached.grad - A.grad).norm() > 1e-3 * A.grad.norm()
        old_mean = fresh.item()


def test_r1_pass_reports_the_signs_of_real_logits_for_ada():
    """r_t counts D's sign on every real it sees: the R1 pass's reals count as much as the main pass's."""
    D = LinearD([3, 4, 4])
    loss = StyleGAN2Loss(LinearG(), D, r1_gamma=1.0, style_mixing_prob=0.0)
    real, z, c = torch.randn(6, 3, 4, 4, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64), torch.zeros(6, 0)
    expected = D(real, c).detach().sign()
    for phase in ("Dmain", "Dreg"):
        stats = loss.accumulate_gradients(phase, real, c, z, c, gain=1)
        assert torch.equal(stats["Loss/signs/real"], expected), phase
        assert torch.equal(stats["Loss/scores/real"], D(real, c).detach()), phase


def test_style_mixing_takes_late_layers_from_a_second_latent():
    G = LinearG(z_dim=3, num_ws=6)
    loss = StyleGAN2Loss(G, LinearD([3, 4, 4]), style_mixing_prob=1.0)
    z = torch.randn(2, 3, dtype=torch.float64)
    cutoffs = set()
    for seed in range(20):
        torch.manual_seed(seed)
        _, ws = loss.run_G(z, None)
        same = (ws == z[:, None, :]).all(dim=2).all(dim=0)
        cutoff = int(same.float().argmin())
        assert 1 <= cutoff < 6 and same[:cutoff].all() and not same[cutoff:].any()
        assert torch.equal(ws[0, cutoff], ws[0, -1])  # all late layers share one mixing latent
        cutoffs.add(cutoff)
    assert len(cutoffs) >= 3
    loss.style_mixing_prob = 0.0
    assert torch.equal(loss.run_G(z, None)[1], z[:, None, :].repeat(1, 6, 1))


def test_style_mixing_does_not_update_w_avg_twice():
    G = tiny_generator(8, 8, seed=None, layers=1, channel_base=64, channel_max=8, eval_mode=False)
    loss = StyleGAN2Loss(G, LinearD([3, 8, 8]), style_mixing_prob=1.0)
    z = torch.randn(4, 8)
    torch.manual_seed(0)
    loss.run_G(z, None)
    with torch.no_grad():
        expected = G.mapping.fc0(torch.nn.functional.normalize(z, dim=1) * math.sqrt(8)).mean(0) * (1 - 0.995)
    assert torch.allclose(G.mapping.w_avg, expected, atol=1e-6)


# ----------------------------------------------------------------------------- sampler

def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_sampler_shards_each_epoch_and_restarts_exactly():
    a, b = InfiniteSampler(10, rank=0, num_replicas=2, seed=3), InfiniteSampler(10, rank=1, num_replicas=2, seed=3)
    first_a, first_b = take(a, 5), take(b, 5)
    assert sorted(first_a + first_b) == list(range(10))  # epoch 0 split between ranks, no overlap
    second = take(a, 10)[5:] + take(b, 10)[5:]
    assert sorted(second) == list(range(10)) and second != first_a + first_b  # reshuffled epoch 1
    restarted = InfiniteSampler(10, rank=1, num_replicas=2, seed=3)
    restarted.position = 7
    assert take(restarted, 6) == take(b, 13)[7:]


def test_sampler_continues_one_global_stream_on_another_world_size():
    one = InfiniteSampler(10, seed=3)
    stream = take(one, 16)
    resumed = [InfiniteSampler(10, rank=r, num_replicas=2, seed=3) for r in (0, 1)]
    for s in resumed:
        s.position = 6 * 1 // 2  # one process had consumed 6: each of two continues at 3
    a, b = take(resumed[0], 5), take(resumed[1], 5)
    assert [x for pair in zip(a, b) for x in pair] == stream[6:16]


def test_ada_state_merges_rank_statistics_when_the_world_size_changes():
    saved = [{"p": 0.25, "rt": 0.7, "stats": [3.0, 8.0]}, {"p": 0.25, "rt": 0.7, "stats": [-1.0, 8.0]}]
    assert snapshot.ada_state_for_rank(saved, 1, 2) == saved[1]  # same world size: each rank its own
    assert snapshot.ada_state_for_rank(saved, 0, 1)["stats"] == [2.0, 16.0]  # 3 - 1 signs over 8 + 8 logits
    assert snapshot.ada_state_for_rank(saved, 0, 4)["stats"] == [2.0, 16.0]
    assert snapshot.ada_state_for_rank(saved, 3, 4) == {"p": 0.25, "rt": 0.7, "stats": [0.0, 0.0]}
    old_format = {"p": 0.1, "rt": None, "stats": [5.0, 4.0]}  # before every rank's state was kept
    assert snapshot.ada_state_for_rank(old_format, 0, 1) == old_format


# ----------------------------------------------------------------------------- snapshot files

def test_rng_state_roundtrip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = snapshot.capture_rng_state(torch.device("cpu"))
    expected = (torch.rand(3), np.random.randn(3), random.random())
    snapshot.save_training_state(tmp_path / "s.pt", {"rng": [state]})
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    snapshot.restore_rng_state(snapshot.load_training_state(tmp_path / "s.pt")["rng"][0], torch.device("cpu"))
    got = (torch.rand(3), np.random.randn(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_preserved_rng_hides_side_work():
    torch.manual_seed(0)
    with snapshot.preserved_rng(torch.device("cpu")):
        torch.randn(100), np.random.rand(5)
    after = torch.rand(2)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(2))


def test_only_complete_pairs_count_and_old_ones_are_pruned(tmp_path):
    run = tmp_path / "00003-x"
    run.mkdir()
    for label in ("000004", "000008", "000012"):
        snap = snapshot.Snapshot(run, label)
        snapshot.write_snapshot(snap, {"cur_nimg": int(label) * 1000},
                                lambda p: pathlib.Path(p).write_bytes(b"net"), keep=2)
    assert [s.label for s in snapshot.list_snapshots(run)] == ["000008", "000012"]
    assert not (run / "network-snapshot-000004.safetensors").exists() and not (run / "training-state-000004.pt").exists()
    # a kill between the state and the network rename leaves a lone state file: ignored
    snapshot.save_training_state(run / "training-state-000016.pt", {})
    assert snapshot.latest_snapshot(tmp_path).label == "000012"
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]
    (tmp_path / "00004-y").mkdir()  # a newer run without snapshots is skipped
    assert snapshot.latest_snapshot(tmp_path).run_dir == run
    assert snapshot.kimg_label(4032, 4) == "000004" and snapshot.kimg_label(32, 0.016) == "000000.032"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def boom(path):
        pathlib.Path(path).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        snapshot.atomic_write(target, boom)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


# ----------------------------------------------------------------------------- transfer learning

def tiny_G(c_dim):
    return tiny_generator(8, c_dim=c_dim, seed=c_dim, channel_base=64, eval_mode=False)


def test_conditional_network_from_unconditional_source_draws_the_same_images():
    src, dst = tiny_G(0).eval(), tiny_G(3).eval()
    notes = snapshot.transfer_weights(src, dst)
    assert any("mapping.embed" in n and "new" in n for n in notes)
    assert any("mapping.fc0.weight" in n and "z columns" in n for n in notes)
    z = torch.randn(4, 16)
    c = torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        assert torch.allclose(dst.mapping(z, c), src.mapping(z, None), atol=1e-5)
        assert torch.allclose(dst(z, c, noise_mode="const"), src(z, None, noise_mode="const"), atol=1e-5)


def test_transfer_skips_mismatched_shapes_with_a_note():
    src = tiny_G(0)
    dst = tiny_generator(8, seed=None, channel_base=128, channel_max=32, eval_mode=False)
    notes = snapshot.transfer_weights(src, dst)
    assert any("synthesis.b4.const" in n and "initialised fresh" in n for n in notes)
    assert torch.equal(dst.mapping.fc1.weight, src.mapping.fc1.weight)


def shaped_nets(base_shape, seed, res=16):
    torch.manual_seed(seed)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=res, img_channels=3, base_shape=base_shape,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16))
    D = Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=256, channel_max=16,
                      base_shape=base_shape)
    with torch.no_grad():  # the noise matters, so its buffers must follow the crop too
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    return G.eval(), D.eval()


def test_square_to_square_transfer_is_an_identity():
    (G_src, D_src), (G_dst, D_dst) = shaped_nets((4, 4), 0), shaped_nets((4, 4), 1)
    assert snapshot.transfer_weights(G_src, G_dst) == [] and snapshot.transfer_weights(D_src, D_dst) == []
    for src, dst in ((G_src, G_dst), (D_src, D_dst)):
        for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
            assert torch.equal(a, b), k


# (base shape, the window of base cells a square 4x4 keeps: rows, columns), written out by hand
CROPS = [((4, 3), (slice(0, 4), slice(0, 3))), ((4, 2), (slice(0, 4), slice(1, 3))),
         ((2, 4), (slice(1, 3), slice(0, 4)))]


@pytest.mark.parametrize("base_shape,cells", CROPS)
def test_square_to_portrait_transfer_crops_the_const_noise_and_epilogue(base_shape, cells):
    (G_src, D_src), (G_dst, D_dst) = shaped_nets((4, 4), 0), shaped_nets(base_shape, 1)
    notes = snapshot.transfer_weights(G_src, G_dst) + snapshot.transfer_weights(D_src, D_dst)
    assert any("synthesis.b4.const" in n and "window" in n for n in notes)
    assert not any("fresh" in n or "new" in n for n in notes)
    rows, cols = cells
    assert torch.equal(G_dst.synthesis.b4.const, G_src.synthesis.b4.const[:, rows, cols])
    def scale(s):  # 16 px: 4 pixels per base cell
        return slice(s.start * 4, s.stop * 4)
    assert torch.equal(G_dst.synthesis.b16.conv1.noise_const,
                       G_src.synthesis.b16.conv1.noise_const[scale(rows), scale(cols)])
    # D's epilogue fc: a naive loop over the kept (channel, row, column) inputs of the flattened features
    h0, w0 = base_shape
    src_w, dst_w = D_src.b4.fc.weight, D_dst.b4.fc.weight
    channels = src_w.shape[0]
    for c in range(channels):
        for y in range(h0):
            for x in range(w0):
                source_column = c * 16 + (y + rows.start) * 4 + (x + cols.start)
                assert torch.equal(dst_w[:, c * h0 * w0 + y * w0 + x], src_w[:, source_column])
    for name in ("b4.fc.bias", "b4.out.weight", "b16.conv0.weight", "b16.fromrgb.weight"):
        assert torch.equal(D_dst.state_dict()[name], D_src.state_dict()[name]), name


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.mark.parametrize("base_shape,cells", CROPS)
def test_transferred_portrait_network_draws_the_square_parents_centre(base_shape, cells):
    """Not noise: each image correlates with the same window of the parent's image (measured >= 0.7 on tiny
    random networks; the borders differ, the convolutions pad where the parent had neighbours), far more
    than a freshly initialised portrait network's images do (measured <= 0.4)."""
    G_src, _ = shaped_nets((4, 4), 0)
    G_dst, _ = shaped_nets(base_shape, 1)
    G_fresh, _ = shaped_nets(base_shape, 2)
    snapshot.transfer_weights(G_src, G_dst)
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        parent, child, fresh = (G(z, None, noise_mode="const") for G in (G_src, G_dst, G_fresh))
    rows, cols = cells
    window = parent[:, :, rows.start * 4:rows.stop * 4, cols.start * 4:cols.stop * 4]
    assert child.shape == window.shape == fresh.shape
    assert correlation(child, window).min() > 0.6
    assert correlation(fresh, window).mean() < 0.5


@pytest.mark.parametrize("phase_name", ["Gmain", "Dmain", "Dreg"])
def test_one_adam_step_does_not_depend_on_how_the_batch_is_split(phase_name):
    """1x8, 2x4 and 4x2 micro-batches: the rounds are averaged, so the step is the same (float64)."""
    z, real = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, 4, 4, dtype=torch.float64) * 1e-3
    c = torch.zeros(8, 0)
    after = []
    for rounds in (1, 2, 4):
        torch.manual_seed(0)
        G, D = LinearG(), LinearD([3, 4, 4])
        loss = StyleGAN2Loss(G, D, r1_gamma=1.0, style_mixing_prob=0.0)
        phases = build_phases(list(G.parameters()), list(D.parameters()), options(cfg="paper256"))
        phase = next(p for p in phases if p.name == phase_name)
        m = 8 // rounds
        chunks = list(zip(real.split(m), c.split(m), z.split(m), c.split(m)))
        start = [p.detach().clone() for p in phase.params]
        stats = step_phase(phase, loss, chunks)
        assert len(stats) == rounds
        after.append([p.detach() - p0 for p, p0 in zip(phase.params, start)])
    assert max(float(d.abs().max()) for d in after[0]) > 1e-4  # the step moved the weights
    for split in after[1:]:
        for a, b in zip(after[0], split):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
