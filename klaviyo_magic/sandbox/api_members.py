"""List membership: adding and removing profiles by id, and reading the members.

The operations add_profiles_to_list, remove_profiles_from_list, get_profiles_for_list and
get_profile_ids_for_list of Klaviyo's OpenAPI documents (https://github.com/klaviyo/openapi, one file per
operation under openapi/stable/apis/); docs/sandbox.md says where the sandbox departs from them.
"""

from __future__ import annotations

from typing import Any

from . import resources
from .api_lists import existing_list
from .context import Reply, Request, Route
from .jsonapi import ApiError, error_object, invalid
from .params import Paging, requested_fields, sparse

MEMBER_PAGING = Paging(default=20, maximum=100)  # §2.11
MAX_MEMBERS_PER_CALL = 1_000  # §2.10


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
    return _members(request, ids_only=False)


def get_profile_ids_for_list(request: Request) -> Reply:
    return _members(request, ids_only=True)


def _members(request: Request, *, ids_only: bool) -> Reply:
    """A page of members. Unfiltered pages walk the list's joining order from the cursor; filters go through
    the identifier indexes. Neither sorts or scans the whole list."""
    record = existing_list(request)
    query = request.query
    conditions = query.filters({"email": ("equals", "any"), "phone_number": ("equals", "any")})
    _, descending = query.sort(("joined_group_at",), "joined_group_at")
    size = query.page_size(MEMBER_PAGING)
    store = request.store
    if conditions:
        first, *others = conditions
        entries = store.members_matching(record.id, first.field, first.values)
        for condition in others:
            entries = [entry for entry in entries if _matches(entry[0], condition.field, condition.values)]
        if descending:
            entries.reverse()
        start = query.cursor() or 0
        page, next_start = (
            entries[start : start + size],
            (start + size if start + size < len(entries) else None),
        )
    else:
        page, next_start = store.member_page(record.id, query.cursor(), size, descending)
    if ids_only:
        data = [resources.identifier("profile", profile["id"]) for profile, _ in page]
    else:
        fields = requested_fields(query)
        data = [sparse(resources.profile_resource(request.base_url, p, joined), fields) for p, joined in page]
    return request.collection(data, next_start)


def _matches(profile: dict[str, Any], field: str, values: tuple[str, ...]) -> bool:
    value = profile.get(field)
    if field == "email" and value is not None:
        return value.lower() in {v.lower() for v in values}
    return value in values


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
        (*_MEMBER_PARAMS, "fields[profile]"),
    ),
    Route(
        "GET",
        "/api/lists/{id}/relationships/profiles",
        "get_profile_ids_for_list",
        get_profile_ids_for_list,
        _MEMBER_PARAMS,
    ),
]
