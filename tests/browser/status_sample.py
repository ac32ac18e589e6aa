"""A public status page with every part a page can show, from rows stored in a real PostgreSQL:
tests/browser/test_status_page_a11y.py runs axe-core on it, scripts/status_screenshots.py takes
the README's screenshots of it.

As of ``NOW``, five components: Website up (with its response-time chart and a nightly window
announced), Checkout down (an open incident, taken over by an operator whose update is Markdown),
Search up but slow (degraded), Public API a group with one of its two sites down (partial), and
Documentation in a maintenance window, its first 30 days without checks. Each site is checked
every 10 minutes over the 90 days of the bars, with a few failures (a day under 99% shows red,
one at 99% or more yellow) and a day in maintenance; two resolved incidents make the history.
"""

from __future__ import annotations

import math
import random
import textwrap
from datetime import UTC, datetime, timedelta

import psycopg

from sitewatch.config.loader import load_text
from sitewatch.status.files import page_files
from sitewatch.status.model import DAYS, PageView
from sitewatch.status.read import read_page
from sitewatch.storage.checks import store_batch
from sitewatch.storage.incidents import open_automatic, write_update
from sitewatch.storage.partitions import MAX_NEW_PARTITIONS
from sitewatch.storage.retention import refresh_hourly
from tests import schemas
from tests.builders import observation

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PAGE = "example"
EVERY = timedelta(minutes=10)
WINDOW = (NOW - timedelta(hours=1), NOW + timedelta(hours=2))
"""Documentation's maintenance window, in force at ``NOW``."""
SITES = textwrap.dedent(f"""\
    defaults:
      schedule: 10m
    sites:
      - name: web
        url: https://www.example.com/
        maintenance:
          - {{cron: "0 22 * * *", duration: 30m, reason: nightly deploy}}
      - name: checkout
        url: https://shop.example.com/health
      - name: search
        url: https://search.example.com/health
        degraded_ms: 400
      - name: api-eu
        url: https://eu.api.example.com/ping
      - name: api-us
        url: https://us.api.example.com/ping
      - name: docs
        url: https://docs.example.com/
        maintenance:
          - {{start: "{WINDOW[0].isoformat()}", end: "{WINDOW[1].isoformat()}"}}
    status_pages:
      - id: {PAGE}
        title: Example Inc. status
        components:
          - site: web
            name: Website
            description: Home page, blog and careers
            response_time: true
          - {{site: checkout, name: Checkout, description: Cart and payments}}
          - {{site: search, name: Search}}
          - group: [api-eu, api-us]
            name: Public API
            description: REST API in Europe and the US
            response_time: true
          - {{site: docs, name: Documentation}}
""")  # fmt: skip

# site -> the spans [from, to) in which its checks (at 5 past, 15 past, ...) were down
_DOWN = {
    "web": [(NOW - timedelta(days=40, hours=9), NOW - timedelta(days=40, hours=8))],
    "checkout": [
        (NOW - timedelta(minutes=25), NOW),
        (NOW - timedelta(days=20, hours=3), NOW - timedelta(days=20, hours=2, minutes=40)),
        (NOW - timedelta(days=55, hours=1), NOW - timedelta(days=55, minutes=50)),
    ],
    "api-us": [
        (NOW - timedelta(minutes=45), NOW),
        (NOW - timedelta(days=7, hours=2), NOW - timedelta(days=7, hours=1)),
    ],
    "search": [(NOW - timedelta(days=12, hours=4), NOW - timedelta(days=12, hours=3, minutes=50))],
}
# site -> the spans in which its checks fell in maintenance (and were down)
_MAINTENANCE = {
    "docs": [
        (WINDOW[0], NOW),
        (NOW - timedelta(days=15, hours=12), NOW - timedelta(days=14, hours=12)),
    ]
}
_FIRST_CHECK = {"docs": NOW - timedelta(days=60)}
_TYPICAL_MS = {
    "web": 120.0, "checkout": 210.0, "search": 180.0, "api-eu": 70.0, "api-us": 95.0, "docs": 60.0,
}  # fmt: skip

