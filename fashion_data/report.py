"""Account for every source file: kept, ignored, dropped (with reason) or duplicate (of what).

Users need to trust that nothing vanished silently; the report is written into
the dataset as report.json and summarised on the terminal.
"""
from __future__ import annotations

from collections import Counter

# Which cleaning step each reason belongs to (the report groups counts by step).
REASON_STEPS = {
    "hidden": "scan", "excluded": "scan", "not_image_extension": "scan",
    "file_too_large": "read", "unreadable": "read", "not_a_regular_file": "read", "symlink_outside_source": "read",
    "zip_bomb": "read",
    "empty_file": "decode", "not_an_image": "decode", "undecodable": "decode", "truncated": "decode",
    "too_many_pixels": "decode",
    "too_small": "size", "extreme_aspect": "size",
    "exact_duplicate": "dedupe", "near_duplicate": "dedupe",
    "no_label": "label",
    "max_images": "limit",
}


class Report:
    def __init__(self, settings: dict):
        self.settings = settings
        self.files_found = 0
        self.written = 0
        self.reasons: Counter[str] = Counter()
        self.dropped: list[dict] = []
        self.duplicate_groups: dict[str, list[dict]] = {}
        self.coverage: dict[str, Counter[str]] = {}
        self.class_counts: Counter[str] = Counter()
        self.derived: dict[str, Counter[str]] = {}   # attribute -> value -> images whose value was measured
        self.metadata: dict | None = None
        self.seconds = 0.0

    def drop(self, rel_path: str, reason: str, detail: str = "") -> None:
        self.reasons[reason] += 1
        self.dropped.append({"file": rel_path, "step": REASON_STEPS.get(reason, "other"),
                             "reason": reason, "detail": detail})

    def duplicate(self, rel_path: str, original: str, exact: bool, distance: int = 0) -> None:
        reason = "exact_duplicate" if exact else "near_duplicate"
        detail = f"same pixels as {original}" if exact else f"{distance} hash bits from {original}"
        self.drop(rel_path, reason, detail)
        self.duplicate_groups.setdefault(original, []).append(
            {"file": rel_path, "kind": "exact" if exact else "near", "distance": distance})

    def keep(self, attributes: dict[str, str], class_name: str | None, attribute_names, derived=()) -> None:
        self.written += 1
        for name in derived:
            self.derived.setdefault(name, Counter())[attributes[name]] += 1
        for name in attribute_names:
            self.coverage.setdefault(name, Counter())[attributes.get(name, "(none)")] += 1
        if class_name is not None:
            self.class_counts[class_name] += 1

    def to_dict(self) -> dict:
        steps: dict[str, Counter] = {}
        for reason, count in self.reasons.items():
            steps.setdefault(REASON_STEPS.get(reason, "other"), Counter())[reason] = count
        return {
            "settings": self.settings,
            "files_found": self.files_found,
            "images_written": self.written,
            "dropped_total": sum(self.reasons.values()),
            "by_step": {step: dict(sorted(c.items())) for step, c in sorted(steps.items())},
            "dropped": self.dropped,
            "duplicate_groups": [{"kept": kept, "duplicates": dups} for kept, dups in self.duplicate_groups.items()],
            "attribute_coverage": {name: dict(c.most_common()) for name, c in self.coverage.items()},
            "class_balance": dict(sorted(self.class_counts.items())) if self.class_counts else None,
            "derived": {name: dict(c.most_common()) for name, c in self.derived.items()},
            "metadata": self.metadata,
            "seconds": round(self.seconds, 2),
        }

    def summary(self) -> str:
        """A short human summary for the terminal; report.json has every file."""
        lines = [f"{self.files_found} files found, {self.written} images written, "
                 f"{sum(self.reasons.values())} not used ({self.seconds:.1f} s)."]
        for reason, count in sorted(self.reasons.items(), key=lambda kv: (REASON_STEPS.get(kv[0], ""), kv[0])):
            lines.append(f"  {REASON_STEPS.get(reason, 'other'):>6} | {reason:<20} {count}")
        if self.metadata:
            lines.append(f"  metadata: {self.metadata['rows_matched']} of {self.metadata['rows']} rows matched a photo")
        for name, counts in self.coverage.items():
            if set(counts) == {"(none)"}:
                continue
            top = ", ".join(f"{value} {n}" for value, n in counts.most_common(6))
            if len(counts) > 6:  # the rest are in report.json
                top += f", ... ({len(counts) - 6} more)"
            lines.append(f"  {name}: {top}")
        for name, counts in self.derived.items():
            lines.append(f"  {name} measured on the image for {sum(counts.values())} images (marked 'derived')")
        if self.class_counts:
            lines.append("  classes: " + ", ".join(f"{name} {n}" for name, n in sorted(self.class_counts.items())))
        return "\n".join(lines)
