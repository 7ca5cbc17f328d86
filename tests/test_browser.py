"""The export form in real JupyterLab, driven through Debian's Chromium with Playwright.

The sandbox runs in this process, so the test can look at the lists; JupyterLab runs as a subprocess whose
kernel reaches the sandbox through ``$KLAVIYO_SANDBOX_URL``. The test opens a notebook, runs all its cells (the
last opens the form with a bare ``%klaviyo_export``), then works the rendered widgets like a person would:

1. with a connection whose Klaviyo is unreachable, presses Load lists: the status line says Klaviyo is being
   retried within seconds, the other widgets still answer (the kernel is free), and Cancel ends the wait;
2. picks the segment, the sandbox connection and a list, ticks a property box, presses Preview (the plan, the
   profiles as sent, in a table styled like the notebook's own DataFrame output) and Export to Klaviyo (one
   summary, the rows not sent behind a click, names no one can type nowhere);
3. saves the notebook with its widget state and reads what was saved: the form is there, no customer email is;
4. starts a 100,000-row export against the rate-limited sandbox, presses Cancel as soon as Klaviyo accepted the
   first job: most rows are not sent and Klaviyo got only a few jobs; Resume then sends just the rest;
5. types a ``%klaviyo_export`` of the same 100,000 rows in a new cell and interrupts the kernel once Klaviyo
   accepted a job: the magic's bar ends with how many rows were sent, and the output names the line to resume.

Artifacts go to ``test-output/browser/``: the form after the export and after the cancel
(``form-after-export.png``, the picture in notebooks/images/form.png, and ``form-after-cancel.png``), the server's
log (``jupyterlab.log``), the browser console (``console.log``), and on failure a screenshot and the page's HTML
(``failure.png``, ``failure.html``).

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``); without it the test is skipped, except under
``CI``, where a missing browser is a failure. Playwright never downloads a browser here.
"""

from __future__ import annotations

import contextlib
import json
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
IMPORT = "POST /api/profile-bulk-import-jobs"

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
ALL_EMAILS = {email.strip().lower() for email, _, _ in CUSTOMERS if email and "@" in email}
MANY_ROWS = 100_000  # ten import jobs of 10,000 profiles
JOB = 10_000

SETUP_CELL = f"""\
# Point klaviyo-magic at the test's sandbox: its URL comes from the test, the made-up key from the environment.
import os
from klaviyo_magic import connections

# Listed first, so it is chosen first: nothing listens on port 9, as when Klaviyo cannot be reached.
connections.add("archive", api_key_env={KEY_VAR!r}, base_url="http://127.0.0.1:9", accept_privacy_terms=True)
connections.add("sandbox", api_key_env={KEY_VAR!r}, base_url=os.environ["KLAVIYO_SANDBOX_URL"],
                accept_privacy_terms=True)
"""
DATA_CELL = f"""\
import pandas as pd

customers = pd.DataFrame({CUSTOMERS!r}, columns=["email", "first_name", "ltv"])
vip = customers[customers.ltv > 500]
many = pd.DataFrame({{"email": [f"reader{{i}}@example.com" for i in range({MANY_ROWS})]}})
"""
TABLE_CELL = 'customers[["first_name", "ltv"]].head(3)  # a DataFrame as JupyterLab draws it, for comparison'
FORM_CELL = """\
%load_ext klaviyo_magic
%klaviyo_export
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
        cells=[nbformat.v4.new_code_cell(source) for source in (SETUP_CELL, DATA_CELL, TABLE_CELL, FORM_CELL)],
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
        time.sleep(0.1)
    assert label in options, f"no option {label!r} after {timeout / SECOND:.0f}s; the form offers {options}"
    select.select_option(index=options.index(label))


def _tick_box(form: Any, label: str) -> Any:
    """The tick box (``<input type=checkbox>``) of the Checkbox widget whose label reads ``label``."""
    return form.locator(".widget-checkbox").filter(has=form.page.get_by_text(label, exact=True)).locator("input")


def _button(form: Any, text: str) -> Any:
    return form.locator("button.widget-button", has_text=text)


def _text(locator: Any) -> str:
    """The visible text of the first element ``locator`` finds, "" while there is none (without waiting)."""
    return " ".join(locator.first.inner_text().split()) if locator.count() else ""


def _wait_for_text(form: Any, css: str, pattern: str, timeout: float, *, errors: bool = True) -> re.Match[str]:
    """Poll the text of ``css`` in the form until it matches ``pattern``. An error shown in the form ends the
    wait at once, quoting it (unless ``errors`` is False): the form reports every failure there."""
    deadline = time.monotonic() + timeout / SECOND
    while True:
        text = _text(form.locator(css))
        found = re.search(pattern, text)
        if found:
            return found
        error = _text(form.locator(".klaviyo-magic-error")) if errors else ""
        if error:
            raise AssertionError(f"the form shows an error while waiting for {pattern!r}: {error!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in {css} after {timeout / SECOND:.0f}s; it shows {text!r}")
        time.sleep(0.1)


def _until(condition: Any, seconds: float, what: str) -> None:
    """Poll ``condition()``: the page follows the kernel a moment later."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


