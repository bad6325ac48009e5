"""Find and load the feature network behind FID/KID/precision-recall (Inception-v3 pool features, 2048-d).

The network is our own `training.inception.InceptionV3`, with weights read as data from the FID
detector's TorchScript archive (a path, a URL, ${AFRO_FASHION_INCEPTION}, or the file that
`python -m training.inception fetch` puts in the cache). The loader never fails hard: without a
usable file it prints one line saying how to get one and returns None, and callers skip the
metric. Any module mapping uint8 [N, 3, H, W] to float [N, D] works in its place (tests use tiny nets).
"""
from __future__ import annotations

import hashlib
import os
import sys

import torch

from toolkit.download import download
from training.inception import FETCH_HINT, INCEPTION_ENV, find_inception, load_inception

HOW_TO = FETCH_HINT
__all__ = ["HOW_TO", "INCEPTION_ENV", "feature_net_fingerprint", "load_feature_net"]


def load_feature_net(source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                     device: str | torch.device = "cpu") -> torch.nn.Module | None:
    """Our Inception-v3 from a path or URL (default: $AFRO_FASHION_INCEPTION, then the fetched file); None if unavailable.

    URLs are downloaded once (resumably) into `cache_dir`, by default the project's download
    cache. Nothing in the file is executed, whatever its origin.
    """
    source = str(source) if source else os.environ.get(INCEPTION_ENV)
    path = None
    try:
        if source and source.startswith(("http://", "https://")):
            path = download(source, cache_dir)
        else:
            path = find_inception(source)
            if path is None:
                print(f"FID/KID unavailable: no Inception-v3 weights found; {HOW_TO}.", file=sys.stderr)
                return None
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
        return load_inception(path, device)
    except Exception as exc:  # network down, 404, corrupt or foreign file: all mean "skip the metric"
        print(f"FID/KID unavailable: cannot load Inception-v3 from {source or path} ({exc}); {HOW_TO}.",
              file=sys.stderr)
        return None


def feature_net_fingerprint(net: torch.nn.Module) -> str:
    """Identity of a feature network for cache keys: its own fingerprint, else a hash of its weights."""
    known = getattr(net, "fingerprint", None)
    if known:
        return str(known)
    digest = hashlib.sha256(type(net).__qualname__.encode())
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
