"""The per-row report (report.py: ReportBook, in memory and written to Parquet) and the views ExportResult gives of
it (result.py): final statuses and reasons, compact dtypes, every row once, speed.

Since the engine rewrite a row waits as ``pending`` only while the export runs: a dry run ends it as
``would_send`` (with no reason, where the old engine wrote "dry run: not sent"), a run that stopped as
``not_sent`` (no longer ``failed``), and the set of statuses is fixed (marking an unknown one is an error).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.export.checks import RowChecker
from klaviyo_magic.export.fields import resolve_fields
from klaviyo_magic.export.payloads import Batch
from klaviyo_magic.export.report import ReportBook, read_report
from klaviyo_magic.export.sources import open_sources
from klaviyo_magic.export.stream import RowStream
from klaviyo_magic.result import ExportResult

STATUS_CATEGORIES = ["pending", "sent", "unchanged", "skipped", "duplicate", "not_sent", "failed", "would_send"]
NO_COUNTS = dict.fromkeys(STATUS_CATEGORIES, 0) | {"added": 0, "updated": 0}


def shown(values: pd.Series) -> list:
    """Values with missing ones as None (the Arrow-backed email column holds them as NaN)."""
    return [None if pd.isna(value) else value for value in values]


def fill(book: ReportBook, segments: list, *, chunk_rows: int = 50_000) -> list[Batch]:
    """Read ``segments`` into ``book`` as an export does; the batches to send."""
    sources = open_sources(segments)
    field_map = resolve_fields(sources, "email", None)
    checker = RowChecker("email", field_map)
    stream = RowStream(sources, list(field_map), checker, book, max_profiles=1_000_000, chunk_rows=chunk_rows)
    return list(stream.batches())


SEGMENTS = [
    pd.DataFrame({"email": ["a@x.io", "b@x.io", "bad", "c@x.io", "A@x.io", "d@x.io"]}),
    pd.DataFrame({"email": ["e@x.io", None, "f@x.io"], "first_name": ["E", "-", "F"]}),
]
EMAILS = ["a@x.io", "b@x.io", "bad", "c@x.io", "a@x.io", "d@x.io", "e@x.io", None, "f@x.io"]


def settle(book: ReportBook) -> None:
    """Mark outcomes as a run that stopped part-way does: accepted, rejected, watched, never sent."""
    book.mark(np.array([0, 3]), "sent")
    book.mark([1], "failed", "rejected by Klaviyo: invalid email")
    book.mark([5], "sent", "accepted by Klaviyo in import job J1; not watched to completion")
    book.note([6], "sent without ltv=inf: JSON has no infinite numbers, so Klaviyo cannot take them")
    book.mark([6], "sent")
    book.mark(book.positions("pending"), "not_sent", "not sent: the export was interrupted")


FINAL_STATUS = ["sent", "failed", "skipped", "sent", "duplicate", "sent", "sent", "skipped", "not_sent"]
FINAL_REASON = [
    None,
    "rejected by Klaviyo: invalid email",
    "malformed email 'bad'",
    None,
    "duplicate of segment 0 row 0",
    "accepted by Klaviyo in import job J1; not watched to completion",
    "sent without ltv=inf: JSON has no infinite numbers, so Klaviyo cannot take them",
    "missing email",
    "not sent: the export was interrupted",
]


# -- ReportBook ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [50_000, 2])
def test_in_memory_the_report_is_a_compact_dataframe_with_the_final_statuses(chunk_rows: int) -> None:
    book = ReportBook(len(SEGMENTS))
    batches = fill(book, SEGMENTS, chunk_rows=chunk_rows)
    assert np.concatenate([b.positions for b in batches]).tolist() == book.positions("pending").tolist()
    assert book.positions("pending").tolist() == [0, 1, 3, 5, 6, 8]
    settle(book)
    assert book.counts() == NO_COUNTS | {
        "sent": 4, "skipped": 2, "duplicate": 1, "not_sent": 1, "failed": 1, "added": 4,
    }  # fmt: skip
    assert book.noted == 1
    report = book.finish()
    assert isinstance(report, pd.DataFrame) and book.path is None
    assert list(report.columns) == ["segment", "index", "email", "status", "action", "reason"]
    assert report["segment"].tolist() == [0] * 6 + [1] * 3 and report["segment"].dtype == np.int8
    assert report["index"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2]
    assert shown(report["email"]) == EMAILS
    assert report["status"].tolist() == FINAL_STATUS
    assert report["status"].cat.categories.tolist() == STATUS_CATEGORIES
    assert report["reason"].tolist() == FINAL_REASON and report["reason"].dtype == object
    assert report["action"].tolist()[:2] == ["add", "add"] and pd.isna(report["action"][2])


def test_streamed_the_report_goes_to_parquet_and_reads_back_the_same(tmp_path: Path) -> None:
    in_memory = ReportBook(len(SEGMENTS))
    fill(in_memory, SEGMENTS)
    settle(in_memory)
    expected = in_memory.finish()
    path = tmp_path / "runs" / "r1" / "report.parquet"
    book = ReportBook(len(SEGMENTS), path)
    fill(book, SEGMENTS, chunk_rows=2)  # a row group per chunk: the reasons must land in the right group
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.plan.parquet"]  # rows as they came
    settle(book)
    assert book.finish() is None
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.parquet"]  # the plan rewritten, then gone
    assert pq.ParquetFile(path).num_row_groups == 5
    report = read_report(path)
    pd.testing.assert_frame_equal(report, expected)
    assert report["status"].tolist() == FINAL_STATUS and report["reason"].tolist() == FINAL_REASON
    assert report["reason"].tolist()[0] is None  # None, not NaN, as in memory


def test_a_later_reason_wins_and_none_keeps_the_reason_there_is() -> None:
    book = ReportBook(1)
    fill(book, [pd.DataFrame({"email": ["a@x.io", "b@x.io", "c@x.io"]})])
    book.mark([0], "failed", "first")
    book.mark([0], "failed", "second")
    book.mark([1], "failed", "rejected")
    book.mark([1], "sent")  # no reason given: the one there is stays (a note, say)
    book.mark([2], "sent", [None])
    report = book.finish()
    assert report["reason"].tolist() == ["second", "rejected", None]
    assert report["reason"][2] is None and report["reason"].dtype == object


def test_marks_take_positions_or_masks_and_reasons_one_per_position() -> None:
    book = ReportBook(1)
    fill(book, [pd.DataFrame({"email": ["a@x.io", "b@x.io", "c@x.io"]})])
    book.mark(np.array([2, 0]), "failed", ["for c", "for a"])
    book.mark([], "sent", "nothing happens")
    book.mark(np.array([False, True, False]), "sent")  # a mask marks where it is True (not rows 0 and 1)
    assert book.positions("sent").tolist() == [1] and book.positions("failed").tolist() == [0, 2]
    book.mark(np.array([False, True, False]), "pending")
    with pytest.raises(ValueError, match="^got 1 reasons for 2 positions$"):
        book.mark([0, 1], "failed", ["only one"])
    with pytest.raises(ValueError, match="^got 3 reasons for 2 positions$"):
        book.note([0, 1], ["a", "b", "c"])
    with pytest.raises(KeyError):  # the statuses are a fixed set now
        book.mark([1], "held back")
    assert book.positions("pending").tolist() == [1]
    assert book.finish()["reason"].tolist() == ["for a", None, "for c"]


def test_counts_stay_true_to_the_rows_whatever_the_marks(tmp_path: Path) -> None:
    """The counts are kept up to date as rows change (a progress display asks for them often): a mark that fails,
    or that names a row twice, must leave them equal to the rows' statuses."""
    book = ReportBook(len(SEGMENTS))
    fill(book, SEGMENTS)
    book.mark([0, 0, 3, 3, 3], "sent")
    book.mark(np.array([1, 5, 1]), "failed", ["one", "five", "one again"])
    with pytest.raises(KeyError):
        book.mark([6, 8], "held back")
    counts = book.counts()
    report = book.finish()
    assert counts == NO_COUNTS | {
        "pending": 2, "sent": 2, "skipped": 2, "duplicate": 1, "failed": 2, "added": 2,
    }  # fmt: skip
    assert {s: n for s, n in report["status"].value_counts().items() if n} == {
        s: n for s, n in counts.items() if n and s not in ("added", "updated")
    }
    assert report["reason"][1] == "one again" and report["status"][6] == "pending"