PROGRESS = ".widget-hbox:has(.widget-hprogress)"  # the progress bar and its label
STATUS = ".klaviyo-magic-status"


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
    _menu(page, "Run", r"^Run All Cells")


def _menu(page: Any, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^{menu}$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(item)).first.click()


def test_export_form_in_jupyterlab(
    chromium: Path, sandbox_lists: Any, lab: JupyterLab, page: Any, tmp_path: Path
) -> None:
    sb, lists = sandbox_lists
    with artifacts_on_failure(page):
        _run_all_cells(page, lab)
        form = page.locator(".widget-vbox").filter(has_text="Export DataFrames to a Klaviyo list").first
        _button(form, "Export to Klaviyo").wait_for(timeout=SLOW)
        lab.watch()
        _klaviyo_unreachable(form)
        _export_the_vip_segment(page, form, sb, lists)
        _saved_widget_state_has_no_email(page, tmp_path / "notebooks" / NOTEBOOK)
        _cancel_early_then_resume(form, sb, lists)
        _interrupt_a_magic_export(page, sb, lists)
        assert KEY not in page.content(), "the API key must never reach the page"


def _klaviyo_unreachable(form: Any) -> None:
    """Load lists from a connection nobody answers: said within seconds, the kernel free meanwhile, Cancel works."""
    _wait_for_text(form, STATUS, r"Found 3 DataFrames in the notebook", 10 * SECOND)
    connection = _labelled(form, "dropdown", "Connection")
    assert _options(connection) == ["archive", "sandbox"]  # "archive" first, and chosen: nothing answers there

    started = time.monotonic()
    _button(form, "Load lists").click()
    _wait_for_text(form, STATUS, r"Klaviyo unreachable while reading page 1 of the lists; retrying \(\d/8\)", 5000)
    assert time.monotonic() - started < 4, "the retry notice must come within a couple of seconds"
    # While Klaviyo is retried the kernel still answers: picking a DataFrame fills the email column's choices.
    _choose(_labelled(form, "select-multiple", "DataFrames"), f"vip ({VIP_ROWS} rows)", timeout=10 * SECOND)
    _choose(_labelled(form, "dropdown", "Email column"), "email", timeout=10 * SECOND)
    assert _button(form, "Load lists").is_disabled() and _button(form, "Cancel").is_enabled()

    _button(form, "Cancel").click()
    _wait_for_text(form, STATUS, r"Cancelled: nothing was changed\.", 5 * SECOND)
    _until(lambda: _button(form, "Load lists").is_enabled() and _button(form, "Cancel").is_disabled(), 5, "buttons")


