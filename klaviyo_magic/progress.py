"""Progress reporting for exports. The engine emits events; drawing them is someone else's job."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    """One step of an export.

    ``stage`` is ``"sending"`` (``done`` = profiles Klaviyo has accepted so far), ``"processing"``
    (``done`` = profiles in import jobs Klaviyo has finished) or ``"done"``. ``total`` is the number of
    profiles to send; ``jobs`` the import jobs created so far.
    """

    stage: str
    done: int
    total: int
    jobs: int = 0


ProgressCallback = Callable[[ProgressEvent], None]


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


class _Bar:
    """A tqdm bar (tqdm.auto: a widget in notebooks, text in terminals) that follows the events."""

    _LABELS = {"sending": "Sending to Klaviyo", "processing": "Klaviyo importing", "done": "Done"}

    def __init__(self) -> None:
        self._bar: Any = None
        self._stage = ""
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        with self._lock:
            if self._bar is None:
                if event.stage == "done":
                    return  # nothing was ever sent (e.g. the key was refused): leave no empty bar behind
                self._bar = tqdm(total=event.total, unit="profile", leave=True)
            if event.stage != self._stage:
                self._stage = event.stage
                self._bar.set_description(self._LABELS.get(event.stage, event.stage))
                if event.stage == "processing":
                    self._bar.reset(total=event.total)
            self._bar.n = event.done
            self._bar.set_postfix(jobs=event.jobs, refresh=False)
            self._bar.refresh()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()


def reporter(progress: Any) -> Any:
    """Turn the ``progress`` argument of ``export_segment`` into a callable with ``close()``."""
    if progress is None or progress is False:
        return _Silent()
    if progress is True:
        return _Bar()
    if callable(progress):
        return _Callback(progress)
    raise TypeError(
        f"progress must be None, True, False or a callable taking a ProgressEvent, not {type(progress).__name__}"
    )
