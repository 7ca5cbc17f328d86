"""Cell cleaning and JSON encoding (klaviyo_magic.export.values)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic.export.values import (
    INFINITE,
    MISSING,
    NOT_A_NUMBER,
    assemble_profiles,
    byte_sizes,
    clean_value,
    column_fragments,
    dumps,
    fragments,
    iso_datetimes,
    json_texts,
    unsendable,
    why_unsendable,
)


def reference(value: object) -> str | None:
    """What a column's encoding must equal: json.dumps of the cleaned value, or None when omitted."""
    cleaned = clean_value(value)
    return None if cleaned is MISSING else json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "value",
    [None, float("nan"), np.nan, np.float32("nan"), pd.NA, pd.NaT, np.datetime64("NaT"), Decimal("NaN")],
    ids=repr,
)
def test_missing_values_are_omitted(value: object) -> None:
    assert clean_value(value) is MISSING


@pytest.mark.parametrize("value", [float("inf"), -np.inf, np.float32("inf"), Decimal("Infinity")], ids=repr)
def test_infinities_are_omitted(value: object) -> None:
    assert clean_value(value) is MISSING


@pytest.mark.parametrize(
    ("value", "expected", "kind"),
    [
        (np.int64(7), 7, int),
        (np.uint8(255), 255, int),
        (np.float64(1.5), 1.5, float),
        (np.float32(0.5), 0.5, float),
        (np.bool_(True), True, bool),
        (True, True, bool),
        (Decimal("12"), 12, int),
        (Decimal("12.000"), 12, int),
        (Decimal("12.5"), 12.5, float),
        (np.str_("hi"), "hi", str),
        ("Chloé", "Chloé", str),
        (b"caf\xc3\xa9", "café", str),
    ],
    ids=repr,
)
def test_scalars_become_plain_python(value: object, expected: object, kind: type) -> None:
    cleaned = clean_value(value)
    assert cleaned == expected
    assert type(cleaned) is kind


