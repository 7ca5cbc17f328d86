"""Progress reporting for exports. The engine emits events; drawing them is the job of the code here (a bar, or
plain lines in a log) or of the caller's callable.

What is shown must be true: the bar counts profiles Klaviyo accepted, so it never goes backwards, never starts
over at a new stage and never restarts its clock; it shows the import jobs on their way (a Cancel cannot call
those back) and ends saying what happened ("Interrupted: 60,000 of 100,000 sent"). Where the output is not a
terminal or a notebook (a cron log), it writes a plain line now and then instead of redrawing a bar.
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


@dataclass(frozen=True)
class ProgressEvent:
    """One step of an export.

    ``stage``: ``"sending"`` and ``"processing"`` (everything sent, Klaviyo still importing): ``done`` is the
    profiles Klaviyo has accepted so far and ``total`` the profiles to send (None while a streamed input is still
    being read); ``"removing"`` (mirror mode): ``done`` members removed of ``total``; ``"retrying"``: ``message``
    says what failed and when the next try is; ``"done"``: ``outcome`` is ``complete``, ``interrupted``,
    ``cancelled``, ``error`` or ``empty`` and ``message`` says it in words.

    ``jobs`` counts the import jobs Klaviyo accepted; ``in_flight`` and ``in_flight_jobs`` the profiles and jobs on
    their way to it (sent, not yet accepted); ``imported`` the profiles Klaviyo has finished importing.
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


ProgressCallback = Callable[[ProgressEvent], None]


def readable_rate(per_second: float) -> str:
    """``95k profiles/s``, ``1.2M profiles/s``, ``840 profiles/s``: what a person reads at a glance."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if per_second >= limit:
            value = per_second / limit
            return f"{value:.1f}{suffix} profiles/s" if value < 10 else f"{value:.0f}{suffix} profiles/s"
    return f"{per_second:.0f} profiles/s"


def describe(event: ProgressEvent) -> str:
    """One line for an event: ``Sending 20,000 / 99,925 profiles · 2 jobs in flight (20,000)``."""
    total = f" / {event.total:,}" if event.total is not None else ""
    if event.stage == "removing":
        return f"Removing members who left the segment: {event.done:,}{total}"
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


class _Silent:
    def __call__(self, event: ProgressEvent) -> None:
        pass

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
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            now = time.monotonic()
            if event.stage in ("retrying", "done") or now - self._last >= self._every:
                if event.stage == "done" and event.outcome == "empty":
                    return  # the summary says there was nothing to send
                self._last = now
                print(describe(event), file=self._stream or sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _Bar:
    """A tqdm bar (a widget in notebooks, text on terminals) of the profiles Klaviyo accepted; a second bar for
    removals. Never drawn for an export with nothing to send."""

    _FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n:,}/{total:,} [{elapsed}{postfix}]"
    _FORMAT_OPEN = "{desc} {n:,} [{elapsed}{postfix}]"  # total not known yet: a streamed input still read
    _LABELS = {"sending": "Sending", "processing": "Klaviyo importing", "removing": "Removing"}

    def __init__(self, notebook: bool, file: Any = None) -> None:
        self._notebook = notebook
        self._file = file  # tqdm's default, stderr, when None
        self._bars: dict[str, Any] = {}
        self._started: dict[str, float] = {}
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
                return  # nothing to show yet (or nothing at all)
            bar = self._bars[kind] = self._new(event.total, label)
            self._started[kind] = time.monotonic()
        if event.total is not None and bar.total != event.total:
            bar.total = event.total
            bar.bar_format = self._FORMAT
        bar.n = max(bar.n, event.done)  # never backwards
        elapsed = max(time.monotonic() - self._started[kind], 1e-6)
        line = describe(event)
        bar.set_description_str(label, refresh=False)
        details = line.split(" · ", 1)[1].replace(" · ", ", ") if " · " in line else ""
        rate = readable_rate(bar.n / elapsed).replace("profiles", "members" if kind == "removing" else "profiles")
        bar.set_postfix_str(", ".join(part for part in (rate, details) if part), refresh=False)
        bar.refresh()

    def _finish(self, event: ProgressEvent) -> None:
        for kind, bar in self._bars.items():
            if kind == "sending":
                bar.set_description_str(event.message, refresh=False)
                if self._notebook and event.outcome != "complete":
                    bar.colour = "#d9534f"  # red: the export did not send everything
            bar.refresh()
            bar.close()
        self._bars.clear()

    def _new(self, total: int | None, label: str) -> Any:
        if self._notebook:
            from tqdm.notebook import tqdm
        else:
            from tqdm import tqdm
        bar_format = self._FORMAT if total is not None else self._FORMAT_OPEN
        # A terminal that reports no size (some CI runners, a fresh pty) would get no bar at all from tqdm's own
        # detection: fall back to $COLUMNS/$LINES, else 100 x 24.
        size = shutil.get_terminal_size((100, 24))
        shape = {} if self._notebook else {"ncols": size.columns or 100, "nrows": size.lines or 24}
        return tqdm(total=total, desc=label, bar_format=bar_format, leave=True, file=self._file, **shape)

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
    lines always; a callable receives every :class:`ProgressEvent`.
    """
    if progress is None or progress is False:
        return _Silent()
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
