"""Which DataFrame columns go to which Klaviyo profile field, and the input checks that come with it.

Everything here is cheap (column names and types only), so a mistake is reported before any row is read.
Messages say what is wrong, where, and how to fix it, with a "did you mean" for near-miss column names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from ..errors import InputError

_TOP_FIELDS = tuple("email phone_number external_id first_name last_name organization title locale image".split())
_LOCATION_FIELDS = tuple("address1 address2 city country region zip timezone latitude longitude ip".split())

#: Klaviyo's standard profile fields (docs/klaviyo-api.md §3.1): target name -> path inside ``attributes``.
STANDARD_FIELDS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in _TOP_FIELDS},
    **{name: ("location", name) for name in _LOCATION_FIELDS},
}


def standard_path(name: str) -> tuple[str, ...] | None:
    """The path of a standard field named ``name`` (``"city"`` or ``"location.city"``), else None."""
    if name in STANDARD_FIELDS:
        return STANDARD_FIELDS[name]
    group, _, rest = name.partition(".")
    if group == "location" and rest in _LOCATION_FIELDS:
        return ("location", rest)
    return None


def check_columns(sources: Sequence[Any], email: Any) -> None:
    """Each segment (a :class:`~klaviyo_magic.export.sources.Source`) has unique column names and the email
    column."""
    for source in sources:
        names = pd.Index(source.columns)
        duplicated = names[names.duplicated()].unique().tolist()
        if duplicated:
            raise InputError(
                f"segment {source.number} has duplicate column names {', '.join(map(repr, duplicated))}; "
                "rename or drop them (e.g. df.loc[:, ~df.columns.duplicated()]) before exporting"
            )
    for source in sources:
        _require_column(source, email, "email column")


def _closest(name: Any, columns: Iterable[Any]) -> Any | None:
    """The column ``name`` was probably meant to be: same name ignoring case, else a close spelling."""
    by_lower: dict[str, Any] = {}
    for column in columns:
        by_lower.setdefault(str(column).lower(), column)
    wanted = str(name).lower()
    if wanted in by_lower:
        return by_lower[wanted]
    close = difflib.get_close_matches(wanted, list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def _require_column(source: Any, column: Any, what: str) -> None:
    try:
        present = column in source.columns
    except TypeError:  # an unhashable name, such as a list
        present = False
    if present:
        return
    names = [str(c) for c in source.columns]
    listed = ", ".join(map(repr, names[:20])) + (f", ... ({len(names) - 20} more)" if len(names) > 20 else "")
    message = f"{what} {column!r} not found in segment {source.number} (columns: {listed or 'none'})."
    guess = _closest(column, source.columns)
    if guess is not None:
        message += f" Did you mean {guess!r}?"
    elif source.index_name is not None and str(source.index_name) == str(column):
        message += " It is the index: call .reset_index() first."
    raise InputError(message)


def _require_in_every_file(source: Any, columns: Sequence[Any]) -> None:
    """Every file of a glob has the email column and the property columns asked for: a file without one reads as
    that column missing, and a file without the email column would read as rows without an email (whose members
    a mirror run would then remove). Columns sent only because of their name may be missing from some files."""
    for path, names in source.columns_by_file().items():
        missing = [column for column in columns if column not in names]
        if missing:
            guess = _closest(missing[0], names)
            raise InputError(
                f"file {path} has no column {missing[0]!r}, which segment {source.number}'s first file has "
                f"(its columns: {', '.join(map(repr, names[:20]))}); every file needs the email and property columns"
                + (f". Did you mean {guess!r}?" if guess is not None else "")
            )


def _auto_path(column: Any) -> tuple[str, ...] | None:
    return STANDARD_FIELDS.get(str(column).strip().lower())


def _target_path(column: Any, target: Any, email: Any) -> tuple[str, ...]:
    """Where ``properties={column: target}`` sends the column."""
    if not isinstance(target, str) or not target.strip():
        raise InputError(f"properties[{column!r}] must be a field name such as 'first_name' or 'ltv', got {target!r}")
    path = standard_path(target)
    if path == ("email",):
        raise InputError(
            f"properties maps {column!r} to 'email', but the email column is {email!r}; "
            f"pass email={column!r} instead, or map it to a custom property such as 'properties.{target}'"
        )
    if path is not None:
        return path
    if target.startswith("properties."):
        if not target[len("properties.") :]:
            raise InputError(f"properties[{column!r}] = {target!r} lacks a property name, e.g. 'properties.ltv'")
        return ("properties", target[len("properties.") :])
    if target.startswith("location."):
        raise InputError(
            f"properties[{column!r}] = {target!r} is not a Klaviyo location field; "
            f"those are: {', '.join(_LOCATION_FIELDS)} (or use 'properties.{target}' for a custom property)"
        )
    folded = target.strip().lower()
    if standard_path(folded) is not None:
        raise InputError(
            f"properties[{column!r}] = {target!r} looks like the standard field {folded!r}; write {folded!r} "
            f"for the standard field, or 'properties.{target}' for a custom property"
        )
    return ("properties", target)


def resolve_fields(sources: Sequence[Any], email: Any, properties: Any) -> dict[Any, tuple[str, ...]]:
    """Column -> JSON path for every column to send (see :func:`~klaviyo_magic.export_segment` for the rules):

    - the ``email`` column always, as the profile's ``email``;
    - ``properties=None``: besides the email, only columns named like a Klaviyo standard field
      (``first_name``, ``phone_number``, ``city``..., compared after ``.strip().lower()``, so ``First_Name``
      counts); other columns are *not* sent, so nothing private leaves by accident;
    - ``properties=[...]``: exactly the listed columns; standard-named ones go to their field, the rest
      become custom ``properties`` named after the column;
    - ``properties={column: field}``: each column to ``field``, a standard field name (``"city"`` or
      ``"location.city"``) or else a custom property (``"ltv"`` or ``"properties.ltv"``).
    """
    field_map: dict[Any, tuple[str, ...]] = {email: ("email",)}
    if properties is None:
        for source in sources:
            for column in source.columns:
                path = _auto_path(column)
                if column not in field_map and path not in (None, ("email",)):
                    field_map[column] = path  # type: ignore[assignment]
    elif isinstance(properties, list | tuple):
        for column in properties:
            for source in sources:
                _require_column(source, column, "property column")
            path = _auto_path(column)
            if column == email or column in field_map:
                continue
            if path == ("email",):
                raise InputError(
                    f"property column {column!r} would be sent as the profile's email, but the email column "
                    f"is {email!r}; map it to a custom property instead: properties={{{column!r}: "
                    f"'properties.{column}'}}"
                )
            field_map[column] = path or ("properties", str(column))
    elif isinstance(properties, Mapping):
        for column, target in properties.items():
            for source in sources:
                _require_column(source, column, "property column")
            if column == email and target in ("email", email):
                continue  # already sent as the email
            if column == email:
                raise InputError(
                    f"{email!r} is the email column and is always sent as 'email'; it cannot also be mapped"
                )
            field_map[column] = _target_path(column, target, email)
    else:
        hint = f" Did you mean properties=[{properties!r}]?" if isinstance(properties, str) else ""
        raise InputError(
            "properties must be None, a list of column names or a dict {column: field}, "
            f"got {type(properties).__name__}.{hint}"
        )
    chosen = [email] if properties is None else [email, *properties]
    for source in sources:
        _require_in_every_file(source, chosen)
    for source in sources:  # two columns of one segment must not fill the same field
        seen: dict[tuple[str, ...], Any] = {}
        for column in source.columns:
            path = field_map.get(column)
            if path is not None and path in seen:
                raise InputError(
                    f"columns {seen[path]!r} and {column!r} of segment {source.number} would both be sent as "
                    f"{'.'.join(path)!r}; drop or rename one, or choose the columns with properties=..."
                )
            if path is not None:
                seen[path] = column
    return field_map
