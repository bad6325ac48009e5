"""Import official StyleGAN2-ADA network pickles without executing any of their code.

Official snapshots are ``pickle.dump`` s of ``{G, D, G_ema, augment_pipe, training_set_kwargs}``
whose networks are "persistent objects": each carries its own Python source and is rebuilt
by calling ``torch_utils.persistence._reconstruct_persistent_obj(meta)``.  Unpickling them
with the standard library would import and run that source (and any other global a hostile
file names).  Here a restricted unpickler maps a short allow-list of globals to harmless
stand-ins, turns every persistent object into a plain :class:`PersistentRecord`, and then
our own modules are built from the recorded constructor kwargs and loaded with the weights.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import warnings
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import torch

NETWORK_CLASSES = ("Generator", "Discriminator")  # top-level networks we can rebuild


class NetworkLoadError(ValueError):
    """A network file cannot be turned into our modules; base of every loading error here."""


class UnsafePickleError(NetworkLoadError, pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; nothing it refers to was run."""


class LegacyFormatError(NetworkLoadError):
    """The pickle is safe to read but is not an official StyleGAN2-ADA snapshot we understand."""


@dataclasses.dataclass
class PersistentRecord:
    """Plain data of one official persistent object: what to construct and the state to load."""

    class_name: str
    version: int | None
    init_args: tuple
    init_kwargs: dict
    state: dict
    module_src: str = dataclasses.field(default="", repr=False)  # kept as text, never executed


@dataclasses.dataclass
class OfficialSnapshot:
    """An official snapshot turned into our modules and plain Python data."""

    G: torch.nn.Module | None
    D: torch.nn.Module | None
    G_ema: torch.nn.Module
    augment_kwargs: dict | None
    augment_p: float | None
    training_set_kwargs: dict | None
    init_kwargs: dict  # net name -> constructor kwargs as recorded in the pickle


# ----------------------------------------------------------------------------- safe stand-ins


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict subclass; pickled via NEWOBJ + SETITEMS)."""


class _SafeCallable:
    """Wraps an allowed function so a hostile BUILD opcode cannot patch it (no __dict__)."""

    __slots__ = ("_name", "_fn")

    def __init__(self, name: str, fn):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __setattr__(self, key, value):
        raise UnsafePickleError(f"pickle tried to modify {self._name}")

    def __setstate__(self, state):
        raise UnsafePickleError(f"pickle tried to modify {self._name}")


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise LegacyFormatError("malformed persistent object: expected meta dict with type='class' and a state dict")
    state = meta["state"]
    return PersistentRecord(
        class_name=str(meta.get("class_name")),
        version=meta.get("version"),
        init_args=tuple(to_plain(list(state.get("_init_args", ())))),
        init_kwargs=to_plain(state.get("_init_kwargs", {})),
        state=state,
        module_src=str(meta.get("module_src", "")),
    )


class _StoragePayload(NamedTuple):
    """Raw bytes of a storage and the dtype they hold (None for untyped storages)."""

    untyped: torch.UntypedStorage
    dtype: torch.dtype | None


def _load_storage_from_bytes(data: bytes) -> _StoragePayload:
    if not isinstance(data, (bytes, bytearray)):
        raise LegacyFormatError("storage payload is not bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation notices
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if isinstance(storage, torch.TypedStorage):
            return _StoragePayload(storage.untyped(), storage.dtype)
    if isinstance(storage, torch.UntypedStorage):
        return _StoragePayload(storage, None)
    raise LegacyFormatError(f"storage payload decoded to {type(storage).__name__}, expected a storage")


def _tensor_on_storage(storage, offset, size, stride, dtype=None) -> torch.Tensor:
    if not isinstance(storage, _StoragePayload) or (storage.dtype or dtype) is None:
        raise LegacyFormatError("tensor rebuild without a storage of known dtype")
    empty = torch.empty((0,), dtype=storage.dtype or dtype)
    return empty.set_(storage.untyped, int(offset), tuple(size), tuple(stride))


def _require_no_hooks(backward_hooks) -> None:
    if backward_hooks:
        raise UnsafePickleError("pickle attaches backward hooks to a tensor; refusing")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor_on_storage(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    _require_no_hooks(backward_hooks)
    return _tensor_on_storage(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    _require_no_hooks(backward_hooks)
    return _tensor_on_storage(storage, storage_offset, size, stride, dtype=dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    _require_no_hooks(backward_hooks)
    return data  # our modules own their Parameters; only the values are copied in


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise UnsafePickleError("numpy scalar with object dtype or malformed payload; refusing")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _codecs_encode(text, encoding="utf-8"):
    """Protocol-2 pickles spell ``bytes`` as ``_codecs.encode(str, 'latin1')``; nothing else is allowed."""
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError("_codecs.encode is only allowed for protocol-2 byte strings")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    functions = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("_codecs", "encode"): _codecs_encode,
    }
    table = {key: _SafeCallable(".".join(key), fn) for key, fn in functions.items()}
    table.update({
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("numpy", "dtype"): np.dtype,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("dnnlib", "EasyDict"): _EasyDict,
        ("torch", "Size"): torch.Size,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
    })
    for name, value in vars(torch).items():  # dtypes appear as globals in _rebuild_tensor_v3 (torch.float32)
        if isinstance(value, torch.dtype):
            table[("torch", name)] = value
    return table


_ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; any other global fails before anything runs."""

    def find_class(self, module: str, name: str):
        module = {"__builtin__": "builtins"}.get(module, module)  # protocol 2 writes Python 2 names
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            pass
        hint = ""
        if module.startswith("dnnlib.tflib"):
            hint = " (this is a TensorFlow-era StyleGAN pickle: convert it with the official PyTorch legacy.py first)"
        raise UnsafePickleError(
            f"refusing to load global '{module}.{name}': it is not part of an official StyleGAN2-ADA "
            f"network pickle, and loading it could run code{hint}"
        )

    def persistent_load(self, pid):
        raise LegacyFormatError(
            "pickle uses persistent ids (a torch.save file?); expected an official StyleGAN2-ADA network pickle"
        )


