"""The directions file: human-labelled directions in YAML, validated with line numbers.

Example (ranges are inclusive; `layers` takes a group name all/coarse/middle/fine too):

    network_sha256: 3f2a...            # sha256 of the network file these were found on
    components: components.npz         # relative to this file
    directions:
      - name: sleeve-length
        description: short to long sleeves
        component: 3                   # or  vector: sleeves.npy  (a [w_dim] .npy or an inline list)
        layers: 0-3
        mode: add                      # add | absolute
        sigma: 1.7                     # optional with a component: defaults to its measured σ
        slider_min: -3                 # slider range and default, in σ
        slider_max: 3
        default: 0
        sign: "+ = longer sleeves"
        orthogonal_to: [colour]        # optional: do not move these other directions
"""
from __future__ import annotations

import difflib
import json
import os
import pathlib
import re
import shutil
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import yaml

from ganspace.components import Components, load_components
from ganspace.edits import MODES, Edit, orthogonalize, unit
from ganspace.layers import format_layers, parse_layers
from toolkit.atomic import atomic_write_text
from toolkit.naming import slug

TOP_KEYS = ("network_sha256", "components", "num_ws", "directions")
DIRECTION_KEYS = ("name", "description", "component", "vector", "layers", "mode", "sigma",
                  "slider_min", "slider_max", "default", "sign", "orthogonal_to")
HEADER = ("# Afro Fashion GAN directions file (edit by hand; `python -m ganspace validate` checks it).\n"
          "# Layer ranges are inclusive ('0-3') or a group: all, coarse, middle, fine. Strengths are in σ units.\n")


class DirectionsError(ValueError):
    """A problem in a directions file, located by line so a person can fix it."""

    def __init__(self, message: str, line: Optional[int] = None, path=None):
        super().__init__(message)
        self.message, self.line, self.path = message, line, path
        self.errors = [self]  # every problem found in one pass (the first one is this error's own)

    @classmethod
    def several(cls, errors: list["DirectionsError"]) -> "DirectionsError":
        """One error that lists all of `errors`, so a person fixes the file in one round."""
        first = errors[0]
        combined = cls(first.message, first.line, first.path)
        combined.errors = list(errors)
        return combined

    def _one(self, error) -> str:
        return f"line {error.line}: {error.message}" if error.line else error.message

    def __str__(self):
        where = f"{self.path}: " if self.path else ""
        if len(self.errors) == 1:
            return where + self._one(self)
        return f"{where}{len(self.errors)} problems:\n" + "\n".join("  " + self._one(e) for e in self.errors)


@dataclass(kw_only=True)
class Direction:
    """A named direction with its layers, scale and slider settings (strengths in σ units)."""
    name: str
    description: str = ""
    component: Optional[int] = None
    vector: np.ndarray
    layers: tuple[int, int]
    mode: str = "add"
    sigma: float = 1.0
    slider_min: float = -3.0
    slider_max: float = 3.0
    default: float = 0.0
    sign: str = ""
    mean: Optional[np.ndarray] = None          # origin of coordinates for absolute mode
    orthogonal_to: list[str] = field(default_factory=list)

    def edit(self, strength: float, layers: Optional[tuple[int, int]] = None) -> Edit:
        return Edit(vector=self.vector, sigma=self.sigma, layers=layers or self.layers, strength=strength,
                    mode=self.mode, mean=self.mean)


@dataclass
class DirectionsFile:
    directions: list[Direction]
    network_sha256: Optional[str]
    components_path: Optional[pathlib.Path]
    num_ws: Optional[int] = None


class _LineDict(dict):
    """A YAML mapping that remembers its own line, each key's line (1-based) and raw scalar text."""
    line = 1
    lines: dict = {}
    raw: dict = {}   # unquoted hashes like 1234e5... would otherwise be read as numbers

    def at(self, key) -> int:
        return self.lines.get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader, node):
    data = _LineDict()
    data.line = node.start_mark.line + 1
    data.lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    data.raw = {k.value: v.value for k, v in node.value if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode)}
    yield data
    data.update(loader.construct_mapping(node))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _check_keys(mapping: _LineDict, allowed, what: str, errors: list) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
            errors.append(DirectionsError(f"unknown key '{key}' in {what}; {hint}", mapping.at(key)))


