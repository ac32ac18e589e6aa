"""The Sites page app against a real PostgreSQL: it only reads, and says when it cannot."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from http import HTTPStatus

import pytest
from fastapi.testclient import TestClient

from sitewatch.airflow.web_app import AIRFLOW_HOST
from sitewatch.config.maintenance import Window
from sitewatch.config.objectives import Slo
from sitewatch.config.site import Site
from sitewatch.dashboard import report
from sitewatch.names import READER_ROLE
from sitewatch.storage import sla
from sitewatch.storage.checks import store_batch
from sitewatch.storage.mutes import add_mutes
from sitewatch.storage.schema import MIGRATIONS, SCHEMA_VERSION, migrate, transaction
from sitewatch.storage.schema import version as schema_version
from sitewatch.storage.sla import period
from sitewatch.storage.slo import SloAlert, save_slo_alert
from sitewatch.storage.verdicts import record_verdict
from sitewatch.web import app as sites_app
from sitewatch.web import metrics_page
from tests.builders import observation
from tests.integration import test_roles as roles

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def host(connect):
    """Airflow's host of the app with the results database on ``connect``, the UI at ``/``."""
    return replace(AIRFLOW_HOST, connect=connect, ui_base=str)


def app_on(connect, sites=dict):
    """The Sites page app on ``connect``, at ``NOW``, with the configured ``sites`` (none by
    default: no sites file) and no login."""
    return sites_app.create_app(host(connect), sites=sites, clock=lambda: NOW, auth=lambda: None)


@pytest.fixture
def client(pg_connect, monkeypatch):
    monkeypatch.setattr(sites_app._Schema, "current", False)
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
    monkeypatch.setattr(sites_app._Schema, "current", False)
    connections = []

    def connect():
        connections.append(pg_connect())
        return connections[-1]

    app = app_on(connect)
    answer = TestClient(app).get(path)
    assert answer.status_code == 404
    assert "no site named" in answer.json()["detail"]
    assert connections == []  # refused before touching the database


def test_an_unknown_valid_name_is_still_a_404(client, migrated_schema):
    answer = client.get("/sites/nosuchsite")
    assert answer.status_code == 404


BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/sites/nope", 404, "no site named &#x27;nope&#x27;"),
        ("/sites/%3Cb%3E", 404, "no site named &#x27;&lt;b&gt;&#x27;"),
        ("/no/such/page", 404, "Not Found"),
        ("/?sort=uptime", 400, "sort &#x27;uptime&#x27;: expected one of name, status"),
        ("/report?month=2026-13", 400, "month &#x27;2026-13&#x27;: expected YYYY-MM"),
    ],
)
def test_a_browser_gets_errors_as_pages_in_the_dashboards_style(
    client, migrated_schema, path, code, message
):
    answer = client.get(path, headers=BROWSER)
    assert answer.status_code == code
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.text.startswith("<!doctype html>") and "<style>" in answer.text
    assert f"<h1>{code} {HTTPStatus(code).phrase}</h1>" in answer.text
    assert message in answer.text and "<b>" not in answer.text
    assert '<a href="/">← Sites</a>' in answer.text  # the app's root, wherever it is mounted
    # a script or an API client still gets JSON
    assert client.get(path).json()["detail"]


