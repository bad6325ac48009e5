"""Slider-to-image latency of the studio in a real browser (Debian's Chromium via Playwright).

Opens the studio on the bundled default model, moves one labelled slider 30 times (distinct values,
one move at a time, after a first move reported apart) and times, inside the page, from the slider's input event to the moment the
design image shows the new picture. Prints the median and the worst move, then where a move's time goes
(medians): the render alone (10 renders before the server and the browser start), the render in the
handler, the event's request (handler + Gradio), and when the new picture's fetch starts and ends (the
browser's resource timings; a picture sent inline has no fetch).

    python benchmarks/bench_studio_latency.py [--network default] [--moves 30] [--slider 0] [--viewport 1280x800]
    python benchmarks/bench_studio_latency.py --network paper256-random   # a 256 px paper256 generator

`paper256-random` builds, in a temporary folder, a paper256-sized generator (256 px, channel base 16384,
8 mapping layers) with random weights, fits its PCA and writes a directions file from it with the
ganspace CLIs: a render costs the same whatever the weights, so this times the studio at 256 px.

The moves start once the studio's background compile is done, every batch size (it says how long that took), so they time
the compiled path, as a user sees it after the first start's warm-up.

Run it from any checkout: it only uses `editor.app.launch` and the Studio constructor, so the same
script measures an older tree (PYTHONPATH=that/tree) for a before/after comparison.
"""
from __future__ import annotations

import inspect
import os
import socket
import statistics
import tempfile
import threading
import time

import click

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

MOVE = """async ([selector, value]) => {
  const shown = () => document.querySelector('#studio-image img');
  const before = shown() ? shown().src : null;
  const range = document.querySelector(selector);
  const start = performance.now();
  range.value = String(value);
  range.dispatchEvent(new Event('input', {bubbles: true}));
  return await new Promise(resolve => {
    const poll = () => {  // every frame: the new picture is there once its <img> changed and finished loading
      const img = shown();
      if (img && img.src !== before && img.complete) {
        const total = performance.now() - start;
        // where the time went: the event's request (handler + Gradio) and the new picture's fetch
        const entries = performance.getEntriesByType('resource').filter(e => e.startTime >= start);
        const request = entries.find(e => e.name.includes('/run/') || e.name.includes('/queue/'));
        const picture = entries.find(e => e.name === img.src);
        return resolve({total, request: request ? request.responseEnd - request.startTime : null,
                        picture_start: picture ? picture.startTime - start : null,
                        picture_end: picture ? picture.responseEnd - start : null});
      }
      if (performance.now() - start > 20000) return resolve({total: -1});
      requestAnimationFrame(poll);
    };
    poll();
  });
}"""


PAPER256_RANDOM = "paper256-random"


def random_paper256_model() -> str:
    """network.safetensors with components.npz and directions.yaml beside it (the studio's sliders)."""
    import subprocess
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_compile import paper256_G
    from stylegan2.checkpoint import save_checkpoint
    folder = tempfile.mkdtemp(prefix="afro-bench-paper256-")
    network = os.path.join(folder, "network.safetensors")
    save_checkpoint(network, G_ema=paper256_G(), meta={"kimg": 0})
    components = os.path.join(folder, "components.npz")
    ganspace = [sys.executable, "-m", "ganspace"]
    subprocess.run([*ganspace, "fit", "--network", network, "--out", components, "--samples", "20000",
                    "--components", "8"], check=True)
    with open(os.path.join(folder, "directions.yaml"), "w") as f:
        subprocess.run([*ganspace, "template", "--network", network, "--components", components, "--num", "8"],
                       check=True, stdout=f)
    return network


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@click.command()
@click.option("--moves", default=30, show_default=True)
@click.option("--slider", default=0, show_default=True, help="Index of the labelled slider to move.")
@click.option("--viewport", default="1280x800", show_default=True)
@click.option("--network", default=None, help=f"A network with sliders (path or short name), or {PAPER256_RANDOM}; "
              "default: the bundled one.")
