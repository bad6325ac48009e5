"""Lists typed by people ('0-3,7', '-2, 0, 2') read one way everywhere: CLIs, the studio, exports.

Each caller states its own bounds and the error type it answers with (click's BadParameter for a CLI,
RecipeError in the studio), so the reading rules stay the same while the messages fit the caller.
Nothing is expanded before it is counted: '0-4000000000' is refused, not built.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Sequence

MAX_SEED = 2**32 - 1  # np.random.RandomState accepts seeds in [0, 2**32 - 1]
ErrorType = Callable[[str], Exception]
_SEED_PART = re.compile(r"(\d+)\s*-\s*(\d+)|(\d+)")


def parse_seed_list(text: str | int | Sequence[int], *, max_count: int | None = None,
                    error: ErrorType = ValueError) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]: inclusive ranges, order kept, duplicates dropped, at most `max_count`."""
    if isinstance(text, int):
        parts: list[tuple[int, int]] = [(text, text)]
    elif not isinstance(text, str):
        parts = [(int(s), int(s)) for s in text]
    else:
        parts = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            m = _SEED_PART.fullmatch(part)
            if not m:
                raise error(f"Seeds must be whole numbers and inclusive ranges like '0-3,7'; got {text!r}.")
            lo, hi = (int(m.group(3)),) * 2 if m.group(3) is not None else (int(m.group(1)), int(m.group(2)))
            if hi < lo:
                raise error(f"Seed range {part!r} must go upwards, like '1-5'.")
            parts.append((lo, hi))
    if not parts:
        raise error("No seeds given: write numbers and inclusive ranges like '0-3,7'.")
    if any(not 0 <= lo <= hi <= MAX_SEED for lo, hi in parts):
        raise error(f"Seeds must be between 0 and {MAX_SEED} (numpy RandomState's limit).")
    total = sum(hi - lo + 1 for lo, hi in parts)
    if max_count is not None and total > max_count:
        raise error(f"Give at most {max_count} seeds; {text!r} holds {total}.")
    seeds = dict.fromkeys(s for lo, hi in parts for s in range(lo, hi + 1))
    return list(seeds)


def parse_float_list(text: str, *, low: float = -math.inf, high: float = math.inf, max_count: int | None = None,
                     error: ErrorType = ValueError, what: str = "Values", example: str = "-2, 0, 2") -> list[float]:
    """'-2, 0, 2' -> [-2.0, 0.0, 2.0], each finite and within [low, high], at most `max_count` of them.

    NaN and infinity are always refused: they render black images and write invalid JSON.
    """
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = None
    bounded = values is not None and all(math.isfinite(v) and low <= v <= high for v in values)
    if not bounded or not values or (max_count is not None and len(values) > max_count):
        count = f"1 to {max_count}" if max_count is not None else "one or more"
        span = f" between {low:g} and {high:g}" if math.isfinite(low) or math.isfinite(high) else ""
        raise error(f"{what} must be {count} finite numbers{span}, separated by commas, e.g. '{example}'; "
                    f"got {str(text)[:80]!r}.")
    return values
