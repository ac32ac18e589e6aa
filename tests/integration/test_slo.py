"""SLO figures and burn-rate alerts (issue 17): sitewatch.storage.slo against a real PostgreSQL,
and the arithmetic of sitewatch.alerting.slo on the figures it reads. Expected numbers are worked
out by hand from the rows each test inserts."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest

from sitewatch.alerting import slo as objectives
from sitewatch.alerting.slo import Burn, Notice
from sitewatch.config.objectives import DEFAULT_BURN_RULES, BurnRule, Slo
from sitewatch.storage import slo as store
from sitewatch.storage.checks import store_batch
from sitewatch.storage.retention import refresh_hourly
from sitewatch.storage.slo import SloAlert, Tally
from tests.builders import observation

pytestmark = pytest.mark.services

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
PAGE, WARN = DEFAULT_BURN_RULES


@pytest.fixture
def conn(migrated_conn):
    return migrated_conn


# --- availability, latency, the daily series ------------------------------------------------------


def test_availability_sums_the_hourly_rollup_without_maintenance(conn):
    start = NOW - 2 * HOUR  # three hours up to NOW's, that one included
    store_batch(
        conn,
        [
            observation("alpha", start + 5 * MINUTE),
            # retried: not counted
            observation("alpha", start + 65 * MINUTE, up=False, final=False),
            observation("alpha", start + 65 * MINUTE, up=False, attempt=2),
            observation("alpha", start + 125 * MINUTE, location="east"),
            observation("alpha", start + 125 * MINUTE, location="west", up=False),
            observation("alpha", start + 130 * MINUTE, up=False, maintenance=True),  # left out
            observation("alpha", start - 5 * MINUTE, up=False),  # before the 3 h window
            observation("alpha", NOW + 65 * MINUTE),  # the hour after NOW's
            observation("beta", NOW - 30 * MINUTE - DAY),
            observation("beta", NOW - 90 * MINUTE - DAY, up=False),
        ],
    )
    refresh_hourly(conn, NOW + HOUR)  # percentiles: the counts stay the trigger's
    got = store.availability(conn, {"alpha": 3 * HOUR, "beta": 2 * DAY, "gamma": DAY}, NOW)
    assert got == {"alpha": Tally(4, 2), "beta": Tally(2, 1), "gamma": Tally(0, 0)}
    assert objectives.attainment(got["alpha"]) == 50.0
    assert objectives.attainment(got["gamma"]) is None


DIRECT_TALLY = """
    SELECT count(*), count(*) FILTER (WHERE up) FROM site_checks
    WHERE site = %s AND final AND NOT maintenance AND scheduled_at >= %s AND scheduled_at < %s
