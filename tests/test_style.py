"""The tree passes ruff with the configuration in pyproject.toml (line length 120, pyflakes, pycodestyle, imports)."""
import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO


def test_the_tree_passes_ruff():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed: pip install -e '.[test]' brings it")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(REPO)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
