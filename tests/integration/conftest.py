"""Fixtures for integration tests against the real PostgreSQL the project starts.

The results database comes from ``SITEWATCH_PG_DSN`` (the project's test command sets it). Each test
gets its own schema ``t_<random>``, so tests never see each other's tables and can run in parallel:
empty (``pg_schema``, ``pg_conn``), or with the tables already at the current version
(``migrated_schema``, ``migrated_conn``: a copy of a template, see tests/schemas.py). Connections
as the alerting role, as the DAGs' alerting connection logs in, come from ``alerting_connect``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest

from sitewatch.names import ALERTING_ROLE
from tests import schemas


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The results database's DSN; a missing variable fails the test rather than skipping it."""
    dsn = os.environ.get("SITEWATCH_PG_DSN")
    if not dsn:
        pytest.fail(
            "SITEWATCH_PG_DSN is not set: integration tests need the results database, "
            "e.g. SITEWATCH_PG_DSN=postgresql://postgres@127.0.0.1:5432/postgres",
            pytrace=False,
        )
    return dsn


@pytest.fixture
def pg_schema(pg_dsn):
    """A fresh empty schema, dropped (with everything in it) after the test."""
    schema = schemas.create(pg_dsn)
    yield schema
    schemas.drop(pg_dsn, schema)


@pytest.fixture
def migrated_schema(pg_dsn, pg_schema):
    """``pg_schema`` with the tables at the current version, as ``migrate`` leaves them (the
    roles' privileges included), copied from a template; ``pg_connect`` and ``pg_conn`` use it.
    Tests of ``migrate`` and of upgrades take ``pg_schema`` and migrate it themselves."""
    schemas.clone(pg_dsn, pg_schema)
    return pg_schema


@contextmanager
def _connections(dsn: str, options: str) -> Iterator[Callable[[], psycopg.Connection]]:
    """A ``connect()`` that opens a connection to ``dsn`` with ``options``; the ones it opened are
    listed on ``connect.opened`` and closed at the end."""
    opened = []

    def connect():
        opened.append(psycopg.connect(dsn, options=options))
        return opened[-1]

    connect.opened = opened
    try:
        yield connect
    finally:
        for conn in opened:
            conn.close()


@pytest.fixture
def pg_connect(pg_dsn, pg_schema):
    """Open more connections whose search_path is the test's schema; all closed after the test."""
    with _connections(pg_dsn, f"-c search_path={pg_schema}") as connect:
        yield connect


@pytest.fixture
def alerting_connect(pg_dsn, pg_schema):
    """Open connections as the alerting role on the test's schema: only what the PRIVILEGES that
    ``migrate`` grants allow, as the DAGs' alerting connection. ``alerting_connect.opened`` lists
    them, for tests of who closes them; any still open are closed after the test."""
    with _connections(pg_dsn, f"-c role={ALERTING_ROLE} -c search_path={pg_schema}") as connect:
        yield connect


@pytest.fixture
def pg_conn(pg_connect):
    """A psycopg connection (autocommit off, like PostgresHook's) to an empty schema of its own."""
    return pg_connect()


@pytest.fixture
def migrated_conn(migrated_schema, pg_conn):
    """``pg_conn`` on ``migrated_schema``: a connection to tables at the current version."""
    return pg_conn
