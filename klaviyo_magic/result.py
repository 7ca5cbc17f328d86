"""ExportResult: what an export did, row by row, with short text and HTML views for notebooks."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# How a report row can end: the statuses of a real export, then the dry run's. The engine adds "pending" while
# rows wait for their fate (export/report.py).
RUN_STATUSES = ("sent", "unchanged", "skipped", "duplicate", "not_sent", "failed")
STATUSES = (*RUN_STATUSES, "would_send")
REMOVAL_COLUMNS = ["email", "profile_id", "status", "reason"]
PENDING = "pending"
# The report's status column: "pending" (a row waiting for its fate while the export runs), then every status a
# row can end with; its action column: whether a row sent (or to send) is new to the list's sync state or changed.
STATUS_DTYPE = pd.CategoricalDtype([PENDING, *STATUSES])
ACTION_DTYPE = pd.CategoricalDtype(["add", "update"])
PYTHON_RESUME = "export_segment(..., resume=True)"


@dataclass
class ExportResult:
    """The outcome of :func:`klaviyo_magic.export_segment`.

    ``report`` has one row per input row (``segment``, ``index``, ``email``, ``status``, ``action``, ``reason``),
    so ``result.problems`` (the rows not sent, with the reasons) is where to look. Status is ``sent`` (Klaviyo
    accepted and imported the profile), ``unchanged`` (sent by an earlier run and the same since: not sent again),
    ``skipped`` (missing or malformed email, invalid phone), ``duplicate`` (same email as an earlier row, sent
    once), ``not_sent`` (the export stopped before sending it: Ctrl-C, a cancel, an error), ``failed`` (Klaviyo
    rejected it) or, in a dry run, ``would_send``. ``action`` says, for rows sent or to send, whether the profile is
    new to the list's sync state (``add``) or changed since the last run (``update``).

    The four numbers of list sync: ``added``, ``updated``, ``unchanged`` and ``removed`` (mirror mode; the members
    taken out are in ``removals``: email, profile id, status ``removed``, ``failed`` or ``kept`` (in the list before
    klaviyo-magic sent it: not its to remove), reason). In a dry run they
    are what would happen, and ``added_rows``, ``updated_rows``, ``unchanged_rows`` and ``removals`` hold the rows.

    For streamed input (a Spark or Dask DataFrame, a Polars LazyFrame, files...) the report is not kept in memory:
    it is a Parquet file at ``report_path``, read when ``report`` is first used.
    """

    list_id: str
    _report: pd.DataFrame | None = None
    job_ids: list[str] = field(default_factory=list)
    duration: float = 0.0
    dry_run: bool = False
    connection: str | None = None
    interrupted: bool = False
    error: str | None = None
    mode: str = "add"
    removals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REMOVAL_COLUMNS, dtype=object))
    report_path: Path | None = None
    counted: dict[str, int] | None = None  # rows per status (and added/updated), when known without the report
    list_name: str | None = None
    checked: str | None = None  # what a dry run checked with Klaviyo, in words
    warnings: list[str] = field(default_factory=list)
    sample: pd.DataFrame | None = None  # a dry run: the first profiles as they would be sent
    run_id: str | None = None
    input_complete: bool = True  # every row of the input was read (not so when a run stopped while reading it)
    # How the summary and the HTML name the rows not sent and the line that continues a stopped run: Python's
    # words by default; a shell that shows the result sets its own (the magic: _klaviyo_result, --resume).
    problems_name: str = ".problems"
    resume_command: str = PYTHON_RESUME

    def __post_init__(self) -> None:
        if self.counted is None:
            self.counted = _count(self.report)
        if self._report is not None:
            self._report = _tidy(self._report)

    # -- the rows ------------------------------------------------------------------------------------------

    @property
    def report(self) -> pd.DataFrame:
        """One row per input row: segment, index, email, status, action, reason."""
        if self._report is None:
            if self.report_path is None:
                raise ValueError("this result has no report")
            self._report = _tidy(read_report(self.report_path))
        return self._report

    def write_report_csv(self, path: str | Path) -> None:
        """The per-row report as a CSV file. A streamed input's report is copied from its Parquet file a slice at
        a time, so that writing it never holds the whole report in memory (``report`` would)."""
        if self._report is not None or self.report_path is None:
            self.report.to_csv(path, index=False)
            return
        import pyarrow.parquet as pq

        with open(path, "w", newline="", encoding="utf-8") as out:
            batches = pq.ParquetFile(self.report_path).iter_batches(batch_size=CSV_SLICE_ROWS)
            for number, batch in enumerate(batches):
                _report_dtypes(batch.to_pandas()).to_csv(out, index=False, header=number == 0)
            if out.tell() == 0:  # no rows: the header alone, as pandas writes it
                read_report(self.report_path).to_csv(out, index=False)

    @property
    def problems(self) -> pd.DataFrame:
        """The rows that were not sent and are not unchanged (skipped, duplicate, not_sent, failed), with reasons."""
        return self.report[~self.report["status"].isin(("sent", "would_send", "unchanged"))]

    @property
    def added_rows(self) -> pd.DataFrame:
        """Rows sent (in a dry run: to send) whose email the list's sync state did not have."""
        return self._sent_rows("add")

    @property
    def updated_rows(self) -> pd.DataFrame:
        """Rows sent (in a dry run: to send) that changed since the last run sent them."""
        return self._sent_rows("update")

    @property
    def unchanged_rows(self) -> pd.DataFrame:
        """Rows not sent because they are the same as the last run sent."""
        return self.report[self.report["status"] == "unchanged"]

    def _sent_rows(self, action: str) -> pd.DataFrame:
        report = self.report
        return report[report["status"].isin(("sent", "would_send")) & (report["action"] == action)]

    # -- the numbers ---------------------------------------------------------------------------------------

    def _n(self, name: str) -> int:
        assert self.counted is not None
        return int(self.counted.get(name, 0))

    @property
    def total_rows(self) -> int:
        return sum(self._n(status) for status in STATUSES)

    @property
    def sent(self) -> int:
        return self._n("sent")

    @property
    def skipped(self) -> int:
        return self._n("skipped")

    @property
    def failed(self) -> int:
        return self._n("failed")

    @property
    def duplicates(self) -> int:
        return self._n("duplicate")

    @property
    def would_send(self) -> int:
        return self._n("would_send")

    @property
    def unchanged(self) -> int:
        return self._n("unchanged")

    @property
    def not_sent(self) -> int:
        return self._n("not_sent")

    @property
    def added(self) -> int:
        return self._n("added")

    @property
    def updated(self) -> int:
        return self._n("updated")

    @property
    def partially_sent(self) -> int:
        """Rows sent without a value that cannot be sent (an infinite number); the reason names it."""
        return self._n("partial")

    @property
    def removed(self) -> int:
        return int((self.removals["status"] == ("would_remove" if self.dry_run else "removed")).sum())

    @property
    def kept(self) -> int:
        """Members who left the segment but stayed in the list: someone else added them before klaviyo-magic sent
        them (mirror mode)."""
        return int((self.removals["status"] == ("would_keep" if self.dry_run else "kept")).sum())

    @property
    def removals_failed(self) -> int:
        return int((self.removals["status"] == "failed").sum())

    @property
    def ok(self) -> bool:
        """True when nothing failed and the export ran to the end (skipped, duplicate, unchanged rows are fine)."""
        return not (self.failed or self.not_sent or self.removals_failed or self.interrupted or self.error)

    def counts(self) -> dict[str, int]:
        counts = {
            "total_rows": self.total_rows,
            "sent": self.sent,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "not_sent": self.not_sent,
            "failed": self.failed,
        }
        if self.dry_run:
            counts = {"total_rows": self.total_rows, "would_send": self.would_send, **counts}
            del counts["sent"], counts["not_sent"], counts["failed"]
        return counts

    # -- words ---------------------------------------------------------------------------------------------

    def summary(self, where: str | None = None, resume: str | None = None) -> str:
        """Plain sentences: what happened, where the rows not sent are (``where``), and for a run that stopped,
        the exact line that continues it (``resume``); by default :attr:`problems_name` and
        :attr:`resume_command`."""
        where = self.problems_name if where is None else where
        resume = self.resume_command if resume is None else resume
        n, target = self.total_rows, f"list '{self.list_id}'"
        if self.dry_run:
            head = f"Dry run: {self.would_send:,} of {n:,} rows would be sent to {target}{self._changes('would be ')}."
            head += " Nothing was sent."
        elif self.interrupted and not n:
            head = f"Interrupted before any row was read: nothing was sent to {target}."
        elif (self.interrupted or self.error) and not self.input_complete:
            stopped = "Interrupted" if self.interrupted else "Stopped by an error"
            head = f"{stopped} while reading the input: {self.sent:,} of the first {n:,} rows were sent to {target}"
            head += f"{self._changes()}; the rest of the input was not read."
        elif self.interrupted:
            head = f"Interrupted: {self.sent:,} of {n:,} rows were sent to {target} before the export stopped"
            head += f"{self._changes()}."
        elif self.error:
            head = f"Stopped by an error: {self.sent:,} of {n:,} rows were sent to {target}{self._changes()}."
        elif not n:
            head = f"Nothing to send: the segment is empty. List '{self.list_id}' was not changed."
        elif not (self.sent or self.unchanged or self.not_sent or self.failed):
            head = f"Nothing to send: none of the {n:,} rows can be sent to {target}{self._changes()}."
        else:
            head = f"Sent {self.sent:,} of {n:,} rows to {target} in {self.duration:.1f}s{self._changes()}."
        text = head + self._tail(where)
        if self.resumable:
            text += f" Continue it with: {resume}"
        return text

    @property
    def resumable(self) -> bool:
        """Whether running again with resume continues this run: it stopped (Ctrl-C, a cancel) or an error stopped
        it after Klaviyo had accepted something; an error before any of that (a refused key) needs a fix instead."""
        if not (self.not_sent or not self.total_rows):
            return False
        return self.interrupted or bool(self.error and (self.sent or self.job_ids))

    def _changes(self, would: str = "") -> str:
        """`` (800 added, 200 updated, 150 unchanged; 20 members removed)``, or nothing for a plain add."""
        parts = []
        if self.updated or self.unchanged or self.mode == "mirror":
            parts = [f"{self.added:,} added", f"{self.updated:,} updated", f"{self.unchanged:,} unchanged"]
        text = ", ".join(parts)
        if self.mode == "mirror":
            removed = f"{self.removed:,} member{'s' if self.removed != 1 else ''} {would or ''}removed"
            text = f"{text}; {removed}" if text else removed
        return f" ({text})" if text else ""

    def _tail(self, where: str) -> str:
        parts = [
            f"{count:,} {label}"
            for label, count in (
                ("skipped", self.skipped),
                ("duplicate" if self.duplicates == 1 else "duplicates", self.duplicates),
                ("not sent", self.not_sent),
                ("failed", self.failed),
            )
            if count
        ]
        tail = f" {', '.join(parts)}: see {where} for the reasons." if parts else ""
        if self.partially_sent:
            rows = "row" if self.partially_sent == 1 else "rows"
            sent = "would be sent" if self.dry_run else ("was sent" if self.partially_sent == 1 else "were sent")
            tail += (
                f" {self.partially_sent:,} {rows} {sent} without a value that cannot be sent (an infinite number, "
                "or a latitude or longitude that is not a number): the report's reason names it."
            )
        # The removals by the name that shows the problems (``_klaviyo_result.removals`` in a notebook); a form or
        # a terminal shows no such name.
        see = f" (see {where.removesuffix('.problems')}.removals)" if where.endswith(".problems") else ""
        if self.removals_failed:
            members = "member" if self.removals_failed == 1 else "members"
            tail += f" {self.removals_failed:,} {members} could not be removed{see}."
        if self.kept:
            members, them = ("member", "it") if self.kept == 1 else ("members", "them")
            stay = "would stay" if self.dry_run else "stayed"
            tail += (f" {self.kept:,} {members} who left the segment {stay} in the list: someone else added {them}"
                     f" before klaviyo-magic sent {them}{see}.")  # fmt: skip
        for warning in self.warnings:
            tail += f" Note: {warning.rstrip('.')}."
        return tail

    def __repr__(self) -> str:
        jobs = f" jobs={len(self.job_ids)}" if self.job_ids else ""
        counts = " ".join(f"{name}={value}" for name, value in self.counts().items() if name != "total_rows")
        flags = f"{' dry_run' if self.dry_run else ''}{' interrupted' if self.interrupted else ''}"
        return f"<ExportResult list={self.list_id!r} total_rows={self.total_rows} {counts}{jobs}{flags}>"

    def _repr_html_(self, where: str | None = None) -> str:
        return result_html(self, self.problems_name if where is None else where)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for pipelines and run history)."""
        return {
            "list_id": self.list_id,
            **self.counts(),
            "partially_sent": self.partially_sent,
            "kept": self.kept,
            "input_complete": self.input_complete,
            "mode": self.mode,
            "job_ids": list(self.job_ids),
            "duration": round(self.duration, 3),
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "error": self.error,
            "connection": self.connection,
            "report_path": str(self.report_path) if self.report_path else None,
        }


# Rows of a streamed input's report converted to CSV at a time (write_report_csv): about 6 MB of pandas.
CSV_SLICE_ROWS = 100_000

# A dry run's numbers are what would happen.
_DRY_RUN_LABELS = {"added": "to add", "updated": "to update", "removed": "to remove"}


def result_html(result: ExportResult, where: str = ".problems") -> str:
    """The result at a glance: the summary, the numbers, and the rows not sent behind a click."""
    labels = _DRY_RUN_LABELS if result.dry_run else {}
    numbers = "".join(
        f"<tr><td>{html.escape(labels.get(name, name.replace('_', ' ')))}</td>"
        f"<td style='text-align:right'>{value:,}</td></tr>"
        for name, value in result.counts().items()
    )
    sections = []
    if result.total_rows and len(problems := result.problems):
        sections.append(
            f"<details><summary>{len(problems):,} rows not sent (first 10; all in "
            f"<code>{html.escape(where)}</code>)</summary>{problems.head(10).to_html(index=False)}</details>"
        )
    if len(result.removals):
        label = "to remove" if result.dry_run else "removals"
        sections.append(
            f"<details><summary>{len(result.removals):,} members {label} (first 10; all in "
            f"<code>.removals</code>)</summary>{result.removals.head(10).to_html(index=False)}</details>"
        )
    error = f"<p><b>Error:</b> {html.escape(result.error)}</p>" if result.error else ""
    return (
        f"<div class='klaviyo-magic-result'><p>{html.escape(result.summary(where))}</p>{error}"
        f"<table>{numbers}</table>{''.join(sections)}</div>"
    )


def read_report(path: Path) -> pd.DataFrame:
    """A report written to Parquet by the export, with the same dtypes as one kept in memory."""
    return _report_dtypes(pd.read_parquet(path))


def _report_dtypes(report: pd.DataFrame) -> pd.DataFrame:
    report["status"] = report["status"].astype(STATUS_DTYPE)
    report["action"] = report["action"].astype(ACTION_DTYPE)
    report["reason"] = report["reason"].astype(object).where(report["reason"].notna(), None)
    return report


def _count(report: pd.DataFrame | None) -> dict[str, int]:
    if report is None:
        return {}
    counts = {status: int(n) for status, n in report["status"].value_counts().items()}
    if "action" in report:
        sent = report["status"].isin(("sent", "would_send"))
        counts["added"] = int((sent & (report["action"] == "add")).sum())
        counts["updated"] = int((sent & (report["action"] == "update")).sum())
    return counts


def _tidy(report: pd.DataFrame) -> pd.DataFrame:
    """The status column with only the statuses that occur (``value_counts()`` then lists only those)."""
    status = report["status"]
    if isinstance(status.dtype, pd.CategoricalDtype):
        report["status"] = status.cat.remove_unused_categories()
    return report
