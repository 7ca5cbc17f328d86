"""Vectorised email and phone checks for whole DataFrame columns.

Klaviyo validates a bulk import all-or-nothing (docs/klaviyo-api.md §2.5): one malformed email makes it reject the
whole request of up to 10,000 profiles. So every address is checked here first, with pandas ``.str``
methods over the whole column (a million rows in a fraction of a second), never a Python loop per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype, is_object_dtype, is_string_dtype

# Klaviyo's exact email rule is unpublished (docs/klaviyo-api.md §3.2), so this is a deliberately conventional
# one: an RFC 5322 "dot-atom" local part (no leading, trailing or doubled dots), DNS labels of
# [a-z0-9-] that neither start nor end with a hyphen, and an alphabetic TLD of at least two letters.
# It has no look-arounds or back-references, so pyarrow's RE2 engine can run it as well as Python's ``re``.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
EMAIL_PATTERN = rf"{_ATOM}(?:\.{_ATOM})*@(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+[a-z]{{2,63}}"
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
MAX_LOCAL_PART_LENGTH = 64

# E.164: "+", a country code that does not start with 0, at most 15 digits in all (docs/klaviyo-api.md §3.1).
PHONE_PATTERN = r"\+[1-9][0-9]{6,14}"
# Punctuation people write inside phone numbers; stripped before the E.164 check and before sending.
_PHONE_PUNCTUATION = r"[\s\-.()]"


@dataclass(frozen=True)
class EmailCheck:
    """The outcome of :func:`check_emails` for each value of a column (all share its length).

    ``shown`` is built straight from the text the checks ran on, without a Python string per row: with
    pyarrow it has pandas' Arrow-backed ``str`` dtype (missing values are NaN), else it is an object column
    (missing values are None).
    """

    shown: pd.Series  # the normalised address where valid, the text as given where malformed, else missing
    valid: np.ndarray  # bool
    missing: np.ndarray  # bool: None, NaN, NA, empty or whitespace only

    @property
    def normalised(self) -> np.ndarray:
        """Object array: the stripped, lower-cased address where valid, else None (one ``str`` per row)."""
        normalised = np.array(self.shown.to_numpy(dtype=object, na_value=None), dtype=object)  # writable
        normalised[~self.valid] = None
        return normalised


@dataclass(frozen=True)
class PhoneCheck:
    """The outcome of :func:`check_phones`: what to send, and which values cannot be sent."""

    cleaned: pd.Series  # the values as text without punctuation, missing where there is no number
    invalid: np.ndarray  # bool: present but not E.164

    @property
    def normalised(self) -> np.ndarray:
        """Object array: the number without punctuation, or None when missing (one ``str`` per row)."""
        return np.array(self.cleaned.to_numpy(dtype=object, na_value=None), dtype=object)


def as_text(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Return ``(text, is_text)``: the column's string values as a string Series (NA elsewhere) and a mask
    of which values were strings to begin with.

    Non-strings are blanked rather than converted because ``str(12345)`` would make a number look like
    text; callers decide what a non-string means. The result uses pyarrow-backed strings when pyarrow is
    installed: their ``.str`` methods run in C (RE2 for regexes) instead of calling ``re`` per row.
    """
    values = values.reset_index(drop=True)
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    missing = values.isna().to_numpy()
    if is_string_dtype(values.dtype) and not is_object_dtype(values.dtype):
        is_text = ~missing  # a string dtype: every non-missing value is a str
    elif is_object_dtype(values.dtype):
        if infer_dtype(values, skipna=True) in ("string", "empty"):
            is_text = ~missing
        else:
            is_text = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
            values = values.where(is_text)
    else:  # numbers, dates, booleans: nothing in the column is text
        return pd.Series([None] * len(values), dtype=object).astype(_text_dtype()), np.zeros(len(values), bool)
    return values.astype(_text_dtype()), is_text


def _text_dtype() -> pd.StringDtype | type:
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # pyarrow is optional: plain object strings work, only more slowly
        return object
    return pd.StringDtype("pyarrow")


def shown_text_dtype() -> pd.StringDtype | type:
    """The dtype of :attr:`EmailCheck.shown` (and so of the report's ``email`` column).

    pandas' Arrow-backed ``str`` dtype (NaN for missing, as pandas 3 shows any missing text) keeps about
    30 bytes of text and an 8-byte offset per address instead of an 80-byte Python object; without pyarrow
    it is object, with None for missing as before.
    """
    if _text_dtype() is object:
        return object
    try:
        return pd.StringDtype("pyarrow", na_value=np.nan)
    except TypeError:  # pandas < 2.3 names the NaN-variant differently
        return pd.StringDtype("pyarrow_numpy")


