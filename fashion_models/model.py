"""The model type and its loader: networks from any source plus the companion files beside them."""
from __future__ import annotations

import dataclasses
import os
import pathlib

import torch
import yaml

from fashion_models.registry import NAMED_NETWORKS, resolve_model_file
from stylegan2.checkpoint import CheckpointError, NetworkBundle, load_network_file
from toolkit.download import DownloadError
from stylegan2.labels import LabelLayout, layout_from_meta

CARD_FILE = "card.yaml"  # optional, next to a network file: what the studio says about the model
DIRECTIONS_FILE, COMPONENTS_FILE = "directions.yaml", "components.npz"


@dataclasses.dataclass
class ModelCard:
    """What the page says about the open model; `start` is a (class, seed) the card vouches for."""

    name: str
    summary: str = ""
    notice: str = ""       # e.g. "demonstration model": shown as a warning
    start: tuple[str | int | None, int] | None = None


@dataclasses.dataclass
class Model(NetworkBundle):
    """What a network file holds (G_ema, G, D, training state, sha256) plus what makes it a usable model:
    its name, labelled directions, components and card, found beside the file."""

    name: str = ""
    directions_path: pathlib.Path | None = None
    components_path: pathlib.Path | None = None
    card: ModelCard | None = None
    banner: str = ""  # a warning the studio shows at the top (e.g. a random demo network)

    @property
    def class_names(self) -> list[str] | None:
        return (self.meta or {}).get("class_names")

    @property
    def label_layout(self) -> LabelLayout | None:
        """Multi-attribute networks: the label's blocks (one picker each in the studio); None for classes."""
        return layout_from_meta(self.meta)

    @property
    def resolution(self) -> int:
        return int(self.G_ema.img_resolution)

    def generator(self) -> torch.nn.Module:
        """G_ema ready to render: eval mode, no gradients."""
        return self.G_ema.eval().requires_grad_(False)

    def describe(self) -> ModelCard:
        """The card read at load time, or just the model's name."""
        return self.card or ModelCard(name=self.name or pathlib.Path(self.source).name or "unnamed network")


def companion_files(network_path: str | os.PathLike | None) -> tuple[pathlib.Path | None, pathlib.Path | None]:
    """directions.yaml and components.npz lying next to a local network file, if any.

    A model folder (like the bundled one) then opens with its own sliders, no flags needed.
    """
    if network_path is None or not pathlib.Path(network_path).is_file():
        return None, None
    folder = pathlib.Path(network_path).parent
    found = [folder / name for name in (DIRECTIONS_FILE, COMPONENTS_FILE)]
    return tuple(path if path.is_file() else None for path in found)


def read_card(network_path: str | os.PathLike, name: str, meta: dict | None = None) -> ModelCard:
    """`card.yaml` beside the network file when present (name, summary, notice, representative), else
    a card from the checkpoint's metadata. A broken card file is reported as a summary, never fatal."""
    path = pathlib.Path(network_path).with_name(CARD_FILE)
    summary = f"trained {float(meta['kimg']):g} kimg" if meta and isinstance(meta.get("kimg"), (int, float)) else ""
    if not path.is_file():
        return ModelCard(name=name, summary=summary)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        start = (data.get("representative") or [None])[0]
        return ModelCard(name=str(data.get("name") or name), summary=str(data.get("summary") or summary),
                         notice=str(data.get("notice") or ""),
                         start=None if not isinstance(start, dict) else (start.get("class"), int(start["seed"])))
    except (yaml.YAMLError, OSError, AttributeError, KeyError, TypeError, ValueError) as error:
        return ModelCard(name=name, summary=f"({path} could not be read: {error})")


def model_from_bundle(bundle: NetworkBundle, name: str = "", banner: str = "") -> Model:
    """A Model around networks already in memory, with the companions beside ``bundle.source`` (if a file)."""
    directions, components = companion_files(bundle.source or None)
    name = name or pathlib.Path(bundle.source).name
    is_file = bool(bundle.source) and pathlib.Path(bundle.source).is_file()
    card = read_card(bundle.source, name, bundle.meta) if is_file else None
    fields = {field.name: getattr(bundle, field.name) for field in dataclasses.fields(NetworkBundle)}
    return Model(**fields, name=name, directions_path=directions, components_path=components, card=card,
                 banner=banner)


def load_model(spec: str | os.PathLike, device: str | torch.device = "cpu",
               cache_dir: str | os.PathLike | None = None) -> Model:
    """Load a model from a .safetensors/.pkl path, an http(s) URL or a name in NAMED_NETWORKS.

    Every failure is a NetworkLoadError (a CheckpointError for a missing or unreadable file or a failed
    download) whose message is complete, so command-line tools print one line instead of a traceback.
    """
    try:
        path = resolve_model_file(spec, cache_dir)
    except DownloadError as exc:
        raise CheckpointError(str(exc)) from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read network {os.fspath(spec)!r}: {exc}") from exc
    text = os.fspath(spec)
    return model_from_bundle(load_network_file(path, device), name=text if text in NAMED_NETWORKS else path.name)
