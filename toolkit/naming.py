"""File-name-safe forms of names people type (direction, class and attribute names), one rule everywhere."""
from __future__ import annotations

import re


def slug(text) -> str:
    """'Long sleeve / Ankara' -> 'long-sleeve-ankara'; '' when nothing survives (each caller says what then)."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
