"""Render images from a trained network, with the official StyleGAN2-ADA generate.py conventions.

Examples:
  python generate.py --network default --seeds 0-7 --class all --trunc 0.7 --outdir out --grid
  python generate.py --network ffhq256 --seeds 42 --outdir out
  python generate.py --network run/network-snapshot-000100.safetensors --seeds 0-3,7 --class 2 --outdir out
  python generate.py --network my.pkl --projected-w projected_w.npz --outdir out
"""
from __future__ import annotations

import pathlib
import re
import sys

import click
import numpy as np
import torch

from projection import latent
from stylegan2.checkpoint import load_network
from stylegan2.compiled import COMPILE_HELP, compile_generator
from stylegan2.legacy import NetworkLoadError
from stylegan2.render import class_choices, class_labels, resolve_class, seed_z, to_uint8
from toolkit.images import image_grid, to_pil
from toolkit.parsing import parse_seed_list


def _seeds_option(ctx, param, value):
    return None if value is None else parse_seed_list(value, error=click.BadParameter)


@click.command(context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--network", "network_spec", required=True,
              help="Network: .safetensors or official .pkl path, http(s) URL, or a registered name such as ffhq256.")
@click.option("--seeds", callback=_seeds_option, help="Seeds, e.g. '0-3,7' (inclusive ranges).")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi: 1 = full variety, lower = closer to the average image.")
@click.option("--trunc-cutoff", "truncation_cutoff", type=int, default=None,
              help="Truncate only the first N W+ layers.")
@click.option("--class", "class_idx", default=None,
              help="Class index or name, e.g. 2 or dress, or 'all' for every class (conditional networks).")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--projected-w", type=click.Path(exists=True, dir_okay=False),
              help="Render W+ codes from an .npz with key 'w' [N, num_ws, w_dim] instead of seeds "
                   "(project.py's noise maps in it are used too).")
@click.option("--outdir", type=click.Path(file_okay=False), required=True, help="Where to write the PNGs.")
@click.option("--grid", is_flag=True, help="Also write grid.png, a contact sheet of all images.")
@click.option("--device", default="cuda" if torch.cuda.is_available() else "cpu", show_default=True)
@click.option("--compile/--no-compile", "compile_", default=None, help=COMPILE_HELP)
def main(network_spec, seeds, truncation_psi, truncation_cutoff, class_idx, noise_mode, projected_w, outdir, grid,
         device, compile_):
    """Write OUTDIR/seedNNNN.png for each seed (seedNNNN-CLASS.png with --class all; projNN.png for each
    projected W+ code)."""
    if seeds is None and projected_w is None:
        raise click.UsageError("give --seeds or --projected-w")
    try:
        net = load_network(network_spec, device=device)
    except NetworkLoadError as exc:
        raise click.ClickException(str(exc)) from None
    G = net.G_ema
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[np.ndarray] = []
    grid_cols = None  # image_grid's square default, or one row per class with --class all

    if projected_w is not None:
        try:  # the noise maps project.py saved beside 'w' redraw its proj.png exactly (noise_mode const)
            projected = latent.load(projected_w)
            ws, G = projected.ws(G), projected.generator(G)
        except latent.LatentError as e:
            raise click.ClickException(f"{projected_w}: {e}") from None
        compile_generator(G, compile_, images=len(ws))
        for idx, w in enumerate(ws):
            with torch.no_grad():
                pixels = to_uint8(G.synthesis(w.unsqueeze(0), noise_mode=noise_mode))[0]
            to_pil(pixels).save(out / f"proj{idx:02d}.png")
            written.append(pixels)
    else:
        classes = _classes_to_render(G, class_idx, net.meta.get("class_names"))
        compile_generator(G, compile_, images=len(classes) * len(seeds))
        for suffix, label in classes:
            for seed in seeds:
                with torch.no_grad():
                    img = G(seed_z(G, seed), label, truncation_psi=truncation_psi,
                            truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)
                pixels = to_uint8(img)[0]
                to_pil(pixels).save(out / f"seed{seed:04d}{suffix}.png")
                written.append(pixels)
        if len(classes) > 1:
            grid_cols = len(seeds)

    if grid:
        to_pil(image_grid(written, cols=grid_cols)).save(out / "grid.png")
    click.echo(f"wrote {len(written)} image(s){' and grid.png' if grid else ''} to {out}")


def _classes_to_render(G, value: str | None, class_names) -> list[tuple[str, torch.Tensor]]:
    """(file-name suffix, one-hot label) pairs: a single unsuffixed one, or every class for `--class all`."""
    if value == "all":
        if not G.c_dim:
            raise click.UsageError("--class all needs a conditional network; this one is unconditional")
        names = class_names if class_names and len(class_names) == G.c_dim else [f"class{i}" for i in range(G.c_dim)]
        return [("-" + re.sub(r"[^\w.-]+", "_", name), class_labels(G, i, 1)) for i, name in enumerate(names)]
    try:
        class_idx = resolve_class(value, class_names)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--class") from e
    if G.c_dim and class_idx is None:
        raise click.UsageError(f"this network is conditional: pass --class with "
                               f"{class_choices(G.c_dim, class_names, allow_all=True)}")
    if not G.c_dim and class_idx is not None:
        click.echo("warning: --class is ignored for an unconditional network", err=True)
        class_idx = None
    try:
        return [("", class_labels(G, class_idx, 1))]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--class") from e


if __name__ == "__main__":
    sys.exit(main())
