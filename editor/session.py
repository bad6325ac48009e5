"""Per-browser-tab state: the current recipe, undo/redo history and favourites.

One Session per tab (Gradio deep-copies the initial value per session), so
nothing a stylist does in one tab can leak into another.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from editor.recipe import Recipe

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

    def unstar(self, index: int) -> None:
        if 0 <= index < len(self.favourites):
            del self.favourites[index]
