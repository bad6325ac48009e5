"""The Colab notebooks, executed end to end in CI mode (AFRO_FASHION_CI=1: tiny data and network, CPU),
then judged by what they wrote; plus their committed form and the helpers they run CLIs with."""
import json
import re
import socket
import sys

import numpy as np
import PIL.Image
import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = REPO / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import nbtools  # noqa: E402  (lives beside the notebooks, which import it the same way)

KERNEL = "afro-fashion-ci"


@pytest.fixture
def ci_kernel(tmp_path, monkeypatch):
    """A kernel spec running this interpreter (the repo's venv), visible only to this test, plus CI mode."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Afro Fashion GAN CI", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("AFRO_FASHION_CI", "1")
    monkeypatch.setenv("AFRO_FASHION_CI_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    return tmp_path / "work"


def execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def text_of(nb, marker: str) -> str:
    """All stream text printed by the code cell whose source contains `marker`."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def images_shown(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


# ----------------------------------------------------------------------------- committed form

@pytest.mark.parametrize("name", ["train_colab.ipynb", "directions_colab.ipynb"])
def test_committed_without_outputs_and_every_step_explained(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "AFRO_FASHION_CI" in code[0].source, "the parameters cell must come first"
    for previous, cell in zip(nb.cells, nb.cells[1:]):
        if cell.cell_type == "code":
            assert previous.cell_type == "markdown", f"unexplained code cell: {cell.source[:60]!r}"
            assert re.search(r"instant|second|minute|hour", previous.source), previous.source
    assert f"colab.research.google.com/github/YOUR-ORG/afro-fashion-gan/blob/main/notebooks/{name}" in nb.cells[0].source


def parameters(name: str, ci: bool, monkeypatch) -> dict:
    """Run a notebook's parameters cell (plain Python, no side effects) and return its variables."""
    if ci:
        monkeypatch.setenv("AFRO_FASHION_CI", "1")
    else:
        monkeypatch.delenv("AFRO_FASHION_CI", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    namespace = {}
    exec(next(c.source for c in nb.cells if c.cell_type == "code"), namespace)
    return namespace


def test_colab_parameters_fine_tune_ffhq_with_the_t4_preset_on_drive(monkeypatch):
    colab = parameters("train_colab.ipynb", ci=False, monkeypatch=monkeypatch)
    assert (colab["CFG"], colab["RESUME_FROM"], colab["USE_DRIVE"]) == ("t4", "ffhq256", True)
    assert colab["DATASET"].startswith("/content/drive/") and colab["RUNS"].startswith("/content/drive/")
    assert "--cpu" not in colab["TRAIN_ARGS"]
    ci = parameters("train_colab.ipynb", ci=True, monkeypatch=monkeypatch)
    assert (ci["RESUME_FROM"], ci["USE_DRIVE"], ci["METRICS"], ci["RESOLUTION"]) == ("", False, "none", 32)
    assert "--cpu" in ci["TRAIN_ARGS"]
    studio = parameters("directions_colab.ipynb", ci=False, monkeypatch=monkeypatch)
    assert (studio["SHARE"], studio["NETWORK"], studio["SAMPLES"]) == (True, "latest", 1_000_000)
    assert parameters("directions_colab.ipynb", ci=True, monkeypatch=monkeypatch)["SHARE"] is False


# ----------------------------------------------------------------------------- helpers

def test_run_streams_output_and_raises_on_failure(capsys):
    nbtools.run("-c", "print('hello from the child')")
    assert "hello from the child" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="exit code 3"):
        nbtools.run("-c", "import sys; print('boom'); sys.exit(3)")
    assert "boom" in capsys.readouterr().out


def test_wait_for_http_fails_fast_when_the_server_dies():
    proc = nbtools.start("-c", "print('cannot start: port taken'); raise SystemExit(2)")
    with pytest.raises(RuntimeError, match="port taken"):
        nbtools.wait_for_http(f"http://127.0.0.1:{nbtools.free_port()}/", proc, timeout=30)
    assert nbtools.stop(proc) == 2


def test_start_wait_stop_a_real_server():
    port = nbtools.free_port()
    proc = nbtools.start("-m", "http.server", port, "--bind", "127.0.0.1")
    try:
        assert nbtools.wait_for_http(f"http://127.0.0.1:{port}/", proc, timeout=60) == 200
    finally:
        nbtools.stop(proc)
    assert proc.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_train_notebook_end_to_end(ci_kernel):
    from fashion_models import load_model

    nb = execute("train_colab.ipynb")
    work = ci_kernel
    assert len(list((work / "photos").glob("*.jpg"))) == 24
    assert (work / "dataset-32.zip").is_file()
    (run,) = (work / "runs").iterdir()
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [round(s["kimg"], 3) for s in stats] == [0.008, 0.016, 0.024, 0.032]
    assert "Resuming exactly from" in (run / "log.txt").read_text()  # the "train longer" cell continued the run
    snap = run / "network-snapshot-000000.032.safetensors"
    net = load_model(snap)
    assert (net.G_ema.img_resolution, net.G_ema.z_dim) == (32, 32) and net.meta["kimg"] == pytest.approx(0.032)

    fakes = np.asarray(PIL.Image.open(run / "fakes000000.032.png"))
    assert fakes.shape == (256, 256, 3) and fakes.std() > 1  # an 8x8 grid of 32 px images, not blank
    assert str(run / "fakes000000.032.png") in text_of(nb, "display(Image(filename=str(fakes)")
    table = text_of(nb, "stats.jsonl")
    assert [line.split()[0] for line in table.splitlines()[1:5]] == ["0.008", "0.016", "0.024", "0.032"]
    assert len(list((work / "samples").glob("seed*.png"))) == 8
    assert min(PIL.Image.open(work / "samples" / "grid.png").size) >= 3 * 32  # 8 images need 3 x 3 cells
    assert images_shown(nb) == 2  # fake grid and samples grid


@pytest.mark.slow
def test_directions_notebook_end_to_end(ci_kernel):
    from ganspace.components import load_components
    from ganspace.directions import load_directions
    from design.recipe import read_recipe
    from fashion_models import load_model

    nb = execute("directions_colab.ipynb")
    work, gan = ci_kernel, ci_kernel / "ganspace"
    network = work / "tiny-network.safetensors"
    sha = load_model(network).sha256

    comps = load_components(gan / "components.npz")
    assert comps.comp.shape == (8, 32)
    np.testing.assert_allclose(np.linalg.norm(comps.comp, axis=1), 1, atol=1e-5)
    assert sorted(p.name for p in (gan / "sheets").glob("*.png")) == [
        "comp000_all.png", "comp000_coarse.png", "comp001_all.png", "comp001_coarse.png"]
    assert (gan / "hints.csv").read_text().count("\n") >= 2

    directions = load_directions(gan / "directions.yaml", network_sha256=sha)
    assert [d.name for d in directions.directions] == ["silhouette", "colour"]
    assert "OK: 2 directions" in text_of(nb, "'validate'")

    manifest = json.loads((work / "export" / "manifest.json").read_text())
    assert len(manifest) == 2 * 2 * 3  # directions x seeds x strengths
    assert sorted(p.name for p in (work / "export").glob("sheet_*.png")) == ["sheet_colour.png", "sheet_silhouette.png"]
    assert len(list((work / "export").glob("sweep_*.gif"))) == 2
    recipes = [read_recipe(p) for p in (work / "export").rglob("*.png") if not p.name.startswith("sheet_")]
    assert len(recipes) == 12 and all(r is not None for r in recipes)

    studio = text_of(nb, "'-m', 'editor'")
    port = int(re.search(r"answered HTTP 200 on port (\d+)", studio).group(1))
    with pytest.raises(OSError):  # the cell stopped the server it started
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
