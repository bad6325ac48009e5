"""Turn free-text fashion titles into standardized attributes and captions.

Marketplace titles are noisy, multilingual and inconsistently spelled; one
editable vocabulary (``vocabulary.yaml``) gives every image the same labels
whatever the wording, so they can drive conditional training and captions.
"""
from __future__ import annotations

import pathlib
import re
import reprlib
import unicodedata
from dataclasses import dataclass

import yaml

DEFAULT_VOCABULARY = pathlib.Path(__file__).with_name("vocabulary.yaml")
CAPTION_HEAD = ("wearer", "length", "garment")   # "women's maxi dress"
CAPTION_TAIL = ("sleeve", "fabric", "colour")    # ", long sleeves, kente, multicolour"
NEGATION_WINDOW = 2                               # words before a mention that can negate it
CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]|\n]+")


class VocabularyError(ValueError):
    """The vocabulary file is malformed; the message says where and what to fix."""


def normalize_text(text) -> str:
    """Lower-case, strip accents, and turn punctuation into single spaces.

    The same function is applied to vocabulary phrases and to titles, so
    "T-Shirt", "t shirt" and "Robe Longue Brodée" match "t shirt" and "robe longue".
    """
    decomposed = unicodedata.normalize("NFKD", str(text))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    return re.sub(r"[^a-z0-9]+", " ", plain).strip()


@dataclass(frozen=True)
class AttributeValue:
    key: str
    caption: str
    priority: int = 0


MAX_YAML_NODES = 1_000_000  # the shipped vocabulary has ~1,500; an "alias bomb" of 1 KB expands to billions


def _short(value) -> str:
    """A bounded preview: str() of a value built from shared YAML aliases could be gigabytes."""
    preview = reprlib.Repr()
    preview.maxlevel, preview.maxlist, preview.maxdict, preview.maxstring, preview.maxother = 2, 4, 4, 40, 40
    return preview.repr(value)


def _check_spec(spec, source: str) -> None:
    """Every entry of a vocabulary has the type the matcher expects, or a message says which one does not."""
    def fail(where: str, expected: str, value) -> None:
        raise VocabularyError(f"{source}: {where} must be {expected}, found {type(value).__name__} {_short(value)}")

    def words(where: str, value) -> None:
        if not isinstance(value, list) or not all(isinstance(w, (str, int, float, bool)) for w in value):
            fail(where, "a list of words or phrases", value)

    if not isinstance(spec, dict) or not isinstance(spec.get("attributes"), dict):
        raise VocabularyError(f"{source}: expected a top-level 'attributes:' mapping")
    words("negators", spec.get("negators", []))
    for attr, attr_spec in spec["attributes"].items():
        if not isinstance(attr_spec, dict) or not isinstance(attr_spec.get("values"), dict) or not attr_spec["values"]:
            raise VocabularyError(f"{source}: attribute '{attr}' needs a non-empty 'values:' mapping")
        if not isinstance(attr_spec.get("combine", ""), str):
            fail(f"{attr}.combine", "a value name", attr_spec["combine"])
        for key, value_spec in attr_spec["values"].items():
            if not isinstance(key, str):
                fail(f"a value name of {attr}", "text", key)
            if value_spec is None:
                continue
            if not isinstance(value_spec, dict):
                fail(f"{attr}.{key}", "a mapping (caption, synonyms, priority)", value_spec)
            words(f"{attr}.{key}.synonyms", value_spec.get("synonyms", []))
            if not isinstance(value_spec.get("caption", ""), (str, int, float)):
                fail(f"{attr}.{key}.caption", "text", value_spec["caption"])
            if isinstance(value_spec.get("priority", 0), bool) or not isinstance(value_spec.get("priority", 0), int):
                fail(f"{attr}.{key}.priority", "a whole number", value_spec["priority"])
            if "rgb" in value_spec and not (isinstance(value_spec["rgb"], str)
                                            and re.fullmatch(r"#[0-9a-fA-F]{6}", value_spec["rgb"])):
                fail(f"{attr}.{key}.rgb", 'a colour like "#1f4fa0"', value_spec["rgb"])
    compounds = spec.get("compounds") or {}
    if not isinstance(compounds, dict):
        fail("compounds", "a mapping of phrase: {attribute: value}", compounds)
    for phrase, targets in compounds.items():
        if not isinstance(targets, dict) or not all(isinstance(v, str) for v in targets.values()):
            fail(f"compound {phrase!r}", "a mapping of attribute: value", targets)


