"""The form's Mirror choice and its safety net: ``mirror`` (also remove the members this tool added who left the
segment) and ``allow_removals``, offered when the engine's guard stopped, or would stop, a run that removes more
members than allowed (``max_removals``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..export.mirror import RemovalLimitError


class MirrorChoice:
    """``mirror`` (Checkbox) and ``allow_removals`` (Checkbox, hidden until the guard trips). An allowance covers
    exactly the removals the guard counted, for the next run only; ``say`` writes the form's status line."""

    def __init__(self, *, say: Callable[[str], None]) -> None:
        self.mirror = w.Checkbox(
            description="Mirror: also remove the members this tool added who have left the segment",
            indent=False,
            layout=w.Layout(width="auto"),
        )
        self.allow_removals = w.Checkbox(indent=False, layout=w.Layout(display="none", width="auto"))
        self.allowed = 0  # removals the tick box allows
        self._say = say
        self._quiet = False
        self.allow_removals.observe(self._on_allow, names="value")

    def widget(self) -> w.VBox:
        return w.VBox([self.mirror, self.allow_removals])

    def options(self) -> dict[str, Any]:
        """``export_segment``'s keywords for the choice: ``mode`` and, once allowed, ``max_removals``."""
        if not self.mirror.value:
            return {}
        if self.allow_removals.value:
            return {"mode": "mirror", "max_removals": self.allowed}
        return {"mode": "mirror"}

    def met_guard(self, guard: RemovalLimitError | None) -> None:
        """How a run met the guard: tripped (offer to allow exactly that many removals) or let through (an
        allowance it had is used up: the next run is guarded again)."""
        if guard is None:
            self.hide()
            return
        self.allowed = guard.would_remove
        self._set(False)
        self.allow_removals.description = f"Allow removing {guard.would_remove:,} members"
        self.allow_removals.layout.display = "flex"

    def hide(self, *, keep_allowance: bool = False) -> None:
        """No offer on show (the inputs changed); ``keep_allowance`` keeps one the user ticked."""
        if keep_allowance and self.allow_removals.value:
            return
        self._set(False)
        self.allow_removals.layout.display = "none"

    def _set(self, value: bool) -> None:
        self._quiet = True
        try:
            self.allow_removals.value = value
        finally:
            self._quiet = False

    def _on_allow(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["new"]:
            self._say(f"The next run may remove up to {self.allowed:,} members.")
