"""RowStream and run_locally (stream.py): chunks in, each row's fate, report rows, batches out, lazily; the row cap
for inputs that cannot be counted up front."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.export.checks import RowChecker
from klaviyo_magic.export.fields import resolve_fields
from klaviyo_magic.export.payloads import Batcher
from klaviyo_magic.export.report import ReportBook
from klaviyo_magic.export.sources import open_sources
from klaviyo_magic.export.stream import SAMPLE_SIZE, RowStream, run_locally

SCHEMA = pa.schema([("email", pa.string()), ("first_name", pa.string())])


def reader(chunks: int, rows: int, read: list[int]) -> pa.RecordBatchReader:
    """A one-shot reader of ``chunks`` record batches that notes in ``read`` each batch handed out."""

    def batches():
        for number in range(chunks):
            read.append(number)
            emails = [f"u{number}.{i}@x.io" for i in range(rows)]
            yield pa.record_batch([emails, [f"F{number}"] * rows], schema=SCHEMA)

    return pa.RecordBatchReader.from_batches(SCHEMA, batches())


def test_batches_go_out_while_the_input_is_still_being_read() -> None:
    read: list[int] = []
    sources = open_sources(reader(10, 100, read))
    field_map = resolve_fields(sources, "email", None)
    book = ReportBook(1)
    stream = RowStream(
        sources,
        list(field_map),
        RowChecker("email", field_map),
        book,
        max_profiles=10_000,
        batcher=Batcher(max_profiles=100),
    )
    batches = stream.batches()
    first = next(batches)
    assert len(first) == 100 and read == [0]  # only the first chunk was read for the first batch
    assert book.rows == 100 and not stream.finished
    rest = list(batches)
    assert read == list(range(10)) and stream.finished
    assert [len(b) for b in rest] == [100] * 9 and [b.number for b in rest] == list(range(2, 11))
    assert stream.totals.rows == 1_000 and stream.totals.segment_rows == [1_000]


def stream_of_a_file(tmp_path, emails: list[str]) -> tuple[RowStream, ReportBook, RowChecker]:
    """A Parquet file of ``emails``, read as the export reads it, 300 rows a chunk, 100 profiles a batch."""
    path = tmp_path / "segment.parquet"
    pd.DataFrame({"email": emails}).to_parquet(path, index=False)
    sources = open_sources(str(path))
    field_map = resolve_fields(sources, "email", None)
    book, checker = ReportBook(1), RowChecker("email", field_map)
    stream = RowStream(sources, list(field_map), checker, book, max_profiles=10_000,
                       batcher=Batcher(max_profiles=100), chunk_rows=300)  # fmt: skip
    return stream, book, checker


def interrupted_at_the_second_call(real):
    """``real``, but the second call raises KeyboardInterrupt, as SIGINT would in the middle of a chunk."""
    calls = []

    def wrapper(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    return wrapper


def test_a_reading_cut_by_ctrl_c_inside_the_input_is_read_again_past_the_rows_reported(tmp_path) -> None:
    """Ctrl-C can land inside the input library while the export reads: the reading generator is then over for
    good. Draining a file input (to report every row) reads it again from the start, skipping what was reported."""
    emails = [f"p{i}@example.com" for i in range(1_000)]
    emails[500] = emails[10]  # a duplicate after the cut: the checks still know row 10
    stream, book, _ = stream_of_a_file(tmp_path, emails)
    batches = stream.batches()
    next(batches)
    assert book.rows == 300
    with pytest.raises(KeyboardInterrupt):
        batches.throw(KeyboardInterrupt)  # as SIGINT raises it inside the reading
    stream.drain()
    assert stream.finished and book.rows == 1_000 and stream.totals.segment_rows == [1_000]
    report = book.finish()
    assert report["index"].tolist() == list(range(1_000))  # every row once, in order
    assert report.loc[500, "status"] == "duplicate" and (report["status"] != "duplicate").sum() == 999


def test_a_ctrl_c_in_the_middle_of_checking_a_chunk_leaves_no_row_a_duplicate_of_itself(tmp_path, monkeypatch):
    """The slow part of checking a chunk (hashing what each row sends) comes before the checker remembers the
    chunk's emails: interrupted there, the rows read again by the drain are not duplicates of themselves."""
    from klaviyo_magic.export import checks

    stream, book, _ = stream_of_a_file(tmp_path, [f"p{i}@example.com" for i in range(600)])
    monkeypatch.setattr(checks, "row_hashes", interrupted_at_the_second_call(checks.row_hashes))
    with pytest.raises(KeyboardInterrupt):
        list(stream.batches())
    assert book.rows == 300
    stream.drain()
    report = book.finish()
    assert report["index"].tolist() == list(range(600)) and not (report["status"] == "duplicate").any()


def test_rows_the_checker_remembered_before_a_ctrl_c_are_not_duplicates_of_themselves(tmp_path, monkeypatch):
    """Interrupted after the checker remembered a chunk's emails but before the report has its rows: the drain
    reads them again at the same positions, and a row is never a duplicate of itself (a real duplicate still is)."""
    emails = [f"p{i}@example.com" for i in range(600)]
    emails[450] = emails[400]
    stream, book, checker = stream_of_a_file(tmp_path, emails)
    monkeypatch.setattr(checker, "_compare_with_state", interrupted_at_the_second_call(checker._compare_with_state))
    with pytest.raises(KeyboardInterrupt):
        list(stream.batches())
    stream.drain()
    report = book.finish()
    assert report["index"].tolist() == list(range(600))
    assert np.flatnonzero(report["status"] == "duplicate").tolist() == [450]


def test_rows_past_the_cap_of_an_input_that_could_not_be_counted_are_not_sent() -> None:
    read: list[int] = []
    run = run_locally(reader(3, 10, read), email="email", max_profiles=25)
    report = run.report
    assert len(report) == 30  # every row read is in the report...
    assert report["status"].tolist() == ["pending"] * 25 + ["not_sent"] * 5  # ...those past the cap not sent
    assert report["reason"].tolist()[25:] == ["not sent: over max_profiles=25"] * 5
    assert sum(len(b) for b in run.batches) == 25 and run.totals.over_limit == 5


def test_a_dry_run_over_the_cap_of_an_uncounted_input_shows_the_rows_it_would_not_send(klaviyo_home) -> None:
    result = export_segment(
        reader(3, 10, []), email="email", list_id="Y6nRLr", max_profiles=25, dry_run=True, offline=True
    )
    assert (result.total_rows, result.would_send, result.not_sent) == (30, 25, 5)
    assert result.problems["reason"].unique().tolist() == ["not sent: over max_profiles=25"]


def test_run_locally_keeps_a_sample_of_the_first_profiles_and_writes_nothing(klaviyo_home) -> None:
    data = pd.DataFrame({"email": [f"u{i}@x.io" for i in range(8)] + ["bad"], "first_name": list("ABCDEFGHI")})
    run = run_locally(data.iloc[::-1], email="email", chunk_rows=2)
    assert len(run.totals.sample) == SAMPLE_SIZE == 5
    assert [json.loads(p)["attributes"]["email"] for p in run.totals.sample] == [f"u{i}@x.io" for i in range(7, 2, -1)]
    assert run.totals.sample == run.batches[0].profiles[:5]
    assert run.totals.segment_rows == [9] and run.partially_sent == 0
    assert not klaviyo_home.exists() or not any(klaviyo_home.iterdir())  # no state, journal or report file
