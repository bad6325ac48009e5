"""Shared test fixtures: paths to ../shared and tiny networks built in-process."""
import os
import pathlib

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

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