def _as_bool(result: pd.Series) -> np.ndarray:
    """A boolean ``.str`` result (numpy, nullable or object) as a numpy bool array; NA counts as False."""
    return np.array(result.to_numpy(dtype=bool, na_value=False), dtype=bool)  # a writable copy (CoW)


# Rows checked per pass: the string kernels make several column-sized temporaries (stripped, lowered,
# lengths...), so a million-row column is checked in slices to keep them small; the results are the same.
_CHECK_SLICE = 131_072


def check_emails(values: pd.Series) -> EmailCheck:
    """Normalise (strip, lower-case) and validate a column of email addresses in bulk.

    Non-strings (numbers, dates...) are malformed, not missing: the cell has a value, just not an address.
    Internationalised (non-ASCII) addresses are rejected too, since Klaviyo's acceptance of them is unknown.
    """
    if len(values) <= _CHECK_SLICE:
        return _check_emails(values)
    parts = [_check_emails(values.iloc[i : i + _CHECK_SLICE]) for i in range(0, len(values), _CHECK_SLICE)]
    return EmailCheck(
        shown=pd.concat([part.shown for part in parts], ignore_index=True),  # Arrow: the slices as chunks, no copy
        valid=np.concatenate([part.valid for part in parts]),
        missing=np.concatenate([part.missing for part in parts]),
    )


def _check_emails(values: pd.Series) -> EmailCheck:
    text, is_text = as_text(values)
    stripped = text.str.strip()
    originally_missing = values.isna().to_numpy()
    missing = originally_missing | (is_text & _as_bool(stripped.str.len() == 0))
    lowered = stripped.str.lower()
    valid = _as_bool(lowered.str.fullmatch(EMAIL_PATTERN))
    valid &= _as_bool(lowered.str.len() <= MAX_EMAIL_LENGTH)
    valid &= _as_bool(lowered.str.find("@") <= MAX_LOCAL_PART_LENGTH)
    missing &= ~valid
    # The report shows a malformed value as given, so it is picked here, where its text already exists.
    shown = lowered.where(valid, text).where(~missing)
    return EmailCheck(shown=_as_shown(shown), valid=valid, missing=missing)


def _as_shown(text: pd.Series) -> pd.Series:
    dtype = shown_text_dtype()
    if dtype is object:
        text = text.astype(object)
        return text.where(text.notna(), None)
    return text.astype(dtype)  # from pyarrow strings: the same Arrow data, no copy


def check_phones(values: pd.Series) -> PhoneCheck:
    """Strip punctuation from phone numbers and check they are E.164 (``+15005550006``).

    Missing or blank values are simply not sent (the email identifies the profile). Non-strings are
    converted with ``str`` before the check, so a number stored as an int fails it for lacking the ``+``.
    """
    values = values.reset_index(drop=True)
    text, is_text = as_text(values)
    present = ~values.isna().to_numpy()
    if not is_text[present].all():  # numbers or other objects: check their text form
        others = present & ~is_text
        converted = values.astype(object).copy()
        converted[others] = [str(v) for v in values[others]]
        text, is_text = as_text(converted.where(present))
    cleaned = text.str.replace(_PHONE_PUNCTUATION, "", regex=True)
    present &= _as_bool(cleaned.str.len() > 0)
    valid = _as_bool(cleaned.str.fullmatch(PHONE_PATTERN))
    return PhoneCheck(cleaned=cleaned.where(present), invalid=present & ~valid)


# -- per-row decisions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowDecisions:
    """What the email column alone decides for each row (all share its length; the arrays are mutable)."""

    shown: pd.Series  # the report's email: normalised if valid, else the raw value as text, or missing
    skipped: np.ndarray  # bool: not sent, with the reason in ``reason``
    reason: np.ndarray  # object: None or why the row is not sent
    check: EmailCheck


def decide_emails(raw: pd.Series) -> RowDecisions:
    """Skip rows whose email is missing or malformed, with the reason shown in the report."""
    check = check_emails(raw)
    shown = check.shown
    reason = np.full(len(raw), None, dtype=object)
    reason[check.missing] = "missing email"
    malformed = np.flatnonzero(~check.valid & ~check.missing)
    if malformed.size:
        values = raw.iloc[malformed].tolist()
        reason[malformed] = [
            f"malformed email {value!r}" + ("" if isinstance(value, str) else " (not text)") for value in values
        ]
        # Text is already shown as given; other values (numbers, dates...) are shown as str() of them.
        not_text = [i for i, value in enumerate(values) if not isinstance(value, str)]
        if not_text:
            shown = shown.copy()
            shown.iloc[malformed[not_text]] = [str(values[i]) for i in not_text]
    skipped = check.missing | ~check.valid
    return RowDecisions(shown, skipped, reason, check)
