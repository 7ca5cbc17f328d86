"""Email and phone checks (klaviyo_magic.export.emails), with and without pyarrow-backed strings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from klaviyo_magic.export import emails
from klaviyo_magic.export.emails import check_emails, check_phones


@pytest.fixture(params=["pyarrow", "object"])
def text_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test with pyarrow strings (RE2) and with plain object strings (Python ``re``)."""
    if request.param == "object":
        monkeypatch.setattr(emails, "_text_dtype", lambda: object)
    return request.param


VALID = [
    "sarah.mason@example.com",
    "a@b.co",
    "first.last+tag@sub.domain-x.example.org",
    "o'neil@example.ie",
    "x_y-z!#$%&*/=?^`{|}~@example.com",
    "a@xn--bcher-kva.example",
    "a@123.example.com",
    ("l" * 64) + "@example.com",
    "a@" + ".".join(["d" * 63] * 3 + ["d" * 56]) + ".com",  # 254 characters, the most allowed
]
INVALID = [
    "bob@@x.com",
    "bob",
    "bob@localhost",
    "bob@x.c",
    "bob@x.c0m",
    ".bob@x.com",
    "bob.@x.com",
    "bo..b@x.com",
    "bob@-x.com",
    "bob@x-.com",
    "bob@x..com",
    "bob smith@x.com",
    "bob@x.com.",
    "bøb@x.com",
    '"bob"@x.com',
    ("l" * 65) + "@example.com",
    "a@" + ".".join(["d" * 63] * 3 + ["d" * 57]) + ".com",  # 255 characters
    "a@" + "d" * 64 + ".com",  # a DNS label is at most 63 characters
]


@pytest.mark.parametrize("address", VALID)
def test_valid_addresses(address: str, text_backend: str) -> None:
    check = check_emails(pd.Series([address.upper(), f"  {address}\t"]))
    assert check.valid.tolist() == [True, True]
    assert check.normalised.tolist() == [address.lower(), address.lower()]


@pytest.mark.parametrize("address", INVALID)
def test_invalid_addresses(address: str, text_backend: str) -> None:
    check = check_emails(pd.Series([address]))
    assert check.valid.tolist() == [False]
    assert check.missing.tolist() == [False]
    assert check.normalised.tolist() == [None]


def test_missing_and_non_text_values(text_backend: str) -> None:
    values = pd.Series([None, np.nan, "", "   ", pd.NA, 12345, 1.5, "a@b.io"], dtype=object)
    check = check_emails(values)
    assert check.missing.tolist() == [True] * 5 + [False, False, False]
    assert check.valid.tolist() == [False] * 7 + [True]


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["A@B.io", None], dtype="string"),
        pd.Series(["A@B.io", None], dtype=object),
        pd.Series(pd.Categorical(["A@B.io", None])),
    ],
    ids=["string", "object", "categorical"],
)
def test_any_text_dtype(values: pd.Series, text_backend: str) -> None:
    check = check_emails(values.set_axis(["x", "y"]))  # the index does not matter
    assert check.normalised.tolist() == ["a@b.io", None]
    assert check.missing.tolist() == [False, True]


def test_numeric_email_column_is_all_malformed(text_backend: str) -> None:
    check = check_emails(pd.Series([1, 2]))
    assert check.valid.tolist() == [False, False]
    assert check.missing.tolist() == [False, False]


def test_phones(text_backend: str) -> None:
    values = pd.Series(
        ["+1 (500) 555-0006", "+44.20.7946.0958", "+15005550006", "5005550006", "+0123456789", "+1234"]
        + ["", None, 15005550006, "+1234567890123456"],
        dtype=object,
    )
    check = check_phones(values)
    assert check.normalised.tolist()[:3] == ["+15005550006", "+442079460958", "+15005550006"]
    assert check.normalised.tolist()[6:8] == [None, None]
    assert check.invalid.tolist() == [False, False, False, True, True, True, False, False, True, True]


def test_shown_is_the_reports_email_text_without_a_python_string_per_row(text_backend: str) -> None:
    values = pd.Series([" Ann@Example.com", "  ", "Bob@@x ", None, 12345], dtype=object)
    check = check_emails(values)
    if text_backend == "pyarrow":
        assert check.shown.dtype == emails.shown_text_dtype() and check.shown.dtype.storage.startswith("pyarrow")
        assert check.shown.isna().tolist() == [False, True, False, True, True]
    else:
        assert check.shown.dtype == object
        assert check.shown.tolist() == ["ann@example.com", None, "Bob@@x ", None, None]
    # valid: normalised; malformed text: as given; blank, missing and non-text: missing (decide_emails shows
    # non-text values as their str())
    assert [None if pd.isna(v) else v for v in check.shown] == ["ann@example.com", None, "Bob@@x ", None, None]
    assert check.normalised.tolist() == ["ann@example.com", None, None, None, None]


def test_large_columns_are_checked_in_slices_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    values = pd.Series(["A@x.io", "bad", None, " c@x.io", "", "d@x.io", 7], dtype=object)
    whole = check_emails(values)
    monkeypatch.setattr(emails, "_CHECK_SLICE", 2)
    sliced = check_emails(values)
    assert sliced.shown.dtype == whole.shown.dtype
    assert sliced.shown.tolist()[:2] == whole.shown.tolist()[:2] and sliced.shown.isna().equals(whole.shown.isna())
    assert sliced.valid.tolist() == whole.valid.tolist() and sliced.missing.tolist() == whole.missing.tolist()