class _Collect:
    """Run one check, keeping its DirectionsError instead of stopping, so all problems show in one run."""

    def __init__(self, errors: list):
        self.errors = errors

    def __call__(self, check, *args):
        try:
            return check(*args)
        except DirectionsError as exc:
            self.errors.append(exc)
            return None


def _number(mapping: _LineDict, key: str, default=None, positive=False) -> float:
    value = mapping.get(key, default)
    if value is None:
        raise DirectionsError(f"'{key}' is required: give a number", mapping.at(key))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise DirectionsError(f"'{key}' must be a number, got {value!r}", mapping.at(key))
    if positive and value <= 0:
        raise DirectionsError(f"'{key}' must be positive, got {value}", mapping.at(key))
    return float(value)


def _text(mapping: _LineDict, key: str, default="") -> str:
    value = mapping.get(key, default)
    if value is None:
        return default
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise DirectionsError(f"'{key}' must be text, got {value!r}", mapping.at(key))
    return str(value)


def _read_yaml(path: pathlib.Path):
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DirectionsError(f"not valid YAML: {problem} (check indentation, colons and quotes)",
                              mark.line + 1 if mark else None, path) from None


def _vector(entry: _LineDict, base_dir: pathlib.Path, comps: Optional[Components], w_dim: Optional[int]):
    has_component, has_vector = "component" in entry, "vector" in entry
    if has_component == has_vector:
        raise DirectionsError("give exactly one of 'component' (an index into the components file) "
                              "or 'vector' (a .npy file or a list of numbers)", entry.line)
    if has_component:
        index = entry["component"]
        if comps is None:
            raise DirectionsError("'component' needs a components file: add 'components: FILE.npz' at the top",
                                  entry.at("component"))
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < comps.num_components:
            raise DirectionsError(f"'component' must be an integer 0-{comps.num_components - 1}, got {index!r}",
                                  entry.at("component"))
        return index, comps.comp[index].astype(np.float64)
    value = entry["vector"]
    try:
        if isinstance(value, str):
            vector_path = (base_dir / value) if not pathlib.Path(value).is_absolute() else pathlib.Path(value)
            if not vector_path.exists():
                raise DirectionsError(f"vector file {vector_path} not found", entry.at("vector"))
            vector = np.load(vector_path, allow_pickle=False)
        else:
            vector = np.asarray(value, dtype=np.float64)
        vector = unit(vector)
    except (ValueError, TypeError) as exc:
        raise DirectionsError(f"'vector' is not usable: {exc}", entry.at("vector")) from None
    if w_dim is not None and vector.shape[0] != w_dim:
        raise DirectionsError(f"'vector' has {vector.shape[0]} numbers but w_dim is {w_dim}", entry.at("vector"))
    return None, vector


