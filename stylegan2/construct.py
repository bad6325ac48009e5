"""Our networks rebuilt from recorded constructor kwargs and a state dict, whatever file they came from.

Shared by the official-pickle reader (`legacy.py`) and our checkpoints (`checkpoint.py`): the kwargs are
checked against sane ranges, the module is built on the meta device and compared with the file's tensors,
and only then materialised, so a file cannot make us allocate what it merely claims.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import torch

from toolkit.cli import UserError

NETWORK_CLASSES = ("Generator", "Discriminator")  # top-level networks we can rebuild
MAX_PLAIN_VALUES = 100_000     # kwargs and dataset settings hold < 1000 values
MAX_PLAIN_DEPTH = 32
PLAIN_SCALARS = (str, int, float, bool, type(None))


class NetworkLoadError(UserError, ValueError):
    """A network file cannot be turned into our modules; base of every loading error (its message is for the
    user: CLIs print it as one line)."""


class NetworkFormatError(NetworkLoadError):
    """The file is safe to read, but what it records is not a network (or settings) we understand."""


@contextlib.contextmanager
def format_errors(what: str, error: type[NetworkFormatError] = NetworkFormatError):
    """Every failure inside becomes a NetworkLoadError (CLIs print it, no traceback); unexpected ones an `error`."""
    try:
        yield
    except NetworkLoadError:
        raise
    except MemoryError:
        raise NetworkLoadError(f"{what}: it needs more memory than this machine has") from None
    except Exception as exc:  # wrong kwargs for the constructor, corrupt tensors...
        raise error(f"{what}: {type(exc).__name__}: {exc}") from exc


def to_plain(obj: Any, max_values: int = MAX_PLAIN_VALUES) -> Any:
    """EasyDict/OrderedDict/numpy scalars -> plain dict/list/Python numbers (JSON-friendly).

    Anything else is refused, and so are more than ``max_values`` values or nesting deeper than
    MAX_PLAIN_DEPTH: a few hundred bytes of shared references would otherwise expand to gigabytes.
    """
    budget = [max_values]

    def plain(value: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise NetworkFormatError(f"more than {max_values} values where plain settings were expected "
                                 "(shared references that expand without bound?)")
        if depth > MAX_PLAIN_DEPTH:
            raise NetworkFormatError(f"settings nested deeper than {MAX_PLAIN_DEPTH} levels")
        if isinstance(value, dict):
            if not all(isinstance(k, PLAIN_SCALARS) for k in value):
                raise NetworkFormatError("settings with keys that are not plain strings or numbers")
            return {str(k): plain(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v, depth + 1) for v in value]
        if isinstance(value, np.generic) and value.dtype.kind in "biufcUS":
            return value.item()
        if isinstance(value, PLAIN_SCALARS):
            return value
        raise NetworkFormatError(f"a {type(value).__name__} where plain settings (numbers, strings, lists, dicts) "
                                 "were expected")

    return plain(obj, 0)


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names missing/unexpected/mismatched keys."""
    check_state_fits(module.state_dict(), state, what)
    module.load_state_dict(state, strict=True)


