"""Parameter counts of the published configs and generator forward time.

  python benchmarks/bench_generator.py                 # CPU, batch 1 and 8, 256 and 512 px
  python benchmarks/bench_generator.py --device cuda --batch 32
  python benchmarks/bench_generator.py --threads 1      # when another job shares the cores

Prints a table; fused (inference) vs split modulation is the in-process baseline ratio.
"""
from __future__ import annotations

import time

import click
import torch

from stylegan2.networks import Discriminator, Generator

# Published configs (StyleGAN2-ADA): channel_base = fmaps * 32768, channel_max 512, mapping layers 8.
CONFIGS = {
    "paper256": dict(res=256, fmaps=0.5),
    "paper512": dict(res=512, fmaps=1.0),
    "stylegan2-1024": dict(res=1024, fmaps=1.0),
}


def build(res: int, fmaps: float, device: str):
    syn = dict(channel_base=int(fmaps * 32768), channel_max=512, num_fp16_res=4, conv_clamp=256)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=8), synthesis_kwargs=syn).to(device).eval()
    D = Discriminator(c_dim=0, img_resolution=res, img_channels=3, **syn)
    return G, D


def time_forward(G, batch: int, device: str, fused: bool, repeats: int) -> float:
    z = torch.randn(batch, G.z_dim, device=device)
    with torch.no_grad():
        ws = G.mapping(z, None)
        G.synthesis(ws, noise_mode="const", fused_modconv=fused)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            G.synthesis(G.mapping(z, None), noise_mode="const", fused_modconv=fused)
        if device == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


@click.command()
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch", "batches", multiple=True, type=int, default=[1, 8], show_default=True)
@click.option("--repeats", default=2, show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads (default: torch's choice).")
def main(device, batches, repeats, threads):
    if threads:
        torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    print(f"{'config':<16}{'G params':>14}{'D params':>14}")
    for name, cfg in CONFIGS.items():
        G, D = build(cfg["res"], cfg["fmaps"], "cpu")
        print(f"{name:<16}{sum(p.numel() for p in G.parameters()):>14,}{sum(p.numel() for p in D.parameters()):>14,}")
    print(f"\n{'config':<16}{'batch':>6}{'fused ms/img':>14}{'split ms/img':>14}{'split/fused':>12}")
    for name in ("paper256", "paper512"):
        G, _ = build(CONFIGS[name]["res"], CONFIGS[name]["fmaps"], device)
        for b in batches:
            fused = time_forward(G, b, device, True, repeats) / b * 1000
            split = time_forward(G, b, device, False, repeats) / b * 1000
            print(f"{name:<16}{b:>6}{fused:>14.1f}{split:>14.1f}{split / fused:>12.2f}")


if __name__ == "__main__":
    main()
