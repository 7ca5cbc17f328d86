"""The report's compact columns (report.py, Plan in segment.py, ExportResult in result.py): dtypes, memory per
row, the values they show, and the outcome marking the export run does."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.export import emails as emails_module
from klaviyo_magic.export.emails import shown_text_dtype
from klaviyo_magic.export.segment import iter_batches, plan_export
from klaviyo_magic.result import ExportResult

STATUS_CATEGORIES = ["pending", "sent", "skipped", "duplicate", "failed", "would_send"]


def shown(values: pd.Series) -> list:
    """Values with missing ones as None (the Arrow-backed email column holds them as NaN)."""
    return [None if pd.isna(value) else value for value in values]


def customers(n: int, *, start: int = 0) -> pd.DataFrame:
    ids = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "email": [f"Customer.{i}@Example.com" for i in ids],
            "first_name": [f"First{i}" for i in ids],
            "ltv": ids * 1.5,
        }
    )


# -- dtypes and memory -----------------------------------------------------------------------------------------


def test_report_columns_are_compact() -> None:
    report = plan_export(customers(5), email="email").report
    assert list(report.columns) == ["segment", "index", "email", "status", "reason"]
    assert report["segment"].dtype == np.int8
    assert report["index"].dtype == np.int64  # a RangeIndex: integers, not Python objects
    assert report["email"].dtype == shown_text_dtype()  # pandas' Arrow-backed "str" (pandas 3)
    assert report["email"].dtype.storage.startswith("pyarrow")
    assert isinstance(report["status"].dtype, pd.CategoricalDtype)
    assert report["status"].cat.categories.tolist() == STATUS_CATEGORIES
    assert report["status"].cat.codes.dtype == np.int8
    assert report["reason"].dtype == object
    assert report["index"].tolist() == [0, 1, 2, 3, 4]
    assert report["email"].tolist()[:2] == ["customer.0@example.com", "customer.1@example.com"]


def test_report_memory_per_row_is_bounded() -> None:
    n = 200_000
    data = customers(n)
    data.loc[::1000, "email"] = None  # a few missing, malformed and duplicate emails, as in real data
    data.loc[1::1000, "email"] = "not-an-email"
    data.loc[2::1000, "email"] = "customer.0@example.com"
    report = plan_export(data, email="email").report
    per_row = report.memory_usage(deep=True).sum() / n
    # Object columns cost about 220 bytes a row here (measured as pandas does: a Python str per email, an int
    # object per label, a pointer per status); the compact report costs ~70, of which 24 are the mostly-None
    # reasons (8-byte pointers to the one None, which pandas counts at 16 bytes each).
    assert per_row < 80, report.memory_usage(deep=True)
    assert report["email"].memory_usage(deep=True) / n < 40  # the ~26 characters, an offset, no object
    assert report[["segment", "index", "status"]].memory_usage(deep=True, index=False).sum() / n < 11


def test_without_pyarrow_strings_the_email_column_is_object_with_none(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pd.DataFrame({"email": ["A@x.io", None, "bad", "a@x.io"], "first_name": ["A", "B", "C", "D"]})
    arrow = plan_export(data, email="email")
    monkeypatch.setattr(emails_module, "_text_dtype", lambda: object)
    plain = plan_export(data, email="email")
    assert plain.report["email"].dtype == object
    assert plain.report["email"].tolist() == ["a@x.io", None, "bad", "a@x.io"]
    assert shown(arrow.report["email"]) == plain.report["email"].tolist()
    assert plain.report["status"].tolist() == arrow.report["status"].tolist()
    assert plain.report["reason"].tolist() == arrow.report["reason"].tolist()
    bodies = [batch.body("Y6nRLr") for batch in iter_batches(plain)]
    assert bodies == [batch.body("Y6nRLr") for batch in iter_batches(arrow)]


# -- the values shown ------------------------------------------------------------------------------------------


def test_malformed_emails_show_their_raw_text_and_missing_ones_are_missing() -> None:
    when = pd.Timestamp("2024-05-01")
    data = pd.DataFrame(
        {"email": [" Ann@Example.COM ", None, "   ", " Bob@@x ", 12345, 1.5, when, np.nan, "ann@example.com"]},
    )
    report = plan_export(data, email="email").report
    assert shown(report["email"]) == [
        "ann@example.com",
        None,
        None,
        " Bob@@x ",  # as given, spaces included
        "12345",
        "1.5",
        "2024-05-01 00:00:00",
        None,
        "ann@example.com",
    ]
    assert report["email"].isna().tolist() == [False, True, True, False, False, False, False, True, False]
    assert report["status"].tolist() == ["pending"] + ["skipped"] * 7 + ["duplicate"]
    assert report["reason"].tolist()[3:7] == [
        "malformed email ' Bob@@x '",
        "malformed email 12345 (not text)",
        "malformed email 1.5 (not text)",
        f"malformed email {when!r} (not text)",
    ]


def test_duplicates_across_two_segments_name_their_original() -> None:
    first = pd.DataFrame({"email": ["a@x.io", "b@x.io", "A@X.IO"]}, index=["c-1", "c-2", "c-3"])
    second = pd.DataFrame({"email": [" b@x.io", "d@x.io", "a@x.io", "d@x.io"]}, index=["n-1", "n-2", "n-3", "n-4"])
    report = plan_export([first, second], email="email").report
    assert report["index"].dtype == first.index.dtype  # both str: the labels stay Arrow-backed text
    assert report["status"].tolist() == ["pending", "pending", "duplicate", "duplicate", "pending"] + [
        "duplicate",
        "duplicate",
    ]
    assert report["reason"].tolist() == [
        None,
        None,
        "duplicate of segment 0 row c-1",
        "duplicate of segment 0 row c-2",
        None,
        "duplicate of segment 0 row c-1",
        "duplicate of segment 1 row n-2",
    ]
    assert report["email"].tolist() == ["a@x.io", "b@x.io", "a@x.io", "b@x.io", "d@x.io", "a@x.io", "d@x.io"]


def test_a_row_skipped_for_its_phone_is_not_the_original_of_a_duplicate() -> None:
    data = pd.DataFrame({"email": ["a@x.io", "a@x.io", "a@x.io"], "phone_number": ["12", "+15005550006", None]})
    report = plan_export(data, email="email").report
    assert report["status"].tolist() == ["skipped", "pending", "duplicate"]
    assert report["reason"].tolist()[2] == "duplicate of segment 0 row 1"


@pytest.mark.parametrize(
    ("indexes", "dtype", "labels"),
    [
        ([pd.RangeIndex(2), pd.RangeIndex(2)], np.dtype("int64"), [0, 1, 0, 1]),
        ([pd.Index(["a", "b"]), pd.Index(["c", "d"])], pd.Index(["a"]).dtype, ["a", "b", "c", "d"]),  # pandas 3: str
        ([pd.Index(["a", "b"], dtype=object)] * 2, np.dtype(object), ["a", "b", "a", "b"]),
        ([pd.Index(["a", "b"]), pd.Index([7, 8])], np.dtype(object), ["a", "b", 7, 8]),
        ([pd.Index([1.5, 2.5])] * 2, np.dtype("float64"), [1.5, 2.5, 1.5, 2.5]),
        (
            [pd.DatetimeIndex(["2024-01-01", "2024-01-02"])] * 2,
            np.dtype("datetime64[us]"),
            [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")] * 2,
        ),
        (
            [pd.MultiIndex.from_tuples([("eu", 1), ("us", 2)])] * 2,
            np.dtype(object),
            [("eu", 1), ("us", 2), ("eu", 1), ("us", 2)],
        ),
    ],
    ids=["range", "str", "object", "mixed", "float", "datetime", "multiindex"],
)
def test_index_labels_keep_the_segments_index_dtype(indexes: list[pd.Index], dtype: object, labels: list) -> None:
    frames = [
        pd.DataFrame({"email": [f"u{i}.{j}@x.io" for j in range(2)]}, index=index) for i, index in enumerate(indexes)
    ]
    report = plan_export(frames, email="email").report
    if isinstance(indexes[0], pd.DatetimeIndex):
        dtype = indexes[0].dtype  # the resolution pandas chose for these labels
    assert report["index"].dtype == dtype
    assert report["index"].tolist() == labels


def test_duplicate_reasons_name_non_integer_labels_as_before() -> None:
    day = pd.DatetimeIndex(["2024-01-01", "2024-01-02"])
    report = plan_export(pd.DataFrame({"email": ["a@x.io", "A@x.io"]}, index=day), email="email").report
    assert report["reason"].tolist() == [None, "duplicate of segment 0 row 2024-01-01 00:00:00"]
    multi = pd.MultiIndex.from_tuples([("eu", 1), ("us", 2)])
    report = plan_export(pd.DataFrame({"email": ["a@x.io", "A@x.io"]}, index=multi), email="email").report
    assert report["reason"].tolist() == [None, "duplicate of segment 0 row ('eu', 1)"]


def test_an_empty_segment_does_not_make_the_labels_objects() -> None:
    empty = pd.DataFrame({"email": pd.Series([], dtype=object)})
    report = plan_export([customers(2), empty, customers(1)], email="email").report
    assert report["index"].dtype == np.int64 and report["index"].tolist() == [0, 1, 0]
    assert report["segment"].tolist() == [0, 0, 2]


def test_many_segments_get_a_wider_segment_dtype() -> None:
    frames = [pd.DataFrame({"email": [f"u{i}@x.io"]}) for i in range(200)]
    report = plan_export(frames, email="email").report
    assert report["segment"].dtype == np.int16 and report["segment"].tolist() == list(range(200))


# -- marking outcomes, as the export run does -------------------------------------------------------------------


def test_marking_outcomes_gives_the_same_values_as_before() -> None:
    data = pd.DataFrame({"email": ["a@x.io", "b@x.io", "bad", "c@x.io", "a@x.io", "d@x.io"]})
    plan = plan_export(data, email="email")
    email_text = plan.report["email"].array.__arrow_array__()
    assert plan.pending_positions().tolist() == [0, 1, 3, 5]
    plan.mark(np.array([0, 3]), "sent")
    plan.mark(np.array([False, True, False, False, False, True]), "failed", ["rejected: one", None])
    plan.mark([5], "sent", "accepted by Klaviyo in import job J1; not watched to completion")
    assert plan.report["status"].tolist() == ["sent", "failed", "skipped", "sent", "duplicate", "sent"]
    assert plan.report["reason"].tolist() == [
        None,
        "rejected: one",
        "malformed email 'bad'",
        None,
        "duplicate of segment 0 row 0",
        "accepted by Klaviyo in import job J1; not watched to completion",
    ]
    assert plan.counts == {"pending": 0, "sent": 3, "skipped": 1, "duplicate": 1, "failed": 1}
    assert plan.pending_positions().size == 0
    assert (plan.report["status"] == "sent").tolist() == [True, False, False, True, False, True]
    assert plan.report["email"].array.__arrow_array__() is email_text  # marking never rewrites the emails


def test_a_status_outside_the_categories_is_added() -> None:
    plan = plan_export(customers(3), email="email")
    plan.mark([0], "would_send", "dry run: not sent")
    plan.mark([1], "held back")
    assert plan.report["status"].tolist() == ["would_send", "held back", "pending"]
    assert plan.report["status"].cat.categories.tolist() == [*STATUS_CATEGORIES, "held back"]
    assert plan.counts == {"pending": 1, "sent": 0, "skipped": 0, "duplicate": 0, "failed": 0} | {
        "would_send": 1,
        "held back": 1,
    }


def test_marking_a_million_rows_stays_fast() -> None:
    n = 1_000_000
    plan = plan_export(pd.DataFrame({"email": pd.Series([f"u{i}@x.io" for i in range(n)], dtype="str")}), email="email")
    started = time.perf_counter()
    plan.mark(np.arange(0, n, 2), "sent")
    plan.mark(np.arange(1, n, 2), "failed", "not sent")
    plan.mark(np.arange(1, n, 1000), "failed", [f"rejected {i}" for i in range(1, n, 1000)])
    plan.pending_positions()
    assert time.perf_counter() - started < 1  # about 0.03 s here
    assert plan.counts["sent"] == n // 2 and plan.counts["failed"] == n // 2


# -- ExportResult on the compact report --------------------------------------------------------------------------


@pytest.fixture
def dry_run() -> ExportResult:
    data = pd.DataFrame(
        {"email": ["a@x.io", None, "bad", "A@x.io", "b@x.io"], "first_name": ["A", "B", "C", "D", "E"]},
        index=[10, 11, 12, 13, 14],
    )
    return export_segment(data, email="email", list_id="Y6nRLr", dry_run=True, progress=False)


def test_result_counts_and_value_counts_list_only_statuses_that_occur(dry_run: ExportResult) -> None:
    assert (dry_run.would_send, dry_run.skipped, dry_run.duplicates, dry_run.failed) == (2, 2, 1, 0)
    assert dry_run.report["status"].cat.categories.tolist() == ["skipped", "duplicate", "would_send"]
    assert dry_run.report["status"].value_counts().to_dict() == {"skipped": 2, "would_send": 2, "duplicate": 1}
    assert dry_run.report["index"].tolist() == [10, 11, 12, 13, 14]


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
    assert "would_send=2 skipped=2 duplicates=1 failed=0" in repr(dry_run)
    html = dry_run._repr_html_()
    assert "<td>malformed email 'bad'</td>" in html and "<td>duplicate of segment 0 row 10</td>" in html


def test_result_to_dict_is_plain_json(dry_run: ExportResult) -> None:
    data = dry_run.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["would_send"] == 2 and data["skipped"] == 2


def test_report_csv_holds_plain_text(dry_run: ExportResult, tmp_path) -> None:
    path = tmp_path / "report.csv"
    dry_run.report.to_csv(path, index=False)  # what `klaviyo-magic export --report FILE.csv` writes
    assert path.read_text().splitlines() == [
        "segment,index,email,status,reason",
        "0,10,a@x.io,would_send,dry run: not sent",
        "0,11,,skipped,missing email",
        "0,12,bad,skipped,malformed email 'bad'",
        "0,13,a@x.io,duplicate,duplicate of segment 0 row 10",
        "0,14,b@x.io,would_send,dry run: not sent",
    ]


def test_report_rows_convert_to_json_with_null_for_missing(dry_run: ExportResult) -> None:
    report = dry_run.report
    rows = json.loads(report.to_json(orient="records"))
    assert rows[1] == {"segment": 0, "index": 11, "email": None, "status": "skipped", "reason": "missing email"}
    records = report.astype(object).where(report.notna(), None).to_dict("records")
    assert json.loads(json.dumps(records, allow_nan=False)) == rows
