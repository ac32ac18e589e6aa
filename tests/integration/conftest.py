"""Fixtures for integration tests against the real PostgreSQL the project starts.

The results database comes from ``SITEWATCH_PG_DSN`` (the project's test command sets it). Each test
gets its own schema ``t_<random>``, so tests never see each other's tables and can run in parallel.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest


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
    schema = f"t_{uuid.uuid4().hex[:12]}"
    # psycopg 3 closes the connection when its ``with`` block ends.
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


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
