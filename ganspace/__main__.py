"""python -m ganspace: find, look at, label-check and export directions of a generator.

\b
  fit       principal directions of W (or SeFa) -> components.npz
  sheets    one PNG per component and layer group, to name directions by eye
  hints     table of measured image changes per component, with suggested labels
  template  a commented starting directions YAML for a network and its components
  validate  check a directions YAML (line-numbered errors, network hash)
  export    PNGs with recipes, contact sheets, GIF sweeps and a manifest for labelled directions
  attribute a supervised direction from labels (sleeve short -> long, dress -> skirt) into directions.yaml
"""
from __future__ import annotations

import sys

import click
from tqdm import tqdm

from fashion_models import load_model
from ganspace.directions import DirectionsError, load_directions
from ganspace.layers import GROUP_NAMES
from stylegan2.compiled import COMPILE_HELP, MAPPINGS_PER_IMAGE, compile_generator
from stylegan2.labels import LabelLayoutError, layout_from_meta
from stylegan2.render import class_choices, resolve_class
from toolkit import cli as kit  # `cli` is this module's group (tests and scripts import it)
from toolkit.parsing import parse_float_list


class FloatList(click.ParamType):
    name = "LIST"

    def convert(self, value, param, ctx):
        return value if isinstance(value, list) else parse_float_list(value, error=click.BadParameter,
                                                                       example="-3,-1.5,0,1.5,3")


def check_label(G, class_value: str | None, attrs, meta, optional: bool = False):
    """(label, attribute choices) from --class or --attr: a class index (or None, see check_class) and None for
    one-hot networks; a label vector and the choices for multi-attribute ones (attributes not named are "any")."""
    try:
        layout = layout_from_meta(meta)
        if layout is None:
            if attrs:
                raise LabelLayoutError("--attr needs a multi-attribute network; use --class for this one")
            return check_class(G, class_value, meta.get("class_names"), optional), None
        if class_value not in (None, "mix"):   # fit's default
            raise LabelLayoutError(f"this network is conditioned on attributes ({layout.describe()}): "
                                   f"use --attr NAME=VALUE instead of --class")
        chosen = {k: v for k, v in layout.parse(attrs).items() if v is not None}
        return layout.encode(chosen), chosen
    except LabelLayoutError as exc:
        raise click.BadParameter(str(exc), param_hint="--attr") from None


def check_class(G, value: str | None, class_names, optional: bool = False) -> int | None:
    """--class (an index or a recorded class name) as an index valid for G.

    `optional`: a conditional network may go without --class (each seed then shows class seed % c_dim).
    """
    try:
        class_idx = resolve_class(value, class_names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--class") from None
    if G.c_dim == 0 and class_idx is not None:
        raise click.BadParameter("this network is unconditional: drop --class", param_hint="--class")
    if G.c_dim > 0 and class_idx is None and optional:
        return None
    if G.c_dim > 0 and (class_idx is None or not 0 <= class_idx < G.c_dim):
        raise click.BadParameter(f"this network is conditional: pass {class_choices(G.c_dim, class_names)}",
                                 param_hint="--class")
    return class_idx


class TqdmProgress:
    """Adapter from progress((done, total)) to a tqdm bar."""

    def __init__(self, desc: str, unit: str):
        self.bar = tqdm(desc=desc, unit=unit)

    def __call__(self, state):
        done, total = state
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self):
        self.bar.close()


network_option = kit.network_option()
device_option = kit.device_option()
trunc_option = kit.trunc_option(default=0.7, why=" 0.7 here (official generate.py: 1), so sheets and exports show "
                                "typical designs rather than the rare extremes.")
compile_option = click.option("--compile/--no-compile", "compile_", default=None, help=COMPILE_HELP)
class_option = kit.class_option(help="Class index or name (conditional networks only; sheets and hints default to "
                                     "seed % classes, so every class is shown).")
attr_option = click.option("--attr", "attrs", multiple=True, metavar="NAME=VALUE",
                           help="Multi-attribute networks, instead of --class: an attribute value, repeatable "
                                "(--attr garment=dress); attributes not given are 'any'.")


@kit.group(help=__doc__)
def cli():
    pass


@cli.command()
@network_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Components file to write (.npz).")
@click.option("--method", type=click.Choice(["pca", "sefa"]), default="pca", show_default=True,
              help="pca: statistics of sampled w (GANSpace); sefa: closed form from the style affines.")
@click.option("--estimator", type=click.Choice(["pca", "ipca", "sparsepca", "ica"]), default="pca",
              show_default=True, help="pca/ipca stream all samples; sparsepca/ica use --subsample of them.")
