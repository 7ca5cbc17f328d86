"""The export form in real JupyterLab, driven through Debian's Chromium with Playwright.

The sandbox runs in this process, so the test can look at the lists; JupyterLab runs as a subprocess whose
kernel reaches the sandbox through ``$KLAVIYO_SANDBOX_URL``. The test opens a notebook, runs all its cells,
then works the rendered widgets like a person would: picks a DataFrame, the email column, the connection and
a list (after Load lists), presses Preview and Export to Klaviyo, and checks the page and the sandbox. Then it
starts a slowed export of a big DataFrame, presses Cancel once the bar moves, and checks that the form shows the
partial outcome and that the sandbox got exactly the rows the form says were sent.

Artifacts go to ``test-output/browser/``: the form after the export and after the cancel
(``form-after-export.png``, ``form-after-cancel.png``), the server's log (``jupyterlab.log``), the browser
console (``console.log``), and on failure a screenshot and the page's HTML (``failure.png``, ``failure.html``).

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``); without it the test is skipped, except under
``CI``, where a missing browser is a failure. Playwright never downloads a browser here.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyterlab_support import JupyterLab

from klaviyo_magic.sandbox import Sandbox

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "browser"
NOTEBOOK = "form-in-the-browser.ipynb"
KEY = "pk_browser_test_made_up_0123456789"
KEY_VAR = "BROWSER_TEST_KLAVIYO_KEY"
SECOND = 1000  # Playwright counts in milliseconds
SLOW = 120 * SECOND  # kernel start and first widget render on a busy 2-core machine

# (email, first_name, ltv). The segment is ltv > 500: 7 rows, of which 4 are sent, 2 skipped (malformed,
# missing) and 1 duplicate (Ann again, in other case and with spaces).
CUSTOMERS = [
    ("ann@example.com", "Ann", 640.0),
    ("bob@example.com", "Bob", 120.0),
    ("cy@example.org", "Cy", 980.5),
    ("  ANN@Example.com ", "Ann", 700.0),
    ("not-an-email", "Nobody", 800.0),
    (None, "Ghost", 900.0),
    ("dee@example.net", "Dee", 510.0),
    ("eve@example.com", "Eve", 99.0),
    ("fay@example.com", "Fay", 2500.0),
]
VIP_ROWS = sum(1 for _, _, ltv in CUSTOMERS if ltv > 500)
EXPECTED_MEMBERS = {"ann@example.com", "cy@example.org", "dee@example.net", "fay@example.com"}
MANY_ROWS = 100_000  # ten import jobs of 10,000 profiles: more than the export sends at once
JOB = 10_000

SETUP_CELL = f"""\
# Point klaviyo-magic at the test's sandbox: its URL comes from the test, the made-up key from the environment.
import os
from klaviyo_magic import connections

connections.add("sandbox", api_key_env={KEY_VAR!r}, base_url=os.environ["KLAVIYO_SANDBOX_URL"],
                accept_privacy_terms=True)
# A second profile, listed first, so choosing the connection is a real choice (nothing listens on port 9).
connections.add("archive", api_key_env={KEY_VAR!r}, base_url="http://127.0.0.1:9", accept_privacy_terms=True)
"""
DATA_CELL = f"""\
import pandas as pd

customers = pd.DataFrame({CUSTOMERS!r}, columns=["email", "first_name", "ltv"])
vip = customers[customers.ltv > 500]
many = pd.DataFrame({{"email": [f"reader{{i}}@example.com" for i in range({MANY_ROWS})]}})
"""
FORM_CELL = """\
import klaviyo_magic

klaviyo_magic.form()
"""


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium, or a skip saying how to get it; under ``CI`` a missing browser is a failure."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright Python package is not installed (pip install -e '.[test]')"
    if problem is None:
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI is set, so the browser test must run", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def sandbox_lists() -> Iterator[tuple[Sandbox, dict[str, str]]]:
    with Sandbox() as sb:  # Klaviyo's rate limits on, as in the real thing
        lists = {name: sb.create_list(name) for name in ("Newsletter", "VIP customers")}
        yield sb, lists


@pytest.fixture
def lab(chromium: Path, tmp_path: Path, sandbox_lists: tuple[Sandbox, dict[str, str]]) -> Iterator[JupyterLab]:
    sb, _ = sandbox_lists
    root = tmp_path / "notebooks"
    root.mkdir()
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in (SETUP_CELL, DATA_CELL, FORM_CELL)],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.write(notebook, root / NOTEBOOK)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for stale in (*OUTPUT.glob("failure.*"), *OUTPUT.glob("form-after-*.png")):
        stale.unlink(missing_ok=True)
    server = JupyterLab(
        root_dir=root,
        state_dir=tmp_path / "jupyter",
        log_path=OUTPUT / "jupyterlab.log",
        env={
            "KLAVIYO_MAGIC_HOME": str(tmp_path / "klaviyo-home"),
            "KLAVIYO_SANDBOX_URL": sb.url,
            KEY_VAR: KEY,
        },
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(chromium: Path, lab: JupyterLab) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        console: list[str] = []  # the page's console, kept for debugging (widget render errors land there)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.set_default_timeout(60 * SECOND)
            yield page
        finally:
            browser.close()
            (OUTPUT / "console.log").write_text("\n".join(console) + "\n")


@contextlib.contextmanager
def artifacts_on_failure(page: Any) -> Iterator[None]:
    """On any failure inside, keep what the page showed: a full screenshot and its HTML."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(OUTPUT / "failure.png"), full_page=True)
        with contextlib.suppress(Exception):
            (OUTPUT / "failure.html").write_text(page.content())
        raise


