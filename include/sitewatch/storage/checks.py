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

A row PostgreSQL refuses (bad data, a constraint, a value too big for the index) never fails the
batch when the caller says how to reject it (``refuse``): the staging path bisects the batch under
savepoints until each refused row is alone, and stores it as a rejected message with the
database's reason, in the same transaction. A failure of the database itself (connection,
resources, locks, permissions) still fails the whole batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from datetime import UTC
from itertools import chain
from operator import attrgetter

import psycopg

from sitewatch.observation import COLUMNS, POSITION, Observation
from sitewatch.storage.partitions import make_missing
from sitewatch.storage.schema import transaction

__all__ = [
    "KEY",
    "Refuse",
    "Rejected",
    "StoreResult",
    "observation_rows",
    "store_batch",
    "store_rows",
]


KEY = ("site", "scheduled_at", "location", "attempt")
"""``site_checks``' primary key (migration 6), in index order: one row per attempt of a run at
each location. Deduplication uses it; so do the reads that walk the index."""


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


Refuse = Callable[[int, str], Rejected]
"""``refuse(position, reason)``: the rejected message of the row at ``position`` (from 0, in the
order the rows were given) that cannot be stored, and why."""


@dataclass(frozen=True)
class StoreResult:
    """What one ``store_batch`` did.

    inserted: new ``site_checks`` rows. duplicates: observations not inserted because their
    (site, scheduled_at, location, attempt) was already stored or appeared earlier in the batch.
    rejected: new ``site_checks_rejected`` rows (a redelivered rejected message counts 0), rows
    refused (see ``store_rows``) included.
    """

    inserted: int
    duplicates: int
    rejected: int


def store_batch(
    conn, observations: Sequence[Observation], rejected: Sequence[Rejected] = ()
) -> StoreResult:
    """Store one batch in one transaction and commit it.

    conn: a psycopg 3 connection to a migrated schema (see ``schema.migrate``). Anything it has
    uncommitted is committed with the batch; an autocommit connection is handled.
    observations: stored in ``site_checks``, deduplicated on its key (``KEY``): one already
    stored, or a second copy within the batch (an arbitrary copy wins; redeliveries are
    identical), is counted in ``duplicates`` and never makes a second row. The same attempt of
    one run from two locations is two rows.
    rejected: stored in ``site_checks_rejected`` with their raw bytes, deduplicated on
    (topic, partition, offset).

    Text is stored as given, except that characters PostgreSQL text cannot hold are replaced by
    U+FFFD (NUL) or "?" (lone surrogates), so one odd message can never stall the drain.

    Trade-off: a batch without duplicates (the steady state) is one COPY into ``site_checks``; a
    batch with any duplicate costs that COPY, abandoned at the first duplicate, plus the staging
    path (roughly twice the database work, still one transaction).

    Partitions: the maintenance DAG makes them days ahead; when a row's UTC day (of
    ``scheduled_at``) has none all the same, the batch's transaction makes it and stores the
    batch through the staging path, making at most ``partitions.MAX_NEW_PARTITIONS`` (the days
    with the most rows first): a row of a further day is refused (``store_rows``), and here fails
    the batch.
    An observation older than the retention is stored all the same and the next maintenance run
    drops it (sitewatch.storage.retention); the drain rejects those before they get here.

    Raises StorageError("PostgreSQL ...: <cause>"), chained to the ``psycopg.Error``, when the
    connection or any statement fails; the transaction is then rolled back, so nothing of the
    batch is stored and the caller may retry it whole (after reconnecting if ``conn.closed``).
    Raises ValueError, before touching the database, when a required field is None or a
    timestamp is naive: that is a bug upstream, not a database failure.
    """
    return store_rows(conn, observation_rows(observations), rejected)


def store_rows(
    conn,
    rows: Iterable[tuple],
    rejected: Sequence[Rejected] = (),
    *,
    refuse: Refuse | None = None,
) -> StoreResult:
    """``store_batch`` for rows that are checked already: ``site_checks`` values in
    ``observation.COLUMNS`` order, as ``observation_rows`` or ``sitewatch.observation.fast_row``
    make them. Same transaction, deduplication, partitions, result and errors as ``store_batch``.

    ``rows`` may be an iterator: it is consumed while the COPY streams, so that the drain decodes
    each message while PostgreSQL stores the ones before it, on the other core. ``rejected`` is
    read only after ``rows`` is exhausted (the drain's decoder fills it on the way).

    refuse: how to reject a row that cannot be stored: one PostgreSQL refuses (``_ROW_ERRORS``,
    e.g. "index row size ... exceeds"; the reason quotes the database), or one of a day past
    ``MAX_NEW_PARTITIONS``. Such rows are stored in ``site_checks_rejected`` with the others, in
    the same transaction, and the rest of the batch is stored. Without it, such a row fails the
    batch (StorageError). Trade-off: isolating k refused rows among n takes about
    2·k·log2(n) statements under savepoints; rows that decoding accepted are rarely refused.
    """
    given, rows = rows, iter(rows)
    first = next(rows, None)
    if first is None and not rejected:
        return StoreResult(0, 0, 0)
    kept: list[tuple] = []  # the rows as streamed, for a second pass and the counts
    refused: list[Rejected] = []

    def failure() -> str:  # an iterator that failed midway counts the rows it had given
        count = len(given) if isinstance(given, Sized) else len(kept)
        return f"could not store {count} observations, {len(rejected)} rejected"

    def refusing(position: int, reason: str) -> None:
        refused.append(refuse(position, reason))

    with transaction(conn, failure) as cur:
        inserted = stored_rejects = 0
        if first is not None:
            rows = chain((first,), rows)
            inserted = _store_observations(cur, rows, kept, refusing if refuse else None)
        if rejected or refused:
            cur.execute(_INSERT_REJECTED, _reject_columns([*rejected, *refused]))
            stored_rejects = cur.rowcount
    return StoreResult(inserted, len(kept) - inserted - len(refused), stored_rejects)


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
_KEY = ", ".join(KEY)
_INSERT_STAGED = (
    f"INSERT INTO site_checks ({_COLUMNS}) "
    f"SELECT DISTINCT ON ({_KEY}) {_COLUMNS} "
    f"FROM pg_temp.sitewatch_staging ORDER BY {_KEY} "
    f"ON CONFLICT ({_KEY}) DO NOTHING"
)
# psycopg's binary int4/int8 formatting wraps an out-of-range value around instead of failing.
_INT_BOUND = {"integer": 2**31, "bigint": 2**63}  # a column holds -bound <= value < bound
_INT_LIMITS = {n: _INT_BOUND[t] for n, t in _PG_TYPES.items() if t in _INT_BOUND}
_GETTERS = {name: attrgetter(name) for name in _NAMES}
_SCHEDULED = POSITION["scheduled_at"]
_TZINFO = attrgetter("tzinfo")


