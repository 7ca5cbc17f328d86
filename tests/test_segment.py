"""plan_export: input checks, column mapping, email/phone decisions, duplicates, the report (segment.py)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic.errors import InputError
from klaviyo_magic.export import segment as segment_module
from klaviyo_magic.export.segment import STANDARD_FIELDS, Plan, plan_export, standard_path


def frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame(columns)


def shown(emails: pd.Series) -> list:
    """The report's emails with missing ones as None (the Arrow-backed column holds them as NaN)."""
    return [None if pd.isna(email) else email for email in emails]


# -- input checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ({"email": ["a@b.io"]}, "segments must be a DataFrame or a list of DataFrames, got dict"),
        (pd.Series(["a@b.io"]), "got Series (use series.to_frame())"),
        ([], "segments is an empty list; pass at least one DataFrame"),
        ([pd.DataFrame({"email": []}), "x"], "segment 1 is a str, not a DataFrame"),
    ],
)
def test_segments_must_be_dataframes(segments: object, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_export(segments, email="email")  # type: ignore[arg-type]


def test_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        plan_export([], email="email")


def test_missing_email_column_suggests_the_same_name_in_another_case() -> None:
    with pytest.raises(InputError) as info:
        plan_export(frame(email=["a@b.io"], name=["A"]), email="Email")
    assert str(info.value) == (
        "email column 'Email' not found in segment 0 (columns: 'email', 'name'). Did you mean 'email'?"
    )


def test_missing_email_column_suggests_a_close_spelling_in_the_segment_that_lacks_it() -> None:
    good, bad = frame(email=["a@b.io"]), frame(e_mail=["a@b.io"], city=["x"])
    with pytest.raises(InputError, match=r"not found in segment 1 .*Did you mean 'e_mail'\?$"):
        plan_export([good, bad], email="email")


def test_missing_email_column_without_a_close_match_lists_the_columns() -> None:
    with pytest.raises(InputError) as info:
        plan_export(frame(zzz=[1]), email="email")
    assert "Did you mean" not in str(info.value) and "(columns: 'zzz')" in str(info.value)


def test_email_in_the_index_says_to_reset_it() -> None:
    indexed = frame(address=["a@b.io"], name=["A"]).set_index("address")
    with pytest.raises(InputError, match=r"It is the index: call \.reset_index\(\) first"):
        plan_export(indexed, email="address")


def test_duplicate_column_names_are_refused() -> None:
    doubled = pd.DataFrame([["a@b.io", 1, 2]], columns=["email", "ltv", "ltv"])
    with pytest.raises(InputError, match="segment 0 has duplicate column names 'ltv'; rename or drop them"):
        plan_export(doubled, email="email")


def test_unknown_property_column_suggests_a_close_one() -> None:
    with pytest.raises(InputError, match=r"property column 'LTV ' not found in segment 0 .*Did you mean 'ltv'\?"):
        plan_export(frame(email=["a@b.io"], ltv=[1]), email="email", properties=["LTV "])
    with pytest.raises(InputError, match=r"property column 'plann' not found .*Did you mean 'plan'\?"):
        plan_export(frame(email=["a@b.io"], plan=[1]), email="email", properties={"plann": "plan"})


def test_properties_must_be_a_list_or_dict() -> None:
    with pytest.raises(InputError, match=r"got str\. Did you mean properties=\['ltv'\]\?"):
        plan_export(frame(email=["a@b.io"], ltv=[1]), email="email", properties="ltv")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="got set"):
        plan_export(frame(email=["a@b.io"], ltv=[1]), email="email", properties={"ltv"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("location.planet", "'location.planet' is not a Klaviyo location field; those are: address1, "),
        (
            "First_Name",
            "looks like the standard field 'first_name'; write 'first_name' for the standard field",
        ),
        ("email", "maps 'x' to 'email', but the email column is 'email'; pass email='x' instead"),
        ("", "must be a field name such as 'first_name' or 'ltv', got ''"),
        (3, "must be a field name such as 'first_name' or 'ltv', got 3"),
        ("properties.", "lacks a property name, e.g. 'properties.ltv'"),
    ],
)
def test_bad_mapping_targets(target: object, message: str) -> None:
    with pytest.raises(InputError, match=message.replace(".", r"\.").replace("(", r"\(")):
        plan_export(frame(email=["a@b.io"], x=["v"]), email="email", properties={"x": target})