@click.option("--samples", type=int, default=1_000_000, show_default=True, help="Number of w samples.")
@click.option("--components", "num_components", type=int, default=80, show_default=True)
@click.option("--batch", "batch_size", type=int, default=10_000, show_default=True, help="z per mapping batch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the z stream.")
@click.option("--subsample", type=int, default=20_000, show_default=True, help="Samples for sparsepca/ica.")
@click.option("--stdev-samples", type=int, default=10_000, show_default=True,
              help="Fresh samples used to measure each direction's sigma.")
@click.option("--class", "class_idx", default="mix", show_default=True,
              help="Conditional networks: a class index or name, or 'mix' for a uniform class per sample.")
@attr_option
@click.option("--layers", "sefa_layers", default=None, help="SeFa only: layers whose affines to use (e.g. 0-3, coarse).")
@device_option
@compile_option
def fit(network, out, method, estimator, samples, num_components, batch_size, seed, subsample, stdev_samples,
        class_idx, attrs, sefa_layers, device, compile_):
    """Principal directions of W -> components .npz (GANSpace keys lat_comp/lat_mean/lat_stdev/var_ratio)."""
    from ganspace.fit import WSampler, find
    from ganspace.layers import parse_layers
    model = load_model(network, device)
    G, sha, meta = model.generator(), model.sha256, model.meta or {}
    mapped = stdev_samples + (0 if method == "sefa" else samples)
    compile_generator(G, compile_, images=mapped // MAPPINGS_PER_IMAGE, parts=("mapping",))
    if class_idx != "mix" or layout_from_meta(meta) is not None:
        class_idx, _ = check_label(G, class_idx, attrs, meta)
    sampler = WSampler(G, batch_size, seed, class_idx)
    if method == "sefa":
        layers = parse_layers(sefa_layers, G.num_ws) if sefa_layers else None
        comps = find("sefa", G, num_components, sampler, layers=layers, stdev_samples=stdev_samples,
                     network_sha256=sha)
    else:
        with tqdm(total=samples, desc="mapping z -> w", unit="w", unit_scale=True) as bar:
            sampler.progress = bar.update
            comps = find(estimator, G, num_components, sampler, num_samples=samples, subsample=subsample,
                         stdev_samples=stdev_samples, network_sha256=sha)
    comps.save(out)
    click.echo(f"wrote {out}: {comps.num_components} directions, first explained variance "
               f"{', '.join(f'{v:.1%}' for v in comps.var_ratio[:5])}")


@cli.command()
@network_option
@click.option("--components", "components_path", required=True, type=click.Path(exists=True, dir_okay=False))
@kit.outdir_option("Folder for the sheets. [--out: older spelling]", True, "--out")
@click.option("--num", "num_components", type=int, default=10, show_default=True, help="First K components.")
@kit.seeds_option(default="0-4", help="Rows, e.g. 0-4 or 1,5,9.")
@click.option("--columns", type=int, default=7, show_default=True, help="Strengths from -k to +k sigma.")
@click.option("--sigma-range", type=float, default=3.0, show_default=True, help="k, in sigma units.")
@click.option("--centre", "--center", "centre", type=click.Choice(["sample", "mean"]), default="sample",
              show_default=True, help="Centre columns on each sample's own coordinate or on the mean.")
@click.option("--groups", default=",".join(GROUP_NAMES), show_default=True, help="Layer groups, comma separated.")
@trunc_option
@class_option
@attr_option
@device_option
@compile_option
def sheets(network, components_path, outdir, num_components, seeds, columns, sigma_range, centre, groups,
           truncation_psi, class_idx, attrs, device, compile_):
    """One PNG per component and layer group: rows = seeds, columns = strengths."""
    from ganspace.components import load_components
    from ganspace.sheets import component_sheets
    model = load_model(network, device)
    G, meta = model.generator(), model.meta or {}
    group_list = [g.strip() for g in groups.split(",")]
    compile_generator(G, compile_, images=num_components * len(group_list) * len(seeds) * columns)
    class_idx, _ = check_label(G, class_idx, attrs, meta, optional=True)
    progress = TqdmProgress("sheets", "sheet")
    try:
        paths = component_sheets(G, load_components(components_path), outdir, num_components, seeds, columns,
                                 sigma_range, centre, group_list, truncation_psi,
                                 class_idx, progress=progress)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    click.echo(f"wrote {len(paths)} sheets to {outdir}")


@cli.command()
@network_option
@click.option("--components", "components_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", default="hints.csv", show_default=True, type=click.Path(dir_okay=False),
              help="CSV table (a .md copy is written beside it).")
@click.option("--num", "num_components", type=int, default=10, show_default=True)
@kit.seeds_option(default="0-15")
@click.option("--strength", type=float, default=2.0, show_default=True, help="Compare -s and +s sigma.")
@trunc_option
@class_option
@attr_option
@device_option
@compile_option
def hints(network, components_path, out, num_components, seeds, strength, truncation_psi, class_idx, attrs, device,
          compile_):
    """Measured image changes per component and layer group, with suggested labels."""
    from ganspace.components import load_components
    from ganspace.hints import format_table, measure_hints, write_hints
    model = load_model(network, device)
    G, meta = model.generator(), model.meta or {}
    compile_generator(G, compile_, images=num_components * len(GROUP_NAMES) * len(seeds) * 2)
    class_idx, _ = check_label(G, class_idx, attrs, meta, optional=True)
    progress = TqdmProgress("hints", "row")
    try:
        rows = measure_hints(G, load_components(components_path), num_components, seeds, strength,
                             truncation_psi=truncation_psi, class_idx=class_idx, progress=progress)
    finally:
        progress.close()
    write_hints(rows, out)
    click.echo(format_table(rows))
    click.echo(f"wrote {out}")


@cli.command()
@network_option
@click.option("--components", "components_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--num", "count", type=click.IntRange(min=0), default=10, show_default=True,
              help="Entries for the first N components.")
def template(network, components_path, count):
    """Print a commented directions YAML to start from (python -m ganspace template ... > directions.yaml)."""
    from ganspace.components import load_components
    from ganspace.directions import template_text
    sha = load_model(network).sha256
    try:
        comps = load_components(components_path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    made_for = comps.meta.get("network_sha256")
    if made_for and made_for != sha:
        click.echo(f"warning: {components_path} was fitted on network {made_for}, not on {network} ({sha})", err=True)
    click.echo(template_text(network, sha, components_path, comps, count), nl=False)


@cli.command()
@click.option("--directions", "directions_path", required=True, type=click.Path(dir_okay=False))
@kit.network_option(required=False, help=kit.NETWORK_HELP + " Optional: checks the file's network_sha256.")
@click.option("--force", is_flag=True, help="Accept a file made for another network.")
def validate(directions_path, network, force):
    """Check a directions YAML; errors name the line and what to fix."""
    sha = load_model(network).sha256 if network else None
    try:
        loaded = load_directions(directions_path, network_sha256=sha, force=force)
    except DirectionsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for d in loaded.directions:
        source = f"component {d.component}" if d.component is not None else "vector"
        click.echo(f"  {d.name}: {source}, layers {d.layers[0]}-{d.layers[1]}, {d.mode}, sigma {d.sigma:.3g}, "
                   f"slider {d.slider_min:g}..{d.slider_max:g}" + (f"  ({d.sign})" if d.sign else ""))
    click.echo(f"OK: {len(loaded.directions)} directions")


@cli.command()
@network_option
@click.option("--directions", "directions_path", required=True, type=click.Path(exists=True, dir_okay=False))
@kit.seeds_option(default="0-99")
@click.option("--strengths", type=FloatList(), default="-3,-1.5,0,1.5,3", show_default=True, help="In sigma units.")
@kit.outdir_option("Folder for the PNGs, sheets and manifest. [--out: older spelling]", True, "--out")
@click.option("--gif", is_flag=True, help="Also write an animated GIF sweep per direction.")
@click.option("--batch", "batch_size", type=int, default=8, show_default=True, help="Images per generator call.")
@click.option("--force", is_flag=True, help="Use a directions file made for another network.")
@trunc_option
@kit.trunc_centre_option()
@class_option
@attr_option
@device_option
@compile_option
def export(network, directions_path, seeds, strengths, outdir, gif, batch_size, force, truncation_psi,
           truncation_centre, class_idx, attrs, device, compile_):
    """PNGs (with recipes), contact sheets and manifest.csv/json for every labelled direction. Resumable."""
    from ganspace.export import export_directions
    model = load_model(network, device)
    G, sha, meta = model.generator(), model.sha256, model.meta or {}
    class_idx, attributes = check_label(G, class_idx, attrs, meta)
    try:
        directions = load_directions(directions_path, network_sha256=sha, force=force)
    except DirectionsError as exc:
        raise click.ClickException(str(exc)) from None
    compile_generator(G, compile_, images=len(directions.directions) * len(seeds) * len(strengths))
    progress = TqdmProgress("export", "img")
    try:
        rows = export_directions(G, directions, seeds, strengths, outdir, truncation_psi, class_idx, sha,
                                 progress=progress, batch_size=batch_size, gif=gif, attributes=attributes,
                                 truncation_centre=truncation_centre)
    finally:
        progress.close()
    click.echo(f"{len(rows)} images listed in {outdir}/manifest.csv")


@cli.command()
@network_option
@click.option("--attr", "attribute", required=True,
              help="The attribute to move (e.g. sleeve); 'class' on a network with one-hot classes.")
@click.option("--from", "value_a", required=True, help="Start value, e.g. short (or a class: dress).")
@click.option("--to", "value_b", required=True, help="End value, e.g. long (or a class: skirt).")
@click.option("--directions", "directions_path", required=True, type=click.Path(dir_okay=False),
              help="directions.yaml to add it to (created if missing; the old file is kept as .bak).")
@click.option("--data", type=click.Path(exists=True), default=None,
              help="The training set: the other attributes, and the labels σ is measured with, are drawn from its "
                   "label rows. Without it they are 'any' (and classes uniform for σ).")
@click.option("--samples", type=click.IntRange(min=2), default=10_000, show_default=True,
              help="Pairs of w (and fresh w for σ).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--layers", default="all", show_default=True, help="Layers the direction acts on.")
@click.option("--name", default=None, help="Direction name. [ATTR: FROM to TO, in the labels' own captions]")
@device_option
def attribute(network, attribute, value_a, value_b, directions_path, data, samples, seed, layers, name, device):
    """Mean W difference between two values of one attribute (or two classes), as a vector direction."""
    import pathlib

    import numpy as np

    from ganspace.attributes import attribute_direction, with_block
    from ganspace.directions import Direction, append_direction
    from ganspace.layers import parse_layers
    model = load_model(network, device)
    G, sha, meta = model.generator(), model.sha256, model.meta or {}
    if not G.c_dim:
        raise click.UsageError("this network is unconditional: attribute directions need labels")
    rng = np.random.RandomState([seed, 2])
    data_rows = _data_labels(data, G.c_dim) if data else None
    layout = layout_from_meta(meta)
    try:
        if layout is None:
            if attribute != "class":
                raise LabelLayoutError("this network has one-hot classes, not attributes: use --attr class "
                                       "--from CLASS --to CLASS")
            start, stop = 0, G.c_dim
            ia, ib = (check_class(G, v, meta.get("class_names")) for v in (value_a, value_b))
            captions = meta.get("class_names") or [f"class {i}" for i in range(G.c_dim)]
            sigma_rows = np.eye(G.c_dim, dtype=np.float32)[rng.randint(G.c_dim, size=samples)]
        else:
            block = layout.block(attribute)
            start, stop, captions = block.offset, block.stop, block.captions
            ia, ib = (layout.value_index(block, v) for v in (value_a, value_b))
            sigma_rows = np.zeros([samples, G.c_dim], np.float32)
    except LabelLayoutError as exc:
        raise click.BadParameter(str(exc), param_hint="--attr/--from/--to") from None
    if ia == ib:
        raise click.BadParameter("--from and --to are the same value", param_hint="--to")
    if data_rows is not None:
        sigma_rows = data_rows[rng.randint(len(data_rows), size=samples)]
    context = data_rows[rng.randint(len(data_rows), size=samples)] if data_rows is not None else \
        np.zeros([samples, G.c_dim], np.float32)
    found = attribute_direction(G, with_block(context, start, stop, ia), with_block(context, start, stop, ib),
                                sigma_rows, seed)
    path = pathlib.Path(directions_path)
    if path.exists():
        try:
            load_directions(path, network_sha256=sha)
        except DirectionsError as exc:
            raise click.ClickException(str(exc)) from None
    reach = float(max(3.0, np.ceil(found.shift_sigmas)))
    direction = Direction(
        name=name or f"{attribute}: {captions[ia]} to {captions[ib]}",
        description=f"{captions[ia]} to {captions[ib]} (attribute means over {found.samples} pairs"
                    f"{', other attributes from the data' if data else ''}; the two means are "
                    f"{found.shift_sigmas:.2f} sigma apart)",
        vector=found.vector, layers=parse_layers(layers, G.num_ws), sigma=found.sigma,
        slider_min=-reach, slider_max=reach, sign=f"+ = {captions[ib]}, - = {captions[ia]}")
    try:
        append_direction(path, direction, network_sha256=sha, num_ws=G.num_ws)
    except DirectionsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added '{direction.name}' to {path}: sigma {found.sigma:.4g}, {captions[ia]} -> {captions[ib]} "
               f"is {found.shift_sigmas:.2f} sigma")


def _data_labels(data: str, c_dim: int):
    """The label rows of a training set, checked against the network's label length."""
    from training.dataset import DatasetError, ImageDataset
    try:
        rows = ImageDataset(data, use_labels=True).labels
    except DatasetError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    if rows.shape[1] != c_dim:
        raise click.BadParameter(f"{data} has labels of {rows.shape[1]} numbers, the network {c_dim}",
                                 param_hint="--data")
    return rows


if __name__ == "__main__":
    cli()