# -- finding widgets by what a person sees ------------------------------------------------------------------


def _labelled(form: Any, kind: str, label: str) -> Any:
    """The ``<select>`` of the ipywidgets ``kind`` (dropdown, select-multiple) whose label reads ``label``."""
    widget = form.locator(f".widget-{kind}").filter(has=form.page.get_by_text(label, exact=True))
    return widget.locator("select")


def _options(select: Any) -> list[str]:
    """The option labels as a person reads them (ipywidgets writes the spaces of dropdown labels as NBSP)."""
    return [" ".join(text.split()) for text in select.locator("option").all_inner_texts()]


def _choose(select: Any, label: str, timeout: float = 30 * SECOND) -> None:
    """Select the option ``label``, waiting for the kernel to offer it (options follow earlier choices)."""
    deadline = time.monotonic() + timeout / SECOND
    while (label not in (options := _options(select))) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert label in options, f"no option {label!r} after {timeout / SECOND:.0f}s; the form offers {options}"
    select.select_option(index=options.index(label))


def _button(form: Any, text: str) -> Any:
    return form.locator("button.widget-button", has_text=text)


def _text(locator: Any) -> str:
    """The visible text of the first element ``locator`` finds, "" while there is none (without waiting)."""
    return " ".join(locator.first.inner_text().split()) if locator.count() else ""


def _wait_for_text(form: Any, css: str, pattern: str, timeout: float) -> re.Match[str]:
    """Poll the text of ``css`` in the form until it matches ``pattern``. An error shown in the form ends the
    wait at once, quoting it: the form reports every failure there, and nothing else will come."""
    deadline = time.monotonic() + timeout / SECOND
    while True:
        text = _text(form.locator(css))
        found = re.search(pattern, text)
        if found:
            return found
        error = _text(form.locator(".klaviyo-magic-error"))
        if error:
            raise AssertionError(f"the form shows an error while waiting for {pattern!r}: {error!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in {css} after {timeout / SECOND:.0f}s; it shows {text!r}")
        time.sleep(0.25)


PROGRESS = ".widget-hbox:has(.widget-hprogress)"  # the progress bar and its label


def _run_all_cells(page: Any, lab: JupyterLab) -> None:
    page.goto(lab.lab_url(NOTEBOOK))
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=SLOW)
    # Running cells before the kernel is connected would fail: wait for the server and the page to say idle.
    deadline = time.monotonic() + SLOW / SECOND
    while "idle" not in lab.kernel_states():
        assert time.monotonic() < deadline, "the notebook's kernel did not start"
        time.sleep(0.5)
    page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for(timeout=SLOW)
    lab.watch()
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()


def test_export_form_in_jupyterlab(chromium: Path, sandbox_lists: Any, lab: JupyterLab, page: Any) -> None:
    sb, lists = sandbox_lists
    with artifacts_on_failure(page):
        _run_all_cells(page, lab)
        form = page.locator(".widget-vbox").filter(has_text="Export DataFrames to a Klaviyo list").first
        _button(form, "Export to Klaviyo").wait_for(timeout=SLOW)
        lab.watch()
        _export_the_vip_segment(form, sb, lists)
        _cancel_a_slow_export(form, sb, lists)
        assert KEY not in page.content(), "the API key must never reach the page"


