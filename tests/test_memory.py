"""keep_freed_memory: freed large blocks are reused instead of being mapped and zeroed afresh (glibc)."""
import os
import platform
import subprocess
import sys

import pytest

from toolkit import memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOCATE = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from toolkit.memory import keep_freed_memory
torch.set_num_threads(1)
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def chain():                                        # an eager forward's pattern: each op's 64 MB result
    x = torch.ones(1 << 24)                         # replaces the one before it
    for _ in range(10):
        x = (x * 1.0001).add_(0.5).relu_()
chain()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
chain()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
BLOCK = 16384        # pages in one 64 MB result: above glibc's largest mmap threshold (32 MB), so its
FRESH = 10 * BLOCK   # default maps and faults in every one of the 10 results afresh
glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="mallopt is glibc's")


def run(mode: str, **env) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", ALLOCATE.format(root=ROOT), mode], env={**clean, **env},
                         check=True, capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


@glibc
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    kept, faults = run("keep")
    assert kept == "True"
    assert faults <= 3 * BLOCK         # a block or two of heap growth may still fault in


@glibc
def test_without_it_every_block_is_faulted_in_afresh():
    kept, faults = run("default")
    assert kept == "None"
    assert faults >= FRESH * 0.9       # the contrast that makes the bound above mean something


@glibc
def test_a_users_own_malloc_setting_wins():
    kept, _ = run("keep", MALLOC_MMAP_THRESHOLD_="131072")
    assert kept == "False"


def test_it_applies_once(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_apply", lambda: calls.append(1) or True)
    memory.keep_freed_memory.cache_clear()
    try:
        assert memory.keep_freed_memory() and memory.keep_freed_memory()
    finally:
        memory.keep_freed_memory.cache_clear()
    assert calls == [1]
