"""Project a photo of a garment into a generator's W (or W+) space, with the official projector's spelling.

Examples:
  python project.py --network default --target dress.jpg --class dress --outdir out
  python project.py --network default --target shirt.png --class shirt --outdir out --w-plus --tune
  python project.py --network my.pkl --target photo.webp --outdir out --num-steps 500 --save-video true
  python generate.py --network default --projected-w out/projected_w.npz --outdir out   # the same pixels

Writes OUTDIR/target.png (the photo framed as the dataset tool frames training photos), proj.png,
projected_w.npz (official layout, plus the noise maps that redraw proj.png exactly), with --save-video
proj.gif (target | progress), and with --tune tuned.safetensors + proj_tuned.png.
"""
from __future__ import annotations

import pathlib
import sys
import time

import click
from tqdm import tqdm

from fashion_data.framing import TRANSFORMS
from fashion_models import load_model
from projection import latent
from projection.distance import LPIPSError, make_distance
from projection.projector import ProjectOptions, project
from projection.target import TargetError, read_target
from projection.tuning import TuneOptions, save_tuned, tune
from stylegan2.compiled import COMPILE_HELP
from stylegan2.construct import NetworkLoadError
from stylegan2.render import resolve_class, synthesize_uint8
from toolkit import cli
from toolkit.download import DownloadError
from toolkit.images import to_pil
from training.inception import FETCH_HINT, find_inception, load_inception

VIDEO_FRAMES = 100   # frames kept for --save-video, whatever the number of steps


@cli.command()
@cli.network_option()
@click.option("--target", "target_path", required=True, type=click.Path(dir_okay=False),
              help="The photo to project (PNG, JPEG, WebP...).")
@cli.class_option()
@cli.outdir_option("Where to write the results.")
@click.option("--num-steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Optimisation steps.")
@click.option("--seed", type=int, default=303, show_default=True, help="Random seed (noise maps, w noise).")
@click.option("--save-video", type=bool, default=False, show_default=True,
              help="Also write proj.gif: the target beside the optimisation's progress.")
@click.option("--w-plus/--w", "w_plus", default=False, show_default=True,
              help="Optimise one w per layer (closer fit) or a single w (the official projector).")
@click.option("--lpips", "lpips_source", default=None,
              help="VGG16/LPIPS weights (path or URL) for the official LPIPS distance; default: pixel pyramid.")
@click.option("--inception", "use_inception", is_flag=True,
              help="Inception-v3 perceptual distance (the FID network's maps, LPIPS-style, plus the pixel pyramid); "
                   "needs `python -m training.inception fetch` once.")
@click.option("--transform", type=click.Choice(TRANSFORMS), default="pad", show_default=True,
              help="Framing of the photo; use the one the network's dataset was built with.")
