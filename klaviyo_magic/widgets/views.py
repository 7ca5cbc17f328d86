"""What the export form shows, as text and HTML: the preview's plan, one summary per run, the rows not sent, the
progress line, errors. No widgets here, so each view can be tested on its own.

Everything shown goes into widget values, and widget values are what ipywidgets saves with a notebook (JupyterLab's
"Save Widget State Automatically", nbconvert's executed notebooks): so customer emails are masked in every view
(``a•••@example.com``), and keys are scrubbed. The full rows stay in Python (``ExportForm.problems`` and the
results), which is never saved with the notebook.
"""

from __future__ import annotations

import html
import re
import traceback

import pandas as pd

from ..connections.keys import redact
from ..errors import KlaviyoMagicError
from ..export import mirror
from ..export.mirror import RemovalLimitError
from ..progress import ProgressEvent, describe
from ..result import ExportResult

ERROR_STYLE = "color:#b00020;border-left:3px solid #b00020;padding:2px 8px;margin:4px 0"
NOTE_STYLE = "color:var(--jp-ui-font-color2, #616161);font-size:var(--jp-ui-font-size0, 11px)"
TABLE_ROWS = 20  # rows of a table shown in the form; the rest are counted
CONSENT_TEXT = "I agree to the data-privacy terms for this connection"
PRIVACY_TERMS = (
    "Exporting sends your customers' data, their email addresses and the properties you tick, out of this "
    "environment to Klaviyo, into the account this connection's key belongs to, where Klaviyo stores and processes "
    "it. You answer for that transfer: that you may share this data with Klaviyo (your customers' consent, your "
    "privacy policy, the data-protection laws that apply to you) and that the key is yours to use."
)
# Where the result's summary points for the rows not sent and for continuing a run cut short: the form itself,
# so it never tells anyone to type a name (a variable the form cannot know it is bound to).
WHERE = "the table below"
RESUME = "the Resume button"

# An email address anywhere in a text. Apostrophes are left out of the local part so the HTML around a value
# (attribute quotes, &#x27;) is never taken for part of an address.
_EMAIL = re.compile(r"([A-Za-z0-9_%+\-][A-Za-z0-9._%+\-]*)@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)")


def mask_emails(text: str) -> str:
    """Every email address in ``text`` with its local part hidden but the first letter: ``a•••@example.com``.
    The domain stays: it is what shows a typo (``gmial.com``) and says little about a person."""
    return _EMAIL.sub(lambda found: f"{found.group(1)[0]}•••@{found.group(2)}", text)


def safe(text: str) -> str:
    """``text`` fit for a widget value: no key, no customer email."""
    return mask_emails(redact(text))


# -- tables -------------------------------------------------------------------------------------------------


def table_html(frame: pd.DataFrame, *, index: bool = False) -> str:
    """A DataFrame as JupyterLab draws DataFrames: pandas' ``dataframe`` table inside ``jp-RenderedHTMLCommon``,
    the class whose stylesheet gives notebook outputs their tables (zebra rows, right-aligned numbers). Values
    are escaped, emails masked."""
    shown = frame.head(TABLE_ROWS)
    table = shown.to_html(index=index, escape=True, na_rep="", border=0, classes="klaviyo-magic-table")
    # Left-aligned, as JupyterLab aligns the tables of cell outputs (.jp-OutputArea-output.jp-RenderedHTMLCommon).
    table = table.replace("<table ", "<table style='margin-left:0;margin-right:0' ", 1)
    more = len(frame) - len(shown)
    note = f"<p style='{NOTE_STYLE}'>... and {more:,} more.</p>" if more > 0 else ""
    return f"<div class='jp-RenderedHTMLCommon klaviyo-magic-table-box'>{safe(table)}</div>{note}"


def details_html(summary: str, frame: pd.DataFrame, css: str) -> str:
    """A table behind a click (``<details>``): closed, it takes one line."""
    return f"<details class='{css}'><summary>{html.escape(summary)}</summary>{table_html(frame)}</details>"