def _export_the_vip_segment(page: Any, form: Any, sb: Sandbox, lists: dict[str, str]) -> None:
    vip_list = lists["VIP customers"]
    _choose(_labelled(form, "dropdown", "Connection"), "sandbox")
    _button(form, "Load lists").click()
    _wait_for_text(form, STATUS, r"Loaded 2 lists from Klaviyo\.", 30 * SECOND)
    klaviyo_list = _labelled(form, "dropdown", "Klaviyo list")
    assert _options(klaviyo_list) == [f"Newsletter ({lists['Newsletter']})", f"VIP customers ({vip_list})"]
    _choose(klaviyo_list, f"VIP customers ({vip_list})")

    # Properties are tick boxes: first_name comes ticked; a plain click on ltv adds it and keeps first_name.
    assert _tick_box(form, "first_name").is_checked() and not _tick_box(form, "ltv").is_checked()
    _tick_box(form, "ltv").click()
    assert _tick_box(form, "ltv").is_checked() and _tick_box(form, "first_name").is_checked()

    _button(form, "Preview").click()
    pattern = (
        rf"Preview: 4 of {VIP_ROWS} rows would be sent to list '{vip_list}' \(VIP customers\)\. Nothing was sent\."
    )
    _wait_for_text(form, ".klaviyo-magic-preview", pattern, 30 * SECOND)
    preview = form.locator(".klaviyo-magic-preview")
    plan = [" ".join(row.split()) for row in preview.locator("table").first.locator("tr").all_inner_texts()]
    assert plan == ["to add to update unchanged not sent", "4 0 0 3"]
    sample = preview.locator("table").nth(1)
    assert " ".join(sample.locator("thead").inner_text().split()) == "email first_name properties.ltv"
    assert " ".join(sample.locator("tbody tr").first.inner_text().split()) == "a•••@example.com Ann 640.0"
    _styled_like_dataframes(page, sample)
    assert sb.member_emails(vip_list) == set(), "Preview must send nothing"

    _until(lambda: _button(form, "Cancel").is_disabled(), 5, "Cancel is for a running action only")
    _button(form, "Export to Klaviyo").click()
    pattern = (
        rf"Sent 4 of {VIP_ROWS} rows to list '{vip_list}' \(VIP customers\) in [\d.]+s\. 2 skipped, 1 duplicate: "
        "see the table below for the reasons."
    )
    _wait_for_text(form, ".klaviyo-magic-result", pattern, 60 * SECOND)
    _wait_for_text(form, PROGRESS, r"^Done: 4 sent$", 10 * SECOND)
    assert form.locator(f"{PROGRESS} .progress-bar-success").count() == 1  # green: nothing failed
    _until(lambda: _text(form.locator(STATUS)) == "", 5, "one summary per run: the status line says no more")
    assert _text(form.locator(".klaviyo-magic-error")) == ""
    assert form.locator(".klaviyo-magic-preview").count() == 0  # one summary per run: the export's

    # The rows not sent are in the form, behind a click; the form names nothing to type.
    rows = form.locator(".klaviyo-magic-problems")
    assert not rows.locator("table").is_visible()
    rows.locator("summary").click()
    table = [" ".join(row.split()) for row in rows.locator("tbody tr").all_inner_texts()]
    assert table == [
        "3 a•••@example.com duplicate duplicate of segment 0 row 0",
        "4 not-an-email skipped malformed email 'not-an-email'",
        "5 skipped missing email",
    ]
    words = form.inner_text()
    assert not re.search(r"\bform\.|\.problems|\b_\d+\b", words), "the form must not tell anyone to type a name"
    form.screenshot(path=str(OUTPUT / "form-after-export.png"))

    assert sb.member_emails(vip_list) == EXPECTED_MEMBERS
    assert sb.member_emails(lists["Newsletter"]) == set()
    fay = sb.find_profile("fay@example.com")
    assert fay["first_name"] == "Fay" and fay["properties"] == {"ltv": 2500.0}  # both ticked properties went


def _styled_like_dataframes(page: Any, table: Any) -> None:
    """The form's table looks like the notebook's own DataFrame output: same computed styles, cell by cell."""
    reference = page.locator(".jp-OutputArea-output table.dataframe").first
    script = """(table) => {
        const pick = (element, names) => {
            const style = getComputedStyle(element);
            return Object.fromEntries(names.map((name) => [name, style.getPropertyValue(name)]));
        };
        const cell = ["font-size", "padding-left", "padding-right", "text-align", "border-bottom-style",
                      "line-height", "vertical-align"];
        return {
            table: pick(table, ["border-collapse", "border-spacing", "font-size", "table-layout", "margin-left"]),
            header: pick(table.querySelector("thead th"), [...cell, "font-weight", "border-bottom-width"]),
            cell: pick(table.querySelector("tbody td"), cell),
            odd: pick(table.querySelector("tbody tr:nth-child(odd)"), ["background-color"]),
            even: pick(table.querySelector("tbody tr:nth-child(even)"), ["background-color"]),
        };
    }"""
    ours, theirs = table.evaluate(script), reference.evaluate(script)
    assert ours == theirs, f"the form's table is styled differently from a DataFrame: {ours} vs {theirs}"
    assert ours["odd"]["background-color"] != ours["even"]["background-color"]  # the zebra rows, really styled


def _saved_widget_state_has_no_email(page: Any, path: Path) -> None:
    """Save the notebook with its widget state (JupyterLab's "Save Widget State Automatically" is on) and read
    what was saved: the form's models, with what it showed, and no customer email."""
    before = path.stat().st_mtime_ns
    _menu(page, "File", r"^Save Notebook")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before or "widgets" not in nbformat.read(path, as_version=4).metadata:
        assert time.monotonic() < deadline, "the notebook was not saved with its widget state"
        time.sleep(0.25)
    saved = nbformat.read(path, as_version=4).metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    state = json.dumps(saved, ensure_ascii=False)
    assert "Export to Klaviyo" in state and "Sent 4 of 7 rows" in state  # the form and its result are saved
    assert "a•••@example.com" in state  # the rows not sent, masked
    for email in ALL_EMAILS:
        assert email not in state, f"a customer email was saved with the widget state: {email}"
    assert KEY not in state


