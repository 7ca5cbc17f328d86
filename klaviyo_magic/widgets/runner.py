"""The export form's run part: the Export and Cancel buttons, the progress bar, the result area, and the export
behind them, which runs in a background thread so the kernel stays free for widget clicks (Cancel among them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as w
import pandas as pd

from ..errors import ExportInterrupted, KlaviyoError
from ..export import export_segment
from ..progress import ProgressEvent
from ..result import ExportResult
from . import parts

CANCELLING = "Cancelling: no new import job will be sent; waiting for the requests already on their way."


@dataclass(frozen=True)
class Outcome:
    """How a background export ended: its result (partial after an error or a cancel; ``None`` if the export
    never started), the error that stopped it, and whether it was cancelled."""

    result: ExportResult | None
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def bar_style(self) -> str:
        """The progress bar's colour: red after an error, orange if some row failed or the export was cut short."""
        if self.error is not None:
            return "danger"
        return "success" if self.result is not None and self.result.ok else "warning"

    @property
    def cut_short(self) -> bool:
        """Cancelled or stopped by an error: the bar's last "Done" (profiles in jobs seen finished) then
        undersells what Klaviyo accepted."""
        return self.cancelled or self.error is not None

    def progress_text(self, to_send: int) -> str:
        """The progress label of a run cut short: ``Cancelled: 70,000 / 100,000 sent``."""
        sent = self.result.sent if self.result is not None else 0
        return f"{'Cancelled' if self.cancelled else 'Stopped'}: {sent:,} / {to_send:,} sent"

    @property
    def message(self) -> str:
        """The status line once the export has ended."""
        result = self.result
        if result is None:
            return "The export stopped: see the error above."
        sent = f"{result.sent:,} of {result.total_rows:,} rows were sent"
        if self.cancelled:
            return f"Export cancelled: {sent} before it stopped."
        if self.error is not None:
            return f"Export stopped by the error above: {sent}."
        return f"Export finished: {sent}."


def starting_message(rows: int, list_label: str) -> str:
    return f"Exporting {rows:,} row{'s' if rows != 1 else ''} to list {list_label}..."


class BackgroundExport:
    """``export_segment(**job)`` in a daemon thread, which :meth:`cancel` stops as Ctrl-C would.

    ``progress`` receives the engine's progress events and ``finished`` the :class:`Outcome`, both in that
    thread. The end of the run and a cancel exclude each other, so a "cancelling" message shown by a cancel can
    never come after the final one.
    """

    def __init__(
        self, job: dict[str, Any], *, progress: Callable[[Any], None], finished: Callable[[Outcome], None]
    ) -> None:
        self._job = job
        self._progress = progress
        self._finished = finished
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="klaviyo-form", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def cancel(self, then: Callable[[], None]) -> bool:
        """Ask the export to stop and call ``then``; return False (and do neither) if it has already ended or
        been cancelled."""
        with self._lock:
            if self._ended or self._cancel.is_set():
                return False
            self._cancel.set()
            then()
            return True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; return whether it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        outcome = self._export()
        with self._lock:
            self._ended = True
            self._finished(outcome)

    def _export(self) -> Outcome:
        try:
            return Outcome(export_segment(**self._job, progress=self._progress, cancel=self._cancel))
        except ExportInterrupted as exc:  # only a cancel interrupts this thread: Ctrl-C reaches the main one
            return Outcome(exc.result, cancelled=True)
        except KlaviyoError as exc:
            return Outcome(exc.result, error=exc)
        except Exception as exc:  # an input error found by the engine, or a bug: the form shows it
            return Outcome(None, error=exc)


class ExportRunner:
    """The run part of the export form: ``export_button``, ``cancel_button`` (enabled only while an export
    runs), ``progress`` and ``progress_label``, ``result_area``, and the background export behind them.

    ``say`` writes the form's status line and ``show_error`` its error line; ``also_busy`` are the form's other
    buttons to disable while an export runs. ``result`` and ``problems`` hold the last export's outcome.
    """

    def __init__(
        self, *, say: Callable[[str], None], show_error: Callable[[BaseException], None], also_busy: Sequence[w.Button]
    ) -> None:
        self.export_button = w.Button(description="Export to Klaviyo", icon="upload", button_style="primary")
        self.cancel_button = w.Button(
            description="Cancel", icon="stop", disabled=True, tooltip="Stop the export: no new import job is sent"
        )
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(display="none", width="32em"))
        self.progress_label = w.Label()
        self.result_area = w.HTML()
        self.result: ExportResult | None = None
        self.problems: pd.DataFrame | None = None
        self._say = say
        self._show_error = show_error
        self._also_busy = list(also_busy)
        self._run: BackgroundExport | None = None

    @property
    def running(self) -> bool:
        return self._run is not None and self._run.running

    def start(self, job: dict[str, Any], *, rows: int, list_label: str) -> None:
        """Forget the last result, then run ``export_segment(**job)`` in the background."""
        self.result = self.problems = None
        self.result_area.value = ""
        self.progress.value, self.progress.max, self.progress.bar_style = 0, 1, "info"
        self.progress.layout.display = "flex"
        self.progress_label.value = "Starting..."
        self._say(starting_message(rows, list_label))
        self._run = BackgroundExport(job, progress=self._on_progress, finished=self._finish)
        self._set_busy(True)
        try:
            self._run.start()
        except BaseException:
            self._set_busy(False)
            raise

    def cancel(self) -> bool:
        """Ask the running export to stop; False if there was none (or it was already cancelled)."""
        return self._run is not None and self._run.cancel(then=self._show_cancelling)

    def wait(self, timeout: float | None = None) -> ExportResult | None:
        """Block until the running export (if any) ends; return ``result``."""
        if self._run is not None and not self._run.join(timeout):
            raise TimeoutError(f"The export is still running after {timeout}s; call form.wait() again.")
        return self.result

    def _show_cancelling(self) -> None:
        self.cancel_button.disabled = True  # one cancel is enough; the buttons come back as the export ends
        self._say(CANCELLING)

    def _finish(self, outcome: Outcome) -> None:
        """The export has ended: show its (possibly partial) result, its error, and what happened."""
        try:
            result = outcome.result
            if result is not None:
                self._show_result(result)  # which rows made it, also before an error or a cancel
                if outcome.cut_short:
                    self.progress.value = min(result.sent, self.progress.max)
                    self.progress_label.value = outcome.progress_text(self.progress.max)
            if outcome.error is not None:
                self._show_error(outcome.error)
            self.progress.bar_style = outcome.bar_style
            self._say(outcome.message)
        finally:
            self._set_busy(False)

    def _on_progress(self, event: ProgressEvent) -> None:
        self.progress.max = max(event.total, 1)
        self.progress.value = min(event.done, self.progress.max) if event.total else self.progress.max
        self.progress_label.value = parts.progress_text(event)

    def _show_result(self, result: ExportResult) -> None:
        self.result = result
        self.problems = result.problems
        self.result_area.value = parts.result_html(result)

    def _set_busy(self, busy: bool) -> None:
        for button in (self.export_button, *self._also_busy):
            button.disabled = busy
        self.cancel_button.disabled = not busy
