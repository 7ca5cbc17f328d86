"""Accounts, lists and list membership (klaviyo-api.md §2.1–§2.4, §2.10, §2.11)."""

from __future__ import annotations

from typing import Any

from . import resources
from .context import Reply, Request, Route
from .jsonapi import ApiError, error_object, invalid, not_found
from .params import Paging, Query, requested_fields, sparse
from .store import ListRecord

LIST_PAGING = Paging(default=10, maximum=10)  # §2.2
MEMBER_PAGING = Paging(default=20, maximum=100)  # §2.11
MAX_MEMBERS_PER_CALL = 1_000  # §2.10
OPT_IN_PROCESSES = ("single_opt_in", "double_opt_in")


# -- accounts --------------------------------------------------------------------------------------------


def get_accounts(request: Request) -> Reply:
    """The key's account: ``data`` is an array with exactly one account (§2.1)."""
    account = sparse(resources.account(request.base_url, request.store.account), requested_fields(request.query))
    return request.collection([account], None)


def get_account(request: Request) -> Reply:
    account = request.store.account
    if request.path_params["id"] != account["id"]:
        raise not_found(f"An account with id {request.path_params['id']} does not exist.")
    return request.single(sparse(resources.account(request.base_url, account), requested_fields(request.query)))


# -- lists -----------------------------------------------------------------------------------------------


def get_lists(request: Request) -> Reply:
    query = request.query
    conditions = query.filters({"name": ("equals", "any"), "id": ("equals", "any")})
    field, descending = query.sort(("created", "id", "name", "updated"), "created")
    includes = query.includes(("tags", "flow-triggers"))
    size = query.page_size(LIST_PAGING)
    records = request.store.all_lists()
    for condition in conditions:
        records = [record for record in records if getattr(record, condition.field) in condition.values]
    # Lists are few, so sorting a snapshot per request is cheap; the cursor is an offset into it. The sort is
    # stable and the snapshot is in creation order, so ties (same second, same name) keep creation order.
    if descending:
        records.reverse()
    records.sort(key=lambda record: getattr(record, field), reverse=descending)
    start = query.cursor() or 0
    fields = requested_fields(query)
    data = [_list(request, record, includes, fields) for record in records[start : start + size]]
    reply = request.collection(data, start + size if start + size < len(records) else None)
    if includes:
        assert reply.document is not None
        reply.document["included"] = []  # the sandbox has no tags or flows
    return reply


def wants_profile_count(query: Query) -> bool:
    """``profile_count`` comes with ``additional-fields[list]`` (or ``fields[list]``) and then also counts
    against get_list's stricter 1/s, 15/m bucket (§2.3)."""
    extra = query.csv("additional-fields[list]")
    if any(name != "profile_count" for name in extra):
        raise invalid("additional-fields[list] only accepts 'profile_count'.", parameter="additional-fields[list]")
    return "profile_count" in extra or "profile_count" in query.csv("fields[list]")


def get_list(request: Request) -> Reply:
    record = _existing_list(request)
    includes = request.query.includes(("tags", "flow-triggers"))
    count = request.store.profile_count(record.id) if wants_profile_count(request.query) else None
    reply = request.single(_list(request, record, includes, requested_fields(request.query), count))
    if includes:
        assert reply.document is not None
        reply.document["included"] = []
    return reply


def create_list(request: Request) -> Reply:
    """201 with the new list (§2.4). Duplicate names are allowed: Klaviyo's rule is unconfirmed."""
    body = request.json()
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("type") != "list":
        raise invalid("A list needs {'data': {'type': 'list', 'attributes': {...}}}.", pointer="/data")
    attributes = data.get("attributes")
    name = attributes.get("name") if isinstance(attributes, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise invalid("'name' is required and must be a non-empty string.", pointer="/data/attributes/name")
    opt_in = attributes.get("opt_in_process") or "single_opt_in"
    if opt_in not in OPT_IN_PROCESSES:
        raise invalid(
            f"opt_in_process must be one of {', '.join(OPT_IN_PROCESSES)}.",
            pointer="/data/attributes/opt_in_process",
        )
    record = request.store.create_list(name, opt_in)
    return request.single(resources.list_resource(request.base_url, record), status=201)


def _list(
    request: Request,
    record: ListRecord,
    includes: list[str],
    fields: dict[str, list[str]],
    profile_count: int | None = None,
) -> dict[str, Any]:
    resource = resources.list_resource(request.base_url, record, profile_count)
    for name in includes:
        resource["relationships"][name]["data"] = []
    if profile_count is not None and fields.get("list"):
        fields = {**fields, "list": [*fields["list"], "profile_count"]}
    return sparse(resource, fields)


def _existing_list(request: Request) -> ListRecord:
    list_id = request.path_params["id"]
    record = request.store.get_list(list_id)
    if record is None:
        raise not_found(f"A list with id {list_id} does not exist.")
    return record


# -- membership ------------------------------------------------------------------------------------------


def add_profiles_to_list(request: Request) -> Reply:
    record = _existing_list(request)
    request.store.add_members(record.id, _profile_ids(request))
    return Reply(204)


def remove_profiles_from_list(request: Request) -> Reply:
    record = _existing_list(request)
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
    record = _existing_list(request)
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


_LIST_PARAMS = ("fields[list]", "fields[tag]", "fields[flow]", "include")
_MEMBER_PARAMS = ("filter", "sort", "page[cursor]", "page[size]")

ROUTES = [
    Route("GET", "/api/accounts", "get_accounts", get_accounts, ("fields[account]",)),
    Route("GET", "/api/accounts/{id}", "get_account", get_account, ("fields[account]",)),
    Route(
        "GET",
        "/api/lists",
        "get_lists",
        get_lists,
        (*_LIST_PARAMS, "filter", "sort", "page[cursor]", "page[size]"),
    ),
    Route(
        "GET",
        "/api/lists/{id}",
        "get_list",
        get_list,
        (*_LIST_PARAMS, "additional-fields[list]"),
        extra_buckets=lambda query: ["get_list:profile_count"] if wants_profile_count(query) else [],
    ),
    Route("POST", "/api/lists", "create_list", create_list),
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
