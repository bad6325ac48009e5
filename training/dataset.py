"""Training-set loader for dataset_tool output, the official StyleGAN2-ADA layout, or a plain folder.

Reads images lazily (one file per __getitem__), so a 100k-image zip costs only
its file list in memory; each DataLoader worker process opens its own zip handle.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import zipfile

import numpy as np
from PIL import Image

from stylegan2.labels import LabelLayout, LabelLayoutError, layout_from_meta
from stylegan2.shapes import network_shape

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


class DatasetError(ValueError):
    """The dataset cannot be used for training; the message says what to fix."""


class ImageDataset:
    """uint8 images [C, H, W]: square, or a portrait/landscape shape a network can draw (`resolution` is the
    longer side, `base_shape` the network's (h0, w0)); with optional labels: one-hot classes (integer labels
    in dataset.json) or float vectors (multi-hot attribute blocks, described by dataset.json's label_layout)."""

    def __init__(self, path, use_labels: bool = False, xflip: bool = False, max_size: int | None = None,
                 seed: int = 0):
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise DatasetError(f"dataset {self.path} not found; build one with dataset_tool.py")
        self.name = self.path.stem if self.path.is_file() else self.path.name
        self._is_zip = self.path.is_file()
        if self._is_zip and not zipfile.is_zipfile(self.path):
            raise DatasetError(f"{self.path} is neither a folder nor a zip")
        self._zip = None
        self._zip_pid = None
        fnames = sorted(n for n in self._all_names() if pathlib.PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS)
        if not fnames:
            raise DatasetError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {self.path}")
        self._meta = self._read_dataset_json()
        all_labels = self._labels_for(fnames) if use_labels else None
        order = np.arange(len(fnames))
        if max_size is not None and max_size < len(order):
            order = np.sort(np.random.RandomState(seed).permutation(order)[:max_size])
        self._fnames = [fnames[i] for i in order]
        self._labels = all_labels[order] if all_labels is not None else np.zeros([len(order), 0], np.float32)
        self._xflip = xflip
        first = self._load_raw(0)
        self.num_channels, self.height, self.width = first.shape
        try:
            self.resolution, self.base_shape = network_shape(self.height, self.width)
        except ValueError as exc:
            raise DatasetError(f"{self._fnames[0]}: {exc}; dataset_tool.py --resolution 256 (or 256x192, ...) "
                               f"frames photos so") from None
        recorded = self._meta.get("image_shape") if isinstance(self._meta, dict) else None
        if recorded is not None and list(recorded) != [self.height, self.width]:
            raise DatasetError(f"dataset.json says the images are {recorded[0]}x{recorded[1]} (HxW), but "
                               f"{self._fnames[0]} is {self.height}x{self.width}; rebuild it with dataset_tool.py")
        names = self._meta.get("class_names") if isinstance(self._meta, dict) else None
        self.class_names = list(names) if names and self.label_dim == len(names) else None
        self.label_layout = self._layout() if use_labels else None

    def _layout(self) -> LabelLayout | None:
        try:
            layout = layout_from_meta(self._meta if isinstance(self._meta, dict) else None)
        except LabelLayoutError as exc:
            raise DatasetError(f"dataset.json: {exc}") from None
        if layout is not None and layout.dim != self.label_dim:
            raise DatasetError(f"dataset.json: its label_layout has {layout.dim} entries but the labels "
                               f"{self.label_dim}; rebuild with dataset_tool.py --multi-hot")
        return layout

    # --- public properties (official names) ---------------------------------------------------
    @property
    def label_dim(self) -> int:
        return self._labels.shape[1]

    @property
    def has_labels(self) -> bool:
        return self.label_dim > 0

    @property
    def image_shape(self) -> list[int]:
        return [self.num_channels, self.height, self.width]

    @property
    def labels(self) -> np.ndarray:
        """All labels [len(self), label_dim], mirrored half included."""
        return np.concatenate([self._labels, self._labels]) if self._xflip else self._labels

    @property
    def image_names(self) -> list[str]:
        """The selected files (after --max-size sampling), mirrored half not repeated."""
        return list(self._fnames)

    def __len__(self) -> int:
        return len(self._fnames) * (2 if self._xflip else 1)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        raw_index = index % len(self._fnames)
        image = self._load_raw(raw_index)
        if list(image.shape) != self.image_shape:
            raise DatasetError(f"{self._fnames[raw_index]} is {list(image.shape)}, expected {self.image_shape}; "
                               f"rebuild the dataset with dataset_tool.py")
        if index >= len(self._fnames):
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self._labels[raw_index].copy()

    def get_label(self, index: int) -> np.ndarray:
        return self._labels[index % len(self._fnames)].copy()

    def fingerprint(self) -> dict:
        """What identifies this dataset's content cheaply (names, sizes, zip CRCs or a sample of a folder's
        files, labels), to compare the copies that several nodes read; reading every image would take an epoch."""
        h = hashlib.sha256()
        sizes = self._stored_sizes()
        for name in self._fnames:
            h.update(f"{name}\0{sizes.get(name)}\n".encode())
        if not self._is_zip:  # a zip's CRCs cover the content; in a folder, read a sample of the files
            for name in self._fnames[::max(len(self._fnames) // 16, 1)]:
                with self._open(name) as f:
                    h.update(f.read(1 << 16))
        return {"images": len(self), "shape": [self.height, self.width], "channels": self.num_channels,
                "label_dim": self.label_dim, "files": h.hexdigest(),
                "labels": hashlib.sha256(np.ascontiguousarray(self._labels).tobytes()).hexdigest()}

    def _stored_sizes(self) -> dict:
        if self._is_zip:
            return {i.filename: (i.file_size, i.CRC) for i in self._archive().infolist()}
        return {name: (self.path / name).stat().st_size for name in self._fnames}

    # --- storage ---------------------------------------------------------------------------
    def _all_names(self) -> list[str]:
        if self._is_zip:
            return [n for n in self._archive().namelist() if not n.endswith("/")]
        return [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def _open(self, name: str):
        return self._archive().open(name) if self._is_zip else open(self.path / name, "rb")

    def _read_dataset_json(self) -> dict | None:
        try:
            with self._open("dataset.json") as f:
                return json.load(f)
        except (KeyError, FileNotFoundError):
            return None

    def _labels_for(self, fnames: list[str]) -> np.ndarray | None:
        """Label rows from dataset.json (None when the dataset has no labels), read as the official loader does:
        integers are class indices (one-hot rows), lists of numbers are label vectors used as they are."""
        pairs = self._meta.get("labels") if isinstance(self._meta, dict) else None
        if not pairs:
            return None
        by_name = {str(name).replace("\\", "/"): value for name, value in pairs}
        missing = [f for f in fnames if f not in by_name]
        if missing:
            raise DatasetError(f"dataset.json has no label for {missing[0]} (and {len(missing) - 1} more); "
                               f"rebuild with dataset_tool.py --cond-attr or train without labels")
        try:
            indices = np.array([by_name[f] for f in fnames])
        except ValueError:   # ragged lists
            indices = np.array([], dtype=object)
        if indices.ndim == 2 and indices.shape[1] > 0 and np.issubdtype(indices.dtype, np.number) \
                and np.isfinite(indices).all():
            return indices.astype(np.float32)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise DatasetError("dataset.json labels must be integer class indices or equally long lists of numbers")
        num_classes = max(int(indices.max()) + 1, len(self._meta.get("class_names") or []))
        return np.eye(num_classes, dtype=np.float32)[indices]

    def _load_raw(self, raw_index: int) -> np.ndarray:
        with self._open(self._fnames[raw_index]) as f:
            image = Image.open(f)
            image.load()
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        pixels = np.asarray(image)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        return pixels.transpose(2, 0, 1)

    def __getstate__(self):
        # An open zip handle cannot be pickled into DataLoader workers; each reopens its own.
        return {**self.__dict__, "_zip": None, "_zip_pid": None}


class InfiniteSampler:
    """Endless reshuffled epochs, rank r taking every world-th index; restartable at any `position`.

    The order is a pure function of (seed, epoch), so the sampler state is just the number of indices
    this rank has consumed, which the loop advances itself (DataLoader prefetching runs ahead of it).
    A DataLoader takes any iterable of indices as its sampler.
    """

    def __init__(self, size: int, rank: int = 0, num_replicas: int = 1, seed: int = 0):
        if size < 1:
            raise ValueError("the dataset is empty")
        self.size, self.rank, self.num_replicas, self.seed = size, rank, num_replicas, seed
        self.position = 0

    def __iter__(self):
        epoch, order = -1, None
        k = self.position
        while True:
            global_pos = k * self.num_replicas + self.rank
            if global_pos // self.size != epoch:
                epoch = global_pos // self.size
                order = np.random.RandomState((self.seed + epoch) % 2 ** 32).permutation(self.size)
            yield int(order[global_pos % self.size])
            k += 1