def _cancel_early_then_resume(form: Any, sb: Sandbox, lists: dict[str, str]) -> None:
    """A 100,000-row export with Klaviyo slow to accept jobs; Cancel once the first job was accepted. The
    export ramps up (one request on its way, then two...), so most of it is never sent; Resume sends the rest."""
    newsletter = lists["Newsletter"]
    jobs_before = len(sb.jobs())
    _choose(_labelled(form, "select-multiple", "DataFrames"), f"many ({MANY_ROWS:,} rows)")
    _choose(_labelled(form, "dropdown", "Klaviyo list"), f"Newsletter ({newsletter})")
    _until(lambda: _text(form.locator(".klaviyo-magic-result")) == "", 5, "a new input: the old result is gone")
    sb.delay_next(IMPORT, 2.0, count=MANY_ROWS // JOB)

    _button(form, "Export to Klaviyo").click()
    _wait_for_text(form, PROGRESS, rf"Sending 0 / {MANY_ROWS:,} profiles accepted · 1 job in flight", 60 * SECOND)
    _wait_for_text(form, PROGRESS, rf"Sending [1-9][\d,]* / {MANY_ROWS:,} profiles accepted", 60 * SECOND)
    _button(form, "Cancel").click()

    pattern = rf"^Interrupted: ([\d,]+) of {MANY_ROWS:,} sent$"
    sent = int(_wait_for_text(form, PROGRESS, pattern, 60 * SECOND).group(1).replace(",", ""))
    summary = _wait_for_text(form, ".klaviyo-magic-result", r"([\d,]+) not sent", 10 * SECOND)  # a busy CI host
    not_sent = int(summary.group(1).replace(",", ""))
    jobs = len(sb.jobs()) - jobs_before
    assert sent + not_sent == MANY_ROWS and not_sent >= 0.7 * MANY_ROWS, f"{sent:,} sent after an early Cancel"
    assert sent == jobs * JOB and jobs <= 3, f"Klaviyo got {jobs} jobs after an early Cancel"
    assert form.locator(f"{PROGRESS} .progress-bar-warning").count() == 1  # orange: not every row was sent
    _until(lambda: _button(form, "Cancel").is_disabled() and _button(form, "Resume").is_visible(), 5, "Resume")
    form.screenshot(path=str(OUTPUT / "form-after-cancel.png"))

    _button(form, "Resume").click()
    _wait_for_text(form, PROGRESS, rf"^Done: {MANY_ROWS:,} sent$", 60 * SECOND)
    assert len(sb.jobs()) - jobs_before == MANY_ROWS // JOB, "Resume sends only what the cancelled run did not"
    sb.wait_for_jobs()
    assert len(sb.member_emails(newsletter)) == MANY_ROWS


def _interrupt_a_magic_export(page: Any, sb: Sandbox, lists: dict[str, str]) -> None:
    """A 100,000-row ``%klaviyo_export`` in a new cell, stopped with Kernel > Interrupt Kernel (a notebook's
    Ctrl-C) once Klaviyo accepted a job: the bar ends saying how many rows were sent, and the output names the
    exact line that continues the run."""
    vip = lists["VIP customers"]
    line = f"%klaviyo_export many --email email --list {vip} --connection sandbox"
    sb.delay_next(IMPORT, 2.0, count=MANY_ROWS // JOB)
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    before = cells.count()
    cells.last.locator(".jp-InputPrompt").click()  # select the form's cell, in command mode
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below it
    page.keyboard.press("Enter")
    page.keyboard.type(line)
    page.keyboard.press("Shift+Enter")
    cell = cells.nth(before)
    _wait_for_text(cell, ".jp-OutputArea", rf"Sending.*\b[1-9][\d,]*/{MANY_ROWS:,}\b", 60 * SECOND, errors=False)
    _menu(page, "Kernel", r"^Interrupt Kernel")
    ended = _wait_for_text(cell, ".jp-OutputArea", rf"Interrupted: ([\d,]+) of {MANY_ROWS:,} sent", 60 * SECOND,
                           errors=False)  # fmt: skip
    sent = int(ended.group(1).replace(",", ""))
    assert 0 < sent <= MANY_ROWS // 2, f"{sent:,} sent after an early interrupt: it should stop most of the export"
    _wait_for_text(cell, ".jp-OutputArea", re.escape(f"Continue it with: {line} --resume"), 30 * SECOND, errors=False)
    assert cell.locator(".progress-bar-danger").count() == 1  # red: the export stopped before the end
    cell.screenshot(path=str(OUTPUT / "magic-after-interrupt.png"))
