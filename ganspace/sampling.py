"""Streams of w samples for fitting: seeded, batched, never all held at once."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from stylegan2.render import class_labels, device_of

CLASS_MIX = "mix"


def iter_w(G, num_samples: int, batch_size: int, seed, class_idx=CLASS_MIX) -> Iterator[np.ndarray]:
    """Yield float64 batches [B, w_dim] of untruncated w = mapping(z, c), num_samples in all.

    z comes from one RandomState(seed) stream (seed: an int or a list of ints), so the samples do not depend on the
    batch size.  For conditional networks `class_idx` is an int (one class), a label vector (multi-attribute
    networks) or 'mix' (a uniformly drawn class per sample, from a separate seeded stream).
    """
    z_rng = np.random.RandomState(seed)
    c_rng = np.random.RandomState([*np.atleast_1d(seed).tolist(), 1])
    conditional = int(getattr(G, "c_dim", 0)) > 0
    device = device_of(G)
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        z = torch.from_numpy(z_rng.randn(n, G.z_dim)).float().to(device)
        if not conditional:
            classes = None
        elif isinstance(class_idx, str) and class_idx == CLASS_MIX:   # not a label vector
            classes = c_rng.randint(0, G.c_dim, size=n)
        else:
            classes = class_idx
        with torch.no_grad():
            ws = G.mapping(z, class_labels(G, classes, n), truncation_psi=1.0)
        yield ws[:, 0].double().cpu().numpy()
        done += n
