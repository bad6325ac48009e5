"""The model the studio opens: a given one, the bundled default, or a random demo network."""
from __future__ import annotations

import torch

from fashion_models import Model, load_model, model_from_bundle, resolve_model_file
from stylegan2.checkpoint import CheckpointError, NetworkBundle, weights_sha256

RANDOM_DEMO_BANNER = "random demo network, no trained model found"


def build_random_generator(resolution: int = 32, seed: int = 0, z_dim: int = 64, c_dim: int = 0,
                           base_shape=(4, 4)) -> torch.nn.Module:
    """A small randomly initialised generator: for tests and for a studio with no trained model."""
    from stylegan2.networks import Generator

    torch.manual_seed(seed)
    return Generator(z_dim=z_dim, c_dim=c_dim, w_dim=z_dim, img_resolution=resolution, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), base_shape=base_shape,
                     synthesis_kwargs=dict(channel_base=512, channel_max=64, num_fp16_res=0, conv_clamp=None))


def random_demo_network(resolution: int = 32, base_shape=(4, 4)) -> Model:
    G = build_random_generator(resolution, base_shape=base_shape)
    bundle = NetworkBundle(G_ema=G, sha256=weights_sha256(G.state_dict()), source="random demo")
    return model_from_bundle(bundle, name="random demo", banner=RANDOM_DEMO_BANNER)


def load_studio_network(spec: str | None, device: str = "cpu") -> Model:
    """Load `spec` (path, URL or registered name); with None use the bundled default or a random demo."""
    if spec is None:
        try:  # an install without the bundled model still opens, on a random network with a banner
            resolve_model_file("default")
            spec = "default"
        except CheckpointError:
            return random_demo_network()
    return load_model(spec, device)
