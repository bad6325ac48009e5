"""python -m ganspace: find, look at, label-check and export directions of a generator.

\b
  fit       principal directions of W (or SeFa) -> components.npz
  sheets    one PNG per component and layer group, to name directions by eye
  hints     table of measured image changes per component, with suggested labels
  template  a commented starting directions YAML for a network and its components
  validate  check a directions YAML (line-numbered errors, network hash)
  export    PNGs with recipes, contact sheets, GIF sweeps and a manifest for labelled directions
"""
from __future__ import annotations

import sys

import click
from tqdm import tqdm

from ganspace.directions import DirectionsError, load_directions
from ganspace.layers import GROUP_NAMES
from stylegan2.compiled import COMPILE_HELP, MAPPINGS_PER_IMAGE, compile_generator
from stylegan2.render import class_choices, resolve_class
from toolkit.parsing import parse_float_list, parse_seed_list

NETWORK_HELP = "Network: .safetensors, official .pkl, URL or a known name (e.g. ffhq256)."


class SeedList(click.ParamType):
    name = "SEEDS"

    def convert(self, value, param, ctx):
        try:
            return parse_seed_list(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class FloatList(click.ParamType):
    name = "LIST"

    def convert(self, value, param, ctx):
        return value if isinstance(value, list) else parse_float_list(value, error=click.BadParameter,
                                                                       example="-3,-1.5,0,1.5,3")


def load_generator(network: str, device: str):
    """(G_ema in eval mode on `device`, sha256 of the network file, class names it records or None)."""
    import torch
    from stylegan2.checkpoint import load_network
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        bundle = load_network(network)
    except (OSError, ValueError, KeyError) as exc:
        raise click.ClickException(f"cannot load network {network!r}: {exc}") from None
    return bundle.G_ema.eval().requires_grad_(False).to(device), bundle.sha256, bundle.meta.get("class_names")


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


network_option = click.option("--network", "network", required=True, help=NETWORK_HELP)
device_option = click.option("--device", default="auto", show_default=True, help="cpu, cuda, or auto.")
trunc_option = click.option("--trunc", "truncation_psi", type=float, default=0.7, show_default=True,
                            help="Truncation psi of the seeds' codes.")
compile_option = click.option("--compile/--no-compile", "compile_", default=None, help=COMPILE_HELP)
class_option = click.option("--class", "class_idx", default=None,
                            help="Class index or name (conditional networks only; sheets and hints default to "
                                 "seed % classes, so every class is shown).")


@click.group(help=__doc__)
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
@click.option("--layers", "sefa_layers", default=None, help="SeFa only: layers whose affines to use (e.g. 0-3, coarse).")
@device_option
@compile_option
def fit(network, out, method, estimator, samples, num_components, batch_size, seed, subsample, stdev_samples,
        class_idx, sefa_layers, device, compile_):
    """Principal directions of W -> components .npz (GANSpace keys lat_comp/lat_mean/lat_stdev/var_ratio)."""
    from ganspace.fit import WSampler, find
    from ganspace.layers import parse_layers
    G, sha, class_names = load_generator(network, device)
    mapped = stdev_samples + (0 if method == "sefa" else samples)
    compile_generator(G, compile_, images=mapped // MAPPINGS_PER_IMAGE, parts=("mapping",))
    if class_idx != "mix":
        class_idx = check_class(G, class_idx, class_names)
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
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the sheets.")
@click.option("--num", "num_components", type=int, default=10, show_default=True, help="First K components.")
@click.option("--seeds", type=SeedList(), default="0-4", show_default=True, help="Rows, e.g. 0-4 or 1,5,9.")
@click.option("--columns", type=int, default=7, show_default=True, help="Strengths from -k to +k sigma.")
@click.option("--sigma-range", type=float, default=3.0, show_default=True, help="k, in sigma units.")
@click.option("--centre", "--center", "centre", type=click.Choice(["sample", "mean"]), default="sample",
              show_default=True, help="Centre columns on each sample's own coordinate or on the mean.")
@click.option("--groups", default=",".join(GROUP_NAMES), show_default=True, help="Layer groups, comma separated.")
@trunc_option
@class_option
@device_option
@compile_option
def sheets(network, components_path, out, num_components, seeds, columns, sigma_range, centre, groups,
           truncation_psi, class_idx, device, compile_):
    """One PNG per component and layer group: rows = seeds, columns = strengths."""
    from ganspace.components import load_components
    from ganspace.sheets import component_sheets
    G, _, class_names = load_generator(network, device)
    group_list = [g.strip() for g in groups.split(",")]
    compile_generator(G, compile_, images=num_components * len(group_list) * len(seeds) * columns)
    class_idx = check_class(G, class_idx, class_names, optional=True)
    progress = TqdmProgress("sheets", "sheet")
    try:
        paths = component_sheets(G, load_components(components_path), out, num_components, seeds, columns,
                                 sigma_range, centre, group_list, truncation_psi,
                                 class_idx, progress=progress)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.close()
    click.echo(f"wrote {len(paths)} sheets to {out}")


@cli.command()
@network_option
@click.option("--components", "components_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", default="hints.csv", show_default=True, type=click.Path(dir_okay=False),
              help="CSV table (a .md copy is written beside it).")
@click.option("--num", "num_components", type=int, default=10, show_default=True)
@click.option("--seeds", type=SeedList(), default="0-15", show_default=True)
@click.option("--strength", type=float, default=2.0, show_default=True, help="Compare -s and +s sigma.")
@trunc_option
@class_option
@device_option
@compile_option
def hints(network, components_path, out, num_components, seeds, strength, truncation_psi, class_idx, device,
          compile_):
    """Measured image changes per component and layer group, with suggested labels."""
    from ganspace.components import load_components
    from ganspace.hints import format_table, measure_hints, write_hints
    G, _, class_names = load_generator(network, device)
    compile_generator(G, compile_, images=num_components * len(GROUP_NAMES) * len(seeds) * 2)
    class_idx = check_class(G, class_idx, class_names, optional=True)
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
    _, sha, _ = load_generator(network, "cpu")
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
@click.option("--network", default=None, help=NETWORK_HELP + " Optional: checks the file's network_sha256.")
@click.option("--force", is_flag=True, help="Accept a file made for another network.")
def validate(directions_path, network, force):
    """Check a directions YAML; errors name the line and what to fix."""
    sha = load_generator(network, "cpu")[1] if network else None
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
@click.option("--seeds", type=SeedList(), default="0-99", show_default=True)
@click.option("--strengths", type=FloatList(), default="-3,-1.5,0,1.5,3", show_default=True, help="In sigma units.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--gif", is_flag=True, help="Also write an animated GIF sweep per direction.")
@click.option("--batch", "batch_size", type=int, default=8, show_default=True, help="Images per generator call.")
@click.option("--force", is_flag=True, help="Use a directions file made for another network.")
@trunc_option
@class_option
@device_option
@compile_option
def export(network, directions_path, seeds, strengths, out, gif, batch_size, force, truncation_psi, class_idx,
           device, compile_):
    """PNGs (with recipes), contact sheets and manifest.csv/json for every labelled direction. Resumable."""
    from ganspace.export import export_directions
    G, sha, class_names = load_generator(network, device)
    class_idx = check_class(G, class_idx, class_names)
    try:
        directions = load_directions(directions_path, network_sha256=sha, force=force)
    except DirectionsError as exc:
        raise click.ClickException(str(exc)) from None
    compile_generator(G, compile_, images=len(directions.directions) * len(seeds) * len(strengths))
    progress = TqdmProgress("export", "img")
    try:
        rows = export_directions(G, directions, seeds, strengths, out, truncation_psi, class_idx, sha,
                                 progress=progress, batch_size=batch_size, gif=gif)
    finally:
        progress.close()
    click.echo(f"{len(rows)} images listed in {out}/manifest.csv")


if __name__ == "__main__":
    cli()