# ----------------------------------------------------------------------------- reading


def to_plain(obj: Any) -> Any:
    """EasyDict/OrderedDict/numpy scalars -> plain dict/list/Python numbers (JSON-friendly)."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def read_official_pickle(source: str | os.PathLike | BinaryIO) -> dict:
    """Safely unpickle an official snapshot into plain data; networks become PersistentRecords."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return read_official_pickle(f)
    try:
        data = RestrictedUnpickler(source).load()
    except NetworkLoadError:
        raise
    except Exception as exc:  # truncated/corrupt stream, stand-in called with wrong arguments, ...
        raise LegacyFormatError(f"not a readable official StyleGAN2-ADA pickle: {exc}") from exc
    if not isinstance(data, dict):
        raise LegacyFormatError(f"expected the pickle to hold a dict of networks, found {type(data).__name__}")
    return data


def record_state_dict(record: PersistentRecord) -> dict[str, torch.Tensor]:
    """Flatten the nested ``_parameters``/``_buffers``/``_modules`` into a dotted state dict."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def visit(rec: PersistentRecord, prefix: str) -> None:
        if id(rec) in seen:  # a well-formed module tree never revisits a node; a crafted one could loop forever
            raise LegacyFormatError(f"module tree revisits a module at '{prefix or '(root)'}'")
        seen.add(id(rec))
        state = rec.state
        skip = set(state.get("_non_persistent_buffers_set", ()))
        for group in ("_parameters", "_buffers"):
            for name, tensor in (state.get(group) or {}).items():
                if tensor is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise LegacyFormatError(f"{prefix}{name} is a {type(tensor).__name__}, expected a tensor")
                out[prefix + name] = tensor
        for name, child in (state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise LegacyFormatError(f"submodule {prefix}{name} is a {type(child).__name__}, not a persistent object")
            visit(child, f"{prefix}{name}.")

    visit(record, "")
    return out


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names missing/unexpected/mismatched keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs ours {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = [f"{label} {items}" for label, items in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if items]
        raise NetworkLoadError(f"{what}: weights do not fit our network ({'; '.join(parts)})")
    module.load_state_dict(state, strict=True)


def construct_network(class_name: str, init_args: tuple | list, init_kwargs: dict,
                      state: dict[str, torch.Tensor], what: str = "network") -> torch.nn.Module:
    """Build our Generator/Discriminator by class name and load ``state`` strictly (shared with checkpoint.py)."""
    from stylegan2 import networks  # deferred: reading pickles must not need the networks

    if class_name not in NETWORK_CLASSES:
        raise NetworkLoadError(
            f"{what}: unknown network class '{class_name}'; expected one of {', '.join(NETWORK_CLASSES)}"
        )
    try:
        module = getattr(networks, class_name)(*init_args, **init_kwargs)
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise NetworkLoadError(f"{what}: cannot construct {class_name} from the recorded kwargs: {exc}") from exc
    load_state_strict(module, state, what)
    return module.eval()


def build_network(record: PersistentRecord, what: str = "network") -> torch.nn.Module:
    """Our module for one official persistent network record."""
    return construct_network(record.class_name, record.init_args, record.init_kwargs, record_state_dict(record), what)


def load_official_snapshot(source: str | os.PathLike | BinaryIO) -> OfficialSnapshot:
    """Read an official snapshot pickle and rebuild its networks as our modules."""
    data = read_official_pickle(source)
    nets = {key: data.get(key) for key in ("G", "D", "G_ema")}
    if not isinstance(nets["G_ema"], PersistentRecord):
        raise LegacyFormatError(
            f"expected an official StyleGAN2-ADA snapshot with a 'G_ema' network; found keys {sorted(map(str, data))}"
        )
    built = {key: build_network(rec, key) if isinstance(rec, PersistentRecord) else None for key, rec in nets.items()}
    augment_kwargs = augment_p = None
    pipe = data.get("augment_pipe")
    if isinstance(pipe, PersistentRecord):
        if pipe.class_name != "AugmentPipe":
            raise LegacyFormatError(f"augment_pipe: unknown class '{pipe.class_name}', expected AugmentPipe")
        augment_kwargs = pipe.init_kwargs
        p = (pipe.state.get("_buffers") or {}).get("p")
        augment_p = float(p) if isinstance(p, torch.Tensor) else None
    training_set_kwargs = data.get("training_set_kwargs")
    return OfficialSnapshot(
        G=built["G"], D=built["D"], G_ema=built["G_ema"],
        augment_kwargs=augment_kwargs, augment_p=augment_p,
        training_set_kwargs=to_plain(training_set_kwargs) if isinstance(training_set_kwargs, dict) else None,
        init_kwargs={key: rec.init_kwargs for key, rec in nets.items() if isinstance(rec, PersistentRecord)},
    )
