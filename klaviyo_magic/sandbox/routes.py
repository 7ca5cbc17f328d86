"""The endpoint table and how a request path finds its route (unknown path 404, wrong method 405)."""

from __future__ import annotations

from . import api_jobs, api_lists, api_members, api_profiles
from .context import Route
from .jsonapi import ApiError, error_object, not_found

ROUTES: list[Route] = [*api_lists.ROUTES, *api_members.ROUTES, *api_profiles.ROUTES, *api_jobs.ROUTES]


def resolve(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for ``method path`` (path without its trailing slash) and its path parameters."""
    allowed: set[str] = set()
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match:
            if route.method == method:
                return route, match.groupdict()
            allowed.add(route.method)
    if allowed:
        methods = ", ".join(sorted(allowed))
        detail = f'Method "{method}" not allowed on {path}; use {methods}.'
        error = error_object(405, "method_not_allowed", "Method not allowed.", detail)
        raise ApiError(405, [error], {"Allow": methods})
    raise not_found(f"There is no endpoint at {path}.")
