"""Profiles and the bulk-import upsert rules (klaviyo-api.md §2.5, §3.1, §3.3).

The :class:`ProfileBook` does no locking: the store calls it with its lock held. Records are sparse dicts
(only the fields a profile has, plus ``id``, ``created`` and ``updated``) so a million profiles stay
affordable; :func:`render_attributes` fills in the rest when a profile is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

IDENTIFIERS = ("email", "phone_number", "external_id")
PROFILE_FIELDS = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
)


class ImportProblem(Exception):
    """A profile that passed validation but cannot be applied; it becomes an import error (§2.8)."""

    def __init__(self, code: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.title, self.detail = code, title, detail


class ProfileBook:
    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self.records: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # creation order; profiles are never deleted
        # Identifier indexes. Emails match case-insensitively (an unconfirmed but safe assumption).
        self.by_email: dict[str, str] = {}
        self.by_phone: dict[str, str] = {}
        self.by_external_id: dict[str, str] = {}

    def lookup(self, field: str, value: str) -> str | None:
        """The id of the profile whose ``field`` (id, email, phone_number, external_id) is ``value``."""
        if field == "id":
            return value if value in self.records else None
        if field == "email":
            return self.by_email.get(value.lower())
        return (self.by_phone if field == "phone_number" else self.by_external_id).get(value)

    def upsert(self, attributes: dict[str, Any], meta: dict[str, Any] | None, profile_id: str | None, now: str) -> str:
        """Update the profile the identifiers point at, or create one; return its id (§3.3).

        Nulls are ignored rather than clearing a field, and ``properties`` merge key by key (§2.5, §3.3).
        Identifiers that point at two different profiles are a conflict; Klaviyo answers 409 elsewhere
        (§3.3) and its bulk behaviour is unconfirmed, so the profile fails as an import error.
        """
        email = attributes.get("email")
        email_key = email.lower() if email is not None else None
        phone = attributes.get("phone_number")
        external_id = attributes.get("external_id")
        if phone is None and external_id is None and profile_id is None:
            owner = self.by_email.get(email_key)  # the usual bulk import: email is the only identifier
        else:
            owner = self._owner(email_key, phone, external_id, profile_id)
        if owner is None:
            owner = self._create(attributes, now)
            if email_key is not None:
                self.by_email[email_key] = owner
            if phone is not None:
                self.by_phone[phone] = owner
            if external_id is not None:
                self.by_external_id[external_id] = owner
        else:
            record = self.records[owner]
            record["updated"] = now
            self._merge(record, attributes)
        if meta:
            patch = meta.get("patch_properties")
            if patch:
                _patch_properties(self.records[owner], patch)
        return owner

    def _owner(
        self, email_key: str | None, phone: str | None, external_id: str | None, profile_id: str | None
    ) -> str | None:
        """The one existing profile these identifiers point at, or None for a new profile."""
        if profile_id is not None and profile_id not in self.records:
            raise ImportProblem("not_found", "Not found.", f"A profile with id {profile_id} does not exist.")
        owner = profile_id
        for found in (
            self.by_email.get(email_key) if email_key is not None else None,
            self.by_phone.get(phone) if phone is not None else None,
            self.by_external_id.get(external_id) if external_id is not None else None,
        ):
            if found is None or found == owner:
                continue
            if owner is not None:
                raise ImportProblem(
                    "duplicate_profile",
                    "Conflict.",
                    "A profile already exists with one of these identifiers.",
                )
            owner = found
        return owner

    def _create(self, attributes: dict[str, Any], now: str) -> str:
        """The common case of a bulk import, kept lean: the request's attributes dict becomes the record
        (the job drops its payload once applied), minus nulls. Nested dicts may stay shared with the request
        because records never change them in place."""
        record = attributes if None not in attributes.values() else _without_nulls(attributes)
        properties, location = record.get("properties"), record.get("location")
        if properties is not None and None in properties.values():
            record["properties"] = _without_nulls(properties)
        if location is not None and None in location.values():
            record["location"] = _without_nulls(location)
        profile_id = record["id"] = self._new_id()
        record["created"] = record["updated"] = now
        self.records[profile_id] = record
        self.order.append(profile_id)
        return profile_id

    def _merge(self, record: dict[str, Any], attributes: dict[str, Any]) -> None:
        for key, value in attributes.items():
            if value is None:
                continue
            if key == "properties" or key == "location":
                # A new dict rather than an update in place, so snapshots taken earlier stay unchanged.
                record[key] = {**(record.get(key) or {}), **_without_nulls(value)}
            else:
                if key in IDENTIFIERS:
                    self._reindex(record, key, value)
                record[key] = value

    def _reindex(self, record: dict[str, Any], field: str, value: str) -> None:
        old = record.get(field)
        if field == "email":
            index, old, value = self.by_email, old.lower() if old else None, value.lower()
        else:
            index = self.by_phone if field == "phone_number" else self.by_external_id
        if old is not None and old != value:
            del index[old]
        index[value] = record["id"]

    def snapshot(self, profile_id: str) -> dict[str, Any]:
        """A copy safe to read after the lock is released: :meth:`upsert` replaces nested values (properties,
        location, list properties) instead of mutating them, so a shallow copy is enough."""
        return dict(self.records[profile_id])


def _without_nulls(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _patch_properties(record: dict[str, Any], patch: dict[str, Any]) -> None:
    """``meta.patch_properties``: ``append``/``unappend`` values of list properties, ``unset`` keys (§3.1)."""
    properties = dict(record.get("properties") or {})
    for name, value in (patch.get("append") or {}).items():
        current = properties.get(name)
        items = [] if current is None else list(current) if isinstance(current, list) else [current]
        properties[name] = items + (value if isinstance(value, list) else [value])
    for name, value in (patch.get("unappend") or {}).items():
        current = properties.get(name)
        if isinstance(current, list):
            drop = value if isinstance(value, list) else [value]
            properties[name] = [item for item in current if item not in drop]
    unset = patch.get("unset") or []
    for name in [unset] if isinstance(unset, str) else unset:
        properties.pop(name, None)
    record["properties"] = properties


def render_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """A profile's ``attributes`` as Klaviyo shows them: every field present, null when unknown (§2.11)."""
    attributes: dict[str, Any] = {name: record.get(name) for name in PROFILE_FIELDS}
    attributes.update(
        created=record["created"],
        updated=record["updated"],
        last_event_date=None,
        location=record.get("location"),
        properties=record.get("properties") or {},
    )
    return attributes
