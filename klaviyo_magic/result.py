"""ExportResult: what an export did, row by row, with short text and HTML views for notebooks."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# How a report row can end: the statuses of a real export, then the dry run's. The engine's plan adds "pending"
# while rows wait for their fate (export/report.py).
RUN_STATUSES = ("sent", "skipped", "duplicate", "failed")
STATUSES = (*RUN_STATUSES, "would_send")


@dataclass
class ExportResult:
    """The outcome of :func:`klaviyo_magic.export_segment`.

    ``report`` has one row per input row (``segment``, ``index``, ``email``, ``status``, ``reason``), so
    ``result.report.query("status != 'sent'")`` is the list of rows to look at. Status is ``sent`` (Klaviyo
    accepted and imported the profile), ``skipped`` (not sent: missing or malformed email, invalid phone),
    ``duplicate`` (same email as an earlier row, sent once), ``failed`` (Klaviyo rejected it, or the export
    stopped before sending it) or, in a dry run, ``would_send``.

    The columns are compact (about 55 bytes a row with 30-character emails, most of it their text), so a
    million-row report costs less than the DataFrame it describes:

    - ``segment``: the DataFrame's position in the input, smallest integer dtype (``int8`` up to 128);
    - ``index``: the row's original label, in the segments' index dtype when they share one (``int64`` for
      a RangeIndex, ``str`` for text), else ``object`` (tuples for a MultiIndex);
    - ``email``: pandas' Arrow-backed ``str`` dtype; NaN where the email was missing (``object`` with None
      when pyarrow is not installed);
    - ``status``: ``category``, with the statuses that occur as its categories (so ``value_counts()`` lists
      only those); compare with strings as usual;
    - ``reason``: ``object``, None where there is no reason.
    """

    list_id: str
    report: pd.DataFrame
    job_ids: list[str] = field(default_factory=list)
    duration: float = 0.0
    dry_run: bool = False
    connection: str | None = None
    interrupted: bool = False
    error: str | None = None

    def __post_init__(self) -> None:
        status = self.report["status"]
        if isinstance(status.dtype, pd.CategoricalDtype):  # the export's plan keeps every possible status
            self.report["status"] = status.cat.remove_unused_categories()
        counts = self.report["status"].value_counts()
        self._counts = {status: int(counts.get(status, 0)) for status in STATUSES}

    @property
    def total_rows(self) -> int:
        return len(self.report)

    @property
    def sent(self) -> int:
        return self._counts["sent"]

    @property
    def skipped(self) -> int:
        return self._counts["skipped"]

    @property
    def failed(self) -> int:
        return self._counts["failed"]

    @property
    def duplicates(self) -> int:
        return self._counts["duplicate"]

    @property
    def would_send(self) -> int:
        return self._counts["would_send"]

    @property
    def ok(self) -> bool:
        """True when nothing failed and the export ran to the end (skipped and duplicate rows are fine)."""
        return not self.failed and not self.interrupted and self.error is None

    @property
    def problems(self) -> pd.DataFrame:
        """The rows that were not sent (skipped, failed, duplicates), with their reasons."""
        return self.report[~self.report["status"].isin(("sent", "would_send"))]

    def counts(self) -> dict[str, int]:
        counts = {
            "total_rows": self.total_rows,
            "sent": self.sent,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "failed": self.failed,
        }
        if self.dry_run:
            counts["would_send"] = self.would_send
        return counts

    def summary(self, where: str = ".problems") -> str:
        """One or two plain sentences: what happened, and where the rows not sent are (``where``)."""
        n = self.total_rows
        if self.dry_run:
            head = f"Dry run: {self.would_send:,} of {n:,} rows would be sent to list '{self.list_id}'."
            head += " Nothing was sent."
        elif self.interrupted:
            head = f"Interrupted: {self.sent:,} of {n:,} rows were sent to list '{self.list_id}'"
            head += " before the export stopped."
        elif self.error:
            head = f"Stopped by an error: {self.sent:,} of {n:,} rows were sent to list '{self.list_id}'."
        else:
            head = f"Sent {self.sent:,} of {n:,} rows to list '{self.list_id}' in {self.duration:.1f}s."
        parts = [
            f"{count:,} {label}"
            for label, count in (
                ("skipped", self.skipped),
                ("duplicate" if self.duplicates == 1 else "duplicates", self.duplicates),
                ("failed", self.failed),
            )
            if count
        ]
        tail = f" {', '.join(parts)}: see {where} for the reasons." if parts else ""
        return head + tail

    def __repr__(self) -> str:
        jobs = f", jobs={len(self.job_ids)}" if self.job_ids else ""
        return (
            f"<ExportResult list={self.list_id!r} total_rows={self.total_rows} "
            f"{f'would_send={self.would_send}' if self.dry_run else f'sent={self.sent}'} "
            f"skipped={self.skipped} duplicates={self.duplicates} failed={self.failed}{jobs}"
            f"{' dry_run' if self.dry_run else ''}{' interrupted' if self.interrupted else ''}>"
        )

    def _repr_html_(self, where: str = ".problems") -> str:
        rows = "".join(
            f"<tr><td>{html.escape(label)}</td><td style='text-align:right'>{value:,}</td></tr>"
            for label, value in self.counts().items()
        )
        problems = self.problems
        sample = ""
        if len(problems):
            sample = (
                f"<details><summary>{len(problems):,} rows not sent "
                f"(first 10; all in <code>{html.escape(where)}</code>)"
                f"</summary>{problems.head(10).to_html(index=False)}</details>"
            )
        error = f"<p><b>Error:</b> {html.escape(self.error)}</p>" if self.error else ""
        return (
            f"<div class='klaviyo-magic-result'><p>{html.escape(self.summary(where))}</p>{error}"
            f"<table>{rows}</table>{sample}</div>"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for pipelines and run history)."""
        return {
            "list_id": self.list_id,
            **self.counts(),
            "job_ids": list(self.job_ids),
            "duration": round(self.duration, 3),
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "error": self.error,
            "connection": self.connection,
        }
