"""Hashes of emails and of what a row sends (hashing.py), and columns of lists, dicts and sets over HTTP against
the sandbox.

The old engine fingerprinted every column of the input (``journal.fingerprint``), and a column of Python lists
crashed every real export. Now only what the export sends is hashed, per row: a row hash says whether a row sends
the same as when the sync state recorded it, and a batch's digest (``payloads.Batch.digest``, built from these)
says whether a resumed run's batch is one Klaviyo already accepted. So the index, the layout of the data and the
columns not sent no longer change anything, where they changed the old fingerprint; any change to what is sent
still does.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.connections import Connection
from klaviyo_magic.export import hashing
from klaviyo_magic.export.hashing import column_hashes, email_hashes, row_hashes
from klaviyo_magic.export.stream import run_locally

KEY = "pk_hashing_tests_0123456789abcdef"


class Odd:
    """A value of a type the export knows nothing about: sent as str(value)."""

    def __str__(self) -> str:
        return "odd one"


def rows(frame: pd.DataFrame, **field_map: tuple[str, ...]) -> list[int]:
    return row_hashes(frame, {"email": ("email",), **field_map}).tolist()


def in_chunks(values: pd.Series, *cuts: int) -> list[int]:
    """The column's hashes computed chunk by chunk, cut at ``cuts``."""
    bounds = [0, *cuts, len(values)]
    return [h for a, b in zip(bounds, bounds[1:], strict=False) for h in column_hashes(values.iloc[a:b]).tolist()]


# -- emails and the hash check -------------------------------------------------------------------------------------


def test_email_hashes_are_int64_equal_for_equal_emails_and_distinct_otherwise() -> None:
    hashes = email_hashes(["a@x.io", "b@x.io", "a@x.io", "élodie@exemple.fr"])
    assert hashes.dtype == np.int64
    assert hashes[0] == hashes[2] and len(set(hashes.tolist())) == 3
    assert email_hashes(np.array(["a@x.io"], dtype=object)).tolist() == hashes[:1].tolist()


def test_the_hash_check_is_the_same_in_another_process() -> None:
    """The sync state compares hashes written by one process with hashes made by another (and stores check() to
    notice when they would differ); Python's own str hash changes from process to process, ours must not."""
    check = hashing.check()
    assert len(check) == 3 and len(set(check)) == 3 and all(isinstance(h, int) for h in check)
    assert check == email_hashes(["ada@example.com", "bob.okafor+news@example.co.uk", "élodie@exemple.fr"]).tolist()
    code = "from klaviyo_magic.export import hashing; print(hashing.check())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == str(check)
        env["PYTHONHASHSEED"] = "54321"


# -- a value hashes the same whatever chunk it lands in ------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["a", None, "ccc", "", "é"] * 3, dtype="str"),
        pd.Series(["a", None, "ccc", "", "é"] * 3, dtype=object),
        pd.Series(np.arange(15) * 1.5),
        pd.Series(np.arange(15)),
        pd.Series([True, False, None] * 5, dtype="boolean"),
        pd.Series(pd.date_range("2024-01-01", periods=15, freq="h", tz="Europe/Paris")),
        pd.Series(pd.Categorical(["gold", "silver", None] * 5)),
        pd.Series([["a", 1], {"k": [1, 2]}, {3, 1, 2}, None, "text", 7, 1.5, Odd(), b"raw", ("t",)] + [[]] * 5),
    ],
    ids=["str", "object-str", "float", "int", "boolean", "datetime-tz", "category", "mixed-objects"],
)
def test_a_value_hashes_the_same_whatever_chunk_it_lands_in(values: pd.Series) -> None:
    whole = column_hashes(values).tolist()
    assert in_chunks(values, 1, 2, 7) == whole
    assert in_chunks(values, 5, 6, 14) == whole
    assert in_chunks(values, 3, 4, 5) == whole  # chunks of one missing value, one str, one number...
    assert column_hashes(values.iloc[3:9]).tolist() == whole[3:9]  # a slice: Arrow data at an offset


