"""Progress reporting for exports. The engine emits events; drawing them is the job of the code here (a bar, or
plain lines in a log) or of the caller's callable.

What is shown must be true: the bar counts profiles Klaviyo accepted, so it never goes backwards, never starts
over at a new stage and never restarts its clock; it shows the import jobs on their way (a Cancel cannot call
those back) and ends saying what happened ("Interrupted: 60,000 of 100,000 sent"), its last frame counting the
rows settled so that numbers and words agree ("Done: 9,990 sent, 10 failed ... 10,000/10,000"). Where the output
is not a terminal or a notebook (a cron log), it writes a plain line now and then instead of redrawing a bar. An
export with nothing to send says so ("Nothing to send") instead of drawing 0/0. With progress turned off, the one thing
still said (a line each on stderr) is that Klaviyo cannot be reached and is being retried: a silent minute of
retries looks like a hang.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

from .retries import RetryNotice


@dataclass(frozen=True)
class ProgressEvent:
    """One step of an export.

    ``stage``: ``"sending"`` and ``"processing"`` (everything sent, Klaviyo still importing): ``done`` is the
    profiles Klaviyo has accepted so far and ``total`` the profiles to send (None while a streamed input is still
    being read); ``"removing"`` (mirror mode): ``done`` leavers settled (removed, kept or found gone) of ``total``;
    ``"retrying"``: ``message`` says what failed and when the next try is; ``"done"``: ``outcome`` is ``complete``,
    ``interrupted``, ``cancelled``, ``error`` or ``empty`` and ``message`` says it in words.

    ``jobs`` counts the import jobs Klaviyo accepted; ``in_flight`` and ``in_flight_jobs`` the profiles and jobs on
    their way to it (sent, not yet accepted); ``imported`` the profiles Klaviyo has finished importing; ``earlier``
    the part of ``done`` that took no request now, so not in a rate: profiles Klaviyo accepted in the run being
    resumed, leavers kept or found gone without a removal.
    """

    stage: str
    done: int
    total: int | None
    jobs: int = 0
    in_flight: int = 0
    in_flight_jobs: int = 0
    imported: int = 0
    message: str = ""
    outcome: str = ""
    retry: RetryNotice | None = None  # ``"retrying"``: the notice itself (what failed, how long the wait)
    earlier: int = 0


ProgressCallback = Callable[[ProgressEvent], None]


def readable_rate(per_second: float) -> str:
    """``95k profiles/s``, ``1.2M profiles/s``, ``840 profiles/s``: what a person reads at a glance."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if per_second >= limit:
            value = per_second / limit
            return f"{value:.1f}{suffix} profiles/s" if value < 10 else f"{value:.0f}{suffix} profiles/s"
    return f"{per_second:.0f} profiles/s"


NOTHING_TO_SEND = "Nothing to send"


def describe(event: ProgressEvent) -> str:
    """One line for an event: ``Sending 20,000 / 99,925 profiles · 2 jobs in flight (20,000)``."""
    total = f" / {event.total:,}" if event.total is not None else ""
    if event.stage == "removing":
        return f"Removing members who left the segment: {event.done:,}{total}"
    if event.stage == "done" and event.outcome == "empty":
        return event.message or NOTHING_TO_SEND
    if event.stage in ("retrying", "done"):
        return event.message
    head = "Sending" if event.stage == "sending" else "Klaviyo importing"
    line = f"{head} {event.done:,}{total} profiles accepted"
    if event.in_flight_jobs:
        plural = "s" if event.in_flight_jobs != 1 else ""
        line += f" · {event.in_flight_jobs} job{plural} in flight ({event.in_flight:,})"
    if event.imported:
        line += f" · {event.imported:,} imported"
    return line


def _says_nothing(event: ProgressEvent) -> bool:
    """A sending or importing step with nothing known yet (or nothing at all to send): ``0 / 0`` is not news."""
    return event.stage in ("sending", "processing") and not (event.total or event.done or event.in_flight)


def _ending(event: ProgressEvent, accepted: int) -> tuple[int, str]:
    """The last word of a display that counted ``accepted`` profiles: the rows settled and what happened to them.

    A run that went to the end settled every row to send; one that stopped, those Klaviyo accepted (or the rows sent,
    when more). Settled rows that were not sent are rows Klaviyo failed, and the words say so, so that a bar at
    10,000/10,000 never reads "Done: 9,990 sent" alone."""
    if event.outcome == "complete" and event.total:
        settled = max(accepted, event.total, event.done)
    else:
        settled = max(accepted, event.done)
    label = describe(event)
    failed = settled - event.done
    if failed > 0 and "failed" not in label:
        head, sep, rest = label.partition(" · ")  # "Done: 9,990 sent · 5 removed"
        label = f"{head}, {failed:,} failed{sep}{rest}"
    return settled, label