def test_email_named_property_column_must_be_mapped_explicitly() -> None:
    data = frame(work=["a@b.io"], email=["home@b.io"])
    with pytest.raises(InputError, match=r"would be sent as the profile's email, but the email column is 'work'"):
        plan_export(data, email="work", properties=["email"])
    plan = plan_export(data, email="work", properties={"email": "properties.home_email"})
    assert plan.field_map == {"work": ("email",), "email": ("properties", "home_email")}
    assert plan_export(data, email="work").field_map == {"work": ("email",)}  # not sent unless asked


def test_the_email_column_cannot_also_be_mapped_elsewhere() -> None:
    with pytest.raises(InputError, match="'email' is the email column and is always sent as 'email'"):
        plan_export(frame(email=["a@b.io"]), email="email", properties={"email": "contact"})
    assert plan_export(frame(email=["a@b.io"]), email="email", properties={"email": "email"}).field_map == {
        "email": ("email",)
    }


def test_two_columns_for_one_field_are_refused() -> None:
    data = frame(email=["a@b.io"], city=["Paris"], City=["Lyon"])
    with pytest.raises(
        InputError, match=r"columns 'city' and 'City' of segment 0 would both be sent as 'location\.city'"
    ):
        plan_export(data, email="email")
    with pytest.raises(InputError, match="would both be sent as 'properties.tier'"):
        plan_export(data, email="email", properties={"city": "tier", "City": "properties.tier"})


def test_too_many_rows_says_the_count_the_limit_and_the_fix() -> None:
    data = frame(email=[f"u{i}@b.io" for i in range(6)])
    with pytest.raises(InputError) as info:
        plan_export([data, data], email="email", max_profiles=10)
    assert str(info.value) == (
        "the segments have 12 rows in total, over the limit of 10 profiles per export; split the segment "
        "into smaller exports, or pass max_profiles=12 to allow it"
    )
    assert len(plan_export([data, data], email="email", max_profiles=12).report) == 12


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "10"])
def test_max_profiles_must_be_a_positive_int(limit: object) -> None:
    with pytest.raises(InputError, match="max_profiles must be a positive integer"):
        plan_export(frame(email=["a@b.io"]), email="email", max_profiles=limit)  # type: ignore[arg-type]


def test_input_is_checked_before_any_per_row_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise AssertionError("rows were examined before the input was validated")

    monkeypatch.setattr(segment_module, "decide_emails", boom)
    with pytest.raises(InputError, match="over the limit"):
        plan_export(frame(email=["a@b.io", "b@b.io"]), email="email", max_profiles=1)


# -- which columns are sent ------------------------------------------------------------------------


def test_standard_fields_cover_klaviyo_profile_attributes() -> None:
    assert STANDARD_FIELDS["first_name"] == ("first_name",)
    assert STANDARD_FIELDS["city"] == ("location", "city")
    assert set(STANDARD_FIELDS) >= {
        "email",
        "phone_number",
        "external_id",
        "locale",
        "image",
        "latitude",
        "ip",
    }
    assert standard_path("location.zip") == ("location", "zip")
    assert standard_path("location.planet") is None and standard_path("ltv") is None


def test_without_properties_only_standard_named_columns_are_sent() -> None:
    data = frame(email=["a@b.io"], First_Name=["A"], **{" city ": ["Paris"]}, ltv=[5], secret=["x"])
    plan = plan_export(data, email="email")
    assert plan.field_map == {
        "email": ("email",),
        "First_Name": ("first_name",),
        " city ": ("location", "city"),
    }


