"""Accounts and lists (docs/klaviyo-api.md §2.1–§2.4); list membership is in api_members.py."""

from __future__ import annotations

from typing import Any

from . import resources
from .context import Reply, Request, Route
from .jsonapi import invalid, not_found
from .params import Paging, Query, requested_fields, sparse
from .store import ListRecord

LIST_PAGING = Paging(default=10, maximum=10)  # §2.2
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
    record = existing_list(request)
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


def existing_list(request: Request) -> ListRecord:
    list_id = request.path_params["id"]
    record = request.store.get_list(list_id)
    if record is None:
        raise not_found(f"A list with id {list_id} does not exist.")
    return record


_LIST_PARAMS = ("fields[list]", "fields[tag]", "fields[flow]", "include")

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
]
