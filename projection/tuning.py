"""Pivotal tuning (Roich et al. 2021, "Pivotal Tuning for Latent-based Editing of Real Images").

A W code alone rarely reproduces a real photo: the photo is not quite in the generator's range.  Pivotal
tuning keeps the projected code as a pivot and fine-tunes a copy of the synthesis network for a few
hundred Adam steps (the paper: 350 at lr 3e-4) until the pivot renders the photo.  The mapping network is
left untouched, so W keeps its meaning and directions found on the parent network still apply near the
pivot.  (The paper's optional locality regulariser is not implemented: one photo per tuned network.)

The tuned network is saved as its own checkpoint whose metadata names its parent (source and sha256)
and the photo's sha256; the parent's directions file is copied beside it, made for the tuned file.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
from typing import Callable

import torch
import yaml

from projection.projector import ProgressFn, with_noise
from stylegan2 import compiled

TUNED_KEY = "tuned_from"


@dataclasses.dataclass
class TuneOptions:
    num_steps: int = 350
    learning_rate: float = 3e-4

    def __post_init__(self):
        if self.num_steps < 1 or not self.learning_rate > 0:
            raise ValueError("tuning needs at least one step and a positive learning rate")


@dataclasses.dataclass
class Tuned:
    G: torch.nn.Module
    distance_before: float
    distance_after: float
    steps: int
    interrupted: bool = False


def tuning_step(G, distance: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """One step's forward, loss and backward to G's synthesis weights: ``pivot`` -> the distance, detached."""
    def step(pivot: torch.Tensor) -> torch.Tensor:
        loss = distance(G.synthesis(pivot, noise_mode="const")).sum()
        loss.backward()
        return loss.detach()
    return step


def tune(G, ws: torch.Tensor, noise: dict[str, torch.Tensor], distance: Callable[[torch.Tensor], torch.Tensor],
         options: TuneOptions | None = None, progress: ProgressFn | None = None,
         compile: bool | None = False) -> Tuned:
    """Fine-tune a copy of G's synthesis so that ``ws`` [num_ws, w_dim] renders closer to the target.

    ``noise`` (the projection's maps) is written into the copy and kept fixed. G is not modified;
    Ctrl-C stops early and keeps the weights reached. ``compile`` as in ``projection.projector.project``.
    """
    options = options or TuneOptions()
    G = with_noise(copy.deepcopy(G), noise).eval().requires_grad_(False)
    params = [p for p in G.synthesis.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=options.learning_rate)
    pivot = ws.detach().unsqueeze(0)
    with torch.no_grad():
        before = float(distance(G.synthesis(pivot, noise_mode="const")).sum())
    run_step = compiled.compile_step(tuning_step(G, distance), "the tuning step", compile, pivot.device,
                                     images=options.num_steps * compiled.STEP_RENDERS)
    step, interrupted = 0, False
    try:
        for step in range(options.num_steps):
            optimizer.zero_grad(set_to_none=True)
            loss = run_step(pivot)
            optimizer.step()
            if progress is not None:
                progress(step + 1, options.num_steps, float(loss))
        step = options.num_steps
    except KeyboardInterrupt:
        interrupted = True
    G.requires_grad_(False)
    with torch.no_grad():
        after = float(distance(G.synthesis(pivot, noise_mode="const")).sum())
    return Tuned(G=G, distance_before=before, distance_after=after, steps=step, interrupted=interrupted)


def save_tuned(path: str | os.PathLike, tuned: Tuned, parent, target_sha256: str, options: TuneOptions):
    """Write the tuned generator as our checkpoint; ``parent`` is the Model it was tuned from."""
    from stylegan2.checkpoint import save_checkpoint

    meta = {key: parent.meta[key] for key in ("class_names",) if key in (parent.meta or {})}
    meta[TUNED_KEY] = {"network": parent.source, "network_sha256": parent.sha256,
                       "target_sha256": target_sha256, "steps": tuned.steps,
                       "learning_rate": options.learning_rate, "method": "pivotal tuning (Roich et al. 2021)"}
    path = save_checkpoint(path, G_ema=tuned.G, meta=meta)
    copy_parent_directions(parent.source, path)
    return path


def copy_parent_directions(parent_path: str | os.PathLike, tuned_path: pathlib.Path) -> pathlib.Path | None:
    """Give the tuned network its parent's sliders: the parent's directions.yaml, made for the tuned file.

    Tools find a network's directions beside it (``fashion_models.companion_files``) and refuse a file
    made for another network's sha256; the copy names the tuned file's sha256 and points at the
    parent's components and vector files by absolute path.  None when the parent has no directions.
    """
    from fashion_models import companion_files
    from toolkit.atomic import atomic_write_text
    from toolkit.download import file_sha256

    directions_path, _ = companion_files(parent_path)
    if directions_path is None:
        return None
    data = yaml.safe_load(directions_path.read_text())
    if not isinstance(data, dict):
        return None

    def absolute(ref):
        return str((directions_path.parent / ref).resolve()) if isinstance(ref, str) else ref

    data["network_sha256"] = file_sha256(tuned_path)
    if "components" in data:
        data["components"] = absolute(data["components"])
    for direction in data.get("directions") or []:
        if isinstance(direction, dict) and "vector" in direction:
            direction["vector"] = absolute(direction["vector"])
    header = f"# {directions_path} made for the network pivotally tuned from it, {tuned_path.name}\n"
    return atomic_write_text(tuned_path.parent / directions_path.name,
                             header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

