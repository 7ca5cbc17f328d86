"""Generated customer tables for the demo, the notebooks and the benchmarks (fast, deterministic)."""

from __future__ import annotations

import numpy as np
import pandas as pd

_FIRST = np.array(["Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam"])
_LAST = np.array(["Mason", "Okafor", "Nguyen", "Schmidt", "Garcia", "Kowalski", "Rossi", "Haddad", "Silva", "Park"])
_PLANS = np.array(["free", "basic", "gold", "platinum"])
_CITIES = np.array(["New York", "Berlin", "Lagos", "Tokyo", "São Paulo", "Lyon", "Toronto", "Pune"])


def customers(n: int = 5_000, *, seed: int = 7, messy: bool = True) -> pd.DataFrame:
    """A customer table with ``n`` rows: email, first_name, last_name, city, plan, ltv, orders, signed_up.

    With ``messy=True`` about 1 % of rows carry the problems real exports meet: missing and malformed emails,
    the same person twice with different capitalisation, and missing values.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(n)
    first = _FIRST[rng.integers(0, len(_FIRST), n)]
    last = _LAST[rng.integers(0, len(_LAST), n)]
    emails = (
        pd.Series(first).str.lower()
        + "."
        + pd.Series(last).str.lower()
        + "."
        + pd.Series(ids).astype(str)
        + "@example.com"
    )
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "email": emails.to_numpy(dtype=object),
            "first_name": first,
            "last_name": last,
            "city": _CITIES[rng.integers(0, len(_CITIES), n)],
            "plan": _PLANS[rng.integers(0, len(_PLANS), n)],
            "ltv": np.round(rng.gamma(2.0, 250.0, n), 2),
            "orders": rng.integers(0, 40, n),
            "signed_up": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
        }
    )
    if messy and n >= 100:
        step = max(n // 100, 1)
        picks = ids[::step]
        frame.loc[picks[0::4], "email"] = None  # missing
        frame.loc[picks[1::4], "email"] = "not-an-email-" + frame.loc[picks[1::4], "customer_id"].astype(str)
        dup_sources = picks[2::4]
        frame.loc[np.minimum(dup_sources + 1, n - 1), "email"] = frame.loc[dup_sources, "email"].str.upper().to_numpy()
        frame.loc[picks[3::4], "ltv"] = np.nan  # missing value
    return frame