def test_the_same_values_in_another_layout_hash_the_same() -> None:
    texts = ["a@x.io", None, "ccc@y.io", ""]
    plain = column_hashes(pd.Series(texts, dtype="str")).tolist()
    chunked = pd.arrays.ArrowStringArray(pa.chunked_array([texts[:2], texts[2:]]))
    assert column_hashes(pd.Series(chunked)).tolist() == plain
    padded = pd.Series(["zzz", *texts], dtype="str").iloc[1:]
    assert column_hashes(padded).tolist() == plain
    assert column_hashes(pd.Series(texts, dtype=object)).tolist() == plain  # was another fingerprint; same values
    assert column_hashes(pd.Series(texts, dtype="string")).tolist() == plain


@pytest.mark.parametrize("distinct", [3, 40_000], ids=["repeating (each distinct value hashed once)", "distinct"])
def test_arrow_text_hashes_as_each_value_would(distinct: int) -> None:
    rng = np.random.default_rng(5)
    words = np.array([f"w{i} é" for i in range(distinct)], dtype=object)
    values = words[rng.integers(0, distinct, 50_000)]
    values[rng.random(50_000) < 0.1] = None  # gaps: the missing hash
    arrow = pd.Series(values, dtype="str")
    one_by_one = hashing.text_hashes(values.copy())
    assert column_hashes(arrow).tolist() == one_by_one.tolist()
    assert column_hashes(arrow.iloc[7:9]).tolist() == one_by_one[7:9].tolist()
    # pandas' own text storage, what a plain install without pyarrow gives: the same hashes, no pyarrow needed
    python_text = pd.Series(values, dtype=pd.StringDtype("python", na_value=np.nan))
    assert column_hashes(python_text).tolist() == one_by_one.tolist()


def test_a_value_hashes_the_same_whatever_dtype_its_chunk_gave_its_column() -> None:
    """From Arrow or Spark an integer column with a gap arrives as floats in one chunk and as integers in the next,
    booleans with a gap as objects, an all-empty chunk as objects: the same row must hash the same in each."""
    missing = column_hashes(pd.Series([None], dtype=object))[0]
    assert column_hashes(pd.Series([3, 4])).tolist() == column_hashes(pd.Series([3.0, 4.0])).tolist()
    floats = column_hashes(pd.Series([3.0, np.nan])).tolist()
    assert floats == column_hashes(pd.Series([3, None], dtype="Int64")).tolist() and floats[1] == missing
    flags = column_hashes(pd.Series([True, False])).tolist()
    assert flags == column_hashes(pd.Series([True, False], dtype=object)).tolist()
    gaps = column_hashes(pd.Series([True, None], dtype=object)).tolist()
    assert gaps == column_hashes(pd.Series([True, None], dtype="boolean")).tolist() == [flags[0], missing]
    assert column_hashes(pd.Series(pd.to_datetime(["2024-01-01", None])))[1] == missing
    # ...while values that differ hash differently
    assert len(set(column_hashes(pd.Series([3.0, 3.5, -3.0, np.inf, -np.inf, 0.0, np.nan])).tolist())) == 7
    assert column_hashes(pd.Series([1]))[0] != column_hashes(pd.Series([True]))[0]
    assert column_hashes(pd.Series([1]))[0] != column_hashes(pd.Series(["1"]))[0]


def test_arrow_batches_with_and_without_gaps_give_the_rows_the_same_hashes() -> None:
    first = pa.record_batch({"email": ["a@x.io", "b@x.io"], "n": [3, None], "vip": [True, None]})
    second = pa.record_batch({"email": ["c@x.io", "d@x.io"], "n": [3, 4], "vip": [True, False]})
    assert str(first.to_pandas()["n"].dtype) == "float64" and str(second.to_pandas()["n"].dtype) == "int64"
    reader = pa.RecordBatchReader.from_batches(first.schema, [first, second])
    streamed = run_locally(reader, email="email", properties=["n", "vip"])
    whole = run_locally(pa.Table.from_batches([first, second]), email="email", properties=["n", "vip"])
    (a,), (b,) = streamed.batches, whole.batches
    assert a.row_hash.tolist() == b.row_hash.tolist()
    assert a.row_hash[0] == a.row_hash[2]  # a@ and c@ send the same n and vip
    assert a.digest == b.digest


