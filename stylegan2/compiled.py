"""The compiled generator path: torch.compile of mapping and synthesis for rendering, behind one switch.

Why: on a CPU the generator's many small ops around each convolution (bias and activation, FIR resampling,
noise, modulation) cost as much as the convolutions; inductor fuses them (benchmarks/bench_compile.py).
Training is not compiled: its step measured no gain and R1 / path length need double backward, which
torch.compile does not support. An optimisation loop that renders with gradients (the projector) compiles
its whole step instead (`compile_step`): forward, loss and backward.

The switch: `compile=True/False/None` where a generator is set up (the CLIs' --compile/--no-compile);
None reads $AFRO_FASHION_COMPILE (1, 0 or auto; default auto). auto compiles where it helps and can work:
a CPU with a C++ compiler (inductor writes C++), CUDA with Triton. If compiling fails, one line says so
and the module runs eager from then on.

Shapes: each batch size gets a static graph (the fast kind), compiled once; a smaller batch is padded up
to a compiled size when that at most doubles its work (not with 'random' noise, whose draws would
shift); after MAX_STATIC sizes, one dynamic-shape graph serves every other size.
Compiled artefacts (inductor's FX graph cache, kernels) live under the project's cache, so a second start
traces the network again but compiles nothing.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sys
import tempfile
import threading

import torch

from toolkit.download import cache_root

COMPILE_ENV = "AFRO_FASHION_COMPILE"
MAX_STATIC = 3
# The batch that sheets, hints, export and the studio's browse grid render in: with single images, two
# graphs serve every tool (smaller batches pad up to 8).
RENDER_BATCH = 8
# auto's break-even (benchmarks/bench_compile.py): below this many renders a start's tracing and cache
# loading cost more than compiled rendering saves; a w sample costs about 1/MAPPINGS_PER_IMAGE of a render.
AUTO_MIN_IMAGES = 2000
MAPPINGS_PER_IMAGE = 1000
STEP_RENDERS = 3  # a forward + backward step costs about three forwards
BACKEND = "inductor"
# While a background warm-up traces (long stretches of Python), renders in other threads get the GIL back
# only at the interpreter's switch interval (5 ms), once per hand-over; a shorter interval keeps them
# going (a second studio start on a paper256 generator, renders during the batch-8 warm-up: the first two
# 1.1-1.5 s -> 0.55-0.65 s, worst 1.3-1.5 s -> 0.85-0.92 s; the warm-up itself ends ~1-3 s later).
WARM_UP_SWITCH_S = 0.0005
COMPILE_HELP = (f"Compile the generator for rendering (torch.compile; default: ${COMPILE_ENV} or auto, i.e. on "
                f"for jobs of {AUTO_MIN_IMAGES:,}+ images where a C++ compiler or Triton is present). The first "
                "run compiles for minutes, later runs reuse the on-disk cache but still trace the network.")


def cache_dir():
    """Where compiled artefacts are kept: <project cache>/torch-compile."""
    return cache_root() / "torch-compile"


def missing_toolchain(device: torch.device | str) -> str | None:
    """Why compilation cannot work on `device` here, or None when it can."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        return None
    if device.type == "cpu":
        cxx = os.environ.get("CXX") or "g++"
        return None if shutil.which(cxx) else f"no C++ compiler ({cxx}) found"
    return f"no compiled path for {device.type} devices"


def compile_wanted(choice: bool | None, device: torch.device | str, images: int | None = None) -> bool:
    """Resolve the switch: `choice`, else $AFRO_FASHION_COMPILE, else auto (see `compile_generator` for
    `images`). A compile asked for that cannot happen says why in one line."""
    if choice is None:
        text = os.environ.get(COMPILE_ENV, "auto").strip().lower()
        if text in ("0", "false", "no", "off"):
            return False
        if text not in ("1", "true", "yes", "on", "auto", ""):
            _say(f"${COMPILE_ENV} must be 1, 0 or auto, not {text!r}: using auto")
            text = "auto"
        if text in ("auto", ""):
            return (images is None or images >= AUTO_MIN_IMAGES) and missing_toolchain(device) is None
    elif not choice:
        return False
    reason = missing_toolchain(device)
    if reason:
        _say(f"not compiling the generator: {reason}; rendering without compilation")
    return reason is None


