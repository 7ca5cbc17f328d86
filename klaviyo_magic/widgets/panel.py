"""The export form: ipywidgets for the exploratory export, on top of :func:`~klaviyo_magic.export_segment`.

Widgets and wiring only: DataFrame and email-column logic is in :mod:`klaviyo_magic.widgets.parts`, the run part
(Export and Cancel, progress, result, the background thread) in :mod:`klaviyo_magic.widgets.runner`, HTTP in the
client, the export itself in :mod:`klaviyo_magic.export`. Standard ipywidgets, no custom JavaScript, so it
works in JupyterLab 4 and Notebook 7; building it needs no frontend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import ipywidgets as w
import pandas as pd

from .. import connections, lists
from ..errors import ConfigError, ConsentRequiredError, InputError
from ..export import export_segment
from ..export.namespace import dataframes
from ..result import ExportResult
from . import parts
from .runner import ExportRunner

_PREVIEW_LIST = "preview"  # a dry run needs a well-formed list id; it is never sent anywhere
_DEFAULT_KEYS = ("frames", "email", "connection", "list_id", "properties")
_STYLE = {"description_width": "9em"}


def _wide() -> w.Layout:
    return w.Layout(width="32em")  # one per widget, built with the form: no widget exists at import time


def form(namespace: Mapping[str, Any] | None = None, **defaults: Any) -> ExportForm:
    """Open the export form. DataFrames are picked from ``namespace``: by default the notebook's (IPython's
    ``user_ns``), else the caller's globals. ``defaults`` preset the fields: ``frames`` (variable names),
    ``email``, ``connection``, ``list_id`` and ``properties``."""
    if namespace is None:
        namespace = parts.ipython_namespace() or parts.caller_globals(skip=globals())
    return ExportForm(namespace, **defaults)


class ExportForm(w.VBox):
    """A form that exports DataFrames from a notebook into a Klaviyo list.

    ``namespace`` is where DataFrames are looked up by variable name. Results, for the user to keep:

    - ``result``: the last export's :class:`~klaviyo_magic.ExportResult` (a partial one after an error or a cancel);
    - ``problems``: its rows that were not sent (skipped, duplicate, failed) with the reasons, a DataFrame;
    - ``preview_result``, ``sample``: the last preview's dry-run result and the first profiles it would send;
    - ``last_error``: the last exception shown in the form; ``running``: an export is under way.

    Methods: ``refresh()`` rescans the namespace and the saved connections, ``load_lists()``,
    ``create_list(name)``, ``preview()``, ``export()`` (starts a background thread, like the Export button),
    ``cancel()`` (like the Cancel button: stops the running export as Ctrl-C would, keeping what Klaviyo
    accepted; returns False if no export was running), and ``wait(timeout=None)``, which joins the export's
    thread and returns ``result``.

    Child widgets, under stable names: ``frames`` (SelectMultiple of DataFrame variables), ``refresh_button``,
    ``email`` (Dropdown), ``connection`` (Dropdown), ``consent`` (Checkbox, shown only for a profile whose
    privacy terms were never accepted), ``lists`` (Dropdown, labels "Name (id)"), ``load_lists_button``,
    ``new_list_name`` (Text), ``create_list_button``, ``properties`` (SelectMultiple), ``preview_button``,
    ``export_button``, ``cancel_button`` (enabled only while an export runs), ``progress`` (IntProgress),
    ``progress_label``, ``error`` (red HTML), ``status`` (what the form did last, or is doing), ``preview_area``
    and ``result_area`` (HTML).
    """

    def __init__(self, namespace: Mapping[str, Any], **defaults: Any) -> None:
        unknown = sorted(set(defaults) - set(_DEFAULT_KEYS))
        if unknown:
            raise TypeError(f"unknown form default(s) {', '.join(unknown)}; use {', '.join(_DEFAULT_KEYS)}")
        self.namespace = namespace
        self.preview_result: ExportResult | None = None
        self.sample: pd.DataFrame | None = None
        self.last_error: BaseException | None = None
        self._quiet = False  # set while the form itself changes options, so observers do not cascade
        self._build()
        super().__init__(children=self._layout(), layout=w.Layout(width="100%"))
        self._wire()
        with self._guard():
            self.refresh()
            self._apply(defaults)

    # -- building -----------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.frames = w.SelectMultiple(description="DataFrames", rows=5, layout=_wide(), style=_STYLE)
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="Rescan the notebook")
        self.email = w.Dropdown(description="Email column", layout=_wide(), style=_STYLE)
        self.connection = w.Dropdown(description="Connection", layout=_wide(), style=_STYLE)
        self.consent = w.Checkbox(
            description=parts.CONSENT_TEXT, indent=False, layout=w.Layout(display="none", width="auto")
        )
        self.lists = w.Dropdown(description="Klaviyo list", layout=_wide(), style=_STYLE)
        self.load_lists_button = w.Button(description="Load lists", icon="download")
        self.new_list_name = w.Text(
            description="New list", placeholder="Name of a new list", layout=_wide(), style=_STYLE
        )
        self.create_list_button = w.Button(description="Create list", icon="plus")
        self.properties = w.SelectMultiple(description="Properties", rows=6, layout=_wide(), style=_STYLE)
        self.preview_button = w.Button(description="Preview", icon="eye", tooltip="Dry run: sends nothing")
        self.error = w.HTML()
        self.status = w.HTML()
        self.preview_area = w.HTML()
        self._runner = ExportRunner(say=self._say, show_error=self._show_error, also_busy=[self.preview_button])
        self.export_button, self.cancel_button = self._runner.export_button, self._runner.cancel_button
        self.progress, self.progress_label = self._runner.progress, self._runner.progress_label
        self.result_area = self._runner.result_area

    def _layout(self) -> list[w.Widget]:
        return [
            w.HTML("<b>Export DataFrames to a Klaviyo list</b>"),
            w.HBox([self.frames, self.refresh_button]),
            self.email,
            self.connection,
            self.consent,
            w.HBox([self.lists, self.load_lists_button]),
            w.HBox([self.new_list_name, self.create_list_button]),
            self.properties,
            w.HBox([self.preview_button, self.export_button, self.cancel_button]),
            w.HBox([self.progress, self.progress_label]),
            self.error,
            self.status,
            self.preview_area,
            self.result_area,
        ]

    def _wire(self) -> None:
        """Every observer and click handler, in one place."""
        for widget in (self.frames, self.email, self.properties):
            widget.observe(self._on_inputs, names="value")
        self.connection.observe(self._on_connection, names="value")
        self.consent.observe(self._on_consent, names="value")
        self.refresh_button.on_click(lambda _: self._run_action(self.refresh_button, self.refresh))
        self.load_lists_button.on_click(lambda _: self._run_action(self.load_lists_button, self.load_lists))
        self.create_list_button.on_click(
            lambda _: self._run_action(self.create_list_button, lambda: self.create_list(self.new_list_name.value))
        )
        self.preview_button.on_click(lambda _: self._run_action(self.preview_button, self.preview))
        self.export_button.on_click(lambda _: self._run_action(None, self.export))
        self.cancel_button.on_click(lambda _: self._run_action(None, self.cancel))

    def _apply(self, defaults: dict[str, Any]) -> None:
        if "connection" in defaults:
            self.connection.value = parts.check_choice(self.connection, defaults["connection"], "connection")
        if "list_id" in defaults:  # offered as is, so exporting to a known list needs no HTTP call first
            list_id = str(defaults["list_id"])
            self.lists.options, self.lists.value = [(list_id, list_id)], list_id
        if "frames" in defaults:
            names = defaults["frames"]
            names = [names] if isinstance(names, str) else names
            self.frames.value = tuple(parts.check_choice(self.frames, name, "DataFrame") for name in names)
        if "email" in defaults:
            self.email.value = parts.check_choice(self.email, defaults["email"], "email column")
        if "properties" in defaults:
            props = defaults["properties"]
            self.properties.value = tuple(parts.check_choice(self.properties, p, "property column") for p in props)

    # -- errors and busy buttons --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Show any exception in the form instead of letting ipywidgets log it where nobody looks."""
        try:
            yield
        except Exception as exc:
            self._show_error(exc)

    def _run_action(self, button: w.Button | None, action: Any) -> None:
        self.error.value = ""
        if button is not None:
            button.disabled = True
        try:
            with self._guard():
                action()
        finally:
            if button is not None:
                button.disabled = False

    def _show_error(self, exc: BaseException) -> None:
        self.last_error = exc
        self.error.value = parts.error_html(parts.error_message(exc))

    def _say(self, message: str) -> None:
        self.status.value = parts.status_html(message)

    # -- DataFrames and columns ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Rescan the namespace for DataFrames and the store for connection profiles; keep what still exists."""
        self.error.value = ""  # each action, from a button or from code, starts with no stale error on show
        found = dataframes(self.namespace)
        kept = tuple(name for name in self.frames.value if name in found)
        if not kept and len(found) == 1:
            kept = tuple(found)  # the only DataFrame around is almost surely the one to export
        with self._quietly():
            self.frames.options = [(parts.frame_label(name, frame), name) for name, frame in found.items()]
            self.frames.value = kept
        self._sync_columns()
        self._refresh_connections()
        self._say(parts.frames_found(len(found)))

    def _chosen_frames(self) -> list[pd.DataFrame]:
        frames = []
        for name in self.frames.value:
            value = self.namespace.get(name)
            if not isinstance(value, pd.DataFrame):
                raise InputError(f"{name!r} is no longer a DataFrame in the notebook; press Refresh and pick again.")
            frames.append(value)
        return frames

    def _sync_columns(self) -> None:
        """Email and property choices follow the chosen frames: only columns every frame has."""
        frames = [f for f in (self.namespace.get(n) for n in self.frames.value) if isinstance(f, pd.DataFrame)]
        columns = parts.common_columns(frames)
        email = self.email.value if self.email.value in columns else parts.detect_email_column(frames, columns)
        with self._quietly():
            self.email.options = [(str(column), column) for column in columns]
            self.email.value = email if email in columns else None
        self._sync_properties(columns, fresh=True)

    def _sync_properties(self, columns: list[Hashable] | None = None, *, fresh: bool = False) -> None:
        if columns is None:
            columns = [option[1] for option in self.email.options]
        rest = [column for column in columns if column != self.email.value]
        chosen = [column for column in self.properties.value if column in rest]
        if fresh:
            chosen += [column for column in parts.standard_columns(rest) if column not in chosen]
        with self._quietly():
            self.properties.options = [(str(column), column) for column in rest]
            self.properties.value = tuple(column for column in rest if column in chosen)
        self._clear_preview()

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        previous, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = previous

    def _on_inputs(self, change: dict[str, Any]) -> None:
        """Frames, email column or properties changed: re-derive what depends on them; drop the preview."""
        if self._quiet:
            return
        with self._guard():
            if change["owner"] is self.frames:
                self._sync_columns()
            elif change["owner"] is self.email:
                self._sync_properties()
            else:
                self._clear_preview()

    def _clear_preview(self) -> None:
        self.preview_result = self.sample = None
        self.preview_area.value = ""

    # -- connection, consent and lists --------------------------------------------------------------------

    def _refresh_connections(self) -> None:
        current = self.connection.value
        options, default = parts.connection_choices(connections.list(), connections.API_KEY_ENV)
        with self._quietly():  # setting options selects the first one: not a change the user made
            self.connection.options = options
            self.connection.value = current if current in parts.option_values(options) else default
        if self.connection.value != current:
            self.lists.options = []
        self._show_consent()
        if not options:
            self._show_error(ConfigError(parts.NO_CONNECTION))

    def _current_connection(self) -> connections.Connection:
        if self.connection.value is None:
            raise ConfigError(parts.NO_CONNECTION)
        return connections.resolve(self.connection.value or None)  # "" is the $KLAVIYO_API_KEY choice

    def _show_consent(self) -> None:
        conn = self._current_connection() if self.connection.value is not None else None
        needed = conn is not None and not conn.privacy_accepted
        with self._quietly():
            self.consent.value = False
            self.consent.disabled = False
        self.consent.layout.display = "flex" if needed else "none"

    def _on_connection(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        with self._guard():
            self.lists.options = []  # lists belong to the previous account
            self._show_consent()

    def _on_consent(self, change: dict[str, Any]) -> None:
        if self._quiet or not change["new"]:
            return
        with self._guard():
            connections.accept_privacy_terms(self._current_connection().name)
            self.consent.disabled = True  # acceptance is recorded; unticking would not undo it
            self.error.value = ""
            self._say(f"Data-privacy terms accepted for connection '{self.connection.value}'.")

    def load_lists(self) -> None:
        """Fetch every list of the account (all pages) into the ``lists`` dropdown; keep the selection."""
        self.error.value = ""
        found = lists.all_lists(self._current_connection())
        current = self.lists.value
        self.lists.options = [(item.label, item.id) for item in found]
        ids = [item.id for item in found]
        self.lists.value = current if current in ids else (ids[0] if ids else None)
        self._say(f"Loaded {len(found):,} list{'s' if len(found) != 1 else ''} from Klaviyo.")

    def create_list(self, name: str) -> str:
        """Create a Klaviyo list named ``name``, select it, and return its id."""
        self.error.value = ""
        name = (name or "").strip()
        if not name:
            raise InputError("Type a name for the new list, then press Create list.")
        created = lists.create_list(name, self._current_connection())
        self.lists.options = [*self.lists.options, (created.label, created.id)]
        self.lists.value = created.id
        self.new_list_name.value = ""
        self._say(f"Created list {created.label}.")
        return created.id

    # -- preview and export -------------------------------------------------------------------------------

    def _inputs(self) -> dict[str, Any]:
        frames = self._chosen_frames()
        if not frames:
            raise InputError("Pick at least one DataFrame under DataFrames (press Refresh if it is missing).")
        if self.email.value is None:
            raise InputError("Choose the email column: no column was recognised as holding email addresses.")
        return {"segments": frames, "email": self.email.value, "properties": list(self.properties.value)}

    def preview(self) -> ExportResult:
        """Dry run: count what would be sent, skipped and deduplicated, and show a sample. Sends nothing."""
        self.error.value = ""
        inputs = self._inputs()
        result = export_segment(**inputs, list_id=self.lists.value or _PREVIEW_LIST, dry_run=True)
        self.sample = parts.preview_sample(result, inputs["segments"], inputs["properties"])
        self.preview_result = result
        self.preview_area.value = parts.preview_html(result, self.sample)
        return result

    @property
    def result(self) -> ExportResult | None:
        return self._runner.result

    @property
    def problems(self) -> pd.DataFrame | None:
        return self._runner.problems

    @property
    def running(self) -> bool:
        return self._runner.running

    def export(self) -> None:
        """Check the inputs, then run the export in a background thread (see :meth:`wait`)."""
        self.error.value = ""
        if self.running:
            raise InputError("An export is already running; wait for it to end (form.wait()) or cancel it.")
        inputs = self._inputs()
        if self.lists.value is None:
            raise InputError("Choose a Klaviyo list (press Load lists) or create one with Create list.")
        conn = self._current_connection()
        if not conn.privacy_accepted:
            raise ConsentRequiredError(parts.consent_message(conn.name))
        job = {**inputs, "list_id": self.lists.value, "connection": self.connection.value or None}
        rows = sum(len(frame) for frame in inputs["segments"])
        self._runner.start(job, rows=rows, list_label=self.lists.label)

    def cancel(self) -> bool:
        """Stop the running export as Ctrl-C would: no new import job is sent, jobs Klaviyo accepted count as
        sent, and the form then shows the partial result. Returns False when there was no export to cancel."""
        return self._runner.cancel()

    def wait(self, timeout: float | None = None) -> ExportResult | None:
        """Block until the running export (if any) ends; return ``result``. ``TimeoutError`` if it is still
        running after ``timeout`` seconds."""
        return self._runner.wait(timeout)
