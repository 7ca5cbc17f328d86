"""Saved exports and run history: stored without running, looked up by name, no secrets on disk."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

import pandas as pd
import pytest

from klaviyo_magic.errors import ConfigError, InputError
from klaviyo_magic.export import saved
from klaviyo_magic.export.namespace import lookup
from klaviyo_magic.result import ExportResult


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KLAVIYO_MAGIC_HOME", str(tmp_path))
    return tmp_path


def weekly(**changes) -> saved.SavedExport:
    values = dict(
        name="weekly-vip",
        segments=("vip", "lapsed"),
        email="email",
        list_id="Y6nRLr",
        connection="prod",
        properties=("first_name", "ltv"),
    )
    values.update(changes)
    return saved.SavedExport(**values)


def test_save_get_list_delete_round_trip(home):
    saved.save(weekly())
    saved.save(weekly(name="by-map", properties={"ltv": "lifetime_value"}, connection=None))
    assert saved.get("weekly-vip") == weekly(created_at=saved.get("weekly-vip").created_at)
    assert saved.get("by-map").properties == {"ltv": "lifetime_value"}
    assert [e.name for e in saved.all_exports()] == ["by-map", "weekly-vip"]
    assert stat.S_IMODE((home / "exports.toml").stat().st_mode) == 0o600
    saved.delete("by-map")
    assert [e.name for e in saved.all_exports()] == ["weekly-vip"]


def test_unknown_names_get_a_did_you_mean():
    saved.save(weekly())
    with pytest.raises(ConfigError, match="Did you mean 'weekly-vip'"):
        saved.get("weekly-vp")
    with pytest.raises(ConfigError, match="no saved export named 'nope'"):
        saved.delete("nope")


def test_bad_names_and_refused_overwrite():
    with pytest.raises(InputError, match="not a usable export name"):
        saved.save(weekly(name="has space"))
    saved.save(weekly())
    with pytest.raises(ConfigError, match="exists already"):
        saved.save(weekly(), overwrite=False)


def test_a_saved_exports_frames_are_looked_up_by_name():
    export = weekly()
    vip = pd.DataFrame({"email": ["a@example.com"]})
    assert lookup(export.segments, {"vip": vip, "lapsed": vip}, saved_export=export.name)[0] is vip
    with pytest.raises(InputError, match="uses the variable 'lapsed', which is not defined here. Did you mean 'lapsd'"):
        lookup(export.segments, {"vip": vip, "lapsd": vip}, saved_export=export.name)
    with pytest.raises(InputError, match="which is a str, not a DataFrame"):
        lookup(export.segments, {"vip": vip, "lapsed": "oops"}, saved_export=export.name)


def test_history_records_runs_newest_first(home):
    report = pd.DataFrame(
        {
            "segment": [0, 0],
            "index": [0, 1],
            "email": ["a@x.io", None],
            "status": ["sent", "skipped"],
            "reason": [None, "missing email"],
        }
    )
    result = ExportResult("Y6nRLr", report, job_ids=["01JOB"], duration=1.25)
    saved.record_run("weekly-vip", datetime(2026, 1, 1, tzinfo=UTC), result=result)
    saved.record_run("other", datetime(2026, 1, 2, tzinfo=UTC), error="401 from Klaviyo\nmore")
    with (home / "history.jsonl").open("a") as handle:
        handle.write('{"export": "cut sho')  # a line a crash cut short is ignored, not fatal
    frame = saved.history()
    assert list(frame["export"]) == ["other", "weekly-vip"]
    assert frame.loc[0, "outcome"] == "error" and frame.loc[0, "error"] == "401 from Klaviyo"
    only = saved.history("weekly-vip")
    assert only.loc[0, "sent"] == 1 and only.loc[0, "skipped"] == 1 and only.loc[0, "job_ids"] == ["01JOB"]
    assert stat.S_IMODE((home / "history.jsonl").stat().st_mode) == 0o600