def check_state_fits(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], what: str) -> None:
    """Raise NetworkLoadError naming missing/unexpected/mismatched keys (works on meta tensors too)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs ours {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = [f"{label} {items}" for label, items in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if items]
        raise NetworkLoadError(f"{what}: weights do not fit our network ({'; '.join(parts)})")


# Sane ranges of constructor kwargs: a file may claim anything, and the constructor allocates
# what it is told before any weight is compared.  Official networks sit well inside these.
ARCHITECTURES = ("orig", "skip", "resnet")
_INT_RANGES = {
    "z_dim": (1, 8192), "w_dim": (1, 8192), "c_dim": (0, 1 << 16), "img_channels": (1, 4),
    "img_resolution": (4, 4096), "num_layers": (1, 64), "channel_base": (1, 1 << 22), "channel_max": (1, 8192),
    "num_fp16_res": (0, 12), "embed_features": (1, 8192), "layer_features": (1, 8192), "cmap_dim": (1, 8192),
    "mbstd_group_size": (1, 1024), "mbstd_num_channels": (0, 64), "num_ws": (1, 64),
}
_FLOAT_RANGES = {"conv_clamp": (0.0, 1e9), "lr_multiplier": (1e-9, 1e9), "w_avg_beta": (0.0, 1.0)}


def check_network_kwargs(kwargs: Any, what: str = "network") -> None:
    """Refuse constructor kwargs outside sane ranges before anything is built from them."""
    def check(value: Any, path: str, depth: int) -> None:
        key = path.rsplit(".", 1)[-1]
        if isinstance(value, dict):
            if depth > 3:
                raise NetworkLoadError(f"{what}: constructor kwargs nested too deeply at {path}")
            for k, v in value.items():
                check(v, f"{path}.{k}" if path else str(k), depth + 1)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise NetworkLoadError(f"{what}: constructor kwarg {path}={value} is not a finite number")
            low, high = _INT_RANGES.get(key) or _FLOAT_RANGES.get(key) or (-1e9, 1e9)
            if key in _INT_RANGES and not isinstance(value, int):
                raise NetworkLoadError(f"{what}: constructor kwarg {path}={value!r} must be a whole number")
            if not low <= value <= high:
                raise NetworkLoadError(f"{what}: constructor kwarg {path}={value} is outside the sane range "
                                       f"{low:g}..{high:g}")
        elif key == "architecture" and value not in ARCHITECTURES:
            raise NetworkLoadError(f"{what}: architecture {value!r} is not one of {', '.join(ARCHITECTURES)}")
        elif isinstance(value, list):
            if len(value) > 64:
                raise NetworkLoadError(f"{what}: constructor kwarg {path} is a list of {len(value)} values")
            for i, v in enumerate(value):
                check(v, f"{path}[{i}]", depth + 1)
        elif not isinstance(value, str):
            raise NetworkLoadError(f"{what}: constructor kwarg {path} is a {type(value).__name__}")

    if not isinstance(kwargs, dict):
        raise NetworkLoadError(f"{what}: constructor kwargs are a {type(kwargs).__name__}, expected a dict")
    check(kwargs, "", 0)


def construct_network(class_name: str, init_args: tuple | list, init_kwargs: dict,
                      state: dict[str, torch.Tensor], what: str = "network") -> torch.nn.Module:
    """Build our Generator/Discriminator by class name and load ``state`` strictly .

    The module is first built on the meta device (no memory) and compared with the file's
    tensors; only a network whose every weight is in the file is then materialised.
    """
    from stylegan2 import networks  # deferred: reading pickles must not need the networks

    if class_name not in NETWORK_CLASSES:
        raise NetworkLoadError(
            f"{what}: unknown network class '{class_name}'; expected one of {', '.join(NETWORK_CLASSES)}"
        )
    if init_args:
        raise NetworkLoadError(f"{what}: {class_name} takes keyword arguments only, the file gives positional ones")
    check_network_kwargs(init_kwargs, what)
    with format_errors(f"{what}: cannot construct {class_name} from the recorded kwargs"):
        with torch.device("meta"):
            module = getattr(networks, class_name)(**init_kwargs)
        check_state_fits(module.state_dict(), state, what)
        if any(m._non_persistent_buffers_set for m in module.modules()):  # not in the file: build them for real
            module = getattr(networks, class_name)(**init_kwargs)
        else:
            module = module.to_empty(device="cpu")
        module.load_state_dict(state, strict=True)
    return module.eval()


def check_roles(class_names: dict[str, Any], what: str) -> None:
    """G and G_ema must be generators and D a discriminator (a swapped file would crash later, far away)."""
    for name, class_name in class_names.items():
        expected = "Discriminator" if name == "D" else "Generator"
        if class_name in NETWORK_CLASSES and class_name != expected:
            raise NetworkLoadError(f"{what}: its {name} is a {class_name}; {name} must be a {expected}")