def _say(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def _use_project_cache() -> None:
    """Point inductor's on-disk caches into the project's cache (unless the user chose a place).

    Importing torch._dynamo already writes inductor's default (/tmp/torchinductor_<user>) into
    TORCHINDUCTOR_CACHE_DIR, so that value counts as not chosen: left there, the compiled modules went to
    a folder a reboot may empty, and a damaged one there was not ours to repair (`_damaged_cache_file`)."""
    root = cache_dir()
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, _inductor_default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
    import torch._inductor.config as inductor_config
    inductor_config.fx_graph_cache = True
    # Seeded 'random' noise must draw the same numbers as the eager path (recipes reproduce an image).
    inductor_config.fallback_random = True


def _inductor_default_cache_dir() -> str:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # older torch: the same rule
        import getpass

        return os.path.join(tempfile.gettempdir(), "torchinductor_" + getpass.getuser())
    return os.path.abspath(default_cache_dir())


class CompiledForward:
    """Stands in for `module.forward`: compiled graphs per batch size, the eager forward when not compiled.

    `background=True`: sizes not compiled yet run eager (a warm-up thread compiles them, `warm_up`);
    otherwise the first call of a size compiles it.
    """

    def __init__(self, module: torch.nn.Module, name: str, background: bool = False):
        self.eager = module.forward
        self.name, self.background = name, background
        self.static = torch.compile(self.eager, backend=BACKEND, dynamic=False)
        self.dynamic = None
        self.ready: set[int | str] = set()
        self.failed = False
        self._lock = threading.Lock()

    def __deepcopy__(self, memo):
        """A copied module gets the eager forward (bound to the copy): compiled graphs are not copied."""
        import copy
        return copy.deepcopy(self.eager, memo)

    def __call__(self, *args, **kwargs):
        if self.failed or torch.is_grad_enabled():
            return self.eager(*args, **kwargs)
        n = _batch(args, kwargs)
        size = n if n in self.ready else self._padded_size(n, kwargs.get("noise_mode"))
        if size is None and self.background:
            return self.eager(*args, **kwargs)
        return self._run(args, kwargs, n, size)

    def _padded_size(self, n: int, noise_mode) -> int | None:
        """A compiled size to pad `n` up to, or None."""
        if noise_mode == "random":
            return "dynamic" if "dynamic" in self.ready else None
        bigger = [m for m in self.ready if isinstance(m, int) and n < m <= 2 * n]
        if bigger:
            return min(bigger)
        return "dynamic" if "dynamic" in self.ready else None

    def compile_size(self, *args, **kwargs):
        """Run (and so compile) the graph for this call's batch size; returns the output."""
        return self._run(args, kwargs, _batch(args, kwargs), None)

    def _run(self, args, kwargs, n: int, size):
        if size is None:  # a new size: its own static graph, or the shared dynamic one
            with self._lock:
                statics = [m for m in self.ready if isinstance(m, int)]
                size = n if len(statics) < MAX_STATIC else "dynamic"
                return self._call(size, args, kwargs, n)
        return self._call(size, args, kwargs, n)

    def _call(self, size, args, kwargs, n: int):
        args = tuple(_packed(a) for a in args)
        kwargs = {k: _packed(v) for k, v in kwargs.items()}
        fn = self.static
        if size == "dynamic":
            if self.dynamic is None:
                self.dynamic = torch.compile(self.eager, backend=BACKEND, dynamic=True)
            fn = self.dynamic
        elif size != n:
            args = tuple(_pad(a, n, size) for a in args)
            kwargs = {k: _pad(v, n, size) for k, v in kwargs.items()}
        out = _run_or_fall_back(self, fn, args, kwargs, f"the generator's {self.name}", "rendering")
        if not self.failed:
            self.ready.add(size)
        return out[:n]


MAX_CACHE_REPAIRS = 3


def _run_or_fall_back(owner, fn, args, kwargs, what: str, doing: str):
    """`fn(...)`; if that fails, `owner.eager(...)` (which raises the caller's own error, if it was one), and
    when the eager call works, the failure was the compiler's: one line says so and `owner` stays eager.

    A compiled module in the project's cache that cannot be loaded (a build killed half-way leaves a short
    `.so` that the graph cache still points at) is removed and `fn` tried again, so that one damaged file
    does not send every later start down the eager path."""
    for _ in range(MAX_CACHE_REPAIRS + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any compile failure falls back; user errors re-raise below
            failure = error
            damaged = _damaged_cache_file(error)
            if damaged is None:
                break
            _say(f"removing a damaged compiled module from the cache ({damaged.name}) and compiling it again")
            damaged.unlink()
    out = owner.eager(*args, **kwargs)
    owner.failed = True
    _say(f"compiling {what} failed ({_root_cause(failure)}); {doing} without compilation")
    return out


def _damaged_cache_file(error: BaseException):
    """The file inside our compile cache that an ImportError/OSError at the root of `error` names, or None."""
    error = _innermost(error)
    if not isinstance(error, (ImportError, OSError)):
        return None
    named = getattr(error, "path", None) or getattr(error, "filename", None) or str(error).split(":", 1)[0]
    try:
        path = pathlib.Path(named).resolve()
    except (TypeError, ValueError, OSError):
        return None
    root = cache_dir().resolve()
    return path if path.is_file() and root in path.parents else None


class CompiledStep:
    """An optimisation step (forward, loss, `backward()`) run through torch.compile, eager after a failure.

    `step` calls `backward()` itself, so a compile failure (of the forward graph, or of the backward graph
    at the first backward) surfaces inside the call, before any gradient is written: the eager rerun
    starts from clean gradients.
    """

    def __init__(self, step, name: str):
        self.eager, self.name, self.failed = step, name, False
        self.compiled = torch.compile(step, backend=BACKEND)

    def __call__(self, *args, **kwargs):
        if self.failed:
            return self.eager(*args, **kwargs)
        return _run_or_fall_back(self, self.compiled, args, kwargs, self.name, "optimising")


def compile_step(step, name: str, compile: bool | None = None, device: torch.device | str = "cpu",
                 images: int | None = None):
    """`step` on the compiled path when the switch says so (`images`: how many renders the job's steps
    amount to, for auto; a forward and backward step costs about STEP_RENDERS renders), else `step`."""
    if not compile_wanted(compile, device, images):
        return step
    _use_project_cache()
    return CompiledStep(step, name)


def _innermost(error: BaseException) -> BaseException:
    """The error at the bottom of dynamo's wrapping (its `inner_exception`) and of `raise ... from`."""
    while (inner := getattr(error, "inner_exception", None) or error.__cause__) is not None:
        error = inner
    return error


def _root_cause(error: BaseException) -> str:
    """'Type: first line' of the innermost error (dynamo wraps the backend's own)."""
    error = _innermost(error)
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first[:160]}"


def _batch(args, kwargs) -> int:
    """The batch size of a call: dim 0 of its first tensor argument."""
    return next(a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)).shape[0]