def test_dates_and_times_become_iso_8601() -> None:
    assert clean_value(dt.date(2024, 2, 29)) == "2024-02-29"
    assert clean_value(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert clean_value(pd.Timestamp("2024-01-02 03:04:05.25")) == "2024-01-02T03:04:05.250000"
    aware = pd.Timestamp("2024-07-01 12:00", tz="America/New_York")
    assert clean_value(aware) == "2024-07-01T12:00:00-04:00"
    assert clean_value(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) == "2024-01-01T00:00:00+00:00"
    assert clean_value(np.datetime64("2024-01-02T03:04:05")) == "2024-01-02T03:04:05"
    assert clean_value(dt.time(9, 30)) == "09:30:00"


def test_containers_are_cleaned_recursively() -> None:
    value = {
        "tags": ("a", np.str_("b")),
        "scores": np.array([1, 2]),
        "nested": [[np.int64(1), np.nan], {"x": None, "y": Decimal("2.5"), 3: pd.NaT}],
        "when": pd.Timestamp("2024-01-01"),
        "gone": None,
        "set": {3, 1, 2},
    }
    assert clean_value(value) == {
        "tags": ["a", "b"],
        "scores": [1, 2],
        "nested": [[1, None], {"y": 2.5}],  # in a list a missing value keeps its place as null
        "when": "2024-01-01T00:00:00",
        "set": [1, 2, 3],
    }


def test_anything_else_is_sent_as_text() -> None:
    ident = uuid.UUID(int=5)
    assert clean_value(ident) == str(ident)
    assert clean_value(pd.Period("2024-01", freq="M")) == "2024-01"
    assert clean_value(complex(1, 2)) == "(1+2j)"


COLUMNS = {
    "int64": pd.Series([1, -2, 3_000_000_000]),
    "Int64 with NA": pd.Series([1, None, 3], dtype="Int64"),
    "float with NaN and inf": pd.Series([1.5, np.nan, np.inf, -0.0, 1e16, 1e-7, 2.0]),
    "float32": pd.Series([0.5, np.nan], dtype="float32"),
    "bool": pd.Series([True, False]),
    "boolean with NA": pd.Series([True, None, False], dtype="boolean"),
    "datetime naive": pd.Series(
        pd.to_datetime(["2024-01-02 03:04:05", None, "1969-12-31 23:59:59.5"], format="ISO8601")
    ),
    "datetime aware": pd.Series(
        pd.to_datetime(["2024-01-15 10:00", "2024-07-15 10:00", None], format="ISO8601").tz_localize("Europe/Paris")
    ),
    "datetime nanoseconds": pd.Series(pd.to_datetime(["2024-01-01 00:00:00.000000001"])),
    "categorical": pd.Series(pd.Categorical(["gold", None, "silver", "gold"])),
    "categorical ints": pd.Series(pd.Categorical([1, 2, None])),
    "str dtype": pd.Series(["a", None, 'quote " and \\ and \n', "é✓"], dtype="string"),
    "object strings": pd.Series(["a", None, "b"], dtype=object),
    "object mixed": pd.Series(
        [1, "x", 2.5, None, Decimal("3"), [1, np.nan], {"k": np.int8(1)}, pd.Timestamp("2024-01-01")],
        dtype=object,
    ),
    "timedelta": pd.Series([pd.Timedelta("1D"), pd.NaT]),
    "period": pd.Series(pd.period_range("2024-01", periods=2, freq="M")),
}


try:
    import pyarrow as pa
except ImportError:  # pragma: no cover - pyarrow comes with the test extras
    pa = None
if pa is not None:
    COLUMNS |= {
        "arrow int": pd.Series([1, None], dtype="int64[pyarrow]"),
        "arrow string": pd.Series(["a", None], dtype="string[pyarrow]"),
        "arrow timestamp tz": pd.Series(
            [pd.Timestamp("2024-01-01 01:02:03", tz="UTC"), None],
            dtype=pd.ArrowDtype(pa.timestamp("us", tz="UTC")),
        ),
        "arrow date": pd.Series([dt.date(2024, 1, 1), None], dtype=pd.ArrowDtype(pa.date32())),
        "arrow list": pd.Series([[1, 2], None], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
    }


@pytest.mark.parametrize("name", list(COLUMNS))
def test_vectorised_encoding_matches_json_dumps_of_each_cell(name: str) -> None:
    column = COLUMNS[name]
    assert json_texts(column) == [reference(v) for v in column.astype(object)]


def test_aware_timestamps_keep_their_own_offset_across_daylight_saving() -> None:
    stamps = pd.Series(pd.to_datetime(["2024-03-31 00:30", "2024-03-31 03:30"]).tz_localize("Europe/Paris"))
    assert iso_datetimes(stamps) == ["2024-03-31T00:30:00+01:00", "2024-03-31T03:30:00+02:00"]
    odd = pd.Series([pd.Timestamp("1960-06-01 12:00", tz="Africa/Monrovia")])  # historical -00:44:30
    assert iso_datetimes(odd) == [odd[0].isoformat()]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_iso_datetimes_match_isoformat_for_every_resolution(unit: str) -> None:
    rng = np.random.default_rng(1)
    stamps = pd.Series(rng.integers(-(10**9), 2 * 10**9, 200) * 10**9 + rng.integers(0, 10**9, 200))
    stamps = pd.to_datetime(stamps).astype(f"datetime64[{unit}]")
    assert iso_datetimes(stamps) == [t.isoformat() for t in stamps]


def test_string_fields_omit_blanks_and_drop_float_artifacts() -> None:
    names = pd.Series(["Ann", "", "   ", None, " Bo "], dtype=object)
    assert json_texts(names, "string") == ['"Ann"', None, None, None, '" Bo "']
    zips = pd.Series([10017.0, np.nan, 2.5])  # a zip column read as float because of a missing value
    assert json_texts(zips, "string") == ['"10017"', None, '"2.5"']
    assert json_texts(pd.Series([123, 456]), "string") == ['"123"', '"456"']
    assert json_texts(pd.Series([1, "crm-1", 2.0, None, ""], dtype=object), "string") == [
        '"1"',
        '"crm-1"',
        '"2"',
        None,
        None,
    ]


def test_float_fields_parse_text_and_omit_what_is_not_a_number() -> None:
    coords = pd.Series(["40.7128", "north", None, 3, Decimal("-74.006")], dtype=object)
    assert json_texts(coords, "float") == ["40.7128", None, None, "3.0", "-74.006"]
    assert json_texts(pd.Series([1, 2]), "float") == ["1.0", "2.0"]


def test_fragments_prefix_the_key_and_report_gaps() -> None:
    assert fragments(pd.Series([1, None], dtype="Int64"), "ltv") == ['"ltv":1', None]
    texts, sparse = column_fragments(pd.Series(["x"]), 'we"ird')
    assert texts == ['"we\\"ird":"x"'] and not sparse
    assert column_fragments(pd.Series([1.0, np.nan]), "a")[1]


def test_assembled_profiles_equal_json_dumps_of_the_profile_dict() -> None:
    email = (['"email":"a@x.io"', '"email":"b@x.io"', '"email":"c@x.io"'], False)
    first = (['"first_name":"Ann"', None, '"first_name":"Cé"'], True)
    city = ([None, '"city":"Paris"', None], True)
    props = (['"ltv":1.5', '"ltv":2.0', None], True)
    profiles = assemble_profiles([email, first], {"location": [city], "properties": [props]})
    expected = [
        {"email": "a@x.io", "first_name": "Ann", "properties": {"ltv": 1.5}},
        {"email": "b@x.io", "location": {"city": "Paris"}, "properties": {"ltv": 2.0}},
        {"email": "c@x.io", "first_name": "Cé"},
    ]
    assert profiles == [dumps({"type": "profile", "attributes": attrs}) for attrs in expected]
    assert list(byte_sizes(profiles)) == [len(p.encode()) for p in profiles]


def test_dense_columns_take_the_fast_join() -> None:
    email = (['"email":"a@x.io"'], False)
    props = [(['"a":1'], False), (['"b":2'], False)]
    assert assemble_profiles([email], {"location": [], "properties": props}) == [
        '{"type":"profile","attributes":{"email":"a@x.io","properties":{"a":1,"b":2}}}'
    ]


def test_values_that_cannot_be_sent_are_found_inside_dicts_and_sets_and_in_locations() -> None:
    inside = pd.Series([{"a": np.inf}, {"a": 1.0}, {1.0, float("-inf")}, [1, 2], "x"], dtype=object)
    assert unsendable(inside).tolist() == [True, False, True, False, False]
    locations = pd.Series(["abc", 1.5, None, "2.5", np.inf], dtype=object)
    assert unsendable(locations, "float").tolist() == [True, False, False, False, True]  # "2.5" reads as a number
    assert unsendable(pd.Series([1.5, np.nan]), "float") is None
    booleans_and_blanks = pd.Series([True, "", "  ", None, "1e5"], dtype=object)  # a blank is missing, not bad
    assert unsendable(booleans_and_blanks, "float").tolist() == [True, False, False, False, False]
    assert json_texts(booleans_and_blanks, "float") == [None, None, None, None, "100000.0"]  # True is not 1.0
    assert unsendable(pd.Series([True, False]), "float").tolist() == [True, True]
    assert [why_unsendable(v) for v in ("abc", {"a": np.inf})] == [NOT_A_NUMBER, INFINITE]


def test_each_value_left_out_is_named_in_the_report_and_counted(klaviyo_home, sandbox) -> None:
    """Over HTTP: what cannot be sent is left out, the row is still sent, and its reason names each value."""
    from klaviyo_magic import export_segment
    from klaviyo_magic.connections import Connection

    conn = Connection.from_key("pk_VALUES_TEST_0123456789abcdef", base_url=sandbox.url, name="values")
    list_id = sandbox.create_list("Values")
    data = pd.DataFrame({"email": ["a@x.io", "b@x.io"], "latitude": ["abc", 40.7], "longitude": [-74.0, -73.9],
                         "scores": [{"q1": np.inf, "q2": 2.0}, {"q1": 1.0}]})  # fmt: skip
    options = {"email": "email", "list_id": list_id, "connection": conn, "properties": ["latitude", "longitude",
                                                                                        "scores"]}  # fmt: skip
    preview = export_segment(data, dry_run=True, **options)
    result = export_segment(data, **options)
    for shown in (preview, result):
        assert shown.partially_sent == 1 and shown.to_dict()["partially_sent"] == 1
        assert shown.report["reason"].tolist() == [
            f"sent without latitude='abc', scores={{'q1': inf, 'q2': 2.0}}: {NOT_A_NUMBER}; {INFINITE}",
            None,
        ]
    assert "latitude" not in preview.sample.columns or preview.sample["location.latitude"].isna().tolist()[0]
    sandbox.wait_for_jobs()
    first = sandbox.find_profile("a@x.io")
    # Left out whole, as the reason says: {"q2": 2.0} would replace the profile's scores with what the row never had
    assert not first.get("properties") and "latitude" not in (first.get("location") or {})
    assert first["location"]["longitude"] == -74.0