def test_an_empty_input_gives_an_empty_report_with_the_usual_columns(tmp_path: Path) -> None:
    empty = [pd.DataFrame({"email": pd.Series([], dtype=object)})]
    in_memory = ReportBook(1)
    assert fill(in_memory, empty) == []
    report = in_memory.finish()
    assert list(report.columns) == ["segment", "index", "email", "status", "action", "reason"] and len(report) == 0
    book = ReportBook(1, tmp_path / "report.parquet")
    fill(book, empty)
    assert book.finish() is None
    from_file = read_report(tmp_path / "report.parquet")
    assert list(from_file.columns) == list(report.columns) and len(from_file) == 0


def test_marking_a_million_rows_stays_fast() -> None:
    n = 1_000_000
    book = ReportBook(1)
    fill(book, [pd.DataFrame({"email": pd.Series([f"u{i}@x.io" for i in range(n)], dtype="str")})])
    started = time.perf_counter()
    book.mark(np.arange(0, n, 2), "sent")
    book.mark(np.arange(1, n, 2), "not_sent", "not sent")
    book.mark(np.arange(1, n, 1000), "failed", [f"rejected {i}" for i in range(1, n, 1000)])
    book.positions("pending")
    assert time.perf_counter() - started < 1  # about 0.03 s here
    counts = book.counts()
    assert counts["sent"] == n // 2 and counts["failed"] == 1000 and counts["not_sent"] == n // 2 - 1000
    report = book.finish()
    assert report["reason"][1] == "rejected 1" and report["reason"][3] == "not sent"


