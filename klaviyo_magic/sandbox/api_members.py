"""List membership: adding and removing profiles by id, and reading the members.

The operations add_profiles_to_list, remove_profiles_from_list, get_profiles_for_list and
get_profile_ids_for_list of Klaviyo's OpenAPI documents (https://github.com/klaviyo/openapi, one file per
operation under openapi/stable/apis/); docs/sandbox.md says where the sandbox departs from them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import resources
from .api_lists import existing_list
from .context import Reply, Request, Route
from .jsonapi import ApiError, error_object, invalid
from .params import Condition, Paging, Query
from .profiles import LOCATION_FIELDS, PROFILE_FIELDS
from .store import Store

MEMBER_PAGING = Paging(default=20, maximum=100)  # §2.11
MAX_MEMBERS_PER_CALL = 1_000  # §2.10

# The x-klaviyo-filters of get_profiles_for_list and get_profile_ids_for_list: fields and their operators.
MEMBER_FILTERS = {
    "email": ("any", "equals"),
    "phone_number": ("any", "equals"),
    "push_token": ("any", "equals"),
    "_kx": ("equals",),
    "joined_group_at": ("greater-or-equal", "greater-than", "less-or-equal", "less-than"),
}
_COMPARISONS = {
    "greater-or-equal": operator.ge,
    "greater-than": operator.gt,
    "less-or-equal": operator.le,
    "less-than": operator.lt,
}
# The fields[profile] names the spec lists: these attributes, "id", "location.<field>", and subscriptions and
# predictive_analytics with their parts, which only additional-fields[profile] brings and so select nothing here.
_MEMBER_ATTRIBUTES = frozenset(
    {*PROFILE_FIELDS, "created", "updated", "last_event_date", "location", "properties", "joined_group_at"}
)
_NOT_MODELLED = frozenset({"subscriptions", "predictive_analytics"})

Member = tuple[dict[str, Any], str]  # a profile and its joined_group_at


def add_profiles_to_list(request: Request) -> Reply:
    record = existing_list(request)
    request.store.add_members(record.id, _profile_ids(request))
    return Reply(204)


def remove_profiles_from_list(request: Request) -> Reply:
    record = existing_list(request)
    request.store.remove_members(record.id, _profile_ids(request))
    return Reply(204)


def _profile_ids(request: Request) -> list[str]:
    """The ``{"data": [{"type": "profile", "id": ...}]}`` body: at most 1000 ids (§2.10), all of them known.

    Unknown ids are unconfirmed in Klaviyo; the sandbox answers 404 naming each one and changes nothing,
    the strict choice (docs/sandbox.md).
    """
    body = request.json()
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise invalid("The body must be {'data': [{'type': 'profile', 'id': '...'}, ...]}.", pointer="/data")
    if len(data) > MAX_MEMBERS_PER_CALL:
        raise invalid(f"At most {MAX_MEMBERS_PER_CALL} profiles per call; got {len(data)}.", pointer="/data")
    ids: list[str] = []
    for position, entry in enumerate(data):
        if not isinstance(entry, dict) or entry.get("type") != "profile" or not isinstance(entry.get("id"), str):
            raise invalid("Each entry must be {'type': 'profile', 'id': '...'}.", pointer=f"/data/{position}")
        ids.append(entry["id"])
    missing = set(request.store.missing_profiles(ids))
    if missing:
        errors = [
            error_object(
                404,
                "not_found",
                "Not found.",
                f"A profile with id {pid} does not exist.",
                pointer=f"/data/{i}/id",
            )
            for i, pid in enumerate(ids)
            if pid in missing
        ]
        raise ApiError(404, errors)
    return ids


def get_profiles_for_list(request: Request) -> Reply:
    if request.query.get("additional-fields[profile]") is not None:
        raise invalid(
            "additional-fields[profile] (subscriptions, predictive_analytics) is not modelled by the sandbox.",
            parameter="additional-fields[profile]",
        )
    return _members(request, ids_only=False)


def get_profile_ids_for_list(request: Request) -> Reply:
    return _members(request, ids_only=True)


def _members(request: Request, *, ids_only: bool) -> Reply:
    """A page of members, oldest first unless ``sort=-joined_group_at``, with an absolute ``links.next``."""
    record = existing_list(request)
    query = request.query
    conditions = query.filters(MEMBER_FILTERS, datetimes=("joined_group_at",))
    _, descending = query.sort(("joined_group_at",), "joined_group_at")
    size = query.page_size(MEMBER_PAGING)
    fields = [] if ids_only else _member_fields(query)
    page, next_start = _member_page(request.store, record.id, conditions, query.cursor(), size, descending)
    if ids_only:
        data = [resources.identifier("profile", profile["id"]) for profile, _ in page]
    else:
        data = [_member_resource(request.base_url, profile, joined, fields) for profile, joined in page]
    return request.collection(data, next_start)


def _member_page(
    store: Store, list_id: str, conditions: list[Condition], start: int | None, size: int, descending: bool
) -> tuple[list[Member], int | None]:
    """One page and where the next starts. Without an identifier filter the page walks the list's joining
    order from the cursor; with one, the identifier indexes find the candidates, so no page sorts or scans the
    whole list (only a joined_group_at filter may walk past members it leaves out)."""
    if any(condition.field == "_kx" for condition in conditions):
        raise invalid("The sandbox does not emulate the '_kx' filter (an encrypted tracking id).", parameter="filter")
    joined = _joined_test([condition for condition in conditions if condition.field == "joined_group_at"])
    lookups = [condition for condition in conditions if condition.field != "joined_group_at"]
    if not lookups:
        return store.member_page(list_id, start, size, descending, joined)
    first, *others = lookups
    # No profile has a push token (bulk import takes none), so a push_token condition matches nobody.
    found = [] if first.field == "push_token" else store.members_matching(list_id, first.field, first.values)
    tests = [_identifier_test(condition) for condition in others]
    found = [(p, at) for p, at in found if all(test(p) for test in tests) and (joined is None or joined(at))]
    if descending:
        found.reverse()
    start = start or 0
    end = start + size
    return found[start:end], (end if end < len(found) else None)


def _identifier_test(condition: Condition) -> Callable[[dict[str, Any]], bool]:
    """Whether a profile meets one identifier condition. Emails match case-insensitively, as the identifier
    index (and so the first condition, and matching on import) does; see docs/sandbox.md."""
    field = condition.field
    if field == "push_token":
        return lambda profile: False
    if field == "email":
        emails = {value.lower() for value in condition.values}
        return lambda profile: profile.get("email") is not None and profile["email"].lower() in emails
    values = set(condition.values)
    return lambda profile: profile.get(field) in values


def _joined_test(conditions: list[Condition]) -> Callable[[str], bool] | None:
    """The joined_group_at comparisons, ANDed, as a test on a member's joined_group_at (or None: no test)."""
    if not conditions:
        return None
    bounds = [(_COMPARISONS[condition.op], condition.values[0]) for condition in conditions]
    return lambda joined: all(compare(datetime.fromisoformat(joined), bound) for compare, bound in bounds)


