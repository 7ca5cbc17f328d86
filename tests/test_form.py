"""The export form against the real sandbox: set widget values, press buttons, wait for the background action,
then assert on the form's state and the sandbox's lists. ``Button.click()`` swallows handler exceptions, so
every test asserts on what the handler produced (options, values, the error area), never on an exception."""

from __future__ import annotations

import html
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import pytest
from ipywidgets.embed import dependency_state

from klaviyo_magic import connections
from klaviyo_magic import form as open_form
from klaviyo_magic.progress import ProgressEvent
from klaviyo_magic.sandbox import Sandbox
from klaviyo_magic.widgets import ExportForm
from klaviyo_magic.widgets.parts import detect_email_column
from klaviyo_magic.widgets.views import CONSENT_TEXT

KEY = "pk_form_tests_secret_0123456789"
KEY_VAR = "FORM_TEST_KLAVIYO_KEY"
GLOBAL_SEGMENT = pd.DataFrame({"email": ["g@example.com"]})  # found by form() through the caller's globals
IMPORT = "POST /api/profile-bulk-import-jobs"


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
    """10 rows: 6 distinct valid emails, 2 duplicates (one differs by case and spaces), 2 skipped; one ltv is inf."""
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
    ltv = [10.0, np.inf, 1, 2, 3, 4, 5, 6, 7, 8]  # bob's infinite ltv cannot be sent
    return pd.DataFrame({"email": emails, "first_name": list("abcdefghij"), "ltv": ltv})


MESSY_EMAILS = {e.strip().lower() for e in messy()["email"].dropna() if "@" in e}


@pytest.fixture
def sb_profile(klaviyo_home, sandbox, monkeypatch):
    """A consented profile 'sb' whose key (from $FORM_TEST_KLAVIYO_KEY) the sandbox accepts."""
    monkeypatch.setenv(KEY_VAR, KEY)
    return connections.add("sb", api_key_env=KEY_VAR, base_url=sandbox.url, accept_privacy_terms=True)


@pytest.fixture
def nowhere(klaviyo_home, monkeypatch):
    """A consented profile 'down' pointing at a loopback port where nothing listens: Klaviyo unreachable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(KEY_VAR, KEY)
    return connections.add("down", api_key_env=KEY_VAR, base_url=f"http://127.0.0.1:{port}", accept_privacy_terms=True)


def widgets(root: w.Widget) -> list[w.Widget]:
    found = [root]
    for child in getattr(root, "children", ()):
        found += widgets(child)
    return found


def text(value: str) -> str:
    """What a person reads in a widget's HTML: blocks and cells apart, inline markup gone."""
    spaced = re.sub(r"</?(p|div|tr|td|th|table|thead|tbody|details|summary|pre|br)\b[^>]*>", " ", value)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", spaced)).split())


def error_text(form: ExportForm) -> str:
    return text(form.error.value)


def shown(form: ExportForm) -> str:
    """Everything the form shows in words: every widget's text, as one string."""
    parts = []
    for widget in widgets(form):
        for name in ("value", "description", "label", "placeholder", "tooltip"):
            value = getattr(widget, name, None)
            if isinstance(value, str):
                parts.append(text(value))
    return " | ".join(parts)


def writes(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.method in ("POST", "PATCH", "DELETE")]


