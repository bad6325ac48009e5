"""Convert a network (official .pkl, our .safetensors, URL or name) into our safetensors checkpoint.

    python -m stylegan2.convert network-snapshot.pkl fashion.safetensors
    python -m stylegan2.convert ffhq256 ffhq256-g.safetensors --g-ema-only --fp16

Converting once means later loads need no pickle at all, and ``--g-ema-only --fp16`` makes a
small file for sharing a model that is only used to generate (about 1/6 of a full snapshot).
"""
from __future__ import annotations

import pathlib

import click
import torch

from fashion_models import load_model
from stylegan2.checkpoint import save_checkpoint
from toolkit.download import file_sha256
from stylegan2.legacy import NetworkLoadError
from toolkit import cli


@cli.command()
@click.argument("source")
@click.argument("out", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--fp16", is_flag=True, help="Store weights as float16 (half the size; loads back as float32).")
@click.option("--g-ema-only", is_flag=True, help="Keep only G_ema, the generator used for inference.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it already exists.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Download cache for URL/name sources (default: $AFRO_FASHION_CACHE or ~/.cache/afro-fashion-gan).")
def main(source: str, out: pathlib.Path, fp16: bool, g_ema_only: bool, overwrite: bool, cache_dir: str | None):
    """Convert SOURCE (a .pkl/.safetensors path, an http(s) URL or a network name such as ffhq256)
    into the checkpoint OUT (.safetensors)."""
    if out.suffix != ".safetensors":
        raise click.BadParameter(f"'{out}' should end in .safetensors", param_hint="OUT")
    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} already exists; pass --overwrite to replace it")
    try:
        bundle = load_model(source, cache_dir=cache_dir)
    except (NetworkLoadError, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    nets = {"G_ema": bundle.G_ema} if g_ema_only else {"G": bundle.G, "D": bundle.D, "G_ema": bundle.G_ema}
    meta = {**bundle.meta, "converted_from": {"source": str(source), "sha256": bundle.sha256}}
    save_checkpoint(out, **nets, meta=meta, dtype=torch.float16 if fp16 else torch.float32)

    written = [name for name, module in nets.items() if module is not None]
    G = bundle.G_ema
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {'float16' if fp16 else 'float32'})")
    click.echo(f"  networks: {', '.join(written)}")
    click.echo(f"  generator: {G.img_resolution}x{G.img_resolution}, {G.img_channels} channels, "
               f"c_dim {G.c_dim}, z_dim {G.z_dim}, w_dim {G.w_dim}, {G.num_ws} ws")
    if bundle.augment_p is not None:
        click.echo(f"  augment p: {bundle.augment_p:.4f}")
    click.echo(f"  sha256: {file_sha256(out)}")


if __name__ == "__main__":
    main()
