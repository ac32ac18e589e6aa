"""A status page rendered from real PostgreSQL data: states from the stored checks and verdicts,
the 90-day bars from the daily rollup, maintenance from the sites file and the mutes, and the
files written to a local folder and to fsspec's memory target as the DAG writes them."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import fsspec
import pytest

from sitewatch.config.loader import load_text
from sitewatch.status.files import MANIFEST, page_files
from sitewatch.status.read import read_page
from sitewatch.storage.checks import store_batch
from sitewatch.storage.mutes import add_mutes
from sitewatch.storage.retention import refresh_hourly
from sitewatch.storage.verdicts import record_verdict
from tests.builders import observation

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
SITES = textwrap.dedent("""\
    sites:
      - name: shop
        url: https://shop.internal.example/secret
      - name: api
        url: https://api.internal.example/
        maintenance:
          - {cron: "0 14 * * *", duration: 1h, reason: nightly private job}
      - name: multi
        url: https://multi.internal.example/
        locations: [eu, us]
      - name: muted
        url: https://muted.internal.example/
    status_pages:
      - id: public
        title: <Example> status
        components:
          - {site: shop, name: Shop, description: "Orders & <payments>", response_time: true}
          - {site: api, name: API}
          - {site: multi, name: Everywhere}
          - {site: muted, name: Muted}
          - {group: [shop, api], name: Both}
""")


@pytest.fixture
def stored(migrated_conn):
    conn = migrated_conn
    checks = [observation("shop", NOW - 3 * DAY + k * MINUTE, up=k != 0) for k in range(4)]
    checks += [observation("shop", NOW - MINUTE, up=False), observation("api", NOW - MINUTE)]
    checks += [observation("muted", NOW - MINUTE, up=False)]
    checks += [
        observation("multi", NOW - MINUTE, up=loc == "us", location=loc) for loc in ("eu", "us")
    ]
    store_batch(conn, checks)
    record_verdict(conn, "multi", NOW - MINUTE, "partial", 2, {"eu": "down", "us": "up"})
    add_mutes(conn, ["muted"], NOW - MINUTE, NOW + HOUR, "private reason", "alice")
    return conn


def view(conn):
    sites = load_text(SITES, "sites.yaml")
    assert sites.issues == []
    (page,) = sites.status_pages
    return read_page(conn, page, sites.by_name, NOW)


def test_states_bars_and_maintenance_from_stored_data(stored):
    page = view(stored)
    assert [(c.slug, c.status) for c in page.components] == [
        ("shop", "major_outage"),
        ("api", "operational"),
        ("everywhere", "partial_outage"),
        ("muted", "under_maintenance"),
        ("both", "partial_outage"),
    ]
    shop = page.components[0]
    three_days_ago = shop.days[-4]
    assert (three_days_ago.day, three_days_ago.checks, three_days_ago.ups) == (
        (NOW - 3 * DAY).date(),
        4,
        3,
    )
    assert (shop.days[-1].checks, shop.days[-1].ups) == (1, 0)
    assert all(d.checks == 0 for d in shop.days[:-4])
    assert page.components[4].days[-1].checks == 2  # the group sums its sites
    assert (shop.uptimes["24h"].checks, shop.uptimes["24h"].ups) == (1, 0)
    assert (shop.uptimes["7d"].checks, shop.uptimes["7d"].ups) == (5, 3)
    assert page.components[4].uptimes["24h"].checks == 2
    spans = [(m.start, m.end, m.active, m.components) for m in page.maintenances]
    assert spans == [
        (NOW - MINUTE, NOW + HOUR, True, ("muted",)),
        (NOW + 2 * HOUR, NOW + 3 * HOUR, False, ("api", "both")),
    ]


def test_published_files_say_nothing_private(stored):
    files = page_files(view(stored))
    html = files["index.html"].decode()
    assert "&lt;Example&gt; status" in html and "Orders &amp; &lt;payments&gt;" in html
    assert "lowest: 2026-12-06 0.00%, 2026-12-03 75.00%" in html  # the bar's label
    assert ' 75.00% - - 0.00%"' in html  # its days, for the tooltips
    for text in (f.decode() for f in files.values()):
        for private in ("internal.example", "secret", "private", "alice", "eu", "status 503"):
            assert private not in text, private
    summary = json.loads(files["summary.json"])
    assert [m["status"] for m in summary["scheduled_maintenances"]] == ["in_progress", "scheduled"]


def test_the_page_reads_rollups_only(stored, monkeypatch):
    statements = []
    execute = type(stored.cursor()).execute

    def spy(cur, query, *args, **kwargs):
        statements.append(str(query))
        return execute(cur, query, *args, **kwargs)

    monkeypatch.setattr(type(stored.cursor()), "execute", spy)
    view(stored)
    assert statements and not any("site_checks " in s or "site_checks\n" in s for s in statements)


@pytest.mark.parametrize("target", ["local", "memory"])
def test_publish_to_a_local_folder_and_to_memory(stored, tmp_path, target):
    from sitewatch.airflow.status_page_dag import publish_files

    url = tmp_path.as_uri() if target == "local" else "memory://status-test"
    files = page_files(view(stored))
    for _ in range(2):  # a second publish replaces the first
        publish_files(url, "public", files)
    fs, root = fsspec.core.url_to_fs(url)
    written = sorted(p.removeprefix(root.rstrip("/") + "/") for p in fs.find(root))
    assert written == sorted([f"public/{MANIFEST}", *(f"public/{name}" for name in files)])
    assert fs.cat_file(f"{root}/public/index.html") == files["index.html"]


def test_the_response_time_chart_reads_the_hourly_medians(stored):
    store_batch(stored, [observation("shop", NOW - 2 * HOUR, response_time_ms=300.0)])
    refresh_hourly(stored, NOW)  # as hourly maintenance does
    shop, api = view(stored).components[:2]
    hour = NOW - HOUR
    assert shop.response[-3:] == ((hour - HOUR, 300.0), (hour, 100.0), (NOW, None))
    assert api.response == ()  # not asked for: no response time published
    html = page_files(view(stored))["index.html"].decode()
    assert "typically 300 ms, at most 300 ms" in html
