"""Fewer false alarms on the real PostgreSQL and a local webhook (issue 17): a parent down holds
its children's DOWN, an ad-hoc mute or a window of the sites file holds alerts, a flapping site
sends one FLAPPING, and every message decided, sent or held, is in ``site_alert_log``.

Verdicts go through ``sitewatch.judge.alerts.judge``, the path of every verdict (the task
callbacks' and the drain's), with Airflow's notifiers, on a connection as the alerting role.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from sitewatch.airflow.notifiers import send
from sitewatch.alerting import store as alert_store
from sitewatch.alerting.rules import Event, Kind, Verdict
from sitewatch.config.loader import load_text
from sitewatch.config.maintenance import maintenance_at
from sitewatch.judge import alerts
from sitewatch.storage.checks import observation_rows, store_rows
from sitewatch.storage.mutes import add_mutes, mutes_in_force
from tests.builders import observation

judge = partial(alerts.judge, send=send)  # with Airflow's notifiers, as the callbacks call it
HOUR = timedelta(hours=1)
T0 = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
NOTIFY = "    notify:\n      - webhook: ops_webhook\n"
SITES = (
    "sites:\n"
    "  - name: db\n    url: https://db.example.com/\n"
    + NOTIFY
    + "".join(
        f"  - name: app-{i}\n    url: https://app-{i}.example.com/\n    depends_on: [db]\n" + NOTIFY
        for i in range(3)
    )
    + "  - name: flappy\n    url: https://flappy.example.com/\n"
    + NOTIFY
    + "    flapping: {changes: 4, window: 1h, stable: 30m}\n"
    + "  - name: nightly\n    url: https://nightly.example.com/\n"
    + NOTIFY
    + "    maintenance:\n      - {cron: '0 2 * * *', duration: 1h, reason: backups}\n"
)


@pytest.fixture
def alerting(migrated_schema, alerting_connect):
    """A connection as the alerting role (only what its PRIVILEGES allow) and the sites."""
    return alerting_connect(), {site.name: site for site in load_text(SITES).sites}


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def event(verdict: Verdict, minute: int) -> Event:
    return Event(verdict, at(minute), f"run-{minute}", at(minute), "status", "status 500")


def store_check(conn, site: str, minute: int, up: bool) -> None:
    """What the drain stores for the site's final check of the run at ``minute``."""
    store_rows(conn, observation_rows([observation(site, at(minute), up=up)]), [])


def log_rows(conn, site: str) -> list[tuple]:
    return conn.execute(
        "SELECT kind, held FROM site_alert_log WHERE site = %s ORDER BY at", (site,)
    ).fetchall()


def test_a_parent_down_with_three_children_sends_one_alert(alerting, pg_conn, receiver):
    conn, sites = alerting
    store_check(pg_conn, "db", 0, up=False)
    assert judge(conn, sites["db"], event(Verdict.DOWN, 0)) is Kind.DOWN
    for i in range(3):
        assert judge(conn, sites[f"app-{i}"], event(Verdict.DOWN, 1)) is None
    assert [p["site"] for p in receiver.payloads] == ["db"]
    held = alert_store.load(conn, "app-0")
    assert (held.state, held.held, held.last_notified_at) == ("down", "parent db down", None)
    assert log_rows(pg_conn, "app-1") == [("DOWN", "parent db down")]

    # The parent recovers; app-0 is still down at its next run and alerts, app-1 recovered
    # meanwhile and says nothing.
    store_check(pg_conn, "db", 5, up=True)
    assert judge(conn, sites["db"], Event(Verdict.UP, at(5), "run-5", at(5))) is Kind.RECOVERED
    assert judge(conn, sites["app-0"], event(Verdict.DOWN, 6)) is Kind.DOWN
    assert judge(conn, sites["app-1"], Event(Verdict.UP, at(6), "run-6", at(6))) is None
    assert [(p["site"], p["state"]) for p in receiver.payloads] == [
        ("db", "DOWN"),
        ("db", "RECOVERED"),
        ("app-0", "DOWN"),
    ]
    assert log_rows(pg_conn, "app-0") == [("DOWN", "parent db down"), ("DOWN", None)]


def test_an_ad_hoc_mute_holds_the_alert_until_it_ends(alerting, pg_conn, receiver):
    conn, sites = alerting
    pg_conn.execute(
        "INSERT INTO site_mutes (site, starts_at, ends_at, reason) VALUES (%s, %s, %s, %s)",
        ("db", at(0), at(30), "failover drill"),
    )
    pg_conn.commit()
    assert judge(conn, sites["db"], event(Verdict.DOWN, 10)) is None
    reason = alert_store.load(conn, "db").held
    assert reason.startswith("maintenance until ") and reason.endswith(": failover drill")
    assert judge(conn, sites["db"], event(Verdict.DOWN, 29)) is None
    assert judge(conn, sites["db"], event(Verdict.DOWN, 30)) is Kind.DOWN  # the end is exclusive
    assert [p["state"] for p in receiver.payloads] == ["DOWN"]


def test_a_window_of_the_sites_file_holds_the_alert(alerting, pg_conn, receiver):
    conn, sites = alerting
    two = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # the window: 02:00-03:00 UTC every day
    inside = Event(Verdict.DOWN, two + timedelta(minutes=10), "r1", two + timedelta(minutes=10))
    assert judge(conn, sites["nightly"], inside) is None
    assert "backups" in alert_store.load(conn, "nightly").held
    recovered = Event(Verdict.UP, two + timedelta(minutes=20), "r2", two + timedelta(minutes=20))
    assert judge(conn, sites["nightly"], recovered) is None  # recovered within: nothing to say
    assert receiver.payloads == []


def test_a_hold_lasts_until_the_window_or_mute_that_ends_last_as_the_badge_says(
    alerting, pg_conn, receiver
):
    """A mute longer than the sites file's window: the hold names the mute's end, the instant the
    Sites page's badge names (both ``maintenance_at``), not the window's."""
    conn, sites = alerting
    two = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # nightly's window: 02:00-03:00 UTC
    add_mutes(pg_conn, ["nightly"], two - timedelta(minutes=30), two + 2 * HOUR, "disk swap", None)
    at = two + timedelta(minutes=10)
    assert judge(conn, sites["nightly"], Event(Verdict.DOWN, at, "r1", at, "status")) is None
    assert (
        alert_store.load(conn, "nightly").held
        == "maintenance until 2026-03-01 04:00 UTC: disk swap"
    )
    badge = maintenance_at(
        sites["nightly"].maintenance, mutes_in_force(pg_conn, ["nightly"], at)["nightly"], at
    )
    assert badge.until == two + 2 * HOUR and badge.reason == "disk swap"
    later = two + timedelta(minutes=90)  # the window is over, the mute is not: still held
    assert judge(conn, sites["nightly"], Event(Verdict.DOWN, later, "r2", later, "status")) is None
    assert receiver.payloads == []


def test_a_flapping_site_sends_one_flapping_alert(alerting, pg_conn, receiver):
    conn, sites = alerting
    for minute in range(12):
        verdict = Verdict.DOWN if minute % 2 == 0 else Verdict.UP
        judge(conn, sites["flappy"], Event(verdict, at(minute), f"run-{minute}", at(minute)))
    states = [p["state"] for p in receiver.payloads]
    # four changes are allowed, the fifth (minute 5) is flapping
    assert states == ["DOWN", "RECOVERED", "DOWN", "RECOVERED", "DOWN", "FLAPPING"]
    stored = alert_store.load(conn, "flappy")
    assert stored.flapping_since == at(5) and len(stored.changes) == 11
