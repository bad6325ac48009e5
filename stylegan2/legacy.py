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
import math
import os
import pickle
import re
import reprlib
import warnings
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import torch

from stylegan2.construct import (PLAIN_SCALARS, NetworkFormatError, NetworkLoadError, check_roles,
                                construct_network, format_errors, to_plain)


class UnsafePickleError(NetworkLoadError, pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; nothing it refers to was run."""


class LegacyFormatError(NetworkFormatError):
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
#
# Every global a pickle may name is one of the objects below.  Each was chosen by asking what
# its arguments and its state could make it do: the callables check their arguments and build
# fresh plain values, the classes cannot be modified (a frozen metaclass), and BUILD (set state,
# the opcode that patches objects) is refused on everything except the numpy dtype stand-in,
# which accepts only the state of a plain numeric dtype.

MAX_MEMO_ENTRIES = 1 << 22     # official snapshots use ~10 per module; ffhq1024 needs < 100k
MAX_TENSOR_DIMS = 8
MAX_SET_ITEMS = 100_000
_PLAIN_DTYPE = re.compile(r"[biufc]\d{1,2}")  # 'f8', 'i8', 'b1', 'u1': what numpy pickles for scalars


class _Frozen(type):
    """Metaclass of the stand-in classes: a pickle cannot patch them for the rest of the process."""

    def __setattr__(cls, key, value):
        raise UnsafePickleError(f"pickle tried to modify the class {cls.__name__}")

    def __delattr__(cls, key):
        raise UnsafePickleError(f"pickle tried to modify the class {cls.__name__}")


class _EasyDict(dict, metaclass=_Frozen):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict subclass; pickled via NEWOBJ + SETITEMS)."""

    __slots__ = ()


class _PlainDtype(metaclass=_Frozen):
    """What ``numpy.dtype(...)`` gives a pickle: a plain numeric dtype, never a structured one.

    numpy's own ``dtype.__setstate__`` trusts its state (fields, object flags, sizes), which lets a
    pickle describe memory that is not there; here the state may only repeat what a plain
    numeric dtype pickles, and the dtype is rebuilt from its type string.
    """

    __slots__ = ("dtype",)

    def __init__(self, type_string, align=False, copy=True):
        if not isinstance(type_string, str) or not _PLAIN_DTYPE.fullmatch(type_string):
            raise UnsafePickleError(f"numpy dtype {type_string!r} refused: only plain numeric dtypes are allowed")
        dtype = np.dtype(type_string)
        if dtype.fields is not None or dtype.subdtype is not None or dtype.hasobject or dtype.itemsize > 16:
            raise UnsafePickleError(f"numpy dtype {type_string!r} refused: only plain numeric dtypes are allowed")
        self.dtype = dtype

    def __setstate__(self, state):
        plain = (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                 and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                 and state[5:8] == (-1, -1, 0) and state[8:] in ((), (None,)))
        if not plain:
            raise UnsafePickleError("numpy dtype state with fields, sub-arrays, sizes or flags refused; "
                                    "only plain numeric dtypes are allowed")
        if state[1] in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise LegacyFormatError("malformed persistent object: expected meta dict with type='class' and a state dict")
    state = meta["state"]
    init_args, init_kwargs = state.get("_init_args", ()), state.get("_init_kwargs", {})
    if not isinstance(init_args, (list, tuple)) or not isinstance(init_kwargs, dict):
        raise LegacyFormatError("malformed persistent object: _init_args must be a tuple and _init_kwargs a dict")
    version, class_name, module_src = meta.get("version"), meta.get("class_name"), meta.get("module_src", "")
    if not isinstance(class_name, str):  # str() of shared references could expand to gigabytes
        raise LegacyFormatError(f"malformed persistent object: class_name is a {type(class_name).__name__}")
    return PersistentRecord(
        class_name=class_name,
        version=version if isinstance(version, int) else None,
        init_args=tuple(to_plain(list(init_args))),
        init_kwargs=to_plain(init_kwargs),
        state=state,
        module_src=module_src if isinstance(module_src, str) else "",
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
            payload = _StoragePayload(storage.untyped(), storage.dtype)
        elif isinstance(storage, torch.UntypedStorage):
            payload = _StoragePayload(storage, None)
        else:
            raise LegacyFormatError(f"storage payload decoded to {type(storage).__name__}, expected a storage")
    if payload.untyped.nbytes() > len(data):  # the bytes must be in the file, not conjured by a size field
        raise LegacyFormatError(f"storage claims {payload.untyped.nbytes()} bytes from a {len(data)}-byte payload")
    return payload


def _tensor_on_storage(storage, offset, size, stride, dtype=None) -> torch.Tensor:
    """A view of the storage's own bytes: in bounds and no larger than the storage (no stride-0 inflation)."""
    if not isinstance(storage, _StoragePayload) or (storage.dtype or dtype) is None:
        raise LegacyFormatError("tensor rebuild without a storage of known dtype")
    if not isinstance(dtype or storage.dtype, torch.dtype):
        raise LegacyFormatError("tensor rebuild with something that is not a torch dtype")
    dims = (size, stride)
    if (not all(isinstance(d, (tuple, list, torch.Size)) for d in dims) or len(size) != len(stride)
            or len(size) > MAX_TENSOR_DIMS or not isinstance(offset, int) or isinstance(offset, bool)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, *size, *stride))):
        raise LegacyFormatError("tensor rebuild with a malformed offset/size/stride "
                                f"({_preview(offset)}, {_preview(size)}, {_preview(stride)})")
    empty = torch.empty((0,), dtype=storage.dtype or dtype)
    capacity = storage.untyped.nbytes() // empty.element_size()
    numel = math.prod(size)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if numel else offset
    if numel > capacity or (numel and last >= capacity):
        raise LegacyFormatError(f"tensor of {numel} elements at offset {offset} does not fit its storage of {capacity}")
    return empty.set_(storage.untyped, offset, tuple(size), tuple(stride))


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
    if not isinstance(data, torch.Tensor):
        raise LegacyFormatError(f"parameter rebuilt from a {type(data).__name__}, expected a tensor")
    return data  # our modules own their Parameters; only the values are copied in


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _PlainDtype) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise UnsafePickleError("numpy scalar without a plain numeric dtype or with a malformed payload; refusing")
    return np.frombuffer(data, dtype=dtype.dtype, count=1)[0]


