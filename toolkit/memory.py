"""Keep freed memory in the process: eager CPU rendering otherwise spends a third of its time in page faults.

glibc hands every freed block above its mmap threshold (at most 32 MB, adjusted as the program runs) back to
the kernel, so each eager forward's large temporaries are mapped and zeroed afresh. Measured on the 2-core
development VM (`benchmarks/bench_malloc.py`; `ganspace sheets` for the default model's 48 sheets: 11-14 s
of its 26-29 s were system time, 0.5 s after this, wall 18-19 s, peak memory +4%).
This is what PyTorch's CPU tuning guide gets from jemalloc or tcmalloc, without a new dependency.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's <malloc.h>
KEEP = 2 ** 31 - 1                            # bytes: the largest value mallopt takes (an int)


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse (once per process); True when that took effect.

    A no-op (False) off Linux, with another C library, or when the user set glibc's malloc tunables
    (MALLOC_*_ or GLIBC_TUNABLES): their choice wins.
    """
    return _apply()


def _apply() -> bool:
    if not sys.platform.startswith("linux") or os.environ.get("GLIBC_TUNABLES") or \
            any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP))
