"""Render images from a trained network, with the official StyleGAN2-ADA generate.py conventions.

Examples:
  python generate.py --network default --seeds 0-7 --class all --trunc 0.7 --outdir out --grid
  python generate.py --network ffhq256 --seeds 42 --outdir out
  python generate.py --network run/network-snapshot-000100.safetensors --seeds 0-3,7 --class 2 --outdir out
  python generate.py --network my.pkl --projected-w projected_w.npz --outdir out
  python generate.py --network attrs.safetensors --seeds 0-7 --attr garment=dress --attr fabric=kente --outdir out
  python generate.py --network attrs.safetensors --seeds 0-3 --attr garment=all --attr colour=all --outdir out --grid
  python generate.py --network default --recipe design.png --outdir out     # a studio or export recipe
  python generate.py --network out/tuned.safetensors --projected-w out/projected_w.npz --recipe edit.png --outdir e
"""
from __future__ import annotations

import pathlib
import re
import sys

import click
import numpy as np
import torch

from design.model import LatentMissing, base_ws, design_ws
from design.recipe import Recipe, RecipeError, portable_design, read_recipe_file
from fashion_models import load_model
from projection import latent
from stylegan2.compiled import COMPILE_HELP, compile_generator
from stylegan2.labels import LabelLayoutError, attribute_labels, layout_from_meta
from stylegan2.render import class_choices, class_labels, map_to_w, resolve_class, seed_z, synthesize_uint8, to_uint8
from toolkit import cli
from toolkit.images import image_grid, to_pil


@cli.command()
@cli.network_option()
@cli.seeds_option()
@cli.trunc_option(default=1.0)
@click.option("--trunc-cutoff", "truncation_cutoff", type=int, default=None,
              help="Truncate only the first N W+ layers.")
@cli.trunc_centre_option()
@cli.class_option(help="Class index or name, e.g. 2 or dress, or 'all' for every class (conditional networks).")
@click.option("--attr", "attrs", multiple=True, metavar="NAME=VALUE",
              help="Multi-attribute networks: an attribute value, repeatable (--attr garment=dress --attr "
                   "fabric=kente); NAME=all renders every value; attributes not given are left 'any' (zeros).")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--projected-w", type=click.Path(exists=True, dir_okay=False),
              help="Render W+ codes from an .npz with key 'w' [N, num_ws, w_dim] instead of seeds "
                   "(project.py's noise maps in it are used too). With --recipe: each recipe's edits and mix "
                   "applied to the first code instead of the recipe's own base.")
@click.option("--recipe", "recipes", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Render a design from a recipe (.json, or a PNG the studio or `ganspace export` wrote); repeatable. "
                   "A photo design's latent is looked up as latents/<sha256>.npz beside the recipe, or in --latents.")