def _codecs_encode(text, encoding="utf-8"):
    """Protocol-2 pickles spell ``bytes`` as ``_codecs.encode(str, 'latin1')``; nothing else is allowed."""
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError("_codecs.encode is only allowed for protocol-2 byte strings")
    return text.encode("latin1")


def _preview(value: Any) -> str:
    """A bounded repr for messages: repr() of shared references could be gigabytes."""
    preview = reprlib.Repr()
    preview.maxlevel, preview.maxlist, preview.maxtuple, preview.maxstring = 2, 8, 8, 60
    return preview.repr(value)


def _plain_items(items, what: str) -> list:
    """The items of a list/tuple of plain hashable values (what sets and sizes are made of)."""
    if not isinstance(items, (list, tuple)) or len(items) > MAX_SET_ITEMS:
        raise LegacyFormatError(f"{what} built from a {type(items).__name__}; expected a short list of plain values")
    if not all(isinstance(item, PLAIN_SCALARS) for item in items):
        raise LegacyFormatError(f"{what} holds something other than plain numbers and strings")
    return list(items)


def _ordered_dict(items=()):
    if isinstance(items, dict):
        items = list(items.items())
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in items):
        raise LegacyFormatError("OrderedDict built from something other than (key, value) pairs")
    return collections.OrderedDict(items)