def test_a_site_with_several_locations_shows_them_and_its_verdict(
    pg_connect, pg_conn, migrated_schema, monkeypatch
):
    monkeypatch.setattr(sites_app._Schema, "current", False)
    five = timedelta(minutes=5)
    store_batch(
        pg_conn,
        [
            observation("multi", NOW - five, location="eu"),
            observation(
                "multi",
                NOW - five,
                location="us",
                up=False,
                error="status",
                error_detail="status <b>",
            ),
            observation("multi", NOW - 2 * five, location="eu"),
            observation("multi", NOW - 2 * five, location="us"),
            observation("shop", NOW - five),
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


def test_a_silent_locations_kept_word_shows_in_the_runs_matrix(
    pg_connect, pg_conn, migrated_schema, monkeypatch
):
    # issue 29: west stored nothing for the run; the verdict counted its last word
    monkeypatch.setattr(sites_app._Schema, "current", False)
    store_batch(pg_conn, [observation("split", NOW - timedelta(minutes=1), location="east")])
    kept = {"east": "up", "west": "missing, last down"}
    record_verdict(pg_conn, "split", NOW - timedelta(minutes=1), "down", 1, kept)
    site = Site(name="split", url="https://split.example/", locations=("east", "west"), quorum=1)
    client = TestClient(app_on(pg_connect, sites=lambda: {"split": site}))
    page = client.get("/sites/split").text
    matrix = page[
        page.index("<table id=runs>") : page.index("</table>", page.index("<table id=runs>"))
    ]
    assert cells(matrix) == [("east", "up"), ("west", "missing")]
    assert ">missing, last down</span>" in matrix
    assert "the verdict counted its last word" in matrix
    assert "west missing, last down" in client.get("/").text  # the verdict's tip in the listing


def row_of(html: str, site: str) -> str:
    start = html.index(f'<tr data-site="{site}">')
    return html[start : html.index("</tr>", start)]


def cells(html: str) -> list[tuple[str, str]]:
    return re.findall(r'data-location="([^"]+)" data-location-state="([^"]+)"', html)


# --- maintenance, error budgets, sorting, the report (issue 17) ----------------------------------

HOUR, MINUTE = timedelta(hours=1), timedelta(minutes=1)


def check(site, ago, *, up=True, ms=100.0, **fields):
    """A single-location check of ``site`` scheduled ``ago`` before NOW; no response time when
    down."""
    return observation(site, NOW - ago, up=up, response_time_ms=ms if up else None, **fields)


def listing_order(html: str) -> list[str]:
    return re.findall(r'<tr data-site="([^"]+)">', html)


def state_of(row: str) -> str:
    return re.search(r'data-state="([^"]+)"', row)[1]


def states_of(html: str) -> list[str]:
    return re.findall(r'data-state="([^"]+)"', html)


def cell(row: str, attribute: str) -> str:
    """The listing cell of ``row`` that carries ``attribute`` (data-budget, data-burn), or the
    plain "-" cell of a site without an SLO."""
    cells = re.findall(r"<td[^>]*>.*?</td>", row)
    return next(c for c in cells if attribute in c)


def add_hourly(conn, site, rows):
    """Hourly rollup rows (hour, checks, ups) of ``site``: history whose raw rows are gone (the
    checks a test stores are counted into the rollup by the insert trigger, on top)."""
    with transaction(conn, "add hourly rows") as cur:
        cur.executemany(
            "INSERT INTO site_checks_hourly (site, hour, location, checks, ups) "
            "VALUES (%s, %s, 'local', %s, %s)",
            [(site, hour, checks, ups) for hour, checks, ups in rows],
        )


@pytest.fixture
def migrated(migrated_conn, monkeypatch):
    monkeypatch.setattr(sites_app._Schema, "current", False)
    return migrated_conn


def test_a_mute_in_force_shows_maintenance_until_when_and_why(pg_connect, migrated):
    # shop's check in the mute is stored marked, as the drain marks it; the one before is not
    store_batch(migrated, [
        check("shop", 5 * MINUTE, up=False, maintenance=True), check("shop", 2 * HOUR),
        check("blog", 5 * MINUTE),
    ])  # fmt: skip
    add_mutes(migrated, ["shop"], NOW - HOUR, NOW + 2 * HOUR, "database upgrade", "admin")
    add_mutes(migrated, ["blog"], NOW - 3 * HOUR, NOW - HOUR, "over already", "admin")
    add_mutes(migrated, ["blog"], NOW + HOUR, NOW + 2 * HOUR, "cdn switch", None)
    configured = {
        name: Site(name=name, url=f"https://{name}.example/") for name in ("shop", "blog")
    }
    client = TestClient(app_on(pg_connect, sites=lambda: configured))

    listing = client.get("/").text
    shop, blog = row_of(listing, "shop"), row_of(listing, "blog")
    # both: the window, and the state its checks give
    assert states_of(shop) == ["maintenance", "down"] and 'class="badge maintenance"' in shop
    assert (
        'title="maintenance until 2026-06-01 14:00:00 UTC (mute by admin) · database upgrade"'
        in shop
    )
    assert "until 14:00 UTC · database upgrade" in shop
    assert state_of(blog) == "up"  # one mute is over, the other has not begun

    page = client.get("/sites/shop").text
    assert 'class="badge maintenance"' in page
    status_card = page[page.index('<div class="card">Status') :]
    assert states_of(status_card[: status_card.index("</b>")]) == ["maintenance", "down"]
    attempts = page[page.index("<table id=attempts>") :]
    assert attempts.count("<tr data-in-maintenance>") == 1 and attempts.count("<tr><td>") == 1
    assert page.count("<rect data-maintenance-band") == 1  # over the chart's down dot
    (mute,) = re.findall(r'<tr data-maintenance="mute">.*?</tr>', page)
    assert "mute by admin" in mute and "database upgrade" in mute
    assert "until 2026-06-01 14:00:00 UTC" in mute
    blog_page = client.get("/sites/blog").text
    (upcoming,) = re.findall(r'<tr data-maintenance="mute">.*?</tr>', blog_page)
    assert "cdn switch" in upcoming and "next from 2026-06-01 13:00:00 UTC" in upcoming
    assert "over already" not in blog_page and 'data-state="up"' in blog_page


def test_the_pages_and_the_metrics_give_a_site_one_state_degraded_included(pg_connect, migrated):
    """One function (``dashboard.status.site_state``) gives the state everywhere. The Sites page
    once had its own, which never said ``degraded``: a slow site was ``up`` on the page and
    ``degraded`` in ``sitewatch_site_state``."""
    multi = dict(locations=("eu", "us"), quorum=1, degraded_ms=500)
    configured = {
        "slow": Site(name="slow", url="https://slow.example/", degraded_ms=500),
        "fast": Site(name="fast", url="https://fast.example/", degraded_ms=500),
        "down": Site(name="down", url="https://down.example/", degraded_ms=500),
        "multi": Site(name="multi", url="https://multi.example/", **multi),
    }
    store_batch(migrated, [
        check("slow", 5 * MINUTE, ms=900.0), check("fast", 5 * MINUTE, ms=90.0),
        check("down", 5 * MINUTE, up=False), check("gone", 30 * MINUTE),
        check("multi", 5 * MINUTE, ms=90.0, location="eu"),
        check("multi", 5 * MINUTE, ms=700.0, location="us"),
    ])  # fmt: skip
    record_verdict(migrated, "multi", NOW - 5 * MINUTE, "up", 1, {"eu": "up", "us": "up"})
    client = TestClient(app_on(pg_connect, sites=lambda: configured))

    listing = client.get("/?sort=status").text
    shown = {name: state_of(row_of(listing, name)) for name in listing_order(listing)}
    expected = {"down": "down", "multi": "degraded", "slow": "degraded", "gone": "stale"}
    assert shown == expected | {"fast": "up"}  # worst first: degraded after down, before stale
    assert list(shown) == ["down", "multi", "slow", "gone", "fast"]
    assert 'class="badge degraded"' in row_of(listing, "slow")
    for name, state in shown.items():
        assert f'data-state="{state}"' in client.get(f"/sites/{name}").text, name
    figures = metrics_page.gather(migrated, configured, NOW, None, 0.0).sites
    assert {f.name: f.state for f in figures} == {n: s for n, s in shown.items() if n != "gone"}


def test_the_rows_the_page_reads_again_are_its_table_now_in_its_order(pg_connect, migrated):
    """``/rows`` is what the Sites page's script puts in place of its table's body: the same
    rows as a page loaded now, in the order asked, saying when they were read, never cached."""
    store_batch(migrated, [check("shop", 5 * MINUTE, up=False), check("blog", 10 * MINUTE)])
    clock = [NOW]
    app = sites_app.create_app(
        host(pg_connect), sites=dict, clock=lambda: clock[0], auth=lambda: None
    )
    client = TestClient(app)

    page = client.get("/?sort=status").text
    assert '<table id=sites data-sort="status" data-refresh="30">' in page
    assert "<span id=read>read 2026-06-01 12:00:00 UTC</span>" in page and "<script>" in page
    rows = client.get("/rows?sort=status")
    assert rows.headers["cache-control"] == "no-store"
    body = page[page.index("<tbody") : page.index("</tbody>") + len("</tbody>")]
    assert rows.text == body
    assert rows.text.startswith('<tbody data-read="read 2026-06-01 12:00:00 UTC">')
    assert listing_order(rows.text) == ["shop", "blog"]
    assert listing_order(client.get("/rows?sort=name").text) == ["blog", "shop"]
    assert client.get("/rows?sort=nope").status_code == 400

    clock[0] = NOW + MINUTE  # a minute on, and a check stored since
    store_batch(migrated, [observation("shop", NOW + 30 * timedelta(seconds=1))])
    later = client.get("/rows?sort=status").text
    assert 'data-read="read 2026-06-01 12:01:00 UTC"' in later
    assert listing_order(later) == ["blog", "shop"]  # shop is up again: the worst first
    assert "30 s ago" in row_of(later, "shop") and "11 min ago" in row_of(later, "blog")


def test_a_window_of_the_sites_file_shows_maintenance(pg_connect, migrated):
    store_batch(migrated, [check("shop", 5 * MINUTE), check("blog", 5 * MINUTE)])
    # 13:30 on Berlin's clocks is 11:30 UTC in June (CEST): in force at 12:00 UTC until 12:30
    nightly = Window(cron="30 13 * * *", duration=HOUR, timezone="Europe/Berlin", reason="backup")
    later = Window(start=NOW + timedelta(days=1), end=NOW + timedelta(days=1, hours=1))
    sunday = Window(cron="0 3 * * 0", duration=HOUR, reason="weekly")  # NOW is a Monday
    over = Window(start=NOW - 2 * HOUR, end=NOW - HOUR, reason="done")
    now_off = Window(start=NOW - HOUR, end=NOW + HOUR, reason="moving racks")
    configured = {
        "shop": Site(name="shop", url="https://shop.example/", maintenance=(nightly,)),
        "blog": Site(name="blog", url="https://blog.example/", maintenance=(later, sunday, over)),
        "multi": Site(
            name="multi", url="https://multi.example/", locations=("eu", "us"),
            maintenance=(now_off,),
        ),
    }  # fmt: skip
    client = TestClient(app_on(pg_connect, sites=lambda: configured))

    listing = client.get("/").text
    shop, blog, multi = (row_of(listing, name) for name in ("shop", "blog", "multi"))
    assert states_of(shop) == ["maintenance", "up"] and "until 12:30 UTC · backup" in shop
    assert '(sites file) · backup"' in shop
    assert state_of(blog) == "up"
    # a site checked from several locations keeps its location cells under the badges
    assert states_of(multi)[:2] == ["maintenance", "no data"] and "moving racks" in multi
    assert cells(multi) == [("eu", "missing"), ("us", "missing")]

    shop_page = client.get("/sites/shop").text
    (window,) = re.findall(r'<tr data-maintenance="window">.*?</tr>', shop_page)
    assert "<code>30 13 * * *</code> (Europe/Berlin) for 1h" in window
    assert "until 2026-06-01 12:30:00 UTC" in window
    rows = re.findall(r'<tr data-maintenance="window">.*?</tr>', client.get("/sites/blog").text)
    assert len(rows) == 2  # the one-off window that is over is not listed
    assert "next from 2026-06-02 12:00:00 UTC" in rows[0]
    assert "weekly" in rows[1] and "next from 2026-06-07 03:00:00 UTC" in rows[1]


@pytest.fixture
def budgets(pg_connect, migrated):
    """Four sites for the budget columns and the orders, figures worked out by hand.

    shop, 99% over a day (budget 1%, 14.4 min): 1,000 checks in the window's hours, 3 down: 0.3%
    of checks, 30% of the budget spent, 70.00% left, 1,440 x (1% - 0.3%) = 10.08 min left. Last
    hour: 10 final checks outside maintenance, 1 down: 10% / 1% = 10.0x, and a page alert fires.
    blog, 99.9% over a day (budget 0.1%, 1.44 min): 4 of 2,000 down: 0.2% = twice the budget,
    -100.00% left, 1.44 min over; its last hour is all up: 0.0x.
    quiet: an SLO, no checks. plain: no SLO; muted now.
    """
    # with the 11 checks stored below (2 down), counted in by the trigger: 1,000 and 3 down
    add_hourly(migrated, "shop", [
        (NOW - 2 * HOUR, 589, 588),
        (NOW - 5 * HOUR, 400, 400),
        (NOW - 25 * HOUR, 100, 0),  # before the day's window
        (NOW + HOUR, 50, 0),  # after NOW
    ])  # fmt: skip
    add_hourly(migrated, "blog", [(NOW - 3 * HOUR, 1998, 1994)])  # and 2 up stored below
    recent = [check("shop", (5 + 5 * k) * MINUTE, up=k != 0) for k in range(9)]
    recent += [
        check("shop", 55 * MINUTE, up=False, maintenance=True),  # left out
        check("shop", 58 * MINUTE, up=False, final=False),  # retried: left out
        check("shop", 58 * MINUTE, attempt=2),  # the tenth
        check("shop", 2 * HOUR, up=False),  # before the hour
        check("blog", 10 * MINUTE),
        check("blog", 40 * MINUTE),
        check("plain", 10 * MINUTE),
    ]
    store_batch(migrated, recent)
    save_slo_alert(migrated, SloAlert("shop", "page", NOW - 10 * MINUTE, 12.0, 15.0, None))
    add_mutes(migrated, ["plain"], NOW - HOUR, NOW + HOUR, "new host", "admin")
    configured = {
        "shop": Site(name="shop", url="https://shop.example/", slo=Slo(99.0, timedelta(days=1))),
        "blog": Site(name="blog", url="https://blog.example/", slo=Slo(99.9, timedelta(days=1))),
        "quiet": Site(name="quiet", url="https://quiet.example/", slo=Slo(99.5)),
        "plain": Site(name="plain", url="https://plain.example/"),
    }
    return TestClient(app_on(pg_connect, sites=lambda: configured))


def test_budget_and_burn_columns_from_the_rollup_and_the_last_hour(budgets):
    listing = budgets.get("/").text
    shop, blog, quiet, plain = (row_of(listing, n) for n in ("shop", "blog", "quiet", "plain"))
    left, burn = cell(shop, "data-budget"), cell(shop, "data-burn")
    assert 'data-budget="0.700000"' in left and ">70.00%<" in left and "10.1 min left" in left
    assert "3 of 1,000 checks down" in left and "14.4 min of downtime allowed" in left
    assert ">10.0x<" in burn and 'class="num burning"' in burn
    assert "page alert firing since 2026-06-01 11:50:00 UTC" in burn
    left, burn = cell(blog, "data-budget"), cell(blog, "data-burn")
    assert ">-100.00%<" in left and "1.4 min over" in left and 'class="num err"' in left
    assert ">0.0x<" in burn and "burning" not in burn
    assert "data-budget" not in quiet and "data-burn" not in quiet
    assert quiet.count('class="num muted"') == 2 and ">—<" in quiet  # an SLO, nothing measured
    assert "data-budget" not in plain and plain.count('title="no slo for this site">-<') == 2


def test_the_listing_sorts_by_budget_burn_status_and_name(budgets):
    assert listing_order(budgets.get("/").text) == ["blog", "plain", "quiet", "shop"]
    # least budget left first; sites without the figure last, by name
    assert listing_order(budgets.get("/?sort=budget").text) == ["blog", "shop", "plain", "quiet"]
    assert listing_order(budgets.get("/?sort=burn").text) == ["shop", "blog", "plain", "quiet"]
    # worst first: shop's latest check is down, plain is muted, quiet has no data, blog is up
    by_status = budgets.get("/?sort=status").text
    assert listing_order(by_status) == ["shop", "plain", "quiet", "blog"]
    head = budgets.get("/?sort=budget").text
    assert '<th class=num aria-sort="ascending"><a class=sort href="?sort=budget"' in head
    # every header that sorts looks it: the order in force marked, the others a faint mark
    marks = re.findall(r'data-sort="(\w+)"[^>]*>[^<]*<span class="(mark[^"]*)">', head)
    assert marks == [("name", "mark"), ("status", "mark"), ("budget", "mark on"),
                     ("burn", "mark")]  # fmt: skip
    assert "a.sort{cursor:pointer" in head
    wrong = budgets.get("/?sort=uptime")
    assert wrong.status_code == 400
    assert wrong.json()["detail"] == "sort 'uptime': expected one of name, status, budget, burn"


@pytest.fixture
def objective(pg_connect, migrated):
    """shop, 99% over 3 days (4,320 min, 43.2 min of budget), p95 objective 150 ms.

    History in both rollups, as the trigger leaves it: May 29 100 of 100 (at 20:00, in the
    window's first, partial day: from the hourly rollup), May 30 99 of 100 (a whole day: from the
    daily one), then today's raw checks: 5 of 7 (ups of 100-200 ms, so p95 = 130 + 0.8 x 70 =
    186 ms: missed). 204 of 207 up: 98.55%; 207 checks allow 2.07 down, 3 were: -44.93% of the
    budget left, 4,320 x (1% - 3/207) = -19.4 min. The budget left after each day: 100.00%,
    51.69% (1 down), 51.69% (May 31, no checks), -44.93% (3 down); every percentage with two
    decimals, floored.
    Burn rates: 5 min, 1 of 1 down: 100x; 30 min, 2 of 4: 50x; 1 h and 6 h, 2 of 7: 28.6x.
    """
    add_hourly(migrated, "shop", [(NOW - 64 * HOUR, 100, 100), (NOW - 50 * HOUR, 100, 99)])
    with transaction(migrated, "add daily rows") as cur:
        cur.executemany(
            "INSERT INTO site_checks_daily (site, day, location, checks, ups) "
            "VALUES ('shop', %s, 'local', 100, %s)",
            [(date(2026, 5, 29), 100), (date(2026, 5, 30), 99)],
        )
    ms = [None, None, 100.0, 110.0, 120.0, 130.0, 200.0]
    store_batch(migrated, [
        check("shop", (2 + 7 * k) * MINUTE, up=value is not None, ms=value)
        for k, value in enumerate(ms)
    ])  # fmt: skip
    save_slo_alert(migrated, SloAlert("shop", "page", NOW - 8 * MINUTE, 30.0, 100.0, NOW))
    slo = Slo(99.0, timedelta(days=3), p95_ms=150)
    shop = Site(
        name="shop", url="https://shop.example/", slo=slo, depends_on=("db", "cdn"),
        degraded_ms=800,
    )  # fmt: skip
    plain = Site(name="plain", url="https://plain.example/")
    configured = {"shop": shop, "plain": plain}
    return TestClient(app_on(pg_connect, sites=lambda: configured))


def test_a_site_page_shows_its_objective_burn_and_budget_chart(objective):
    page = objective.get("/sites/shop").text
    cards = dict(re.findall(r'<div class="card" data-card="([^"]+)">[^<]*<b>(.*?)</b>', page))
    assert cards["Target"] == "99% over 3d"
    assert cards["Attainment"] == "98.55%"  # as every percentage: 2 decimals
    assert cards["Budget left"] == "-44.93%" and cards["Downtime left"] == "-19.4 min"
    assert cards["p95 latency"].startswith("186 ms") and "≤ 150 ms missed" in cards["p95 latency"]
    rules = dict(re.findall(r'<tr data-rule="(\w+)">(.*?)</tr>', page))
    assert "28.6x over 1h" in rules["page"] and "100.0x over 5m" in rules["page"]
    assert "firing</span> since 2026-06-01 11:52:00 UTC" in rules["page"]
    assert "28.6x over 6h" in rules["warn"] and "50.0x over 30m" in rules["warn"]
    assert "burning</span> (the drain alerts" in rules["warn"]
    chart = page[page.index("<svg id=budget-chart") :]
    assert re.findall(r"<title>([^<]*)</title>", chart[: chart.index("</svg>")]) == [
        "2026-05-29: 100.00% left",
        "2026-05-30: 51.69% left",
        "2026-05-31: 51.69% left",
        "2026-06-01: -44.93% left",
    ]
    assert re.findall(r'data-parent="([^"]+)"', page) == ["db", "cdn"]
    assert "Degraded above<b>800 ms</b>" in page
    assert "id=no-slo" in objective.get("/sites/plain").text


@pytest.fixture
def may(pg_connect, migrated):
    """shop in May 2026: up at 10:00, down at 10:05 (status 503), up at 10:10 on the 10th: 2 of
    3 up (66.66%), one incident of 5 minutes; its SLO is 99%, not met."""
    day = datetime(2026, 5, 10, 10, tzinfo=UTC)
    store_batch(migrated, [
        check("shop", NOW - day), check("shop", NOW - day - 5 * MINUTE, up=False),
        check("shop", NOW - day - 10 * MINUTE),
    ])  # fmt: skip
    objectives = {"shop": Slo(99.0)}
    app = sites_app.create_app(
        host(pg_connect), sites=dict, clock=lambda: NOW, auth=lambda: None,
        objectives=lambda: objectives,
    )  # fmt: skip
    return TestClient(app), objectives


@pytest.mark.parametrize(
    ("fmt", "media"), [("csv", "text/csv"), ("md", "text/markdown"), ("html", "text/html")]
)
def test_the_report_route_returns_what_the_command_prints(may, migrated, fmt, media):
    client, objectives = may
    answer = client.get(f"/report?month=2026-05&format={fmt}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == f"{media}; charset=utf-8"
    disposition = f'attachment; filename="sitewatch-report-2026-05.{fmt}"'
    assert answer.headers["content-disposition"] == disposition
    month = period(migrated, date(2026, 5, 1), date(2026, 6, 1), NOW)
    assert answer.text == report.render(month, objectives, fmt)
    if fmt == "csv":
        assert answer.text.splitlines()[1] == "site,shop,66.66,5.0,1,0.0,99,no,,,,,"


def test_the_listing_links_the_previous_and_the_current_months_report(may):
    client, _ = may
    listing = client.get("/").text
    for month in ("2026-05", "2026-06"):
        for fmt in ("csv", "md", "html"):
            assert f'href="report?month={month}&amp;format={fmt}" download' in listing
    assert client.get("/report?month=2026-05").headers["content-type"].startswith("text/csv")


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("", "month is required, like ?month=2026-11"),
        ("?month=2026-13", "month '2026-13': expected YYYY-MM, like 2026-11"),
        ("?month=2026-1", "month '2026-1': expected YYYY-MM, like 2026-11"),
        ("?month=nov", "month 'nov': expected YYYY-MM, like 2026-11"),
        ("?month=2026-05&format=pdf", "format 'pdf': expected one of csv, md, html"),
    ],
)
def test_a_bad_report_request_is_a_400_that_says_why(may, query, detail):
    client, _ = may
    answer = client.get(f"/report{query}")
    assert answer.status_code == 400
    assert answer.json()["detail"] == detail


owned_schema = roles.owned_schema  # a schema the owner role migrated, as create_tables does


def test_the_pages_role_can_serve_every_route(pg_dsn, owned_schema, monkeypatch):
    # The page connects as sitewatch_reader (PRIVILEGES): every read of this issue must be
    # granted to it, the mutes, the rollups, the alerts and the report's included.
    with roles.as_role(pg_dsn, roles.OWNER_ROLE, owned_schema) as owner:
        store_batch(owner, [check("shop", 5 * MINUTE, up=False), check("shop", 10 * MINUTE)])
        add_hourly(owner, "shop", [(NOW - 2 * HOUR, 998, 994)])  # with the 2 above: 1,000
        add_mutes(owner, ["shop"], NOW - HOUR, NOW + HOUR, "upgrade", "admin")
    monkeypatch.setattr(sites_app._Schema, "current", False)
    slo = Slo(99.0, timedelta(days=1))
    configured = {"shop": Site(name="shop", url="https://shop.example/", slo=slo)}
    app = sites_app.create_app(
        host(lambda: roles.as_role(pg_dsn, READER_ROLE, owned_schema)),
        sites=lambda: configured,
        clock=lambda: NOW, auth=lambda: None, objectives=lambda: {"shop": slo},
    )  # fmt: skip
    client = TestClient(app)
    for path in ("/?sort=budget", "/sites/shop", "/report?month=2026-06&format=html"):
        assert client.get(path).status_code == 200, path
    assert 'data-budget="0.500000"' in client.get("/").text  # 0.5% down: half of a 1% budget


# --- the report: one read per month, a few at once, closed months cached (issue 24, item 4) ------


class Gate:
    """``storage.sla.period`` counted, each read waiting until ``open()``: reads that
    overlap in time, on demand."""

    def __init__(self, monkeypatch):
        self.calls: list[date] = []
        self._open = threading.Event()
        real = sla.period

        def period(conn, first, *args, **kwargs):
            self.calls.append(first)
            assert self._open.wait(10), "the gate was never opened"
            return real(conn, first, *args, **kwargs)

        monkeypatch.setattr(sla, "period", period)

    def open(self) -> None:
        self._open.set()

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.calls) < count:
            assert time.monotonic() < deadline, f"{len(self.calls)} reads began, not {count}"
            time.sleep(0.01)


