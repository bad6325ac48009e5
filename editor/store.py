"""What the studio keeps for a stylist between visits, under the user's data directory.

Why a per-user store on disk rather than the browser's storage: in the browser the whole session
(up to ~300 recipes, a few hundred kB) would travel back to the page on every slider move; a file
beside the studio costs one local write per change, survives reloads and restarts, and can be
inspected or deleted by hand. The browser keeps only a
random session id (BrowserState). The store is bounded: per network at most MAX_SESSIONS files
(oldest removed first), each bounded by the session's own history and favourites limits, and a
file larger than MAX_SESSION_BYTES is ignored.

User labels for a model they did not write (the bundled one) also live here (`labels_path`),
layered over the model's own directions file, which stays untouched, and so do the latents of projected
photos (`latents_path`: a recipe names its latent by sha256, so a session or favourite that starts from a
photo still renders after a restart). What the studio measures of a model once (`mix_hints_path`) goes to
the project's cache instead: it is derived, and measured again if lost.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import secrets

from toolkit.atomic import atomic_write_text
from toolkit.download import cache_root

DATA_ENV = "AFRO_FASHION_DATA"
MAX_SESSIONS = 64
MAX_SESSION_BYTES = 4 << 20
SESSION_ID = re.compile(r"[0-9a-f]{32}")


def user_data_dir() -> pathlib.Path:
    """`$AFRO_FASHION_DATA`, else `$XDG_DATA_HOME/afro-fashion-gan`, else `~/.local/share/afro-fashion-gan`."""
    if os.environ.get(DATA_ENV):
        return pathlib.Path(os.environ[DATA_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or pathlib.Path.home() / ".local" / "share"
    return pathlib.Path(base) / "afro-fashion-gan"


def labels_path(network_sha256: str, root: pathlib.Path | None = None) -> pathlib.Path:
    """The user's own directions file for one network (by weights hash)."""
    return (root or user_data_dir()) / "labels" / f"{network_sha256[:16]}.yaml"


def mix_hints_path(network_sha256: str, root: pathlib.Path | None = None) -> pathlib.Path:
    """What mixing each layer group changes on one network, measured once (derived: in the cache)."""
    return (root or cache_root()) / "mix-hints" / f"{network_sha256[:16]}.json"


def latents_path(network_sha256: str, root: pathlib.Path | None = None) -> pathlib.Path:
    """The user's projected photos for one network: latent files named by their sha256 (recipes refer to them)."""
    return (root or user_data_dir()) / "latents" / network_sha256[:16]


def new_session_id() -> str:
    return secrets.token_hex(16)


class SessionStore:
    """Session dicts (`Session.to_dict`) as JSON files, one folder per network."""

    def __init__(self, network_sha256: str, root: pathlib.Path | None = None, max_sessions: int = MAX_SESSIONS):
        self.folder = (root or user_data_dir()) / "sessions" / network_sha256[:16]
        self.max_sessions = max_sessions

    def _path(self, session_id: str) -> pathlib.Path | None:
        return self.folder / f"{session_id}.json" if SESSION_ID.fullmatch(str(session_id)) else None

    def load(self, session_id: str) -> dict | None:
        """The stored dict, or None for an unknown, malformed, oversized or unreadable entry."""
        path = self._path(session_id)
        try:
            if path is None or path.stat().st_size > MAX_SESSION_BYTES:
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(self, session_id: str, data: dict) -> None:
        path = self._path(session_id)
        if path is None:
            return
        is_new = not path.exists()
        atomic_write_text(path, json.dumps(data, separators=(",", ":")))
        if is_new:
            self._prune()

    def _prune(self) -> None:
        """Keep the newest `max_sessions` files."""
        def age(path: pathlib.Path) -> float:
            try:
                return path.stat().st_mtime
            except OSError:  # removed meanwhile by another tab's prune
                return 0.0

        for old in sorted(self.folder.glob("*.json"), key=age, reverse=True)[self.max_sessions:]:
            old.unlink(missing_ok=True)
