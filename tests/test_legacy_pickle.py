"""Official StyleGAN2-ADA pickles load without running any of their code.

Pickles are written here in the official format (persistent objects reduced through
``torch_utils.persistence._reconstruct_persistent_obj``) with fake ``torch_utils``/``dnnlib``
modules; their ``module_src`` would leave a marker file if it were ever executed.  The real
official fixtures in ../shared prove the same on files made by the official code.
"""
import collections
import io
import json
import pathlib
import pickle
import pickletools
import resource
import struct
import subprocess
import sys
import time
import tracemalloc
import types

import numpy as np
import pytest
import torch

from conftest import OFFICIAL, require
from stylegan2.construct import NetworkFormatError
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
    with pytest.raises(UnsafePickleError, match="BUILD"):
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


# ----------------------------------------------------------------------------- pickles built from allowed globals only
#
# Written opcode by opcode (see pickletools): each one uses nothing but globals the loader allows,
# and asks an allowed callable, or the object it returned, to do something it must not.


def g(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL


def s(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def i4(value):
    return b"J" + struct.pack("<i", value)  # BININT


def by(data):
    return b"B" + struct.pack("<I", len(data)) + data  # BINBYTES


MARK, TUPLE, TUPLE1, TUPLE2, TUPLE3 = b"(", b"t", b"\x85", b"\x86", b"\x87"
REDUCE, BUILD, NONE, TRUE, FALSE, EMPTY_DICT, EMPTY_LIST = b"R", b"b", b"N", b"\x88", b"\x89", b"}", b"]"
SETITEMS, APPEND, APPENDS, MEMOIZE = b"u", b"a", b"e", b"\x94"


def binget(index):
    return b"j" + struct.pack("<I", index)  # LONG_BINGET


def proto2(body):
    return b"\x80\x02" + body + b"."


def np_dtype(type_string, state=None):
    out = g("numpy", "dtype") + s(type_string) + FALSE + TRUE + TUPLE3 + REDUCE
    return out + (state + BUILD if state is not None else b"")


def dtype_state(byteorder="<", subdescr=NONE, names=NONE, fields=NONE, elsize=-1, alignment=-1, flags=0):
    """The tuple numpy writes for dtype.__setstate__ (version 3)."""
    return MARK + i4(3) + s(byteorder) + subdescr + names + fields + i4(elsize) + i4(alignment) + i4(flags) + TUPLE


def np_scalar(dtype_ops, payload):
    return g("numpy.core.multiarray", "scalar") + dtype_ops + by(payload) + TUPLE2 + REDUCE


def record_ops(state_items, class_name="Generator"):
    """A persistent object whose state dict holds ``state_items`` (ops pushing key, value pairs)."""
    return (g("torch_utils.persistence", "_reconstruct_persistent_obj") + EMPTY_DICT + MARK
            + s("type") + s("class") + s("class_name") + s(class_name) + s("state") + EMPTY_DICT + MARK
            + state_items + SETITEMS + SETITEMS + TUPLE1 + REDUCE)


def snapshot_ops(init_kwargs_ops, key="G_ema"):
    """{key: persistent object with _init_kwargs = ...}: the kwargs go through to_plain while loading."""
    return proto2(EMPTY_DICT + MARK + s(key) + record_ops(s("_init_kwargs") + init_kwargs_ops) + SETITEMS)


def kwargs_ops(**values):
    return EMPTY_DICT + MARK + b"".join(s(k) + v for k, v in values.items()) + SETITEMS


def test_structured_numpy_dtype_with_a_hidden_object_field_is_refused_without_crashing():
    # A void dtype whose BUILD state declares an object field at offset 0 while its flags claim no objects:
    # numpy's own dtype.__setstate__ accepts it, and .item() then follows the 8 payload bytes as a pointer.
    object_field = EMPTY_DICT + MARK + s("a") + np_dtype("O8") + i4(0) + TUPLE2 + SETITEMS
    state = dtype_state("|", names=s("a") + TUPLE1, fields=object_field, elsize=8, alignment=1)
    raw = snapshot_ops(kwargs_ops(x=np_scalar(np_dtype("V8", state), b"\x41" * 8)))
    assert len(raw) < 400
    script = ("import io, sys\nfrom stylegan2.legacy import NetworkLoadError, read_official_pickle\n"
              "try:\n    read_official_pickle(io.BytesIO(sys.stdin.buffer.read()))\n"
              "except NetworkLoadError as exc:\n    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", script], input=raw, capture_output=True, timeout=120,
                          cwd=pathlib.Path(__file__).resolve().parents[1])
    assert done.returncode == 0, f"the loader crashed (exit {done.returncode}): {done.stderr.decode()[-500:]}"
    assert "refused: numpy dtype 'V8' refused" in done.stdout.decode()


@pytest.mark.parametrize("name,state", [
    ("fields on a float", dtype_state(names=s("a") + TUPLE1,
                                      fields=EMPTY_DICT + MARK + s("a") + np_dtype("f8") + i4(0) + TUPLE2 + SETITEMS)),
    ("a sub-array", dtype_state(subdescr=np_dtype("f8") + i4(64) + TUPLE1 + TUPLE2)),
    ("an element size", dtype_state(elsize=512, alignment=8)),
    ("object flags", dtype_state(flags=63)),
    ("no tuple", s("anything")),
], ids=lambda value: value if isinstance(value, str) else "")
def test_numpy_dtype_state_may_only_repeat_a_plain_dtype(name, state):
    raw = snapshot_ops(kwargs_ops(x=np_scalar(np_dtype("f8", state), b"\x00" * 8)))
    with pytest.raises(UnsafePickleError, match="numpy dtype state"):
        read_official_pickle(io.BytesIO(raw))


@pytest.mark.parametrize("type_string", ["V8", "O8", "S8", "U2", "M8", "f8,i4", "(2,)f8", "<f8"])
def test_numpy_dtype_is_rebuilt_only_from_a_plain_numeric_type_string(type_string):
    raw = snapshot_ops(kwargs_ops(x=np_scalar(np_dtype(type_string, dtype_state()), b"\x00" * 8)))
    with pytest.raises(UnsafePickleError, match="only plain numeric dtypes"):
        read_official_pickle(io.BytesIO(raw))


def test_genuine_numpy_scalars_keep_their_value_and_byte_order():
    little = np_scalar(np_dtype("f8", dtype_state("<")), struct.pack("<d", 0.125))
    big = np_scalar(np_dtype("i4", dtype_state(">")), struct.pack(">i", -7))
    flag = np_scalar(np_dtype("b1", dtype_state("|")), b"\x01")
    data = read_official_pickle(io.BytesIO(snapshot_ops(kwargs_ops(a=little, b=big, c=flag))))
    assert data["G_ema"].init_kwargs == {"a": 0.125, "b": -7, "c": True}
    assert [type(v) for v in data["G_ema"].init_kwargs.values()] == [float, int, bool]


def _easydict_snapshot():
    """{'training_set_kwargs': EasyDict(path='data.zip', max_size=7)} written as the official code does."""
    easydict = g("dnnlib.util", "EasyDict") + b")" + b"\x81"  # EMPTY_TUPLE NEWOBJ
    items = MARK + s("path") + s("data.zip") + s("max_size") + i4(7) + SETITEMS
    return proto2(EMPTY_DICT + MARK + s("training_set_kwargs") + easydict + items + SETITEMS)


@pytest.mark.parametrize("target", [g("dnnlib.util", "EasyDict"), g("collections", "OrderedDict"), g("numpy", "dtype"),
                                    g("torch._utils", "_rebuild_tensor_v2"), g("torch", "float32")],
                         ids=["EasyDict", "OrderedDict", "dtype", "rebuild_tensor", "float32"])
def test_a_pickle_cannot_modify_the_stand_ins_for_later_loads(target):
    # BUILD with slot state is setattr() on whatever is on the stack: here a stand-in itself.
    patch = EMPTY_DICT + MARK + s("__setitem__") + NONE + s("__init__") + NONE + SETITEMS
    hostile = proto2(target + NONE + patch + TUPLE2 + BUILD)
    with pytest.raises(UnsafePickleError, match="BUILD"):
        read_official_pickle(io.BytesIO(hostile))
    data = read_official_pickle(io.BytesIO(_easydict_snapshot()))
    assert data["training_set_kwargs"] == {"path": "data.zip", "max_size": 7}


@pytest.mark.parametrize("name,ops,message", [
    ("SETITEM on a tensor", None, "SETITEMS"),
    ("APPEND on a dict", proto2(EMPTY_DICT + NONE + APPEND), "APPEND"),
    ("SETITEMS on a list", proto2(EMPTY_LIST + MARK + s("k") + NONE + SETITEMS), "SETITEMS"),
    ("NEWOBJ of a function", proto2(g("torch._utils", "_rebuild_parameter") + b")" + b"\x81"), "not a readable"),
    ("set of a generator-like object", proto2(g("builtins", "set") + EMPTY_DICT + TUPLE1 + REDUCE), "set built from"),
    ("torch.Size with huge dims", proto2(g("torch", "Size") + MARK + MARK + i4(-1) + TUPLE + TUPLE + REDUCE),
     "torch.Size"),
], ids=lambda value: value if isinstance(value, str) and " " in value else "")
def test_objects_only_accept_the_opcodes_of_their_own_kind(name, ops, message):
    if ops is None:  # a tensor from allowed globals, then SETITEMS into it
        storage = g("torch.storage", "_load_from_bytes") + by(_storage_bytes(torch.zeros(4))) + TUPLE1 + REDUCE
        tensor = (g("torch._utils", "_rebuild_tensor_v2") + MARK + storage + i4(0) + MARK + i4(4) + TUPLE
                  + MARK + i4(1) + TUPLE + FALSE + g("collections", "OrderedDict") + b")" + REDUCE + TUPLE + REDUCE)
        ops = proto2(tensor + MARK + i4(0) + i4(1) + SETITEMS)
    with pytest.raises(NetworkLoadError, match=message):
        read_official_pickle(io.BytesIO(ops))


def _storage_bytes(tensor):
    buffer = io.BytesIO()
    torch.save(tensor.untyped_storage(), buffer)
    return buffer.getvalue()


def _tensor_ops(storage_ops, size, stride, offset=0):
    dims = lambda values: MARK + b"".join(i4(v) for v in values) + TUPLE  # noqa: E731
    return (g("torch._utils", "_rebuild_tensor_v2") + MARK + storage_ops + i4(offset) + dims(size) + dims(stride)
            + FALSE + g("collections", "OrderedDict") + b")" + REDUCE + TUPLE + REDUCE)


def test_a_tensor_view_cannot_be_larger_than_its_storage():
    storage = g("torch.storage", "_load_from_bytes") + by(_storage_bytes(torch.zeros(4))) + TUPLE1 + REDUCE
    fine = read_official_pickle(io.BytesIO(proto2(EMPTY_DICT + MARK + s("t") + _tensor_ops(storage, [2, 2], [2, 1])
                                                  + SETITEMS)))
    assert fine["t"].shape == (2, 2)
    for size, stride in [([1 << 20, 1 << 20], [0, 0]), ([17], [1]), ([2], [-1])]:  # 16 one-byte elements
        raw = proto2(EMPTY_DICT + MARK + s("t") + _tensor_ops(storage, size, stride) + SETITEMS)
        with pytest.raises(LegacyFormatError, match="storage|malformed"):
            read_official_pickle(io.BytesIO(raw))


def test_shared_references_cannot_expand_without_bound():
    # level k is a list holding level k-1 twice: 22 levels in ~300 bytes are 4 million values once expanded
    ops = EMPTY_LIST + s("x") + APPEND + MEMOIZE + b"0"  # POP: each level stays reachable from the memo only
    for level in range(1, 23):
        ops += EMPTY_LIST + MARK + binget(level - 1) + binget(level - 1) + APPENDS + MEMOIZE + b"0"
    raw = snapshot_ops(kwargs_ops(kwargs=ops + binget(22)))
    assert len(raw) < 1000
    started = time.perf_counter()
    with pytest.raises(NetworkFormatError, match="more than 100000 values"):  # to_plain's refusal (stylegan2.construct)
        read_official_pickle(io.BytesIO(raw))
    assert time.perf_counter() - started < 10


def test_shared_references_are_never_turned_into_text():
    # the same 22-level structure as a class name and as a key: str()/repr() in a message would expand it
    ops = EMPTY_LIST + s("x") + APPEND + MEMOIZE + b"0"
    for level in range(1, 23):
        ops += EMPTY_LIST + MARK + binget(level - 1) + binget(level - 1) + APPENDS + MEMOIZE + b"0"
    as_class = proto2(EMPTY_DICT + MARK + s("G_ema") + record_ops(b"", class_name="G").replace(s("G"), ops + binget(22))
                      + SETITEMS)
    tuples = s("x") + TUPLE1 + MEMOIZE + b"0" + b"".join(binget(k - 1) + binget(k - 1) + TUPLE2 + MEMOIZE + b"0"
                                                       for k in range(1, 23))
    as_key = proto2(tuples + EMPTY_DICT + MARK + binget(22) + NONE + SETITEMS)  # a hashable key of nested tuples
    started = time.perf_counter()
    with pytest.raises(LegacyFormatError, match="class_name is a list"):
        read_official_pickle(io.BytesIO(as_class))
    with pytest.raises(LegacyFormatError, match="'G_ema' network"):
        load_official_snapshot(io.BytesIO(as_key))
    assert time.perf_counter() - started < 10


def test_a_huge_memo_index_costs_no_memory():
    raw = proto2(NONE + b"r" + struct.pack("<I", (1 << 25) - 1) + b"0" + EMPTY_DICT)  # LONG_BINPUT 2**25-1
    assert len(raw) < 20
    tracemalloc.start()
    try:
        assert read_official_pickle(io.BytesIO(raw)) == {}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB for a {len(raw)}-byte pickle"


def test_deeply_nested_settings_are_a_clear_error():
    deep = EMPTY_LIST * 5000 + APPEND * 4999
    with pytest.raises(NetworkFormatError, match="nested deeper"):  # to_plain's refusal (stylegan2.construct)
        read_official_pickle(io.BytesIO(snapshot_ops(kwargs_ops(x=deep))))


def test_malformed_module_state_is_a_network_load_error(official_modules):
    # '_parameters' as a list (AttributeError before), and a module chain 5000 deep (RecursionError before)
    flat = proto2(EMPTY_DICT + MARK + s("G_ema") + record_ops(s("_parameters") + EMPTY_LIST) + SETITEMS)
    with pytest.raises(LegacyFormatError, match="_parameters is a list"):
        load_official_snapshot(io.BytesIO(flat))
    chain = record_ops(s("_init_kwargs") + EMPTY_DICT)
    for _ in range(5000):
        chain = record_ops(s("_modules") + EMPTY_DICT + s("m") + chain + b"s")
    with pytest.raises(NetworkLoadError):
        load_official_snapshot(io.BytesIO(proto2(EMPTY_DICT + MARK + s("G_ema") + chain + SETITEMS)))


def test_absurd_constructor_kwargs_are_refused_before_anything_is_built(official_modules):
    G = random_generator()
    for change, message in [({"img_resolution": 1 << 30}, "img_resolution"), ({"w_dim": 16000}, "w_dim"),
                            ({"mapping_kwargs": {"num_layers": 100_000}}, "num_layers"),
                            ({"z_dim": float("nan")}, "finite"), ({"synthesis_kwargs": {"architecture": "x"}},
                                                                   "architecture")]:
        kwargs = {**G.init_kwargs, **change}
        raw = pickle.dumps({"G_ema": module_state(official_modules, G, "Generator", kwargs)})
        with pytest.raises(NetworkLoadError, match=message):
            load_official_snapshot(io.BytesIO(raw))


def test_kwargs_in_range_are_checked_against_the_weights_before_allocating(official_modules):
    G = random_generator()
    kwargs = {**G.init_kwargs, "w_dim": 4096, "mapping_kwargs": {"num_layers": 8}}  # ~600 MB if it were built
    raw = pickle.dumps({"G_ema": module_state(official_modules, G, "Generator", kwargs)})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(NetworkLoadError, match="shape mismatch"):
        load_official_snapshot(io.BytesIO(raw))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB for weights that were never in the file"


def test_a_discriminator_as_g_ema_is_refused_with_a_message(official_modules):
    from stylegan2.networks import Discriminator

    D = Discriminator(c_dim=0, img_resolution=8, img_channels=3, channel_base=64, channel_max=8)
    raw = pickle.dumps({"G_ema": module_state(official_modules, D, "Discriminator", D.init_kwargs)})
    with pytest.raises(NetworkLoadError, match="G_ema is a Discriminator; G_ema must be a Generator"):
        load_official_snapshot(io.BytesIO(raw))


def test_an_augment_probability_that_is_not_one_number_is_a_load_error(official_modules):
    G = random_generator()
    pipe = OfficialRecord(official_modules, "AugmentPipe", {"_buffers": {"p": torch.tensor([0.1, 0.2])},
                                                            "_init_kwargs": {}})
    raw = official_snapshot_bytes(official_modules, G, extra={"augment_pipe": pipe})
    with pytest.raises(LegacyFormatError, match="augment_pipe"):
        load_official_snapshot(io.BytesIO(raw))


# ----------------------------------------------------------------------------- fuzzing


FUZZ_SECONDS = 25  # per fixture file; examples after that are skipped, so the test is bounded in time


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny16", "tiny32c"])
def test_mutated_official_pickles_load_cleanly_or_fail_with_a_network_load_error(name):
    """Mutations land on opcodes and their arguments (the storages' bytes are 90% of the file but only data):
    a crash is anything but a clean load or NetworkLoadError (a segfault ends the whole run)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    original = require(OFFICIAL / f"{name}.pkl").read_bytes()
    positions = [pos for _, _, pos in pickletools.genops(original)]
    interesting = [b for b in (pickle.BUILD, pickle.REDUCE, pickle.SETITEMS, pickle.APPENDS, pickle.MEMOIZE,
                               pickle.LONG_BINGET, pickle.NEWOBJ, pickle.STACK_GLOBAL, pickle.POP, pickle.MARK,
                               pickle.TUPLE, pickle.DUP, pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.STOP)]
    mutation = st.tuples(st.integers(0, len(positions) - 1), st.sampled_from(["byte", "opcode", "delete", "repeat",
                                                                               "truncate", "swap"]),
                         st.integers(0, 255), st.sampled_from(interesting), st.integers(1, 64))
    stop_at = time.monotonic() + FUZZ_SECONDS
    outcomes = collections.Counter()

    def mutate(data: bytes, steps) -> bytes:
        for index, kind, value, opcode, length in steps:
            at = positions[index] if index < len(positions) else len(data) - 1
            at = min(at, len(data) - 1)
            if kind == "byte":  # an argument byte (or the opcode) takes any value
                at = min(at + length % 6, len(data) - 1)
                data = data[:at] + bytes([value]) + data[at + 1:]
            elif kind == "opcode":
                data = data[:at] + opcode + data[at + 1:]
            elif kind == "delete":
                data = data[:at] + data[at + length:]
            elif kind == "repeat":
                data = data[:at] + data[at:at + length] * (value % 8 + 2) + data[at + length:]
            elif kind == "truncate":
                data = data[:at]
            else:  # swap two opcode-aligned pieces
                other = positions[(index * 7919 + value) % len(positions)]
                lo, hi = sorted((at, min(other, len(data) - 1)))
                data = data[:lo] + data[hi:hi + length] + data[lo + length:hi] + data[lo:lo + length] + data[hi + length:]
        return data

    @hypothesis.settings(max_examples=250, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(st.lists(mutation, min_size=1, max_size=3))
    def check(steps):
        if time.monotonic() > stop_at:
            outcomes["skipped (time)"] += 1
            return
        try:
            load_official_snapshot(io.BytesIO(mutate(original, steps)))
            outcomes["loaded"] += 1
        except NetworkLoadError as exc:
            outcomes[type(exc).__name__] += 1

    check()
    tried = sum(n for k, n in outcomes.items() if k != "skipped (time)")
    print(f"\n{name}: {tried} mutated pickles: {dict(outcomes)}")
    assert tried >= 10, outcomes
