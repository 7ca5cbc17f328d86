"""Each row's fate (checks.py, through stream.run_locally): emails and phones, duplicates across chunks and segments,
unchanged rows against the sync state, and the compact report those decisions fill.

``run_locally`` runs the export's local half; rows to send stay ``pending`` there (a dry run shows them as
``would_send``, a real run as ``sent``, ``failed`` or ``not_sent``).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic.export import emails as emails_module
from klaviyo_magic.export.checks import UNCHANGED, RowChecker
from klaviyo_magic.export.emails import shown_text_dtype
from klaviyo_magic.export.hashing import email_hashes
from klaviyo_magic.export.report import ACTION_ADD, ACTION_UPDATE, CODES
from klaviyo_magic.export.state import Snapshot
from klaviyo_magic.export.stream import run_locally

STATUS_CATEGORIES = ["pending", "sent", "unchanged", "skipped", "duplicate", "not_sent", "failed", "would_send"]


def frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame(columns)


def report_of(segments: object, **options: object) -> pd.DataFrame:
    return run_locally(segments, email="email", **options).report


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


# -- the report's rows and dtypes ------------------------------------------------------------------------------


def test_report_has_one_row_per_input_row_in_input_order() -> None:
    first = pd.DataFrame({"email": ["a@x.io", "b@x.io"]}, index=["cust-1", "cust-2"])
    second = pd.DataFrame({"email": ["c@x.io"]}, index=pd.Index([7]))
    empty = pd.DataFrame({"email": pd.Series([], dtype=object)})
    report = report_of([first, empty, second])
    assert list(report.columns) == ["segment", "index", "email", "status", "action", "reason"]
    assert isinstance(report.index, pd.RangeIndex) and list(report.index) == [0, 1, 2]
    assert report["segment"].tolist() == [0, 0, 2] and report["segment"].dtype == np.int8
    assert report["index"].tolist() == ["cust-1", "cust-2", 7] and report["index"].dtype == object  # mixed
    assert report["reason"].tolist() == [None, None, None]
    assert report["status"].tolist() == ["pending"] * 3
    assert report["action"].tolist() == ["add"] * 3  # no sync state: every row to send is new to the list


def test_report_columns_are_compact() -> None:
    report = report_of(customers(5))
    assert report["segment"].dtype == np.int8
    assert report["index"].dtype == np.int64  # a RangeIndex: integers, not Python objects
    assert report["email"].dtype == shown_text_dtype()  # pandas' Arrow-backed "str" (pandas 3)
    assert report["email"].dtype.storage.startswith("pyarrow")
    assert isinstance(report["status"].dtype, pd.CategoricalDtype)
    assert report["status"].cat.categories.tolist() == STATUS_CATEGORIES
    assert report["status"].cat.codes.dtype == np.int8
    assert report["action"].cat.categories.tolist() == ["add", "update"]
    assert report["action"].cat.codes.dtype == np.int8
    assert report["reason"].dtype == object
    assert report["index"].tolist() == [0, 1, 2, 3, 4]
    assert report["email"].tolist()[:2] == ["customer.0@example.com", "customer.1@example.com"]


def test_report_memory_per_row_is_bounded() -> None:
    n = 200_000
    data = customers(n)
    data.loc[::1000, "email"] = None  # a few missing, malformed and duplicate emails, as in real data
    data.loc[1::1000, "email"] = "not-an-email"
    data.loc[2::1000, "email"] = "customer.0@example.com"
    report = report_of(data)
    per_row = report.memory_usage(deep=True).sum() / n
    # Object columns would cost about 220 bytes a row (a Python str per email, an int object per label, a pointer
    # per status); the compact report costs ~70, of which 24 are the mostly-None reasons (8-byte pointers to the
    # one None, which pandas counts at 16 bytes each).
    assert per_row < 80, report.memory_usage(deep=True)
    assert report["email"].memory_usage(deep=True) / n < 40  # the ~26 characters, an offset, no object
    assert report[["segment", "index", "status", "action"]].memory_usage(deep=True, index=False).sum() / n < 12


def test_multiindex_labels_are_kept_as_tuples() -> None:
    data = pd.DataFrame({"email": ["a@x.io"]}, index=pd.MultiIndex.from_tuples([("eu", 1)]))
    assert report_of(data)["index"].tolist() == [("eu", 1)]


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
    report = report_of(frames)
    if isinstance(indexes[0], pd.DatetimeIndex):
        dtype = indexes[0].dtype  # the resolution pandas chose for these labels
    assert report["index"].dtype == dtype
    assert report["index"].tolist() == labels


def test_an_empty_segment_does_not_make_the_labels_objects() -> None:
    empty = pd.DataFrame({"email": pd.Series([], dtype=object), "first_name": pd.Series([], dtype=object)})
    report = report_of([customers(2), empty, customers(1)])
    assert report["index"].dtype == np.int64 and report["index"].tolist() == [0, 1, 0]
    assert report["segment"].tolist() == [0, 0, 2]


def test_many_segments_get_a_wider_segment_dtype() -> None:
    frames = [pd.DataFrame({"email": [f"u{i}@x.io"]}) for i in range(200)]
    report = report_of(frames)
    assert report["segment"].dtype == np.int16 and report["segment"].tolist() == list(range(200))


def test_streamed_inputs_label_rows_by_their_number_in_the_segment() -> None:
    import pyarrow as pa

    table = pa.table({"email": ["a@x.io", "b@x.io", "A@x.io", "c@x.io", "b@x.io"]})
    report = report_of([table, table.slice(3)], chunk_rows=2)
    assert report["segment"].tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert report["index"].tolist() == [0, 1, 2, 3, 4, 0, 1] and report["index"].dtype == np.int64
    assert report["reason"].tolist()[2:] == [
        "duplicate of segment 0 row 0",
        None,
        "duplicate of segment 0 row 1",
        "duplicate of segment 0 row 3",
        "duplicate of segment 0 row 1",
    ]


# -- emails ------------------------------------------------------------------------------------------------------


def test_emails_are_normalised_and_bad_ones_skipped_with_reasons() -> None:
    data = pd.DataFrame(
        {"email": ["  Ann@Example.COM ", None, np.nan, "", "   ", "bob@@x", 12345, "ann@example.com"]},
        index=list("abcdefgh"),
    )
    report = report_of(data)
    assert report["status"].tolist() == ["pending"] + ["skipped"] * 6 + ["duplicate"]
    assert report["reason"].tolist() == [
        None,
        "missing email",
        "missing email",
        "missing email",
        "missing email",
        "malformed email 'bob@@x'",
        "malformed email 12345 (not text)",
        "duplicate of segment 0 row a",
    ]
    # blank counts as missing; a malformed value is shown as given, as text
    assert shown(report["email"]) == ["ann@example.com", None, None, None, None, "bob@@x", "12345", "ann@example.com"]
    assert report["action"].isna().tolist() == [False] + [True] * 7  # only rows to send have an action


def test_malformed_emails_show_their_raw_text_and_missing_ones_are_missing() -> None:
    when = pd.Timestamp("2024-05-01")
    data = pd.DataFrame(
        {"email": [" Ann@Example.COM ", None, "   ", " Bob@@x ", 12345, 1.5, when, np.nan, "ann@example.com"]},
    )
    report = report_of(data)
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


def test_string_and_categorical_email_columns() -> None:
    data = pd.DataFrame({"email": pd.Series(["A@x.io", None], dtype="string")})
    assert shown(report_of(data)["email"]) == ["a@x.io", None]
    data = pd.DataFrame({"email": pd.Categorical(["A@x.io", "A@x.io"])})
    assert report_of(data)["status"].tolist() == ["pending", "duplicate"]


def test_without_pyarrow_strings_the_email_column_is_object_with_none(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pd.DataFrame({"email": ["A@x.io", None, "bad", "a@x.io"], "first_name": ["A", "B", "C", "D"]})
    arrow = run_locally(data, email="email")
    monkeypatch.setattr(emails_module, "_text_dtype", lambda: object)
    plain = run_locally(data, email="email")
    assert plain.report["email"].dtype == object
    assert plain.report["email"].tolist() == ["a@x.io", None, "bad", "a@x.io"]
    assert shown(arrow.report["email"]) == plain.report["email"].tolist()
    assert plain.report["status"].tolist() == arrow.report["status"].tolist()
    assert plain.report["reason"].tolist() == arrow.report["reason"].tolist()
    assert [batch.body("Y6nRLr") for batch in plain.batches] == [batch.body("Y6nRLr") for batch in arrow.batches]


# -- duplicates --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [50_000, 1, 2, 3])
def test_duplicates_across_segments_and_chunks_name_the_row_that_is_sent(chunk_rows: int) -> None:
    first = pd.DataFrame({"email": ["a@x.io", "b@x.io"]}, index=["cust-1", "cust-2"])
    second = pd.DataFrame({"email": ["B@X.io ", "c@x.io", "c@x.io", "a@x.io"]}, index=["n1", "n2", "n3", "n4"])
    report = report_of([first, second], chunk_rows=chunk_rows)
    assert report["status"].tolist() == ["pending", "pending", "duplicate", "pending", "duplicate", "duplicate"]
    assert report["reason"].tolist() == [
        None,
        None,
        "duplicate of segment 0 row cust-2",
        None,
        "duplicate of segment 1 row n2",
        "duplicate of segment 0 row cust-1",
    ]


def test_duplicates_across_two_segments_name_their_original() -> None:
    first = pd.DataFrame({"email": ["a@x.io", "b@x.io", "A@X.IO"]}, index=["c-1", "c-2", "c-3"])
    second = pd.DataFrame({"email": [" b@x.io", "d@x.io", "a@x.io", "d@x.io"]}, index=["n-1", "n-2", "n-3", "n-4"])
    report = report_of([first, second])
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


def test_duplicate_reasons_name_non_integer_labels_as_python_shows_them() -> None:
    day = pd.DatetimeIndex(["2024-01-01", "2024-01-02"])
    report = report_of(pd.DataFrame({"email": ["a@x.io", "A@x.io"]}, index=day))
    assert report["reason"].tolist() == [None, "duplicate of segment 0 row 2024-01-01 00:00:00"]
    multi = pd.MultiIndex.from_tuples([("eu", 1), ("us", 2)])
    report = report_of(pd.DataFrame({"email": ["a@x.io", "A@x.io"]}, index=multi))
    assert report["reason"].tolist() == [None, "duplicate of segment 0 row ('eu', 1)"]  # not np.int64(1)


def test_a_duplicate_far_back_across_many_chunks_finds_its_first_row() -> None:
    n = 1_000
    emails = [f"u{i}@x.io" for i in range(n)] + ["U7@X.IO", "u999@x.io", "u0@x.io"]
    report = report_of(pd.DataFrame({"email": emails}, index=[f"r{i}" for i in range(n + 3)]), chunk_rows=64)
    assert (report["status"] == "pending").sum() == n
    assert report["reason"].tolist()[n:] == [
        "duplicate of segment 0 row r7",
        "duplicate of segment 0 row r999",
        "duplicate of segment 0 row r0",
    ]


# -- phone numbers -----------------------------------------------------------------------------------------------


def test_phone_numbers_must_be_e164() -> None:
    data = frame(
        email=["a@x.io", "b@x.io", "c@x.io", "bad", "d@x.io"],
        phone_number=["+1 (500) 555-0006", "5005550006", None, "123", 15005550006],
    )
    run = run_locally(data, email="email")
    report = run.report
    assert report["status"].tolist() == ["pending", "skipped", "pending", "skipped", "skipped"]
    assert report["reason"].tolist() == [
        None,
        "phone_number '5005550006' is not in E.164 format (e.g. +15005550006)",
        None,
        "malformed email 'bad'",  # the first reason wins
        "phone_number '15005550006' is not in E.164 format (e.g. +15005550006)",
    ]
    assert run.batches[0].profiles[0] == (  # sent as checked: without spaces, dashes or parentheses
        '{"type":"profile","attributes":{"email":"a@x.io","phone_number":"+15005550006"}}'
    )


def test_a_row_skipped_for_its_phone_does_not_make_a_later_row_a_duplicate() -> None:
    data = frame(email=["a@x.io", "a@x.io"], mobile=["12", "+15005550006"])
    report = report_of(data, properties={"mobile": "phone_number"})
    assert report["status"].tolist() == ["skipped", "pending"]


@pytest.mark.parametrize("chunk_rows", [50_000, 1])
def test_a_row_skipped_for_its_phone_is_not_the_original_of_a_duplicate(chunk_rows: int) -> None:
    data = pd.DataFrame({"email": ["a@x.io", "a@x.io", "a@x.io"], "phone_number": ["12", "+15005550006", None]})
    report = report_of(data, chunk_rows=chunk_rows)
    assert report["status"].tolist() == ["skipped", "pending", "duplicate"]
    assert report["reason"].tolist()[2] == "duplicate of segment 0 row 1"


def test_phones_are_not_checked_when_not_sent() -> None:
    data = frame(email=["a@x.io"], phone_number=["nope"])
    assert report_of(data, properties=[])["status"].tolist() == ["pending"]


def test_rows_with_a_bad_phone_still_count_as_present_for_mirror_mode() -> None:
    """A mirror run never removes on doubt: a member whose row was skipped for its phone is still in the segment."""
    data = frame(email=["a@x.io", "b@x.io", "bad"], phone_number=["+15005550006", "12", None])
    run = run_locally(data, email="email")
    checker = RowChecker("email", run.field_map)
    checker.check(0, 0, data, np.arange(3))
    hashes = email_hashes(["a@x.io", "b@x.io", "c@x.io", "bad"])
    assert checker.present(hashes).tolist() == [True, True, False, False]
    assert checker.distinct_emails == 1  # only a@x.io is to be sent


# -- unchanged rows, against the sync state ----------------------------------------------------------------------


def state_of(*runs: object) -> Snapshot:
    """The sync state a run that sent these batches would leave (every batch confirmed), ``last_run`` 1."""
    batches = [batch for run in runs for batch in run.batches]  # type: ignore[attr-defined]
    email_hash = np.concatenate([b.email_hash for b in batches])
    row_hash = np.concatenate([b.row_hash for b in batches])
    order = np.argsort(email_hash)
    ones = np.ones(len(order), np.int64)
    return Snapshot(email_hash[order], row_hash[order], last_run=ones, first_run=ones)


def test_rows_that_send_the_same_as_last_time_are_unchanged_and_not_sent() -> None:
    before = pd.DataFrame({"email": ["a@x.io", "b@x.io", "c@x.io"], "first_name": ["A", "B", "C"]})
    state = state_of(run_locally(before, email="email"))
    after = pd.DataFrame(
        {"email": ["A@x.io ", "b@x.io", "d@x.io", "bad", "c@x.io"], "first_name": ["A", "Bea", "D", "X", "C"]}
    )
    run = run_locally(after, email="email", state=state)
    report = run.report
    assert report["status"].tolist() == ["unchanged", "pending", "pending", "skipped", "unchanged"]
    actions = report["action"].tolist()
    assert actions[1:3] == ["update", "add"] and all(pd.isna(actions[i]) for i in (0, 3, 4))  # unchanged: none
    assert UNCHANGED == "unchanged since the last run sent it; not sent again (full=True re-sends)"
    assert report["reason"].tolist() == [UNCHANGED, None, None, "malformed email 'bad'", UNCHANGED]
    assert [batch.emails for batch in run.batches] == [["b@x.io", "d@x.io"]]
    full = run_locally(after, email="email", state=state, full=True)
    assert full.report["status"].tolist() == ["pending", "pending", "pending", "skipped", "pending"]
    assert full.report["action"].tolist()[:3] == ["update", "update", "add"]
    assert full.batches[0].emails == ["a@x.io", "b@x.io", "d@x.io", "c@x.io"]


def test_a_changed_mapping_makes_every_row_an_update() -> None:
    data = pd.DataFrame({"email": ["a@x.io", "b@x.io"], "first_name": ["A", "B"], "ltv": [1, 2]})
    state = state_of(run_locally(data, email="email", properties=["first_name"]))
    assert run_locally(data, email="email", properties=["first_name"], state=state).report["status"].tolist() == [
        "unchanged",
        "unchanged",
    ]
    remapped = run_locally(data, email="email", properties={"first_name": "last_name"}, state=state).report
    assert remapped["status"].tolist() == ["pending", "pending"]
    assert remapped["action"].tolist() == ["update", "update"]
    wider = run_locally(data, email="email", properties=["first_name", "ltv"], state=state).report
    assert wider["status"].tolist() == ["pending", "pending"]


def test_a_resumed_run_sends_again_the_rows_it_sent_itself_before_it_stopped() -> None:
    data = pd.DataFrame({"email": ["a@x.io", "b@x.io", "c@x.io"], "first_name": ["A", "B", "C"]})
    sent = state_of(run_locally(data, email="email"))
    # Run 7 (the one resumed) sent a@ (put there by run 3) and c@ (new) before it stopped; b@ is run 3's.
    a, c = email_hashes(["a@x.io", "c@x.io"])
    by_run_7 = np.isin(sent.email_hash, [a, c])
    first = np.where(sent.email_hash == c, 7, 3)
    state = Snapshot(sent.email_hash, sent.row_hash, last_run=np.where(by_run_7, 7, 3), first_run=first)
    assert run_locally(data, email="email", state=state).report["status"].tolist() == ["unchanged"] * 3
    checker = RowChecker("email", {"email": ("email",), "first_name": ("first_name",)}, state=state, resumed_run=7)
    chunk = checker.check(0, 0, data, np.arange(3))
    assert chunk.status.tolist() == [CODES["pending"], CODES["unchanged"], CODES["pending"]]
    assert chunk.reason.tolist() == [None, UNCHANGED, None]
    assert chunk.pending.tolist() == [0, 2]
    # What the run does to the list, counted from before it began: c@ is its add, a@ its update.
    assert chunk.action[[0, 2]].tolist() == [ACTION_UPDATE, ACTION_ADD]


def test_duplicates_of_an_unchanged_row_are_duplicates() -> None:
    data = pd.DataFrame({"email": ["a@x.io"], "first_name": ["A"]})
    state = state_of(run_locally(data, email="email"))
    again = pd.DataFrame({"email": ["a@x.io", "A@X.IO"], "first_name": ["A", "A"]})
    report = run_locally(again, email="email", state=state).report
    assert report["status"].tolist() == ["unchanged", "duplicate"]
    assert report["reason"].tolist()[1] == "duplicate of segment 0 row 0"


# -- speed -------------------------------------------------------------------------------------------------------


def test_checking_is_fast() -> None:
    n = 200_000
    data = pd.DataFrame({"email": [f"User{i}@Example.com" for i in range(n)], "first_name": ["Ann"] * n})
    started = time.perf_counter()
    run = run_locally(data, email="email")
    assert time.perf_counter() - started < 5  # about 0.5 s here, batches included; generous for slow CI machines
    assert (run.report["status"] == "pending").sum() == n
    assert sum(len(batch) for batch in run.batches) == n
