"""Query-string parameters: ``filter``, ``sort``, ``page[...]``, ``include``, ``fields[...]`` (§1.2).

Each endpoint states what it allows; anything else is a 400 with ``source.parameter``, as Klaviyo answers
"'profiless' is not an allowed include parameter for this resource." (§4.2).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .jsonapi import ApiError, decode_cursor, invalid

# One condition: op(field,value) where value is a quoted string, a [list] of them, or a bare literal such as a
# datetime. Klaviyo's docs use double quotes and its spec examples single quotes, so both are accepted.
# Strings must be quoted ("Invalid filter provided" for equals(email,me@test.com):
# https://github.com/klaviyo/klaviyo-api-ruby/issues/3) and datetimes must not be
# (https://developers.klaviyo.com/en/docs/filtering_, and a Klaviyo employee in
# https://community.klaviyo.com/developer-group-64/campaign-api-multiple-filters-14473).
_STRING = r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
_BARE = r"""[^\s,()\[\]"']+"""
_CONDITION = re.compile(
    rf"\s*(?P<op>[a-z-]+)\(\s*(?P<field>[A-Za-z_.]+)\s*,\s*"
    rf"(?P<value>{_STRING}|\[\s*(?:{_STRING}\s*,?\s*)*\]|{_BARE})\s*\)\s*"
)
_ITEM = re.compile(_STRING)


@dataclass(frozen=True)
class Condition:
    op: str
    field: str
    values: tuple[Any, ...]  # strings: one for ``equals``, several for ``any``; one datetime for a date field


@dataclass(frozen=True)
class Paging:
    default: int
    maximum: int


class Query:
    """The parsed query string of one request."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.pairs: list[tuple[str, str]] = parse_qsl(raw, keep_blank_values=True)
        self._values: dict[str, str] = {}
        for name, value in self.pairs:
            if name in self._values:
                raise invalid(f"'{name}' was given more than once.", parameter=name)
            self._values[name] = value

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def names(self) -> Collection[str]:
        return self._values.keys()

    def check_allowed(self, allowed: Collection[str]) -> None:
        """Reject JSON:API parameter families this endpoint does not take (other names are ignored)."""
        for name in self._values:
            family = name.split("[", 1)[0]
            if family in ("filter", "sort", "include", "page", "fields", "additional-fields") and name not in allowed:
                raise invalid(f"'{name}' is not a valid query parameter for this endpoint.", parameter=name)

    def page_size(self, paging: Paging) -> int:
        """``page[size]``: above the endpoint's maximum is a 400, not a silent clamp (§1.2, §6 item 8)."""
        raw = self.get("page[size]")
        if raw is None:
            return paging.default
        if not raw.isdigit() or not 1 <= int(raw) <= paging.maximum:
            raise invalid(
                f"page[size] must be an integer between 1 and {paging.maximum}; got '{raw}'.",
                parameter="page[size]",
            )
        return int(raw)

    def cursor(self) -> int | None:
        """Where the page starts. A whole ``links.next`` URL is accepted too: the official SDK only unwraps
        ``https://`` links, so against this ``http://`` sandbox it sends the link itself (docs/sandbox.md)."""
        raw = self.get("page[cursor]")
        if not raw:
            return None
        if "://" in raw:
            inner = dict(parse_qsl(urlsplit(raw).query)).get("page[cursor]")
            if inner:
                raw = inner
        return decode_cursor(raw)

    def sort(self, allowed: Collection[str], default: str) -> tuple[str, bool]:
        """``(field, descending)`` from ``sort=field`` or ``sort=-field``."""
        raw = self.get("sort") or default
        field = raw.removeprefix("-")
        if field not in allowed:
            raise invalid(f"'{raw}' is not a valid sort parameter for this endpoint.", parameter="sort")
        return field, raw.startswith("-")

    def includes(self, allowed: Collection[str]) -> list[str]:
        raw = self.get("include")
        names = [name for name in (raw or "").split(",") if name]
        for name in names:
            if name not in allowed:
                raise invalid(f"'{name}' is not an allowed include parameter for this resource.", parameter="include")
        return names

    def csv(self, name: str) -> list[str]:
        return [item for item in (self.get(name) or "").split(",") if item]

    def filters(self, allowed: Mapping[str, Collection[str]], datetimes: Collection[str] = ()) -> list[Condition]:
        """Parse ``filter``; ``allowed`` maps each field to its operators, ``datetimes`` names the fields whose
        value is an unquoted datetime. Conditions are ANDed, written as a comma-separated list or inside
        ``and(...)``. What each operator means is up to the endpoint."""
        raw = (self.get("filter") or "").strip()
        if raw.startswith("and(") and raw.endswith(")"):
            raw = raw[4:-1]
        conditions: list[Condition] = []
        position = 0
        while position < len(raw):
            match = _CONDITION.match(raw, position)
            if not match:
                raise _bad_filter(f"cannot read '{raw[position : position + 80]}'; check the parentheses and quotes.")
            op, field, literal = match["op"], match["field"], match["value"]
            if field not in allowed:
                raise _bad_filter(f"'{field}' is not an allowed filter field for this endpoint.")
            if op not in allowed[field]:
                raise _bad_filter(f"'{op}' is not an allowed operator for the field '{field}'.")
            values = _datetime_value(field, literal) if field in datetimes else _string_values(op, field, literal)
            conditions.append(Condition(op, field, values))
            position = match.end()
            if position < len(raw):
                if raw[position] != ",":
                    raise _bad_filter(f"expected ',' between conditions at '{raw[position : position + 80]}'.")
                position += 1
        return conditions


def _string_values(op: str, field: str, literal: str) -> tuple[str, ...]:
    if literal[0] not in "\"'[":
        raise _bad_filter(f"the value of '{field}' must be quoted: {op}({field},\"{literal}\").")
    if op == "equals" and literal.startswith("["):
        raise _bad_filter(f"equals({field},...) takes one value; use any({field},[...]) for several.")
    return tuple(_unquote(item) for item in _ITEM.findall(literal))


def _datetime_value(field: str, literal: str) -> tuple[datetime]:
    """An ISO 8601 datetime without quotes; one without an offset is read as UTC (unconfirmed in Klaviyo)."""
    if literal[0] in "\"'[":
        raise _bad_filter(f"a datetime is written without quotes, e.g. greater-than({field},2024-01-01T00:00:00Z).")
    try:
        moment = datetime.fromisoformat(literal)
    except ValueError:
        raise _bad_filter(f"'{literal}' is not an ISO 8601 datetime.") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC),)


def _bad_filter(reason: str) -> ApiError:
    return invalid(f"Invalid filter provided: {reason}", parameter="filter")


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def sparse(resource: dict[str, Any], fields: Mapping[str, list[str]]) -> dict[str, Any]:
    """Apply ``fields[type]=a,b`` to one resource object (§1.2 sparse fieldsets)."""
    wanted = fields.get(resource.get("type", ""))
    if wanted and "attributes" in resource:
        resource["attributes"] = {key: value for key, value in resource["attributes"].items() if key in wanted}
    return resource


def requested_fields(query: Query) -> dict[str, list[str]]:
    return {name[7:-1]: query.csv(name) for name in query.names() if name.startswith("fields[") and name.endswith("]")}
