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
import tempfile
import warnings

import torch

INCEPTION_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt'
INCEPTION_ENV = 'AFRO_FASHION_INCEPTION'
CACHE_ENV = 'AFRO_FASHION_CACHE'
HOW_TO = (f"download {INCEPTION_URL} and set {INCEPTION_ENV}=/path/to/inception-2015-12-05.pt "
          f"(or pass the path/URL explicitly)")


def cache_root() -> pathlib.Path:
    """Where downloads and dataset statistics go: $AFRO_FASHION_CACHE or ~/.cache/afro-fashion-gan."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / '.cache' / 'afro-fashion-gan')


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


class TorchScriptFeatures(torch.nn.Module):
    """Adapter: the official TorchScript detector returns pool features when asked by keyword."""

    def __init__(self, detector: torch.jit.ScriptModule, fingerprint: str):
        super().__init__()
        self.detector = detector
        self.fingerprint = fingerprint  # keys cached dataset statistics to this exact network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector(images, return_features=True)


def _download(url: str, cache_dir: pathlib.Path, timeout: float) -> pathlib.Path:
    import requests

    target = cache_dir / url.rstrip('/').rsplit('/', 1)[-1]
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with requests.get(url, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        with tempfile.NamedTemporaryFile(dir=cache_dir, delete=False, suffix='.part') as tmp:
            for chunk in response.iter_content(1 << 20):
                tmp.write(chunk)
    os.replace(tmp.name, target)  # a half-finished download never looks like a network
    return target


def load_feature_net(source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                     device: str | torch.device = 'cpu', timeout: float = 30.0) -> torch.nn.Module | None:
    """The feature network from a path or URL (default: ${AFRO_FASHION_INCEPTION}); None if unavailable.

    URLs are downloaded once into `cache_dir` (default: the cache root). Only load files you trust:
    TorchScript archives carry code.
    """
    source = source or os.environ.get(INCEPTION_ENV)
    if not source:
        print(f"FID/KID unavailable: no feature network configured; {HOW_TO}.", file=sys.stderr)
        return None
    source = str(source)
    try:
        if source.startswith(('http://', 'https://')):
            path = _download(source, pathlib.Path(cache_dir) if cache_dir else cache_root() / 'downloads', timeout)
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