# -- ExportResult on the compact report --------------------------------------------------------------------------


@pytest.fixture
def dry_run(klaviyo_home) -> ExportResult:
    data = pd.DataFrame(
        {"email": ["a@x.io", None, "bad", "A@x.io", "b@x.io"], "first_name": ["A", "B", "C", "D", "E"]},
        index=[10, 11, 12, 13, 14],
    )
    return export_segment(data, email="email", list_id="Y6nRLr", dry_run=True, progress=False)


def test_a_dry_run_without_a_connection_checks_locally_and_says_so(dry_run: ExportResult) -> None:
    assert dry_run.checked == "Not checked with Klaviyo: no connection is set up (see %klaviyo_connection add)."
    assert dry_run.sample.to_dict("records") == [
        {"email": "a@x.io", "first_name": "A"},
        {"email": "b@x.io", "first_name": "E"},
    ]


def test_result_counts_and_value_counts_list_only_statuses_that_occur(dry_run: ExportResult) -> None:
    assert (dry_run.would_send, dry_run.skipped, dry_run.duplicates, dry_run.failed) == (2, 2, 1, 0)
    assert (dry_run.sent, dry_run.not_sent, dry_run.added, dry_run.updated, dry_run.unchanged) == (0, 0, 2, 0, 0)
    assert dry_run.report["status"].cat.categories.tolist() == ["skipped", "duplicate", "would_send"]
    assert dry_run.report["status"].value_counts().to_dict() == {"skipped": 2, "would_send": 2, "duplicate": 1}
    assert dry_run.report["index"].tolist() == [10, 11, 12, 13, 14]
    assert dry_run.added_rows["index"].tolist() == [10, 14] and dry_run.updated_rows.empty


def test_result_problems_summary_and_reprs(dry_run: ExportResult) -> None:
    problems = dry_run.problems
    assert problems["index"].tolist() == [11, 12, 13]
    assert problems["status"].tolist() == ["skipped", "skipped", "duplicate"]
    assert shown(problems["email"]) == [None, "bad", "a@x.io"]
    assert dry_run.report.query("status != 'would_send'").index.tolist() == [1, 2, 3]
    assert dry_run.summary() == (
        "Dry run: 2 of 5 rows would be sent to list 'Y6nRLr'. Nothing was sent. 2 skipped, 1 duplicate: "
        "see .problems for the reasons."
    )
    assert repr(dry_run) == (
        "<ExportResult list='Y6nRLr' total_rows=5 would_send=2 added=2 updated=0 unchanged=0 removed=0 skipped=2 "
        "duplicates=1 dry_run>"
    )
    html = dry_run._repr_html_()
    assert "<td>malformed email 'bad'</td>" in html and "<td>duplicate of segment 0 row 10</td>" in html
    assert "3 rows not sent (first 10; all in <code>.problems</code>)" in html


