"""Tiny stand-ins for the notebooks' CI mode (AFRO_FASHION_CI=1): a few drawn garment photos and a
small random generator, so both Colab notebooks run end to end on a CPU in a minute or two without
Drive, a GPU or a download."""
from __future__ import annotations

import pathlib

import numpy as np
import PIL.Image
import PIL.ImageDraw

TINY_GENERATOR = dict(z_dim=32, w_dim=32, c_dim=0, img_channels=3,
                      mapping_kwargs=dict(num_layers=2),
                      synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None))


def make_garment_photos(folder: str | pathlib.Path, count: int = 24, size: tuple[int, int] = (48, 64),
                        seed: int = 0) -> pathlib.Path:
    """Write `count` portrait JPEGs of simple dresses/tops in random wax-print-like colours.

    Portrait, not square, so dataset_tool's padding is exercised like on real product photos.
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rnd = np.random.RandomState(seed)
    w, h = size
    for i in range(count):
        backdrop = tuple(int(v) for v in rnd.randint(200, 256, 3))
        cloth = tuple(int(v) for v in rnd.randint(0, 200, 3))
        accent = tuple(int(v) for v in rnd.randint(0, 256, 3))
        top, waist, hem = int(h * 0.12), int(h * rnd.uniform(0.35, 0.5)), int(h * rnd.uniform(0.6, 0.95))
        flare, sleeve = w * rnd.uniform(0.05, 0.3), w * rnd.uniform(0.0, 0.2)
        shapes = [[(w * 0.3, top), (w * 0.7, top), (w * 0.65, waist), (w * 0.8 + flare / 2, hem),
                   (w * 0.2 - flare / 2, hem), (w * 0.35, waist)],
                  [(w * 0.3, top), (w * 0.3 - sleeve, top + sleeve * 2), (w * 0.3, top + sleeve)],
                  [(w * 0.7, top), (w * 0.7 + sleeve, top + sleeve * 2), (w * 0.7, top + sleeve)]]
        mask = PIL.Image.new("L", (w, h), 0)
        for shape in shapes:
            PIL.ImageDraw.Draw(mask).polygon(shape, fill=255)
        fabric = PIL.Image.new("RGB", (w, h), cloth)
        for stripe in range(waist + 3, hem - 1, int(rnd.randint(4, 9))):  # a printed band pattern on the skirt
            PIL.ImageDraw.Draw(fabric).line([(0, stripe), (w, stripe)], fill=accent, width=1)
        photo = PIL.Image.new("RGB", (w, h), backdrop)
        photo.paste(fabric, mask=mask)
        photo.save(folder / f"garment{i:03d}.jpg", quality=95)
    return folder


def make_tiny_network(path: str | pathlib.Path, resolution: int = 32, seed: int = 0) -> pathlib.Path:
    """Save a small random StyleGAN2 generator as a .safetensors snapshot (a stand-in for a trained one).

    Its w_avg is set to the mean of real mapping outputs, as training would leave it, so truncation
    behaves like on a trained network.
    """
    import torch

    from stylegan2.checkpoint import save_checkpoint
    from stylegan2.networks import Generator

    torch.manual_seed(seed)
    G = Generator(img_resolution=resolution, **TINY_GENERATOR).eval()
    with torch.no_grad():
        z = torch.randn(2048, G.z_dim)
        G.mapping.w_avg.copy_(G.mapping(z, None, truncation_psi=1.0)[:, 0].mean(0))
    return save_checkpoint(path, G_ema=G, meta={"note": "random CI stand-in network (AFRO_FASHION_CI=1)"})
