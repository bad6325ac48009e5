"""Orchestrate source -> clean -> frame -> dedupe -> label -> write, with a full report.

Workers decode and frame photos in parallel; this process decides, in sorted
source order, what is a duplicate and what gets written, so the output is the
same for any number of workers.
"""
from __future__ import annotations

import dataclasses
import io
import json
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from stylegan2.labels import LabelLayout
from stylegan2.shapes import parse_resolution

from .attributes import load_vocabulary
from .cleaning import CleanOptions, NearDuplicateIndex, Rejected, content_hash, decode_image, fingerprint
from .colour import Palette, measure_colour, vocabulary_palette
from .framing import TRANSFORMS, frame_image
from .metadata import load_metadata
from .parallel import ordered_map
from .report import Report
from .sources import READ_ERRORS, Source, SourceError, Unreadable, is_hidden, is_image_name
from .writer import DatasetWriter, DestinationError, archive_name, inside

FOLDER_ATTRIBUTE = "folder"      # pseudo-attribute: the photo's parent folder name
UNKNOWN_CLASS = "unknown"
CLASS_JOINER = " / "             # class name when --cond-attr combines attributes (without --multi-hot)
DERIVED_COLOUR = "colour"        # the one attribute --derive-colour measures on the image
MIN_DECODE_SIZE = 64             # JPEGs decode at reduced scale, never below this: keeps the hash stable