def _store_observations(
    cur, rows: Iterable[tuple], kept: list[tuple], refuse: Callable[[int, str], None] | None
) -> int:
    """Insert the rows not stored yet; return how many were inserted. ``kept`` gets every row.

    The steady state is one COPY straight into site_checks, streamed as ``rows`` yields. A row
    PostgreSQL refuses aborts it, most often a duplicate key (a redelivery) or a row whose UTC
    day has no partition yet (the maintenance DAG makes them days ahead; this covers a stopped
    maintenance, or an old ``scheduled_at``). The savepoint undoes the COPY; the missing
    partitions are made, and the kept rows go the deduplicating way, through the staging table
    (formatting them a second time, which costs far less than the database work), where any
    refused row is isolated (``_insert_isolating``).
    """
    cur.execute("SAVEPOINT sitewatch_copy")
    streamed = _keeping(rows, kept)
    try:
        _copy(cur, _COPY_DIRECT, streamed)
    except _ROW_ERRORS:
        cur.execute("ROLLBACK TO SAVEPOINT sitewatch_copy")
        deque(streamed, maxlen=0)  # a COPY that failed before the end left rows unread
    else:
        return len(kept)
    days = [row[_SCHEDULED].astimezone(UTC).date() for row in kept]
    positions = make_missing(cur, days, refuse)
    cur.execute(_STAGING_DDL)
    return _insert_isolating(cur, kept, positions, refuse) if positions else 0


# PostgreSQL errors one row causes: bad data (class 22), a constraint (23, a duplicate key or a
# missing partition among them) and a value too big for an index (54000, "index row size ...
# exceeds"). Every other error (the connection, resources, locks, permissions, a cancelled
# statement) is the database's state: it fails the batch, to be retried whole.
_ROW_ERRORS = (
    psycopg.errors.DataError,
    psycopg.errors.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
)


def _insert_isolating(
    cur, rows: list[tuple], positions: list[int], refuse: Callable[[int, str], None] | None
) -> int:
    """Insert the rows at ``positions`` through the staging table; return how many were new.

    When PostgreSQL refuses the part, each half is tried apart, down to single rows: a refused
    row alone is passed to ``refuse`` with the database's reason. Without ``refuse`` the error
    propagates. Raises psycopg.Error for anything not in ``_ROW_ERRORS``.
    """
    try:
        return _insert_part(cur, rows, positions)
    except _ROW_ERRORS as exc:
        if refuse is None:
            raise
        if len(positions) == 1:
            refuse(positions[0], _refusal(exc))
            return 0
    half = len(positions) // 2
    return _insert_isolating(cur, rows, positions[:half], refuse) + _insert_isolating(
        cur, rows, positions[half:], refuse
    )


def _insert_part(cur, rows: list[tuple], positions: list[int]) -> int:
    """Copy the rows at ``positions`` to the staging table and move the new ones on, under a
    savepoint that a refused row rolls back; the staging table is left empty either way."""
    cur.execute("SAVEPOINT sitewatch_part")
    try:
        _copy(cur, _COPY_STAGING, map(rows.__getitem__, positions))
        cur.execute(_INSERT_STAGED)
        inserted = cur.rowcount
        # a temporary table writes no WAL: emptying it costs little
        cur.execute("DELETE FROM pg_temp.sitewatch_staging")
    except _ROW_ERRORS:
        cur.execute("ROLLBACK TO SAVEPOINT sitewatch_part; RELEASE SAVEPOINT sitewatch_part")
        raise
    cur.execute("RELEASE SAVEPOINT sitewatch_part")
    return inserted


def _refusal(exc: psycopg.Error) -> str:
    """The reason stored for a row PostgreSQL refused: its SQLSTATE and primary message."""
    message = exc.diag.message_primary or str(exc) or type(exc).__name__
    return f"PostgreSQL refused the row ({exc.sqlstate or 'client'}): {' '.join(message.split())}"


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
