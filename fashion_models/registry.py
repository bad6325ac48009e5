"""Short model names and where the bundled models live, in a source checkout and once installed."""
from __future__ import annotations

import os
import pathlib

from stylegan2.checkpoint import CheckpointError
from toolkit.download import download

_PACKAGE = pathlib.Path(__file__).resolve().parent
_TRANSFER_BASE = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
OFFICIAL_TRANSFER_NETWORKS = {  # the official StyleGAN2-ADA --resume shortcuts
    "ffhq256": _TRANSFER_BASE + "ffhq-res256-mirror-paper256-noaug.pkl",
    "ffhq512": _TRANSFER_BASE + "ffhq-res512-mirror-stylegan2-noaug.pkl",
    "ffhq1024": _TRANSFER_BASE + "ffhq-res1024-mirror-stylegan2-noaug.pkl",
    "celebahq256": _TRANSFER_BASE + "celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl",
    "lsundog256": _TRANSFER_BASE + "lsundog-res256-paper256-kimg100000-noaug.pkl",
}
# Short name -> URL, absolute path, or a path inside the bundled models folder.  `default` is the
# demonstration model (models/default/README.md) that the studio opens without arguments.
NAMED_NETWORKS: dict[str, str] = {"default": "default/network.safetensors", **OFFICIAL_TRANSFER_NETWORKS}


def bundled_dir() -> pathlib.Path:
    """The folder holding the bundled models: the repository's models/ in a checkout (editable install
    included), fashion_models/bundled/ in an installed wheel (pyproject.toml maps models/ there)."""
    installed = _PACKAGE / "bundled"
    return installed if installed.is_dir() else _PACKAGE.parent / "models"


def resolve_model_file(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """A short name, URL or path -> a local file (downloading into the cache when needed)."""
    text = os.fspath(spec)
    if text in NAMED_NETWORKS:
        target = NAMED_NETWORKS[text]
        if target.startswith(("http://", "https://")):
            return download(target, cache_dir=cache_dir)
        path = pathlib.Path(target).expanduser()
        path = path if path.is_absolute() else bundled_dir() / path
        if not path.is_file():
            raise CheckpointError(f"network '{text}' is registered as {path}, but that file does not exist")
        return path
    if text.startswith(("http://", "https://")):
        return download(text, cache_dir=cache_dir)
    path = pathlib.Path(text).expanduser()
    if path.is_file():
        return path
    raise CheckpointError(
        f"cannot find network '{text}': give a .safetensors/.pkl path, an http(s) URL, "
        f"or one of the names {', '.join(sorted(NAMED_NETWORKS))}"
    )