def _export_the_vip_segment(form: Any, sb: Sandbox, lists: dict[str, str]) -> None:
    vip_list = lists["VIP customers"]
    # DataFrames: three in the notebook, so nothing is preselected; pick the segment.
    _wait_for_text(form, ".klaviyo-magic-status", r"Found 3 DataFrames in the notebook", 10 * SECOND)
    frames = _labelled(form, "select-multiple", "DataFrames")
    assert _options(frames) == [
        f"customers ({len(CUSTOMERS)} rows)",
        f"many ({MANY_ROWS:,} rows)",
        f"vip ({VIP_ROWS} rows)",
    ]
    _choose(frames, f"vip ({VIP_ROWS} rows)")
    _choose(_labelled(form, "dropdown", "Email column"), "email")  # offered once a DataFrame is chosen

    # Connections are listed by name: "archive" comes first and points nowhere; choose the sandbox.
    connection = _labelled(form, "dropdown", "Connection")
    assert _options(connection) == ["archive", "sandbox"]
    _choose(connection, "sandbox")

    _button(form, "Load lists").click()
    _wait_for_text(form, ".klaviyo-magic-status", r"Loaded 2 lists from Klaviyo\.", 30 * SECOND)
    klaviyo_list = _labelled(form, "dropdown", "Klaviyo list")
    assert _options(klaviyo_list) == [f"Newsletter ({lists['Newsletter']})", f"VIP customers ({vip_list})"]
    _choose(klaviyo_list, f"VIP customers ({vip_list})")

    _button(form, "Preview").click()
    pattern = rf"Preview: 4 of {VIP_ROWS} rows would be sent\. Nothing was sent\."
    _wait_for_text(form, ".klaviyo-magic-preview", pattern, 30 * SECOND)
    counts = form.locator(".klaviyo-magic-preview table").first.locator("tr").all_inner_texts()
    assert [" ".join(row.split()) for row in counts] == [
        f"rows {VIP_ROWS}",
        "would send 4",
        "skipped 2",
        "duplicates 1",
    ]
    assert sb.member_emails(vip_list) == set(), "Preview must send nothing"

    assert _button(form, "Cancel").is_disabled(), "Cancel is for a running export only"
    _button(form, "Export to Klaviyo").click()
    pattern = rf"Sent 4 of {VIP_ROWS} rows to list '{vip_list}' in [\d.]+s\. 2 skipped, 1 duplicate"
    _wait_for_text(form, ".klaviyo-magic-result", pattern, 60 * SECOND)
    _wait_for_text(form, PROGRESS, r"Done: 4 / 4", 10 * SECOND)
    assert form.locator(f"{PROGRESS} .progress-bar-success").count() == 1  # green: nothing failed
    assert _text(form.locator(".klaviyo-magic-error")) == ""
    _wait_for_text(form, ".klaviyo-magic-status", r"Export finished: 4 of 7 rows were sent\.", 10 * SECOND)
    form.screenshot(path=str(OUTPUT / "form-after-export.png"))

    assert sb.member_emails(vip_list) == EXPECTED_MEMBERS
    assert sb.member_emails(lists["Newsletter"]) == set()
    assert sb.find_profile("fay@example.com")["first_name"] == "Fay"  # the ticked property went along


def _cancel_a_slow_export(form: Any, sb: Sandbox, lists: dict[str, str]) -> None:
    """Export ``many`` with Klaviyo slow to accept jobs, press Cancel once the bar moves, check the outcome."""
    jobs_before = len(sb.jobs())
    _choose(_labelled(form, "select-multiple", "DataFrames"), f"many ({MANY_ROWS:,} rows)")
    _choose(_labelled(form, "dropdown", "Klaviyo list"), f"Newsletter ({lists['Newsletter']})")
    # The first job is accepted at once, so the bar moves; every other takes 4 s, time enough to press Cancel
    # while they are on their way. Jobs not yet sent by then must never be.
    sb.delay_next("POST /api/profile-bulk-import-jobs", 0.1)
    sb.delay_next("POST /api/profile-bulk-import-jobs", 4.0, count=MANY_ROWS // JOB)

    _button(form, "Export to Klaviyo").click()
    _wait_for_text(form, PROGRESS, rf"Sending [\d,]+ / {MANY_ROWS:,}", 60 * SECOND)
    _button(form, "Cancel").click()

    pattern = rf"Export cancelled: ([\d,]+) of {MANY_ROWS:,} rows were sent before it stopped"
    sent = int(_wait_for_text(form, ".klaviyo-magic-status", pattern, 60 * SECOND).group(1).replace(",", ""))
    _wait_for_text(form, ".klaviyo-magic-result", rf"Interrupted: {sent:,} of {MANY_ROWS:,} rows were sent", SECOND)
    _wait_for_text(form, PROGRESS, rf"Cancelled: {sent:,} / {MANY_ROWS:,} sent", SECOND)
    assert form.locator(f"{PROGRESS} .progress-bar-warning").count() == 1  # orange: not every row was sent
    assert _button(form, "Cancel").is_disabled() and _button(form, "Export to Klaviyo").is_enabled()
    form.screenshot(path=str(OUTPUT / "form-after-cancel.png"))

    jobs = len(sb.jobs()) - jobs_before
    assert 0 < sent < MANY_ROWS, f"the cancel should have stopped the export part-way; {sent:,} rows were sent"
    assert sent == jobs * JOB, "every job Klaviyo accepted is counted as sent, and nothing more"
    sb.wait_for_jobs()
    assert len(sb.member_emails(lists["Newsletter"])) == sent
