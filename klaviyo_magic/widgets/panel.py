"""The export form: ipywidgets for the exploratory export, on top of :func:`~klaviyo_magic.export_segment` and
:mod:`klaviyo_magic.lists`.

Widgets and wiring only: DataFrame and column logic is in :mod:`~klaviyo_magic.widgets.parts`, what the form shows
in :mod:`~klaviyo_magic.widgets.views`, the connection and list in :mod:`~klaviyo_magic.widgets.destination`, the
Mirror choice in :mod:`~klaviyo_magic.widgets.mirroring`, the background actions and the export's widgets in
:mod:`~klaviyo_magic.widgets.runner`; HTTP is the client's, the export the engine's. Standard ipywidgets, no custom
JavaScript, so it works in JupyterLab 4 and Notebook 7; building it needs no frontend.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import ipywidgets as w
import pandas as pd

from ..errors import ConsentRequiredError, InputError
from ..export import export_segment
from ..export.mirror import RemovalLimitError
from ..export.namespace import dataframes, is_dataframe
from ..result import ExportResult
from . import parts, views
from .checklist import Checklist
from .destination import STYLE, Destination, wide
from .mirroring import MirrorChoice
from .runner import ExportRunner

_OFFLINE_LIST = "preview"  # a dry run needs a well-formed list id; offline, it is never sent anywhere
_DEFAULT_KEYS = ("frames", "email", "connection", "list_id", "properties", "full", "mirror")


def form(namespace: Mapping[str, Any] | None = None, **defaults: Any) -> ExportForm:
    """Open the export form. DataFrames are picked from ``namespace``: by default the notebook's (IPython's
    ``user_ns``), else the caller's globals. ``defaults`` preset the fields: ``frames`` (variable names),
    ``email``, ``connection``, ``list_id``, ``properties``, ``full`` and ``mirror``."""
    if namespace is None:
        namespace = parts.ipython_namespace() or parts.caller_globals(skip=globals())
    return ExportForm(namespace, **defaults)


class ExportForm(w.VBox):
    """A form that exports DataFrames from a notebook into a Klaviyo list.

    ``namespace`` is where DataFrames are looked up by variable name. What the form keeps, for code that holds it:

    - ``result``: the last export's :class:`~klaviyo_magic.ExportResult` (a partial one after an error or a
      cancel); ``problems``: its rows that were not sent, with the reasons (a DataFrame, emails unmasked);
    - ``preview_result``, ``sample``: the last preview's dry-run result and the profiles exactly as it would send
      them; ``last_error``: the last exception shown in the form; ``running``: an action is under way.

    Methods: ``refresh()`` rescans the namespace and the saved connections; ``load_lists()``,
    ``create_list(name)`` and ``preview()`` do what their buttons do, but in the calling thread (their buttons run
    them in the background); ``export()`` and ``resume()`` start the export in the background, like their
    buttons; ``cancel()`` stops whatever runs in the background (False if nothing does); ``wait(timeout=None)``
    waits for it and returns ``result``.

    Child widgets, under stable names: ``frames`` (SelectMultiple of DataFrame variables of every supported
    kind), ``refresh_button``, ``email`` (Dropdown), ``connection`` (Dropdown), ``privacy_terms`` (HTML) and
    ``consent`` (Checkbox), shown only for a profile whose privacy terms were never accepted, ``lists``
    (Dropdown, labels "Name (id)"), ``load_lists_button``, ``new_list_name`` (Text), ``create_list_button``,
    ``properties`` (a :class:`~klaviyo_magic.widgets.checklist.Checklist` of tick boxes; ``value``: the ticked
    columns), ``full`` (Checkbox: re-send the unchanged rows too), ``mirror`` (Checkbox), ``allow_removals``
    (Checkbox, shown when the mirror guard stopped or would stop a run), ``preview_button``, ``export_button``,
    ``resume_button`` (shown after a run cut short), ``cancel_button`` (enabled while an action runs),
    ``progress`` (IntProgress), ``progress_label``, ``error`` (red HTML), ``status`` (what the form is doing),
    ``preview_area`` and ``result_area`` (HTML). Emails are masked in every widget, because widget values are
    saved with the notebook.
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
        self.frames = w.SelectMultiple(description="DataFrames", rows=5, layout=wide(), style=STYLE)
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="Rescan the notebook")
        self.email = w.Dropdown(description="Email column", layout=wide(), style=STYLE)
        self._to = Destination(say=self._say, show_error=self._show_error, changed=self._forget_outcomes)
        self.connection, self.privacy_terms, self.consent = (
            self._to.connection,
            self._to.privacy_terms,
            self._to.consent,
        )
        self.lists, self.load_lists_button = self._to.lists, self._to.load_lists_button
        self.new_list_name, self.create_list_button = self._to.new_list_name, self._to.create_list_button
        self.properties = Checklist()
        self._sync = MirrorChoice(say=self._say)
        self.full, self.mirror, self.allow_removals = self._sync.full, self._sync.mirror, self._sync.allow_removals
        self.preview_button = w.Button(description="Preview", icon="eye", tooltip="Dry run: sends nothing")
        self.error = w.HTML()
        self.status = w.HTML()
        self.preview_area = w.HTML()
        busy = [self.preview_button, *self._to.buttons]
        self._runner = self._to.runner = ExportRunner(
            say=self._say, show_error=self._show_error, busy=busy, guard=self._sync.met_guard
        )
        self.export_button, self.resume_button = self._runner.export_button, self._runner.resume_button
        self.cancel_button = self._runner.cancel_button
        self.progress, self.progress_label = self._runner.progress, self._runner.progress_label
        self.result_area = self._runner.result_area

    def _layout(self) -> list[w.Widget]:
        def labelled(text: str, widget: w.Widget) -> w.HBox:  # a label placed like the dropdowns' descriptions
            label = w.HTML(
                f"<div style='text-align:right'>{text}</div>",
                layout=w.Layout(width="9em", min_width="9em", margin="2px 8px 2px 2px"),
            )
            return w.HBox([label, widget])

        return [
            w.HTML("<b>Export DataFrames to a Klaviyo list</b>"),
            w.HBox([self.frames, self.refresh_button]),
            self.email,
            *self._to.widgets(),
            labelled("Properties", self.properties),
            labelled("Sync", self._sync.widget()),
            w.HBox([self.preview_button, self.export_button, self.resume_button, self.cancel_button]),
            w.HBox([self.progress, self.progress_label]),
            self.error,
            self.status,
            self.preview_area,
            self.result_area,
        ]

    def _wire(self) -> None:
        """Every observer and click handler, in one place (the connection's and the list's in ``Destination``)."""
        for widget in (self.frames, self.email, self.properties, self.lists, self.full, self.mirror):
            widget.observe(self._on_inputs, names="value")
        self._to.wire(self._act)
        self.refresh_button.on_click(lambda _: self._act(self.refresh))
        self.preview_button.on_click(lambda _: self._act(self._start_preview))
        self.export_button.on_click(lambda _: self._act(self.export))
        self.resume_button.on_click(lambda _: self._act(self.resume))
        self.cancel_button.on_click(lambda _: self._act(self.cancel))

    def _apply(self, defaults: dict[str, Any]) -> None:
        if "connection" in defaults:
            self.connection.value = parts.check_choice(self.connection, defaults["connection"], "connection")
        if "list_id" in defaults:
            self._to.preset_list(str(defaults["list_id"]))
        if "frames" in defaults:
            names = defaults["frames"]
            names = [names] if isinstance(names, str) else names
            self.frames.value = tuple(parts.check_choice(self.frames, name, "DataFrame") for name in names)
        if "email" in defaults:
            self.email.value = parts.check_choice(self.email, defaults["email"], "email column")
        if "properties" in defaults:
            props = defaults["properties"]
            self.properties.value = tuple(parts.check_choice(self.properties, p, "property column") for p in props)
        if "full" in defaults:
            self.full.value = bool(defaults["full"])
        if "mirror" in defaults:
            self.mirror.value = bool(defaults["mirror"])

    # -- errors, status, busy -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Show any exception in the form instead of letting ipywidgets log it where nobody looks."""
        try:
            yield
        except Exception as exc:
            self._show_error(exc)

    def _act(self, action: Any) -> None:
        """A click: a fresh start (no stale error), then the action, its errors shown in the form."""
        self.error.value = ""
        with self._guard():
            if self.running and action != self.cancel:
                raise InputError("The form is still busy with the last action; wait for it to end or press Cancel.")
            action()

    def _show_error(self, exc: BaseException | None) -> None:
        if exc is not None:
            self.last_error = exc
        self.error.value = views.error_html(exc) if exc is not None else ""

    def _say(self, message: str) -> None:
        self.status.value = views.status_html(message)

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        previous, self._quiet = self._quiet, True
        try:
            with self._to.quietly():
                yield
        finally:
            self._quiet = previous

    @property
    def running(self) -> bool:
        return self._runner.running

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
        self._to.refresh_connections()
        self._say(parts.frames_found(len(found)))

    def _chosen_frames(self) -> list[Any]:
        frames = []
        for name in self.frames.value:
            value = self.namespace.get(name)
            if not is_dataframe(value):
                raise InputError(f"{name!r} is no longer a DataFrame in the notebook; press Refresh and pick again.")
            frames.append(value)
        return frames

    def _sync_columns(self) -> None:
        """Email and property choices follow the chosen frames: only columns every frame has."""
        frames = [f for f in (self.namespace.get(n) for n in self.frames.value) if is_dataframe(f)]
        columns = parts.common_columns(frames)
        email = self.email.value if self.email.value in columns else parts.detect_email_column(frames, columns)
        with self._quietly():
            self.email.options = [(str(column), column) for column in columns]
            self.email.value = email if email in columns else None
        self._sync_properties(columns, fresh=True)

    def _sync_properties(self, columns: list[Hashable] | None = None, *, fresh: bool = False) -> None:
        if columns is None:
            columns = parts.option_values(self.email.options)
        rest = [column for column in columns if column != self.email.value]
        chosen = [column for column in self.properties.value if column in rest]
        if fresh:
            chosen += [column for column in parts.standard_columns(rest) if column not in chosen]
        with self._quietly():
            self.properties.options = tuple((str(column), column) for column in rest)
            self.properties.value = tuple(column for column in rest if column in chosen)
        self._forget_outcomes()

    def _on_inputs(self, change: dict[str, Any]) -> None:
        """An input changed: re-derive what depends on it, and drop what no longer matches the inputs."""
        if self._quiet:
            return
        with self._guard():
            if change["owner"] is self.frames:
                self._sync_columns()
            elif change["owner"] is self.email:
                self._sync_properties()
            else:
                self._forget_outcomes()

    def _forget_outcomes(self, *, keep_allowance: bool = False) -> None:
        """No stale error, preview, result or removal allowance once the inputs changed. ``result`` stays for
        code; only what the form shows goes. A running export keeps its display."""
        if self._runner.exporting:
            return
        self.error.value = ""
        self.preview_result = self.sample = None
        self.preview_area.value = ""
        self._sync.hide(keep_allowance=keep_allowance)
        self._runner.clear()
        self._say("")

    # -- Klaviyo lists (the buttons run them in the background) -------------------------------------------

    def load_lists(self) -> None:
        """Fetch every list of the account (all pages) into the ``lists`` dropdown; keep the selection."""
        self.error.value = ""
        self._to.load_lists()

    def create_list(self, name: str) -> str:
        """Create a Klaviyo list named ``name``, select it, and return its id."""
        self.error.value = ""
        return self._to.create_list(name)

    # -- preview and export -------------------------------------------------------------------------------

    def _inputs(self) -> dict[str, Any]:
        frames = self._chosen_frames()
        if not frames:
            raise InputError("Pick at least one DataFrame under DataFrames (press Refresh if it is missing).")
        if self.email.value is None:
            raise InputError("Choose the email column: no column was recognised as holding email addresses.")
        job = {"segments": frames, "email": self.email.value, "properties": list(self.properties.value)}
        return {**job, **self._sync.options()}

    def preview(self) -> ExportResult:
        """Dry run: the plan (to add, to update, unchanged, to remove) and the profiles exactly as they would be
        sent. Sends nothing; with a list chosen, asks Klaviyo (read-only) whether the key works and the list
        exists, and compares with what earlier runs put in the list."""
        self.error.value = ""
        return self._preview(self._preview_job(), None)

    def _preview_job(self) -> dict[str, Any]:
        job = self._inputs()
        once = [name for name in self.frames.value if not parts.rereadable(self.namespace.get(name))]
        if once:  # a preview would use up the rows the export then needs
            raise InputError(
                f"{once[0]!r} can be read only once (an Arrow RecordBatchReader), so a preview would leave nothing "
                "to export. Export it directly, or make it a table first (reader.read_all())."
            )
        if self.lists.value is None or self.connection.value is None:
            return {**job, "list_id": _OFFLINE_LIST, "offline": True}
        return {**job, "list_id": self.lists.value, "connection": self.connection.value or None}

    def _start_preview(self) -> None:
        job = self._preview_job()
        self._forget_outcomes(keep_allowance=True)

        def ended(value: Any, error: BaseException | None, cancelled: bool) -> None:
            if cancelled:
                self._say("Cancelled: no preview.")
            elif error is not None:
                self._say("")
                self._show_error(error)

        work = lambda stop: self._preview(job, stop)  # noqa: E731 - one line, named by its use
        self._runner.start("Preview", "Previewing: nothing is sent...", work, ended)

    def _preview(self, job: dict[str, Any], stop: threading.Event | None) -> ExportResult:
        result = export_segment(**job, dry_run=True, cancel=stop, progress=self._runner.note)
        if job.get("offline"):
            result.checked = "Not checked with Klaviyo: choose a connection and a list to check the key and the list."
        self.preview_result, self.sample = result, result.sample
        self._to.name_list(result)
        self.preview_area.value = views.preview_html(result, offline=bool(job.get("offline")))
        self._say("")
        if self.mirror.value and (guard := views.guard_warning(result)) is not None:
            self._sync.met_guard(RemovalLimitError(guard, would_remove=result.removed, allowed=0))
        return result

    @property
    def result(self) -> ExportResult | None:
        return self._runner.result

    @property
    def problems(self) -> pd.DataFrame | None:
        return self._runner.problems

    def export(self, *, resume: bool = False) -> None:
        """Check the inputs, then run the export in a background thread (see :meth:`wait`)."""
        self.error.value = ""
        if self.running:
            raise InputError("The form is still busy with the last action; wait for it to end or press Cancel.")
        job = self._inputs()
        if self.lists.value is None:
            raise InputError("Choose a Klaviyo list (press Load lists) or create one with Create list.")
        conn = self._to.current()
        if not conn.privacy_accepted:
            raise ConsentRequiredError(views.consent_message(conn.name))
        job.update(list_id=self.lists.value, connection=self.connection.value or None, resume=resume)
        self.preview_area.value = ""  # one summary per run: the export's replaces the preview's
        self._sync.hide(keep_allowance=True)
        self._runner.start_export(job, rows=parts.known_rows(job["segments"]), list_label=self.lists.label)

    def resume(self) -> None:
        """Continue the last export, cut short by a cancel or an error: the rows Klaviyo accepted are not sent
        again (``export_segment(..., resume=True)``)."""
        self.export(resume=True)

    def cancel(self) -> bool:
        """Stop what runs in the background: an export stops as Ctrl-C would (no new import job is sent, jobs
        Klaviyo accepted count as sent, then the form shows the partial result); Load lists, Create list and
        Preview stop waiting for Klaviyo. Returns False when nothing was running."""
        return self._runner.cancel()

    def wait(self, timeout: float | None = None) -> ExportResult | None:
        """Block until the background action (if any) ends; return ``result``. ``TimeoutError`` if it is still
        running after ``timeout`` seconds."""
        self._runner.wait(timeout)
        return self.result
