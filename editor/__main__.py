"""`python -m editor`: start the Afro Fashion studio in the browser (127.0.0.1 by default)."""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no analytics calls
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import click  # noqa: E402

from toolkit import cli  # noqa: E402


AUTH_ENV = "AFRO_STUDIO_AUTH"
MAX_FAILED_LOGINS, FAILED_LOGIN_WINDOW_S, FAILED_LOGIN_DELAY_S = 5, 60.0, 1.0


def parse_auth(value: str | None, hint: str = "--auth") -> tuple[str, str] | None:
    if value is None:
        return None
    user, sep, password = value.strip().partition(":")
    if not sep or not user or not password:
        raise click.BadParameter("use the form user:password", param_hint=hint)
    return user, password


def read_credentials(auth: str | None, auth_file: str | None) -> tuple[str, str] | None:
    """user:password from --auth-file, $AFRO_STUDIO_AUTH or (visible to every user of the machine) --auth."""
    if auth_file is not None:
        with open(auth_file, encoding="utf-8") as f:
            return parse_auth(f.readline(), "--auth-file")
    if os.environ.get(AUTH_ENV):
        return parse_auth(os.environ[AUTH_ENV], f"${AUTH_ENV}")
    if auth is not None:
        click.secho(f"Note: --auth shows the password in the process list; prefer --auth-file or ${AUTH_ENV}.",
                    fg="yellow", err=True)
    return parse_auth(auth)


def throttled_login(user: str, password: str, clock=None):
    """Gradio's login check with a brake: each wrong guess waits a second, and after MAX_FAILED_LOGINS
    failures within FAILED_LOGIN_WINDOW_S every attempt is refused until the window has passed.

    An async function (not a callable object): Gradio awaits only what inspect sees as a coroutine
    function, and the wait must not block its event loop.
    """
    import asyncio
    import hmac
    import time

    clock = clock or time.monotonic
    failures: list[float] = []

    async def check(given_user: str, given_password: str) -> bool:
        now = clock()
        failures[:] = [t for t in failures if now - t < FAILED_LOGIN_WINDOW_S]
        if len(failures) >= MAX_FAILED_LOGINS:
            return False
        ok = hmac.compare_digest(given_user.encode(), user.encode()) & hmac.compare_digest(
            given_password.encode(), password.encode())
        if not ok:
            failures.append(now)
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)
        return ok

    return check


@cli.command()
@cli.network_option(required=False, help=cli.NETWORK_HELP + " Default: the bundled model, or a random demo network "
                    "when it is missing.")
@click.option("--directions", type=click.Path(dir_okay=False), default=None,
              help="Directions YAML with the model's labelled sliders (read only when --labels is elsewhere).")
@click.option("--labels", type=click.Path(dir_okay=False), default=None,
              help="Where 'Label this component' saves your labels, layered over --directions. "
                   "Default: labels/<network hash>.yaml in your data folder ($AFRO_FASHION_DATA or "
                   "~/.local/share/afro-fashion-gan), which also keeps your sessions.")
@click.option("--components", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Components .npz from `python -m ganspace fit`, for the explore panel.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it to your network.")
@click.option("--port", type=int, default=7860, show_default=True, help="Port (the next free one is used if taken).")
@click.option("--share", is_flag=True, default=False, help="Also open a public gradio.live link (needs internet).")
@click.option("--auth", default=None, metavar="USER:PASS",
              help="Ask for this login (visible in the process list: prefer --auth-file or $AFRO_STUDIO_AUTH).")
@click.option("--auth-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A file whose first line is user:password, for the login.")
@cli.device_option()
@click.option("--no-browser", is_flag=True, default=False, help="Do not open a browser tab at start.")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="Compile the generator (torch.compile) in the background; designs render uncompiled until it is "
                   "ready. Default: $AFRO_FASHION_COMPILE or auto (on where a C++ compiler or Triton is present).")
def main(network, directions, labels, components, host, port, share, auth, auth_file, device, no_browser,
         compile_):
    """Open the studio: browse seeds, move labelled sliders, mix styles, save recipes and export."""
    credentials = read_credentials(auth, auth_file)
    from design.recipe import RecipeError
    from editor.network import load_studio_network
    from editor.store import SessionStore, labels_path, latents_path, mix_hints_path
    from projection.latent import LatentFolder
    from editor.studio import Studio
    from ganspace.directions import DirectionsError

    try:
        loaded = load_studio_network(network)
        directions = directions or loaded.directions_path
        components = components or loaded.components_path
        if loaded.banner and directions is None and components is None:
            import tempfile

            from editor.demo import write_demo_files

            directions, components = write_demo_files(loaded, tempfile.mkdtemp(prefix="afro-studio-demo-"))
        studio = Studio(loaded, directions_path=directions, components_path=components, device=device,
                        labels_path=labels or labels_path(loaded.sha256), compile=compile_,
                        latents=LatentFolder(latents_path(loaded.sha256)), mix_hints_file=mix_hints_path(loaded.sha256))
    except (OSError, ValueError, RecipeError, DirectionsError) as error:
        raise click.ClickException(str(error)) from None
    if loaded.banner:
        click.secho(f"Note: {loaded.banner}.", fg="yellow")
    from editor.app import launch

    (height, width), classes = studio.G.img_shape, len(loaded.class_names or []) or studio.G.c_dim
    size = f"{height} px" if height == width else f"{width}×{height} px"
    labels = f"attributes {', '.join(loaded.label_layout.names)}" if loaded.label_layout else f"{classes} classes"
    store = SessionStore(loaded.sha256)
    click.echo(f"Model: {loaded.describe().name}, {size}, {labels}, {len(studio.directions)} "
               f"sliders ({loaded.source})\nYour labels go to {studio.labels_path}, your sessions to {store.folder}")
    if studio.compiling:
        click.echo("Warming up: compiling the generator in the background (a minute or two the first time, "
                   "less once cached); designs render uncompiled until then")
    demo, url = launch(studio, host=host, port=_free_port(host, port), share=share,
                       auth=throttled_login(*credentials) if credentials else None,
                       store=store, block=False)
    click.secho(f"Afro Fashion Studio is running at {url} (Ctrl+C stops it)", fg="green")
    if demo.share_url:
        click.echo(f"Public link: {demo.share_url}")
    if not no_browser and _has_display():
        import webbrowser

        webbrowser.open(url)
    demo.block_thread()


def _has_display() -> bool:
    """A desktop to open a browser tab on (not a server, container or Colab, where a text browser would
    take over the terminal)."""
    import sys

    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _free_port(host: str, preferred: int) -> int:
    """`preferred` when free, else the next free port, so a second studio still starts."""
    import socket

    for port in range(preferred, preferred + 100):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
                return port
            except OSError:
                continue
    raise click.ClickException(f"No free port between {preferred} and {preferred + 99}; pass --port.")


if __name__ == "__main__":
    main()