@click.option("--tune", is_flag=True, help="Pivotal tuning: fine-tune a copy of G around the found code.")
@click.option("--tune-steps", type=click.IntRange(min=1), default=350, show_default=True)
@click.option("--tune-lr", type=click.FloatRange(min=0, min_open=True), default=3e-4, show_default=True)
@click.option("--compile/--no-compile", "compile_", default=None, help=COMPILE_HELP)
@cli.device_option()
def main(network, target_path, class_idx, outdir, num_steps, seed, save_video, w_plus, lpips_source,
         use_inception, transform, tune, tune_steps, tune_lr, compile_, device):
    """Find the code whose image is closest to the photo TARGET; Ctrl-C keeps the best code so far."""
    model = load_model(network, device=device)
    G = model.generator()
    class_idx = _class_index(G, class_idx, model.class_names)
    try:
        target = read_target(target_path, G.img_resolution, G.img_channels, transform)
    except TargetError as exc:
        raise click.ClickException(str(exc)) from None
    if use_inception and lpips_source:
        raise click.UsageError("choose one distance: --lpips or --inception")
    try:
        inception = _inception(device) if use_inception else None
        distance = make_distance(target.tensor.to(device), lpips=lpips_source, inception=inception)
    except (LPIPSError, DownloadError, NetworkLoadError) as exc:
        raise click.ClickException(str(exc)) from None
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    target.image.save(out / "target.png")

    options = ProjectOptions(num_steps=num_steps, w_plus=w_plus, seed=seed)
    click.echo(f"projecting {target_path} into {'W+' if w_plus else 'W'} of {model.source} "
               f"({G.img_resolution} px, distance: {distance.name}, {num_steps} steps)")
    start = time.perf_counter()
    with tqdm(total=num_steps, unit="step", dynamic_ncols=True) as bar:
        result = project(G, target.tensor, distance, options, class_idx=class_idx, progress=_bar(bar),
                         record_every=max(1, num_steps // VIDEO_FRAMES) if save_video else 0, compile=compile_)
    seconds = time.perf_counter() - start
    if result.interrupted:
        click.echo(f"interrupted at step {result.steps}: keeping the best code so far", err=True)
    projected = latent.ProjectedW(
        w=result.ws.unsqueeze(0).cpu().numpy(), noise={k: v.cpu().numpy() for k, v in result.noise.items()},
        meta=dict(network_sha256=model.sha256, target_sha256=target.sha256,
                  class_idx=-1 if class_idx is None else class_idx, distance=result.distance))
    latent.save(out / "projected_w.npz", projected)
    pixels = synthesize_uint8(projected.generator(G), projected.ws(G))[0]
    to_pil(pixels).save(out / "proj.png")
    if save_video and result.frames:
        _save_gif(out / "proj.gif", result.frames)
    click.echo(f"distance {result.distance:.4f} after {result.steps} steps in {seconds:.1f} s; "
               f"wrote target.png, proj.png, projected_w.npz{', proj.gif' if save_video else ''} to {out}")
    if tune and not result.interrupted:
        _tune(G, model, result, distance, target, TuneOptions(num_steps=tune_steps, learning_rate=tune_lr), out,
              compile_)


def _tune(G, model, result, distance, target, options: TuneOptions, out: pathlib.Path, compile_) -> None:
    with tqdm(total=options.num_steps, unit="step", dynamic_ncols=True, desc="tuning") as bar:
        tuned = tune(G, result.ws, result.noise, distance, options, progress=_bar(bar), compile=compile_)
    save_tuned(out / "tuned.safetensors", tuned, model, target.sha256, options)
    pixels = synthesize_uint8(tuned.G, result.ws.unsqueeze(0))[0]
    to_pil(pixels).save(out / "proj_tuned.png")
    click.echo(f"tuned {tuned.steps} steps: distance {tuned.distance_before:.4f} -> {tuned.distance_after:.4f}; "
               f"wrote tuned.safetensors (render projected_w.npz with it) and proj_tuned.png")


def _inception(device):
    path = find_inception()
    if path is None or not path.is_file():
        raise click.ClickException(f"--inception needs the Inception-v3 weights: {FETCH_HINT}")
    return load_inception(path, device)


def _bar(bar):
    def update(step, total, dist):
        bar.update(step - bar.n)
        bar.set_postfix(dist=f"{dist:.4f}", refresh=False)
    return update


def _class_index(G, value, class_names):
    try:
        class_idx = resolve_class(value, class_names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--class") from None
    if G.c_dim and class_idx is None:
        names = f" ({', '.join(class_names)})" if class_names else ""
        raise click.UsageError(f"this network is conditional: pass --class 0-{G.c_dim - 1}{names}")
    if G.c_dim and not 0 <= class_idx < G.c_dim:
        raise click.BadParameter(f"class index must be in 0-{G.c_dim - 1}", param_hint="--class")
    if not G.c_dim and class_idx is not None:
        click.echo("warning: --class is ignored for an unconditional network", err=True)
        return None
    return class_idx


def _save_gif(path: pathlib.Path, frames) -> None:
    images = [to_pil(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)


if __name__ == "__main__":
    sys.exit(main())