def _member_fields(query: Query) -> list[str]:
    """``fields[profile]``, each name one the spec lists; another name is a 400 rather than a silent nothing."""
    names = query.csv("fields[profile]")
    for name in names:
        top, _, part = name.partition(".")
        known = top in _MEMBER_ATTRIBUTES and (not part or (top == "location" and part in LOCATION_FIELDS))
        if not (known or name == "id" or top in _NOT_MODELLED):
            raise invalid(f"'{name}' is not a valid field for the resource 'profile'.", parameter="fields[profile]")
    return names


def _member_resource(base_url: str, profile: dict[str, Any], joined: str, fields: list[str]) -> dict[str, Any]:
    resource = resources.profile_resource(base_url, profile, joined)
    if fields:
        resource["attributes"] = _select(resource["attributes"], fields)
    return resource


def _select(attributes: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The attributes ``names`` asks for; ``location.city`` keeps only that part of ``location``. An attribute
    left out is left out, ``joined_group_at`` too, though the spec calls it required (docs/sandbox.md)."""
    whole = {name for name in names if "." not in name}
    parts: dict[str, list[str]] = {}
    for name in names:
        top, _, part = name.partition(".")
        if part:
            parts.setdefault(top, []).append(part)
    selected: dict[str, Any] = {}
    for name, value in attributes.items():
        if name in whole:
            selected[name] = value
        elif name in parts:
            selected[name] = {part: value.get(part) for part in parts[name]} if isinstance(value, dict) else value
    return selected


_MEMBER_PARAMS = ("filter", "sort", "page[cursor]", "page[size]")

ROUTES = [
    Route("POST", "/api/lists/{id}/relationships/profiles", "add_profiles_to_list", add_profiles_to_list),
    Route(
        "DELETE",
        "/api/lists/{id}/relationships/profiles",
        "remove_profiles_from_list",
        remove_profiles_from_list,
    ),
    Route(
        "GET",
        "/api/lists/{id}/profiles",
        "get_profiles_for_list",
        get_profiles_for_list,
        (*_MEMBER_PARAMS, "fields[profile]", "additional-fields[profile]"),
    ),
    Route(
        "GET",
        "/api/lists/{id}/relationships/profiles",
        "get_profile_ids_for_list",
        get_profile_ids_for_list,
        _MEMBER_PARAMS,
    ),
]
