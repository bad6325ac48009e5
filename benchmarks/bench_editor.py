"""Slider-to-image latency of the studio core (no browser): python benchmarks/bench_editor.py [--network X].

Times what a slider move costs on the server: compose W+ (cached mapping + ganspace edit),
synthesis and uint8 conversion. Prints a table; no pass/fail.
"""
import statistics
import tempfile
import time

import click

from editor.network import load_studio_network, random_demo_network


@click.command()
@click.option("--network", default=None, help="Network to time (default: bundled default or random demo).")
@click.option("--resolution", type=int, default=None, help="Time a random network of this size instead.")
@click.option("--repeats", type=int, default=20, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def main(network, resolution, repeats, device):
    import torch

    from editor.studio import Studio
    from ganspace.directions import Direction, append_direction

    loaded = random_demo_network(resolution) if resolution else load_studio_network(network)
    G = loaded.G_ema
    folder = tempfile.mkdtemp()
    vector = torch.randn(G.w_dim).numpy()
    append_direction(f"{folder}/d.yaml", Direction(name="bench", vector=vector, layers=(0, G.num_ws - 1)),
                     network_sha256=loaded.sha256)
    with open(f"{folder}/d.yaml", "a") as f:
        f.write(f"num_ws: {G.num_ws}\n")
    studio = Studio(loaded, directions_path=f"{folder}/d.yaml", device=device)
    recipe = studio.new_recipe(seed=1)
    studio.render(recipe)  # warm-up and cache fill
    rows = []
    for label, make in [("first render of a new seed", lambda i: recipe.replace(seed=10_000 + i)),
                        # distinct values: the studio keeps rendered recipes, a repeated value would be a cache hit
                        ("slider move (cached seed)", lambda i: recipe.replace(sliders={"bench": -3 + 6 * i / repeats}))]:
        times = []
        for i in range(repeats):
            r = make(i)
            start = time.perf_counter()
            studio.render(r)
            times.append((time.perf_counter() - start) * 1000)
        rows.append((label, statistics.median(times), max(times)))
    print(f"network: {loaded.source} ({G.img_resolution}px), device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'case':32s} {'median ms':>10s} {'max ms':>10s}")
    for label, median, worst in rows:
        print(f"{label:32s} {median:10.1f} {worst:10.1f}")


if __name__ == "__main__":
    main()