# -- lists, dicts, sets and mixed objects hash without crashing ----------------------------------------------------


def test_lists_dicts_sets_and_mixed_objects_hash_without_crashing() -> None:
    values = pd.Series(
        [
            ["a", "b"],
            {"k": [1, 2], "n": {"deep": {3, 1}}},
            {3, 1, 2},
            frozenset(["b", "a"]),
            ("x", 1),
            np.array([1, 2]),
            None,
            np.nan,
            1.5,
            "text",
            Odd(),
            b"raw",
            [float("inf")],
            pd.Timestamp("2024-01-01"),
            [],
            {},
        ],
        dtype=object,
    )
    hashes = column_hashes(values)
    assert hashes.dtype == np.uint64 and len(hashes) == len(values)
    # equal when the JSON sent is equal: a set is sent sorted, a tuple or array as a list, None and NaN not at all
    assert hashes[3] == column_hashes(pd.Series([["a", "b"]]))[0] == hashes[0]
    assert hashes[2] == column_hashes(pd.Series([[1, 2, 3]]))[0]
    assert hashes[5] == column_hashes(pd.Series([[1, 2]]))[0]
    assert hashes[6] == hashes[7] == hashes[12]  # a list with an infinity inside is left out, as a missing value
    assert len({hashes[i] for i in (0, 1, 2, 4, 6, 8, 9, 10, 11, 13, 14, 15)}) == 12
    assert column_hashes(pd.Series([["a", "b"]]))[0] != column_hashes(pd.Series([["a", "c"]]))[0]
    assert column_hashes(pd.Series([{"k": 1}]))[0] != column_hashes(pd.Series([{"k": 2}]))[0]


def test_only_what_is_sent_is_hashed() -> None:
    frame = pd.DataFrame(
        {"email": ["a@x.io", "b@x.io"], "first_name": ["A", "B"], "tags": [["x"], {"y": {1}}], "n": [1, 2]},
        index=[10, 11],
    )
    sent = rows(frame, first_name=("first_name",))
    assert sent[0] != sent[1]
    assert rows(frame.assign(tags=[["z"], None], n=[5, 6]), first_name=("first_name",)) == sent  # not sent
    assert rows(frame.set_axis([20, 21]), first_name=("first_name",)) == sent  # the index is not sent
    assert rows(frame.assign(email=["c@x.io", "d@x.io"]), first_name=("first_name",)) == sent  # emails: their own
    renamed = frame.rename(columns={"first_name": "fn"})
    assert rows(renamed, fn=("first_name",)) == sent  # the same field gets the same values
    assert rows(frame, first_name=("last_name",)) != sent  # another field: another row
    one_changed = rows(frame.assign(first_name=["A", "b"]), first_name=("first_name",))
    assert one_changed[0] == sent[0] and one_changed[1] != sent[1]
    both = rows(frame, first_name=("first_name",), tags=("properties", "tags"))
    assert both != sent and both[0] != both[1]


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(note=pd.Series(["x", "", "ccc", ""], dtype="str", index=f.index)),  # missing -> ""
        lambda f: f.assign(note=pd.Series(["x", None, "cc", "c"], dtype="str", index=f.index)),  # a boundary moves
        lambda f: f.assign(note=pd.Series(["x", None, "ccc", "!"], dtype="str", index=f.index)),
        lambda f: f.assign(n=[1, 2, 3, 5]),
        lambda f: f.assign(n=[1, 2, 3, 4.5]),
        lambda f: f.assign(tags=[["a"], ["b"], [], ["c", "d"]]),
    ],
)
def test_any_change_to_what_is_sent_gives_another_hash_to_that_row_only(change) -> None:
    frame = pd.DataFrame(
        {
            "email": ["a@x.io", "b@x.io", "c@x.io", "d@x.io"],
            "note": pd.Series(["x", None, "ccc", ""], dtype="str"),
            "n": [1, 2, 3, 4],
            "tags": [["a"], ["b"], [], ["c"]],
        }
    )
    sent = {"note": ("properties", "note"), "n": ("properties", "n"), "tags": ("properties", "tags")}
    before, after = rows(frame, **sent), rows(change(frame), **sent)
    differ = [i for i in range(4) if before[i] != after[i]]
    assert differ and differ == [i for i in range(4) if not change(frame).iloc[i].equals(frame.iloc[i])]


