"""Profiles and the bulk-import upsert rules (docs/klaviyo-api.md §2.5, §3.1, §3.3).

The :class:`ProfileBook` does no locking: the store calls it with its lock held. Records are sparse dicts
(only the fields a profile has) so a million profiles stay affordable; :meth:`ProfileBook.snapshot` adds
``id``, ``created`` and ``updated``, and :func:`render_attributes` fills in the rest when a profile is shown.
"""

from __future__ import annotations

from typing import Any

from .jsonapi import UlidFactory

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
LOCATION_FIELDS = frozenset(
    {"address1", "address2", "city", "country", "region", "zip", "timezone", "ip", "latitude", "longitude"}
)


class ImportProblem(Exception):
    """A profile that passed validation but cannot be applied; it becomes an import error (§2.8)."""

    def __init__(self, code: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.title, self.detail = code, title, detail


class ProfileBook:
    """Profiles by *key*: their position in creation order, which also numbers their ids.

    Keys rather than id strings index everything (the identifier indexes, list membership, jobs), because a
    million-profile import spends most of its time in these dicts: small consecutive ints hash to
    consecutive slots, while random-looking strings scatter every access, and no id string is made until a
    profile is shown. ``records[key]`` is the profile's fields (sparse: only those it has, no nulls);
    ``created``/``updated`` run alongside. Profiles are never deleted.
    """

    def __init__(self, ids: UlidFactory) -> None:
        self._ids = ids
        self._base = ids.reserve()  # profile ids are this number plus the key
        self.records: list[dict[str, Any]] = []
        self.created: list[str] = []
        self.updated: list[str] = []
        # Identifier indexes. Emails match case-insensitively (an unconfirmed but safe assumption).
        self.by_email: dict[str, int] = {}
        self.by_phone: dict[str, int] = {}
        self.by_external_id: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.records)

    def id_of(self, key: int) -> str:
        return self._ids.format(self._base + key)

    def key_of(self, profile_id: str) -> int | None:
        """The key of the profile with this id, or None when there is none."""
        number = self._ids.parse(profile_id)
        key = None if number is None else number - self._base
        return key if key is not None and 0 <= key < len(self.records) else None

    def lookup(self, field: str, value: str) -> int | None:
        """The key of the profile whose ``field`` (id, email, phone_number, external_id) is ``value``."""
        if field == "id":
            return self.key_of(value)
        if field == "email":
            return self.by_email.get(value.lower())
        return (self.by_phone if field == "phone_number" else self.by_external_id).get(value)

    def upsert(self, attributes: dict[str, Any], meta: dict[str, Any] | None, profile_id: str | None, now: str) -> int:
        """Update the profile the identifiers point at, or create one; return its key (§3.3).

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
            self.updated[owner] = now
            self._merge(owner, attributes)
        if meta:
            patch = meta.get("patch_properties")
            if patch:
                _patch_properties(self.records[owner], patch)
        return owner

    def _owner(
        self, email_key: str | None, phone: str | None, external_id: str | None, profile_id: str | None
    ) -> int | None:
        """The key of the one existing profile these identifiers point at, or None for a new profile."""
        owner = None
        if profile_id is not None:
            owner = self.key_of(profile_id)
            if owner is None:
                raise ImportProblem("not_found", "Not found.", f"A profile with id {profile_id} does not exist.")
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

    def _create(self, attributes: dict[str, Any], now: str) -> int:
        """The common case of a bulk import, kept lean: the request's attributes dict becomes the record
        (the job drops its payload once applied), minus nulls. Nested dicts may stay shared with the request
        because records never change them in place."""
        record = attributes if None not in attributes.values() else _without_nulls(attributes)
        properties, location = record.get("properties"), record.get("location")
        if properties is not None and None in properties.values():
            record["properties"] = _without_nulls(properties)
        if location is not None and None in location.values():
            record["location"] = _without_nulls(location)
        key = len(self.records)
        self.records.append(record)
        self.created.append(now)
        self.updated.append(now)
        return key

    def _merge(self, key: int, attributes: dict[str, Any]) -> None:
        record = self.records[key]
        for name, value in attributes.items():
            if value is None:
                continue
            if name == "properties" or name == "location":
                # A new dict rather than an update in place: snapshots share nested dicts with the record.
                record[name] = {**(record.get(name) or {}), **_without_nulls(value)}
            else:
                if name in IDENTIFIERS:
                    self._reindex(key, record.get(name), name, value)
                record[name] = value

    def _reindex(self, key: int, old: str | None, field: str, value: str) -> None:
        if field == "email":
            index, old, value = self.by_email, old.lower() if old else None, value.lower()
        else:
            index = self.by_phone if field == "phone_number" else self.by_external_id
        if old is not None and old != value:
            del index[old]
        index[value] = key

    def snapshot(self, key: int) -> dict[str, Any]:
        """The profile as a new dict with ``id``, ``created`` and ``updated``, safe to read after the lock is
        released: :meth:`upsert` replaces nested values (properties, location) instead of mutating them."""
        return {**self.records[key], "id": self.id_of(key), "created": self.created[key], "updated": self.updated[key]}


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