class _BoundedLoader(yaml.SafeLoader):
    """safe_load that refuses documents whose aliases (*name) expand to more than MAX_YAML_NODES nodes.

    Aliases are shared, not copied, so loading is cheap; but everything that walks the result
    (validation, messages, the matcher) would walk the expansion.  Sizes are counted per node once.
    """

    def construct_document(self, node):
        sizes: dict[int, int] = {}

        def size(n) -> int:
            if id(n) in sizes:
                if sizes[id(n)] < 0:
                    raise VocabularyError("a YAML alias refers to itself")
                return sizes[id(n)]
            sizes[id(n)] = -1
            children = [] if isinstance(n, yaml.ScalarNode) else (
                [x for pair in n.value for x in pair] if isinstance(n, yaml.MappingNode) else n.value)
            total = 1 + sum(size(child) for child in children)
            if total > MAX_YAML_NODES:
                raise VocabularyError(f"its YAML aliases (*name) expand to more than {MAX_YAML_NODES} values: "
                                      "not a vocabulary")
            sizes[id(n)] = total
            return total

        size(node)
        return super().construct_document(node)


class Vocabulary:
    """Synonym tables compiled into a single leftmost-longest matcher."""

    def __init__(self, spec: dict, source: str = "<dict>"):
        _check_spec(spec, source)
        self.source = source
        self.negators = frozenset(normalize_text(self._word(w)) for w in spec.get("negators", []))
        self.attributes: dict[str, dict[str, AttributeValue]] = {}
        self.combine: dict[str, str] = {}
        self.rgb: dict[str, dict[str, tuple[int, int, int]]] = {}   # attribute -> value -> reference colour
        self._targets: dict[str, dict[str, str]] = {}   # phrase -> {attribute: value key}
        for attr, attr_spec in spec["attributes"].items():
            values = attr_spec["values"]
            self.attributes[attr] = {}
            for key, value_spec in values.items():
                value_spec = value_spec or {}
                self.attributes[attr][key] = AttributeValue(
                    key=key, caption=str(value_spec.get("caption", key)),
                    priority=int(value_spec.get("priority", 0)))
                if "rgb" in value_spec:
                    hex_rgb = value_spec["rgb"]
                    self.rgb.setdefault(attr, {})[key] = tuple(int(hex_rgb[i:i + 2], 16) for i in (1, 3, 5))
                for phrase in [key, *value_spec.get("synonyms", [])]:
                    self._add_phrase(phrase, {attr: key})
            if "combine" in attr_spec:
                if attr_spec["combine"] not in values:
                    raise VocabularyError(f"{source}: {attr}.combine '{attr_spec['combine']}' is not one of its values")
                self.combine[attr] = attr_spec["combine"]
        for phrase, targets in (spec.get("compounds") or {}).items():
            for attr, key in targets.items():
                if key not in self.attributes.get(attr, {}):
                    raise VocabularyError(f"{source}: compound '{phrase}' sets unknown {attr}={key}")
            self._add_phrase(phrase, targets)
        phrases = sorted(self._targets, key=lambda p: (-len(p), p))
        alternation = "|".join(re.escape(p) for p in phrases)
        # Whole words only; an optional plural on the last word ("dresses", "tops").
        self._pattern = re.compile(rf"(?<![a-z0-9])({alternation})(?:es|s)?(?![a-z0-9])")

    def _word(self, word) -> str:
        if isinstance(word, bool):   # YAML 1.1 reads a bare no/yes/on/off as a boolean
            raise VocabularyError(f"{self.source}: a bare {word} in a list is read as a boolean by YAML; "
                                  f'put quotes around words like "no", "on", "off"')
        return str(word)

    def _add_phrase(self, phrase, targets: dict[str, str]) -> None:
        normalized = normalize_text(self._word(phrase))
        if not normalized:
            return
        merged = self._targets.setdefault(normalized, {})
        for attr, key in targets.items():
            if merged.get(attr, key) != key:
                raise VocabularyError(
                    f"{self.source}: phrase '{phrase}' means both {attr}={merged[attr]} and {attr}={key}; "
                    f"keep it under one value")
            merged[attr] = key

    def extract(self, text: str) -> dict[str, str]:
        """Attributes mentioned in ``text`` -> {attribute: value key}.

        Per attribute: a mentioned value with a priority wins; otherwise several
        different values give the attribute's ``combine`` value (e.g. multicolour)
        or, without one, the first mention.
        """
        mentions: dict[str, list[str]] = {}
        for clause in CLAUSE_BREAK.split(str(text)):   # "sans manches, dentelle": the negation stops at the comma
            normalized = normalize_text(clause)
            previous_end = 0
            for match in self._pattern.finditer(normalized):
                phrase = match.group(1)
                negated = self._is_negated(normalized[previous_end:match.start()], phrase)
                previous_end = match.end()
                if negated:
                    continue
                for attr, key in self._targets[phrase].items():
                    mentions.setdefault(attr, []).append(key)
        return {attr: self._resolve(attr, keys) for attr, keys in mentions.items()}

    def _is_negated(self, words_before: str, phrase: str) -> bool:
        """A negator among the few words since the previous mention ("no lace", "without any lace")."""
        if phrase.split()[0] in self.negators:
            return False
        return any(word in self.negators for word in words_before.split()[-NEGATION_WINDOW:])

    def _resolve(self, attr: str, keys: list[str]) -> str:
        distinct = list(dict.fromkeys(keys))
        top = max(distinct, key=lambda k: self.attributes[attr][k].priority)
        if self.attributes[attr][top].priority > 0 or len(distinct) == 1:
            return top
        return self.combine.get(attr, distinct[0])

    def normalize_value(self, attr: str, raw) -> str | None:
        """An explicit metadata value ("Kenté", "long sleeve", "maxi") -> value key, or None."""
        if attr not in self.attributes or raw is None:
            return None
        wanted = normalize_text(raw)
        for key, value in self.attributes[attr].items():
            if wanted in (normalize_text(key), normalize_text(value.caption)):
                return key
        return self.extract(raw).get(attr)

    def caption(self, attributes: dict[str, str]) -> str:
        """A standardized caption, e.g. "women's maxi dress, long sleeves, kente, multicolour"."""
        def text(attr):
            key = attributes.get(attr)
            return self.attributes[attr][key].caption if key and attr in self.attributes else None
        head = [t for t in map(text, CAPTION_HEAD) if t]
        if head and not attributes.get("garment"):
            head.append("outfit")
        parts = [" ".join(head)] + [t for t in map(text, CAPTION_TAIL) if t]
        return ", ".join(p for p in parts if p)


def load_vocabulary(path: str | pathlib.Path | None = None) -> Vocabulary:
    """Read a vocabulary YAML (the shipped one by default)."""
    path = pathlib.Path(path) if path else DEFAULT_VOCABULARY
    try:
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_BoundedLoader)
    except FileNotFoundError:
        raise VocabularyError(f"vocabulary file {path} not found; pass --vocabulary PATH or omit it") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise VocabularyError(f"{path}: not valid YAML ({type(exc).__name__}: {str(exc)[:200]})") from None
    except VocabularyError as exc:
        raise VocabularyError(f"{path}: {exc}") from None
    return Vocabulary(spec, source=str(path))
