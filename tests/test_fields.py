"""Input checks and which column goes to which Klaviyo field (fields.py, with sources.open_sources for the kind of
each input): every mistake is one InputError, before any row is read, that says where and how to fix it."""

from __future__ import annotations

import pandas as pd
import pytest

from klaviyo_magic import export_segment
from klaviyo_magic.errors import InputError
from klaviyo_magic.export import checks as checks_module
from klaviyo_magic.export import sources
from klaviyo_magic.export.fields import STANDARD_FIELDS, check_columns, resolve_fields, standard_path
from klaviyo_magic.export.sources import open_sources
from klaviyo_magic.export.stream import run_locally


def frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame(columns)


def field_map(segments: object, email: str, properties: object = None) -> dict:
    """The column -> field map the export would use, after the same checks in the same order."""
    sources = open_sources(segments)
    check_columns(sources, email)
    return resolve_fields(sources, email, properties)


def escaped(message: str) -> str:
    return message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")


# -- input checks ----------------------------------------------------------------------------------------------

# The list of what the export reads lives with the readers (sources.py); here it must end the message.
ACCEPTED = f"the export takes {sources.ACCEPTED}"


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ({"email": ["a@b.io"]}, f"segment 0 is a dict; {ACCEPTED}"),
        (pd.Series(["a@b.io"]), "segment 0 is a Series, not a DataFrame (use series.to_frame())"),
        ([], "segments is an empty list; pass at least one DataFrame"),
        ([pd.DataFrame({"email": []}), 3.5], f"segment 1 is a float; {ACCEPTED}"),
        # A string is a path (or glob) of Parquet/CSV files now, so a stray string names the missing file.
        ([pd.DataFrame({"email": []}), "x"], "input file x does not exist (or is not a file)"),
    ],
)
def test_segments_must_be_inputs_the_export_reads(segments: object, message: str) -> None:
    with pytest.raises(InputError) as info:
        run_locally(segments, email="email")
    assert str(info.value) == message
    assert sources.ACCEPTED.startswith("a pandas or Polars DataFrame, a Polars LazyFrame, a PyArrow Table")


def test_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="segments is an empty list"):
        run_locally([], email="email")


def test_missing_email_column_suggests_the_same_name_in_another_case() -> None:
    with pytest.raises(InputError) as info:
        field_map(frame(email=["a@b.io"], name=["A"]), email="Email")
    assert str(info.value) == (
        "email column 'Email' not found in segment 0 (columns: 'email', 'name'). Did you mean 'email'?"
    )


def test_missing_email_column_suggests_a_close_spelling_in_the_segment_that_lacks_it() -> None:
    good, bad = frame(email=["a@b.io"]), frame(e_mail=["a@b.io"], city=["x"])
    with pytest.raises(InputError) as info:
        field_map([good, bad], email="email")
    assert str(info.value) == (
        "email column 'email' not found in segment 1 (columns: 'e_mail', 'city'). Did you mean 'e_mail'?"
    )


def test_missing_email_column_without_a_close_match_lists_the_columns() -> None:
    with pytest.raises(InputError) as info:
        field_map(frame(zzz=[1]), email="email")
    assert str(info.value) == "email column 'email' not found in segment 0 (columns: 'zzz')."


def test_a_wide_segment_lists_twenty_columns_and_counts_the_rest() -> None:
    wide = pd.DataFrame({f"c{i}": [1] for i in range(25)})
    with pytest.raises(InputError) as info:
        field_map(wide, email="email")
    assert "'c19', ... (5 more))." in str(info.value) and "'c20'" not in str(info.value)


def test_email_in_the_index_says_to_reset_it() -> None:
    indexed = frame(address=["a@b.io"], name=["A"]).set_index("address")
    with pytest.raises(InputError) as info:
        field_map(indexed, email="address")
    assert str(info.value) == (
        "email column 'address' not found in segment 0 (columns: 'name'). It is the index: call .reset_index() first."
    )


def test_duplicate_column_names_are_refused() -> None:
    doubled = pd.DataFrame([["a@b.io", 1, 2]], columns=["email", "ltv", "ltv"])
    with pytest.raises(InputError) as info:
        field_map(doubled, email="email")
    assert str(info.value) == (
        "segment 0 has duplicate column names 'ltv'; rename or drop them (e.g. df.loc[:, ~df.columns.duplicated()]) "
        "before exporting"
    )


