"""Per-browser-tab state: the current recipe, undo/redo history and favourites.

One Session per tab (Gradio deep-copies the initial value per session), so
nothing a stylist does in one tab can leak into another. `to_dict`/`from_dict`
carry it through `editor.store`, so a reload or a studio restart loses nothing.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from design.recipe import Recipe, RecipeError

HISTORY_LIMIT = 50
FAVOURITES_LIMIT = 200


@dataclasses.dataclass
class Favourite:
    recipe: Recipe
    thumbnail: np.ndarray  # uint8 HWC, kept so the tray never re-renders


@dataclasses.dataclass
class Session:
    recipe: Recipe | None = None
    undo_stack: list[Recipe] = dataclasses.field(default_factory=list)
    redo_stack: list[Recipe] = dataclasses.field(default_factory=list)
    favourites: list[Favourite] = dataclasses.field(default_factory=list)
    page: int = 0
    page_seeds: list[int] = dataclasses.field(default_factory=list)
    page_psi: float = 0.7                 # what the browse tiles on screen were drawn with, so a tile
    page_class: int | None = None         # opens as shown even after the controls changed
    session_id: str = ""                  # key of this session in the store ("" = not stored)
    note: tuple[Recipe | None, str] = (None, "")  # the last message shown and the design it was about

    def apply(self, recipe: Recipe) -> None:
        """Make `recipe` current; the previous one becomes undoable."""
        if recipe == self.recipe:
            return
        if self.recipe is not None:
            self.undo_stack = (self.undo_stack + [self.recipe])[-HISTORY_LIMIT:]
        self.redo_stack = []
        self.recipe = recipe

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.recipe)
        self.recipe = self.undo_stack.pop()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.recipe)
        self.recipe = self.redo_stack.pop()
        return True

    def star(self, recipe: Recipe, thumbnail: np.ndarray) -> bool:
        """Add to the favourites tray; False when it is already there or the tray is full."""
        if len(self.favourites) >= FAVOURITES_LIMIT or any(f.recipe == recipe for f in self.favourites):
            return False
        self.favourites.append(Favourite(recipe, thumbnail))
        return True

    def to_dict(self) -> dict:
        """Recipes only (thumbnails are re-rendered on restore): a few hundred kB at the limits."""
        return {"recipe": None if self.recipe is None else self.recipe.to_dict(),
                "undo": [r.to_dict() for r in self.undo_stack], "redo": [r.to_dict() for r in self.redo_stack],
                "favourites": [f.recipe.to_dict() for f in self.favourites], "page": self.page}

    @classmethod
    def from_dict(cls, data: dict, accept: Callable[[Recipe], Recipe],
                  thumbnail: Callable[[Recipe], np.ndarray], session_id: str = "") -> "Session":
        """Rebuild a stored session; recipes that `accept` refuses (another network, a direction
        since removed) are dropped one by one, so one stale entry never costs the rest."""
        def recipes(items) -> list[Recipe]:
            kept = []
            for item in items if isinstance(items, list) else []:
                try:
                    kept.append(accept(Recipe.from_dict(item)))
                except RecipeError:
                    continue
            return kept

        current = recipes([data.get("recipe")])
        page = data.get("page")
        return cls(recipe=current[0] if current else None, undo_stack=recipes(data.get("undo"))[-HISTORY_LIMIT:],
                   redo_stack=recipes(data.get("redo"))[-HISTORY_LIMIT:],
                   favourites=[Favourite(r, thumbnail(r)) for r in recipes(data.get("favourites"))[:FAVOURITES_LIMIT]],
                   page=page if isinstance(page, int) and page >= 0 else 0, session_id=session_id)
