"""Find and load the feature network behind FID/KID (Inception-v3 pool features, 2048-d).

Comparable FID numbers need the exact network StyleGAN2-ADA used: NVIDIA's TorchScript
translation of the 2015-12-05 TensorFlow Inception. No package ships it and it may not be
downloadable where this runs, so the loader never fails hard: without a usable source it
prints one line saying how to provide one and returns None, and callers skip the metric.
Any module mapping uint8 [N, 3, H, W] to float [N, D] works in its place (tests use tiny nets).
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import sys
import warnings

import torch

from stylegan2.download import download, file_sha256

INCEPTION_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt'
INCEPTION_ENV = 'AFRO_FASHION_INCEPTION'
HOW_TO = (f"download {INCEPTION_URL} and set {INCEPTION_ENV}=/path/to/inception-2015-12-05.pt "
          f"(or pass the path/URL explicitly)")


class TorchScriptFeatures(torch.nn.Module):
    """Adapter: the official TorchScript detector returns pool features when asked by keyword."""

    def __init__(self, detector: torch.jit.ScriptModule, fingerprint: str):
        super().__init__()
        self.detector = detector
        self.fingerprint = fingerprint  # keys cached dataset statistics to this exact network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector(images, return_features=True)


def load_feature_net(source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                     device: str | torch.device = 'cpu') -> torch.nn.Module | None:
    """The feature network from a path or URL (default: ${AFRO_FASHION_INCEPTION}); None if unavailable.

    URLs are downloaded once (resumably) into `cache_dir`, by default the project's download
    cache. Only load files you trust: TorchScript archives carry code.
    """
    source = source or os.environ.get(INCEPTION_ENV)
    if not source:
        print(f"FID/KID unavailable: no feature network configured; {HOW_TO}.", file=sys.stderr)
        return None
    source = str(source)
    try:
        if source.startswith(('http://', 'https://')):
            path = download(source, cache_dir)
        else:
            path = pathlib.Path(source).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
        with warnings.catch_warnings():  # the official detector only exists as TorchScript
            warnings.simplefilter('ignore', DeprecationWarning)
            detector = torch.jit.load(str(path), map_location='cpu')
    except Exception as exc:  # network down, 404, corrupt or non-TorchScript file: all mean "skip the metric"
        print(f"FID/KID unavailable: cannot load feature network from {source} ({exc}); {HOW_TO}.", file=sys.stderr)
        return None
    return TorchScriptFeatures(detector, file_sha256(path)).eval().requires_grad_(False).to(device)


def feature_net_fingerprint(net: torch.nn.Module) -> str:
    """Identity of a feature network for cache keys: its file hash, else a hash of its weights."""
    known = getattr(net, 'fingerprint', None)
    if known:
        return str(known)
    digest = hashlib.sha256(type(net).__qualname__.encode())
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