def test_unknown_property_column_suggests_a_close_one() -> None:
    with pytest.raises(InputError, match=r"property column 'LTV ' not found in segment 0 .*Did you mean 'ltv'\?$"):
        field_map(frame(email=["a@b.io"], ltv=[1]), email="email", properties=["LTV "])
    with pytest.raises(InputError, match=r"property column 'plann' not found .*Did you mean 'plan'\?$"):
        field_map(frame(email=["a@b.io"], plan=[1]), email="email", properties={"plann": "plan"})


def test_an_unhashable_property_name_is_not_found_rather_than_a_crash() -> None:
    with pytest.raises(InputError, match=r"property column \['ltv'\] not found in segment 0"):
        field_map(frame(email=["a@b.io"], ltv=[1]), email="email", properties=[["ltv"]])


def test_properties_must_be_a_list_or_dict() -> None:
    with pytest.raises(InputError) as info:
        field_map(frame(email=["a@b.io"], ltv=[1]), email="email", properties="ltv")
    assert str(info.value) == (
        "properties must be None, a list of column names or a dict {column: field}, got str. "
        "Did you mean properties=['ltv']?"
    )
    with pytest.raises(InputError, match=r"got set\.$"):
        field_map(frame(email=["a@b.io"], ltv=[1]), email="email", properties={"ltv"})


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "location.planet",
            "properties['x'] = 'location.planet' is not a Klaviyo location field; those are: address1, ",
        ),
        (
            "First_Name",
            "properties['x'] = 'First_Name' looks like the standard field 'first_name'; write 'first_name' for the "
            "standard field, or 'properties.First_Name' for a custom property",
        ),
        (
            "email",
            "properties maps 'x' to 'email', but the email column is 'email'; pass email='x' instead, or map it to a "
            "custom property such as 'properties.email'",
        ),
        ("", "properties['x'] must be a field name such as 'first_name' or 'ltv', got ''"),
        (3, "properties['x'] must be a field name such as 'first_name' or 'ltv', got 3"),
        ("properties.", "properties['x'] = 'properties.' lacks a property name, e.g. 'properties.ltv'"),
    ],
)
def test_bad_mapping_targets(target: object, message: str) -> None:
    with pytest.raises(InputError, match="^" + escaped(message)):
        field_map(frame(email=["a@b.io"], x=["v"]), email="email", properties={"x": target})


def test_email_named_property_column_must_be_mapped_explicitly() -> None:
    data = frame(work=["a@b.io"], email=["home@b.io"])
    with pytest.raises(InputError, match=r"would be sent as the profile's email, but the email column is 'work'"):
        field_map(data, email="work", properties=["email"])
    assert field_map(data, email="work", properties={"email": "properties.home_email"}) == {
        "work": ("email",),
        "email": ("properties", "home_email"),
    }
    assert field_map(data, email="work") == {"work": ("email",)}  # not sent unless asked


def test_the_email_column_cannot_also_be_mapped_elsewhere() -> None:
    with pytest.raises(InputError) as info:
        field_map(frame(email=["a@b.io"]), email="email", properties={"email": "contact"})
    assert str(info.value) == "'email' is the email column and is always sent as 'email'; it cannot also be mapped"
    assert field_map(frame(email=["a@b.io"]), email="email", properties={"email": "email"}) == {"email": ("email",)}


def test_two_columns_for_one_field_are_refused() -> None:
    data = frame(email=["a@b.io"], city=["Paris"], City=["Lyon"])
    with pytest.raises(InputError) as info:
        field_map(data, email="email")
    assert str(info.value) == (
        "columns 'city' and 'City' of segment 0 would both be sent as 'location.city'; drop or rename one, or "
        "choose the columns with properties=..."
    )
    with pytest.raises(InputError, match="would both be sent as 'properties.tier'"):
        field_map(data, email="email", properties={"city": "tier", "City": "properties.tier"})


def test_too_many_rows_says_the_count_the_limit_and_the_fix_for_every_shell() -> None:
    data = frame(email=[f"u{i}@b.io" for i in range(6)])
    with pytest.raises(InputError) as info:
        run_locally([data, data], email="email", max_profiles=10)
    assert str(info.value) == (
        "the segments have 12 rows in total, over the limit of 10 profiles per export. Split the segment into "
        "smaller exports, or raise the limit: max_profiles=12 in Python, --max-profiles 12 in %klaviyo_export and "
        "klaviyo-magic export"
    )
    assert len(run_locally([data, data], email="email", max_profiles=12).report) == 12


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "10"])
def test_max_profiles_must_be_a_positive_int(limit: object) -> None:
    with pytest.raises(InputError, match=f"^max_profiles must be a positive integer, got {escaped(repr(limit))}$"):
        run_locally(frame(email=["a@b.io"]), email="email", max_profiles=limit)  # type: ignore[arg-type]