def test_without_properties_each_segment_contributes_its_standard_columns() -> None:
    plan = plan_export([frame(email=["a@b.io"], zip=["1"]), frame(email=["c@d.io"], title=["CEO"])], email="email")
    assert plan.field_map == {"email": ("email",), "zip": ("location", "zip"), "title": ("title",)}


def test_a_list_selects_columns_standard_or_custom() -> None:
    data = frame(email=["a@b.io"], Last_Name=["B"], ltv=[5], secret=["x"], city=["Paris"])
    plan = plan_export(data, email="email", properties=["email", "Last_Name", "ltv", "ltv"])
    assert plan.field_map == {"email": ("email",), "Last_Name": ("last_name",), "ltv": ("properties", "ltv")}


def test_a_dict_maps_columns_to_fields() -> None:
    data = frame(mail=["a@b.io"], fn=["A"], town=["Paris"], pc=["75001"], value=[5], tier=["gold"], zone=["x"])
    mapping = {
        "fn": "first_name",
        "town": "location.city",
        "pc": "zip",
        "value": "ltv",
        "tier": "properties.Tier",
    }
    plan = plan_export(data, email="mail", properties=mapping)
    assert plan.field_map == {
        "mail": ("email",),
        "fn": ("first_name",),
        "town": ("location", "city"),
        "pc": ("location", "zip"),
        "value": ("properties", "ltv"),
        "tier": ("properties", "Tier"),
    }


# -- decisions per row -----------------------------------------------------------------------------


def test_report_has_one_row_per_input_row_in_input_order() -> None:
    first = pd.DataFrame({"email": ["a@x.io", "b@x.io"]}, index=["cust-1", "cust-2"])
    second = pd.DataFrame({"email": ["c@x.io"]}, index=pd.Index([7]))
    empty = pd.DataFrame({"email": pd.Series([], dtype=object)})
    plan = plan_export([first, empty, second], email="email")
    report = plan.report
    assert list(report.columns) == ["segment", "index", "email", "status", "reason"]
    assert isinstance(report.index, pd.RangeIndex) and list(report.index) == [0, 1, 2]
    assert report["segment"].tolist() == [0, 0, 2] and report["segment"].dtype == np.int8
    assert report["index"].tolist() == ["cust-1", "cust-2", 7] and report["index"].dtype == object  # mixed
    assert report["reason"].tolist() == [None, None, None]
    assert report["status"].tolist() == ["pending"] * 3


def test_multiindex_labels_are_kept_as_tuples() -> None:
    data = pd.DataFrame({"email": ["a@x.io"]}, index=pd.MultiIndex.from_tuples([("eu", 1)]))
    assert plan_export(data, email="email").report["index"].tolist() == [("eu", 1)]


def test_emails_are_normalised_and_bad_ones_skipped_with_reasons() -> None:
    data = pd.DataFrame(
        {"email": ["  Ann@Example.COM ", None, np.nan, "", "   ", "bob@@x", 12345, "ann@example.com"]},
        index=list("abcdefgh"),
    )
    report = plan_export(data, email="email").report
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
    assert shown(report["email"]) == [
        "ann@example.com",
        None,
        None,
        None,
        None,
        "bob@@x",
        "12345",
        "ann@example.com",
    ]


def test_duplicates_across_segments_name_the_row_that_is_sent() -> None:
    first = pd.DataFrame({"email": ["a@x.io", "b@x.io"]}, index=["cust-1", "cust-2"])
    second = pd.DataFrame({"email": ["B@X.io ", "c@x.io", "c@x.io", "a@x.io"]}, index=["n1", "n2", "n3", "n4"])
    report = plan_export([first, second], email="email").report
    assert report["status"].tolist() == [
        "pending",
        "pending",
        "duplicate",
        "pending",
        "duplicate",
        "duplicate",
    ]
    assert report["reason"].tolist()[2:] == [
        "duplicate of segment 0 row cust-2",
        None,
        "duplicate of segment 1 row n2",
        "duplicate of segment 0 row cust-1",
    ]