OPERATOR_UPDATE = """\
Card payments fail at our payment provider. We are switching to the backup provider.

- Orders placed before 11:35 UTC are **not** affected.
- Carts are kept: retry the payment once this says *resolved*.

Details on the provider's page: [payments status](https://status.payments.example.com/).
"""


def sample_files(dsn: str) -> dict[str, bytes]:
    """The sample page's files (``status.files.page_files``), read from rows stored in a
    throwaway schema of the results database at ``dsn`` (a superuser's, as the tests' and
    scripts' ``SITEWATCH_PG_DSN``), which is dropped afterwards."""
    schema = schemas.create(dsn)
    try:
        schemas.clone(dsn, schema)
        with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
            return page_files(sample_view(conn))
    finally:
        schemas.drop(dsn, schema)


def sample_view(conn) -> PageView:
    """Store the sample's checks and incidents on ``conn`` (a migrated, empty schema) and read
    its page as the status page DAG does."""
    sites = load_text(SITES, "sample.yaml")
    assert sites.issues == [], sites.issues
    checks = [
        check for site in _TYPICAL_MS for check in _checks(site, NOW - timedelta(days=DAYS - 1))
    ]
    checks.sort(key=lambda c: c.scheduled_at)
    # each batch may make a partition for at most MAX_NEW_PARTITIONS days
    span = timedelta(days=MAX_NEW_PARTITIONS - 1)
    start = checks[0].scheduled_at
    while start < NOW:
        store_batch(conn, [c for c in checks if start <= c.scheduled_at < start + span])
        start += span
    refresh_hourly(conn, NOW)
    _incidents(conn)
    (page,) = sites.status_pages
    return read_page(conn, page, sites.by_name, NOW)


def _checks(site: str, first: datetime) -> list:
    at = max(first, _FIRST_CHECK.get(site, first)).replace(hour=0, minute=5)
    noise = random.Random(site)  # the same sample every time
    found = []
    while at < NOW:
        down = any(a <= at < b for a, b in _DOWN.get(site, ()))
        maintenance = any(a <= at < b for a, b in _MAINTENANCE.get(site, ()))
        # a daily rhythm, some noise, and the search site slow of late (over its degraded_ms)
        rhythm = 0.3 * math.sin(at.hour / 24 * 2 * math.pi) + noise.uniform(-0.2, 0.3)
        ms = _TYPICAL_MS[site] * (1 + rhythm)
        ms += 700.0 if site == "search" and at > NOW - timedelta(hours=2) else 0.0
        found.append(
            observation(site, at, up=not down and not maintenance, maintenance=maintenance,
                        response_time_ms=None if down else round(ms, 1))
        )  # fmt: skip
        at += EVERY
    return found


def _incidents(conn) -> None:
    def write(incident, state, at, body, **changes):
        return write_update(
            conn, PAGE, incident=incident, state=state, body=body, author="operator", at=at,
            **changes,
        )  # fmt: skip

    auto = open_automatic(
        conn, PAGE, "Checkout", "checkout", "Checkout is down", "Checkout is down.",
        NOW - timedelta(minutes=25),
    )  # fmt: skip
    write(auto, "identified", NOW - timedelta(minutes=10), OPERATOR_UPDATE)
    api = write(
        None, "investigating", NOW - timedelta(days=7, hours=2),
        "Requests to the API in the US time out. We are looking into it.",
        title="Public API timeouts in the US", components=["Public API"],
    )  # fmt: skip
    write(api, "monitoring", NOW - timedelta(days=7, hours=1, minutes=5),
          "A failed database node was replaced; requests succeed again.")  # fmt: skip
    write(api, "resolved", NOW - timedelta(days=7), "Resolved: no timeout for an hour.")
    web = write(
        None, "identified", NOW - timedelta(days=40, hours=9),
        "The home page answers `502 Bad Gateway` after a certificate renewal.",
        title="Website unreachable", components=["Website"],
    )  # fmt: skip
    write(web, "resolved", NOW - timedelta(days=40, hours=8), "The old certificate is back.")
