"""sitewatch.dashboard.status and render: states, thresholds, figures and the SVG chart."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import escape

import pytest

from sitewatch.dashboard import render, status
from sitewatch.storage.queries import Attempt, SiteSummary

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
    five_min = timedelta(minutes=5)
    assert status.state(SUMMARY, five_min, NOW) == status.UP
    assert status.state(replace(SUMMARY, last_up=False), five_min, NOW) == status.DOWN
    old = replace(SUMMARY, last_scheduled_at=NOW - timedelta(minutes=16))
    assert status.state(old, five_min, NOW) == status.STALE
    assert status.state(old, timedelta(hours=1), NOW) == status.UP
    assert status.state(None, five_min, NOW) == status.NO_DATA


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
        (NOW - timedelta(hours=2), 100.0, True),
        (NOW - timedelta(hours=1), 300.0, True),
        (NOW - timedelta(minutes=10), None, False),
    ]
    html = render.site_page("shop", SUMMARY, status.UP, series, attempts, NOW)
    assert html.count("<svg") == 1 and "<polyline" in html and html.count("<circle") == 1
    assert "refused &lt;x&gt;" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")


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
