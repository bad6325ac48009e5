"""Read a titles/descriptions table (CSV, JSON or JSONL) and find each photo's row.

Marketplace exports name photos in many ways (relative paths, bare file names,
full URLs), so rows are matched by relative path first, then by file name.
"""
from __future__ import annotations

import csv
import json
import pathlib
import urllib.parse

FILE_COLUMNS = ("file", "filename", "file_name", "fname", "image", "image_name", "image_file",
                "image_path", "path", "img", "image_url", "url")
TEXT_COLUMNS = ("title", "name", "product_name", "product_title", "description", "product_description",
                "caption", "text", "details", "desc", "tags", "category")


class MetadataError(ValueError):
    """The metadata file cannot be used; the message says what to fix."""


def _file_key(value) -> str:
    text = str(value).strip().replace("\\", "/")
    if "://" in text:
        text = urllib.parse.unquote(urllib.parse.urlparse(text).path)
    while text.startswith("./"):
        text = text[2:]
    return text.lstrip("/")


class Metadata:
    """Rows keyed by file; ``lookup`` gives the row of a source photo or None."""

    def __init__(self, rows: list[dict], file_column: str | None = None, source: str = "<rows>"):
        rows = [{str(k).strip().lower(): v for k, v in row.items() if k is not None} for row in rows]
        columns = set().union(*(row.keys() for row in rows)) if rows else set()
        if file_column is None:
            file_column = next((c for c in FILE_COLUMNS if c in columns), None)
        file_column = file_column.lower() if file_column else None
        if file_column not in columns:
            raise MetadataError(f"{source}: no file-name column found among {sorted(columns)}; "
                                f"pass --metadata-file-column NAME")
        self.source = source
        self.file_column = file_column
        self.text_columns = [c for c in TEXT_COLUMNS if c in columns]
        self.columns = columns
        self.rows = rows
        self._by_path: dict[str, int] = {}
        by_name: dict[str, list[int]] = {}
        for index, row in enumerate(rows):
            key = _file_key(row.get(file_column) or "")
            if key:
                self._by_path.setdefault(key, index)
                by_name.setdefault(key.rsplit("/", 1)[-1], []).append(index)
        self._by_name = {name: hits[0] for name, hits in by_name.items() if len(set(hits)) == 1}
        self.matched: set[int] = set()

    def lookup(self, rel_path: str) -> dict | None:
        index = self._by_path.get(rel_path, self._by_name.get(rel_path.rsplit("/", 1)[-1]))
        if index is None:
            return None
        self.matched.add(index)
        return self.rows[index]

    def text(self, row: dict) -> str:
        return " . ".join(str(row[c]) for c in self.text_columns if row.get(c) not in (None, ""))


def load_metadata(path: str | pathlib.Path, file_column: str | None = None) -> Metadata:
    path = pathlib.Path(path)
    if not path.is_file():
        raise MetadataError(f"--metadata {path} not found")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MetadataError(f"--metadata {path}: not UTF-8 text ({exc})") from None
    try:
        if suffix == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
        elif suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif suffix == ".json":
            data = json.loads(text)
            if isinstance(data, dict):   # {"photo.jpg": {"title": ...}, ...}
                file_column = file_column or "file"
                rows = [{**(fields if isinstance(fields, dict) else {"title": fields}), file_column: name}
                        for name, fields in data.items()]
            else:
                rows = data
        else:
            raise MetadataError(f"--metadata {path}: use a .csv, .json or .jsonl file")
    except (json.JSONDecodeError, csv.Error) as exc:
        raise MetadataError(f"--metadata {path}: cannot parse ({exc})") from None
    except RecursionError:
        raise MetadataError(f"--metadata {path}: nested too deeply; expected one record per photo") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise MetadataError(f"--metadata {path}: every record must be an object with named fields")
    for number, row in enumerate(rows, 1):
        for key, value in row.items():
            if key is not None and not isinstance(value, (str, int, float, bool, type(None))):
                raise MetadataError(f"--metadata {path}: record {number}, field {str(key)[:40]!r} is a "
                                    f"{type(value).__name__}; fields must be text or numbers")
    return Metadata(rows, file_column, source=str(path))
