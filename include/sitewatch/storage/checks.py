"""PostgreSQL storage of observations and rejected messages: the only place sitewatch writes SQL.

Every function takes a psycopg 3 connection (what Airflow's ``PostgresHook.get_conn()`` returns
under SQLAlchemy 2) and imports nothing from Airflow. The schema and its migrations live in
``sitewatch.storage.schema``.

Speed comes from one COPY per batch instead of one INSERT per row: the batch is streamed straight
into ``site_checks`` in binary COPY format, each row formatted by psycopg's C code
(``Copy.write_row`` with the column types set) as soon as it is decoded, so that PostgreSQL works
on the batch while the rest of it is still being decoded. Only when that hits a duplicate key (a
redelivery) or a missing partition is the batch copied again into a per-connection temporary
staging table and moved over with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, which turns
the redelivered observations into counted duplicates instead of second rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from datetime import UTC
from itertools import chain
from operator import attrgetter

import psycopg

from sitewatch.observation import COLUMNS, Observation
from sitewatch.storage.schema import SCHEMA_VERSION, migrate, transaction

__all__ = [
    "SCHEMA_VERSION",
    "Rejected",
    "StoreResult",
    "migrate",
    "observation_rows",
    "store_batch",
    "store_rows",
]


@dataclass(frozen=True)
class Rejected:
    """A Kafka message the drain could not turn into an observation.

    raw, key: the message's value and key bytes, as received (None when absent).
    topic, partition, offset: where it came from; together they identify it, so storing a
    redelivered message again changes nothing. reason: why it was rejected
    (``MessageError.reason``).
    """

    raw: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    reason: str


@dataclass(frozen=True)
class StoreResult:
    """What one ``store_batch`` did.

    inserted: new ``site_checks`` rows. duplicates: observations not inserted because their
    (site, scheduled_at, attempt) was already stored or appeared earlier in the batch.
    rejected: new ``site_checks_rejected`` rows (a redelivered rejected message counts 0).
    """

    inserted: int
    duplicates: int
    rejected: int


def store_batch(
    conn, observations: Sequence[Observation], rejected: Sequence[Rejected] = ()
) -> StoreResult:
    """Store one batch in one transaction and commit it.

    conn: a psycopg 3 connection to a migrated schema (see ``migrate``). Anything it has
    uncommitted is committed with the batch; an autocommit connection is handled.
    observations: stored in ``site_checks``, deduplicated on (site, scheduled_at, attempt): one
    already stored, or a second copy within the batch (an arbitrary copy wins; redeliveries are
    identical), is counted in ``duplicates`` and never makes a second row.
    rejected: stored in ``site_checks_rejected`` with their raw bytes, deduplicated on
    (topic, partition, offset).

    Text is stored as given, except that characters PostgreSQL text cannot hold are replaced by
    U+FFFD (NUL) or "?" (lone surrogates), so one odd message can never stall the drain.

    Trade-off: a batch without duplicates (the steady state) is one COPY into ``site_checks``; a
    batch with any duplicate costs that COPY, abandoned at the first duplicate, plus the staging
    path (roughly twice the database work, still one transaction).

    Partitions: a batch never fails for a missing daily partition. The maintenance DAG makes
    them days ahead; when a row's UTC day (of ``scheduled_at``) has none all the same, the
    batch's transaction makes it and stores the batch through the staging path. An observation
    older than the retention is stored all the same and the next maintenance run drops it
    (sitewatch.storage.retention).

    Raises StorageError("PostgreSQL ...: <cause>"), chained to the ``psycopg.Error``, when the
    connection or any statement fails; the transaction is then rolled back, so nothing of the
    batch is stored and the caller may retry it whole (after reconnecting if ``conn.closed``).
    Raises ValueError, before touching the database, when a required field is None or a
    timestamp is naive: that is a bug upstream, not a database failure.
    """
    return store_rows(conn, observation_rows(observations), rejected)


def store_rows(conn, rows: Iterable[tuple], rejected: Sequence[Rejected] = ()) -> StoreResult:
    """``store_batch`` for rows that are checked already: ``site_checks`` values in
    ``observation.COLUMNS`` order, as ``observation_rows`` or ``sitewatch.observation.fast_row``
    make them. Same transaction, deduplication, partitions, result and errors as ``store_batch``.

    ``rows`` may be an iterator: it is consumed while the COPY streams, so that the drain decodes
    each message while PostgreSQL stores the ones before it, on the other core. ``rejected`` is
    read only after ``rows`` is exhausted (the drain's decoder fills it on the way).
    """
    given, rows = rows, iter(rows)
    first = next(rows, None)
    if first is None and not rejected:
        return StoreResult(0, 0, 0)
    kept: list[tuple] = []  # the rows as streamed, for a second pass and the counts

    def failure() -> str:  # an iterator that failed midway counts the rows it had given
        count = len(given) if isinstance(given, Sized) else len(kept)
        return f"could not store {count} observations, {len(rejected)} rejected"

    with transaction(conn, failure) as cur:
        inserted = stored_rejects = 0
        if first is not None:
            inserted = _store_observations(cur, chain((first,), rows), kept)
        if rejected:
            cur.execute(_INSERT_REJECTED, _reject_columns(rejected))
            stored_rejects = cur.rowcount
    return StoreResult(inserted, len(kept) - inserted, stored_rejects)


# --- partitions: site_checks has one per UTC day (migration 4) ------------------------------------

_CAN_PARTITION = "SELECT to_regprocedure('site_checks_create_partitions(date[])') IS NOT NULL"
_CREATE_PARTITIONS = "SELECT site_checks_create_partitions(%s::date[])"


def _create_partitions(cur, rows: list[tuple]) -> bool:
    """Create the partitions of the rows' UTC days that are missing; False on a schema older than
    migration 4 (nothing to create)."""
    cur.execute(_CAN_PARTITION)
    if not cur.fetchone()[0]:
        return False
    days = sorted({row[_SCHEDULED].astimezone(UTC).date() for row in rows})
    cur.execute(_CREATE_PARTITIONS, (days,))
    return True


# --- observations: binary COPY, straight in or through a staging table ------------------------

# Everything about the columns comes from their declaration on the record (observation.COLUMNS).
_NAMES = tuple(c.name for c in COLUMNS)
_PG_TYPES = {c.name: c.kind.pg_type for c in COLUMNS}
_REQUIRED = frozenset(c.name for c in COLUMNS if c.required)  # the NOT NULL columns
_COLUMNS = ", ".join(_NAMES)
# Binary COPY needs each value in its column's exact type (an int4 sent for a bigint is an error),
# so the types are set explicitly.
_COPY_TYPES = tuple(_PG_TYPES.values())
_COPY_DIRECT = f"COPY site_checks ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
# Created once per connection: ON COMMIT DELETE ROWS empties it at each commit, which costs far
# less than creating and dropping a table (catalog writes) in every batch. The SET hides the
# "already exists, skipping" notice.
_STAGING_DDL = (
    "SET LOCAL client_min_messages = warning; "
    "CREATE TEMP TABLE IF NOT EXISTS sitewatch_staging (LIKE site_checks INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)
_COPY_STAGING = f"COPY pg_temp.sitewatch_staging ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
# DISTINCT ON drops in-batch duplicates; its ORDER BY also feeds rows to the primary-key index in
# key order. ON CONFLICT DO NOTHING skips rows stored by earlier batches; rowcount counts the rest.
_INSERT_STAGED = (
    f"INSERT INTO site_checks ({_COLUMNS}) "
    f"SELECT DISTINCT ON (site, scheduled_at, attempt) {_COLUMNS} "
    "FROM pg_temp.sitewatch_staging ORDER BY site, scheduled_at, attempt "
    "ON CONFLICT (site, scheduled_at, attempt) DO NOTHING"
)
# psycopg's binary int4/int8 formatting wraps an out-of-range value around instead of failing.
_INT_BOUND = {"integer": 2**31, "bigint": 2**63}  # a column holds -bound <= value < bound
_INT_LIMITS = {n: _INT_BOUND[t] for n, t in _PG_TYPES.items() if t in _INT_BOUND}
_GETTERS = {name: attrgetter(name) for name in _NAMES}
_SCHEDULED = _NAMES.index("scheduled_at")
_TZINFO = attrgetter("tzinfo")


def _store_observations(cur, rows: Iterable[tuple], kept: list[tuple]) -> int:
    """Insert the rows not stored yet; return how many were inserted. ``kept`` gets every row.

    The steady state is one COPY straight into site_checks, streamed as ``rows`` yields. Two
    rare cases abort it: a duplicate key (a redelivery), or a row whose UTC day has no partition
    yet (the maintenance DAG makes them days ahead; this covers a stopped maintenance, or an old
    or future ``scheduled_at``). The savepoint undoes the COPY; the missing partitions are made,
    and the kept rows go the deduplicating way, through the staging table (formatting them a
    second time, which costs far less than the database work).
    """
    cur.execute("SAVEPOINT sitewatch_copy")
    try:
        _copy(cur, _COPY_DIRECT, _keeping(rows, kept))
    except psycopg.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT sitewatch_copy")
        _create_partitions(cur, kept)  # the COPY stopped at the duplicate: later days unchecked
    except psycopg.errors.CheckViolation:  # "no partition of relation ... found for row"
        cur.execute("ROLLBACK TO SAVEPOINT sitewatch_copy")
        if not _create_partitions(cur, kept):
            raise  # a real check failed: nothing to create
    else:
        return len(kept)
    cur.execute(_STAGING_DDL)
    _copy(cur, _COPY_STAGING, kept)
    cur.execute(_INSERT_STAGED)
    return cur.rowcount


def _keeping(rows: Iterable[tuple], kept: list[tuple]) -> Iterator[tuple]:
    for row in rows:
        kept.append(row)
        yield row


def _copy(cur, statement: str, rows: Iterable[tuple]) -> None:
    # psycopg buffers the formatted rows and sends them every 32 KiB, so formatting overlaps the
    # server's parsing (the server is another process).
    with cur.copy(statement) as copy:
        copy.set_types(_COPY_TYPES)
        for row in rows:
            copy.write_row(row)


def observation_rows(observations: Sequence[Observation]) -> list[tuple]:
    """Return the observations as site_checks rows (tuples in ``_NAMES`` order), for ``store_rows``.

    Built column by column, so that the checks run as C-level scans: a bug upstream (a required
    field None, a naive timestamp, an integer its column cannot hold) fails here with a
    ValueError, clearly, and not as an obscure COPY error or a wrong value.
    """
    columns = []
    for name in _NAMES:
        values = list(map(_GETTERS[name], observations))
        if name in _REQUIRED and None in values:
            raise ValueError(f"{name} is None in {observations[values.index(None)]!r:.300}")
        pg_type = _PG_TYPES[name]
        if pg_type == "timestamp with time zone" and None in map(_TZINFO, filter(None, values)):
            raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime")
        if name in _INT_LIMITS and (numbers := list(filter(None, values))):
            low, high, limit = min(numbers), max(numbers), _INT_LIMITS[name]
            if low < -limit or high >= limit:
                raise ValueError(
                    f"{name} out of range for its column: {low if low < -limit else high}"
                )
        columns.append(_storable_text(values) if pg_type == "text" else values)
    return list(zip(*columns, strict=True))


def _storable_text(values: list) -> list:
    """Return a text column with what PostgreSQL text cannot hold replaced.

    NUL becomes U+FFFD and a lone surrogate (JSON can carry them) "?": one such value must never
    make the whole batch fail forever. The check is one scan of the joined column; only a column
    that fails it is rebuilt.
    """
    joined = "".join(filter(None, values))
    if "\x00" in joined:
        values = [v if v is None else v.replace("\x00", "\ufffd") for v in values]
    if not joined.isascii():
        try:
            joined.encode()
        except UnicodeEncodeError:
            values = [v if v is None else v.encode("utf-8", "replace").decode() for v in values]
    return values


# --- rejected messages ----------------------------------------------------------------------------

# Rejected messages are rare, so a plain INSERT suffices; unnest turns six arrays into rows in one
# statement (one round trip, exact rowcount). ON CONFLICT DO NOTHING also absorbs a message that
# appears twice within the batch.
_INSERT_REJECTED = """
    INSERT INTO site_checks_rejected (topic, partition, "offset", key, raw, reason)
    SELECT * FROM unnest(
        %s::text[], %s::integer[], %s::bigint[], %s::bytea[], %s::bytea[], %s::text[]
    )
    ON CONFLICT (topic, partition, "offset") DO NOTHING
"""


def _reject_columns(rejected: Sequence[Rejected]) -> tuple[list, ...]:
    return (
        [r.topic for r in rejected],
        [r.partition for r in rejected],
        [r.offset for r in rejected],
        [r.key for r in rejected],
        [r.raw for r in rejected],
        # A reason can quote the message (an unknown field's name): same rules as stored text.
        _storable_text([r.reason for r in rejected]),
    )
