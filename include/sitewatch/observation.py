"""The observation: the one record that flows from probe to Kafka to PostgreSQL.

One observation describes one attempt at checking one site. The probe fills what it saw; the task
that runs it adds ``scheduled_at``, ``attempt`` and ``final``. Failures are values here (``error``
and ``error_detail``), never exceptions. On the wire it is a UTF-8 JSON object with ``"v": 1``;
``from_message`` is strict, because whatever it accepts goes straight into ``site_checks``.

Each field is declared once, on ``Observation``: its kind (Python type, wire rule, ``site_checks``
column type) and whether it is required (on the wire, and NOT NULL in the table). ``COLUMNS`` lists
those declarations; ``from_message``, the drain's fast decoder ``fast_row`` and
``sitewatch.storage.checks`` are derived from it. The SQL migrations state the table a second time
and are frozen once released, so tests/integration/test_columns.py holds the two equal.

A field added after v1 was released (``location``) carries a value for when it is absent from the
message (``Column.absent``): messages of producers of the previous version stay valid while an
upgrade is under way, and mean what they meant then.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from types import MappingProxyType
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from sitewatch.errors import MessageError
from sitewatch.names import LOCAL_LOCATION

VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024  # an observation is ~1 KiB; anything this large is not one
MAX_TEXT = 4096  # longest error_detail / regex / url kept


# --- kinds: how a value is checked on the wire, and the column type that holds it -----------------


class Kind:
    """One kind of field value; this base checks only the type (the booleans' whole rule).

    python: the value's type in the record. pg_type: the ``site_checks`` column type, spelled as
    ``information_schema.columns.data_type`` spells it (psycopg's COPY takes the same names).
    wire: the rule as a msgspec type, for ``fast_row`` (but for a text's ``rule``, which
    ``fast_row`` checks after msgspec). ``check`` states the same rule for ``from_message`` and
    names the problem. ``fast_row`` must accept nothing ``check`` rejects (it may decline more:
    then the strict path decides); the property test in tests/unit/test_observation.py holds
    them to that.
    """

    __slots__ = ("pg_type", "python", "wire")

    def __init__(self, python: type, pg_type: str, wire: Any = None):
        self.python, self.pg_type = python, pg_type
        self.wire = python if wire is None else wire

    def check(self, name: str, value: Any) -> Any:
        """Return the JSON ``value`` (not None) of field ``name`` as the record holds it.

        Raises MessageError("<name>: <problem>").
        """
        if not isinstance(value, self.python):
            raise MessageError(
                f"{name}: expected {self.python.__name__}, got {type(value).__name__}"
            )
        return value


class _Text(Kind):
    """At most ``max_length`` characters, and no NUL (PostgreSQL text cannot hold one); with a
    ``rule``, also a match of it (``rule.search``: anchor it), else ``problem`` with the value
    put in its ``{}``.

    The wire type checks only the length: ``fast_row`` checks the rule itself, remembering the
    values that passed (msgspec's ``Meta(pattern=...)`` costs ~0.3 µs a field, a tenth of
    ``fast_row``).
    """

    __slots__ = ("max_length", "problem", "rule")

    def __init__(self, max_length: int, rule: re.Pattern | None = None, problem: str = ""):
        super().__init__(str, "text", Annotated[str, msgspec.Meta(max_length=max_length)])
        self.max_length, self.rule, self.problem = max_length, rule, problem

    def check(self, name, value):
        value = super().check(name, value)
        if "\x00" in value:
            raise MessageError(f"{name}: text contains a NUL character")
        if len(value) > self.max_length:
            raise MessageError(f"{name}: text of {len(value)} characters exceeds {self.max_length}")
        if self.rule is not None and not self.rule.search(value):
            raise MessageError(f"{name}: {self.problem.format(repr(value[:64]))}")
        return value


class _Count(Kind):
    """A non-negative integer below ``below`` (a JSON bool is not one)."""

    __slots__ = ("below",)

    def __init__(self, pg_type: str, below: int):
        super().__init__(int, pg_type, Annotated[int, msgspec.Meta(ge=0, lt=below)])
        self.below = below

    def check(self, name, value):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < self.below:
            raise MessageError(f"{name}: expected a non-negative integer, got {value!r:.64}")
        return value


class _Duration(Kind):
    """Milliseconds, 0 <= ms < ``below``; a JSON integer is taken as a float."""

    __slots__ = ("below",)

    def __init__(self, below: float):
        wire = Annotated[float, msgspec.Meta(ge=0, lt=below)]
        super().__init__(float, "double precision", wire)
        self.below = below

    def check(self, name, value):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not 0 <= value < self.below:  # NaN fails the comparison too
            raise MessageError(f"{name}: expected a duration in ms, got {value!r:.64}")
        return float(value)


class _Timestamp(Kind):
    """ISO 8601 text with a UTC offset (``datetime.fromisoformat``), converted to UTC.

    On the wire it stays text: ``fast_row`` parses it as ``check`` does, so that msgspec's own,
    slightly different timestamp grammar never decides what is accepted.
    """

    __slots__ = ()

    def __init__(self):
        super().__init__(datetime, "timestamp with time zone", str)

    def check(self, name, value):
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


SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""The rule of a site's name (README, "User-facing contract"), for ``fullmatch``; the sites file
(sitewatch.config) and the Sites page check names with it too."""
LOCATION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")
"""The rule of a location's name (sites-file key ``locations``), for ``fullmatch``; the sites file
(sitewatch.config) checks names with it too. Short, because it names a queue
(``sitewatch.names.location_queue``) and a Celery worker as well, and is part of every stored
row's key."""
HTTP_URL = re.compile(r"(?ai)\Ahttps?://")
"""What an http(s) URL starts with, for ``match``/``search``; scheme in any case, as urlsplit
takes it. ASCII-only case folding: with Unicode folding ``httpſ://`` would match."""

TEXT = _Text(max_length=MAX_TEXT)
# A name that passes the sites file's rule: one the drain can always index (a 4096-character
# random name overflows a btree entry) and the Sites page look up. \Z, not $, which would let a
# final line break through.
NAME = _Text(
    MAX_TEXT,
    re.compile(rf"\A(?:{SITE_NAME.pattern})\Z"),
    "invalid name {}: use at most 63 of a-z, 0-9, '_', '-'; start with a letter or digit",
)
# Like NAME: a location is part of site_checks' key and of a Celery queue's name.
LOCATION = _Text(
    MAX_TEXT,
    re.compile(rf"\A(?:{LOCATION_NAME.pattern})\Z"),
    "invalid location {}: use at most 31 of a-z, 0-9, '_', '-'; start with a letter or digit",
)
CHECK_URL = re.compile(r"(?ai)\A(?:https?|tcp|tls|dns)://")
"""What a checked URL starts with: http(s), a TCP check's tcp:// or tls://, a DNS check's dns://.
Only an http(s) one is ever a link (``HTTP_URL``); the Sites page shows the others as text."""
# Stored URLs become links on the Sites page: a javascript: or data: URL must never get there.
URL = _Text(MAX_TEXT, HTTP_URL, "not an http(s) URL: {}")
CHECKED_URL = _Text(MAX_TEXT, CHECK_URL, "not an http(s), tcp, tls or dns URL: {}")
STEP_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
"""The rule of a flow step's name (sites-file key ``steps``), for ``fullmatch``; also the rule of
the names of the values a step extracts, so ``${step.value}`` reads as one word each side."""
MAX_STEPS = 20
"""The most steps a flow may have (sites-file key ``steps``) and a stored check may record."""
# Airflow's run ids are at most 250 characters (its ID_LEN).
RUN_ID = _Text(max_length=250)
TLS_VERSION = _Text(max_length=16)  # as OpenSSL names one: TLSv1.2, TLSv1.3
BOOLEAN = Kind(bool, "boolean")
TIMESTAMPTZ = _Timestamp()
DURATION = _Duration(below=1e12)
# Every count on the wire stays in int4's range, also for a bigint column (room for a later cap).
INTEGER = _Count("integer", below=2**31)
BIGINT = _Count("bigint", below=2**31)
STEP = _Text(
    MAX_TEXT,
    re.compile(rf"\A(?:{STEP_NAME.pattern})\Z"),
    "invalid step name {}: use at most 32 of a-z, 0-9, '_'; start with a letter",
)
STEP_FIELDS: Mapping[str, tuple[Kind, bool]] = MappingProxyType(
    {
        "name": (STEP, True),
        "method": (_Text(max_length=10), True),
        "url": (URL, True),  # as the sites file writes it: ${step.value} unreplaced
        "always": (BOOLEAN, True),
        "passed": (BOOLEAN, False),  # None: not run (an earlier step failed)
        "status": (INTEGER, False),
        "start_ms": (DURATION, False),  # the flow's start to the step's request start
        "response_ms": (DURATION, False),  # the step's own request start to last body byte
        "ttfb_ms": (DURATION, False),
        # the phases of the connection the step opened (none: it reused one)
        "dns_ms": (DURATION, False),
        "connect_ms": (DURATION, False),
        "tls_ms": (DURATION, False),
        "body_bytes": (BIGINT, False),
        "error": (TEXT, False),
        "error_detail": (TEXT, False),
    }
)
"""What a flow's observation records of each step: field -> (kind, required)."""


class _Steps(Kind):
    """A flow's steps as a JSON array of objects with ``STEP_FIELDS`` (at most ``MAX_STEPS``), held
    as ``jsonb``. ``check`` returns new objects with the checked values (a JSON 2 in a duration is
    2.0), and refuses text jsonb cannot hold (a lone surrogate; NUL is ``_Text``'s)."""

    __slots__ = ()

    def __init__(self):
        super().__init__(list, "jsonb", list)

    def check(self, name, value):
        value = super().check(name, value)
        if len(value) > MAX_STEPS:
            raise MessageError(f"{name}: {len(value)} steps exceed {MAX_STEPS}")
        return [self._step(f"{name}[{index}]", step) for index, step in enumerate(value)]

    @staticmethod
    def _step(name: str, step: Any) -> dict:
        if not isinstance(step, dict):
            raise MessageError(f"{name}: expected an object, got {type(step).__name__}")
        if unknown := set(step) - STEP_FIELDS.keys():
            raise MessageError(f"{name}: unknown fields: {', '.join(sorted(unknown))}")
        checked = {}
        for key, (kind, required) in STEP_FIELDS.items():
            item = step.get(key)
            if item is None:
                if required:
                    raise MessageError(f"{name}: missing field {key}")
                continue
            item = kind.check(f"{name}.{key}", item)
            if isinstance(item, str) and not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    raise MessageError(f"{name}.{key}: text holds a lone surrogate") from None
            checked[key] = item
        return checked


STEPS = _Steps()


class Column(NamedTuple):
    """One field's declaration: ``name``, its ``kind``, whether it is ``required`` (not null on
    the wire, NOT NULL in ``site_checks``), and its value when ``absent`` from a message (None:
    a required field must then be present)."""

    name: str
    kind: Kind
    required: bool
    absent: Any = None


def column(
    kind: Kind,
    *,
    required: bool = True,
    default: Any = dataclasses.MISSING,
    absent: Any = None,
) -> Any:
    """Declare a field of ``Observation`` (a ``dataclasses.field`` carrying its kind).

    An optional field (``required=False``) defaults to None; a required one has no default
    unless given one. ``absent``: what a message without the field means, for a required field
    added after v1 (both decoders use it; an explicit null is still refused). ``default`` is the
    record's own default, for code that builds one; ``absent`` belongs to the wire format and
    stays what older producers meant even if ``default`` changes.
    """
    if not required and default is dataclasses.MISSING:
        default = None
    metadata = {"kind": kind, "required": required, "absent": absent}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(slots=True)
class Observation:
    """What one attempt at one site saw. Times are UTC; durations are milliseconds.

    site: the site's name (``SITE_NAME``; also the Kafka key). url: the http(s) URL requested,
    a TCP check's tcp://host:port or tls://host:port, a DNS check's dns://[resolver]/name?type=A.
    scheduled_at: the DAG run's logical time; with ``site``, ``location`` and ``attempt`` it
    identifies the row.
    attempt: Airflow's try number, from 1. final: the run's last attempt: it was up, or no
    retry remained after it (uptime and the rollups count final attempts).
    checked_at: when the request started. up: every assertion held.
    status_code: the last response's status, None when no response arrived.
    response_time_ms: request start to last body byte, monotonic clock.
    dns_ms, connect_ms, tls_ms: phases of a new connection (None when not measured).
    ttfb_ms: request start to the end of the response headers.
    regex: the pattern searched (None when the site has none); regex_matched: its result.
    error: one of ``sitewatch.probe.http.ERROR_KINDS`` or None; error_detail: human-readable cause.
    final_url: the http(s) URL after redirects. body_bytes: body bytes read (up to the cap).
    tls_expires_at: when the TLS chain of the check's first TLS connection (https, tls://) stops
    being valid: the earliest notAfter on the path the probe verified (leaf, intermediates, the
    trusted root), or with ``verify_tls: false`` among what the server presented, as also after a
    failed handshake (``sitewatch.probe.chain``). Producers before issue 26 sent the leaf's.
    location: where the probe ran (``LOCATION_NAME``); ``local`` for a site that names none, and
    for a message without it (producers before locations existed).
    maintenance: the run's scheduled time fell in a maintenance window of the site (set by the
    task from the sites file, and by the drain for an ad-hoc mute); false when absent.
    run_id: the Airflow run that made the attempt, for the links of the alerts the drain sends
    (None from producers before it, and from code that checks outside a DAG run).
    steps: a flow's steps in order, each an object of ``STEP_FIELDS`` (None for a single check,
    and from producers before flows existed).
    tls_version: the TLS version that connection agreed on, as OpenSSL names it (``TLSv1.3``);
    None without TLS, when the handshake failed, and from producers before it.
    """

    site: str = column(NAME)
    url: str = column(CHECKED_URL)
    checked_at: datetime = column(TIMESTAMPTZ)
    up: bool = column(BOOLEAN)
    # Required, but None in the record until the task that runs the probe sets it.
    scheduled_at: datetime | None = column(TIMESTAMPTZ, default=None)
    attempt: int = column(INTEGER, default=1)
    final: bool = column(BOOLEAN, default=True)
    status_code: int | None = column(INTEGER, required=False)
    response_time_ms: float | None = column(DURATION, required=False)
    dns_ms: float | None = column(DURATION, required=False)
    connect_ms: float | None = column(DURATION, required=False)
    tls_ms: float | None = column(DURATION, required=False)
    ttfb_ms: float | None = column(DURATION, required=False)
    regex: str | None = column(TEXT, required=False)
    regex_matched: bool | None = column(BOOLEAN, required=False)
    error: str | None = column(TEXT, required=False)
    error_detail: str | None = column(TEXT, required=False)
    final_url: str | None = column(URL, required=False)
    body_bytes: int | None = column(BIGINT, required=False)
    tls_expires_at: datetime | None = column(TIMESTAMPTZ, required=False)
    # Last, like their columns (added to site_checks by migrations 6, 8 and 10).
    location: str = column(LOCATION, default=LOCAL_LOCATION, absent=LOCAL_LOCATION)
    maintenance: bool = column(BOOLEAN, default=False, absent=False)
    run_id: str | None = column(RUN_ID, required=False)
    # Added by migration 12.
    steps: list | None = column(STEPS, required=False)
    # Added by migration 13.
    tls_version: str | None = column(TLS_VERSION, required=False)

    def to_message(self) -> bytes:
        """Encode as the v1 wire format (UTF-8 JSON, timestamps ISO 8601 UTC)."""
        doc = {"v": VERSION}
        for f in FIELDS:
            value = getattr(self, f.name)
            doc[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_message(cls, data: bytes | None) -> Observation:
        """Decode and validate a v1 message: the strict decoder, which names what is wrong.

        A field absent from the message takes its ``Column.absent`` value. Raises MessageError
        naming the first problem: not UTF-8 JSON, wrong version, a missing or unknown field, or
        (in ``COLUMNS`` order) a value of the wrong type or range. Trade-off: about five times
        slower than ``fast_row``, which the drain tries first.
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
        values = {}
        for name, kind, required, absent in COLUMNS:
            value = doc.get(name, absent)
            if value is not None:
                value = kind.check(name, value)
            elif required:
                raise MessageError(f"missing field {name}")
            values[name] = value
        return cls(**values)


FIELDS = dataclasses.fields(Observation)
# The declarations, in field order: the order of a site_checks row (see sitewatch.storage.checks).
COLUMNS: tuple[Column, ...] = tuple(
    Column(f.name, f.metadata["kind"], f.metadata["required"], f.metadata["absent"]) for f in FIELDS
)
POSITION: Mapping[str, int] = MappingProxyType({c.name: i for i, c in enumerate(COLUMNS)})
"""Each column's position in a row (``COLUMNS`` order), by name: ``row[POSITION["site"]]``. Rows
are tuples in the drain and its judges, for speed; this is where they find a field."""
_ALLOWED = frozenset({"v", *(c.name for c in COLUMNS)})


def fast_row(data: bytes) -> tuple | None:
    """The field values of a plain, valid message as a tuple in ``COLUMNS`` order; else None.

    The drain's fast path: ``msgspec`` parses and type-checks the message in one pass of C, about
    five times faster than ``from_message``. It accepts only what ``from_message`` accepts and
    gives the same values (timestamps converted to UTC, durations to float). It declines, and the
    caller falls back to ``from_message`` (which names the problem, or accepts), for anything
    else: invalid or odd messages, and any ``\\u`` escape, so that a NUL or a lone surrogate never
    takes this path. The caller checks ``MAX_MESSAGE_BYTES``. The name and URL rules cost one set
    lookup for values seen before (``_accept``): checking them costs ~0.2 µs a message.
    """
    if b"\\u" in data:
        return None
    try:
        values = msgspec.structs.astuple(_WIRE.decode(data))
    except (msgspec.MsgspecError, ValueError):
        return None
    row = list(values[1:])  # without "v"
    ruled = _RULED(row)
    if ruled not in _ACCEPTED and not _accept(ruled):
        return None
    if row[_STEPS] is not None:  # a flow's: checked as the strict decoder checks it
        try:
            row[_STEPS] = STEPS.check("steps", row[_STEPS])
        except MessageError:
            return None
    for i in _TIMESTAMPS:  # as _Timestamp.check parses them, failing with None
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
    """A decoder of the v1 message into a struct of each column's ``kind.wire`` (None allowed
    when the column is not required; its ``absent`` value, checked like a sent one, when the
    field is missing), with ``v`` first and unknown fields rejected."""
    fields: list = [("v", Literal[VERSION])]
    for name, kind, required, absent in COLUMNS:
        if not required:
            fields.append((name, kind.wire | None, None))
        elif absent is not None:
            fields.append((name, kind.wire, absent))
        else:
            fields.append((name, kind.wire))
    wire = msgspec.defstruct("WireObservation", fields, kw_only=True, forbid_unknown_fields=True)
    return msgspec.json.Decoder(wire)


def _accept(ruled: tuple) -> bool:
    """Whether the values of the columns with a rule (``_RULED``) follow their rules; remember
    them in ``_ACCEPTED`` if so.

    A site sends the same name and URLs with every check, so nearly every message finds its
    values remembered and costs one set lookup. Trade-off: memory, bounded by remembering at
    most ``_ACCEPTED_MAX`` tuples (then starting afresh) and only short ones.
    """
    for value, rule in zip(ruled, _RULES, strict=True):
        if value is not None and not rule.search(value):
            return False
    if sum(len(value) for value in ruled if value) <= _ACCEPTED_TEXT:
        if len(_ACCEPTED) >= _ACCEPTED_MAX:
            _ACCEPTED.clear()
        _ACCEPTED.add(ruled)
    return True


_WIRE = _wire_decoder()
_STEPS = POSITION["steps"]
_TIMESTAMPS = tuple(i for i, c in enumerate(COLUMNS) if isinstance(c.kind, _Timestamp))
_RULED_COLUMNS = [(i, c.kind.rule) for i, c in enumerate(COLUMNS) if getattr(c.kind, "rule", None)]
_RULED = itemgetter(*(i for i, _ in _RULED_COLUMNS))  # a row's (site, url, final_url, location)
_RULES = tuple(rule for _, rule in _RULED_COLUMNS)
_ACCEPTED: set[tuple] = set()
_ACCEPTED_MAX, _ACCEPTED_TEXT = 16_384, 600  # at most ~10 MB
