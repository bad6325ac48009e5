"""Reconstruction quality and speed of project.py on real photos: python benchmarks/bench_projection.py.

For each photo (the first --per-class photos of every class in the validation split of
../shared/data/clothing-dataset-small, framed as the dataset tool frames them) it projects into W,
into W+, and W+ followed by pivotal tuning, and prints PSNR (dB, on the uint8 images), the pixel-pyramid
distance the projector minimises, and seconds per projection (wall and CPU). Run it under `nice -n 10` on a shared
machine and say so with the numbers. No pass/fail.
"""
from __future__ import annotations

import pathlib
import statistics
import time

import click
import numpy as np
import torch

from editor.network import companion_files
from ganspace.directions import load_directions
from ganspace.edits import apply_edits
from projection.distance import make_distance, pyramid_mse
from projection.latent import ProjectedW
from projection.projector import ProjectOptions, project
from projection.target import read_target
from projection.tuning import TuneOptions, tune
from stylegan2.checkpoint import load_network
from stylegan2.render import synthesize_uint8
from toolkit.images import to_pil

PHOTOS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "clothing-dataset-small" / "validation"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(err, 1e-12)))


def pick_photos(folder: pathlib.Path, per_class: int) -> list[tuple[str, pathlib.Path]]:
    return [(d.name, p) for d in sorted(folder.iterdir()) if d.is_dir()
            for p in sorted(d.glob("*.jpg"))[:per_class]]


@click.command()
@click.option("--network", default="default", show_default=True)
@click.option("--photos", type=click.Path(exists=True, file_okay=False), default=str(PHOTOS), show_default=True)
@click.option("--per-class", type=int, default=2, show_default=True)
@click.option("--num-steps", type=int, default=300, show_default=True)
@click.option("--tune-steps", type=int, default=100, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--strip", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG strip: photo | W | W+ | W+ tuned | tuned and edited, for every photo.")
@click.option("--edit", default="blue-to-pink:2", show_default=True,
              help="NAME:STRENGTH of the network's directions.yaml for the strip's last column.")
def main(network, photos, per_class, num_steps, tune_steps, threads, strip, edit):
    torch.set_num_threads(threads)
    bundle = load_network(network)
    G = bundle.G_ema.eval().requires_grad_(False)
    names = bundle.meta.get("class_names") or []
    edit_name, edit_strength = edit.rsplit(":", 1)
    directions = load_directions(companion_files(bundle.source)[0], network_sha256=bundle.sha256)
    direction = next(d for d in directions.directions if d.name == edit_name).edit(float(edit_strength))
    rows, tiles = [], []
    for cls, path in pick_photos(pathlib.Path(photos), per_class):
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
            rows.append((path.name[:8], cls, label, psnr(pixels, reference), found.distance, seconds, cpu))
            row_tiles.append(pixels)
        start, cpu = time.perf_counter(), time.process_time()
        tuned = tune(G, found.ws, found.noise, distance, TuneOptions(num_steps=tune_steps))
        pixels = synthesize_uint8(tuned.G, found.ws.unsqueeze(0))[0]
        with torch.no_grad():
            dist = float(pyramid_mse(tuned.G.synthesis(found.ws.unsqueeze(0), noise_mode="const"), target.tensor)[0])
        rows.append((path.name[:8], cls, "W+ tuned", psnr(pixels, reference), dist,
                     rows[-1][-2] + time.perf_counter() - start, rows[-1][-1] + time.process_time() - cpu))
        row_tiles.append(pixels)
        row_tiles.append(synthesize_uint8(tuned.G, apply_edits(found.ws.unsqueeze(0), [direction]))[0])
        tiles.append(np.concatenate(row_tiles, axis=1))
        if strip:   # after every photo, so that a long run stopped early still leaves its strip
            to_pil(np.concatenate(tiles, axis=0)).save(strip)
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[-3]), flush=True)
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[-2]), flush=True)
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[-1]), flush=True)

    print(f"\n{bundle.source}, {G.img_resolution} px, {num_steps} steps (+{tune_steps} tuning), "
          f"{threads} threads, {len(tiles)} photos")
    print("(seconds: wall clock, and CPU time of this process, which a busy shared machine does not inflate)")
    print(f"{'space':<10} {'PSNR dB (median)':>17} {'pyramid MSE (median)':>21} {'wall s (median)':>16} "
          f"{'CPU s (median)':>15}")
    for label in ("W", "W+", "W+ tuned"):
        sel = [r for r in rows if r[2] == label]
        print(f"{label:<10} {statistics.median(r[3] for r in sel):>17.2f} {statistics.median(r[4] for r in sel):>21.4f} "
              f"{statistics.median(r[5] for r in sel):>16.1f} {statistics.median(r[6] for r in sel):>15.1f}")
    if strip:
        print(f"wrote {strip} (rows: photo | W | W+ | W+ tuned | tuned, {edit})")


if __name__ == "__main__":
    main()