def problems_html(result: ExportResult, *, preview: bool) -> str:
    """The rows not sent (skipped, duplicate, not sent, failed) and why, behind a click."""
    problems = result.problems
    if not len(problems):
        return ""
    columns = [c for c in ("segment", "index", "email", "status", "reason") if c in problems]
    if "segment" in columns and problems["segment"].nunique() <= 1 and result.report["segment"].nunique() <= 1:
        columns.remove("segment")  # one segment: its number says nothing
    rows = f"{len(problems):,} row{'s' if len(problems) != 1 else ''}"
    label = f"{rows} would not be sent" if preview else f"{rows} not sent"
    return details_html(f"{label}: why", problems[columns], "klaviyo-magic-problems")


def partial_html(result: ExportResult) -> str:
    """The rows sent (or to send) without a value that cannot be sent, such as an infinite number, and which."""
    if not result.partially_sent:
        return ""
    report = result.report
    rows = report[report["status"].isin(("sent", "would_send")) & report["reason"].notna()]
    rows = rows[rows["reason"].astype(str).str.startswith("sent without")]
    columns = [
        c for c in ("segment", "index", "email", "reason") if c in rows and (c != "segment" or len(set(rows[c])) > 1)
    ]
    count = f"{result.partially_sent:,} row{'s' if result.partially_sent != 1 else ''}"
    label = f"{count} {'would be' if result.dry_run else 'were'} sent without a value that cannot be sent: which"
    return details_html(label, rows[columns], "klaviyo-magic-partial")


def removals_html(result: ExportResult) -> str:
    removals = result.removals
    if not len(removals):
        return ""
    who = f"{len(removals):,} member{'s' if len(removals) != 1 else ''}"
    label = f"{who} to remove (left the segment)" if result.dry_run else f"{who} who left the segment"
    return details_html(label, removals, "klaviyo-magic-removals")


# -- the preview --------------------------------------------------------------------------------------------


def plan(result: ExportResult) -> dict[str, int]:
    """What a run would do, as the preview's table shows it."""
    numbers = {"to add": result.added, "to update": result.updated, "unchanged": result.unchanged}
    if result.mode == "mirror":
        numbers["to remove"] = result.removed
    numbers["not sent"] = result.skipped + result.duplicates
    return numbers


def guard_warning(result: ExportResult) -> str | None:
    """The mirror guard's message when a real run of this dry run would stop before removing anyone."""
    found = next((w for w in result.warnings if w.startswith(mirror.WOULD_STOP)), None)
    return found.replace(mirror.WOULD_STOP, mirror.STOPPED, 1) if found else None


# The fix the mirror guard's message gives is Python's and the CLI's; in the form, the fix is a tick box.
_GUARD_FIX = re.compile(r"allow it(?: for this run)?: max_removals=(\d+) \(--max-removals \d+\)\.?")


def guard_message(message: str, *, preview: bool = False) -> str:
    """The guard's one line, with the form's way to allow the removals (``Allow removing 120 members``)."""
    text = _GUARD_FIX.sub(
        lambda found: (
            f"tick 'Allow removing {int(found.group(1)):,} members' below, then press Export to Klaviyo again."
        ),
        message,
    )
    return text.replace(mirror.STOPPED, "An export would stop before removing anyone", 1) if preview else text


def list_words(result: ExportResult) -> str:
    """``list 'Y6nRLr' (VIP customers)``: the id exports need, and the name people know the list by."""
    return f"list '{result.list_id}'" + (f" ({result.list_name})" if result.list_name else "")


def preview_html(result: ExportResult, *, offline: bool) -> str:
    """The preview: what would happen (the plan), what was checked with Klaviyo, the profiles exactly as they
    would be sent (the dry run's own sample, so a value that cannot be sent never shows as sent), the rows that
    would not be sent, the members that would be removed."""
    target = "" if offline else f" to {list_words(result)}"
    head = (
        f"<p><b>Preview</b>: {result.would_send:,} of {result.total_rows:,} rows would be sent{html.escape(target)}. "
        "Nothing was sent.</p>"
    )
    numbers = pd.DataFrame([plan(result)])
    said = result.checked
    if result.list_name and not offline:  # the head names the list already
        said = "Checked with Klaviyo (read-only): the key works and the list exists."
    checked = f"<p style='{NOTE_STYLE}'>{html.escape(said)}</p>" if said else ""
    notes = "".join(
        f"<p>{html.escape(note)}</p>" for note in (*_partial_note(result), *_warnings(result, preview=True))
    )
    sample = result.sample if result.sample is not None else pd.DataFrame()
    shown = (
        f"<p>First {len(sample)} profile{'s' if len(sample) != 1 else ''} exactly as they would be sent:</p>"
        f"{table_html(sample)}<p style='{NOTE_STYLE}'>Emails are shown masked, so that no customer email is "
        "saved with the notebook's widgets.</p>"
        if len(sample)
        else "<p>No row would be sent.</p>"
    )
    body = head + table_html(numbers) + checked + notes + shown + problems_html(result, preview=True)
    body += partial_html(result)
    return f"<div class='klaviyo-magic-preview'>{safe(body)}{safe(removals_html(result))}</div>"