@pytest.fixture
def gate(monkeypatch):
    return Gate(monkeypatch)


def test_concurrent_requests_for_a_closed_month_read_it_once_then_never_again(may, gate):
    client, objectives = may
    paths = [f"/report?month=2026-05&format={fmt}" for fmt in ("csv", "md", "html", "csv") * 2]
    with ThreadPoolExecutor(len(paths)) as pool:
        answers = [pool.submit(client.get, path) for path in paths]
        gate.wait_for(1)
        time.sleep(0.3)  # the others arrive meanwhile (or later: then the cache answers)
        gate.open()
        answers = [answer.result() for answer in answers]
    assert [answer.status_code for answer in answers] == [200] * len(paths)
    assert gate.calls == [date(2026, 5, 1)]  # one read for all eight, whatever the format
    assert answers[0].text == answers[3].text and answers[0].text.splitlines()[1] == (
        "site,shop,66.66,5.0,1,0.0,99,no,,,,,"
    )
    # May ended more than the verdict sweep's horizon ago: later requests read nothing
    objectives["shop"] = Slo(50.0)  # the sites file's targets are applied per request
    later = client.get("/report?month=2026-05")
    assert later.text.splitlines()[1] == "site,shop,66.66,5.0,1,0.0,50,yes,,,,,"
    assert gate.calls == [date(2026, 5, 1)]