def _size(dims=()):
    dims = _plain_items(dims, "torch.Size")
    if len(dims) > MAX_TENSOR_DIMS or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise LegacyFormatError(f"torch.Size({_preview(dims)}) refused: expected at most {MAX_TENSOR_DIMS} sizes >= 0")
    return torch.Size(dims)


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
        ("numpy", "dtype"): _PlainDtype,
        ("_codecs", "encode"): _codecs_encode,
        ("collections", "OrderedDict"): _ordered_dict,
        ("torch", "Size"): _size,
        ("builtins", "set"): lambda items=(): set(_plain_items(items, "set")),
        ("builtins", "frozenset"): lambda items=(): frozenset(_plain_items(items, "frozenset")),
    }
    table = dict(functions)
    table[("dnnlib.util", "EasyDict")] = table[("dnnlib", "EasyDict")] = _EasyDict  # NEWOBJ needs the class itself
    for name, value in vars(torch).items():  # dtypes appear as globals in _rebuild_tensor_v3 (torch.float32)
        if isinstance(value, torch.dtype):
            table[("torch", name)] = value
    return table


_ALLOWED_GLOBALS = _allowed_globals()


class _BoundedMemo(dict):
    """The unpickler's memo with a bounded number of slots (a dict, so a huge index costs nothing)."""

    def __setitem__(self, key, value):
        if len(self) >= MAX_MEMO_ENTRIES and key not in self:
            raise LegacyFormatError(f"pickle memoizes more than {MAX_MEMO_ENTRIES} objects; not a network snapshot")
        super().__setitem__(key, value)


class RestrictedUnpickler(pickle._Unpickler):
    """Resolves only allow-listed globals; any other global fails before anything runs.

    Built on the pure-Python unpickler so every opcode that acts on an object can be checked:
    BUILD only on the dtype stand-in, SETITEM(S) only on dicts, APPEND(S) only on lists,
    ADDITEMS only on sets, and a memo that is a bounded dict (the C unpickler allocates an
    array as large as the biggest memo index a file names).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file):
        super().__init__(file)
        self.memo = _BoundedMemo()

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

    def _require(self, kind, what: str, depth: int = 1, marked: bool = False) -> None:
        """The object an opcode acts on (``depth`` from the top; below the mark for the marked ones) is a ``kind``."""
        stack = (self.metastack[-1] if self.metastack else []) if marked else self.stack
        target = stack[-depth] if len(stack) >= depth else None
        if not isinstance(target, kind):
            raise UnsafePickleError(f"pickle applies {what} to a {type(target).__name__}; refusing")

    def load_build(self):
        self._require(_PlainDtype, "BUILD (set state)", depth=2)
        state = self.stack.pop()
        self.stack[-1].__setstate__(state)

    def load_setitem(self):
        self._require(dict, "SETITEM", depth=3)
        super().load_setitem()

    def load_setitems(self):
        self._require(dict, "SETITEMS", marked=True)
        super().load_setitems()

    def load_append(self):
        self._require(list, "APPEND", depth=2)
        super().load_append()

    def load_appends(self):
        self._require(list, "APPENDS", marked=True)
        super().load_appends()

    def load_additems(self):
        self._require(set, "ADDITEMS", marked=True)
        super().load_additems()

    for _opcode, _method in ((pickle.BUILD, load_build), (pickle.SETITEM, load_setitem),
                             (pickle.SETITEMS, load_setitems), (pickle.APPEND, load_append),
                             (pickle.APPENDS, load_appends), (pickle.ADDITEMS, load_additems)):
        dispatch[_opcode[0]] = _method
    del _opcode, _method


# ----------------------------------------------------------------------------- reading


def read_official_pickle(source: str | os.PathLike | BinaryIO) -> dict:
    """Safely unpickle an official snapshot into plain data; networks become PersistentRecords."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return read_official_pickle(f)
    with format_errors("not a readable official StyleGAN2-ADA pickle", LegacyFormatError):
        data = RestrictedUnpickler(source).load()
    if not isinstance(data, dict):
        raise LegacyFormatError(f"expected the pickle to hold a dict of networks, found {type(data).__name__}")
    return data


