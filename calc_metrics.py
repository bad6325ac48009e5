"""Measure a network (FID, KID, precision/recall, class accuracy) against a dataset, or one image set against another.

Examples:

\b
  # the published protocol (50k fakes vs all reals; add --mirror if the run trained with x-flips):
  python calc_metrics.py --network run/network-snapshot-000200.safetensors --data fashion256.zip \\
      --metrics fid50k_full,kid50k_full
\b
  # a small data set: as many fakes as real images, written to out/metric-fid_full.jsonl:
  python calc_metrics.py --network default --data clothing64.zip --metrics fid_full,kid_full --outdir out
\b
  # does the class pick the garment? (conditional networks; _reals: the same for the real images, the ceiling)
  python calc_metrics.py --network default --data clothing64.zip --metrics class_knn5_full --trunc 0.7 \\
      --trunc-centre class
\b
  # real vs real (prints "FID <value>" last), and the floor of a data set (one random half vs the other):
  python calc_metrics.py --data a.zip --reference b.zip --metrics fid_full,kid_full
  python calc_metrics.py --data clothing64.zip --halves --metrics fid_full,kid_full

Each metric appends one JSON line to metric-<name>.jsonl: in --outdir when given, else beside the
network file when that folder is writable. Real-image features are cached ($AFRO_FASHION_CACHE).
The official precision/recall, pr50k3_full, measures on VGG16 features: give --vgg16 with a
torchvision-layout VGG16 state dict (.pth or .safetensors, read as data); pr50k3_inception needs none.
"""
from __future__ import annotations

import json
import os
import pathlib
import time

import click

from training.dataset import DatasetError, ImageDataset
from training.feature_net import HOW_TO, load_feature_net
from training.metrics import METRICS, VGG16_HOW_TO, compare_datasets, compare_halves, compute_metrics
from stylegan2.compiled import COMPILE_HELP
from toolkit import cli
from training.vgg16 import VGG16_ENV, VGG16Error, load_vgg16_fc7


def _metric_names(ctx, param, value: str) -> list[str]:
    names = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        listing = "\n".join(f"  {name}: {spec.about}" for name, spec in METRICS.items())
        raise click.BadParameter(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from\n{listing}")
    return names


def _open_dataset(path, **kwargs) -> ImageDataset:
    try:
        return ImageDataset(path, **kwargs)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from exc


def _jsonl_folder(outdir: str | None, network_file: pathlib.Path | None) -> pathlib.Path | None:
    if outdir:
        return pathlib.Path(outdir)
    if network_file is not None and os.access(network_file.parent, os.W_OK):
        return network_file.parent
    return None


@cli.command(help=__doc__, context_settings=dict(max_content_width=110))
@cli.network_option(required=False)
@click.option("--data", type=click.Path(exists=True), required=True, help="Dataset (zip or folder) the reals come from.")
@click.option("--reference", type=click.Path(exists=True), help="Compare --data against this image set (no network).")
@click.option("--halves", is_flag=True, help="Compare one random half of --data with the other (no network).")
@click.option("--metrics", "names", default="fid50k_full", show_default=True, callback=_metric_names,
              help=f"Comma-separated: {', '.join(METRICS)}.")
@click.option("--mirror", is_flag=True, help="Add x-flipped reals, as a run trained with --mirror saw them.")
@click.option("--num-gen", type=click.IntRange(min=2), help="Fakes per metric instead of its own count (not comparable).")
@cli.trunc_option(default=1.0, why=" Of the fakes; the published metrics use 1.")
@cli.trunc_centre_option()
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fakes' z and classes.")
@cli.outdir_option("Folder for metric-<name>.jsonl.", required=False)
@click.option("--feature-net", help="Inception-v3 archive (path or URL). [$AFRO_FASHION_INCEPTION, then the fetched file]")
@click.option("--vgg16", "vgg16_source", envvar=VGG16_ENV, show_envvar=True,
              help="VGG16 state dict (torchvision layout, .pth/.safetensors; path or URL) for pr50k3_full.")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True, help="Images per feature batch.")
@click.option("--compile/--no-compile", "compile_", default=None, help=COMPILE_HELP)
@cli.device_option()
def main(network, data, reference, halves, names, mirror, num_gen, truncation_psi, truncation_centre, seed, outdir,
         feature_net, vgg16_source, batch, compile_, device):
    if network is None and reference is None and not halves:
        raise click.UsageError("give --network (a generator vs --data), --reference (two image sets) or --halves")
    if network is not None and (reference is not None or halves):
        raise click.UsageError("--network measures a generator; --reference and --halves compare real images")
    vgg16 = None
    if any(METRICS[n].network == "vgg16" for n in names):
        if not vgg16_source:
            raise click.ClickException(VGG16_HOW_TO)
        from toolkit.download import DownloadError
        try:
            vgg16 = load_vgg16_fc7(vgg16_source, device=device)
        except (VGG16Error, DownloadError, OSError) as exc:
            raise click.ClickException(f"cannot use --vgg16 {vgg16_source}: {exc}") from exc
    G = network_file = None
    if network is not None:  # before Inception loads: a wrong --network fails in a second
        from fashion_models import load_model
        model = load_model(network, device=device)
        network_file = pathlib.Path(model.source) if model.source else None
        G = model.generator()
    net = None
    if any(METRICS[n].network == "inception" for n in names):
        net = load_feature_net(feature_net, device=device)
        if net is None:
            raise click.ClickException(f"no Inception-v3 weights: {HOW_TO}")
    start = time.time()
    common = dict(feature_net=net, vgg16=vgg16, batch_size=batch, device=device)
    if G is not None:
        dataset = _open_dataset(data, use_labels=G.c_dim > 0, xflip=mirror)
        try:
            results = compute_metrics(names, G, dataset, num_gen=num_gen, seed=seed, truncation_psi=truncation_psi,
                                      truncation_centre=truncation_centre,
                                      compile=compile_, **common)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    else:
        try:
            results = (compare_halves(names, _open_dataset(data, xflip=mirror), seed=seed, **common) if halves else
                       compare_datasets(names, _open_dataset(data, xflip=mirror), _open_dataset(reference), **common))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    elapsed = time.time() - start
    folder = _jsonl_folder(outdir, network_file)
    for name in names:
        mine = {k: v for k, v in results.items() if k == name or k.startswith(f"{name}_")}
        line = dict(results=mine, metric=name, total_time=elapsed, network=str(network_file or network or ""),
                    data=str(data), reference=str(reference or ("halves" if halves else "")), mirror=mirror,
                    num_gen=num_gen, truncation_psi=truncation_psi, truncation_centre=truncation_centre, seed=seed,
                    timestamp=time.time())
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / f"metric-{name}.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
    for key, value in results.items():
        click.echo(f"{key} {value:.6g}")
    if folder is None:
        click.echo("(no metric-*.jsonl written: give --outdir to keep them)", err=True)
    fid = next((results[n] for n in names if METRICS[n].kind == "fid"), None)
    if fid is not None:
        click.echo(f"FID {fid:.4f}")


if __name__ == "__main__":
    main()