def test_a_cached_month_is_read_again_once_its_data_changed(may, migrated, gate):
    gate.open()
    client, _ = may
    assert client.get("/report?month=2026-05").status_code == 200
    assert client.get("/report?month=2026-05").status_code == 200
    assert len(gate.calls) == 1
    # a check of May stored late (a drain that caught up): the rollup's sums changed
    store_batch(migrated, [check("shop", NOW - datetime(2026, 5, 20, 8, tzinfo=UTC))])
    assert client.get("/report?month=2026-05").text.splitlines()[1] == (
        "site,shop,75.00,5.0,1,0.0,99,no,,,,,"
    )
    assert len(gate.calls) == 2
    # retention dropped the day with the incident: raw_since moved, the incident went with it
    with transaction(migrated, "drop a day") as cur:
        cur.execute("DROP TABLE site_checks_p20260510")
    text = client.get("/report?month=2026-05").text
    assert text.splitlines()[1] == "site,shop,75.00,0.0,0,0.0,99,no,,,,," and len(gate.calls) == 3
    # the month not over yet (June, at NOW) is read for every request
    client.get("/report?month=2026-06")
    client.get("/report?month=2026-06")
    assert len(gate.calls) == 5


def test_a_report_past_the_concurrency_limit_is_a_503_with_retry_after(may, gate, monkeypatch):
    monkeypatch.setenv("SITEWATCH_REPORT_CONCURRENCY", "1")
    client, _ = may
    with ThreadPoolExecutor(2) as pool:
        reading = pool.submit(client.get, "/report?month=2026-05")
        gate.wait_for(1)
        refused = client.get("/report?month=2026-04&format=html")
        joining = pool.submit(client.get, "/report?month=2026-05&format=md")  # no new read
        time.sleep(0.2)
        gate.open()
        assert (reading.result().status_code, joining.result().status_code) == (200, 200)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "30"
    assert refused.json()["detail"] == (
        "the Sites page computes at most 1 report at once (SITEWATCH_REPORT_CONCURRENCY) and is "
        "computing 2026-05; try again in 30 s"
    )
    assert gate.calls == [date(2026, 5, 1)]
    assert client.get("/report?month=2026-04").status_code == 200  # a slot is free again
    monkeypatch.setenv("SITEWATCH_REPORT_CONCURRENCY", "0")
    answer = client.get("/report?month=2026-03")
    assert answer.status_code == 500
    assert answer.json()["detail"].startswith("SITEWATCH_REPORT_CONCURRENCY='0': expected a")