def _packed(x):
    """x with the strides of a fresh tensor of its shape. Graphs are specialised on strides, even those of
    size-1 dims that `is_contiguous` ignores: a view (ws[0::2], or one row of it) would trace a graph of its own."""
    if not isinstance(x, torch.Tensor) or x.stride() == _fresh_strides(x.shape):
        return x
    return x.clone(memory_format=torch.contiguous_format)


def _fresh_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _pad(x, n: int, size: int):
    """Rows n..size-1 repeat the last row (any valid input; their outputs are dropped)."""
    if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.shape[0] != n:
        return x
    return torch.cat([x, x[-1:].expand(size - n, *x.shape[1:])])


def compile_generator(G: torch.nn.Module, compile: bool | None = None, images: int | None = None,
                      background: bool = False, parts=("mapping", "synthesis")) -> bool:
    """Swap in compiled forwards for G's `parts` (in place; weights and state_dict untouched).

    `images`: how many renders the job will make (a mapping-only job: w samples / MAPPINGS_PER_IMAGE); auto
    compiles only when that repays a start's compile (AUTO_MIN_IMAGES). None: a long-running process (the
    studio), which always gains. Returns whether G is now on the compiled path. With `background`, sizes
    not warmed up yet run eager: call `warm_up` in a thread.
    """
    if is_compiled(G):
        return True
    try:
        device = next(G.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    if not compile_wanted(compile, device, images):
        return False
    _use_project_cache()
    for name in parts:
        module = getattr(G, name)
        module.forward = CompiledForward(module, name, background=background)
    return True


def eager(module: torch.nn.Module):
    """The module's own forward, past a compiled one: for one-off calls at a batch size no graph was built
    for (compiling one would cost more than the call)."""
    forward = module.forward
    return forward.eager if isinstance(forward, CompiledForward) else module


def is_compiled(G: torch.nn.Module) -> bool:
    return any(isinstance(getattr(getattr(G, name, None), "forward", None), CompiledForward)
               for name in ("mapping", "synthesis"))


def warming_up(G: torch.nn.Module) -> bool:
    """True while a compiled G has not finished compiling its first synthesis graph."""
    forward = getattr(G.synthesis, "forward", None)
    return isinstance(forward, CompiledForward) and not forward.ready and not forward.failed


_short_turns = {"count": 0, "saved": None}
_short_turns_lock = threading.Lock()


@contextlib.contextmanager
def short_gil_turns():
    """Within: the interpreter switches threads every WARM_UP_SWITCH_S (process-wide; the last one out of
    overlapping uses restores the interval found before the first)."""
    with _short_turns_lock:
        if _short_turns["count"] == 0:
            _short_turns["saved"] = sys.getswitchinterval()
            sys.setswitchinterval(WARM_UP_SWITCH_S)
        _short_turns["count"] += 1
    try:
        yield
    finally:
        with _short_turns_lock:
            _short_turns["count"] -= 1
            if _short_turns["count"] == 0:
                sys.setswitchinterval(_short_turns["saved"])


@torch.no_grad()
def warm_up(G: torch.nn.Module, batch_sizes=(1,), noise_mode: str = "const") -> None:
    """Compile G's graphs for these batch sizes now (e.g. in a thread while the studio opens)."""
    if not is_compiled(G):
        return
    device = next(G.parameters()).device
    for n in batch_sizes:
        z = torch.zeros([n, G.z_dim], device=device)
        c = torch.zeros([n, G.c_dim], device=device)
        if G.c_dim:
            c[:, 0] = 1
        mapping, synthesis = G.mapping.forward, G.synthesis.forward
        ws = mapping.compile_size(z, c, truncation_psi=0.7) if isinstance(mapping, CompiledForward) else \
            mapping(z, c, truncation_psi=0.7)
        if isinstance(synthesis, CompiledForward):
            synthesis.compile_size(ws, noise_mode=noise_mode)
