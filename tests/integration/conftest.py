"""Fixtures for integration tests against the real PostgreSQL the project starts.

The results database comes from ``SITEWATCH_PG_DSN`` (the project's test command sets it). Each test
gets its own schema ``t_<random>``, so tests never see each other's tables and can run in parallel:
empty (``pg_schema``, ``pg_conn``), or with the tables already at the current version
(``migrated_schema``, ``migrated_conn``: a copy of a template, see tests/schemas.py).
"""

from __future__ import annotations

import os

import psycopg
import pytest

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


@pytest.fixture
def pg_connect(pg_dsn, pg_schema):
    """Open more connections whose search_path is the test's schema; all closed after the test."""
    opened = []

    def connect():
        conn = psycopg.connect(pg_dsn, options=f"-c search_path={pg_schema}")
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture
def pg_conn(pg_connect):
    """A psycopg connection (autocommit off, like PostgresHook's) to an empty schema of its own."""
    return pg_connect()


@pytest.fixture
def migrated_conn(migrated_schema, pg_conn):
    """``pg_conn`` on ``migrated_schema``: a connection to tables at the current version."""
    return pg_conn
