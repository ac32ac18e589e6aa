"""sitewatch's PostgreSQL schema: numbered migrations and ``migrate``.

A migration is frozen once released: fix a mistake with a new migration, never by editing an old
one, because databases in the field already ran it. Table names are unqualified, so the tables land
in the connection's current schema (the first existing one on ``search_path``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import tuple_row

from sitewatch.errors import StorageError

log = logging.getLogger(__name__)

# Migration N is MIGRATIONS[N - 1].
MIGRATIONS: tuple[str, ...] = (
    # 1: the observation table and the rejected-message table.
    # site_checks has no surrogate id: its natural key is the primary key, which is also the index
    # for per-site time-range queries (site, scheduled_at) and for "latest check of a site"
    # (backward scan; WHERE final filters the rare retries). Each extra index costs ~30% of the
    # drain's insert rate, so add one only for a query that needs it. stored_at minus checked_at
    # shows how far the drain lags. Site names are ASCII identifiers, so byte order ("C") is the
    # right collation and keeps key comparisons cheap.
    """
    CREATE TABLE site_checks (
        site             text COLLATE "C" NOT NULL,
        url              text             NOT NULL,
        scheduled_at     timestamptz      NOT NULL,
        attempt          integer          NOT NULL,
        final            boolean          NOT NULL,
        checked_at       timestamptz      NOT NULL,
        up               boolean          NOT NULL,
        status_code      integer,
        response_time_ms double precision,
        dns_ms           double precision,
        connect_ms       double precision,
        tls_ms           double precision,
        ttfb_ms          double precision,
        regex            text,
        regex_matched    boolean,
        error            text,
        error_detail     text,
        final_url        text,
        body_bytes       bigint,
        tls_expires_at   timestamptz,
        stored_at        timestamptz      NOT NULL DEFAULT now(),
        CONSTRAINT site_checks_pkey PRIMARY KEY (site, scheduled_at, attempt)
    );
    CREATE TABLE site_checks_rejected (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic       text        NOT NULL,
        partition   integer     NOT NULL,
        "offset"    bigint      NOT NULL,
        key         bytea,
        raw         bytea,
        reason      text        NOT NULL,
        rejected_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT site_checks_rejected_message UNIQUE (topic, partition, "offset")
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS sitewatch_schema_version (
        version    integer     PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""
# One lock per schema, so migrating one schema never waits for another (tests use many).
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('sitewatch.migrate:' || current_schema()))"


def migrate(conn) -> int:
    """Apply the pending migrations in order and return the schema version now in force.

    conn: a psycopg 3 connection with no transaction open; its current schema receives the tables.
    Each migration runs in its own transaction together with its ``sitewatch_schema_version`` row,
    so a failed migration leaves the previous version intact and is retried by the next call. Every
    transaction first takes a per-schema advisory lock, so concurrent callers (two drains starting
    at once) serialize: one applies, the others find nothing left to do. A database newer than this
    code is left alone (its version is returned, with a warning).

    Raises StorageError naming PostgreSQL when a statement or the connection fails.
    """
    while True:
        with transaction(conn, "could not migrate the sitewatch schema") as cur:
            cur.execute(_LOCK)
            cur.execute("SET LOCAL client_min_messages = warning")  # no "already exists" notice
            cur.execute(_VERSION_TABLE)
            cur.execute("SELECT coalesce(max(version), 0) FROM sitewatch_schema_version")
            current = cur.fetchone()[0]
            if current >= SCHEMA_VERSION:
                if current > SCHEMA_VERSION:
                    log.warning(
                        "migrate: database schema version=%s is newer than code version=%s",
                        current,
                        SCHEMA_VERSION,
                    )
                return current
            version = current + 1
            cur.execute(MIGRATIONS[version - 1])
            cur.execute("INSERT INTO sitewatch_schema_version (version) VALUES (%s)", (version,))
        log.info("migrate: applied schema version=%s", version)


@contextmanager
def transaction(conn, failure: str) -> Iterator:
    """Yield a cursor inside one transaction; commit on success, roll back on any error.

    An autocommit connection is switched off for the duration (and restored), since every caller
    needs its statements to be all-or-nothing. The cursor returns tuples whatever row factory the
    connection has (a Connection extra can give PostgresHook's connections dict rows). A
    ``psycopg.Error`` becomes ``StorageError("PostgreSQL <failure>: <cause>")``; other exceptions
    pass through unchanged.
    """
    autocommit = conn.autocommit
    try:
        if autocommit:
            conn.autocommit = False
        with conn.cursor(row_factory=tuple_row) as cur:
            yield cur
        conn.commit()
    except psycopg.Error as exc:
        _rollback(conn)
        cause = " ".join(str(exc).split()) or type(exc).__name__
        raise StorageError(f"PostgreSQL {failure}: {cause}") from exc
    except BaseException:
        _rollback(conn)
        raise
    finally:
        if autocommit and not conn.closed:
            conn.autocommit = True


def _rollback(conn) -> None:
    # A broken connection cannot roll back, but the server already discarded the transaction;
    # the original error is the one worth reporting.
    if conn.closed:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        log.debug("rollback failed after an earlier error", exc_info=True)