@click.option("--latents", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of latent files named <sha256>.npz (the studio's, or an unpacked export's latents/).")
@cli.outdir_option("Where to write the PNGs.")
@click.option("--grid", is_flag=True, help="Also write grid.png, a contact sheet of all images.")
@cli.device_option()
@click.option("--compile/--no-compile", "compile_", default=None, help=COMPILE_HELP)
def main(network, seeds, truncation_psi, truncation_cutoff, truncation_centre, class_idx, attrs, noise_mode,
         projected_w, recipes, latents, outdir, grid, device, compile_):
    """Write OUTDIR/seedNNNN.png for each seed (seedNNNN-CLASS.png with --class all, seedNNNN-VALUE.png with
    --attr NAME=all; projNN.png for each projected W+ code; NAME.png for each --recipe NAME.json/.png)."""
    if sum((seeds is not None, projected_w is not None or bool(recipes))) != 1:
        raise click.UsageError("give one of --seeds, --projected-w or --recipe (or --projected-w with --recipe)")
    net = load_model(network, device=device)
    G = net.generator()
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
    if recipes:
        for path in recipes:
            pixels = _render_recipe(G, net.sha256, pathlib.Path(path), latents, layout_from_meta(net.meta),
                                    ws[:1] if projected_w is not None else None)
            to_pil(pixels).save(out / f"{recipe_stem(pathlib.Path(path))}.png")
            written.append(pixels)
    elif projected_w is not None:
        compile_generator(G, compile_, images=len(ws))
        for idx, w in enumerate(ws):
            with torch.no_grad():
                pixels = to_uint8(G.synthesis(w.unsqueeze(0), noise_mode=noise_mode))[0]
            to_pil(pixels).save(out / f"proj{idx:02d}.png")
            written.append(pixels)
    else:
        classes = _labels_to_render(G, class_idx, attrs, net.meta)
        compile_generator(G, compile_, images=len(classes) * len(seeds))
        for suffix, label in classes:
            for seed in seeds:
                ws = map_to_w(G, seed_z(G, seed), label, truncation_psi, truncation_cutoff, truncation_centre)
                pixels = synthesize_uint8(G, ws, noise_mode)[0]
                to_pil(pixels).save(out / f"seed{seed:04d}{suffix}.png")
                written.append(pixels)
        if len(classes) > 1:   # one row per class or value; two NAME=all: rows x (last one's values x seeds)
            spread = [a.partition("=")[0].strip() for a in attrs if a.partition("=")[2].strip() == "all"]
            per_row = len(layout_from_meta(net.meta).block(spread[-1]).values) if len(spread) > 1 else 1
            grid_cols = len(seeds) * per_row

    if grid:
        to_pil(image_grid(written, cols=grid_cols)).save(out / "grid.png")
    click.echo(f"wrote {len(written)} image(s){' and grid.png' if grid else ''} to {out}")


def _labels_to_render(G, class_value: str | None, attrs, meta) -> list[tuple[str, torch.Tensor]]:
    """(file-name suffix, label) pairs from --attr (multi-attribute networks) or --class (one-hot ones)."""
    try:
        layout = layout_from_meta(meta)
        if layout is None and not attrs:
            return _classes_to_render(G, class_value, meta.get("class_names"))
        if layout is not None and class_value is not None:
            raise click.UsageError(f"this network is conditioned on attributes ({layout.describe()}): "
                                   f"use --attr NAME=VALUE instead of --class")
        if layout is not None and len(attrs) < len(layout.names) and \
                not (meta.get("training_options") or {}).get("attr_dropout"):
            click.echo("note: this network was trained without --attr-dropout, so attributes left 'any' (zeros) "
                       "mean what the data's unknown values taught it", err=True)
        return [(re.sub(r"[^\w.-]+", "_", suffix), class_labels(G, label, 1))
                for suffix, label in attribute_labels(layout, attrs)]
    except LabelLayoutError as e:
        raise click.BadParameter(str(e), param_hint="--attr") from e


def recipe_stem(path: pathlib.Path) -> str:
    """The output name of a recipe: 'design.recipe.json' -> 'design'; 'seed0002_colour_s+1.50.png' keeps its
    '1.50' (cutting at the first dot made s+1.50 and s+1.25 both 's+1', one overwriting the other)."""
    name = path.name
    for suffix in (".json", ".recipe", ".png"):
        name = name.removesuffix(suffix)
    return name


def _render_recipe(G, network_sha256: str, path: pathlib.Path, latents: str | None, layout=None,
                   projected: torch.Tensor | None = None) -> np.ndarray:
    """A recipe's image through the design model (`design.model.design_ws`), as the studio draws it;
    `projected` (W+ [1, num_ws, w_dim]) stands in for the recipe's own base (a photo projected by project.py)."""
    try:
        data = read_recipe_file(path)
        design = portable_design(data)
        if isinstance(data, dict) and data.get("network_sha256") not in (None, network_sha256):
            click.echo(f"warning: {path.name} was made with network sha256 {data['network_sha256'][:16]}…, "
                       f"this is {network_sha256[:16]}…", err=True)
        folders = [latent.LatentFolder(latents)] if latents else []
        folders.append(latent.LatentFolder(path.parent / "latents"))

        def stored(sha256: str) -> torch.Tensor:
            for folder in folders:
                if sha256 in folder:
                    return folder.load(sha256).ws(G)[:1]
            raise LatentMissing(sha256)

        def bases(base):   # `is`: the mix's second seed is another Base, even when it names the same seed
            return projected if projected is not None and base is design.base else base_ws(G, base, stored, layout)

        ws = design_ws(G, design, bases)
        recipe = Recipe.from_dict(data)
        torch.manual_seed(recipe.noise_seed)
        return synthesize_uint8(G, ws, noise_mode=recipe.noise_mode)[0]
    except (RecipeError, latent.LatentError, ValueError) as e:
        raise click.ClickException(f"{path}: {e}") from None


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
