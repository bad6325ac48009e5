"""Low-level ops: a readable PyTorch reference for each, and a registry where faster implementations plug in.

Every op takes `impl=`: the name of a registered implementation, or None for the process default, which is
the reference ("ref") unless ``$AFRO_FASHION_OPS`` picks another, for every op ("cuda") or per op
("upfirdn2d=cuda,bias_act=ref"). An implementation may decline a call it cannot serve (a CUDA kernel given
a CPU tensor); the reference runs instead, so a choice never breaks a run. tests/test_ops.py runs every
registered implementation against the same float64 loops.

The compiled generator path (`stylegan2.compiled`) compiles the whole network around these functions;
the dispatch below is plain Python on module globals, which torch.compile traces away.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

REFERENCE = "ref"
OPS_ENV = "AFRO_FASHION_OPS"


@dataclasses.dataclass(frozen=True)
class Implementation:
    fn: Callable
    accepts: Callable[..., bool] | None = None  # None: serves every call


_registry: dict[str, dict[str, Implementation]] = {}


def parse_choice(text: str | None) -> dict[str, str]:
    """'' -> {}, 'cuda' -> {'*': 'cuda'}, 'upfirdn2d=cuda,bias_act=ref' -> per op."""
    choice: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        op, sep, name = part.partition("=")
        if sep and (not op.strip() or not name.strip()):
            raise ValueError(f"${OPS_ENV}: cannot read {part!r}; write IMPL or OP=IMPL[,OP=IMPL]")
        choice[op.strip() if sep else "*"] = (name if sep else op).strip()
    return choice


_choice: dict[str, str] = parse_choice(os.environ.get(OPS_ENV))


def register(op: str, name: str, accepts: Callable[..., bool] | None = None) -> Callable:
    """Decorator: `fn` implements `op` under `name`; `accepts(*args, **kwargs)` may decline a call."""
    def add(fn: Callable) -> Callable:
        _registry.setdefault(op, {})[name] = Implementation(fn, accepts)
        return fn
    return add


def implementations(op: str) -> list[str]:
    """Names registered for `op`, the reference first."""
    names = list(_registry.get(op, {}))
    return sorted(names, key=lambda n: (n != REFERENCE, n))


def dispatch(op: str, impl: str | None, *args, **kwargs):
    """Run `op` with the implementation asked for (`impl`, else the process choice, else the reference)."""
    impls = _registry[op]
    named = impl or _choice.get(op)
    chosen = impls.get(named or _choice.get("*") or REFERENCE)
    if chosen is None:
        if named is not None:
            raise ValueError(f"{op}: no implementation {named!r}; registered: {', '.join(implementations(op))}")
        chosen = impls[REFERENCE]  # a choice for every op applies only to the ops that have it
    if chosen.accepts is not None and not chosen.accepts(*args, **kwargs):
        chosen = impls[REFERENCE]
    return chosen.fn(*args, **kwargs)