def record_state_dict(record: PersistentRecord) -> dict[str, torch.Tensor]:
    """Flatten the nested ``_parameters``/``_buffers``/``_modules`` into a dotted state dict."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def group(state: dict, key: str, prefix: str) -> dict:
        value = state.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
            raise LegacyFormatError(f"{prefix or '(root)'}: {key} is a {type(value).__name__}, expected a dict by name")
        return value

    def visit(rec: PersistentRecord, prefix: str) -> None:
        if id(rec) in seen:  # a well-formed module tree never revisits a node; a crafted one could loop forever
            raise LegacyFormatError(f"module tree revisits a module at '{prefix or '(root)'}'")
        seen.add(id(rec))
        state = rec.state
        skip = state.get("_non_persistent_buffers_set", ())
        if not isinstance(skip, (set, frozenset, list, tuple)):
            raise LegacyFormatError(f"{prefix or '(root)'}: _non_persistent_buffers_set is a {type(skip).__name__}")
        for kind in ("_parameters", "_buffers"):
            for name, tensor in group(state, kind, prefix).items():
                if tensor is None or (kind == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise LegacyFormatError(f"{prefix}{name} is a {type(tensor).__name__}, expected a tensor")
                out[prefix + name] = tensor
        for name, child in group(state, "_modules", prefix).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise LegacyFormatError(f"submodule {prefix}{name} is a {type(child).__name__}, not a persistent object")
            visit(child, f"{prefix}{name}.")

    visit(record, "")
    return out


def build_network(record: PersistentRecord, what: str = "network") -> torch.nn.Module:
    """Our module for one official persistent network record."""
    return construct_network(record.class_name, record.init_args, record.init_kwargs, record_state_dict(record), what)


def load_official_snapshot(source: str | os.PathLike | BinaryIO) -> OfficialSnapshot:
    """Read an official snapshot pickle and rebuild its networks as our modules."""
    data = read_official_pickle(source)
    nets = {key: data.get(key) for key in ("G", "D", "G_ema")}
    if not isinstance(nets["G_ema"], PersistentRecord):
        raise LegacyFormatError(
            f"expected an official StyleGAN2-ADA snapshot with a 'G_ema' network; found keys {_preview(list(data))}"
        )
    check_roles({key: rec.class_name for key, rec in nets.items() if isinstance(rec, PersistentRecord)}, "snapshot")
    with format_errors("snapshot", LegacyFormatError):
        built = {key: build_network(rec, key) if isinstance(rec, PersistentRecord) else None
                 for key, rec in nets.items()}
        augment_kwargs = augment_p = None
        pipe = data.get("augment_pipe")
        if isinstance(pipe, PersistentRecord):
            if pipe.class_name != "AugmentPipe":
                raise LegacyFormatError(f"augment_pipe: unknown class '{pipe.class_name}', expected AugmentPipe")
            augment_kwargs = pipe.init_kwargs
            buffers = pipe.state.get("_buffers")
            p = buffers.get("p") if isinstance(buffers, dict) else None
            if p is not None and not (isinstance(p, torch.Tensor) and p.numel() == 1 and 0 <= float(p) <= 1):
                raise LegacyFormatError("augment_pipe: its probability p must be one number within 0..1")
            augment_p = None if p is None else float(p)
        training_set_kwargs = data.get("training_set_kwargs")
        return OfficialSnapshot(
            G=built["G"], D=built["D"], G_ema=built["G_ema"],
            augment_kwargs=augment_kwargs, augment_p=augment_p,
            training_set_kwargs=to_plain(training_set_kwargs) if isinstance(training_set_kwargs, dict) else None,
            init_kwargs={key: rec.init_kwargs for key, rec in nets.items() if isinstance(rec, PersistentRecord)},
        )
