"""sitewatch.dashboard.status, render and locations: states, thresholds, figures, the SVG chart,
and what a site checked from several locations shows."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import escape

import pytest

from sitewatch.dashboard import render, status
from sitewatch.storage.queries import Attempt, LocationCheck, Run, RunLocation, SiteSummary

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SUMMARY = SiteSummary(
    site="shop",
    url="https://shop.example/",
    last_scheduled_at=NOW - timedelta(minutes=5),
    last_checked_at=NOW - timedelta(minutes=5),
    last_up=True,
    last_status_code=200,
    last_response_time_ms=120.0,
    checks_24h=288,
    ups_24h=287,
    checks_7d=2016,
    ups_7d=2016,
    checks_30d=8640,
    ups_30d=8639,
    p50_ms=95.2,
    p95_ms=380.7,
    last_error="status",
    last_error_detail="status 503 <not> in 200-399",
    last_error_at=NOW - timedelta(hours=3),
    tls_expires_at=NOW + timedelta(days=40, hours=1),
)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (timedelta(seconds=30), timedelta(minutes=15)),
        (timedelta(minutes=5), timedelta(minutes=15)),
        (timedelta(hours=1), timedelta(hours=3)),
        ("*/10 * * * *", timedelta(minutes=30)),
        ("7 * * * *", timedelta(hours=3)),
        (None, timedelta(minutes=15)),
    ],
)
def test_stale_after_is_three_intervals_and_at_least_15_minutes(schedule, expected):
    assert status.stale_after(schedule) == expected


def test_state_follows_the_last_final_check_and_its_age():
    def state(site, *checks):
        return status.site_state(site, checks, None, False, NOW)[0]

    five_min = site_config()
    hourly = replace(five_min, schedule=timedelta(hours=1))
    assert state(five_min, latest_check()) == status.UP
    assert state(five_min, latest_check(up=False)) == status.DOWN
    old = latest_check(ago=timedelta(minutes=16))
    assert state(five_min, old) == status.STALE
    assert state(hourly, old) == status.UP
    assert state(five_min) == status.NO_DATA
    # a site no longer in the sites file: its newest check of any location, stale after 15 min
    assert state(None, old, latest_check("eu", ago=timedelta(minutes=20), up=False)) == "stale"
    assert state(None, latest_check(up=False), old) == status.DOWN
    assert state(None, latest_check(ms=90_000.0)) == status.UP  # no degraded_ms to exceed


@pytest.mark.parametrize(
    ("ups", "checks", "text"),
    [(0, 0, "—"), (10, 10, "100.00%"), (9999, 10000, "99.99%"), (99999, 100000, "99.99%"),
     (1, 3, "33.33%"), (0, 5, "0.00%")],
)  # fmt: skip
def test_uptime_is_floored_to_two_decimals(ups, checks, text):
    assert status.uptime(ups, checks) == text


def test_days_left_and_age():
    assert status.days_left(SUMMARY.tls_expires_at, NOW) == 40
    assert status.days_left(NOW - timedelta(hours=1), NOW) == -1
    assert status.days_left(None, NOW) is None
    assert status.age(NOW - timedelta(seconds=42), NOW) == "42 s ago"
    assert status.age(NOW - timedelta(minutes=5, seconds=3), NOW) == "5 min ago"
    assert status.age(NOW - timedelta(days=2, hours=5), NOW) == "2 d ago"


def test_listing_shows_every_figure_and_escapes_database_text():
    html = render.listing(
        [("shop", SUMMARY, status.UP), ("new-site", None, status.NO_DATA)], NOW, "/base"
    )
    for text in ("99.65%", "100.00%", "99.98%", "95 ms", "381 ms", "40 d", "3 h ago"):
        assert text in html
    assert 'data-state="up"' in html and 'data-state="no data"' in html
    assert 'href="/base/dags/site_shop" target="_top"' in html
    assert "&lt;not&gt;" in html and "<not>" not in html
    assert "no checks stored yet" in html


def test_site_page_has_chart_and_attempts():
    attempts = [
        Attempt(NOW - timedelta(minutes=5), 1, True, NOW, True, 200, 120.0, 40.0, None, None),
        Attempt(NOW - timedelta(minutes=10), 2, True, NOW, False, None, None, None, "connect",
                "refused <x>"),
    ]  # fmt: skip
    series = [
        (NOW - timedelta(hours=2), 100.0, True, False),
        (NOW - timedelta(hours=1), 300.0, True, False),
        (NOW - timedelta(minutes=10), None, False, False),
    ]
    html = render.site_page("shop", SUMMARY, status.UP, series, attempts, NOW)
    assert html.count("<svg") == 1 and "<polyline" in html and html.count("<circle") == 1
    assert "refused &lt;x&gt;" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "<tr data-in-maintenance>" not in html and "<rect data-maintenance-band" not in html


def test_attempts_and_checks_in_maintenance_are_marked():
    """Each attempt stored in maintenance is marked in the table; each stretch of them is one
    shaded band in the chart, over its down dots."""
    attempts = [
        Attempt(NOW - timedelta(minutes=m), 1, True, NOW, False, 503, 90.0, 40.0, "http_status",
                "status 503", maintenance=m < 20)
        for m in (5, 10, 30)
    ]  # fmt: skip
    held = [(NOW - timedelta(minutes=m), None, False, m < 20) for m in (50, 30, 10, 5)]
    series = [(NOW - timedelta(minutes=70), 90.0, True, True), *held]
    html = render.site_page("shop", SUMMARY, status.DOWN, series, attempts, NOW)
    rows = re.findall(r"<tr[^>]*><td>2026.*?</tr>", html)
    assert ["data-in-maintenance" in r for r in rows] == [True, True, False]
    assert ['class="tag maintenance"' in r for r in rows] == [True, True, False]
    assert html.count("<rect data-maintenance-band") == 2  # 70 min ago, and 10 to 5 min ago
    assert "shaded: checks in maintenance" in html and html.count("<circle") == 4


def test_chart_of_an_empty_window_says_so():
    assert "no checks in this window" in render.chart([], NOW)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.domain)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        "tcp://db.example:5432",  # a TCP check's: stored, shown, never a link
        "tls://mail.example:465",
        "dns://9.9.9.9/shop.example?type=A",
    ],
)
def test_only_http_urls_are_links(url):
    # Rows stored before the drain checked the scheme, or written by hand, reach the page as is.
    html = render.site_page("shop", replace(SUMMARY, url=url), status.UP, [], [], NOW)
    assert f'href="{escape(url)}"' not in html
    assert 'href="javascript' not in html.lower() and 'href=" ' not in html
    assert f'<span class="url">{escape(url)}</span>' in html  # shown, as text


@pytest.mark.parametrize("url", ["https://shop.example/?a=1&b=2", "HTTP://SHOP.EXAMPLE/"])
def test_http_urls_are_links(url):
    html = render.site_page("shop", replace(SUMMARY, url=url), status.UP, [], [], NOW)
    assert f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">' in html


# --- sites checked from several locations ---------------------------------------------------

FIVE_MIN = timedelta(minutes=5)
RUN = NOW - timedelta(minutes=5)


def location_check(location: str, up: bool, ago=FIVE_MIN, error=None, detail=None):
    return LocationCheck("multi", location, NOW - ago, NOW - ago, up, error, detail)


def run_part(location: str, *, up=False, final=True, attempts=1, error=None, detail=None):
    return RunLocation(location, up, final, attempts, RUN, error, detail)


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [("up", status.UP), ("partial", status.PARTIAL), ("down", status.DOWN), ("bogus", "no data")],
)
def test_a_verdict_is_the_state_of_a_site_with_several_locations(verdict, expected):
    assert status.verdict_state((RUN, verdict, {}), FIVE_MIN, NOW) == expected


def test_an_old_verdict_is_stale_and_none_is_no_data():
    old = (NOW - timedelta(minutes=16), "up", {"eu": "up"})
    assert status.verdict_state(old, FIVE_MIN, NOW) == status.STALE
    assert status.verdict_state(old, timedelta(hours=1), NOW) == status.UP
    assert status.verdict_state(None, FIVE_MIN, NOW) == status.NO_DATA


def test_a_location_cell_follows_its_latest_decided_check():
    assert status.location_state(location_check("eu", True), FIVE_MIN, NOW) == status.UP
    assert status.location_state(location_check("eu", False), FIVE_MIN, NOW) == status.DOWN
    old = location_check("eu", True, ago=timedelta(minutes=16))
    assert status.location_state(old, FIVE_MIN, NOW) == status.STALE
    assert status.location_state(None, FIVE_MIN, NOW) == status.MISSING


def test_a_run_cell_is_up_down_retrying_or_missing():
    assert status.run_state(run_part("eu", up=True, final=False)) == status.UP
    assert status.run_state(run_part("eu")) == status.DOWN
    assert status.run_state(run_part("eu", final=False)) == status.RETRYING
    assert status.run_state(None) == status.MISSING


HOSTILE = '<img src=x onerror="alert(1)">'


def several_view():
    latest = {
        "eu": location_check("eu", True),
        "us": location_check("us", False, error="status", detail=HOSTILE),
    }
    verdict = (RUN, "partial", {"eu": "up", "us": "down", "ap": "missing", HOSTILE: "up"})
    return status.locations_view(("eu", "us", "ap"), 2, latest, verdict, FIVE_MIN, NOW)


def row_of(html: str, site: str) -> str:
    start = html.index(f'<tr data-site="{site}">')
    return html[start : html.index("</tr>", start)]


def test_listing_shows_each_location_the_verdict_and_the_quorum_of_a_site_with_several():
    view = several_view()
    state = status.verdict_state(view.verdict, FIVE_MIN, NOW)
    html = render.listing(
        [("multi", SUMMARY, state), ("shop", SUMMARY, status.UP)], NOW, several={"multi": view}
    )
    row = row_of(html, "multi")
    assert 'data-state="partial"' in row and "quorum 2 of 3" in row
    cells = re.findall(r'data-location="([^"]+)" data-location-state="([^"]+)"', row)
    assert cells == [("eu", "up"), ("us", "down"), ("ap", "missing")]
    assert "status: &lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in row  # us's error, escaped
    assert "ap: missing, no decided check in 30 days" in row
    assert "<img" not in html and "&lt;img" in html  # the verdict's location names, escaped


def test_a_site_with_one_location_looks_as_it_did_before_locations():
    alone = render.listing([("shop", SUMMARY, status.UP)], NOW)
    beside = render.listing(
        [("multi", SUMMARY, status.PARTIAL), ("shop", SUMMARY, status.UP)],
        NOW,
        several={"multi": several_view()},
    )
    assert row_of(beside, "shop") == row_of(alone, "shop")
    assert "locs" not in row_of(alone, "shop") and not re.search(r"quorum \d", alone)


def test_site_page_of_a_site_with_several_locations_has_the_run_matrix():
    first, second = RUN, RUN - FIVE_MIN
    runs = [
        Run(first, {"eu": run_part("eu", up=True), "us": run_part("us", final=False)}, None, None),
        Run(second, {"us": run_part("us", error="connect", detail=HOSTILE),
                     "gone": run_part("gone", up=True)}, "down", 1),
    ]  # fmt: skip
    attempts = [
        Attempt(first, 1, False, NOW, False, None, None, None, "connect", None, "us"),
        Attempt(first, 1, True, NOW, True, 200, 120.0, 40.0, None, None, "eu"),
    ]
    where = status.SiteLocations(("eu", "us"), 1, runs)
    html = render.site_page("multi", SUMMARY, status.DOWN, [], attempts, NOW, where=where)
    matrix = html[html.index("<table id=runs>") : html.index("</table>", html.index("id=runs"))]
    head = re.findall(r"<th>([^<]*)</th>", matrix)
    assert head == ["Run (scheduled)", "eu", "us", "gone", "Verdict"]  # a removed one last
    rows = matrix.split("<tr data-run=")[1:]
    states = [re.findall(r'data-location-state="([^"]+)"', row) for row in rows]
    assert states == [["up", "retrying", "missing"], ["missing", "down", "up"]]
    assert "undecided" in rows[0] and 'data-state="down"' in rows[1]
    assert "connect: &lt;img" in rows[1] and "<img" not in html
    assert "quorum 1 of 2" in html
    table = html[html.index("<table id=attempts>") :]
    assert "<th>Location</th>" in table and "<td>us</td>" in table and "<td>eu</td>" in table


def test_site_page_of_a_site_with_one_location_has_no_matrix_nor_location_column():
    attempts = [Attempt(NOW, 1, True, NOW, True, 200, 120.0, 40.0, None, None)]
    html = render.site_page("shop", SUMMARY, status.UP, [], attempts, NOW)
    assert "id=runs" not in html and "<th>Location</th>" not in html
    assert not re.search(r"quorum \d", html)


# --- a site's state for /sitewatch/metrics --------------------------------------------------------


def latest_check(location="local", *, ago=timedelta(minutes=5), up=True, ms=120.0):
    from sitewatch.storage.metrics import Latest

    at = NOW - ago
    return Latest(
        site="shop", location=location, scheduled_at=at, checked_at=at, up=up,
        status_code=200 if up else 503, response_time_ms=ms, dns_ms=None, connect_ms=None,
        tls_ms=None, ttfb_ms=None, error=None if up else "http_status", maintenance=False,
        tls_expires_at=None, tls_seen_at=None, stored=1, stored_at=at, checks=1, ups=int(up),
    )  # fmt: skip


def site_config(**changes):
    from sitewatch.config.site import Site

    return Site(name="shop", url="https://shop.example/", schedule=timedelta(minutes=5), **changes)


@pytest.mark.parametrize(
    ("site", "checks", "verdict", "maintenance", "expected"),
    [
        ({}, [], None, False, (status.NO_DATA, None)),
        ({}, [latest_check()], None, False, (status.UP, True)),
        ({}, [latest_check(up=False)], None, False, (status.DOWN, False)),
        # the last check is older than 3 schedules (15 min at least): stale, its verdict kept
        ({}, [latest_check(ago=timedelta(minutes=16))], None, False, (status.STALE, True)),
        ({"degraded_ms": 100}, [latest_check(ms=120.0)], None, False, (status.DEGRADED, True)),
        ({"degraded_ms": 200}, [latest_check(ms=120.0)], None, False, (status.UP, True)),
        ({"degraded_ms": 100}, [latest_check(up=False)], None, False, (status.DOWN, False)),
        # in a window whatever the checks say, and the verdict is still told
        ({}, [latest_check(up=False)], None, True, (status.MAINTENANCE, False)),
        # several locations: the runs' verdict, partial counting as up
        ({"locations": ("east", "west"), "quorum": 2},
         [latest_check("east"), latest_check("west", up=False)],
         (NOW - timedelta(minutes=5), "partial", {}), False, (status.PARTIAL, True)),
        ({"locations": ("east", "west"), "quorum": 1},
         [latest_check("east", up=False)],
         (NOW - timedelta(minutes=5), "down", {}), False, (status.DOWN, False)),
        ({"locations": ("east", "west"), "quorum": 1, "degraded_ms": 100},
         [latest_check("east", ms=500.0), latest_check("west")],
         (NOW - timedelta(minutes=5), "up", {}), False, (status.DEGRADED, True)),
        ({"locations": ("east", "west"), "quorum": 1}, [latest_check("east")], None, False,
         (status.NO_DATA, None)),
    ],
)  # fmt: skip
def test_site_state_for_the_metrics(site, checks, verdict, maintenance, expected):
    assert status.site_state(site_config(**site), checks, verdict, maintenance, NOW) == expected