def _direction(entry, base_dir, comps, num_ws, w_dim, list_line: int, errors: list) -> Optional[Direction]:
    """One validated direction, or None after adding every problem it has to `errors`."""
    if not isinstance(entry, _LineDict):
        errors.append(DirectionsError(f"each item under 'directions' must be a mapping starting with "
                                      f"'- name: ...', got {entry!r}", list_line))
        return None
    found: list = []
    check = _Collect(found)
    _check_keys(entry, DIRECTION_KEYS, "a direction", found)
    name = check(_text, entry, "name", "")
    name = name.strip() if name is not None else None
    if name is not None and not slug(name):
        found.append(DirectionsError("every direction needs a 'name' with letters or digits", entry.at("name")))
    misspelt = any(difflib.get_close_matches(str(k), ("component", "vector"), n=1) for k in entry
                   if k not in DIRECTION_KEYS)  # already reported as an unknown key: not twice
    picked = None if misspelt else check(_vector, entry, base_dir, comps, w_dim)
    component, vector = picked if picked is not None else (None, None)
    layers = check(_layers, entry, num_ws)
    mode = entry.get("mode", "add")
    if mode not in MODES:
        found.append(DirectionsError(f"'mode' must be one of {', '.join(MODES)}, got {mode!r}", entry.at("mode")))
    sigma = None
    if "sigma" in entry or (picked is not None and component is None):
        sigma = check(_number, entry, "sigma", None, True)  # required for a vector
    elif component is not None:
        sigma = float(comps.stdev[component])
    slider_min, slider_max = check(_number, entry, "slider_min", -3.0), check(_number, entry, "slider_max", 3.0)
    if slider_min is not None and slider_max is not None and slider_min >= slider_max:
        found.append(DirectionsError(f"'slider_min' ({slider_min}) must be below 'slider_max' ({slider_max})",
                                     entry.at("slider_min")))
    default = check(_number, entry, "default", 0.0)
    if None not in (default, slider_min, slider_max) and slider_min < slider_max \
            and not slider_min <= default <= slider_max:
        found.append(DirectionsError(f"'default' ({default}) must lie within the slider range "
                                     f"{slider_min}..{slider_max}", entry.at("default")))
    others = entry.get("orthogonal_to", []) or []
    if isinstance(others, str):
        others = [others]
    if not isinstance(others, list) or not all(isinstance(o, str) for o in others):
        found.append(DirectionsError("'orthogonal_to' must be a list of direction names", entry.at("orthogonal_to")))
    description, sign = check(_text, entry, "description"), check(_text, entry, "sign")
    errors.extend(found)
    if found:
        return None
    return Direction(name=name, description=description, component=component, vector=vector,
                     layers=layers, mode=mode, sigma=sigma, slider_min=slider_min, slider_max=slider_max,
                     default=default, sign=sign, orthogonal_to=others,
                     mean=None if comps is None else comps.mean.astype(np.float64))


def _layers(entry: _LineDict, num_ws: Optional[int]) -> tuple[int, int]:
    if num_ws is None:
        raise DirectionsError("cannot check 'layers' without the number of W+ layers: add 'num_ws: N' at the top "
                              "or a components file made by `ganspace fit`", entry.at("layers"))
    try:
        return parse_layers(entry.get("layers", "all"), num_ws)
    except ValueError as exc:
        raise DirectionsError(str(exc), entry.at("layers")) from None


