"""What an endpoint handler receives and returns, and how a route is declared."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from .faults import Faults
from .jobs import JobRunner
from .jsonapi import ApiError, collection_links, error_object
from .params import Query
from .store import Store


@dataclass
class Request:
    method: str
    path: str
    path_params: dict[str, str]
    query: Query
    body: bytes
    base_url: str
    store: Store
    faults: Faults
    jobs: JobRunner

    def json(self) -> Any:
        """The body parsed once; malformed JSON is Klaviyo's ``parse_error`` 400, and so are ``NaN``,
        ``Infinity`` and ``-Infinity``, which Python's parser accepts but strict JSON does not, and a number too
        large for a double (``1e999``), which Python reads as infinity and would answer as ``Infinity``
        (docs/sandbox.md)."""
        try:
            return json.loads(self.body, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, UnicodeDecodeError) as exc:
            error = error_object(400, "parse_error", "Malformed request.", f"JSON parse error - {exc}", pointer="/data")
            raise ApiError(400, [error]) from None

    def collection(self, data: list[dict[str, Any]], next_position: int | None) -> Reply:
        """A 200 collection document with ``self`` and absolute ``next`` links (§1.2)."""
        links = collection_links(self.base_url, self.path, self.query.pairs, next_position)
        return Reply(200, {"data": data, "links": links})

    def single(self, resource: dict[str, Any], status: int = 200) -> Reply:
        return Reply(status, {"data": resource, "links": {"self": resource["links"]["self"]}})


def _reject_constant(name: str) -> Any:
    """``json.loads`` calls this only for the non-standard constants, so bodies without them (a 5 MB bulk
    import, say) parse at full speed. RFC 8259 §6: "Infinity and NaN are not permitted"."""
    raise ValueError(f"{name} is not valid JSON; numbers must be finite")


def _finite_float(text: str) -> float:
    number = float(text)
    if number - number != 0:  # inf - inf is nan: cheaper than math.isfinite on every number of a 5 MB import
        raise ValueError(f"{text} is out of range for a number; numbers must be finite")
    return number


@dataclass
class Reply:
    status: int
    document: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Reply]


@dataclass(frozen=True)
class Route:
    """One endpoint. ``operation`` is Klaviyo's operationId and names the rate-limit bucket; ``extra_buckets``
    adds stricter buckets some parameters draw from (§5.1); ``params`` are the JSON:API query parameters the
    endpoint takes."""

    method: str
    template: str
    operation: str
    handler: Handler
    params: Collection[str] = ()
    extra_buckets: Callable[[Query], list[str]] | None = None
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        object.__setattr__(self, "pattern", re.compile(regex))
