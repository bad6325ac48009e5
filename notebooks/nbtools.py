"""What the Colab notebooks need around the repo's CLIs: run one with live output that fails loudly,
and start/stop a server in the background (the studio cell in CI mode).

`!python train.py ...` would not do: it ignores failures, so "Run all" would carry on after a broken step.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def command(*args) -> list[str]:
    """`python ARGS...` with this kernel's interpreter (the one the repo is installed in)."""
    return [sys.executable, *map(str, args)]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run(*args) -> None:
    """Run `python ARGS...`, streaming its output into the notebook; raise if it fails.

    Stopping the cell (Colab's stop button) stops the child too, so nothing keeps running unseen.
    """
    cmd = command(*args)
    print("$ python " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env())
    try:
        # newline="" keeps tqdm's '\r' so progress bars update in place instead of printing a line each
        for line in io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace", newline=""):
            print(line, end="", flush=True)
        code = proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        print("\nStopped.")
        raise
    if code != 0:
        raise RuntimeError(f"`python {' '.join(cmd[1:])}` failed with exit code {code}; the lines above say why")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args) -> subprocess.Popen:
    """Start `python ARGS...` in the background, its output going to a temporary file (a pipe could fill up
    and block it); read that with output()."""
    cmd = command(*args)
    print("$ python " + " ".join(cmd[1:]) + " &", flush=True)
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(), text=True)
    proc.log = log
    return proc


def output(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> int:
    """Poll `url` until it answers (returns the HTTP status); fail early if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering:\n{output(proc)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen, grace: float = 15.0) -> int:
    """Terminate a child (kill it if it ignores that); returns its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
