"""The command-line kit (toolkit/cli.py) on every entry point: `-h`, one-line errors for a bad --network,
one device spelling, and the shared options' defaults in each --help."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import dataset_tool
import editor.__main__
import ganspace.__main__
import generate
import project
import stylegan2.convert
import train
from toolkit.cli import UserError, resolve_device
from training import inception

GANSPACE = ganspace.__main__.cli
COMMANDS = {"generate.py": generate.main, "dataset_tool.py": dataset_tool.main, "train.py": train.main,
            "project.py": project.main, "calc_metrics.py": calc_metrics.main, "python -m editor": editor.__main__.main,
            "python -m ganspace": GANSPACE, "python -m stylegan2.convert": stylegan2.convert.main,
            **{f"python -m ganspace {name}": command for name, command in GANSPACE.commands.items()}}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_entry_point_takes_dash_h(name):
    result = CliRunner().invoke(COMMANDS[name], ["-h"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:") and "-h, --help" in result.output


def test_the_inception_tool_takes_dash_h(capsys):
    with pytest.raises(SystemExit) as exit_:
        inception.main(["-h"])
    assert exit_.value.code == 0 and "fetch" in capsys.readouterr().out


def bad_network_calls(tmp_path):
    """(name, command, arguments) for every command that loads a network, given 'nope.pkl' and what else it
    requires."""
    components, directions = tmp_path / "c.npz", tmp_path / "d.yaml"
    components.write_bytes(b"")
    directions.write_text("directions: []\n")
    net, out = ["--network", "nope.pkl"], ["--outdir", str(tmp_path / "out")]
    return [
        ("generate.py", generate.main, net + ["--seeds", "0"] + out),
        ("project.py", project.main, net + ["--target", str(tmp_path / "photo.png")] + out),
        ("calc_metrics.py", calc_metrics.main, net + ["--data", str(tmp_path)]),
        ("python -m editor", editor.__main__.main, net + ["--no-browser"]),
        ("ganspace fit", GANSPACE, ["fit"] + net + ["--out", str(components)]),
        ("ganspace sheets", GANSPACE, ["sheets"] + net + ["--components", str(components)] + out),
        ("ganspace hints", GANSPACE, ["hints"] + net + ["--components", str(components)]),
        ("ganspace template", GANSPACE, ["template"] + net + ["--components", str(components)]),
        ("ganspace validate", GANSPACE, ["validate", "--directions", str(directions)] + net),
        ("ganspace export", GANSPACE, ["export"] + net + ["--directions", str(directions)] + out),
        ("stylegan2.convert", stylegan2.convert.main, ["nope.pkl", str(tmp_path / "net.safetensors")]),
    ]


def test_a_bad_network_is_one_line_on_every_entry_point(tmp_path):
    """Old code: each entry point had its own except clause (generate.py showed a traceback for some files)."""
    for name, command, args in bad_network_calls(tmp_path):
        result = CliRunner().invoke(command, args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (name, result.output)
        assert len(lines) == 1 and lines[0].startswith("Error: cannot find network 'nope.pkl'"), (name, lines)
        assert "default" in lines[0], "the message lists the names it knows"


def test_a_hostile_network_file_is_one_line_too(tmp_path):
    """A file that is no network (here a zip) gets the loader's explanation, not a traceback."""
    fake = tmp_path / "model.pkl"
    fake.write_bytes(b"PK\x03\x04 not really a network")
    result = CliRunner().invoke(generate.main, ["--network", str(fake), "--seeds", "0", "--outdir", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        f"Error: {fake} is neither a .safetensors checkpoint nor an official StyleGAN2-ADA .pkl: it is a zip "
        "archive (a torch.save file or a dataset?)"]


def test_device_spellings_are_the_same_everywhere():
    assert resolve_device("cpu") == "cpu" and resolve_device(" CPU ") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="'gpu' is not a device: use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(UserError, match=f"cuda:{count} was asked for but this machine has"):
        resolve_device(f"cuda:{count}")


@pytest.mark.parametrize("name", ["generate.py", "project.py", "calc_metrics.py", "python -m editor",
                                  "python -m ganspace sheets", "python -m ganspace fit"])
def test_a_wrong_device_is_refused_before_anything_loads(name):
    """Old code: generate.py passed 'gpu' on to torch (a traceback), the studio knew only cpu/cuda."""
    result = CliRunner().invoke(COMMANDS[name], ["--device", "gpu", "--network", "nope.pkl"])
    assert result.exit_code == 2 and "'gpu' is not a device" in result.output, result.output
    assert "cannot find network" not in result.output


def test_old_spellings_still_parse():
    """ganspace sheets/export took --out for their folder; it stays an alias of --outdir."""
    required = {"sheets": ["--components", __file__], "export": ["--directions", __file__]}
    for name, args in required.items():
        ctx = GANSPACE.commands[name].make_context(name, ["--network", "n", *args, "--out", "folder"])
        assert ctx.params["outdir"] == "folder" and ctx.params["device"] in ("cpu", "cuda")


@pytest.mark.parametrize("name, default", [("generate.py", "1.0"), ("calc_metrics.py", "1.0"),
                                           ("python -m ganspace sheets", "0.7"), ("python -m ganspace hints", "0.7"),
                                           ("python -m ganspace export", "0.7")])
def test_trunc_is_documented_with_its_default(name, default):
    text = " ".join(CliRunner().invoke(COMMANDS[name], ["-h"]).output.split())
    assert "--trunc FLOAT Truncation psi" in text and f"[default: {default}]" in text.split("--trunc FLOAT", 1)[1][:400]
    if default != "1.0":
        assert "official generate.py: 1" in text                  # the deliberate difference is explained
