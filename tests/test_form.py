"""The export form against the real sandbox: set widget values, press buttons, assert on the form's state and
the sandbox's lists. ``Button.click()`` swallows handler exceptions, so every test asserts on what the handler
produced (options, values, the error area), never on an exception."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import pytest

from klaviyo_magic import connections
from klaviyo_magic import form as open_form
from klaviyo_magic.sandbox import Sandbox
from klaviyo_magic.widgets import ExportForm
from klaviyo_magic.widgets.parts import CONSENT_TEXT, detect_email_column

KEY = "pk_form_tests_secret_0123456789"
KEY_VAR = "FORM_TEST_KLAVIYO_KEY"
GLOBAL_SEGMENT = pd.DataFrame({"email": ["g@example.com"]})  # found by form() through the caller's globals


def people(n: int, *, start: int = 0) -> pd.DataFrame:
    ids = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "Email": [f"person{i}@example.com" for i in ids],
            "first_name": [f"First{i}" for i in ids],
            "ltv": ids * 1.5,
            "notes": ["x"] * n,
        }
    )


def messy() -> pd.DataFrame:
    """10 rows: 6 distinct valid emails, 2 duplicates (one differs by case and spaces), 2 skipped."""
    emails = [
        "ann@example.com",
        "bob@example.com",
        "  ANN@example.com ",  # duplicate of row 0 once normalised
        "not-an-email",  # skipped: malformed
        None,  # skipped: missing
        "cy@example.org",
        "bob@example.com",  # duplicate
        "dee@example.net",
        "eve@example.com",
        "fay@example.com",
    ]
    return pd.DataFrame({"email": emails, "first_name": list("abcdefghij"), "score": range(10)})


@pytest.fixture
def sb_profile(klaviyo_home, sandbox, monkeypatch):
    """A consented profile 'sb' whose key (from $FORM_TEST_KLAVIYO_KEY) the sandbox accepts."""
    monkeypatch.setenv(KEY_VAR, KEY)
    return connections.add("sb", api_key_env=KEY_VAR, base_url=sandbox.url, accept_privacy_terms=True)


def widgets(root: w.Widget) -> list[w.Widget]:
    found = [root]
    for child in getattr(root, "children", ()):
        found += widgets(child)
    return found


def error_text(form: ExportForm) -> str:
    return html.unescape(form.error.value)


def writes(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.method in ("POST", "PATCH", "DELETE")]


def status_texts(form: ExportForm) -> list[str]:
    """Every text the status line will show from now on, in order (recorded as the form sets them)."""
    seen: list[str] = []
    form.status.observe(lambda change: seen.append(html.unescape(re.sub(r"<[^>]+>", "", change["new"]))), "value")
    return seen


# -- DataFrames and the email column ------------------------------------------------------------------------


def test_discovers_dataframes_in_a_namespace(klaviyo_home):
    ns: dict[str, Any] = {"vip": people(3), "one": people(1), "n": 3, "s": pd.Series([1]), "_": people(2)}
    form = open_form(ns)
    assert [value for _, value in form.frames.options] == ["one", "vip"]  # sorted; `_` outputs left out
    assert [label for label, _ in form.frames.options] == ["one (1 row)", "vip (3 rows)"]
    assert form.frames.value == ()  # two candidates: the user picks

    form.frames.value = ("vip",)
    ns["lapsed"] = people(2)
    form.refresh_button.click()
    assert "lapsed (2 rows)" in [label for label, _ in form.frames.options]
    assert form.frames.value == ("vip",)  # the selection survives a rescan
    assert not form.refresh_button.disabled


def test_single_dataframe_is_preselected_and_defaults_apply(klaviyo_home):
    form = open_form({"vip": people(4)})
    assert form.frames.value == ("vip",)
    assert form.email.value == "Email"
    assert form.properties.value == ("first_name",)  # standard-named columns, which the engine would send

    preset = ExportForm({"a": people(2), "b": people(2)}, frames=["a", "b"], properties=["ltv"], list_id="Y6nRLr")
    assert preset.frames.value == ("a", "b")
    assert preset.properties.value == ("ltv",)
    assert preset.lists.value == "Y6nRLr"
    with pytest.raises(TypeError, match="unknown form default"):
        ExportForm({}, emial="email")


def test_default_namespace_is_ipython_user_ns(ipython_shell):
    ipython_shell.user_ns["ipy_segment"] = people(2)
    try:
        assert "ipy_segment" in [value for _, value in open_form().frames.options]
    finally:
        del ipython_shell.user_ns["ipy_segment"]


def test_default_namespace_falls_back_to_callers_globals(klaviyo_home, monkeypatch):
    monkeypatch.setattr("klaviyo_magic.widgets.parts.ipython_namespace", lambda: None)  # as in plain Python
    assert "GLOBAL_SEGMENT" in [value for _, value in open_form().frames.options]


@pytest.mark.parametrize("name", ["email", "E-Mail", "Email_Address", "EMAIL ADDRESS", "mail"])
def test_email_column_detected_by_name(name):
    frame = pd.DataFrame({"id": [1, 2], "contact": ["a@b.com", "c@d.com"], name: ["x", "y"]})
    assert detect_email_column([frame], list(frame.columns)) == name


def test_email_column_detected_by_content(klaviyo_home):
    frame = pd.DataFrame(
        {
            "email_opt_in": [True, False, True],  # named like email, but flags
            "name": ["Ann", "Bob", "Cy"],
            "contact": ["ann@example.com", "bob@example.com", "oops"],  # mostly emails
        }
    )
    assert detect_email_column([frame], list(frame.columns)) == "contact"
    assert detect_email_column([frame[["name"]]], ["name"]) is None

    form = open_form({"leads": frame})
    assert form.email.value == "contact"
    assert [value for _, value in form.properties.options] == ["email_opt_in", "name"]


def test_duplicated_column_names_are_not_offered(klaviyo_home):
    frame = pd.DataFrame([["a@x.com", "b@x.com", "Ann"]], columns=["email", "email", "name"])
    frame["shop"] = pd.Categorical(["c@x.com"])
    form = open_form({"dup": frame})
    assert "Unexpected" not in error_text(form)
    assert [value for _, value in form.email.options] == ["name", "shop"]
    assert form.email.value == "shop"  # categorical emails are still emails


def test_email_column_changeable_among_common_columns(klaviyo_home):
    a = pd.DataFrame({"email": ["a@x.com"], "alt": ["b@x.com"], "only_a": [1]})
    b = pd.DataFrame({"alt": ["c@x.com"], "email": ["d@x.com"], "only_b": [2]})
    form = open_form({"a": a, "b": b})
    form.frames.value = ("a", "b")
    assert [value for _, value in form.email.options] == ["email", "alt"]  # common to both, a's order
    assert form.email.value == "email"
    form.email.value = "alt"
    assert [value for _, value in form.properties.options] == ["email"]


# -- connection and consent ---------------------------------------------------------------------------------


def test_consent_checkbox_gates_the_export(klaviyo_home, sandbox, monkeypatch):
    monkeypatch.setenv(KEY_VAR, KEY)
    connections.add("fresh", api_key_env=KEY_VAR, base_url=sandbox.url)
    connections.add("ok", api_key_env=KEY_VAR, base_url=sandbox.url, accept_privacy_terms=True)
    list_id = sandbox.create_list("VIP")
    form = open_form({"vip": people(5)}, connection="fresh", list_id=list_id)
    assert form.consent.description == CONSENT_TEXT
    assert form.consent.layout.display != "none"

    form.export_button.click()
    assert "Tick 'I agree to the data-privacy terms" in error_text(form)
    assert form.result is None and not form.running and not form.export_button.disabled
    assert writes(sandbox) == []

    form.connection.value = "ok"
    assert form.consent.layout.display == "none"
    form.connection.value = "fresh"
    assert form.consent.layout.display != "none"

    form.consent.value = True
    assert connections.get("fresh").privacy_accepted_at is not None
    assert form.consent.disabled and error_text(form) == ""
    assert form.lists.options == ()  # lists belong to an account: a connection switch clears them
    form.load_lists_button.click()
    form.export_button.click()
    form.wait(timeout=30)
    assert error_text(form) == ""
    assert form.result.sent == 5


def test_no_connection_says_how_to_add_one(klaviyo_home):
    form = open_form({"vip": people(1)})
    assert form.connection.options == ()
    assert "%klaviyo_connection add" in error_text(form)


# -- lists --------------------------------------------------------------------------------------------------


def test_load_lists_follows_every_page(sandbox, sb_profile):
    ids = {sandbox.create_list(f"List {n:02d}") for n in range(23)}
    form = open_form({"vip": people(1)})
    assert form.lists.options == ()  # no HTTP until asked
    assert sandbox.requests == []

    form.load_lists_button.click()
    assert error_text(form) == ""
    assert {value for _, value in form.lists.options} == ids
    labels = [label for label, _ in form.lists.options]
    assert labels[0] == f"List 00 ({form.lists.value})" and len(labels) == 23
    assert len([r for r in sandbox.requests if r.path == "/api/lists"]) == 3  # 10 + 10 + 3
    assert "Loaded 23 lists" in form.status.value
    assert not form.load_lists_button.disabled


def test_create_list_by_name_selects_it(sandbox, sb_profile):
    form = open_form({"vip": people(1)})
    form.create_list_button.click()
    assert "Type a name for the new list" in error_text(form)

    form.new_list_name.value = "Form VIP"
    form.create_list_button.click()
    assert error_text(form) == ""
    created = [item for item in sandbox.lists() if item["name"] == "Form VIP"]
    assert len(created) == 1
    assert form.lists.value == created[0]["id"]
    assert form.lists.label == f"Form VIP ({created[0]['id']})"
    assert form.new_list_name.value == ""


def test_methods_called_from_code_clear_a_stale_error(sandbox, sb_profile):
    """``form.create_list(...)`` after a failed Create list click leaves no red line behind, as a click would."""
    form = open_form({"vip": people(1)})
    form.create_list_button.click()
    assert "Type a name for the new list" in error_text(form)
    form.create_list("From code")
    assert error_text(form) == ""
    form.create_list_button.click()
    form.preview()
    assert error_text(form) == ""


# -- preview and export -------------------------------------------------------------------------------------


def test_preview_counts_and_sample_without_sending(sandbox, sb_profile):
    form = open_form({"segment": messy()})
    form.preview_button.click()
    assert error_text(form) == ""
    preview = form.preview_result
    assert (preview.total_rows, preview.would_send, preview.skipped, preview.duplicates) == (10, 6, 2, 2)
    assert list(form.sample.columns) == ["index", "email", "first_name"]
    assert list(form.sample["email"]) == [
        "ann@example.com",
        "bob@example.com",
        "cy@example.org",
        "dee@example.net",
        "eve@example.com",
    ]
    shown = form.preview_area.value
    assert "6 of 10 rows would be sent" in shown and "Nothing was sent" in shown
    assert "fay@example.com" not in shown  # a sample, not the whole segment
    assert sandbox.requests == []  # a dry run makes no request at all, let alone a write

    form.properties.value = ()
    assert form.preview_area.value == "" and form.preview_result is None  # stale previews vanish


def test_export_fills_the_list(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    segment = pd.concat([people(40), messy().rename(columns={"email": "Email"})], ignore_index=True)
    form = open_form({"segment": segment})
    form.load_lists_button.click()
    form.lists.value = list_id
    sandbox.delay_next("POST /api/profile-bulk-import-jobs", 0.5)  # keep the export in flight a moment

    assert form.cancel_button.disabled and form.cancel() is False  # nothing to cancel yet
    form.export_button.click()
    assert form.running and form.export_button.disabled and form.preview_button.disabled
    assert not form.cancel_button.disabled  # the one button that works while an export runs
    result = form.wait(timeout=30)

    assert error_text(form) == ""
    assert result is form.result and result.sent == 46 and result.ok
    sandbox.wait_for_jobs()
    sent = set(result.report.loc[result.report["status"] == "sent", "email"])
    assert sandbox.member_emails(list_id) == sent and len(sent) == 46
    assert form.progress.value == form.progress.max == 46
    assert form.progress_label.value == "Done: 46 / 46"
    assert len(form.problems) == 4 and set(form.problems["status"]) == {"skipped", "duplicate"}
    assert "Sent 46 of 50 rows" in form.result_area.value and "form.problems" in form.result_area.value
    assert not form.export_button.disabled and not form.preview_button.disabled
    assert form.cancel_button.disabled and form.cancel() is False
    assert form.status.value.count("Export finished: 46 of 50 rows were sent.") == 1


def test_cancel_stops_the_export_and_shows_what_was_sent(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    big, small = people(100_000), people(5, start=200_000)  # big: ten import jobs of 10,000 profiles
    form = open_form({"big": big, "small": small}, frames=["big"], list_id=list_id)
    sandbox.delay_next("POST /api/profile-bulk-import-jobs", 0.5, count=10)  # every job takes a while to accept
    statuses = status_texts(form)

    def press_cancel_once_sending(change: dict[str, Any]) -> None:
        if change["new"] > 0 and not form.cancel_button.disabled:  # the bar moved: Klaviyo accepted a job
            form.cancel_button.click()

    form.progress.observe(press_cancel_once_sending, names="value")
    form.export_button.click()
    result = form.wait(timeout=60)

    assert error_text(form) == "" and result.interrupted
    # Jobs already on their way (at most one per worker) are accepted and counted; nothing is sent after that.
    assert 1 <= len(result.job_ids) <= 6 and len(sandbox.jobs()) == len(result.job_ids)
    assert result.sent == 10_000 * len(result.job_ids) and result.sent + result.failed == 100_000
    assert (form.problems["reason"] == "not sent: the export was cancelled").all()
    assert len(form.problems) == result.failed
    assert f"Interrupted: {result.sent:,} of 100,000 rows were sent" in html.unescape(form.result_area.value)
    sandbox.wait_for_jobs()
    assert sandbox.member_emails(list_id) == set(result.report.loc[result.report["status"] == "sent", "email"])
    assert form.progress.bar_style == "warning"
    assert (
        form.progress.value == result.sent and form.progress_label.value == f"Cancelled: {result.sent:,} / 100,000 sent"
    )
    assert form.cancel_button.disabled and not form.export_button.disabled and not form.preview_button.disabled
    assert statuses == [
        f"Exporting 100,000 rows to list {list_id}...",
        "Cancelling: no new import job will be sent; waiting for the requests already on their way.",
        f"Export cancelled: {result.sent:,} of 100,000 rows were sent before it stopped.",
    ]

    # A new export starts clean: no stale status, result or "cancelled" next to it.
    form.progress.unobserve(press_cancel_once_sending, names="value")
    statuses.clear()
    form.frames.value = ("small",)
    sandbox.reset_faults()
    sandbox.delay_next("POST /api/profile-bulk-import-jobs", 0.5)  # still running at the next line
    form.export_button.click()
    assert form.result is None and form.result_area.value == "" and not form.cancel_button.disabled
    again = form.wait(timeout=30)
    assert again.sent == 5 and again.ok and "Sent 5 of 5 rows" in form.result_area.value
    assert statuses == [f"Exporting 5 rows to list {list_id}...", "Export finished: 5 of 5 rows were sent."]
    assert form.cancel() is False  # too late: the export has ended, and the status stays as it is
    assert "Export finished" in form.status.value


def test_progress_label_while_sending(sandbox, sb_profile):
    form = open_form({"segment": people(3)})
    from klaviyo_magic.progress import ProgressEvent

    form._runner._on_progress(ProgressEvent("sending", 20_000, 50_000, 2))
    assert form.progress_label.value == "Sending 20,000 / 50,000"
    assert (form.progress.value, form.progress.max) == (20_000, 50_000)


def test_export_needs_a_list(sandbox, sb_profile):
    form = open_form({"segment": people(3)})
    form.export_button.click()
    assert "Choose a Klaviyo list" in error_text(form)
    assert not form.running and form.wait() is None


# -- errors -------------------------------------------------------------------------------------------------


def test_klaviyo_error_shown_and_button_reenabled(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    form = open_form({"segment": people(30)}, list_id=list_id)
    sandbox.fail_next("POST /api/profile-bulk-import-jobs", count=20, status=400)
    form.export_button.click()
    form.wait(timeout=30)

    assert "400 from Klaviyo while creating import job" in error_text(form)
    assert "color:#b00020" in error_text(form)  # red, visible
    assert not form.export_button.disabled and not form.running
    assert form.result is not None and form.result.failed == 30  # every row accounted for
    assert len(form.problems) == 30 and (form.problems["status"] == "failed").all()
    assert form.progress.bar_style == "danger" and form.progress_label.value == "Stopped: 0 / 30 sent"
    assert form.status.value.count("Export stopped by the error above: 0 of 30 rows were sent.") == 1
    assert sandbox.member_emails(list_id) == set()

    form.preview_button.click()  # the next action clears the old error
    assert error_text(form) == ""


def test_refused_key_shown_in_form_without_the_key(klaviyo_home, monkeypatch):
    with Sandbox(rate_limits=False, api_keys=["pk_only_this_key_is_accepted_0000"]) as sb:
        monkeypatch.setenv(KEY_VAR, KEY)
        connections.add("prod", api_key_env=KEY_VAR, base_url=sb.url, accept_privacy_terms=True)
        list_id = sb.create_list("VIP")
        form = open_form({"segment": people(5)}, list_id=list_id)

        form.load_lists_button.click()
        assert "401 from Klaviyo" in error_text(form) and f"env:{KEY_VAR}" in error_text(form)
        assert "Check connection 'prod'" in error_text(form)

        form.export_button.click()
        form.wait(timeout=30)
        assert "401 from Klaviyo while looking up list" in error_text(form)
        assert not form.export_button.disabled
        assert form.result is not None and form.result.sent == 0
        assert_key_never_shown(form)


def test_unexpected_error_is_shown_not_logged(klaviyo_home):
    class Flaky(dict):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("namespace went away")

    form = open_form(Flaky(vip=people(2)))
    assert "Unexpected RuntimeError: namespace went away" in error_text(form)
    assert "bug in klaviyo-magic" in error_text(form)
    assert isinstance(form.last_error, RuntimeError)


def test_variable_gone_since_refresh(klaviyo_home):
    ns: dict[str, Any] = {"vip": people(2)}
    form = open_form(ns)
    ns["vip"] = "replaced"
    form.preview_button.click()
    assert "'vip' is no longer a DataFrame" in error_text(form) and "Refresh" in error_text(form)
    assert not form.preview_button.disabled


# -- secrets ------------------------------------------------------------------------------------------------


def assert_key_never_shown(form: ExportForm) -> None:
    for widget in widgets(form):
        state = json.dumps(widget.get_state(), default=str)  # value, description, options, HTML...
        assert KEY not in state, type(widget).__name__
        assert KEY[3:] not in state


def test_key_never_in_any_widget(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    form = open_form({"segment": messy()})
    form.load_lists_button.click()
    form.new_list_name.value = "New one"
    form.create_list_button.click()
    form.lists.value = list_id
    form.preview_button.click()
    form.export_button.click()
    form.wait(timeout=30)
    assert form.result.sent == 6
    assert_key_never_shown(form)