# -- over HTTP: a column of lists no longer breaks a real export ---------------------------------------------------


@pytest.fixture
def conn(sandbox) -> Connection:
    return Connection.from_key(KEY, base_url=sandbox.url, name="sandbox")


def customers_with_lists(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "email": [f"person{i}@example.com" for i in range(n)],
            "first_name": [f"P{i}" for i in range(n)],
            "tags": [["vip", f"t{i % 3}"] if i % 4 else [] for i in range(n)],
            "prefs": [{"sms": bool(i % 2), "topics": ["a", "b"][: i % 3]} for i in range(n)],
            "seen": [{i % 5, 1} for i in range(n)],
            "misc": [[[i], {"k": i}, "text", i, Odd(), None][i % 6] for i in range(n)],
        }
    )


def test_a_column_of_lists_not_exported_works_in_a_real_run_and_a_dry_run(klaviyo_home, sandbox, conn) -> None:
    list_id = sandbox.create_list("With lists")
    data = customers_with_lists(30)
    options = {"email": "email", "list_id": list_id, "connection": conn, "progress": False}
    preview = export_segment(data, dry_run=True, **options)
    assert preview.would_send == 30 and preview.failed == 0
    assert preview.sample.columns.tolist() == ["email", "first_name"]  # the lists are not sent
    result = export_segment(data, **options)
    assert (result.sent, result.failed, result.not_sent) == (30, 0, 0) and result.ok
    sandbox.wait_for_jobs(timeout=30)
    assert sandbox.member_emails(list_id) == set(data["email"])
    assert sandbox.find_profile("person5@example.com")["properties"] == {}
    again = export_segment(data.assign(tags=[["changed"]] * 30), **options)  # not sent: nothing changed
    assert (again.sent, again.unchanged) == (0, 30)


def test_list_and_dict_columns_chosen_as_properties_are_sent_as_json(klaviyo_home, sandbox, conn) -> None:
    list_id = sandbox.create_list("Lists as properties")
    data = customers_with_lists(30)
    options = {
        "email": "email",
        "list_id": list_id,
        "connection": conn,
        "properties": ["first_name", "tags", "prefs", "seen", "misc"],
        "progress": False,
    }
    preview = export_segment(data, dry_run=True, **options)
    assert preview.would_send == 30
    assert preview.sample["properties.tags"].tolist() == [[], ["vip", "t1"], ["vip", "t2"], ["vip", "t0"], []]
    result = export_segment(data, **options)
    assert (result.sent, result.failed) == (30, 0) and result.ok
    sandbox.wait_for_jobs(timeout=30)
    properties = {i: sandbox.find_profile(f"person{i}@example.com")["properties"] for i in (0, 1, 2, 4, 5)}
    assert properties[1] == {
        "tags": ["vip", "t1"],  # a JSON array
        "prefs": {"sms": True, "topics": ["a"]},  # a JSON object
        "seen": [1],  # a set, as a sorted array
        "misc": {"k": 1},
    }
    assert properties[0] == {"tags": [], "prefs": {"sms": False, "topics": []}, "seen": [0, 1], "misc": [0]}
    assert properties[2]["misc"] == "text" and properties[4]["misc"] == "odd one"
    assert "misc" not in properties[5]  # None: not sent
    again = export_segment(data, **options)
    assert (again.sent, again.unchanged) == (0, 30)  # lists hash the same from one run to the next
    changed = data.copy()
    changed.at[7, "tags"] = ["vip", "t1", "new"]
    third = export_segment(changed, **options)
    assert (third.sent, third.updated, third.unchanged) == (1, 1, 29)
    assert third.updated_rows["email"].tolist() == ["person7@example.com"]
    sandbox.wait_for_jobs(timeout=30)
    assert sandbox.find_profile("person7@example.com")["properties"]["tags"] == ["vip", "t1", "new"]
