"""The form's Sync choices: ``full`` (re-send every row, not only those changed since the last run), ``mirror``
(also remove the members this tool added who left the segment) and its safety net, ``allow_removals``, offered
when the engine's guard stopped, or would stop, a run that removes more members than allowed (``max_removals``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ..export.mirror import RemovalLimitError


class MirrorChoice:
    """``full`` (Checkbox), ``mirror`` (Checkbox) and ``allow_removals`` (Checkbox, hidden until the guard trips).
    An allowance covers exactly the removals the guard counted, for the next run only; ``say`` writes the form's
    status line."""

    def __init__(self, *, say: Callable[[str], None]) -> None:
        # For a list edited by hand in Klaviyo: rows unchanged since our last run are re-sent too.
        self.full = w.Checkbox(
            description="Full: re-send every row, also those unchanged since the last run",
            indent=False,
            layout=w.Layout(width="auto"),
        )
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
        return w.VBox([self.full, self.mirror, self.allow_removals])

    def options(self) -> dict[str, Any]:
        """``export_segment``'s keywords for the choices: ``full``, ``mode`` and, once allowed, ``max_removals``."""
        chosen: dict[str, Any] = {"full": True} if self.full.value else {}
        if not self.mirror.value:
            return chosen
        if self.allow_removals.value:
            return {**chosen, "mode": "mirror", "max_removals": self.allowed}
        return {**chosen, "mode": "mirror"}

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
