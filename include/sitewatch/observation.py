"""The observation: the one record that flows from probe to Kafka to PostgreSQL.

One observation describes one attempt at checking one site. The probe fills what it saw; the task
that runs it adds ``scheduled_at``, ``attempt`` and ``final``. Failures are values here (``error``
and ``error_detail``), never exceptions. On the wire it is a UTF-8 JSON object with ``"v": 1``;
``from_message`` is strict, because whatever it accepts goes straight into ``site_checks``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from sitewatch.errors import MessageError

VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024  # an observation is ~1 KiB; anything this large is not one
MAX_TEXT = 4096  # longest error_detail / regex / url kept


@dataclass(slots=True)
class Observation:
    """What one attempt at one site saw. Times are UTC; durations are milliseconds.

    site: the site's name (also the Kafka key). url: the URL requested.
    scheduled_at: the DAG run's logical time; with ``site`` and ``attempt`` it identifies the row.
    attempt: Airflow's try number, from 1. final: no retry remains after this attempt.
    checked_at: when the request started. up: every assertion held.
    status_code: the last response's status, None when no response arrived.
    response_time_ms: request start to last body byte, monotonic clock.
    dns_ms, connect_ms, tls_ms: phases of a new connection (None when not measured).
    ttfb_ms: request start to the end of the response headers.
    regex: the pattern searched (None when the site has none); regex_matched: its result.
    error: one of ``sitewatch.probe.http.ERROR_KINDS`` or None; error_detail: human-readable cause.
    final_url: the URL after redirects. body_bytes: body bytes read (up to the cap).
    tls_expires_at: the server certificate's notAfter, for https.
    """

    site: str
    url: str
    checked_at: datetime
    up: bool
    scheduled_at: datetime | None = None
    attempt: int = 1
    final: bool = True
    status_code: int | None = None
    response_time_ms: float | None = None
    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    regex: str | None = None
    regex_matched: bool | None = None
    error: str | None = None
    error_detail: str | None = None
    final_url: str | None = None
    body_bytes: int | None = None
    tls_expires_at: datetime | None = None

    def to_message(self) -> bytes:
        """Encode as the v1 wire format (UTF-8 JSON, timestamps ISO 8601 UTC)."""
        doc = {"v": VERSION}
        for f in FIELDS:
            value = getattr(self, f.name)
            doc[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_message(cls, data: bytes | None) -> Observation:
        """Decode and validate a v1 message.

        Raises MessageError naming the first problem: not UTF-8 JSON, wrong version, a missing or
        unknown field, or a value of the wrong type or range.
        """
        if data is None:
            raise MessageError("empty message (null value)")
        if len(data) > MAX_MESSAGE_BYTES:
            raise MessageError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MessageError(f"not UTF-8 JSON: {exc}") from exc
        except RecursionError as exc:  # e.g. "[" * 100000: deeper than json's C decoder goes
            raise MessageError("not an observation: JSON nested too deeply") from exc
        if not isinstance(doc, dict):
            raise MessageError(f"not a JSON object but {type(doc).__name__}")
        if doc.get("v") != VERSION:
            raise MessageError(f"unsupported version v={doc.get('v')!r}, expected {VERSION}")
        if not _ALLOWED.issuperset(doc):
            unknown = set(doc) - _ALLOWED
            raise MessageError(f"unknown fields: {', '.join(sorted(unknown))}")
        values = _valid_values(doc)
        if values is not None:
            return cls(**values)
        # Something is wrong: check field by field, in order, to name the first problem.
        values = {}
        for name, (kind, required) in _SCHEMA.items():
            if name not in doc or doc[name] is None:
                if required:
                    raise MessageError(f"missing field {name}")
                values[name] = None
                continue
            values[name] = _check(name, kind, doc[name])
        return cls(**values)


FIELDS = dataclasses.fields(Observation)
_NAMES = {f.name for f in FIELDS}
_REQUIRED = {"site", "url", "checked_at", "up", "scheduled_at", "attempt", "final"}
_KINDS = {"str": str, "bool": bool, "int": int, "float": float, "datetime": datetime}
_SCHEMA = {
    f.name: (f.type.split(" | ")[0], f.name in _REQUIRED) for f in FIELDS
}  # annotations are strings under `from __future__ import annotations`
_INT_MAX = 2**31 - 1
_ALLOWED = frozenset(_NAMES | {"v"})
_ORDER = tuple(_SCHEMA)
_REQUIRED_ORDER = tuple(n for n in _ORDER if n in _REQUIRED)
_OF_KIND = {k: tuple(n for n, (kind, _) in _SCHEMA.items() if kind == k) for k in _KINDS}


def fast_row(data: bytes) -> tuple | None:
    """The field values of a plain, valid message as a tuple in ``FIELDS`` order; else None.

    The drain's fast path: ``msgspec`` parses and type-checks the message in one pass of C, about
    four times faster than ``from_message``. It accepts only what ``from_message`` accepts and
    gives the same values (timestamps converted to UTC, durations to float). It declines, and the
    caller falls back to ``from_message`` (which names the problem, or accepts), for anything
    else: invalid or odd messages, and any ``\\u`` escape, so that a NUL or a lone surrogate never
    takes this path. The caller checks ``MAX_MESSAGE_BYTES``.
    """
    if b"\\u" in data:
        return None
    try:
        values = msgspec.structs.astuple(_WIRE.decode(data))
    except (msgspec.MsgspecError, ValueError):
        return None
    row = list(values[1:])  # without "v"
    for i in _DATETIME_INDEXES:  # fromisoformat, so exactly the timestamps _check accepts
        if row[i] is not None:
            try:
                parsed = datetime.fromisoformat(row[i])
                if parsed.tzinfo is None:
                    return None
                row[i] = parsed.astimezone(UTC)
            except (ValueError, OverflowError):
                return None
    return tuple(row)


def _wire_decoder() -> msgspec.json.Decoder:
    """A decoder of the v1 message into a struct whose field types are ``_check``'s rules.

    Timestamps stay text (``fast_row`` parses them as ``_check`` does), so that msgspec's own,
    slightly different timestamp grammar never decides what is accepted.
    """
    types = {
        "str": Annotated[str, msgspec.Meta(max_length=MAX_TEXT)],
        "bool": bool,
        "int": Annotated[int, msgspec.Meta(ge=0, le=_INT_MAX)],
        "float": Annotated[float, msgspec.Meta(ge=0, lt=1e12)],
        "datetime": str,
    }
    fields: list = [("v", Literal[VERSION])]
    for name, (kind, required) in _SCHEMA.items():
        fields.append((name, types[kind]) if required else (name, types[kind] | None, None))
    wire = msgspec.defstruct("WireObservation", fields, kw_only=True, forbid_unknown_fields=True)
    return msgspec.json.Decoder(wire)


_WIRE = _wire_decoder()
_DATETIME_INDEXES = tuple(i for i, name in enumerate(_ORDER) if _SCHEMA[name][0] == "datetime")


def _valid_values(doc: dict) -> dict | None:
    """The field values, converted as ``_check`` converts them, if every field is valid; else None.

    The drain decodes every message, and checking field by field through ``_check`` cost more than
    the JSON parsing itself. This accepts exactly what ``_check`` accepts, checked one kind at a
    time with exact type tests (JSON decoding yields exact builtin types, so ``type(v) is int``
    also excludes bools); on any doubt it returns None and the caller's full check runs.
    """
    values = {name: doc.get(name) for name in _ORDER}
    for name in _REQUIRED_ORDER:
        if values[name] is None:
            return None
    for name in _OF_KIND["str"]:
        v = values[name]
        if v is not None and (type(v) is not str or len(v) > MAX_TEXT or "\x00" in v):
            return None
    for name in _OF_KIND["bool"]:
        v = values[name]
        if v is not None and v is not True and v is not False:
            return None
    for name in _OF_KIND["int"]:
        v = values[name]
        if v is not None and (type(v) is not int or not 0 <= v <= _INT_MAX):
            return None
    for name in _OF_KIND["float"]:
        v = values[name]
        if v is not None:
            if (type(v) is not float and type(v) is not int) or not 0 <= v < 1e12:
                return None
            values[name] = float(v)
    for name in _OF_KIND["datetime"]:
        v = values[name]
        if v is not None:
            if type(v) is not str:
                return None
            try:
                parsed = datetime.fromisoformat(v)
            except ValueError:
                return None
            if parsed.tzinfo is None:
                return None
            try:
                values[name] = parsed.astimezone(UTC)
            except OverflowError:  # out of range in UTC: the full check names it
                return None
    return values


def _check(name: str, kind: str, value):
    """Return ``value`` converted to the field's type, or raise MessageError."""
    if kind == "datetime":
        if not isinstance(value, str):
            raise MessageError(
                f"{name}: expected an ISO 8601 timestamp, got {type(value).__name__}"
            )
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise MessageError(f"{name}: invalid timestamp {value[:64]!r}") from exc
        if parsed.tzinfo is None:
            raise MessageError(f"{name}: timestamp {value[:64]!r} has no UTC offset")
        try:
            return parsed.astimezone(UTC)
        except OverflowError as exc:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
            raise MessageError(f"{name}: timestamp {value[:64]!r} is out of range") from exc
    if kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not 0 <= value < 1e12:
            raise MessageError(f"{name}: expected a duration in ms, got {value!r:.64}")
        return float(value)
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _INT_MAX:
            raise MessageError(f"{name}: expected a non-negative integer, got {value!r:.64}")
        return value
    if not isinstance(value, _KINDS[kind]):
        raise MessageError(f"{name}: expected {kind}, got {type(value).__name__}")
    if kind == "str":
        if "\x00" in value:
            raise MessageError(f"{name}: text contains a NUL character")
        if len(value) > MAX_TEXT:
            raise MessageError(f"{name}: text of {len(value)} characters exceeds {MAX_TEXT}")
    return value