"""


@pytest.mark.parametrize("hours", [1, 5, 23, 24, 25, 47, 48, 71, 100])
def test_availability_from_days_and_hours_equals_the_raw_rows(conn, hours):
    # checks from two locations every 20 minutes over 5 days, some down, retried or in
    # maintenance; windows short of a day, of whole days and of days and hours either side
    start = NOW - 4 * DAY - 20 * HOUR + 10 * MINUTE  # to 4 hours after NOW: left out
    batch = []
    for k in range(5 * 72):
        at = start + k * 20 * MINUTE
        for location in ("east", "west"):
            down = (k + len(location)) % 7 == 0
            if down and k % 2:
                batch.append(observation("alpha", at, up=False, final=False, location=location))
            maintenance = k % 11 == 0
            batch.append(observation("alpha", at, up=not down, attempt=2 if down else 1,
                                     location=location, maintenance=maintenance))  # fmt: skip
    store_batch(conn, batch)
    until = NOW.replace(minute=0) + HOUR
    got = store.availability(conn, {"alpha": hours * HOUR}, NOW)["alpha"]
    with conn.cursor() as cur:
        cur.execute(DIRECT_TALLY, ("alpha", until - hours * HOUR, until))
        assert got == Tally(*cur.fetchone())
    assert got.checks > 0


def test_p95_latency_counts_final_up_checks_outside_maintenance(conn):
    # 21 up checks of 0, 100, ..., 2000 ms: percentile_cont(0.95) is the 20th, 1900 ms
    batch = [
        observation("alpha", NOW - (i + 1) * MINUTE, response_time_ms=100.0 * i) for i in range(21)
    ]
    batch += [
        observation("alpha", NOW - 30 * MINUTE, up=False, response_time_ms=9000.0),  # down
        # in maintenance
        observation("alpha", NOW - 31 * MINUTE, maintenance=True, response_time_ms=9000.0),
        observation("alpha", NOW - 2 * HOUR, response_time_ms=9000.0),  # outside the window
        observation("beta", NOW - MINUTE, up=False),
    ]
    store_batch(conn, batch)
    got = store.latency_p95(conn, {"alpha": HOUR, "beta": HOUR}, NOW)
    assert got == {"alpha": pytest.approx(1900.0), "beta": None}
    assert objectives.latency_met(got["alpha"], Slo(99.9, p95_ms=2000)) is True
    assert objectives.latency_met(got["alpha"], Slo(99.9, p95_ms=1500)) is False
    assert objectives.latency_met(got["alpha"], Slo(99.9)) is None


def test_budget_series_from_the_daily_rollup(conn):
    slo = Slo(99.0, window=timedelta(days=3))
    first, last = objectives.window_days(slo, NOW)
    assert (first, last) == (date(2026, 6, 7), date(2026, 6, 10))
    day1 = datetime(2026, 6, 7, 13, tzinfo=UTC)
    batch = [observation("alpha", day1 + i * MINUTE) for i in range(100)]  # 100 up on June 7
    # 1 down
    batch += [observation("alpha", day1 + DAY + i * MINUTE, up=i >= 1) for i in range(100)]
    in_maintenance = day1 + DAY + 200 * MINUTE
    batch += [
        observation("alpha", in_maintenance + i * MINUTE, up=False, maintenance=True)
        for i in range(5)
    ]
    # 1 down June 10
    batch += [observation("alpha", NOW - i * MINUTE, up=i >= 1) for i in range(200)]
    store_batch(conn, batch)
    days = store.daily_tallies(conn, "alpha", first, last)
    assert days == [
        (date(2026, 6, 7), Tally(100, 100)),
        (date(2026, 6, 8), Tally(100, 99)),
        (date(2026, 6, 9), Tally(0, 0)),
        (date(2026, 6, 10), Tally(200, 199)),
    ]
    # 400 checks allow 4 down (1%): 1 down spends a quarter, 2 half
    assert objectives.budget_series(days, slo) == [
        (date(2026, 6, 7), 1.0),
        (date(2026, 6, 8), pytest.approx(0.75)),
        (date(2026, 6, 9), pytest.approx(0.75)),
        (date(2026, 6, 10), pytest.approx(0.5)),
    ]
    assert objectives.budget_series([(first, Tally(0, 0))], slo) == []  # nothing to draw


def test_budget_left_as_a_fraction_and_in_minutes():
    slo = Slo(99.9, window=timedelta(days=30))  # 43.2 minutes of downtime in 30 days
    assert objectives.budget_left(Tally(2000, 1999), slo) == pytest.approx(0.5)
    assert objectives.minutes_left(Tally(2000, 1999), slo) == pytest.approx(21.6)
    assert objectives.minutes_left(Tally(1000, 1000), slo) == pytest.approx(43.2)
    assert objectives.budget_left(Tally(1000, 997), slo) == pytest.approx(-2.0)  # overspent
    assert objectives.minutes_left(Tally(1000, 997), slo) == pytest.approx(-86.4)
    assert objectives.budget_left(Tally(0, 0), slo) is None
    assert objectives.minutes_left(Tally(0, 0), slo) is None


def test_burn_rate_is_the_bad_fraction_over_the_budget():
    slo = Slo(99.0)
    assert objectives.burn_rate(3, 100, slo) == pytest.approx(3.0)
    assert objectives.burn_rate(0, 100, slo) == 0.0
    assert objectives.burn_rate(0, 0, slo) is None
    assert objectives.burn_rate(1, 10, Slo(100.0)) == math.inf
    assert objectives.burn_rate(0, 10, Slo(100.0)) == 0.0


def test_a_rule_fires_only_when_both_windows_burn_fast_enough():
    assert objectives.firing(PAGE, 14.4, 14.4)
    assert not objectives.firing(PAGE, 14.3, 200.0)  # the long window: not significant
    assert not objectives.firing(PAGE, 50.0, 10.0)  # the short one: it stopped burning
    assert not objectives.firing(PAGE, None, 200.0)  # no data never fires
    assert not objectives.firing(PAGE, 50.0, None)


# --- burn rates on a synthetic history ------------------------------------------------------------


def minutes_back(site: str, down: set[int], *, maintenance: set[int] = frozenset()) -> list:
    """One check a minute at NOW - k minutes, k = 0..359 (6 h), down where ``k in down``."""
    return [
        observation(site, NOW - k * MINUTE, up=k not in down, maintenance=k in maintenance)
        for k in range(360)
    ]


def test_a_burst_of_failures_fires_both_rules_and_a_healthy_history_none(conn):
    # burning: down at 2, 10 and 40 minutes ago. Windows (NOW - L, NOW]: 5 min holds k 0-4 (5
    # checks), 30 min k 0-29 (30), 1 h 60, 6 h 360. Budget 0.1%:
    #   5 min 1/5 -> 200x, 1 h 3/60 -> 50x (page fires); 30 min 2/30 -> 66.7x, 6 h 3/360 -> 8.3x
    #   (warn fires).
    # calm: 5 minutes down in maintenance (left out), one failure 300 minutes ago: 6 h 1/355 ->
    #   2.8x, every other window 0: nothing fires.
    store_batch(conn, minutes_back("burning", {2, 10, 40}))
    store_batch(conn, minutes_back("calm", {0, 1, 2, 3, 4, 300}, maintenance={0, 1, 2, 3, 4}))
    slo = Slo(99.9)
    lengths = objectives.burn_lengths(slo)
    assert lengths == {5 * MINUTE, 30 * MINUTE, HOUR, 6 * HOUR}
    counts = store.burn_counts(conn, dict.fromkeys(["burning", "calm", "silent"], lengths), NOW)
    assert counts["burning"] == {
        5 * MINUTE: Tally(5, 4),
        30 * MINUTE: Tally(30, 28),
        HOUR: Tally(60, 57),
        6 * HOUR: Tally(360, 357),
    }
    assert counts["calm"][5 * MINUTE] == Tally(0, 0)
    assert counts["calm"][6 * HOUR] == Tally(355, 354)
    assert set(counts["silent"].values()) == {Tally(0, 0)}

    page, warn = objectives.evaluate(slo, counts["burning"])
    assert (page.rule, page.long, page.short) == (PAGE, pytest.approx(50), pytest.approx(200))
    assert (warn.rule, warn.long, warn.short) == (
        WARN,
        pytest.approx(1000 * 3 / 360),
        pytest.approx(1000 * 2 / 30),
    )
    assert page.firing and warn.firing
    calm = objectives.evaluate(slo, counts["calm"])
    assert [b.firing for b in calm] == [False, False]
    assert calm[1].long == pytest.approx(1000 / 355) and calm[1].short == 0.0
    silent = objectives.evaluate(slo, counts["silent"])
    assert [(b.long, b.short, b.firing) for b in silent] == [(None, None, False)] * 2


def test_custom_rules_are_counted_over_their_own_windows(conn):
    store_batch(conn, minutes_back("burning", {2, 10, 40}))
    rule = BurnRule("warn", 2.0, long=2 * HOUR, short=15 * MINUTE)
    slo = Slo(99.0, burn=(rule,))
    counts = store.burn_counts(conn, {"burning": objectives.burn_lengths(slo)}, NOW)
    (burn,) = objectives.evaluate(slo, counts["burning"])
    # 2 h: 3/120 = 2.5% -> 2.5x; 15 min: 2/15 = 13.3% -> 13.3x
    assert (burn.long, burn.short) == (pytest.approx(2.5), pytest.approx(40 / 3))
    assert burn.firing


# --- the alert's life in site_slo_alerts ---------------------------------------------------------


def test_an_slo_alert_notifies_once_stays_silent_and_resolves(conn):
    burning, calm = Burn(PAGE, 50.0, 200.0), Burn(PAGE, 1.0, 0.0)
    assert objectives.step(None, "alpha", calm, NOW) == (None, None)

    row, notice = objectives.step(None, "alpha", burning, NOW)
    assert notice is Notice.FIRING
    assert row == SloAlert("alpha", "page", NOW, 50.0, 200.0, last_notified_at=NOW)
    assert store.save_slo_alert(conn, row) is True
    assert store.save_slo_alert(conn, row) is False  # a second evaluator: already firing

    later = NOW + 5 * MINUTE
    stored = store.slo_alerts(conn, ["alpha", "beta"])
    assert stored == {("alpha", "page"): row}
    row, notice = objectives.step(stored["alpha", "page"], "alpha", Burn(PAGE, 60.0, 90.0), later)
    assert notice is None
    store.save_slo_alert(conn, row)
    assert store.slo_alerts(conn, ["alpha"])["alpha", "page"] == SloAlert(
        "alpha", "page", NOW, 60.0, 90.0, NOW
    )

    stored = store.slo_alerts(conn, ["alpha"])["alpha", "page"]
    assert objectives.step(stored, "alpha", calm, later + MINUTE) == (None, Notice.RESOLVED)
    assert store.delete_slo_alert(conn, "alpha", "page") == stored
    assert store.delete_slo_alert(conn, "alpha", "page") is None  # ended once
    assert store.slo_alerts(conn, ["alpha"]) == {}


def test_a_released_slo_alert_is_sent_again_and_an_unsent_one_resolves_silently(conn):
    row, _ = objectives.step(None, "alpha", Burn(WARN, 7.0, 8.0), NOW)
    store.save_slo_alert(conn, row)
    assert store.release_slo_alert(conn, "alpha", "warn", NOW) is True  # the send failed
    assert store.release_slo_alert(conn, "alpha", "warn", NOW) is False
    stored = store.slo_alerts(conn, ["alpha"])["alpha", "warn"]
    assert stored.last_notified_at is None

    later = NOW + MINUTE
    again, notice = objectives.step(stored, "alpha", Burn(WARN, 7.0, 9.0), later)
    assert notice is Notice.FIRING
    assert (again.firing_since, again.last_notified_at, again.burn_short) == (NOW, later, 9.0)
    # had it never gone out, its end would say nothing either
    assert objectives.step(stored, "alpha", Burn(WARN, 1.0, 1.0), later) == (None, None)


def test_the_severity_column_refuses_what_no_rule_names(conn):
    from sitewatch.errors import StorageError

    with pytest.raises(StorageError, match="site_slo_alerts"):
        store.save_slo_alert(conn, SloAlert("alpha", "sms", NOW, 1.0, 1.0, None))


def test_naive_times_are_refused_before_the_database():
    with pytest.raises(ValueError, match="timezone-aware"):
        store.burn_counts(None, {"alpha": [HOUR]}, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="at least one"):
        store.burn_counts(None, {"alpha": []}, NOW)
