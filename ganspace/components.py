"""The components file: principal directions of W with their scale, saved as .npz.

Keys are those GANSpace uses (`lat_comp`, `lat_mean`, `lat_stdev`, `var_ratio`) so its
users can read our files, plus `meta_json` for provenance (network hash, N, seed, method).
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field

import numpy as np

from toolkit.atomic import atomic_write


@dataclass
class Components:
    """Unit-norm directions in W (rows of `comp`), sorted by importance."""
    comp: np.ndarray        # [K, w_dim]
    mean: np.ndarray        # [w_dim]
    stdev: np.ndarray       # [K]  std of projections of fresh samples onto each direction
    var_ratio: np.ndarray   # [K]  scores: variance shares (PCA family), eigenvalue shares (SeFa); score_meaning
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.comp = np.asarray(self.comp, dtype=np.float32)
        self.comp = self.comp.reshape(self.comp.shape[0], -1)   # GANSpace stores [K, 1, w_dim]
        self.mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        self.stdev = np.asarray(self.stdev, dtype=np.float32).reshape(-1)
        self.var_ratio = np.asarray(self.var_ratio, dtype=np.float32).reshape(-1)
        k, w_dim = self.comp.shape
        if self.mean.shape != (w_dim,) or self.stdev.shape != (k,) or self.var_ratio.shape != (k,):
            raise ValueError(f"inconsistent components: comp {self.comp.shape}, mean {self.mean.shape}, "
                             f"stdev {self.stdev.shape}, var_ratio {self.var_ratio.shape}")

    @property
    def num_components(self) -> int:
        return self.comp.shape[0]

    @property
    def w_dim(self) -> int:
        return self.comp.shape[1]

    @property
    def score_meaning(self) -> str:
        """What `var_ratio` holds for this file's method (GANSpace's own files: variance shares)."""
        return self.meta.get("var_ratio_meaning", "share of the total variance of W captured by each direction")

    def score_label(self, index: int) -> str:
        """Direction `index`'s score in a few words for sliders and sheets ('' when the file has none)."""
        value = float(self.var_ratio[index])
        if not np.isfinite(value):
            return ""
        what = "of the style affines' energy" if self.meta.get("method") == "sefa" else "of variance"
        return f"{value:.1%} {what}"

    def save(self, path) -> None:
        """Write atomically, so an interrupted fit never leaves a half file behind."""
        def write(tmp: pathlib.Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, lat_comp=self.comp, lat_mean=self.mean, lat_stdev=self.stdev,
                         var_ratio=self.var_ratio, meta_json=np.array(json.dumps(self.meta)))

        atomic_write(path, write)


def load_components(path) -> Components:
    """Read our files and GANSpace's own `.npz` dumps (which have no meta)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"components file {path} not found; create it with `python -m ganspace fit`")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("lat_comp", "lat_mean", "lat_stdev") if k not in data]
        if missing:
            raise ValueError(f"{path} is not a components file: missing {', '.join(missing)}")
        comp = data["lat_comp"]
        var_ratio = data["var_ratio"] if "var_ratio" in data else np.full(comp.shape[0], np.nan)
        meta = json.loads(str(data["meta_json"])) if "meta_json" in data else {}
        return Components(comp, data["lat_mean"], data["lat_stdev"], var_ratio, meta)
