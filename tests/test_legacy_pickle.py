"""Official StyleGAN2-ADA pickles load without running any of their code.

Pickles are written here in the official format (persistent objects reduced through
``torch_utils.persistence._reconstruct_persistent_obj``) with fake ``torch_utils``/``dnnlib``
modules; their ``module_src`` would leave a marker file if it were ever executed.  The real
official fixtures in ../shared prove the same on files made by the official code.
"""
import collections
import io
import json
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from conftest import OFFICIAL, require
from stylegan2.legacy import (LegacyFormatError, NetworkLoadError, PersistentRecord, UnsafePickleError,
                              load_official_snapshot, read_official_pickle, record_state_dict)
from stylegan2.networks import Generator

TINY_G_KWARGS = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=1),
                     synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=None))


# ----------------------------------------------------------------------------- writing official-format pickles


@pytest.fixture
def official_modules(monkeypatch, tmp_path):
    """Fake ``torch_utils.persistence`` and ``dnnlib.util`` so pickle.dump writes the official globals."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the official reconstructor must never be called by our loader")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = EasyDict
    for name, module in {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                         "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}.items():
        monkeypatch.setitem(sys.modules, name, module)
    marker = tmp_path / "module_src_was_executed"
    return types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict, marker=marker,
                                 module_src=f"open({str(marker)!r}, 'w').write('pwned')\nraise SystemExit(1)\n")


class OfficialRecord:
    """Pickles like an official persistent object: a call of the reconstructor with its meta."""

    def __init__(self, env, class_name, state):
        self.env, self.class_name, self.state = env, class_name, state

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.env.module_src, class_name=self.class_name,
                    state=self.state)
        return self.env.reconstruct, (meta,)


def module_state(env, module, class_name, init_kwargs=None):
    """The __dict__ an official persistent module would pickle: parameters, buffers, children, init kwargs."""
    return OfficialRecord(env, class_name, {
        "training": False,
        "_parameters": collections.OrderedDict((k, v) for k, v in module._parameters.items()),
        "_buffers": collections.OrderedDict((k, v) for k, v in module._buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_modules": collections.OrderedDict(
            (name, module_state(env, child, type(child).__name__)) for name, child in module._modules.items()),
        "_init_args": (),
        "_init_kwargs": env.EasyDict(init_kwargs or {}),
        "weight_gain": np.float64(0.125),  # numpy scalars appear in real snapshots
    })


def random_generator(seed=0):
    torch.manual_seed(seed)
    G = Generator(**TINY_G_KWARGS)
    with torch.no_grad():
        for p in G.parameters():
            p.normal_()
    return G


def official_snapshot_bytes(env, G, extra=None, protocol=pickle.DEFAULT_PROTOCOL):
    nested_kwargs = {**G.init_kwargs, "mapping_kwargs": env.EasyDict(G.init_kwargs["mapping_kwargs"])}
    data = {"G": module_state(env, G, "Generator", nested_kwargs), "D": None,
            "G_ema": module_state(env, G, "Generator", nested_kwargs), **(extra or {})}
    return pickle.dumps(data, protocol=protocol)


# ----------------------------------------------------------------------------- our own official-format pickles


def test_records_keep_weights_bit_exact_and_never_run_module_src(official_modules):
    env = official_modules
    root = torch.nn.Module()
    root.register_parameter("weight", torch.nn.Parameter(torch.randn(3, 4)))
    root.register_buffer("p", torch.tensor(0.25))
    root.child = torch.nn.Module()
    root.child.register_buffer("filter", torch.randn(4, 4).t())  # non-contiguous view of a shared storage
    root.child.register_parameter("bias", None)
    raw = pickle.dumps({"G_ema": module_state(env, root, "Generator", {"z_dim": 4, "nested": env.EasyDict(a=1)}),
                        "training_set_kwargs": env.EasyDict(path="x.zip", max_size=np.int64(7))})

    data = read_official_pickle(io.BytesIO(raw))

    rec = data["G_ema"]
    assert isinstance(rec, PersistentRecord) and rec.class_name == "Generator"
    assert rec.init_kwargs == {"z_dim": 4, "nested": {"a": 1}} and type(rec.init_kwargs["nested"]) is dict
    state = record_state_dict(rec)
    assert list(state) == ["weight", "p", "child.filter"]  # None parameter skipped, official order kept
    for key, expected in [("weight", root.weight), ("p", root.p), ("child.filter", root.child.filter)]:
        assert state[key].dtype == expected.dtype and torch.equal(state[key], expected.detach())
    assert data["training_set_kwargs"] == {"path": "x.zip", "max_size": 7}
    assert not env.marker.exists()
    assert "pwned" in rec.module_src  # kept as inert text only


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])  # official snapshots were written by Python 3.7-3.9
def test_generator_pickle_builds_our_module_with_identical_weights_and_output(official_modules, tmp_path, protocol):
    G = random_generator()
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(official_snapshot_bytes(official_modules, G, protocol=protocol))

    snap = load_official_snapshot(path)

    assert snap.D is None and snap.augment_p is None and snap.training_set_kwargs is None
    assert snap.init_kwargs["G_ema"] == G.init_kwargs
    for module in (snap.G, snap.G_ema):
        ours, ref = module.state_dict(), G.state_dict()
        assert list(ours) == list(ref) and all(torch.equal(ours[k], ref[k]) for k in ref)
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # eval() on both: training mode picks a different (unfused) modulated conv
        assert torch.equal(snap.G_ema(z, None, noise_mode="const"), G.eval()(z, None, noise_mode="const"))
    assert not official_modules.marker.exists()


@pytest.mark.parametrize("g_arch, d_arch", [("orig", "orig"), ("resnet", "skip"), ("skip", "resnet")])
def test_official_pickles_of_every_architecture_load(official_modules, tmp_path, g_arch, d_arch):
    """The official code has 'orig', 'skip' and 'resnet' for both networks (its CIFAR-10 pickle has an 'orig' D)."""
    from stylegan2.networks import Discriminator

    torch.manual_seed(4)
    G = Generator(**{**TINY_G_KWARGS, "synthesis_kwargs": {**TINY_G_KWARGS["synthesis_kwargs"], "architecture": g_arch}})
    D = Discriminator(c_dim=0, img_resolution=8, img_channels=3, architecture=d_arch, channel_base=64, channel_max=8)
    with torch.no_grad():
        for p in [*G.parameters(), *D.parameters()]:
            p.normal_()
    D_kwargs = {**D.init_kwargs, "epilogue_kwargs": official_modules.EasyDict(mbstd_group_size=4)}
    path = tmp_path / "arch.pkl"
    path.write_bytes(official_snapshot_bytes(official_modules, G, extra={
        "D": module_state(official_modules, D, "Discriminator", D_kwargs)}))
    snap = load_official_snapshot(path)
    assert snap.G_ema.init_kwargs["synthesis_kwargs"]["architecture"] == g_arch
    assert snap.D.init_kwargs["architecture"] == d_arch
    z, img = torch.randn(2, 8), torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(snap.G_ema(z, None, noise_mode="const"), G.eval()(z, None, noise_mode="const"))
        assert torch.equal(snap.D(img, None), D.eval()(img, None))
    assert not official_modules.marker.exists()


def test_augment_pipe_probability_and_kwargs_are_kept(official_modules):
    env = official_modules
    pipe = torch.nn.Module()
    pipe.register_buffer("p", torch.tensor(0.375))
    pipe.register_buffer("Hz_geom", torch.randn(12))
    extra = {"augment_pipe": module_state(env, pipe, "AugmentPipe", {"xflip": 1, "rotate90": 1, "scale": 1}),
             "training_set_kwargs": env.EasyDict(resolution=8)}
    snap = load_official_snapshot(io.BytesIO(official_snapshot_bytes(env, random_generator(), extra)))
    assert snap.augment_p == 0.375 and snap.augment_kwargs == {"xflip": 1, "rotate90": 1, "scale": 1}
    assert snap.training_set_kwargs == {"resolution": 8}


def test_weights_that_do_not_fit_name_the_keys(official_modules):
    env = official_modules
    G = random_generator()
    record = module_state(env, G, "Generator", G.init_kwargs)
    mapping = record.state["_modules"]["mapping"].state
    mapping["_parameters"]["surprise"] = torch.zeros(2)
    del mapping["_modules"]["fc0"].state["_parameters"]["weight"]
    with pytest.raises(NetworkLoadError, match=r"missing \['mapping\.fc0\.weight'\].*unexpected \['mapping\.surprise'\]"):
        load_official_snapshot(io.BytesIO(pickle.dumps({"G_ema": record})))


def test_module_tree_with_a_cycle_is_refused(official_modules):
    root = module_state(official_modules, torch.nn.Module(), "Generator", {})
    root.state["_modules"]["again"] = root
    with pytest.raises(LegacyFormatError, match="revisits a module at 'again.'"):
        record_state_dict(read_official_pickle(io.BytesIO(pickle.dumps({"G_ema": root})))["G_ema"])


def test_unknown_network_class_is_a_clear_error(official_modules):
    record = module_state(official_modules, torch.nn.Linear(2, 2), "StyleGAN3Generator", {})
    with pytest.raises(NetworkLoadError, match="unknown network class 'StyleGAN3Generator'"):
        load_official_snapshot(io.BytesIO(pickle.dumps({"G_ema": record})))


def test_pickle_without_g_ema_says_what_was_expected(official_modules):
    with pytest.raises(LegacyFormatError, match=r"'G_ema' network; found keys \['G', 'other'\]"):
        load_official_snapshot(io.BytesIO(pickle.dumps({"G": None, "other": [1, 2]})))
    with pytest.raises(LegacyFormatError, match="expected the pickle to hold a dict"):
        read_official_pickle(io.BytesIO(pickle.dumps([1, 2, 3])))


def test_truncated_or_non_pickle_input_is_a_clear_error(official_modules):
    raw = official_snapshot_bytes(official_modules, random_generator())
    with pytest.raises(LegacyFormatError, match="not a readable official StyleGAN2-ADA pickle"):
        read_official_pickle(io.BytesIO(raw[: len(raw) // 2]))
    with pytest.raises(LegacyFormatError, match="not a readable"):
        read_official_pickle(io.BytesIO(b"this is a text file\n"))


# ----------------------------------------------------------------------------- hostile pickles


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _global_call_pickle(module, name, arg):
    """Protocol-0 bytes that call ``module.name(arg)``: how a hostile file smuggles a call in."""
    return f"c{module}\n{name}\n(V{arg}\ntR.".encode()


@pytest.mark.parametrize("module,name", [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                         ("builtins", "exec"), ("subprocess", "Popen"), ("builtins", "getattr"),
                                         ("torch", "load"), ("numpy", "load"), ("torch_utils.persistence", "os")])
def test_any_other_global_is_refused_before_it_runs(module, name, tmp_path):
    marker = tmp_path / "marker"
    raw = _global_call_pickle(module, name, f"touch {marker}")
    with pytest.raises(UnsafePickleError, match=rf"'{module}\.{name}'"):
        read_official_pickle(io.BytesIO(raw))
    assert not marker.exists()


def test_os_system_hidden_inside_a_valid_snapshot_is_refused(official_modules, tmp_path):
    import os

    marker = tmp_path / "marker"
    G = random_generator()
    record = module_state(official_modules, G, "Generator", G.init_kwargs)
    record.state["_modules"]["synthesis"].state["_init_kwargs"] = {"payload": _Evil(os.system, f"touch {marker}")}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": record}))
    with pytest.raises(UnsafePickleError, match=r"'(os|posix)\.system'"):
        load_official_snapshot(path)
    assert not marker.exists()
    assert os.system.__module__ in ("posix", "nt")  # so the pickle really named the real function


def test_allowed_helpers_cannot_be_patched_by_the_pickle():
    raw = b"ctorch._utils\n_rebuild_tensor_v2\n}V__defaults__\n(I1\ntsb."
    with pytest.raises(UnsafePickleError, match="tried to modify torch._utils._rebuild_tensor_v2"):
        read_official_pickle(io.BytesIO(raw))


def test_codecs_encode_only_decodes_latin1_strings():
    assert read_official_pickle(io.BytesIO(pickle.dumps({"b": b"\x00\xff"}, protocol=2))) == {"b": b"\x00\xff"}
    with pytest.raises(UnsafePickleError, match="_codecs.encode is only allowed"):
        read_official_pickle(io.BytesIO(b"c_codecs\nencode\n(Vabc\nVrot13\ntR."))


def test_tensorflow_pickles_get_a_conversion_hint():
    raw = b"cdnnlib.tflib.network\n_reconstruct_network\n(tR."
    with pytest.raises(UnsafePickleError, match="TensorFlow-era"):
        read_official_pickle(io.BytesIO(raw))


# ----------------------------------------------------------------------------- the official fixtures


@pytest.mark.parametrize("name", ["tiny16", "tiny32c"])
def test_official_fixture_loads_strictly_and_matches_manifest(name):
    manifest = json.loads(require(OFFICIAL / "manifest.json").read_text())[name]
    path = require(OFFICIAL / f"{name}.pkl")

    data = read_official_pickle(path)
    assert list(record_state_dict(data["G"])) == manifest["G_state_keys"]
    assert list(record_state_dict(data["D"])) == manifest["D_state_keys"]
    assert data["G_ema"].init_kwargs == manifest["G_kwargs"]

    snap = load_official_snapshot(path)
    for key in ("G", "G_ema"):
        module = getattr(snap, key)
        assert list(module.state_dict()) == manifest["G_state_keys"]
        assert sum(p.numel() for p in module.parameters()) == manifest["G_params"]
        for k, v in record_state_dict(data[key]).items():
            assert torch.equal(module.state_dict()[k], v), k
    assert list(snap.D.state_dict()) == manifest["D_state_keys"]
    assert sum(p.numel() for p in snap.D.parameters()) == manifest["D_params"]
    assert {k: snap.G_ema.init_kwargs[k] for k in manifest["G_kwargs"]} == manifest["G_kwargs"]


def test_official_fixture_with_augment_pipe_and_dataset_kwargs():
    snap = load_official_snapshot(require(OFFICIAL / "tiny32c.pkl"))
    assert snap.augment_p == pytest.approx(0.25, abs=0)
    assert snap.augment_kwargs["xflip"] == 1 and "saturation" in snap.augment_kwargs
    assert type(snap.training_set_kwargs) is dict and snap.training_set_kwargs["resolution"] == 32
    assert snap.training_set_kwargs["use_labels"] is True


@pytest.mark.parametrize("name", ["tiny16", "tiny32c"])
def test_official_fixture_generates_the_reference_image(name):
    refs = np.load(require(OFFICIAL / f"{name}_refs.npz"))
    G = load_official_snapshot(OFFICIAL / f"{name}.pkl").G_ema
    seed = 7
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    c = torch.zeros(1, G.c_dim)
    if G.c_dim:
        c[0, seed % G.c_dim] = 1
    with torch.no_grad():
        img = G(z, c, truncation_psi=0.7, noise_mode="const")[0].numpy()
    np.testing.assert_allclose(img, refs[f"img_seed{seed}_psi0.7"], atol=1e-4)
