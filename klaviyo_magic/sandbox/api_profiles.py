"""Reading profiles, chiefly to turn emails into the profile ids list membership needs (§2.10, §2.13)."""

from __future__ import annotations

from . import resources
from .context import Reply, Request, Route
from .jsonapi import not_found
from .params import Paging, requested_fields, sparse

PROFILE_PAGING = Paging(default=20, maximum=100)  # §2.13
_IDENTIFIER_FILTERS = {name: ("equals", "any") for name in ("id", "email", "phone_number", "external_id")}


def get_profiles(request: Request) -> Reply:
    """Profiles in creation order. Filters on identifiers use the indexes; conditions are ANDed."""
    query = request.query
    conditions = query.filters(_IDENTIFIER_FILTERS)
    # Ids are time-ordered, so sorting by id and by created is the same order here.
    _, descending = query.sort(("created", "id"), "id")
    size = query.page_size(PROFILE_PAGING)
    store = request.store
    if conditions:
        first, *others = conditions
        found = store.find_profiles(first.field, first.values)
        for condition in others:
            matching = {profile["id"] for profile in store.find_profiles(condition.field, condition.values)}
            found = [profile for profile in found if profile["id"] in matching]
        if descending:
            found.reverse()
        start = query.cursor() or 0
        page, next_start = found[start : start + size], (start + size if start + size < len(found) else None)
    else:
        page, next_start = store.profile_page(query.cursor(), size, descending)
    fields = requested_fields(query)
    return request.collection(
        [sparse(resources.profile_resource(request.base_url, p), fields) for p in page], next_start
    )


def get_profile(request: Request) -> Reply:
    profile_id = request.path_params["id"]
    found = request.store.get_profiles([profile_id])
    if not found:
        raise not_found(f"A profile with id {profile_id} does not exist.")
    return request.single(
        sparse(resources.profile_resource(request.base_url, found[0]), requested_fields(request.query))
    )


ROUTES = [
    Route(
        "GET",
        "/api/profiles",
        "get_profiles",
        get_profiles,
        ("filter", "sort", "page[cursor]", "page[size]", "fields[profile]"),
    ),
    Route("GET", "/api/profiles/{id}", "get_profile", get_profile, ("fields[profile]",)),
]
