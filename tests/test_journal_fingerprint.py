"""journal.fingerprint: the same input gives the same digest however it is laid out; any change gives another.

Arrow-backed text columns are digested from their buffers (fast, no Python strings); these tests pin down that
this reads values, not memory layout.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from klaviyo_magic.export import journal


def digest(frame: pd.DataFrame) -> str:
    return journal.fingerprint([frame], {"list_id": "Y6nRLr"})


@pytest.fixture
def frame() -> pd.DataFrame:
    index = [10, 11, 12, 13]
    emails = pd.Series(["a@x.io", None, "ccc@y.io", ""], dtype="str", index=index)
    return pd.DataFrame({"email": emails, "n": [1, 2, 3, 4]}, index=index)


def test_same_values_in_another_layout_give_the_same_digest(frame):
    assert frame["email"].tolist()[0] == "a@x.io"
    assert digest(frame) == digest(frame.copy())
    padded = pd.concat([pd.DataFrame({"email": pd.Series(["zzz"], dtype="str"), "n": [0]}, index=[9]), frame])
    assert digest(padded.iloc[1:]) == digest(frame)  # a slice: the Arrow array starts at an offset
    chunked = frame.copy()
    chunked["email"] = pd.Series(
        pd.arrays.ArrowStringArray(pa.chunked_array([["a@x.io", None], ["ccc@y.io", ""]])), index=frame.index
    ).astype(frame["email"].dtype)
    assert digest(chunked) == digest(frame)


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(email=pd.Series(["a@x.io", "", "ccc@y.io", ""], dtype="str", index=f.index)),  # null -> ""
        lambda f: f.assign(email=pd.Series(["a@x.io", None, "ccc@y.i", "o"], dtype="str", index=f.index)),  # boundary
        lambda f: f.assign(email=pd.Series(["a@x.io", None, "ccc@y.io", "!"], dtype="str", index=f.index)),
        lambda f: f.assign(n=[1, 2, 3, 5]),
        lambda f: f.set_axis([10, 11, 12, 14]),
        lambda f: f.astype({"email": object}),
        lambda f: f.rename(columns={"n": "m"}),
    ],
)
def test_any_change_gives_another_digest(frame, change):
    assert digest(change(frame)) != digest(frame)


def test_object_and_empty_columns_still_digest(frame):
    assert len(digest(frame.astype({"email": object}))) == 32
    assert len(digest(frame.iloc[:0])) == 32
    all_missing = pd.DataFrame({"email": pd.Series([None, None], dtype="str")})
    all_empty = pd.DataFrame({"email": pd.Series(["", ""], dtype="str")})
    assert digest(all_missing) != digest(all_empty)
