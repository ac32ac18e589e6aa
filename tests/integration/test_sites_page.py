"""The Sites page app against a real PostgreSQL: it only reads, and says when it cannot."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from sitewatch.airflow import sites_page
from sitewatch.config.site import Site
from sitewatch.observation import Observation
from sitewatch.storage.checks import store_batch
from sitewatch.storage.schema import MIGRATIONS, SCHEMA_VERSION, migrate, transaction
from sitewatch.storage.schema import version as schema_version
from sitewatch.storage.verdicts import record_verdict

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def app_on(connect, sites=dict):
    """The Sites page app on ``connect``, at ``NOW``, with the configured ``sites`` (none by
    default: no sites file) and no login."""
    return sites_page.create_app(
        connect=connect, sites=sites, clock=lambda: NOW, ui_base=str, auth=lambda: None
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


def observation(site, location, ago, *, up=True, attempt=1, final=True, error=None):
    at = NOW - ago
    return Observation(
        site=site, location=location, url=f"https://{site}.example/", checked_at=at, up=up,
        scheduled_at=at, attempt=attempt, final=final, status_code=200 if up else 503,
        response_time_ms=100.0, error=error, error_detail=f"{error} <b>" if error else None,
    )  # fmt: skip


def test_a_site_with_several_locations_shows_them_and_its_verdict(pg_connect, pg_conn, monkeypatch):
    monkeypatch.setattr(sites_page._Schema, "current", False)
    migrate(pg_conn)
    five = timedelta(minutes=5)
    store_batch(
        pg_conn,
        [
            observation("multi", "eu", five),
            observation("multi", "us", five, up=False, error="status"),
            observation("multi", "eu", 2 * five),
            observation("multi", "us", 2 * five),
            observation("shop", "local", five),
        ],
    )
    outcomes = {"eu": "up", "us": "down", "ap": "missing"}
    record_verdict(pg_conn, "multi", NOW - five, "partial", 2, outcomes)
    record_verdict(pg_conn, "multi", NOW - 2 * five, "up", 2, {"eu": "up", "us": "up", "ap": "up"})
    configured = {
        "multi": Site(name="multi", url="https://multi.example/", locations=("eu", "us", "ap")),
        "shop": Site(name="shop", url="https://shop.example/"),
    }
    client = TestClient(app_on(pg_connect, sites=lambda: configured))

    listing = client.get("/")
    assert listing.status_code == 200
    multi, shop = (row_of(listing.text, name) for name in ("multi", "shop"))
    # the latest final check (us, down) is not the site's state: its verdict is
    assert 'data-state="partial"' in multi and "quorum 2 of 3" in multi
    assert cells(multi) == [("eu", "up"), ("us", "down"), ("ap", "missing")]
    assert "status: status &lt;b&gt;" in multi
    assert 'data-state="up"' in shop and "locs" not in shop

    page = client.get("/sites/multi")
    assert page.status_code == 200
    assert 'class="badge partial"' in page.text and "quorum 2 of 3" in page.text
    matrix = page.text[page.text.index("<table id=runs>") :]
    matrix = matrix[: matrix.index("</table>")]
    assert re.findall(r"<th>([^<]*)</th>", matrix) == [
        "Run (scheduled)",
        "eu",
        "us",
        "ap",
        "Verdict",
    ]
    assert [cells(row) for row in matrix.split("<tr data-run=")[1:]] == [
        [("eu", "up"), ("us", "down"), ("ap", "missing")],
        [("eu", "up"), ("us", "up"), ("ap", "missing")],
    ]
    assert "<th>Location</th>" in page.text
    single = client.get("/sites/shop").text
    assert "<table id=runs>" not in single and "<th>Location</th>" not in single


def row_of(html: str, site: str) -> str:
    start = html.index(f'<tr data-site="{site}">')
    return html[start : html.index("</tr>", start)]


def cells(html: str) -> list[tuple[str, str]]:
    return re.findall(r'data-location="([^"]+)" data-location-state="([^"]+)"', html)
