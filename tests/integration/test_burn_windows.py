"""Burn-rate counts read each site over its own windows (issue 24, item 3), on the real
PostgreSQL: the counts equal a brute-force count of the rows stored, and one site with a 90-day
rule does not make the drain's evaluation or the Sites page read the other sites' older rows
(the partition that holds only theirs is not read at all, by PostgreSQL's own statistics)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.airflow.notifiers import send
from sitewatch.alerting.slo import burn_lengths
from sitewatch.config.loader import load_text
from sitewatch.config.objectives import BurnRule, Slo
from sitewatch.judge.burn import BurnAlerts
from sitewatch.judge.session import Session
from sitewatch.storage import slo as store
from sitewatch.storage.checks import store_batch
from sitewatch.storage.slo import Tally
from sitewatch.web import slo_figures
from tests.builders import observation

pytestmark = pytest.mark.services

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
# the rule: it validates, and its windows are 90 and 89 days
SLOW = Slo(99.9, window=90 * DAY, burn=(BurnRule("warn", 1.01, 90 * DAY, 89 * DAY),))
SITES = """\
sites:
  - name: slow
    url: https://slow.example.com/
    slo: {target: 99.9, window: 90d, burn: [{severity: warn, factor: 1.01, long: 90d, short: 89d}]}
  - name: alpha
    url: https://alpha.example.com/
    slo: {target: 99, window: 30d}
  - name: beta
    url: https://beta.example.com/
    slo: {target: 99, window: 30d}
"""


@pytest.fixture
def conn(pg_conn, migrated_schema):
    days = [(NOW - d * DAY).date() for d in range(-1, 100)]
    pg_conn.execute("SELECT site_checks_create_partitions(%s::date[])", (days,))
    pg_conn.commit()
    return pg_conn


def save(conn, observations) -> None:
    for start in range(0, len(observations), 5000):
        store_batch(conn, observations[start : start + 5000])


def brute_force(observations, site: str, length: timedelta, now: datetime) -> Tally:
    counted = [
        o
        for o in observations
        if o.site == site and o.final and not o.maintenance and now - length < o.scheduled_at <= now
    ]
    return Tally(len(counted), sum(o.up for o in counted))


def test_each_sites_counts_equal_a_brute_force_count_of_its_rows(conn):
    rules = {
        "default": Slo(99.9),
        "custom": Slo(99.0, burn=(BurnRule("warn", 2.0, 2 * HOUR, 15 * MINUTE),)),
        "week": Slo(99.5, burn=(BurnRule("page", 3.0, 7 * DAY, DAY),)),
        "slow": SLOW,
        "silent": Slo(99.9),
    }
    lengths = {site: burn_lengths(slo) for site, slo in rules.items()}
    edges = {NOW - length for own in lengths.values() for length in own}
    rng = random.Random(24)
    observations = []
    for site in ("default", "custom", "week", "slow", "unasked"):
        times = {NOW - k * 6 * HOUR - rng.randrange(360) * MINUTE for k in range(95 * 4)}
        times |= {NOW - k * MINUTE for k in range(8 * 60)}  # every minute of the last 8 hours
        times |= edges | {NOW, NOW + MINUTE}  # on every window's edge, and after now
        for at in sorted(times):
            retried, kept_out = rng.random() < 0.2, rng.random() < 0.05
            if retried:  # the first attempt down and not final, the second one final
                observations.append(observation(site, at, up=False, final=False))
            up, attempt = rng.random() < (0.5 if retried else 0.98), 2 if retried else 1
            observations.append(observation(site, at, up=up, attempt=attempt, maintenance=kept_out))
            if site == "custom":  # two locations, each its own final check
                observations.append(observation(site, at, up=rng.random() < 0.9, location="east"))
    save(conn, observations)

    counts = store.burn_counts(conn, lengths, NOW)

    assert counts == {
        site: {length: brute_force(observations, site, length, NOW) for length in own}
        for site, own in lengths.items()
    }
    assert counts["slow"][90 * DAY].checks > 300  # the long window really reached back


# --- what one site's 90-day rule makes the others read --------------------------------------------


def tuples_read(conn, schema: str, partition: str) -> int:
    """Rows of ``partition`` read so far by sequential and index scans (pg_stat_user_tables)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    found = conn.execute(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables"
        " WHERE schemaname = %s AND relname = %s",
        (schema, partition),
    ).fetchone()[0]
    conn.commit()
    return found


def flush_stats(conn) -> None:
    """Make the backend of ``conn`` publish its table statistics when this statement ends."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()


@pytest.fixture
def old_rows(conn, pg_schema):
    """alpha and beta: one check a minute for a whole day 30 days ago (a partition slow has no
    row in) and for the last 6 hours; slow: a day 60 days ago and the last 6 hours. Returns the
    30-day-old partition's name."""
    old = (NOW - 30 * DAY).replace(hour=0, minute=0)
    rows = []
    for site in ("alpha", "beta"):
        rows += [observation(site, old + k * MINUTE, up=k % 10 != 0) for k in range(1440)]
    rows += [observation("slow", NOW - 60 * DAY + k * MINUTE) for k in range(1440)]
    for site in ("alpha", "beta", "slow"):
        rows += [observation(site, NOW - k * MINUTE, up=k % 20 != 0) for k in range(360)]
    save(conn, rows)
    conn.autocommit = True
    conn.execute("ANALYZE site_checks")  # as autovacuum would: the planner knows their sizes
    conn.autocommit = False
    return f"site_checks_p{old:%Y%m%d}"


def test_a_90_day_rule_does_not_make_the_drain_read_the_other_sites_old_rows(
    old_rows, pg_connect, pg_schema, conn
):
    opened = []

    def connect():
        opened.append(pg_connect())
        return opened[-1]

    session = Session(connect, send)
    hook = BurnAlerts(session)
    before = tuples_read(conn, pg_schema, old_rows)
    hook.evaluate(load_text(SITES).sites, NOW)
    flush_stats(opened[0])

    assert tuples_read(conn, pg_schema, old_rows) == before  # not one of them read
    counts = store.burn_counts(conn, {"slow": [90 * DAY], "alpha": [6 * HOUR]}, NOW)
    assert counts == {"slow": {90 * DAY: Tally(1800, 1782)}, "alpha": {6 * HOUR: Tally(360, 342)}}
    session.close()


def test_a_90_day_rule_does_not_make_the_sites_page_read_the_other_sites_old_rows(
    old_rows, pg_connect, pg_schema, conn
):
    sites = load_text(SITES).sites
    page = pg_connect()
    before = tuples_read(conn, pg_schema, old_rows)
    budgets = slo_figures.budgets(page, {site.name: site for site in sites}, NOW)
    flush_stats(page)

    assert tuples_read(conn, pg_schema, old_rows) == before
    # slow's burn cell reads its own 90 days (1,800 checks, 18 down: 1% of a 0.1% budget)
    assert budgets["slow"].burn == pytest.approx(10.0)
    assert budgets["alpha"].burn == pytest.approx(5.0)  # last hour: 3 of 60 down, budget 1%
