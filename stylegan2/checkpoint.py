"""Our checkpoint format (safetensors + JSON metadata) and ``load_network_file`` for a local network file.

A checkpoint is one ``.safetensors`` file: the weights of G, D and G_ema under the prefixes
``G.``, ``D.``, ``G_ema.`` and, in the safetensors header, one JSON document (key
``afro_fashion_gan``) saying how to construct each network and what training state came with
it.  Loading it never unpickles anything, so a checkpoint from a stranger cannot run code.
``load_network_file`` also reads official ``.pkl`` snapshots (safely, by ``legacy.py``); names and URLs
are resolved by ``fashion_models.load_model``, the loader every entry point uses.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import struct

import safetensors.torch
import torch

from stylegan2.construct import NetworkLoadError, check_roles, construct_network, to_plain
from stylegan2.legacy import load_official_snapshot
from toolkit.atomic import atomic_write_bytes
from toolkit.download import file_sha256

FORMAT = "afro-fashion-gan/1"
METADATA_KEY = "afro_fashion_gan"
NET_NAMES = ("G", "D", "G_ema")
MAX_HEADER_BYTES = 100 << 20  # safetensors caps its JSON header at 100 MB


class CheckpointError(NetworkLoadError):
    """A checkpoint cannot be written or read; the message says what was expected."""


@dataclasses.dataclass
class NetworkBundle:
    """Everything a network file holds, as our modules and plain data."""

    G_ema: torch.nn.Module
    G: torch.nn.Module | None = None
    D: torch.nn.Module | None = None
    augment_p: float | None = None
    augment_kwargs: dict | None = None
    training_set_kwargs: dict | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    sha256: str = ""  # of the file, so edits made on a network can say which one
    source: str = ""  # local path the networks were read from


# ----------------------------------------------------------------------------- saving


def describe_networks(nets: dict[str, torch.nn.Module]) -> dict:
    """Metadata that rebuilds ``nets``: class and constructor kwargs of each, plus G_ema's key numbers."""
    out = {"nets": {}}
    for name, module in nets.items():
        if not isinstance(getattr(module, "init_kwargs", None), dict):
            raise CheckpointError(f"{name} has no init_kwargs dict: only stylegan2.networks modules can be saved")
        out["nets"][name] = {"class_name": type(module).__name__, "init_kwargs": to_plain(module.init_kwargs),
                             "num_params": sum(p.numel() for p in module.parameters())}
    for key in ("img_resolution", "img_channels", "c_dim", "z_dim", "w_dim", "num_ws"):
        out[key] = int(getattr(nets["G_ema"], key))
    out["img_shape"] = list(nets["G_ema"].img_shape)  # [height, width]; files without it are square
    return out


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Digest of names, dtypes, shapes and bytes of all tensors, independent of file layout."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, G: torch.nn.Module | None = None, D: torch.nn.Module | None = None,
                    G_ema: torch.nn.Module | None = None, meta: dict | None = None,
                    dtype: torch.dtype = torch.float32) -> pathlib.Path:
    """Write the given networks and ``meta`` to ``path`` atomically; returns the path.

    ``meta`` is free-form JSON; ``kimg``, ``augment_p``, ``augment_kwargs`` and
    ``training_set_kwargs`` are read back into the bundle.  ``dtype=torch.float16`` halves the
    file for shipped models; loading casts back to float32.
    """
    nets = {name: module for name, module in (("G", G), ("D", D), ("G_ema", G_ema)) if module is not None}
    if "G_ema" not in nets:
        raise CheckpointError("save_checkpoint needs G_ema (the generator used for inference)")
    if dtype not in (torch.float32, torch.float16):
        raise CheckpointError(f"dtype must be torch.float32 or torch.float16, got {dtype}")
    tensors = {}
    for name, module in nets.items():
        for key, value in module.state_dict().items():
            value = value.detach().to("cpu", copy=True).contiguous()  # copies: safetensors refuses shared memory
            tensors[f"{name}.{key}"] = value.to(dtype) if value.is_floating_point() else value
    doc = {**(meta or {}), **describe_networks(nets), "format": FORMAT,
           "dtype": str(dtype).replace("torch.", ""), "weights_sha256": weights_sha256(tensors)}
    try:
        header = json.dumps(to_plain(doc), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint meta must be plain JSON data (numbers, strings, lists, dicts): {exc}") from exc
    payload = safetensors.torch.save(tensors, metadata={METADATA_KEY: header})
    return atomic_write_bytes(path, payload)


# ----------------------------------------------------------------------------- loading


def read_checkpoint_metadata(path: str | os.PathLike) -> dict:
    """The metadata document of a checkpoint, reading only its header (cheap, for listings and UIs)."""
    with open(path, "rb") as f:
        return _parse_header(path, f.read(8), f.read)


def _parse_header(path, size_bytes: bytes, read) -> dict:
    if len(size_bytes) != 8:
        raise CheckpointError(f"{path}: too short to be a .safetensors checkpoint")
    (size,) = struct.unpack("<Q", size_bytes)
    if size > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: its header claims {size} bytes (safetensors allows {MAX_HEADER_BYTES})")
    try:
        header = json.loads(read(size))
        doc = json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CheckpointError(
            f"{path}: a .safetensors file without our '{METADATA_KEY}' metadata; "
            "expected a checkpoint written by save_checkpoint or stylegan2.convert"
        ) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("nets"), dict):
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(f"{path}: unsupported checkpoint format {found!r}; expected {FORMAT!r}")
    for name, spec in doc["nets"].items():
        if name not in NET_NAMES or not isinstance(spec, dict) or not isinstance(spec.get("init_kwargs", {}), dict):
            raise CheckpointError(f"{path}: network entry {name!r} must be one of {', '.join(NET_NAMES)} "
                                  "with a class_name and an init_kwargs object")
    check_roles({name: spec.get("class_name") for name, spec in doc["nets"].items()}, str(path))
    return doc


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> NetworkBundle:
    """Read one of our ``.safetensors`` checkpoints (no pickle involved) into a bundle."""
    doc = read_checkpoint_metadata(path)
    if "G_ema" not in doc["nets"]:
        raise CheckpointError(f"{path}: checkpoint has no G_ema network")
    try:
        with safetensors.safe_open(path, framework="pt", device="cpu") as f:  # memory-mapped, no full copy
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: damaged .safetensors file ({exc})") from exc
    if doc.get("weights_sha256") != weights_sha256(tensors):
        raise CheckpointError(f"{path}: weights do not match their recorded sha256; the file is corrupted")
    nets = {}
    for name, spec in doc["nets"].items():
        prefix = f"{name}."
        state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        # float16 files load into our float32 modules: load_state_dict's copy casts
        nets[name] = construct_network(spec.get("class_name"), (), spec.get("init_kwargs", {}), state,
                                       f"{path}: {name}").to(device)
    return NetworkBundle(
        G_ema=nets["G_ema"], G=nets.get("G"), D=nets.get("D"),
        augment_p=doc.get("augment_p"), augment_kwargs=doc.get("augment_kwargs"),
        training_set_kwargs=doc.get("training_set_kwargs"), meta=doc,
        sha256=file_sha256(path), source=str(path),
    )