def test_a_report_past_its_timeout_is_a_503_that_says_so(may, pg_connect, monkeypatch):
    monkeypatch.setenv("SITEWATCH_REPORT_TIMEOUT_SECONDS", "0.3")
    client, _ = may
    other = pg_connect()
    other.execute("LOCK TABLE site_checks_daily IN ACCESS EXCLUSIVE MODE")  # a read that waits
    try:
        answer = client.get("/report?month=2026-05")
    finally:
        other.rollback()
    assert answer.status_code == 503
    assert (
        "could not read the report of 2026-05-01 to 2026-06-01: the report&#x27;s read took"
        " longer than 0.3 s and was stopped (SITEWATCH_REPORT_TIMEOUT_SECONDS sets the limit)"
    ) in answer.text
    assert client.get("/report?month=2026-05").status_code == 200  # a failure is not kept


def _step(name, start, took, *, passed=True, status=200, **fields):
    step = {"name": name, "method": "GET", "url": f"https://api.example/{name}", "always": False}
    if start is not None:  # a row stored before steps kept their start has none
        step["start_ms"] = start
    return {**step, "passed": passed, "status": status, "response_ms": took, **fields}


def test_a_flows_steps_show_as_a_waterfall_and_the_failing_step_is_marked(pg_connect, migrated):
    failed = [
        _step("login", None, 40.0, body_bytes=120),
        _step("read", None, 60.0, passed=False, body_bytes=2048, error="assertion",
              error_detail="json $.id: expected 7, got 8"),
        {"name": "cleanup", "method": "DELETE", "url": "https://api.example/x", "always": False,
         "error_detail": "not run: step read failed"},
    ]  # fmt: skip
    latest = [
        _step("login", 1.0, 40.0, dns_ms=1.0, connect_ms=2.0, tls_ms=9.4),
        _step("read", 45.0, 55.0, body_bytes=300),
    ]
    store_batch(migrated, [
        check("api", 2 * HOUR, up=False, steps=failed, error="assertion",
              error_detail="step read: json $.id: expected 7, got 8"),
        check("api", 5 * MINUTE, ms=101.0, steps=latest, tls_version="TLSv1.3"),
        check("plain", 5 * MINUTE),
    ])  # fmt: skip
    client = TestClient(app_on(pg_connect))

    page = client.get("/sites/api").text
    assert "<span id=tls-version>TLSv1.3</span>" in page
    newest, older = re.findall(r"<table class=waterfall.*?</table>", page)
    assert page.index("<h2>Latest flow</h2>") < page.index("<h2>Latest failed flow</h2>")
    assert re.findall(r'<tr data-step="(\w+)"', newest) == ["login", "read"]
    assert "data-failed" not in newest and 'aria-label="passed: from 45 ms to 100 ms"' in newest
    assert "300 B" in newest
    assert "passed: from 1 ms to 41 ms (dns 1 ms, connect 2 ms, tls 9 ms)" in newest
    # an older row without start offsets: each bar starts where the one before it ended
    (marked,) = re.findall(r"<tr data-step=\"read\" data-failed>.*?</tr>", older)
    assert "✗ failed" in marked and "2,048 B" in marked
    assert "assertion: json $.id: expected 7, got 8" in marked
    assert 'aria-label="failed: from 40 ms to 100 ms"' in marked
    assert "not run: step read failed" in older and "no request" in older
    plain = client.get("/sites/plain").text
    assert "waterfall" not in plain and "tls-version" not in plain
