"""Components and a few labelled directions for a network that has none yet.

Why: a studio on the random demo network (or in tests) should still show
every panel working: sliders, components, labelling. The components are a
real PCA of the network's W (ganspace.fit); the labels are placeholders.
"""
from __future__ import annotations

import pathlib

from fashion_models import Model
from ganspace.directions import Direction, append_direction
from ganspace.fit import WSampler, find
from ganspace.layers import parse_layers

DEMO_DIRECTIONS = (  # (component, name, group, sign)
    (0, "shape (demo)", "coarse", "+ = first principal shape change"),
    (1, "texture (demo)", "middle", "+ = second principal change"),
    (2, "colour (demo)", "fine", "+ = third principal change"),
)


def write_demo_files(network: Model, folder: str | pathlib.Path, num_components: int = 12,
                     num_samples: int = 4000) -> tuple[pathlib.Path, pathlib.Path]:
    """Fit components of `network` into folder/components.npz and label three of them in
    folder/directions.yaml; returns (directions_path, components_path)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    components_path, directions_path = folder / "components.npz", folder / "directions.yaml"
    G = network.G_ema
    components = find("pca", G, min(num_components, G.w_dim), WSampler(G, batch_size=1000), num_samples=num_samples,
                      stdev_samples=num_samples, network_sha256=network.sha256)
    components.save(components_path)
    for index, name, group, sign in DEMO_DIRECTIONS[:components.num_components]:
        append_direction(directions_path, Direction(
            name=name, description="placeholder label on a principal component", component=index,
            vector=components.comp[index], layers=parse_layers(group, G.num_ws), sigma=float(components.stdev[index]),
            mean=components.mean, sign=sign), network_sha256=network.sha256, components_path=components_path.resolve())
    return directions_path, components_path
