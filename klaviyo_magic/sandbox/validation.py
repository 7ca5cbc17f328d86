"""Synchronous checks of a bulk-import request (docs/klaviyo-api.md §2.5, §3.1, §3.2).

Klaviyo validates the whole request before accepting it: one bad profile makes the POST a 400 and nothing
is imported. Each bad profile gets one error whose ``source.pointer`` names it, so a client can set those
profiles aside and resend the rest. This runs on every 10,000-profile request, so the per-profile loop uses
precompiled regexes and plain type checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .jsonapi import ApiError, error_object
from .profiles import LOCATION_FIELDS, PROFILE_FIELDS

MAX_PROFILES = 10_000
# "5 MB" and "100 KB" are read as decimal units, the stricter reading: a client that fits them fits Klaviyo.
MAX_BODY_BYTES = 5_000_000
MAX_PROFILE_BYTES = 100_000

# Klaviyo's exact email rule is unconfirmed (§3.2); this accepts ordinary addresses and rejects the usual
# mistakes: no @, spaces, empty parts, consecutive or edge dots, a missing or one-letter top-level domain.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
).fullmatch
_E164 = re.compile(r"\+[1-9][0-9]{6,14}").fullmatch  # E.164: "+", country code, at most 15 digits (§3.1)

_STRING_FIELDS = frozenset(PROFILE_FIELDS) | {"_kx"}  # _kx: the encrypted web-tracking id, accepted but not shown
_OBJECT_FIELDS = frozenset({"location", "properties"})
_PROFILE_FIELDS = _STRING_FIELDS | _OBJECT_FIELDS
_PATCH_OPERATIONS = frozenset({"append", "unappend", "unset"})

# How a profile object starts in the raw body, compact or with json.dumps' default spacing; see _oversized.
_PROFILE_MARKERS = (b'{"type":"profile"', b'{"type": "profile"')


@dataclass(frozen=True)
class ImportRequest:
    profiles: list[dict[str, Any]]
    list_ids: list[str]


def check_bulk_import(
    document: Any,
    body: bytes,
    missing_lists: Callable[[list[str]], list[str]],
    rejects: Callable[[str], bool] | None,
) -> ImportRequest:
    """Return the profiles and list ids of a valid request, or raise one 400 listing every problem.

    ``rejects`` marks emails that must fail validation (the ``reject_emails`` fault).
    """
    data = _member(document, "data", dict, "/data")
    if data.get("type") != "profile-bulk-import-job":
        raise _invalid("The resource type must be 'profile-bulk-import-job'.", "/data/type")
    attributes = _member(data, "attributes", dict, "/data/attributes")
    profiles_object = _member(attributes, "profiles", dict, "/data/attributes/profiles")
    profiles = _member(profiles_object, "data", list, "/data/attributes/profiles/data")
    if not profiles:
        raise _invalid("At least one profile is required.", "/data/attributes/profiles/data")
    if len(profiles) > MAX_PROFILES:
        raise _invalid(
            f"A bulk import job accepts at most {MAX_PROFILES} profiles; this request has {len(profiles)}.",
            "/data/attributes/profiles/data",
        )
    list_ids, errors = _check_lists(data.get("relationships"), missing_lists)
    problems: dict[int, tuple[str, str]] = {}
    for index, resource in enumerate(profiles):
        problem = _check_profile(resource, rejects)
        if problem is not None:
            problems[index] = problem
    for index in _oversized(body, profiles):
        problems.setdefault(
            index, ("", f"The profile is larger than the {MAX_PROFILE_BYTES // 1000} KB allowed per profile.")
        )
    for index in sorted(problems):
        suffix, detail = problems[index]
        pointer = f"/data/attributes/profiles/data/{index}{suffix}"
        errors.append(error_object(400, "invalid", "Invalid input.", detail, pointer=pointer))
    if errors:
        raise ApiError(400, errors)
    return ImportRequest(profiles, list_ids)


def _check_lists(relationships: Any, missing_lists: Callable[[list[str]], list[str]]) -> tuple[list[str], list]:
    """The job's list ids. An unknown list is a 400 that names no profile (§2.5); any number of lists is
    accepted because Klaviyo documents no maximum (§7)."""
    if relationships is None:
        return [], []
    if not isinstance(relationships, dict):
        raise _invalid("relationships must be an object.", "/data/relationships")
    lists = relationships.get("lists")
    if lists is None:
        return [], []
    entries = _member(lists, "data", list, "/data/relationships/lists/data")
    list_ids: list[str] = []
    for position, entry in enumerate(entries):
        pointer = f"/data/relationships/lists/data/{position}"
        if not isinstance(entry, dict) or entry.get("type") != "list" or not isinstance(entry.get("id"), str):
            raise _invalid("Each list must be {'type': 'list', 'id': '...'}.", pointer)
        list_ids.append(entry["id"])
    missing = set(missing_lists(list_ids))
    errors = []
    for position, list_id in enumerate(list_ids):
        if list_id in missing:
            pointer = f"/data/relationships/lists/data/{position}/id"
            errors.append(
                error_object(400, "invalid", "Invalid input.", f"List '{list_id}' does not exist.", pointer=pointer)
            )
    return list(dict.fromkeys(list_ids)), errors


def profile_problem(attributes: dict[str, Any]) -> str | None:
    """Why a bulk import would refuse a profile with these attributes, or None; for seeding from the test side."""
    problem = _check_profile({"type": "profile", "attributes": attributes}, None)
    return None if problem is None else problem[1]


def _check_profile(resource: Any, rejects: Callable[[str], bool] | None) -> tuple[str, str] | None:
    """The first problem with one profile as ``(pointer suffix, detail)``, or None when it is valid."""
    if type(resource) is not dict:
        return "", "Each profile must be an object."
    if resource.get("type") != "profile":
        return "/type", "The resource type must be 'profile'."
    attributes = resource.get("attributes")
    if type(attributes) is not dict:
        return "/attributes", "attributes must be an object."
    for name, value in attributes.items():
        # One set lookup per field checks both the name and the type; this runs for every field of up to
        # 10,000 profiles, so the common cases (a string, a null, properties or location) come first.
        if type(value) is str:
            if name in _STRING_FIELDS:
                continue
        elif value is None:
            if name in _PROFILE_FIELDS:
                continue
        elif type(value) is dict and name in _OBJECT_FIELDS:
            continue
        return f"/attributes/{name}", _field_problem(name)
    email = attributes.get("email")
    if email is not None and not _EMAIL(email):
        return "/attributes/email", f"Invalid email address '{email}'."
    phone = attributes.get("phone_number")
    if phone is not None and not _E164(phone):
        return (
            "/attributes/phone_number",
            f"Invalid phone number '{phone}'; use E.164 format like +15005550006.",
        )
    if not (email or phone or attributes.get("external_id") or resource.get("id")):
        return "/attributes", "A profile needs an identifier: email, phone_number or external_id."
    if rejects is not None and email and rejects(email):
        return "/attributes/email", f"The email address '{email}' is not allowed."
    location = attributes.get("location")
    if location is not None and not location.keys() <= LOCATION_FIELDS:
        unknown = sorted(location.keys() - LOCATION_FIELDS)[0]
        return f"/attributes/location/{unknown}", f"'{unknown}' is not a valid location field."
    profile_id = resource.get("id")
    if profile_id is not None and type(profile_id) is not str:  # null is allowed: the official SDK sends it
        return "/id", "id must be a string or null."
    meta = resource.get("meta")
    return None if meta is None else _check_meta(meta)


def _field_problem(name: str) -> str:
    if name not in _PROFILE_FIELDS:
        return f"'{name}' is not a valid field for the resource 'profile'."
    return f"'{name}' must be {'an object' if name in _OBJECT_FIELDS else 'a string'} or null."


def _check_meta(meta: Any) -> tuple[str, str] | None:
    if type(meta) is not dict:
        return "/meta", "meta must be an object."
    patch = meta.get("patch_properties")
    if patch is None:
        return None
    if type(patch) is not dict or not patch.keys() <= _PATCH_OPERATIONS:
        return "/meta/patch_properties", "patch_properties takes only 'append', 'unappend' and 'unset'."
    for operation in ("append", "unappend"):
        if type(patch.get(operation, {})) is not dict:
            return f"/meta/patch_properties/{operation}", f"{operation} must map property names to values."
    unset = patch.get("unset", [])
    if not isinstance(unset, str) and not (type(unset) is list and all(type(name) is str for name in unset)):
        return "/meta/patch_properties/unset", "unset must be a property name or a list of them."
    return None


def _oversized(body: bytes, profiles: list[Any]) -> list[int]:
    """Indexes of profiles whose JSON exceeds MAX_PROFILE_BYTES.

    Serializing every profile to measure it would cost more than parsing the request, so the raw body is
    used as a screen: split at each profile's opening ``{"type":"profile"``, a piece is at least as long as
    the profile it starts (a JSON string cannot hold an unescaped quote, so only real objects match). Only
    profiles whose piece is too long are measured exactly. If the pieces cannot be matched one-to-one with
    the profiles (other spacing or key order, nested look-alikes), every profile is measured.
    """
    if len(body) <= MAX_PROFILE_BYTES:
        return []
    candidates: Iterable[int] = range(len(profiles))
    for marker in _PROFILE_MARKERS:
        pieces = body.split(marker)[1:]
        if len(pieces) == len(profiles):
            limit = MAX_PROFILE_BYTES - len(marker)
            if max(map(len, pieces)) <= limit:
                return []
            candidates = [index for index, piece in enumerate(pieces) if len(piece) > limit]
            break
    return [index for index in candidates if _size(profiles[index]) > MAX_PROFILE_BYTES]


def _size(profile: Any) -> int:
    return len(json.dumps(profile, separators=(",", ":"), ensure_ascii=False).encode())


def _member(container: Any, name: str, kind: type, pointer: str) -> Any:
    value = container.get(name) if isinstance(container, dict) else None
    if not isinstance(value, kind):
        raise _invalid(f"'{pointer}' is required and must be {'a list' if kind is list else 'an object'}.", pointer)
    return value


def _invalid(detail: str, pointer: str) -> ApiError:
    return ApiError(400, [error_object(400, "invalid", "Invalid input.", detail, pointer=pointer)])