def main(moves, slider, viewport, network):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("AFRO_FASHION_DATA", tempfile.mkdtemp(prefix="afro-bench-data-"))
    from playwright.sync_api import sync_playwright
    try:  # as `python -m editor` runs (an older tree has no such module)
        from toolkit.memory import keep_freed_memory
        keep_freed_memory()
    except ImportError:
        pass

    from editor import app
    from editor.network import load_studio_network
    from editor.studio import Studio

    loaded = load_studio_network(random_paper256_model() if network == PAPER256_RANDOM else network)
    studio = Studio(loaded, loaded.directions_path, loaded.components_path)
    started = time.perf_counter()
    def warming_up():  # the whole warm-up, every size (`Studio.warming_up` clears after the first graph)
        return any(t.name == "compile-warm-up" and t.is_alive() for t in threading.enumerate())
    while warming_up() and time.perf_counter() - started < 900:
        time.sleep(0.5)
    print(f"compiled warm-up: waited {time.perf_counter() - started:.0f} s", flush=True)
    kwargs = {}
    if "store" in inspect.signature(app.launch).parameters:  # newer trees persist every move: count that too
        from editor.store import SessionStore
        kwargs["store"] = SessionStore(loaded.sha256)
    direction = studio.directions[slider]
    alone = []  # the same renders with no browser or server running: what the machine gives a render
    for i in range(10):
        recipe = studio.start_recipe().replace(sliders={direction.name: direction.slider_max * (i + 1) / 11})
        begun = time.perf_counter()
        studio.render(recipe)
        alone.append(time.perf_counter() - begun)
    renders = []  # seconds per Studio.render: the handler's share of a move
    render = studio.render

    def timed_render(*args, **kw):
        begun = time.perf_counter()
        try:
            return render(*args, **kw)
        finally:
            renders.append(time.perf_counter() - begun)
    studio.render = timed_render
    demo, url = app.launch(studio, port=free_port(), block=False, **kwargs)
    width, height = (int(v) for v in viewport.split("x"))
    values = [round(direction.slider_min + (direction.slider_max - direction.slider_min) * (i + 1) / (moves + 1), 2)
              for i in range(moves)]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.locator("#studio-image img").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            selector = f"#direction-{slider} input[type=range]"
            first = page.evaluate(MOVE, [selector, direction.slider_min])  # the first move, reported apart
            first_renders = list(renders)
            renders.clear()
            moves_seen = [page.evaluate(MOVE, [selector, v]) for v in values]
            browser.close()
    finally:
        demo.close()
    times = [m["total"] for m in moves_seen]
    missed = sum(t < 0 for t in times)
    ok = [t for t in times if t >= 0]
    print(f"| slider {direction.name!r}, {len(ok)} moves | median {statistics.median(ok):.0f} ms | "
          f"worst {max(ok):.0f} ms (move {times.index(max(ok)) + 1}) | best {min(ok):.0f} ms | no new image: {missed} |")

    first_render = f"{first_renders[0] * 1e3:.0f} ms" if first_renders else "none (cached)"
    print(f"first move after the page opened (not in the median): {first['total']:.0f} ms on screen, "
          f"its render {first_render}, its request {first.get('request') or 0:.0f} ms")

    def median(key):
        values = [m[key] for m in moves_seen if m.get(key) is not None]
        return f"{statistics.median(values):.0f} ms" if values else "n/a"
    print(f"medians: render alone {statistics.median(alone) * 1e3:.0f} ms, "
          f"in the handler {statistics.median(renders) * 1e3:.0f} ms (n={len(renders)}) | "
          f"request {median('request')} | picture fetch starts {median('picture_start')}, "
          f"ends {median('picture_end')} | on screen {statistics.median(ok):.0f} ms")


if __name__ == "__main__":
    main()
