"""The command-line kit every entry point uses: `-h`, one way to show errors, and the shared options.

The shared options keep the official StyleGAN2-ADA spellings (`--network`, `--seeds`, `--trunc`, `--class`,
`--outdir`); each command passes its own default and says why when it differs from the official one.
"""
from __future__ import annotations

import re

import click

from toolkit.memory import keep_freed_memory
from toolkit.parsing import parse_seed_list

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
NETWORK_HELP = ("Network: a .safetensors checkpoint, an official .pkl, an http(s) URL, or a name "
                "(default = the bundled model, ffhq256, ...).")
DEVICE_SPELLINGS = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class UserError(Exception):
    """An error whose message says all a user needs (what was wrong and what to do): CLIs print it as one
    line, without a traceback. Bugs are other exceptions and keep their traceback."""


class Command(click.Command):
    """A click command with `-h` and with every UserError shown as `Error: <message>` (exit status 1)."""

    def __init__(self, *args, **kwargs):
        kwargs["context_settings"] = {**CONTEXT_SETTINGS, **(kwargs.get("context_settings") or {})}
        super().__init__(*args, **kwargs)

    def invoke(self, ctx):
        keep_freed_memory()  # a command renders or trains: see toolkit/memory.py
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise click.ClickException(str(error)) from None


class Group(click.Group):
    """A click group whose subcommands are `Command`s (and which takes `-h` itself)."""

    command_class = Command

    def __init__(self, *args, **kwargs):
        kwargs["context_settings"] = {**CONTEXT_SETTINGS, **(kwargs.get("context_settings") or {})}
        super().__init__(*args, **kwargs)


def command(**kwargs):
    return click.command(cls=Command, **kwargs)


def group(**kwargs):
    return click.group(cls=Group, **kwargs)


def resolve_device(spelling: str) -> str:
    """auto -> cuda when a GPU is present, else cpu; an unavailable device is a UserError (torch loads late)."""
    text = spelling.strip().lower()
    if not _DEVICE.fullmatch(text):
        raise UserError(f"{spelling!r} is not a device: use {DEVICE_SPELLINGS}")
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.partition(":")[2] or 0)
        if index >= count:
            found = f"only {count} CUDA device(s) (cuda:0-{count - 1})" if count else "no CUDA device"
            raise UserError(f"{text} was asked for but this machine has {found}; use auto or cpu")
    if text == "mps" and not torch.backends.mps.is_available():
        raise UserError("mps was asked for but this machine has no Apple GPU; use auto or cpu")
    return text


def _device_callback(ctx, param, value):
    try:
        return resolve_device(value)
    except UserError as error:
        raise click.BadParameter(str(error), ctx, param) from None


def network_option(required: bool = True, help: str = NETWORK_HELP):
    return click.option("--network", "network", required=required, metavar="PATH|URL|NAME", help=help)


def device_option(default: str = "auto"):
    return click.option("--device", default=default, show_default=True, callback=_device_callback, metavar="DEVICE",
                        help=f"Where to run: {DEVICE_SPELLINGS}. auto = cuda when a GPU is present, else cpu.")


def trunc_option(default: float, why: str = ""):
    """--trunc with the command's default; `why` explains a default that differs from the official 1."""
    return click.option("--trunc", "truncation_psi", type=float, default=default, show_default=True,
                        help="Truncation psi: 1 = full variety, lower = closer to the average image." + why)


def trunc_centre_option(default: str = "global"):
    """--trunc-centre: where ψ pulls (stylegan2.render.TRUNCATION_CENTRES)."""
    from stylegan2.render import TRUNCATION_CENTRES
    return click.option("--trunc-centre", "truncation_centre", type=click.Choice(TRUNCATION_CENTRES),
                        default=default, show_default=True,
                        help="Where ψ pulls a code: global = the overall average W (the official convention), "
                             "class = the average W of the image's own class or label, which keeps a conditional "
                             "network's classes apart at low ψ.")


def class_option(default: str | None = None, help: str = "Class index or name, e.g. 2 or dress (conditional networks)."):
    return click.option("--class", "class_idx", default=default, show_default=default is not None, help=help)


class SeedList(click.ParamType):
    """'0-3,7' -> [0, 1, 2, 3, 7] (inclusive ranges, the official generate.py spelling)."""

    name = "SEEDS"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return parse_seed_list(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


def seeds_option(default: str | None = None, help: str = "Seeds, e.g. '0-3,7' (inclusive ranges)."):
    return click.option("--seeds", type=SeedList(), default=default, show_default=default is not None, help=help)


def outdir_option(help: str, required: bool = True, *aliases: str):
    """--outdir (a folder); `aliases` keep older spellings of a command working (e.g. ganspace's --out)."""
    return click.option("--outdir", *aliases, "outdir", required=required, type=click.Path(file_okay=False),
                        help=help)
