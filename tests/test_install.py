"""A non-editable install (`pip install .`) works on its own: the bundled model ships inside the wheel, so
`--network default` opens and renders from outside the repository. Offline: the wheel is built with this
venv's setuptools and installed into a fresh venv that borrows this venv's packages for the dependencies."""
from __future__ import annotations

import os
import pathlib
import shutil
import site
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, assert_within_one_level

NOT_SHIPPED = ("tests", "benchmarks", "notebooks", "docs", ".venv", ".git", "build", "__pycache__", "*.egg-info",
               "default-run", "runs", "out", ".cache", "data")
RENDER = """
import sys, generate, fashion_models
print(fashion_models.resolve_model_file("default"), generate.__file__, sep="\\n")
generate.main(["--network", "default", "--seeds", "6", "--class", "longsleeve", "--trunc", "0.7",
               "--outdir", "out"], standalone_mode=False)
"""


def run(*args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_a_wheel_install_renders_the_default_model_from_outside_the_repository(tmp_path):
    """~15-30 s (a wheel build, a venv, one torch import): the only proof that an installed copy finds its
    bundled model; the old wheel had no models/ (it loaded from the repository root, which pip does not copy)."""
    source = shutil.copytree(REPO, tmp_path / "src", ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    packages = {str(p.parent.relative_to(source)) for p in source.rglob("__init__.py")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run(*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"),
        str(source))
    wheel = next((tmp_path / "dist").glob("*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in shipped)
    assert not missing, f"packages left out of the wheel (list them in pyproject.toml): {missing}"
    assert "fashion_models/bundled/default/network.safetensors" in shipped

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    inside = pathlib.Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    (inside / "borrowed.pth").write_text(site.getsitepackages()[0] + "\n")  # torch, click... (and pip) from here
    run(str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile", str(wheel))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    model_file, generate_file = run(str(python), "-c", RENDER, cwd=elsewhere, env=env).splitlines()[:2]
    assert pathlib.Path(model_file).is_relative_to(venv) and pathlib.Path(generate_file).is_relative_to(venv)
    installed = np.asarray(Image.open(elsewhere / "out" / "seed0006.png"))

    import generate
    from click.testing import CliRunner

    result = CliRunner().invoke(generate.main, ["--network", "default", "--seeds", "6", "--class", "longsleeve",
                                                "--trunc", "0.7", "--outdir", str(tmp_path / "here")])
    assert result.exit_code == 0, result.output
    assert_within_one_level(installed, np.asarray(Image.open(tmp_path / "here" / "seed0006.png")))
    assert installed.shape == (64, 64, 3) and installed.std() > 10