def _partial_note(result: ExportResult) -> list[str]:
    if not result.partially_sent:
        return []
    rows = "row" if result.partially_sent == 1 else "rows"
    return [
        f"{result.partially_sent:,} {rows} would be sent without a value that cannot be sent (an infinite "
        "number): the profiles below show what would really go."
    ]


def _warnings(result: ExportResult, *, preview: bool) -> list[str]:
    guard = guard_warning(result) if preview else None
    return [guard_message(guard, preview=True)] if guard else []


# -- the result ---------------------------------------------------------------------------------------------


def summary(result: ExportResult) -> str:
    """The result's own summary (the same words as the magic's), pointing at the form instead of at names to
    type, with the list's name beside its id."""
    text = result.summary(where=WHERE, resume=RESUME)
    return text.replace(f"list '{result.list_id}'", list_words(result), 1)


def result_html(result: ExportResult) -> str:
    """One summary for the run, then the rows not sent and the members removed, each behind a click."""
    body = f"<p>{html.escape(summary(result))}</p>" + problems_html(result, preview=False) + partial_html(result)
    body += removals_html(result)
    return f"<div class='klaviyo-magic-result'>{safe(body)}</div>"


# -- progress, status, errors -------------------------------------------------------------------------------


def progress_text(event: ProgressEvent) -> str:
    """The line beside the bar: ``Sending 20,000 / 99,925 profiles accepted · 2 jobs in flight (20,000)``, the
    removals, then how the run ended (``Done: 99,925 sent``, ``Interrupted: 60,000 of 100,000 sent``)."""
    if event.stage == "done" and event.outcome == "empty":
        return "Nothing to send: no row of the segment needs sending."
    return describe(event)


def starting_message(rows: int | None, list_label: str) -> str:
    what = f"{rows:,} row{'s' if rows != 1 else ''}" if rows is not None else "the segment"
    return f"Exporting {what} to list {list_label}..."


def error_message(exc: BaseException) -> str:
    """One line saying what failed and how to fix it. Our errors already read that way; anything else is
    a bug, said so plainly."""
    if isinstance(exc, RemovalLimitError):
        text = guard_message(str(exc))
    elif isinstance(exc, KlaviyoMagicError):
        text = str(exc) or type(exc).__name__
    else:
        text = (
            f"Unexpected {type(exc).__name__}: {exc}. This is a bug in klaviyo-magic; please report it with the "
            "traceback below."
        )
    return " ".join(text.split())


def error_html(exc: BaseException) -> str:
    """The red error line; for a bug, its traceback behind a click (keys scrubbed, emails masked)."""
    trace = ""
    if not isinstance(exc, KlaviyoMagicError):
        lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        trace = f"<details><summary>Traceback</summary><pre>{html.escape(lines)}</pre></details>"
    message = html.escape(error_message(exc))
    return safe(f"<div class='klaviyo-magic-error' style='{ERROR_STYLE}'><b>Error:</b> {message}{trace}</div>")


def status_html(message: str) -> str:
    return safe(f"<div class='klaviyo-magic-status'>{html.escape(message)}</div>") if message else ""


def privacy_html(connection: str) -> str:
    return (
        f"<div class='klaviyo-magic-privacy' style='max-width:48em'><b>Data-privacy terms for connection "
        f"'{html.escape(connection)}'</b><p>{html.escape(PRIVACY_TERMS)}</p></div>"
    )


def consent_message(name: str) -> str:
    return (
        f"Connection '{name}' cannot export yet: its data-privacy terms were never accepted. Read them above and "
        f"tick '{CONSENT_TEXT}', then press Export to Klaviyo again."
    )