def test_phone_numbers_must_be_e164() -> None:
    data = frame(
        email=["a@x.io", "b@x.io", "c@x.io", "bad", "d@x.io"],
        phone_number=["+1 (500) 555-0006", "5005550006", None, "123", 15005550006],
    )
    report = plan_export(data, email="email").report
    assert report["status"].tolist() == ["pending", "skipped", "pending", "skipped", "skipped"]
    assert report["reason"].tolist() == [
        None,
        "phone_number '5005550006' is not in E.164 format (e.g. +15005550006)",
        None,
        "malformed email 'bad'",  # the first reason wins
        "phone_number '15005550006' is not in E.164 format (e.g. +15005550006)",
    ]


def test_a_row_skipped_for_its_phone_does_not_make_a_later_row_a_duplicate() -> None:
    data = frame(email=["a@x.io", "a@x.io"], mobile=["12", "+15005550006"])
    report = plan_export(data, email="email", properties={"mobile": "phone_number"}).report
    assert report["status"].tolist() == ["skipped", "pending"]


def test_phones_are_not_checked_when_not_sent() -> None:
    data = frame(email=["a@x.io"], phone_number=["nope"])
    assert plan_export(data, email="email", properties=[]).report["status"].tolist() == ["pending"]


def test_string_and_categorical_email_columns() -> None:
    data = pd.DataFrame({"email": pd.Series(["A@x.io", None], dtype="string")})
    assert shown(plan_export(data, email="email").report["email"]) == ["a@x.io", None]
    data = pd.DataFrame({"email": pd.Categorical(["A@x.io", "A@x.io"])})
    assert plan_export(data, email="email").report["status"].tolist() == ["pending", "duplicate"]


# -- Plan ------------------------------------------------------------------------------------------


def make_plan() -> Plan:
    return plan_export(frame(email=["a@x.io", "b@x.io", "bad", "c@x.io", "a@x.io"]), email="email")


def test_counts_and_pending_positions() -> None:
    plan = make_plan()
    assert plan.counts == {"pending": 3, "sent": 0, "skipped": 1, "duplicate": 1, "failed": 0}
    assert plan.pending_positions().tolist() == [0, 1, 3]
    assert repr(plan) == "Plan(rows=5, email_column='email', pending=3, skipped=1, duplicate=1)"


def test_mark_accepts_positions_masks_and_per_row_reasons() -> None:
    plan = make_plan()
    plan.mark(np.array([0, 3]), "sent", None)
    plan.mark([1], "failed", "rejected by Klaviyo: bad")
    assert plan.report["status"].tolist() == ["sent", "failed", "skipped", "sent", "duplicate"]
    assert plan.report["reason"].tolist()[:2] == [None, "rejected by Klaviyo: bad"]
    plan.mark(np.array([True, True, False, False, False]), "failed", ["one", "two"])
    assert plan.report["reason"].tolist()[:2] == ["one", "two"]
    plan.mark([], "sent", "nothing happens")
    assert plan.counts["failed"] == 2 and plan.pending_positions().size == 0
    with pytest.raises(ValueError, match="got 1 reasons for 2 positions"):
        plan.mark([0, 1], "failed", ["only one"])


def test_reason_stays_object_so_none_stays_none() -> None:
    plan = make_plan()
    plan.mark([0], "failed", "x")
    plan.mark([0], "sent", None)
    assert plan.report["reason"][0] is None and plan.report["reason"].dtype == object


def test_planning_is_fast() -> None:
    n = 200_000
    data = pd.DataFrame({"email": [f"User{i}@Example.com" for i in range(n)], "first_name": ["Ann"] * n})
    started = time.perf_counter()
    plan = plan_export(data, email="email")
    assert time.perf_counter() - started < 5  # about 0.2 s here; generous for slow CI machines
    assert plan.counts["pending"] == n