def load_directions(path, network_sha256: Optional[str] = None, force: bool = False,
                    components=None) -> DirectionsFile:
    """Parse and validate a directions file; refuse one made for another network unless forced.

    `components` (a Components or a path) overrides the file's own `components:` entry.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise DirectionsError(f"directions file {path} not found", None, path)
    try:
        return _load(path, network_sha256, force, components)
    except DirectionsError as exc:
        exc.path = path
        raise


def _load(path, network_sha256, force, components) -> DirectionsFile:
    root = _read_yaml(path)
    if not isinstance(root, _LineDict):
        raise DirectionsError("the file must be a YAML mapping with 'network_sha256', 'components' and "
                              "'directions' keys", 1)
    errors: list = []
    check = _Collect(errors)
    _check_keys(root, TOP_KEYS, "the top level", errors)
    file_hash = root.raw.get("network_sha256") if root.get("network_sha256") is not None else None
    if file_hash is not None and not (isinstance(file_hash, str) and re.fullmatch(r"[0-9a-fA-F]{64}", file_hash)):
        errors.append(DirectionsError("'network_sha256' must be the 64-hex-digit sha256 of the network file "
                                      "(`sha256sum NETWORK`, or `python -m ganspace template` writes it)",
                                      root.at("network_sha256")))
    elif network_sha256 and not force and (file_hash or "").lower() != network_sha256.lower():
        made_for = f"network {file_hash}" if file_hash else "an unnamed network (no network_sha256)"
        errors.append(DirectionsError(
            f"this file was made for {made_for} but the loaded network is {network_sha256} (the sha256 of the "
            f"network file); directions rarely transfer between networks. Use --force (force=True) to apply "
            f"them anyway", root.at("network_sha256")))
    base_dir = path.parent
    components_path = None
    comps = None
    if isinstance(components, Components):
        comps = components
    else:
        source = components if components is not None else root.get("components")
        if source is not None:
            if not isinstance(source, (str, os.PathLike)):
                errors.append(DirectionsError("'components' must be a file name", root.at("components")))
            else:
                components_path = pathlib.Path(source)
                if components is None and not components_path.is_absolute():
                    components_path = base_dir / components_path
                comps = check(_read_components, components_path, root)
    num_ws = root.get("num_ws", comps.meta.get("num_ws") if comps is not None else None)
    if num_ws is not None and (isinstance(num_ws, bool) or not isinstance(num_ws, int) or num_ws < 1):
        errors.append(DirectionsError("'num_ws' must be a positive integer", root.at("num_ws")))
        num_ws = None
    entries = root.get("directions")
    if not isinstance(entries, list):
        errors.append(DirectionsError("'directions' must be a list of '- name: ...' items (it may be empty: [])",
                                      root.at("directions")))
        entries = []
    w_dim = comps.w_dim if comps is not None else None
    directions = [_direction(e, base_dir, comps, num_ws, w_dim, root.at("directions"), errors) for e in entries]
    if not errors:
        _resolve_orthogonality(directions, entries, errors)
    if errors:
        raise DirectionsError.several(sorted(errors, key=lambda e: e.line or 0))
    return DirectionsFile(directions, file_hash, components_path, num_ws)


def _read_components(components_path: pathlib.Path, root: _LineDict) -> Components:
    try:
        return load_components(components_path)
    except (OSError, ValueError) as exc:
        raise DirectionsError(f"cannot read components file: {exc}", root.at("components")) from None


def _resolve_orthogonality(directions: list[Direction], entries, errors: list) -> None:
    seen = {}
    for direction, entry in zip(directions, entries):
        if slug(direction.name) in seen:
            errors.append(DirectionsError(f"direction name '{direction.name}' is used twice (names must differ "
                                          f"in letters or digits)", entry.at("name")))
        seen[slug(direction.name)] = direction
    base = {d.name: d.vector for d in directions}
    for direction, entry in zip(directions, entries):
        unknown = [o for o in direction.orthogonal_to if o not in base or o == direction.name]
        if unknown:
            errors.append(DirectionsError(f"'orthogonal_to' names unknown directions {unknown}; known: "
                                          f"{sorted(base)}", entry.at("orthogonal_to")))
        elif direction.orthogonal_to:
            try:
                direction.vector = orthogonalize(base[direction.name], [base[o] for o in direction.orthogonal_to])
            except ValueError as exc:
                errors.append(DirectionsError(str(exc), entry.at("orthogonal_to")))


def template_text(network: str, network_sha256: str, components_path: str, comps: Components, count: int) -> str:
    """A commented starting directions file: one valid entry per leading component, to rename and prune."""
    count = max(0, min(count, comps.num_components))
    num_ws = comps.meta.get("num_ws")
    every_layer = "all"
    if num_ws is not None:
        try:
            parse_layers("all", num_ws)
        except ValueError:  # networks below 16 px have no named groups
            every_layer = f"0-{num_ws - 1}"
    lines = [HEADER.rstrip("\n"),
             f"# Written by `python -m ganspace template` for {network}. Look at the components in the sheets",
             "# (`python -m ganspace sheets`) and hints, rename the ones you recognise, delete the others, then check:",
             f"#   python -m ganspace validate --directions THIS_FILE --network {network}",
             "#",
             "# network_sha256 is the sha256 of the network file (what `sha256sum FILE` prints): the studio and",
             "# export refuse to apply these directions to another network unless --force is given.",
             f"network_sha256: {network_sha256}",
             f"components: {json.dumps(str(components_path))}    # relative to this file",
             "directions:" + ("" if count else " []")]
    for k in range(count):
        share = comps.var_ratio[k]
        about = f"{share:.1%} of the variance, " if np.isfinite(share) else ""
        first = k == 0
        lines += [f"  - name: component-{k}" + ("          # the slider's label, e.g. sleeve length" if first else ""),
                  '    description: ""' + ("          # one line: what moving it changes" if first else ""),
                  f"    component: {k}" + (f"             # row of the components file ({about}σ "
                                           f"{comps.stdev[k]:.3g})" if first else f"    # {about}σ {comps.stdev[k]:.3g}"),
                  f"    layers: {every_layer}" + ("            # coarse | middle | fine | all | an inclusive range like 0-3"
                                       if first else ""),
                  "    mode: add" + ("              # add (move along it) | absolute (set the coordinate)" if first else ""),
                  "    slider_min: -3" + ("         # slider range and start, in σ units" if first else ""),
                  "    slider_max: 3",
                  "    default: 0",
                  '    sign: "+ = ?"' + ("          # what + means, e.g. '+ = longer sleeves'" if first else "")]
    return "\n".join(lines) + "\n"


def _entry(direction: Direction, path: pathlib.Path) -> dict:
    entry = {"name": direction.name, "description": direction.description}
    if direction.component is not None:
        entry["component"] = int(direction.component)
    else:
        vector_file = path.with_name(f"{path.stem}_vectors") / f"{slug(direction.name)}.npy"
        vector_file.parent.mkdir(parents=True, exist_ok=True)
        np.save(vector_file, np.asarray(direction.vector, dtype=np.float64))
        entry["vector"] = str(vector_file.relative_to(path.parent))
    entry.update(layers=format_layers(direction.layers), mode=direction.mode, sigma=float(direction.sigma),
                 slider_min=float(direction.slider_min), slider_max=float(direction.slider_max),
                 default=float(direction.default), sign=direction.sign)
    if direction.orthogonal_to:
        entry["orthogonal_to"] = list(direction.orthogonal_to)
    return entry


def append_direction(path, direction: Direction, network_sha256: Optional[str] = None,
                     components_path=None, num_ws: Optional[int] = None) -> None:
    """Add a direction to a directions file (creating it if needed), atomically, keeping FILE.bak.

    Appends text when the file's layout allows, so hand-written comments survive; otherwise
    rewrites the file through PyYAML (which drops comments; the .bak keeps them).
    """
    path = pathlib.Path(path)
    if path.exists():
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict) or not isinstance(data.setdefault("directions", []), list):
            raise DirectionsError("cannot append: the file is not a valid directions file "
                                  "(run `python -m ganspace validate`)", None, path)
        if any(slug(str(d.get("name", ""))) == slug(direction.name) for d in data["directions"] if isinstance(d, dict)):
            raise DirectionsError(f"a direction named '{direction.name}' already exists; choose another name",
                                  None, path)
    else:
        text = None
        data = {"network_sha256": network_sha256,
                "components": None if components_path is None else str(components_path),
                **({"num_ws": int(num_ws)} if num_ws is not None and components_path is None else {}),
                "directions": []}
    entry = _entry(direction, path)
    data["directions"].append(entry)
    new_text = _appended_text(text, entry, data)
    if new_text is None:
        new_text = HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if text is not None:
        shutil.copy2(path, path.with_name(path.name + ".bak"))
    atomic_write_text(path, new_text)


def _appended_text(text: Optional[str], entry: dict, expected: dict) -> Optional[str]:
    """The old text with the entry appended as a block item, if that parses to exactly `expected`."""
    if not text:
        return None
    indents = re.findall(r"^( *)- name:", text, flags=re.M)
    indent = indents[-1] if indents else "  "
    item = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, default_flow_style=False)
    item = "".join(indent + line for line in item.splitlines(keepends=True))
    candidate = text.rstrip("\n") + "\n" + item
    try:
        return candidate if yaml.safe_load(candidate) == expected else None
    except yaml.YAMLError:
        return None
