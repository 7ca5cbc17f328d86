"""The export form's logic that needs no widgets: finding DataFrames, guessing the email column, the
preview sample, and the text the form shows. Kept apart so :mod:`klaviyo_magic.widgets.panel` is only wiring.
"""

from __future__ import annotations

import html
import os
import re
import sys
from collections.abc import Hashable, Sequence
from typing import Any

import pandas as pd

from ..connections.keys import redact
from ..errors import InputError, KlaviyoMagicError
from ..export.emails import check_emails
from ..export.fields import STANDARD_FIELDS
from ..progress import ProgressEvent
from ..result import ExportResult

# Column names that mean "the email address" once case and separators are ignored.
_EMAIL_NAMES = frozenset({"email", "emailaddress", "emailaddr", "mail", "emails"})
_SEPARATORS = re.compile(r"[\s_\-.]+")
_SAMPLE_ROWS = 200  # per frame: enough to judge a column by its content, cheap on a million rows
_EMAIL_SHARE = 0.5  # "mostly look like emails"
SAMPLE_SIZE = 5

CONSENT_TEXT = "I agree to the data-privacy terms for this connection"
NO_CONNECTION = (
    "No Klaviyo connection is chosen or saved. Add one with `%klaviyo_connection add NAME --api-key-env VAR "
    "--accept-privacy-terms`, then press Refresh."
)
ERROR_STYLE = "color:#b00020;border-left:3px solid #b00020;padding:2px 8px;margin:4px 0"


# -- DataFrames in a namespace ------------------------------------------------------------------------------


def ipython_namespace() -> dict[str, Any] | None:
    """The notebook's namespace (IPython's ``user_ns``), or None outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell.user_ns if shell is not None else None


def caller_globals(*, skip: dict[str, Any]) -> dict[str, Any]:
    """The globals of the nearest caller outside this module and the one whose globals are ``skip``."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_globals is skip or frame.f_globals is globals()):
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


def frames_found(count: int) -> str:
    if not count:
        return "No DataFrame in the notebook yet: create one, then press Refresh."
    return f"Found {count} DataFrame{'s' if count != 1 else ''} in the notebook."


def frame_label(name: str, frame: pd.DataFrame) -> str:
    rows = len(frame)
    return f"{name} ({rows:,} row{'s' if rows != 1 else ''})"


def common_columns(frames: Sequence[pd.DataFrame]) -> list[Hashable]:
    """Columns present once in every frame, in the first frame's order: the export needs them in all, and
    a duplicated name is not one column (the export explains that when such a frame is sent)."""
    if not frames:
        return []
    unique = [set(frame.columns[~frame.columns.duplicated(keep=False)]) for frame in frames]
    return [column for column in frames[0].columns if all(column in names for names in unique)]


# -- the email column ---------------------------------------------------------------------------------------


def _folded(column: Hashable) -> str:
    return _SEPARATORS.sub("", str(column).lower())


def email_share(frames: Sequence[pd.DataFrame], column: Hashable) -> float:
    """Share of the non-missing sampled values of ``column`` that are valid email addresses."""
    sample = pd.concat([frame[column].head(_SAMPLE_ROWS) for frame in frames], ignore_index=True)
    sample = sample.dropna()
    if sample.empty:
        return 0.0
    return float(check_emails(sample).valid.mean())


def detect_email_column(frames: Sequence[pd.DataFrame], columns: Sequence[Hashable]) -> Hashable | None:
    """Guess the email column: a name like ``email``/``E-Mail``/``email_address``; else a name containing
    "email" whose values look like emails (so ``email_opt_in`` flags lose); else the column whose sampled
    values mostly are emails. ``None`` when nothing fits."""
    for column in columns:
        if _folded(column) in _EMAIL_NAMES:
            return column
    shares = {column: email_share(frames, column) for column in columns if _textual(frames, column)}
    for column in columns:
        if "email" in _folded(column) and shares.get(column, 0.0) >= _EMAIL_SHARE:
            return column
    if shares:
        best = max(shares, key=lambda column: shares[column])
        if shares[best] >= _EMAIL_SHARE:
            return best
    return None


def _textual(frames: Sequence[pd.DataFrame], column: Hashable) -> bool:
    kinds = pd.api.types
    return all(
        kinds.is_object_dtype(dtype) or kinds.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)
        for dtype in (frame[column].dtype for frame in frames)
    )


def standard_columns(columns: Sequence[Hashable]) -> list[Hashable]:
    """Columns named like a Klaviyo standard field (other than email): the engine sends these by default,
    so the form preselects them and what is ticked is exactly what is sent."""
    return [
        column
        for column in columns
        if str(column).strip().lower() in STANDARD_FIELDS and str(column).strip().lower() != "email"
    ]


# -- preview ------------------------------------------------------------------------------------------------