@dataclass
class BuildOptions:
    source: str
    dest: str
    resolution: int | str = 256              # square side, or "HEIGHTxWIDTH" (e.g. "256x192")
    transform: str = "pad"
    channels: int = 3
    background: tuple | None = None          # None: estimated from each photo's border
    min_size: int | None = None              # None: half the frame's short side
    max_aspect: float = 4.0                  # 0 disables
    max_pixels: int = 100_000_000
    max_file_mb: float = 200.0
    exif_rotate: bool = True
    dedupe: bool = True
    near_threshold: int = 6                  # Hamming bits; -1 disables near-duplicate detection
    near_colour_tolerance: int = 20          # and at most this difference on the 4x4 colour thumbnail
    max_images: int | None = None
    shuffle: bool = False
    seed: int = 0
    metadata: str | None = None
    metadata_file_column: str | None = None
    vocabulary: str | None = None
    cond_attr: tuple[str, ...] = ()
    label_from_folder: bool = False
    unlabelled: str = "drop"                 # or "unknown"
    multi_hot: bool = False                  # one one-hot block per --cond-attr attribute instead of one class
    derive_colour: bool = False              # measure the garment colour where the text names none
    workers: int = 1
    overwrite: bool = False
    exclude: str | None = None               # text file of source paths to leave out (a held-out split)
    png_compress_level: int = 3             # 2x faster than zlib's 6 for ~3% larger files

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the output images."""
        return parse_resolution(self.resolution)

    def validate(self, attribute_names) -> None:
        try:
            self.shape
        except ValueError as exc:
            raise ValueError(f"--resolution: {exc}") from None
        if self.transform not in TRANSFORMS:
            raise ValueError(f"--transform must be one of {', '.join(TRANSFORMS)}")
        if self.channels not in (1, 3):
            raise ValueError("--channels must be 1 (grey) or 3 (RGB)")
        if self.unlabelled not in ("drop", "unknown"):
            raise ValueError("--unlabelled must be 'drop' or 'unknown'")
        allowed = set(attribute_names) | {FOLDER_ATTRIBUTE}
        for name in self.cond_attr:
            if name not in allowed:
                raise ValueError(f"--cond-attr {name!r} is not an attribute; choose from {', '.join(sorted(allowed))}")
        if FOLDER_ATTRIBUTE in self.cond_attr and not self.label_from_folder:
            raise ValueError(f"--cond-attr {FOLDER_ATTRIBUTE} needs --label-from-folder")
        if self.multi_hot and not self.cond_attr:
            raise ValueError("--multi-hot needs --cond-attr, e.g. --cond-attr garment,fabric,colour")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError("--max-images must be at least 1")


@dataclass
class Processed:
    """What a worker sends back for one file: a rejection reason, or the framed PNG and fingerprints."""
    rel_path: str
    reason: str | None = None
    detail: str = ""
    png: bytes = b""
    content: str = ""
    phash: int = 0
    colour: bytes = b""
    measured_colour: str | None = None       # --derive-colour: the garment colour seen on the framed image


_worker: dict = {}


def _init_worker(source: Source, clean: CleanOptions, options: BuildOptions, palette: Palette | None) -> None:
    _worker.update(source=source, clean=clean, options=options, palette=palette)


def process_file(rel_path: str) -> Processed:
    """Read, decode, normalise and frame one photo (runs in a worker)."""
    source, clean, options = _worker["source"], _worker["clean"], _worker["options"]
    try:
        try:
            data = source.read_bytes(rel_path, int(options.max_file_mb * 1e6))
        except Unreadable as exc:
            limit = f" > --max-file-mb {options.max_file_mb:g}" if exc.reason == "file_too_large" else ""
            raise Rejected(exc.reason, exc.detail + limit) from None
        except READ_ERRORS as exc:  # vanished, dangling link, bad CRC, corrupt deflate stream, ...
            raise Rejected("unreadable", f"{type(exc).__name__}: {exc}") from None
        image = decode_image(data, clean)
    except Rejected as rejected:
        return Processed(rel_path, rejected.reason, rejected.detail)
    framed = frame_image(image, options.shape, options.transform, options.background)
    buffer = io.BytesIO()
    framed.save(buffer, format="PNG", compress_level=options.png_compress_level)
    phash, colour = fingerprint(image)
    palette = _worker["palette"]
    return Processed(rel_path, png=buffer.getvalue(), content=content_hash(image), phash=phash, colour=colour,
                     measured_colour=measure_colour(framed, palette) if palette is not None else None)


class Labeller:
    """Attributes, caption and class for each photo, from metadata text, explicit columns and folders."""

    def __init__(self, options: BuildOptions):
        self.vocabulary = load_vocabulary(options.vocabulary)
        options.validate(self.vocabulary.attributes)
        self.metadata = (load_metadata(options.metadata, options.metadata_file_column)
                         if options.metadata else None)
        self.options = options
        self.unrecognised: dict[str, dict[str, int]] = {}
        self.photos_without_row = 0
        self.palette = vocabulary_palette(self.vocabulary, DERIVED_COLOUR) if options.derive_colour else None
        if self.palette is not None and not self.palette.names:
            raise ValueError(f"--derive-colour needs reference colours: give the {DERIVED_COLOUR} values of "
                             f'{self.vocabulary.source} an rgb: "#rrggbb" entry')

    @property
    def attribute_names(self) -> list[str]:
        names = list(self.vocabulary.attributes)
        return names + [FOLDER_ATTRIBUTE] if self.options.label_from_folder else names

    def describe(self, rel_path: str) -> dict[str, str]:
        attributes: dict[str, str] = {}
        row = self.metadata.lookup(rel_path) if self.metadata else None
        if self.metadata and row is None:
            self.photos_without_row += 1
        if row is not None:
            attributes.update(self.vocabulary.extract(self.metadata.text(row)))
            for name in self.vocabulary.attributes:
                raw = row.get(name)
                if raw in (None, ""):
                    continue
                key = self.vocabulary.normalize_value(name, raw)
                if key:
                    attributes[name] = key   # an explicit column beats words in the title
                else:
                    counts = self.unrecognised.setdefault(name, {})
                    counts[str(raw)] = counts.get(str(raw), 0) + 1
        folder = rel_path.rsplit("/", 2)[-2] if "/" in rel_path else None
        if self.options.label_from_folder and folder:
            for name, key in self.vocabulary.extract(folder).items():
                attributes.setdefault(name, key)
            attributes[FOLDER_ATTRIBUTE] = folder
        return attributes

    def class_name(self, attributes: dict[str, str]) -> str | None:
        """The conditioning class; UNKNOWN_CLASS or None (drop) when an attribute is missing.
        With --multi-hot there is no class: None (drop) only when every --cond-attr attribute is missing."""
        values = [attributes.get(name) for name in self.options.cond_attr]
        if self.options.multi_hot:
            return UNKNOWN_CLASS if any(values) or self.options.unlabelled == "unknown" else None
        if all(values):
            return CLASS_JOINER.join(values)
        return UNKNOWN_CLASS if self.options.unlabelled == "unknown" else None

    def layout(self, rows: list[dict[str, str | None]]) -> LabelLayout:
        """One block per --cond-attr attribute with the values the written images have, in vocabulary order."""
        blocks = []
        for name in self.options.cond_attr:
            seen = {row[name] for row in rows if row.get(name)}
            known = self.vocabulary.attributes.get(name, {})
            values = [key for key in known if key in seen] + sorted(seen - set(known))   # folder names: sorted
            if not values:
                raise ValueError(f"--multi-hot: no written image has a {name} value; leave {name} out of --cond-attr")
            blocks.append((name, values, [known[v].caption if v in known else v for v in values]))
        return LabelLayout.build(blocks)

    def metadata_summary(self) -> dict | None:
        if not self.metadata:
            return None
        return {"file": str(self.options.metadata), "rows": len(self.metadata.rows),
                "rows_matched": len(self.metadata.matched), "photos_without_row": self.photos_without_row,
                "file_column": self.metadata.file_column, "text_columns": self.metadata.text_columns,
                "attribute_columns": [n for n in self.vocabulary.attributes if n in self.metadata.columns],
                "unrecognised_values": self.unrecognised}


def _settings(options: BuildOptions) -> dict:
    return {key: (list(value) if isinstance(value, tuple) else value)
            for key, value in dataclasses.asdict(options).items()}


def build_dataset(options: BuildOptions, progress: bool = True) -> Report:
    """Build the dataset at options.dest and return the report (also stored as report.json inside)."""
    started = time.perf_counter()
    if options.label_from_folder and not options.cond_attr:
        options = dataclasses.replace(options, cond_attr=(FOLDER_ATTRIBUTE,))
    options = dataclasses.replace(options, cond_attr=tuple(options.cond_attr))
    report = Report(_settings(options))
    labeller = Labeller(options)
    source = Source(options.source)
    if source.contains(options.dest):
        raise SourceError(f"--dest {options.dest} is inside --source; choose a path outside it (the source is never modified)")
    for flag, path in (("--source", options.source), ("--metadata", options.metadata),
                       ("--vocabulary", options.vocabulary)):
        if path and inside(path, options.dest):
            raise DestinationError(f"{flag} {path} lies inside --dest {options.dest}: writing the dataset would "
                                   "delete it; choose a --dest outside it")
    clean = CleanOptions(
        channels=options.channels, background=options.background,
        min_size=min(options.shape) // 2 if options.min_size is None else options.min_size,
        max_aspect=options.max_aspect, max_pixels=options.max_pixels,
        exif_rotate=options.exif_rotate, draft_size=max(*options.shape, MIN_DECODE_SIZE))

    candidates = _scan(source, options, report)

    exact_seen: dict[str, str] = {}
    near_index = (NearDuplicateIndex(options.near_threshold, options.near_colour_tolerance)
                  if options.near_threshold >= 0 else None)
    labels: list[tuple[str, str]] = []
    rows: list[dict[str, str | None]] = []   # --multi-hot: each written image's --cond-attr values
    processed = 0
    with DatasetWriter(options.dest, options.overwrite) as writer:
        sidecar_path = writer.scratch / "attributes.jsonl"
        with open(sidecar_path, "w", encoding="utf-8") as sidecar, \
                tqdm(total=len(candidates), unit="img", disable=not progress, desc="dataset_tool") as bar:
            for result in ordered_map(process_file, candidates, options.workers, _init_worker,
                                      (source, clean, options, labeller.palette)):
                processed += 1
                bar.update(1)
                if result.reason:
                    report.drop(result.rel_path, result.reason, result.detail)
                    continue
                if options.dedupe and result.content in exact_seen:
                    report.duplicate(result.rel_path, exact_seen[result.content], exact=True)
                    continue
                near = near_index.find(result.phash, result.colour) if near_index else None
                if near:
                    report.duplicate(result.rel_path, near[0], exact=False, distance=near[1])
                    continue
                attributes = labeller.describe(result.rel_path)
                derived = []
                if result.measured_colour and not attributes.get(DERIVED_COLOUR):
                    attributes[DERIVED_COLOUR] = result.measured_colour
                    derived.append(DERIVED_COLOUR)
                class_name = labeller.class_name(attributes) if options.cond_attr else None
                if options.cond_attr and class_name is None:
                    report.drop(result.rel_path, "no_label", f"no {' + '.join(options.cond_attr)} found")
                    continue
                fname = archive_name(report.written)
                writer.add(fname, result.png)
                exact_seen.setdefault(result.content, result.rel_path)
                if near_index:
                    near_index.add(result.phash, result.colour, result.rel_path)
                record = {"fname": fname, "source": result.rel_path, "attributes": attributes,
                          "caption": labeller.vocabulary.caption(attributes)}
                if derived:
                    record["derived"] = derived   # measured on the image, not read from text
                if options.multi_hot:
                    rows.append({name: attributes.get(name) for name in options.cond_attr})
                    labels.append((fname, ""))
                    class_name = None
                elif class_name is not None:
                    record["class"] = class_name
                    labels.append((fname, class_name))
                sidecar.write(json.dumps(record, ensure_ascii=False) + "\n")
                report.keep(attributes, class_name, labeller.attribute_names, derived)
                if options.max_images and report.written >= options.max_images:
                    break
        for rel_path in candidates[processed:]:
            report.drop(rel_path, "max_images", f"--max-images {options.max_images} reached")
        writer.add_file("attributes.jsonl", sidecar_path)
        dataset_json = (_multi_hot_json(labels, rows, labeller.layout(rows), options.cond_attr, options.shape)
                        if options.multi_hot else _dataset_json(labels, options.cond_attr, options.shape))
        writer.add("dataset.json", json.dumps(dataset_json, ensure_ascii=False).encode())
        report.metadata = labeller.metadata_summary()
        report.seconds = time.perf_counter() - started
        writer.add("report.json", json.dumps(report.to_dict(), indent=1, ensure_ascii=False).encode())
    return report


def _scan(source: Source, options: BuildOptions, report: Report) -> list[str]:
    """Image files in processing order (sorted, or seeded-shuffled); the rest are reported as ignored."""
    candidates = []
    names = source.list_files()
    report.files_found = len(names)
    excluded = read_exclude_list(options.exclude) if options.exclude else set()
    for name in names:
        if name in excluded:
            report.drop(name, "excluded", f"listed in {options.exclude}")
        elif is_hidden(name):
            report.drop(name, "hidden")
        elif not is_image_name(name):
            report.drop(name, "not_image_extension")
        else:
            candidates.append(name)
    if options.shuffle:
        np.random.RandomState(options.seed).shuffle(candidates)
    return candidates


def read_exclude_list(path: str) -> set[str]:
    """Source-relative paths, one per line ('#' starts a comment), e.g. photos held out for evaluation."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.split("#", 1)[0].strip() for line in f]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--exclude {path}: cannot read it as a text list of paths ({exc})") from None
    return {line.replace("\\", "/") for line in lines if line}