def status_texts(form: ExportForm) -> list[str]:
    """Every text the status line shows from now on, in order (recorded as the form sets them)."""
    seen: list[str] = []
    form.status.observe(lambda change: seen.append(text(change["new"])), "value")
    return seen


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    """Poll until ``predicate()``; return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what} did not happen within {timeout}s"
        time.sleep(0.02)
    return time.monotonic() - started


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

    preset = ExportForm(
        {"a": people(2), "b": people(2)}, frames=["a", "b"], properties=["ltv"], list_id="Y6nRLr", mirror=True
    )
    assert preset.frames.value == ("a", "b")
    assert preset.properties.value == ("ltv",)
    assert preset.lists.value == "Y6nRLr" and preset.mirror.value
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


def test_picker_offers_every_kind_and_computes_no_lazy_frame(klaviyo_home):
    """Polars (eager, lazy), Arrow, DuckDB and Dask frames are offered; labelling them and guessing the email
    column never computes a lazy one (the spies count every computation); a preview then may."""
    import dask.dataframe as dd
    import duckdb
    import polars as pl
    import pyarrow as pa

    base = pd.DataFrame({"work_email": ["a@x.com", "b@x.com"], "email_opt_in": [True, False], "city": ["X", "Y"]})
    computed: list[str] = []

    def spy(kind: str) -> Any:
        def seen(frame: Any) -> Any:
            computed.append(kind)
            return frame

        return seen

    ns = {
        "pd_frame": base,
        "pl_frame": pl.from_pandas(base),
        "pl_lazy": pl.from_pandas(base).lazy().map_batches(spy("polars")),
        "arrow": pa.Table.from_pandas(base),
        "duck": duckdb.from_df(base),
        "dask_frame": dd.from_pandas(base, npartitions=2).map_partitions(spy("dask"), meta=base.head(0)),
    }
    form = open_form(ns)
    assert dict((value, label) for label, value in form.frames.options) == {
        "arrow": "arrow (2 rows · Arrow Table)",
        "dask_frame": "dask_frame (Dask)",
        "duck": "duck (DuckDB)",
        "pd_frame": "pd_frame (2 rows)",
        "pl_frame": "pl_frame (2 rows · Polars)",
        "pl_lazy": "pl_lazy (Polars LazyFrame)",
    }
    for name in ns:
        form.frames.value = (name,)
        assert form.email.value == "work_email", name  # text, named like email; the flag column loses
        assert form.properties.value == ("city",), name
    form.frames.value = ("pl_lazy", "dask_frame")
    assert computed == [], "labelling frames and guessing the email column must not compute a lazy frame"

    form.preview()  # a preview reads the rows: that is what it is for
    assert form.preview_result.would_send == 2 and set(computed) == {"polars", "dask"}


def test_a_reader_that_reads_once_is_not_used_up_by_a_preview(sandbox, sb_profile):
    import pyarrow as pa

    list_id = sandbox.create_list("VIP")
    table = pa.Table.from_pandas(people(3))
    ns = {"stream": pa.RecordBatchReader.from_batches(table.schema, table.to_batches())}
    form = open_form(ns, list_id=list_id)
    assert form.frames.options == (("stream (Arrow reader, read once)", "stream"),)
    form.preview_button.click()
    assert "'stream' can be read only once" in error_text(form) and not form.running
    form.export()
    assert form.wait(timeout=30).sent == 3  # the rows are still there for the export


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A local Spark session; without Java the test is skipped, except under CI."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"pyspark is not installed ({exc})")
    if not (os.environ.get("JAVA_HOME") or any(os.path.exists(f"{p}/java") for p in os.get_exec_path())):
        if os.environ.get("CI"):
            pytest.fail("Java is missing; CI must run the Spark tests", pytrace=False)
        pytest.skip("no Java runtime for Spark")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("klaviyo-magic-form-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_frame_offered_without_running_a_spark_job(klaviyo_home, spark):
    frame = spark.createDataFrame(
        [("a@x.com", True, "Ann"), ("b@x.com", False, "Bob")], ["work_email", "email_opt_in", "first_name"]
    )
    tracker = spark.sparkContext.statusTracker()
    jobs_before = set(tracker.getJobIdsForGroup(None))
    form = open_form({"customers_sdf": frame})
    assert form.frames.options == (("customers_sdf (Spark)", "customers_sdf"),)  # no count: it would be a job
    assert form.email.value == "work_email" and form.properties.value == ("first_name",)
    assert set(tracker.getJobIdsForGroup(None)) == jobs_before, "the form ran a Spark job to fill itself"


# -- properties ---------------------------------------------------------------------------------------------


def test_properties_are_tick_boxes_that_keep_the_others(sandbox, sb_profile):
    """A plain click on a multi-select dropped the preselected fields; a tick box changes only itself."""
    list_id = sandbox.create_list("VIP")
    form = open_form({"vip": people(3)}, list_id=list_id)
    boxes = form.properties.boxes
    assert [box.description for box in boxes.values()] == ["first_name", "ltv", "notes"]
    assert [box.value for box in boxes.values()] == [True, False, False]

    boxes["ltv"].value = True  # = click the "ltv" box
    assert form.properties.value == ("first_name", "ltv")
    boxes["first_name"].value = False
    assert form.properties.value == ("ltv",)
    form.properties.value = ("notes", "first_name")  # from code: the boxes follow, in the columns' order
    assert [box.value for box in boxes.values()] == [True, False, True]
    assert form.properties.value == ("first_name", "notes")

    form.export_button.click()
    form.wait(timeout=30)
    sandbox.wait_for_jobs()
    profile = sandbox.find_profile("person1@example.com")
    assert profile["first_name"] == "First1" and profile["properties"] == {"notes": "x"}


# -- connection and consent ---------------------------------------------------------------------------------


def test_privacy_terms_shown_where_the_user_agrees(klaviyo_home, sandbox, monkeypatch):
    monkeypatch.setenv(KEY_VAR, KEY)
    connections.add("fresh", api_key_env=KEY_VAR, base_url=sandbox.url)
    connections.add("ok", api_key_env=KEY_VAR, base_url=sandbox.url, accept_privacy_terms=True)
    list_id = sandbox.create_list("VIP")
    form = open_form({"vip": people(5)}, connection="fresh", list_id=list_id)
    assert form.consent.description == CONSENT_TEXT
    assert form.consent.layout.display != "none" and form.privacy_terms.layout.display != "none"
    terms = text(form.privacy_terms.value)
    assert "connection 'fresh'" in terms
    assert "customers' data" in terms and "out of this environment to Klaviyo" in terms and "You answer" in terms

    form.export_button.click()
    assert "Read them above and tick 'I agree to the data-privacy terms" in error_text(form)
    assert form.result is None and not form.running and not form.export_button.disabled
    assert writes(sandbox) == []

    form.connection.value = "ok"
    assert form.consent.layout.display == "none" and form.privacy_terms.layout.display == "none"
    form.connection.value = "fresh"
    assert form.consent.layout.display != "none"
    assert form.lists.options == ()  # lists belong to an account: a connection switch clears them

    form.consent.value = True
    assert connections.get("fresh").privacy_accepted_at is not None
    assert form.consent.disabled and error_text(form) == ""
    form.load_lists_button.click()
    form.wait(timeout=30)
    form.export_button.click()
    form.wait(timeout=30)
    assert error_text(form) == ""
    assert form.result.sent == 5


def test_no_connection_says_how_to_add_one(klaviyo_home):
    form = open_form({"vip": people(1)})
    assert form.connection.options == ()
    assert "%klaviyo_connection add" in error_text(form) and "%load_ext klaviyo_magic" in error_text(form)


# -- lists --------------------------------------------------------------------------------------------------


def test_load_lists_follows_every_page(sandbox, sb_profile):
    ids = {sandbox.create_list(f"List {n:02d}") for n in range(23)}
    form = open_form({"vip": people(1)})
    assert form.lists.options == ()  # no HTTP until asked
    assert sandbox.requests == []

    form.load_lists_button.click()
    form.wait(timeout=30)
    assert error_text(form) == ""
    assert {value for _, value in form.lists.options} == ids
    labels = [label for label, _ in form.lists.options]
    assert labels[0] == f"List 00 ({form.lists.value})" and len(labels) == 23
    assert len([r for r in sandbox.requests if r.path == "/api/lists"]) == 3  # 10 + 10 + 3
    assert "Loaded 23 lists" in form.status.value
    assert not form.load_lists_button.disabled and form.cancel_button.disabled


def test_create_list_by_name_selects_it(sandbox, sb_profile):
    form = open_form({"vip": people(1)})
    form.create_list_button.click()
    assert "Type a name for the new list" in error_text(form) and not form.running

    form.new_list_name.value = "Form VIP"
    form.create_list_button.click()
    form.wait(timeout=30)
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


# -- Klaviyo unreachable: said at once, the kernel free, Cancel works ---------------------------------------


@pytest.mark.parametrize("button", ["load_lists", "create_list", "preview", "export"])
def test_unreachable_klaviyo_is_said_at_once_and_cancel_stops_the_wait(nowhere, button):
    form = open_form({"vip": people(5)}, list_id="Y6nRLr")
    form.new_list_name.value = "Spring"
    press = getattr(form, f"{button}_button")
    started = time.monotonic()
    press.click()
    assert time.monotonic() - started < 1, "a button must not block the kernel"
    assert form.running and press.disabled and not form.cancel_button.disabled

    took = wait_for(lambda: "Klaviyo unreachable" in text(form.status.value), 2, "the retry notice")
    assert took < 2
    assert re.search(r"retrying \(\d/8\) in (\d+ s|under a second)", text(form.status.value))
    form.frames.value = ()  # the kernel is free: widgets still answer while Klaviyo is retried
    form.frames.value = ("vip",)
    assert form.email.value == "Email"

    form.cancel_button.click()
    assert wait_for(lambda: not form.running, 2, "the cancel") < 2
    assert error_text(form) == ""
    assert not press.disabled and form.cancel_button.disabled
    if button == "export":
        result = form.result
        assert result.interrupted and result.not_sent == 5 and result.sent == 0
        assert "Interrupted" in text(form.result_area.value)
        assert form.resume_button.layout.display != "none"  # the run can be continued from the form
    else:
        assert text(form.status.value).startswith("Cancelled")


# -- preview ------------------------------------------------------------------------------------------------


def test_preview_shows_the_plan_and_the_profiles_as_sent(sandbox, sb_profile):
    form = open_form({"segment": messy()}, properties=["first_name", "ltv"])
    form.preview_button.click()
    form.wait(timeout=30)
    assert error_text(form) == ""
    preview = form.preview_result
    assert (preview.total_rows, preview.would_send, preview.skipped, preview.duplicates) == (10, 6, 2, 2)
    assert sandbox.requests == []  # no list chosen: the dry run stays offline

    # The sample is the dry run's own: the profiles as they would be sent; bob's inf is not among them.
    assert list(form.sample.columns) == ["email", "first_name", "properties.ltv"]
    assert list(form.sample["email"])[:2] == ["ann@example.com", "bob@example.com"]
    assert pd.isna(form.sample["properties.ltv"].iloc[1])
    area = text(form.preview_area.value)
    assert "Preview: 6 of 10 rows would be sent. Nothing was sent." in area
    assert "to add to update unchanged not sent 6 0 0 4" in area
    assert "Not checked with Klaviyo: choose a connection and a list" in area
    profiles = text(form.preview_area.value.split("exactly as they would be sent:")[1].split("</table>")[0])
    assert profiles == "email first_name properties.ltv a•••@example.com a 10.0 b•••@example.com b " + (
        "c•••@example.org f 4.0 d•••@example.net h 6.0 e•••@example.com i 7.0"
    ), "bob's infinite ltv cannot be sent, so the preview does not show it as sent"
    assert "1 row would be sent without a value that cannot be sent" in area
    assert "4 rows would not be sent: why" in area and "malformed email 'not-an-email'" in area
    # Styled as JupyterLab styles DataFrames: pandas' table inside the rendered-HTML class.
    assert form.preview_area.value.count("<div class='jp-RenderedHTMLCommon") >= 3
    assert 'class="dataframe klaviyo-magic-table"' in form.preview_area.value

    list_id = sandbox.create_list("VIP")
    form.load_lists_button.click()
    form.wait(timeout=30)
    assert form.preview_area.value == "" and form.preview_result is None  # a new input: the old preview goes
    form.preview_button.click()
    form.wait(timeout=30)
    area = text(form.preview_area.value)
    assert f"would be sent to list '{list_id}' (VIP)" in area
    assert "Checked with Klaviyo (read-only): the key works and the list exists." in area
    assert writes(sandbox) == [] and sandbox.member_emails(list_id) == set()

    form.properties.value = ("first_name",)
    assert form.preview_area.value == "" and form.preview_result is None  # stale previews vanish


def test_preview_names_a_list_preset_by_id(sandbox, sb_profile):
    list_id = sandbox.create_list("Winter")
    form = open_form({"segment": people(3)}, list_id=list_id)
    assert form.lists.label == list_id
    form.preview()
    assert form.lists.label == f"Winter ({list_id})"  # the name beside the id, once Klaviyo said it


# -- export -------------------------------------------------------------------------------------------------


def test_export_fills_the_list_with_one_summary(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    segment = pd.concat([people(40), messy().rename(columns={"email": "Email"})], ignore_index=True)
    form = open_form({"segment": segment})
    form.load_lists_button.click()
    form.wait(timeout=30)
    form.lists.value = list_id
    form.preview()
    sandbox.delay_next(IMPORT, 0.5)  # keep the export in flight a moment
    statuses = status_texts(form)

    assert form.cancel_button.disabled and form.cancel() is False  # nothing to cancel yet
    form.export_button.click()
    assert form.running and form.export_button.disabled and form.preview_button.disabled
    assert form.load_lists_button.disabled and not form.cancel_button.disabled
    assert form.preview_area.value == ""  # one summary per run: the preview's goes
    result = form.wait(timeout=30)

    assert error_text(form) == ""
    assert result is form.result and result.sent == 46 and result.ok
    sandbox.wait_for_jobs()
    sent = set(result.report.loc[result.report["status"] == "sent", "email"])
    assert sandbox.member_emails(list_id) == sent and len(sent) == 46
    assert form.progress.value == form.progress.max == 46
    assert form.progress_label.value == "Done: 46 sent"
    assert form.progress.bar_style == "success"
    assert len(form.problems) == 4 and set(form.problems["status"]) == {"skipped", "duplicate"}
    summary = text(form.result_area.value)
    assert summary.startswith(f"Sent 46 of 50 rows to list '{list_id}' (VIP) in ")
    assert summary.count("46 of 50") == 1 and "total_rows" not in summary, "one summary per run"
    assert "2 skipped, 2 duplicates: see the table below for the reasons" in summary
    assert "4 rows not sent: why" in summary and "duplicate of segment 0 row 40" in summary
    assert statuses == [f"Exporting 50 rows to list VIP ({list_id})...", ""]
    assert not form.export_button.disabled and not form.preview_button.disabled
    assert form.cancel_button.disabled and form.cancel() is False

    form.email.value = "first_name"  # a new input: the result shown no longer matches it
    assert form.result_area.value == "" and form.progress.layout.display == "none"
    assert form.result is result  # still there for code


def test_cancel_early_stops_most_of_the_export_and_resume_finishes_it(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    big, small = people(100_000), people(5, start=200_000)  # big: ten import jobs of 10,000 profiles
    form = open_form({"big": big, "small": small}, frames=["big"], list_id=list_id)
    sandbox.delay_next(IMPORT, 0.5, count=10)  # every job takes a while to accept
    statuses = status_texts(form)
    values: list[int] = []
    labels: list[str] = []
    form.progress.observe(lambda change: values.append(change["new"]), names="value")
    form.progress_label.observe(lambda change: labels.append(change["new"]), names="value")

    def press_cancel_once_sending(change: dict[str, Any]) -> None:
        if change["new"] > 0 and not form.cancel_button.disabled:  # the bar moved: Klaviyo accepted a job
            form.cancel_button.click()

    form.progress.observe(press_cancel_once_sending, names="value")
    form.export_button.click()
    result = form.wait(timeout=60)
    form.progress.unobserve(press_cancel_once_sending, names="value")

    assert error_text(form) == "" and result.interrupted
    # The export ramps up (one request on its way, then two...): a Cancel at the first accepted job finds at
    # most two more on their way, and nothing is sent after them.
    assert 1 <= len(result.job_ids) <= 3 and len(sandbox.jobs()) == len(result.job_ids)
    assert result.sent == 10_000 * len(result.job_ids) and result.not_sent == 100_000 - result.sent
    assert result.not_sent >= 70_000
    assert (form.problems["reason"] == "not sent: the export was cancelled").all()
    assert values == sorted(values), "the bar never goes backwards"
    assert any(re.search(r"Sending [\d,]+ / 100,000 profiles accepted · \d jobs? in flight", x) for x in labels)
    assert form.progress_label.value == f"Interrupted: {result.sent:,} of 100,000 sent"
    assert form.progress.value == result.sent and form.progress.bar_style == "warning"
    summary = text(form.result_area.value)
    assert f"Interrupted: {result.sent:,} of 100,000 rows were sent to list '{list_id}' (VIP)" in summary
    assert "Continue it with: the Resume button" in summary
    assert statuses == [
        f"Exporting 100,000 rows to list {list_id}...",
        "Cancelling: no new request will be sent; waiting for the requests already on their way.",
        "",
    ]
    assert form.resume_button.layout.display != "none" and not form.resume_button.disabled

    sent_before = result.sent
    form.resume_button.click()
    resumed = form.wait(timeout=60)
    assert resumed.ok and resumed.sent == 100_000, resumed.summary()
    assert len(sandbox.jobs()) == 10, "Resume sends only what the cancelled run did not"
    assert sandbox.wait_for_jobs() is None and len(sandbox.member_emails(list_id)) == 100_000
    assert form.progress_label.value == "Done: 100,000 sent" and sent_before < 100_000
    assert form.resume_button.layout.display == "none"


def test_progress_line_and_bar(sandbox, sb_profile):
    form = open_form({"segment": people(3)})
    runner = form._runner
    runner._on_progress(ProgressEvent("sending", 20_000, 99_925, 2, in_flight=20_000, in_flight_jobs=2))
    assert form.progress_label.value == "Sending 20,000 / 99,925 profiles accepted · 2 jobs in flight (20,000)"
    assert (form.progress.value, form.progress.max) == (20_000, 99_925)
    runner._on_progress(ProgressEvent("sending", 10_000, 99_000, 1))  # a late event from another thread
    assert (form.progress.value, form.progress.max) == (20_000, 99_000)  # never backwards
    runner._on_progress(ProgressEvent("sending", 30_000, None, 3, in_flight=10_000, in_flight_jobs=1))
    assert form.progress.value == 30_000 and form.progress.max == 40_000  # input still being read
    runner._on_progress(
        ProgressEvent("retrying", 0, None, message="Klaviyo answered 503 while x; retrying (2/8) in 1 s")
    )
    assert "retrying (2/8)" in text(form.status.value) and form.progress.value == 30_000
    runner._on_progress(
        ProgressEvent("done", 60_000, 100_000, 6, outcome="interrupted", message="Interrupted: 60,000 of 100,000 sent")
    )
    assert form.progress_label.value == "Interrupted: 60,000 of 100,000 sent" and form.progress.value == 60_000


def test_empty_segment_says_so(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    form = open_form({"nobody": people(0), "bad": pd.DataFrame({"Email": ["x", None]})}, list_id=list_id)
    form.frames.value = ("nobody",)
    form.email.value = "Email"
    form.export_button.click()
    result = form.wait(timeout=30)
    assert result.total_rows == 0 and error_text(form) == ""
    assert form.progress_label.value == "Nothing to send: no row of the segment needs sending."
    assert form.progress.layout.display == "none"  # no empty bar
    assert "Nothing to send: the segment is empty." in text(form.result_area.value)
    assert "0%" not in shown(form) and "Done" not in form.progress_label.value
    assert writes(sandbox) == []


def test_export_needs_a_list(sandbox, sb_profile):
    form = open_form({"segment": people(3)})
    form.export_button.click()
    assert "Choose a Klaviyo list" in error_text(form)
    assert not form.running and form.wait() is None


# -- mirror -------------------------------------------------------------------------------------------------


def test_mirror_preview_plan_guard_and_allowance(sandbox, sb_profile):
    list_id = sandbox.create_list("Churn risk")
    ns: dict[str, Any] = {"segment": people(150)}
    form = open_form(ns, list_id=list_id, mirror=True)
    form.export()
    assert form.wait(timeout=30).sent == 150
    sandbox.wait_for_jobs()
    sandbox.add_members(list_id, ["someone.else@example.com"])  # added outside klaviyo-magic: never removed

    changed = people(30)
    changed.loc[0, "first_name"] = "Renamed"
    ns["segment"] = pd.concat([changed, people(2, start=1000)], ignore_index=True)  # 120 left, 2 new, 1 changed
    form.refresh()
    form.preview()
    preview = form.preview_result
    assert (preview.added, preview.updated, preview.unchanged, preview.removed) == (2, 1, 29, 120)
    area = text(form.preview_area.value)
    assert "to add to update unchanged to remove not sent 2 1 29 120 0" in area
    assert "120 members to remove (left the segment)" in area
    assert "An export would stop before removing anyone: 120 members left the segment" in area  # > 100
    assert "tick 'Allow removing 120 members' below, then press Export to Klaviyo again." in area
    assert "--max-removals" not in area and "allow it: max_removals" not in area
    assert form.allow_removals.layout.display != "none"
    assert form.allow_removals.description == "Allow removing 120 members" and not form.allow_removals.value
    assert writes(sandbox) == [w for w in writes(sandbox) if w.method == "POST"]  # nothing removed by a preview

    form.export()  # not allowed yet: the guard stops it before anyone is removed
    result = form.wait(timeout=30)
    assert "Mirror stopped before removing anyone: 120 members left the segment" in error_text(form)
    assert "If the segment is right, tick 'Allow removing 120 members' below" in error_text(form)
    assert result is not None and result.sent == 3 and result.removed == 0
    assert form.resume_button.layout.display == "none"  # nothing to resume: everything was sent
    assert form.allow_removals.layout.display != "none"
    assert not [r for r in sandbox.requests if r.method == "DELETE"]

    form.allow_removals.value = True
    form.export()
    result = form.wait(timeout=30)
    assert error_text(form) == "" and result.removed == 120, result.summary()
    sandbox.wait_for_jobs()
    expected = set(ns["segment"]["Email"]) | {"someone.else@example.com"}
    assert sandbox.member_emails(list_id) == expected
    assert "120 members removed" in text(form.result_area.value)
    assert form.allow_removals.layout.display == "none" and not form.allow_removals.value  # used up


def test_a_lazy_frame_is_exported_streamed_from_the_form(sandbox, sb_profile):
    """A Polars LazyFrame picked in the form goes the streamed way: read in chunks, its report a Parquet file."""
    import polars as pl

    list_id = sandbox.create_list("Lazy")
    frame = people(1_200)
    form = open_form({"lazy": pl.from_pandas(frame).lazy().filter(pl.col("ltv") >= 300)}, list_id=list_id)
    assert form.frames.value == ("lazy",) and form.email.value == "Email"
    form.export()
    result = form.wait(timeout=60)
    expected = set(frame.loc[frame.ltv >= 300, "Email"])
    assert error_text(form) == "" and result.sent == len(expected) == 1_000
    assert result.report_path is not None and result.report_path.exists() and len(result.report) == 1_000
    sandbox.wait_for_jobs()
    assert sandbox.member_emails(list_id) == expected
    assert form.progress_label.value == "Done: 1,000 sent"


def test_full_box_resends_the_unchanged_rows(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    form = open_form({"segment": people(20)}, list_id=list_id)
    form.export()
    assert form.wait(timeout=30).sent == 20
    sandbox.wait_for_jobs()

    form.preview()  # a re-run is incremental: nothing changed, nothing to send
    assert (form.preview_result.added, form.preview_result.unchanged) == (0, 20)
    form.export()
    assert (form.wait(timeout=30).sent, form.result.unchanged) == (0, 20)

    form.full.value = True  # someone edited the list in Klaviyo: send every row again
    assert form.preview_area.value == "" and form.result_area.value == ""  # the old outcome no longer applies
    form.preview()
    assert (form.preview_result.updated + form.preview_result.added, form.preview_result.unchanged) == (20, 0)
    imports = len([r for r in sandbox.requests if f"{r.method} {r.path}" == IMPORT])
    form.export()
    result = form.wait(timeout=30)
    assert (result.sent, result.unchanged) == (20, 0), result.summary()
    assert len([r for r in sandbox.requests if f"{r.method} {r.path}" == IMPORT]) == imports + 1
    assert open_form({"segment": people(2)}, full=True).full.value


# -- errors -------------------------------------------------------------------------------------------------


def test_klaviyo_error_shown_then_cleared_by_the_next_action(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    form = open_form({"segment": people(30)}, list_id=list_id)
    sandbox.fail_next(IMPORT, count=20, status=400)
    form.export_button.click()
    form.wait(timeout=30)

    assert "400 from Klaviyo while creating import job" in error_text(form)
    assert "color:#b00020" in form.error.value  # red, visible
    assert not form.export_button.disabled and not form.running
    assert form.result is not None and form.result.sent == 0
    assert len(form.problems) == 30 and set(form.problems["status"]) <= {"failed", "not_sent"}
    assert form.progress.bar_style == "danger"
    assert "Stopped by an error: 0 of 30 rows were sent" in text(form.result_area.value)
    assert sandbox.member_emails(list_id) == set()
    assert form.resume_button.layout.display == "none"  # Klaviyo took nothing: Export again, once fixed

    form.preview_button.click()  # the next action clears the old error
    form.wait(timeout=30)
    assert error_text(form) == ""


def test_refused_key_shown_in_form_without_the_key(klaviyo_home, monkeypatch):
    with Sandbox(rate_limits=False, api_keys=["pk_only_this_key_is_accepted_0000"]) as sb:
        monkeypatch.setenv(KEY_VAR, KEY)
        connections.add("prod", api_key_env=KEY_VAR, base_url=sb.url, accept_privacy_terms=True)
        list_id = sb.create_list("VIP")
        form = open_form({"segment": people(5)}, list_id=list_id)

        form.load_lists_button.click()
        form.wait(timeout=30)
        assert "401 from Klaviyo" in error_text(form) and f"env:{KEY_VAR}" in error_text(form)
        assert "Check connection 'prod'" in error_text(form)

        form.export_button.click()
        form.wait(timeout=30)
        assert "401 from Klaviyo" in error_text(form)
        assert not form.export_button.disabled
        assert form.result is not None and form.result.sent == 0
        assert_key_never_shown(form)


def test_unexpected_error_is_shown_with_its_traceback(klaviyo_home):
    class Flaky(dict):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("namespace went away")

    form = open_form(Flaky(vip=people(2)))
    assert "Unexpected RuntimeError: namespace went away" in error_text(form)
    assert "bug in klaviyo-magic" in error_text(form) and "Traceback" in error_text(form)
    assert isinstance(form.last_error, RuntimeError)


def test_variable_gone_since_refresh(klaviyo_home):
    ns: dict[str, Any] = {"vip": people(2)}
    form = open_form(ns)
    ns["vip"] = "replaced"
    form.preview_button.click()
    assert "'vip' is no longer a DataFrame" in error_text(form) and "Refresh" in error_text(form)
    assert not form.preview_button.disabled


# -- what the form shows and what ipywidgets saves ----------------------------------------------------------


def assert_key_never_shown(form: ExportForm) -> None:
    for widget in widgets(form):
        state = json.dumps(widget.get_state(), default=str)  # value, description, options, HTML...
        assert KEY not in state, type(widget).__name__
        assert KEY[3:] not in state


def test_key_never_in_any_widget(sandbox, sb_profile):
    list_id = sandbox.create_list("VIP")
    form = open_form({"segment": messy()})
    form.load_lists()
    form.new_list_name.value = "New one"
    form.create_list_button.click()
    form.wait(timeout=30)
    form.lists.value = list_id
    form.preview()
    form.export_button.click()
    form.wait(timeout=30)
    assert form.result.sent == 6
    assert_key_never_shown(form)


def test_no_customer_email_in_saved_widget_state(sandbox, sb_profile):
    """What ipywidgets saves with a notebook (the embed state: every model the form uses, with its values) holds
    no customer email, after a preview, an export with rows not sent, and a mirror run that removed members."""
    list_id = sandbox.create_list("VIP")
    ns = {"segment": messy()}
    form = open_form(ns, list_id=list_id, mirror=True, properties=["first_name", "ltv"])
    form.export()
    form.wait(timeout=30)
    sandbox.wait_for_jobs()
    ns["segment"] = messy().iloc[:6]  # dee, eve and fay leave
    form.refresh()
    form.preview()
    assert form.preview_result.removed == 3
    preview_state = saved_state(form)
    form.export()
    result = form.wait(timeout=30)
    assert result.removed == 3 and len(result.problems) == 3

    for state in (preview_state, saved_state(form)):
        for email in MESSY_EMAILS:
            assert email not in state and email.split("@")[0] + "@" not in state, email
        assert "a•••@example.com" in state and "d•••@example.net" in state  # the rows are shown, masked
        assert "not-an-email" in state  # not an email: shown as is, with its reason


def saved_state(form: ExportForm) -> str:
    """The state ipywidgets' embedding saves for the form: every model it uses, with all their values."""
    return json.dumps(dependency_state(form, drop_defaults=False), ensure_ascii=False)


