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
    error: one of ``sitewatch.probe.ERROR_KINDS`` or None; error_detail: human-readable cause.
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
        if not isinstance(doc, dict):
            raise MessageError(f"not a JSON object but {type(doc).__name__}")
        if doc.get("v") != VERSION:
            raise MessageError(f"unsupported version v={doc.get('v')!r}, expected {VERSION}")
        unknown = set(doc) - _NAMES - {"v"}
        if unknown:
            raise MessageError(f"unknown fields: {', '.join(sorted(unknown))}")
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
        return parsed.astimezone(UTC)
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
