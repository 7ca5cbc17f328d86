"""A row of tick boxes that behaves like a multiple selection: ``options`` and a ``value`` tuple.

The form's Properties used a ``SelectMultiple``, where a plain click selects one item and silently drops the
others (the preselected standard fields among them); a tick box changes only itself.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import ipywidgets as w
import traitlets


class Checklist(w.Box):
    """Tick boxes, one per option, wrapping onto more lines as needed.

    ``options``: ``(label, value)`` pairs (or bare values, labelled with ``str``); ``value``: the ticked values,
    in the options' order. Setting either updates the boxes; ticking a box updates ``value``, which can be
    observed like any widget's. Both traits live in Python only: the browser sees the tick boxes.
    """

    options = traitlets.Tuple()
    value = traitlets.Tuple()

    def __init__(self, **kwargs: Any) -> None:
        layout = kwargs.pop("layout", None) or w.Layout(flex_flow="row wrap", width="32em")
        super().__init__(layout=layout)
        self.boxes: dict[Hashable, w.Checkbox] = {}
        self._updating = False
        self.observe(self._on_options, names="options")
        self.observe(self._on_value, names="value")
        for name, setting in kwargs.items():
            setattr(self, name, setting)

    @traitlets.validate("value")
    def _valid_value(self, proposal: dict[str, Any]) -> tuple[Any, ...]:
        chosen = set(proposal["value"])
        unknown = chosen - set(self.boxes)
        if unknown:
            raise traitlets.TraitError(f"not among the options: {', '.join(map(repr, sorted(unknown, key=str)))}")
        return tuple(value for value in self.boxes if value in chosen)  # the options' order

    def _on_options(self, change: dict[str, Any]) -> None:
        pairs = [option if isinstance(option, tuple) else (str(option), option) for option in change["new"]]
        kept = set(self.value)
        for box in self.boxes.values():
            box.unobserve(self._on_box, names="value")
        self.boxes = {
            value: w.Checkbox(
                value=value in kept, description=label, indent=False, layout=w.Layout(width="auto", margin="0 1em 0 0")
            )
            for label, value in pairs
        }
        for box in self.boxes.values():
            box.observe(self._on_box, names="value")
        self.children = tuple(self.boxes.values())
        self._updating = True
        try:
            self.value = tuple(value for value in self.boxes if value in kept)
        finally:
            self._updating = False

    def _on_value(self, change: dict[str, Any]) -> None:
        if self._updating:
            return
        chosen = set(change["new"])
        self._updating = True
        try:
            for value, box in self.boxes.items():
                box.value = value in chosen
        finally:
            self._updating = False

    def _on_box(self, change: dict[str, Any]) -> None:
        if self._updating:
            return
        self.value = tuple(value for value, box in self.boxes.items() if box.value)