def test_the_form_prints_no_name_to_type(ipython_shell, sandbox, sb_profile, monkeypatch):
    """Opened with ``%klaviyo_export``, the form is ``_N`` at best: it must not tell anyone to type
    ``form.problems`` (or any other name); the rows not sent are in the form itself."""
    monkeypatch.setattr(ipython_shell, "kernel", object(), raising=False)  # a frontend that can draw widgets
    list_id = sandbox.create_list("VIP")
    ipython_shell.user_ns["segment"] = messy()
    try:
        form = ipython_shell.run_line_magic("klaviyo_export", "")
        assert isinstance(form, ExportForm)
        form.lists.options, form.lists.value = [(list_id, list_id)], list_id
        form.preview()
        sandbox.fail_next(IMPORT, count=20, status=400)
        form.export()
        form.wait(timeout=30)
        words = shown(form)
        assert "rows not sent: why" in words
        # Klaviyo took nothing, so there is nothing to resume: no button, and no words pointing at one.
        assert "the Resume button" not in words and form.resume_button.layout.display == "none"
        for name in ("form.", ".problems", "form.problems", "_repr", "last_error", "resume=True"):
            assert name not in words, name
        assert not re.search(r"\b_\d+\b", words)
    finally:
        del ipython_shell.user_ns["segment"]
