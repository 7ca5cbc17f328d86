"""The export form's background work: every button that talks to Klaviyo (Load lists, Create list, Preview,
Export, Resume) runs its action in a thread, so the kernel stays free for widget clicks, Cancel among them, and
for the notebook's other cells. One action at a time; Cancel sets the action's stop event, which ends the
client's waits (for a retry, for the rate limit) at once and stops an export as Ctrl-C would.

Also here: the export's own widgets (the Export, Resume and Cancel buttons, the progress bar and its line, the
result area) and how an export's end is shown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as w
import pandas as pd

from ..errors import ExportInterrupted, KlaviyoMagicError
from ..export import export_segment
from ..export.mirror import RemovalLimitError
from ..progress import ProgressEvent
from ..result import ExportResult
from ..retries import RetryNotice, Stopped
from . import views

CANCELLING = "Cancelling: no new request will be sent; waiting for the requests already on their way."


class Task:
    """``work(stop)`` in a daemon thread; ``ended(value, error, cancelled)`` is called in that thread when it ends.

    :meth:`cancel` sets ``stop``. The end of the work and a cancel exclude each other, so a "cancelling" message
    shown by a cancel can never come after the final one.
    """

    def __init__(
        self,
        name: str,
        work: Callable[[threading.Event], Any],
        ended: Callable[[Any, BaseException | None, bool], None],
    ) -> None:
        self.name = name
        self.stop = threading.Event()
        self._work = work
        self._ended_callback = ended
        self._lock = threading.Lock()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name=f"klaviyo-form-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def cancel(self, then: Callable[[], None]) -> bool:
        """Ask the work to stop and call ``then``; False (and neither) if it has already ended or been cancelled."""
        with self._lock:
            if self._ended or self.stop.is_set():
                return False
            self.stop.set()
            then()
            return True

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        value, error = None, None
        try:
            value = self._work(self.stop)
        except BaseException as exc:  # shown in the form; a thread has nobody else to tell
            error = exc
        with self._lock:
            self._ended = True
            cancelled = self.stop.is_set() and (error is None or isinstance(error, Stopped | ExportInterrupted))
            self._ended_callback(value, error, cancelled)


@dataclass(frozen=True)
class Outcome:
    """How an export ended: its result (partial after an error or a cancel; ``None`` if it never read its input),
    the error that stopped it, and whether it was cancelled."""

    result: ExportResult | None
    error: BaseException | None = None
    cancelled: bool = False

    @classmethod
    def of(cls, result: ExportResult | None, error: BaseException | None, cancelled: bool) -> Outcome:
        if isinstance(error, ExportInterrupted):
            return cls(error.result, cancelled=True)
        if error is not None:
            return cls(getattr(error, "result", None), error=error)
        return cls(result)

    @property
    def bar_style(self) -> str:
        """Red after an error, orange if some row was not sent or failed, green when everything went."""
        if self.error is not None and not isinstance(self.error, RemovalLimitError):
            return "danger"
        return "success" if self.result is not None and self.result.ok and self.error is None else "warning"

    @property
    def can_resume(self) -> bool:
        """A run cut short with rows left to send: Resume continues it without re-sending what Klaviyo took. After
        an error before Klaviyo took anything (a refused key), there is nothing to continue: Export again does it."""
        result = self.result
        cut_short = self.cancelled or (self.error is not None and not isinstance(self.error, RemovalLimitError))
        return result is not None and cut_short and result.resumable


class ExportRunner:
    """The export part of the form: ``export_button``, ``resume_button`` (shown after a run cut short),
    ``cancel_button`` (enabled while any action runs), ``progress`` and ``progress_label``, ``result_area``, and
    the one background :class:`Task` at a time behind every button.

    ``say`` writes the form's status line, ``show_error`` its error line; ``busy`` are the form's other buttons
    to disable while an action runs; ``guard`` is told how each export met the mirror guard: the
    :class:`RemovalLimitError` when it tripped, else None.
    ``result`` and ``problems`` hold the last export's outcome.
    """

    def __init__(
        self,
        *,
        say: Callable[[str], None],
        show_error: Callable[[BaseException], None],
        busy: Sequence[w.Button],
        guard: Callable[[RemovalLimitError | None], None],
    ) -> None:
        self.export_button = w.Button(description="Export to Klaviyo", icon="upload", button_style="primary")
        self.resume_button = w.Button(
            description="Resume",
            icon="play",
            tooltip="Send the rows the stopped export did not send; what Klaviyo accepted is not sent again",
            layout=w.Layout(display="none"),
        )
        self.cancel_button = w.Button(
            description="Cancel", icon="stop", disabled=True, tooltip="Stop: no new request is sent to Klaviyo"
        )
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(display="none", width="32em"))
        self.progress_label = w.Label()
        self.result_area = w.HTML()
        self.result: ExportResult | None = None
        self.problems: pd.DataFrame | None = None
        self.task: Task | None = None
        self._say = say
        self._show_error = show_error
        self._busy = [self.export_button, self.resume_button, *busy]
        self._guard = guard
        self._status = ""  # what the running action is doing, shown again once a retry notice is over

    @property
    def running(self) -> bool:
        return self.task is not None and self.task.running

    @property
    def exporting(self) -> bool:
        return self.running and self.task is not None and self.task.name == "export"

    # -- any action ---------------------------------------------------------------------------------------

    def start(self, name: str, status: str, work: Callable[[threading.Event], Any], ended: Callable[..., None]) -> None:
        """Run ``work(stop)`` in the background with the buttons disabled; ``ended(value, error, cancelled)``
        shows its outcome (in the task's thread), then the buttons come back."""
        if self.running:
            raise RuntimeError("busy")  # the buttons are disabled meanwhile; only code can get here

        def finish(value: Any, error: BaseException | None, cancelled: bool) -> None:
            try:
                ended(value, error, cancelled)
            except Exception as exc:  # a bug in showing the outcome must still give the buttons back
                self._show_error(exc)
            finally:
                self._set_busy(False)

        self._status = status
        self._say(status)
        self.task = Task(name, work, finish)
        self._set_busy(True)
        try:
            self.task.start()
        except BaseException:
            self._set_busy(False)
            raise

    def cancel(self) -> bool:
        """Ask the running action to stop; False if there was none (or it was already cancelled)."""
        return self.task is not None and self.task.cancel(then=self._show_cancelling)

    def wait(self, timeout: float | None = None) -> None:
        if self.task is not None and not self.task.join(timeout):
            raise TimeoutError(f"The form's {self.task.name} is still running after {timeout}s; wait again.")

    def retrying(self, notice: RetryNotice | str) -> None:
        """Klaviyo is being retried: say so in the status line (within the first failed try, not 45 s later)."""
        self._say(notice.message if isinstance(notice, RetryNotice) else notice)

    def note(self, event: ProgressEvent) -> None:
        """The status line for an engine event: a retry notice while Klaviyo is retried, else what the action
        is doing."""
        self._say(event.message if event.stage == "retrying" else self._status)

    def _show_cancelling(self) -> None:
        self.cancel_button.disabled = True  # one cancel is enough; the buttons come back as the action ends
        self._status = CANCELLING
        self._say(CANCELLING)

    def _set_busy(self, busy: bool) -> None:
        for button in self._busy:
            button.disabled = busy
        self.cancel_button.disabled = not busy

    # -- the export ---------------------------------------------------------------------------------------

    def start_export(self, job: dict[str, Any], *, rows: int | None, list_label: str) -> None:
        """Forget the last result, then run ``export_segment(**job)`` in the background."""
        self.clear()
        self.progress.bar_style = "info"
        self.progress.layout.display = "flex"
        self.progress_label.value = "Starting..."

        def work(stop: threading.Event) -> ExportResult:
            return export_segment(**job, progress=self._on_progress, cancel=stop)

        self.start("export", views.starting_message(rows, list_label), work, self._finish)

    def clear(self) -> None:
        """Hide the last export's display (the inputs changed, or a new export starts); ``result`` stays."""
        self.result_area.value = ""
        self.progress.value, self.progress.max = 0, 1
        self.progress.layout.display = "none"
        self.progress_label.value = ""
        self.resume_button.layout.display = "none"

    def _finish(self, result: ExportResult | None, error: BaseException | None, cancelled: bool) -> None:
        """The export has ended: one summary, the rows not sent, the error if any, the bar's last state."""
        outcome = Outcome.of(result, error, cancelled)
        self.result = outcome.result
        self.problems = outcome.result.problems if outcome.result is not None else None
        if outcome.result is not None:
            self.result_area.value = views.result_html(outcome.result)
        if outcome.error is not None:
            self._show_error(outcome.error)
            if not isinstance(outcome.error, KlaviyoMagicError) or outcome.result is None:
                self.progress_label.value = "Stopped: see the error above."
        self.progress.bar_style = outcome.bar_style
        self.resume_button.layout.display = None if outcome.can_resume else "none"
        self._say("")  # the summary says how it ended; a status line repeating it would be a second summary
        self._guard(outcome.error if isinstance(outcome.error, RemovalLimitError) else None)

    def _on_progress(self, event: ProgressEvent) -> None:
        """Engine events (from its threads): the bar never goes backwards nor starts over; retries go to the
        status line."""
        self.note(event)
        if event.stage == "retrying":
            return
        if event.stage == "done" and event.outcome == "empty":
            self.progress.layout.display = "none"
        elif event.stage in ("sending", "processing", "done"):
            done = max(self.progress.value, event.done)
            total = max(event.total if event.total is not None else done + event.in_flight, done, 1)
            self.progress.max = max(total, 1)
            self.progress.value = min(done, self.progress.max)
        self.progress_label.value = views.progress_text(event)