def _dataset_json(labels: list[tuple[str, str]], cond_attr: tuple[str, ...], shape: tuple[int, int]) -> dict:
    """The official {"labels": [[fname, class_index], ...]} plus our class list and, when not square, the
    [height, width] of every image (the official loader ignores both; it cannot train non-square sets)."""
    shape_entry = _shape_entry(shape)
    if not cond_attr:
        return {"labels": None, **shape_entry}
    names = sorted({name for _, name in labels} - {UNKNOWN_CLASS})
    if any(name == UNKNOWN_CLASS for _, name in labels):
        names.append(UNKNOWN_CLASS)
    index = {name: i for i, name in enumerate(names)}
    return {"labels": [[fname, index[name]] for fname, name in labels],
            "class_names": names, "cond_attr": list(cond_attr), **shape_entry}


def _shape_entry(shape: tuple[int, int]) -> dict:
    """dataset.json records a non-square shape (square sets stay as the official tools write them)."""
    return {} if shape[0] == shape[1] else {"image_shape": list(shape)}


def _multi_hot_json(labels: list[tuple[str, str]], rows: list[dict], layout: LabelLayout, cond_attr,
                    shape: tuple[int, int]) -> dict:
    """{"labels": [[fname, [0., 1., ...]], ...]} plus the block layout. The official loader reads such rows as
    float32 label vectors (np.array of the lists is 2-D) and ignores the layout."""
    vectors = [layout.encode(row).tolist() for row in rows] if rows else []
    return {"labels": [[fname, vector] for (fname, _), vector in zip(labels, vectors)],
            "label_layout": layout.to_json(), "cond_attr": list(cond_attr), **_shape_entry(shape)}
