"""Shared test fixtures: paths to ../shared and tiny networks built in-process."""
import contextlib
import os
import pathlib

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# CLIs compile the generator by default where a compiler exists; in tests that would be a minute per
# process. tests/test_compiled.py asks for compilation explicitly.
os.environ.setdefault("AFRO_FASHION_COMPILE", "0")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OFFICIAL = SHARED / "fixtures" / "official"
CLOTHING = SHARED / "data" / "clothing-dataset-small"


def require(path: pathlib.Path) -> pathlib.Path:
    """Skip the calling test cleanly when a ../shared resource is absent."""
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is absent)")
    return path


@pytest.fixture
def one_thread():
    """Tiny convolutions run 10-50x faster on one thread than with OpenMP threads fighting for 2 busy cores.

    Also undoes deterministic mode, which a training run may switch on for the whole process.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def recorded_graphs(monkeypatch):
    """stylegan2.compiled's backend swapped for one that records dynamo's graphs and runs them as traced:
    the compiled path's wiring in seconds, without a C++ compile (inductor's numerics: test_compiled.py).

    Dynamo's caches are emptied first: every network of the suite shares the same code objects, and after
    `recompile_limit` (8) graphs of one of them dynamo runs it eager, so a test would see no graph because
    of the tests before it."""
    import torch._dynamo

    from stylegan2 import compiled

    if compiled.missing_toolchain("cpu"):
        pytest.skip(compiled.missing_toolchain("cpu"))
    graphs = []

    def recording_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    monkeypatch.setattr(compiled, "BACKEND", recording_backend)
    yield graphs
    torch._dynamo.reset()


def assert_within_one_level(actual, expected, max_share: float = 0.01):
    """Our pixel promise across machines: every level within 1 of the reference, and only a few pixels off.

    Exact equality would test one CPU's float rounding: another CPU may round a value that sits on a
    half level the other way (seen: 187 for 188 on one pixel of an official fixture).
    """
    import numpy as np

    actual, expected = np.asarray(actual).astype(int), np.asarray(expected).astype(int)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    difference = np.abs(actual - expected)
    share = float((difference > 0).mean())
    assert difference.max() <= 1, f"max difference {difference.max()} levels (promise: 1)"
    assert share <= max_share, f"{share:.2%} of values differ by one level (promise: at most {max_share:.0%})"


def assert_differs_beyond_rounding(actual, expected):
    """The opposite promise: an edit moved the picture by more than a rounding difference."""
    import numpy as np

    difference = np.abs(np.asarray(actual).astype(int) - np.asarray(expected).astype(int))
    assert difference.max() > 1, "the images differ by at most one level: the edit did nothing visible"


def image_folder(path: pathlib.Path, images) -> pathlib.Path:
    """A folder of PNGs (00.png, 01.png, ...) from uint8 [N, C, H, W] arrays: a tiny data set."""
    import PIL.Image

    path.mkdir(parents=True)
    for i, pixels in enumerate(images):
        PIL.Image.fromarray(pixels.transpose(1, 2, 0)).save(path / f"{i:02d}.png")
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a test server."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(studio, **launch_kwargs):
    """(demo, url) of `studio` served on a free local port, closed on the way out."""
    from editor.app import launch

    demo, url = launch(studio, port=free_port(), block=False, **launch_kwargs)
    try:
        yield demo, url
    finally:
        demo.close()


def tiny_generator(res: int = 16, dim: int = 16, c_dim: int = 0, *, seed: int | None = 0, layers: int = 2,
                   channel_base: int = 256, channel_max: int = 16, eval_mode: bool = True,
                   noise_strength: float | None = None, base_shape=(4, 4), **synthesis):
    """The tests' random tiny Generator: `res` px, z = w = `dim`, `layers` mapping layers, seeded by `seed`.

    `noise_strength` makes the noise inputs matter (a fresh network has 0); other keywords go to the
    synthesis network (e.g. num_fp16_res=0, conv_clamp=None); `eval_mode=False` leaves it in training mode;
    `base_shape` (4, 3) makes it a portrait.
    """
    import torch

    from stylegan2.networks import Generator

    if seed is not None:
        torch.manual_seed(seed)
    G = Generator(z_dim=dim, c_dim=c_dim, w_dim=dim, img_resolution=res, img_channels=3, base_shape=base_shape,
                  mapping_kwargs=dict(num_layers=layers),
                  synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, **synthesis))
    if noise_strength is not None:
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(noise_strength)
    return G.eval() if eval_mode else G


# train.py flags of a tiny 16 px run on the CPU (end-to-end training tests)
TINY = ["--cbase", "128", "--cmax", "16", "--zdim", "16", "--map", "2", "--batch", "4", "--metrics", "none",
        "--workers", "0", "--cpu", "--tick", "0.008"]


def make_dataset(root: pathlib.Path, n=8, res=16, classes=0, seed=0, width=None) -> pathlib.Path:
    """Random-noise images (easy for D to memorise) with optional dataset.json labels; `width` < res: portrait."""
    import json

    import numpy as np
    import PIL.Image

    root.mkdir(parents=True, exist_ok=True)
    rnd = np.random.RandomState(seed)
    labels = []
    for i in range(n):
        PIL.Image.fromarray(rnd.randint(0, 256, size=(res, width or res, 3), dtype=np.uint8)).save(root / f"{i:04d}.png")
        labels.append([f"{i:04d}.png", i % max(classes, 1)])
    if classes:
        (root / "dataset.json").write_text(json.dumps({"labels": labels, "class_names": [f"k{j}" for j in range(classes)]}))
    return root


def only_run(outdir: pathlib.Path) -> pathlib.Path:
    (run,) = [d for d in outdir.iterdir() if d.is_dir()]
    return run


def read_stats(run):
    import json

    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def make_studio(folder: pathlib.Path, resolution: int = 16, base_shape=(4, 4)):
    """A random `resolution` px studio with 6 hand-made orthonormal components and two labelled directions
    (16 px: num_ws = 6, coarse 0-1, middle 2-3, fine 4-5); `base_shape` (4, 3) makes it a 16x12 portrait."""
    import numpy as np

    from editor.network import random_demo_network
    from editor.studio import Studio
    from ganspace.components import Components

    network = random_demo_network(resolution, base_shape)
    rng = np.random.RandomState(0)
    comp = np.linalg.qr(rng.randn(network.G_ema.w_dim, 6))[0].T
    components = Components(comp, rng.randn(network.G_ema.w_dim) * 0.1, np.linspace(2.0, 1.0, 6), np.full(6, 1 / 6),
                            {"num_ws": int(network.G_ema.num_ws)})
    components.save(folder / "components.npz")
    studio = Studio(network, folder / "directions.yaml", folder / "components.npz")
    studio.label_component(0, "sleeves", "short to long", "+ = longer", "coarse")
    studio.label_component(1, "colour", "", "+ = warmer", "fine")
    return studio


def attribute_layout():
    """A small multi-attribute label layout (garment 3, fabric 2, sleeve 2 values: 7 numbers)."""
    from stylegan2.labels import LabelLayout

    return LabelLayout.build([("garment", ["dress", "skirt", "top"], None), ("fabric", ["ankara", "kente"], None),
                              ("sleeve", ["short", "long"], ["short sleeves", "long sleeves"])])


def make_attribute_studio(folder: pathlib.Path, resolution: int = 16):
    """A random multi-attribute studio (attribute_layout's blocks) without directions."""
    from editor.network import build_random_generator
    from editor.studio import Studio
    from fashion_models import Model
    from stylegan2.checkpoint import weights_sha256

    layout = attribute_layout()
    G = build_random_generator(resolution, c_dim=layout.dim)
    network = Model(G_ema=G, sha256=weights_sha256(G.state_dict()), meta={"label_layout": layout.to_json()},
                    source="attributes")
    return Studio(network, folder / "directions.yaml")


@pytest.fixture(scope="session")
def inception_file() -> pathlib.Path:
    """The FID Inception-v3 archive, or a skip that says how to get it (CI fetches it first)."""
    from training.inception import FETCH_HINT, find_inception

    path = find_inception()
    if path is None or not path.is_file():
        pytest.skip(f"Inception-v3 weights absent: {FETCH_HINT}")
    return path


@pytest.fixture(scope="session")
def inception(inception_file):
    """Our Inception-v3 with the real weights (loaded once per session: 87 MB)."""
    from training.inception import load_inception

    return load_inception(inception_file)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A tiny studio per test module (modules that need another one define their own `studio`)."""
    return make_studio(tmp_path_factory.mktemp("studio"))


@pytest.fixture(scope="module")
def app(studio):
    """The Gradio wiring over `studio`, built but not launched: tests call its handlers directly."""
    from editor.app import StudioApp

    app = StudioApp(studio)
    app.build()
    return app