def preview_sample(
    result: ExportResult, frames: Sequence[pd.DataFrame], properties: Sequence[Hashable], size: int = SAMPLE_SIZE
) -> pd.DataFrame:
    """The first ``size`` profiles a dry run would send: the normalised email and the chosen columns."""
    report = result.report
    offsets = [0]
    for frame in frames:
        offsets.append(offsets[-1] + len(frame))
    rows = []
    for position in (report["status"] == "would_send").to_numpy().nonzero()[0][:size]:
        segment = int(report["segment"].iat[position])
        source = frames[segment].iloc[int(position) - offsets[segment]]
        row = {"segment": segment, "index": report["index"].iat[position], "email": report["email"].iat[position]}
        row.update({str(column): source[column] for column in properties})
        rows.append(row)
    columns = ["segment", "index", "email", *(str(column) for column in properties)]
    sample = pd.DataFrame(rows, columns=columns)
    return sample if len(frames) > 1 else sample.drop(columns="segment")


def preview_html(result: ExportResult, sample: pd.DataFrame) -> str:
    counts = (
        ("rows", result.total_rows),
        ("would send", result.would_send),
        ("skipped", result.skipped),
        ("duplicates", result.duplicates),
    )
    cells = "".join(f"<tr><td>{label}</td><td style='text-align:right'>{n:,}</td></tr>" for label, n in counts)
    note = (
        " Rows not sent and why: <code>form.preview_result.problems</code>."
        if result.skipped or result.duplicates
        else ""
    )
    shown = (
        f"<p>First {len(sample)} profiles that would be sent:</p>{sample.to_html(index=False, escape=True)}"
        if len(sample)
        else "<p>No row has a valid email: nothing would be sent.</p>"
    )
    return (
        f"<div class='klaviyo-magic-preview'><p><b>Preview</b>: {result.would_send:,} of "
        f"{result.total_rows:,} rows would be sent. Nothing was sent.{note}</p>"
        f"<table>{cells}</table>{shown}</div>"
    )


# -- progress, results and errors ---------------------------------------------------------------------------

_STAGES = {"sending": "Sending", "processing": "Klaviyo importing", "done": "Done:"}


def progress_text(event: ProgressEvent) -> str:
    """``Sending 20,000 / 50,000``: the numbers a person watching the bar wants."""
    return f"{_STAGES.get(event.stage, event.stage)} {event.done:,} / {event.total:,}"


def result_html(result: ExportResult) -> str:
    grab = (
        f"<p>{len(result.problems):,} rows were not sent: they are in <code>form.problems</code>.</p>"
        if len(result.problems)
        else ""
    )
    return redact(result._repr_html_(where="form.problems")) + grab


def error_message(exc: BaseException) -> str:
    """One line saying what failed and how to fix it. Our errors already read that way; anything else is
    a bug, said so plainly. Keys are scrubbed again here because an unexpected error may quote anything."""
    if isinstance(exc, KlaviyoMagicError):
        text = str(exc) or type(exc).__name__
    else:
        text = (
            f"Unexpected {type(exc).__name__}: {exc}. This is a bug in klaviyo-magic; "
            "form.last_error holds the exception, please report it with its traceback."
        )
    return redact(" ".join(text.split()))


def error_html(message: str) -> str:
    return f"<div class='klaviyo-magic-error' style='{ERROR_STYLE}'><b>Error:</b> {html.escape(message)}</div>"


def status_html(message: str) -> str:
    return f"<div class='klaviyo-magic-status'>{html.escape(message)}</div>"


# -- choices ------------------------------------------------------------------------------------------------


def option_values(options: Sequence[Any]) -> list[Any]:
    """The values of a selection widget's options, given as ``(label, value)`` pairs or bare values."""
    return [option[1] if isinstance(option, tuple) else option for option in options]


def check_choice(widget: Any, value: Any, what: str) -> Any:
    """``value`` if the selection widget offers it, else an :class:`InputError` listing what it offers."""
    values = option_values(widget.options)
    if value not in values:
        offered = ", ".join(map(str, values)) or "none"
        raise InputError(f"Unknown {what} {value!r} in the form; choose one of: {offered}.")
    return value


def connection_choices(profiles: Sequence[Any], env_var: str) -> tuple[list[tuple[str, str]], str | None]:
    """Dropdown options for the saved profiles (default marked) and the value to preselect. With no default
    profile but ``$env_var`` set, that ad-hoc connection is offered first, with value ``""``."""
    options = [(p.name + (" (default)" if p.is_default else ""), p.name) for p in profiles]
    default = next((p.name for p in profiles if p.is_default), None)
    if default is None and os.environ.get(env_var):
        options.insert(0, (f"${env_var}", ""))
        default = ""
    return options, default if default is not None else (options[0][1] if options else None)


def consent_message(name: str) -> str:
    return (
        f"Connection '{name}' cannot export yet: its data-privacy terms were never accepted. "
        f"Tick '{CONSENT_TEXT}' above, then press Export to Klaviyo again."
    )
