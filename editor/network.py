"""Finding the network the studio runs: a given one, the bundled default, or a random demo."""
from __future__ import annotations

import dataclasses
import pathlib

import torch
import yaml

from stylegan2.checkpoint import weights_sha256
from stylegan2.labels import LabelLayout, layout_from_meta

RANDOM_DEMO_BANNER = "random demo network, no trained model found"
CARD_FILE = "card.yaml"  # optional, next to a network file: what the studio says about the model


@dataclasses.dataclass
class ModelCard:
    """What the page says about the open model; `start` is a (class, seed) the card vouches for."""

    name: str
    summary: str = ""
    notice: str = ""       # e.g. "demonstration model": shown as a warning
    start: tuple[str | int | None, int] | None = None


@dataclasses.dataclass
class LoadedNetwork:
    G: torch.nn.Module
    sha256: str
    class_names: list[str] | None = None
    label_layout: LabelLayout | None = None   # multi-attribute networks: one picker per block
    banner: str = ""  # shown at the top of the studio when non-empty
    source: str = ""
    card: ModelCard | None = None

    def describe(self) -> ModelCard:
        """The card read at load time, or just the file name (a random demo network has no card)."""
        return self.card or ModelCard(name=pathlib.Path(self.source).name if self.source else "unnamed network")


def read_card(network_path: str, name: str, meta: dict | None = None) -> ModelCard:
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


def build_random_generator(resolution: int = 32, seed: int = 0, z_dim: int = 64, c_dim: int = 0,
                           base_shape=(4, 4)) -> torch.nn.Module:
    """A small randomly initialised generator: for tests and for a studio with no trained model."""
    from stylegan2.networks import Generator

    torch.manual_seed(seed)
    return Generator(z_dim=z_dim, c_dim=c_dim, w_dim=z_dim, img_resolution=resolution, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), base_shape=base_shape,
                     synthesis_kwargs=dict(channel_base=512, channel_max=64, num_fp16_res=0, conv_clamp=None))


def random_demo_network(resolution: int = 32, base_shape=(4, 4)) -> LoadedNetwork:
    G = build_random_generator(resolution, base_shape=base_shape)
    return LoadedNetwork(G=G, sha256=weights_sha256(G.state_dict()), banner=RANDOM_DEMO_BANNER, source="random demo")


def companion_files(network_path: str | None) -> tuple[pathlib.Path | None, pathlib.Path | None]:
    """directions.yaml and components.npz lying next to a local network file, if any.

    A model folder (like the bundled one) then opens in the studio with its own sliders, no flags needed.
    """
    if network_path is None or not pathlib.Path(network_path).is_file():
        return None, None
    folder = pathlib.Path(network_path).parent
    found = [folder / name for name in ("directions.yaml", "components.npz")]
    return tuple(path if path.is_file() else None for path in found)


def load_studio_network(spec: str | None) -> LoadedNetwork:
    """Load `spec` (path, URL or registered name); with None use the bundled default or a random demo."""
    from stylegan2 import checkpoint

    if spec is None:
        try:  # an install without the models/ folder still opens, on a random network with a banner
            checkpoint.resolve_network("default")
            spec = "default"
        except checkpoint.CheckpointError:
            return random_demo_network()
    bundle = checkpoint.load_network(spec)
    class_names = (bundle.meta or {}).get("class_names")
    name = str(spec) if str(spec) in checkpoint.NAMED_NETWORKS else pathlib.Path(bundle.source).name
    return LoadedNetwork(G=bundle.G_ema, sha256=bundle.sha256, class_names=class_names, source=bundle.source,
                         label_layout=layout_from_meta(bundle.meta),
                         card=read_card(bundle.source, name, bundle.meta))