RATE_AFTER_S = 1.0  # a rate measured over less (a batch accepted a few ms after the bar appeared) says nothing

QUIET_PACING_S = 5.0  # with progress off, shorter waits after a first or second 429 are not announced


class _Notices:
    """Progress turned off: nothing is drawn, but a retry notice ("Klaviyo unreachable ...; retrying (3/8) in 4 s")
    is still written, one line each, to ``stream`` (stderr when None): without it an export waiting out a minute
    of retries looks hung."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage != "retrying" or not event.message:
            return
        retry = event.retry
        if retry is not None and retry.problem == "429" and retry.delay < QUIET_PACING_S and retry.attempt <= 2:
            return  # a second's wait for Klaviyo's rate limit is pacing, not trouble; a third 429 in a row is said
        with self._lock:
            stream = self._stream or sys.stderr  # looked up now: a notebook or a test may have replaced it
            if stream is not None:
                print(event.message, file=stream, flush=True)

    def close(self) -> None:
        pass


class _Callback:
    """Serialises calls to a user callback: events come from worker threads."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self._callback(event)

    def close(self) -> None:
        pass


class _Lines:
    """Plain lines, at most one every ``every`` seconds and one at the end: for logs, where a redrawn bar would
    leave a wall of carriage returns."""

    def __init__(self, stream: Any = None, every: float = 10.0) -> None:
        self._stream = stream
        self._every = every
        self._last = 0.0
        self._accepted = 0
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        if _says_nothing(event):
            return  # an empty segment ends with "Nothing to send", not with "Sending 0 / 0" first
        with self._lock:
            if event.stage in ("sending", "processing"):
                self._accepted = max(self._accepted, event.done)
            now = time.monotonic()
            if event.stage in ("retrying", "done") or now - self._last >= self._every:
                self._last = now
                line = _ending(event, self._accepted)[1] if event.stage == "done" else describe(event)
                print(line, file=self._stream or sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _Bar:
    """A tqdm bar (a widget in notebooks, text on terminals) of the profiles Klaviyo accepted; a second bar for
    removals. An export with nothing to send draws no bar: it says "Nothing to send" in one line.

    The last frame says how the export ended, and its numbers agree with the words: the bar then counts the rows
    settled (every row to send, for a run that went to the end; the rows sent or failed, for one that stopped), so
    it never goes backwards, and the label says how many were sent and how many Klaviyo failed ("Done: 9,990 sent,
    10 failed  100%|...| 10,000/10,000"). In a notebook its colour says it too: green when everything was sent,
    orange when Klaviyo failed rows, red when the export stopped before the end.

    The rate counts only the profiles Klaviyo accepted since the bar appeared: those it had accepted before, and
    those the engine says the resumed run had sent (``earlier``), are not rows sent in no time ("2095M profiles/s").
    It is shown once the bar has run a second and moved; the last frame gives the average of the whole run."""

    _FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n:,}/{total:,} [{elapsed}{postfix}]"
    _FORMAT_OPEN = "{desc} {n:,} [{elapsed}{postfix}]"  # total not known yet: a streamed input still read
    _LABELS = {"sending": "Sending", "processing": "Klaviyo importing", "removing": "Removing"}
    _RED, _ORANGE = "#d9534f", "#f0ad4e"

    def __init__(self, notebook: bool, file: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._notebook = notebook
        self._file = file  # tqdm's default, stderr, when None
        self._clock = clock
        self._bars: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self._before: dict[str, int] = {}  # counted but not sent since the bar appeared: not in the rate
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.stage == "retrying":
                self._write(event.message)
            elif event.stage == "done":
                self._finish(event)
            else:
                self._update("removing" if event.stage == "removing" else "sending", event)

    def _update(self, kind: str, event: ProgressEvent) -> None:
        bar = self._bars.get(kind)
        label = self._LABELS.get(event.stage, event.stage)
        if bar is None:
            if not event.total and not event.done and not event.in_flight:
                return  # nothing to show yet (or nothing at all: the end says "Nothing to send")
            bar = self._bars[kind] = self._new(event.total, label, event.done)
            self._started[kind] = self._clock()
            self._before[kind] = event.done  # accepted before the bar appeared: its starting point
        self._before[kind] = max(self._before[kind], event.earlier)
        if event.total is not None:
            self._set_total(bar, event.total)
        bar.n = max(bar.n, event.done)  # never backwards
        line = describe(event)
        bar.set_description_str(label, refresh=False)
        details = line.split(" · ", 1)[1].replace(" · ", ", ") if " · " in line else ""
        bar.set_postfix_str(", ".join(part for part in (self._rate(kind, bar), details) if part), refresh=False)
        bar.refresh()

    def _set_total(self, bar: Any, total: int) -> None:
        if bar.total == total:
            return
        bar.total = total
        bar.bar_format = self._FORMAT
        if self._notebook:  # the widget keeps the total it was made with: tell it the new one
            progress = bar.container.children[1]
            if progress.bar_style == "info":  # the stub tqdm draws while the total is unknown
                progress.bar_style = ""
                progress.layout.width = None
            progress.max = max(total, 1)

    def _rate(self, kind: str, bar: Any, last: bool = False) -> str:
        """``95k profiles/s`` since the bar appeared; nothing before it has run ``RATE_AFTER_S`` (the last frame
        excepted) or while no profile was accepted in that time."""
        elapsed = self._clock() - self._started[kind]
        moved = bar.n - self._before[kind]
        if moved <= 0 or elapsed <= 0 or (elapsed < RATE_AFTER_S and not last):
            return ""
        return readable_rate(moved / elapsed).replace("profiles", "members" if kind == "removing" else "profiles")

    def _finish(self, event: ProgressEvent) -> None:
        sending = self._bars.get("sending")
        style = self._settle(sending, event) if sending is not None else None
        for bar in self._bars.values():
            bar.refresh()
            bar.close()
        if self._notebook and style is not None and sending is not None:
            progress = sending.container.children[1]
            progress.bar_style, sending.colour = style  # after close(), which sets its own
        self._bars.clear()
        if sending is None:  # no bar was drawn (nothing to send, or stopped before Klaviyo accepted a row)
            self._write(describe(event))

    def _settle(self, bar: Any, event: ProgressEvent) -> tuple[str, str | None]:
        """Make the last frame of the sending bar agree with the outcome; the notebook bar's style and colour."""
        if event.total:
            self._set_total(bar, event.total)
        bar.n, label = _ending(event, bar.n)
        failed = bar.n - event.done
        bar.set_description_str(label, refresh=False)
        bar.set_postfix_str(self._rate("sending", bar, last=True), refresh=False)  # nothing is in flight any more
        if event.outcome not in ("complete", "empty"):
            return "danger", self._RED  # the export did not send everything
        return ("warning", self._ORANGE) if failed > 0 else ("success", None)

    def _new(self, total: int | None, label: str, initial: int) -> Any:
        if self._notebook:
            from tqdm.notebook import tqdm
        else:
            from tqdm import tqdm
        bar_format = self._FORMAT if total is not None else self._FORMAT_OPEN
        # A terminal that reports no size (some CI runners, a fresh pty) would get no bar at all from tqdm's own
        # detection: fall back to $COLUMNS/$LINES, else 100 x 24.
        size = shutil.get_terminal_size((100, 24))
        shape = {} if self._notebook else {"ncols": size.columns or 100, "nrows": size.lines or 24}
        return tqdm(
            total=total, initial=initial, desc=label, bar_format=bar_format, leave=True, file=self._file, **shape
        )

    def _write(self, text: str) -> None:
        if self._notebook:
            print(text, flush=True)
        else:
            from tqdm import tqdm

            tqdm.write(text, file=self._file or sys.stderr)

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()


def _in_notebook() -> bool:
    """Whether we run in a Jupyter kernel whose frontend can draw widgets."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:
        return False
    return ip is not None and getattr(ip, "kernel", None) is not None and find_spec("ipywidgets") is not None


def reporter(progress: Any) -> Any:
    """Turn the ``progress`` argument of ``export_segment`` into a callable with ``close()``.

    ``True``: a bar in a notebook or on a terminal, plain lines elsewhere (a log file, a pipe); ``"lines"``: plain
    lines always; a callable receives every :class:`ProgressEvent`; ``None`` or ``False``: nothing drawn, only
    retry notices ("Klaviyo unreachable ...; retrying (3/8) in 4 s"), one line each on stderr.
    """
    if progress is None or progress is False:
        return _Notices()  # no progress, but word of an unreachable Klaviyo
    if progress is True:
        if _in_notebook():
            return _Bar(notebook=True)
        if sys.stderr is not None and sys.stderr.isatty():
            return _Bar(notebook=False)
        return _Lines()
    if progress == "lines":
        return _Lines()
    if callable(progress):
        return _Callback(progress)
    raise TypeError(
        "progress must be None, True, False, 'lines' or a callable taking a ProgressEvent, "
        f"not {type(progress).__name__}"
    )
