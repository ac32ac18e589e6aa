"""The Sites page app against a real PostgreSQL: it only reads, and says when it cannot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from sitewatch.airflow import sites_page
from sitewatch.storage.schema import MIGRATIONS, SCHEMA_VERSION, migrate, transaction
from sitewatch.storage.schema import version as schema_version

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def app_on(connect):
    """The Sites page app on ``connect``, at ``NOW``, with no sites file and no login."""
    return sites_page.create_app(
        connect=connect, schedules=dict, clock=lambda: NOW, ui_base=str, auth=lambda: None
    )


@pytest.fixture
def client(pg_connect, monkeypatch):
    monkeypatch.setattr(sites_page._Schema, "current", False)
    app = app_on(pg_connect)
    return TestClient(app)


def test_missing_tables_are_a_clear_503_and_are_not_created(client, pg_conn):
    answer = client.get("/")
    assert answer.status_code == 503
    assert "do not exist yet" in answer.text and "sitewatch_drain" in answer.text
    assert "create_tables" in answer.text
    assert schema_version(pg_conn) == 0


def test_a_schema_behind_the_code_is_named_with_its_version(client, pg_conn):
    with transaction(pg_conn, "set up") as cur:
        cur.execute(
            "CREATE TABLE sitewatch_schema_version (version integer PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(MIGRATIONS[0])
        cur.execute("INSERT INTO sitewatch_schema_version (version) VALUES (1)")
    answer = client.get("/")
    assert answer.status_code == 503
    assert f"are at version 1; this code needs version {SCHEMA_VERSION}" in answer.text
    assert schema_version(pg_conn) == 1


def test_the_page_answers_once_the_drain_migrated(client, pg_conn):
    assert client.get("/").status_code == 503
    migrate(pg_conn)
    answer = client.get("/")
    assert answer.status_code == 200 and "<h1>Sites</h1>" in answer.text


@pytest.mark.parametrize(
    "path", ["/sites/%00", "/sites/a%00b", "/sites/Shop", "/sites/" + "a" * 64]
)
def test_a_name_no_site_can_have_is_a_404_without_a_query(pg_connect, monkeypatch, path):
    # PostgreSQL refuses a NUL in text: querying with it was a 500 and a traceback in the log.
    monkeypatch.setattr(sites_page._Schema, "current", False)
    connections = []

    def connect():
        connections.append(pg_connect())
        return connections[-1]

    app = app_on(connect)
    answer = TestClient(app).get(path)
    assert answer.status_code == 404
    assert "no site named" in answer.json()["detail"]
    assert connections == []  # refused before touching the database


def test_an_unknown_valid_name_is_still_a_404(client, pg_conn):
    migrate(pg_conn)
    answer = client.get("/sites/nosuchsite")
    assert answer.status_code == 404