def test_input_is_checked_before_any_per_row_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise AssertionError("rows were examined before the input was validated")

    monkeypatch.setattr(checks_module, "decide_emails", boom)
    data = frame(email=["a@b.io", "b@b.io"])
    with pytest.raises(InputError, match="over the limit"):
        export_segment(data, email="email", list_id="Y6nRLr", max_profiles=1, dry_run=True, offline=True)
    with pytest.raises(InputError, match="not found"):
        export_segment(data, email="mail", list_id="Y6nRLr", dry_run=True, offline=True)
    with pytest.raises(AssertionError, match="rows were examined"):  # the patch is where the rows are checked
        export_segment(data, email="email", list_id="Y6nRLr", dry_run=True, offline=True)


# -- which columns are sent ------------------------------------------------------------------------------------


def test_standard_fields_cover_klaviyo_profile_attributes() -> None:
    assert STANDARD_FIELDS["first_name"] == ("first_name",)
    assert STANDARD_FIELDS["city"] == ("location", "city")
    assert set(STANDARD_FIELDS) >= {"email", "phone_number", "external_id", "locale", "image", "latitude", "ip"}
    assert standard_path("location.zip") == ("location", "zip")
    assert standard_path("location.planet") is None and standard_path("ltv") is None


def test_without_properties_only_standard_named_columns_are_sent() -> None:
    data = frame(email=["a@b.io"], First_Name=["A"], **{" city ": ["Paris"]}, ltv=[5], secret=["x"])
    assert field_map(data, email="email") == {
        "email": ("email",),
        "First_Name": ("first_name",),
        " city ": ("location", "city"),
    }


def test_without_properties_each_segment_contributes_its_standard_columns() -> None:
    first, second = frame(email=["a@b.io"], zip=["1"]), frame(email=["c@d.io"], title=["CEO"])
    assert field_map([first, second], email="email") == {
        "email": ("email",),
        "zip": ("location", "zip"),
        "title": ("title",),
    }
    # Each segment sends the columns it has (this used to crash with a KeyError on the one lacking them).
    run = run_locally([first, second], email="email")
    assert [profile for batch in run.batches for profile in batch.profiles] == [
        '{"type":"profile","attributes":{"email":"a@b.io","location":{"zip":"1"}}}',
        '{"type":"profile","attributes":{"email":"c@d.io","title":"CEO"}}',
    ]


def test_a_list_selects_columns_standard_or_custom() -> None:
    data = frame(email=["a@b.io"], Last_Name=["B"], ltv=[5], secret=["x"], city=["Paris"])
    assert field_map(data, email="email", properties=["email", "Last_Name", "ltv", "ltv"]) == {
        "email": ("email",),
        "Last_Name": ("last_name",),
        "ltv": ("properties", "ltv"),
    }


def test_a_dict_maps_columns_to_fields() -> None:
    data = frame(mail=["a@b.io"], fn=["A"], town=["Paris"], pc=["75001"], value=[5], tier=["gold"], zone=["x"])
    mapping = {"fn": "first_name", "town": "location.city", "pc": "zip", "value": "ltv", "tier": "properties.Tier"}
    assert field_map(data, email="mail", properties=mapping) == {
        "mail": ("email",),
        "fn": ("first_name",),
        "town": ("location", "city"),
        "pc": ("location", "zip"),
        "value": ("properties", "ltv"),
        "tier": ("properties", "Tier"),
    }


def test_the_field_map_is_what_the_local_run_uses() -> None:
    data = frame(email=["a@b.io"], fn=["A"], ltv=[5])
    run = run_locally(data, email="email", properties={"fn": "first_name", "ltv": "ltv"})
    assert run.field_map == field_map(data, email="email", properties={"fn": "first_name", "ltv": "ltv"})
    assert run.batches[0].profiles == [
        '{"type":"profile","attributes":{"email":"a@b.io","first_name":"A","properties":{"ltv":5}}}'
    ]