def load_official_pickle(path: str | os.PathLike, device: str | torch.device = "cpu") -> NetworkBundle:
    """An official StyleGAN2-ADA snapshot as a bundle (its code is never executed)."""
    snap = load_official_snapshot(path)
    nets = {name: getattr(snap, name) for name in NET_NAMES if getattr(snap, name) is not None}
    meta = {**describe_networks(nets), "format": "official-stylegan2-ada-pickle", "augment_p": snap.augment_p,
            "augment_kwargs": snap.augment_kwargs, "training_set_kwargs": snap.training_set_kwargs}
    for module in nets.values():
        module.to(device)
    return NetworkBundle(
        G_ema=snap.G_ema, G=snap.G, D=snap.D, augment_p=snap.augment_p, augment_kwargs=snap.augment_kwargs,
        training_set_kwargs=snap.training_set_kwargs, meta=meta, sha256=file_sha256(path), source=str(path),
    )


def sniff_format(path: str | os.PathLike) -> str:
    """'safetensors' or 'pickle' from the file's first bytes (extensions can lie)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < MAX_HEADER_BYTES:
        return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol 2+ marker
        return "pickle"
    kind = "is a zip archive (a torch.save file or a dataset?)" if head[:2] == b"PK" else f"starts with {head[:8]!r}"
    raise CheckpointError(
        f"{path} is neither a .safetensors checkpoint nor an official StyleGAN2-ADA .pkl: it {kind}"
    )


def load_network_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> NetworkBundle:
    """Our checkpoint or an official pickle, told apart by content; an unreadable file is a CheckpointError."""
    try:
        if sniff_format(path) == "safetensors":
            return load_checkpoint(path, device)
        return load_official_pickle(path, device)
    except OSError as exc:
        raise CheckpointError(f"cannot read network {os.fspath(path)!r}: {exc}") from exc