def test_result_to_dict_is_plain_json(dry_run: ExportResult) -> None:
    data = dry_run.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["would_send"] == 2 and data["skipped"] == 2 and data["dry_run"] is True
    assert data["report_path"] is None  # input in memory: the report is too


def test_report_csv_holds_plain_text(dry_run: ExportResult, tmp_path) -> None:
    path = tmp_path / "report.csv"
    dry_run.report.to_csv(path, index=False)  # what `klaviyo-magic export --report FILE.csv` writes
    assert path.read_text().splitlines() == [
        "segment,index,email,status,action,reason",
        "0,10,a@x.io,would_send,add,",
        "0,11,,skipped,,missing email",
        "0,12,bad,skipped,,malformed email 'bad'",
        "0,13,a@x.io,duplicate,,duplicate of segment 0 row 10",
        "0,14,b@x.io,would_send,add,",
    ]


def test_report_rows_convert_to_json_with_null_for_missing(dry_run: ExportResult) -> None:
    report = dry_run.report
    rows = json.loads(report.to_json(orient="records"))
    assert rows[1] == {
        "segment": 0,
        "index": 11,
        "email": None,
        "status": "skipped",
        "action": None,
        "reason": "missing email",
    }
    records = report.astype(object).where(report.notna(), None).to_dict("records")
    assert json.loads(json.dumps(records, allow_nan=False)) == rows


def test_a_streamed_dry_run_writes_its_report_to_parquet_and_reads_it_when_asked(klaviyo_home) -> None:
    table = pa.table({"email": ["a@x.io", "bad", "A@x.io", "b@x.io"], "first_name": ["A", "X", "A", "B"]})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=2))
    result = export_segment(reader, email="email", list_id="Y6nRLr", dry_run=True, offline=True, progress=False)
    assert result.report_path == klaviyo_home / "runs" / result.run_id / "report.parquet"
    assert result._report is None  # not read yet: the counts come from the run
    assert (result.total_rows, result.would_send, result.skipped, result.duplicates) == (4, 2, 1, 1)
    report = result.report
    assert report["index"].tolist() == [0, 1, 2, 3]  # row numbers within the segment
    assert report["status"].tolist() == ["would_send", "skipped", "duplicate", "would_send"]
    assert report["reason"].tolist() == [None, "malformed email 'bad'", "duplicate of segment 0 row 0", None]
    assert report["status"].cat.categories.tolist() == ["skipped", "duplicate", "would_send"]
    assert result.to_dict()["report_path"] == str(result.report_path)


def test_a_run_stopped_while_reading_never_gives_the_rows_read_as_the_segments_size() -> None:
    emails, statuses = ["a@x.io", "b@x.io", "c@x.io"], ["sent", "not_sent", "not_sent"]
    report = pd.DataFrame({"segment": 0, "index": [0, 1, 2], "email": emails, "status": statuses,
                           "reason": [None, "not sent", "not sent"]})  # fmt: skip
    stopped = ExportResult("Y6nRLr", report, error="Klaviyo answered 503", input_complete=False)
    assert stopped.summary().startswith(
        "Stopped by an error while reading the input: 1 of the first 3 rows were sent to list 'Y6nRLr'"
    )
    assert "the rest of the input was not read" in stopped.summary()
    assert stopped.to_dict()["input_complete"] is False and stopped.to_dict()["kept"] == 0
    whole = ExportResult("Y6nRLr", report, error="Klaviyo answered 503")
    assert whole.summary().startswith("Stopped by an error: 1 of 3 rows") and whole.to_dict()["input_complete"]
