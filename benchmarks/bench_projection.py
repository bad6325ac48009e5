"""Reconstruction quality and speed of project.py on real photos: python benchmarks/bench_projection.py.

For each photo (the first --per-class photos of every class named in --heldout, a list of paths under
--photos such as models/default-run/heldout.txt, framed as the dataset tool frames them) it projects into
W, into W+, and W+ followed by pivotal tuning, and prints PSNR (dB, on the uint8 images), the pixel-pyramid
distance the projector minimises, the Inception-v3 perceptual distance of the result (feature term only,
`projection.distance.InceptionFeatures`; "-" without the fetched weights) and seconds per projection
(wall and CPU). `--network` and `--photos` make it re-runnable on a model that held those photos out.
Run it under `nice -n 10` on a shared machine and say so with the numbers. No pass/fail.
"""
from __future__ import annotations

import pathlib
import statistics
import time

import click
import numpy as np
import torch

from fashion_models import load_model
from ganspace.directions import load_directions
from ganspace.edits import apply_edits
from projection.distance import FeatureDistance, InceptionFeatures, make_distance, pyramid_mse
from projection.latent import ProjectedW
from projection.projector import ProjectOptions, project
from projection.target import read_target
from projection.tuning import TuneOptions, tune
from stylegan2.render import synthesize_uint8
from toolkit.images import to_pil
from training.inception import find_inception, load_inception

REPO = pathlib.Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "clothing-dataset-small"
HELDOUT = REPO / "models" / "default-run" / "heldout.txt"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(err, 1e-12)))


def pick_photos(folder: pathlib.Path, listing: pathlib.Path, per_class: int) -> list[tuple[str, pathlib.Path]]:
    """The first `per_class` listed photos of every class (the folder above each file), in list order."""
    picked: dict[str, list[pathlib.Path]] = {}
    for line in listing.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = folder / line
            picked.setdefault(path.parent.name, [])
            if len(picked[path.parent.name]) < per_class:
                picked[path.parent.name].append(path)
    return [(cls, path) for cls, paths in picked.items() for path in paths]


def image_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


@click.command()
@click.option("--network", default="default", show_default=True)
@click.option("--photos", type=click.Path(exists=True, file_okay=False), default=str(PHOTOS), show_default=True)
@click.option("--heldout", type=click.Path(exists=True, dir_okay=False), default=str(HELDOUT), show_default=True,
              help="Photos to use: paths under --photos, one a line ('#' comments).")
@click.option("--per-class", type=int, default=2, show_default=True)
@click.option("--num-steps", type=int, default=200, show_default=True)
@click.option("--tune-steps", type=int, default=100, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--strip", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG strip: photo | W | W+ | W+ tuned | tuned and edited, for every photo.")
@click.option("--edit", default="garment-tone:2", show_default=True,
              help="NAME:STRENGTH of the network's directions.yaml for the strip's last column "
                   "(no such column for a network without directions, e.g. a training snapshot).")
def main(network, photos, heldout, per_class, num_steps, tune_steps, threads, strip, edit):
    torch.set_num_threads(threads)
    inception_path = find_inception()
    features = InceptionFeatures(load_inception(inception_path)) if inception_path and inception_path.is_file() else None

    def perceptual(pixels: np.ndarray, reference: np.ndarray) -> float:
        if features is None:
            return float("nan")
        with torch.no_grad():
            return float(FeatureDistance(image_tensor(reference), features, "inception", pixel_weight=0.0)(
                image_tensor(pixels))[0])

    model = load_model(network)
    G = model.generator()
    names = model.class_names or []
    edit_name, edit_strength = edit.rsplit(":", 1)
    direction = None
    if model.directions_path is not None:
        directions = load_directions(model.directions_path, network_sha256=model.sha256)
        direction = next(d for d in directions.directions if d.name == edit_name).edit(float(edit_strength))
    rows, tiles = [], []
    for cls, path in pick_photos(pathlib.Path(photos), pathlib.Path(heldout), per_class):
        target = read_target(path, G.img_resolution, G.img_channels)
        reference = np.asarray(target.image).reshape(G.img_resolution, G.img_resolution, -1)
        class_idx = names.index(cls) if cls in names else (0 if G.c_dim else None)
        distance = make_distance(target.tensor)
        row_tiles = [reference]
        for label, w_plus in (("W", False), ("W+", True)):
            start, cpu = time.perf_counter(), time.process_time()
            found = project(G, target.tensor, distance, ProjectOptions(num_steps=num_steps, w_plus=w_plus),
                            class_idx=class_idx)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            projected = ProjectedW(w=found.ws.unsqueeze(0).numpy(), noise={k: v.numpy() for k, v in found.noise.items()})
            pixels = synthesize_uint8(projected.generator(G), projected.ws(G))[0]
            rows.append((path.name[:8], cls, label, psnr(pixels, reference), found.distance,
                         perceptual(pixels, reference), seconds, cpu))
            row_tiles.append(pixels)
        start, cpu = time.perf_counter(), time.process_time()
        tuned = tune(G, found.ws, found.noise, distance, TuneOptions(num_steps=tune_steps))
        pixels = synthesize_uint8(tuned.G, found.ws.unsqueeze(0))[0]
        with torch.no_grad():
            dist = float(pyramid_mse(tuned.G.synthesis(found.ws.unsqueeze(0), noise_mode="const"), target.tensor)[0])
        rows.append((path.name[:8], cls, "W+ tuned", psnr(pixels, reference), dist, perceptual(pixels, reference),
                     rows[-1][-2] + time.perf_counter() - start, rows[-1][-1] + time.process_time() - cpu))
        row_tiles.append(pixels)
        if direction is not None:
            row_tiles.append(synthesize_uint8(tuned.G, apply_edits(found.ws.unsqueeze(0), [direction]))[0])
        tiles.append(np.concatenate(row_tiles, axis=1))
        if strip:   # after every photo, so that a long run stopped early still leaves its strip
            to_pil(np.concatenate(tiles, axis=0)).save(strip)
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[-3]), flush=True)
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[-2]), flush=True)
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[-1]), flush=True)

    print(f"\n{model.source}, {G.img_resolution} px, {num_steps} steps (+{tune_steps} tuning), "
          f"{threads} threads, {len(tiles)} photos")
    print("(seconds: wall clock, and CPU time of this process, which a busy shared machine does not inflate)")
    print(f"{'space':<10} {'PSNR dB (median)':>17} {'pyramid MSE (median)':>21} {'Inception dist (median)':>24} "
          f"{'wall s (median)':>16} {'CPU s (median)':>15}")
    for label in ("W", "W+", "W+ tuned"):
        sel = [r for r in rows if r[2] == label]
        print(f"{label:<10} " + " ".join(f"{statistics.median(r[k] for r in sel):>{width}.{digits}f}"
                                         for k, width, digits in ((3, 17, 2), (4, 21, 4), (5, 24, 4), (6, 16, 1),
                                                                  (7, 15, 1))))
    if strip:
        print(f"wrote {strip} (rows: photo | W | W+ | W+ tuned" + (f" | tuned, {edit})" if direction else ")"))


if __name__ == "__main__":
    main()
