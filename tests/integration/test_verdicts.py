"""Verdicts across locations, judged by the drain (``sitewatch.judge.runs``): real Kafka,
real PostgreSQL as alerting's own role, a local webhook receiver, and a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sitewatch.airflow.notifiers import send
from sitewatch.alerting import store as alert_store
from sitewatch.config.loader import cached_sites
from sitewatch.judge.runs import Verdicts, location_key
from sitewatch.judge.session import Session
from sitewatch.names import ALERTING_ROLE
from sitewatch.observation import Observation
from tests.builders import observation
from tests.integration.test_drain import produce, run_drain
from tests.integration.test_recoveries import replay

T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
GRACE = timedelta(seconds=30)
# timeout 2s, retries 1, retry_delay 5s: a run's deadline is 2 * 2 + 5 + 30 = 39 s
SITES = """\
defaults:
  locations: [east, west]
  timeout: 2s
  retries: 1
  retry_delay: 5s
  notify:
    - webhook: ops_webhook
sites:
  - name: both
    url: https://both.example.com/
    quorum: 2
  - name: either
    url: https://either.example.com/
    quorum: 1
  - name: alone
    url: https://alone.example.com/
    locations: [local]
"""
DEADLINE = timedelta(seconds=39)


def check(site, location, minute, up=True, attempt=1, **fields) -> Observation:
    """Attempt ``attempt`` of ``site`` from ``location`` in the run ``minute`` minutes after T0."""
    at = T0 + timedelta(minutes=minute)
    return observation(
        site, at, location=location, attempt=attempt, checked_at=at + timedelta(seconds=attempt),
        up=up, error=None if up else "status",
        error_detail=None if up else "status 503 not in 200-399", **fields,
    )  # fmt: skip


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def setup(new_topic, migrated_conn):
    return new_topic(), migrated_conn


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def verdicts(pg_dsn, pg_schema, tmp_path, clock):
    path = tmp_path / "sites.yaml"
    path.write_text(SITES)

    def connect():
        options = f"-c role={ALERTING_ROLE} -c search_path={pg_schema}"
        return psycopg.connect(pg_dsn, options=options)

    session = Session(connect, send, lambda: cached_sites(path))
    yield Verdicts(session, grace=GRACE, clock=clock)
    session.close()


def drained(topic, conn, verdicts, observations):
    produce(topic, observations)
    return run_drain(topic, conn, on_stored=verdicts, on_caught_up=verdicts.sweep)


def stored_verdicts(conn) -> list[tuple]:
    rows = conn.execute(
        "SELECT site, scheduled_at, verdict, quorum, locations FROM site_verdicts"
        " ORDER BY site, scheduled_at"
    ).fetchall()
    conn.commit()
    return [
        (site, at - T0, verdict, quorum, locations) for site, at, verdict, quorum, locations in rows
    ]


def test_one_location_down_is_partial_under_quorum_two_and_down_under_quorum_one(
    setup, verdicts, receiver, clock
):
    topic, conn = setup
    clock.now = T0 + timedelta(seconds=20)  # before the deadline: every location reported
    drained(topic, conn, verdicts, [
        check("both", "east", 0), check("both", "west", 0, up=False),
        check("either", "east", 0), check("either", "west", 0, up=False),
    ])  # fmt: skip
    assert stored_verdicts(conn) == [
        ("both", timedelta(0), "partial", 2, {"east": "up", "west": "down"}),
        ("either", timedelta(0), "down", 1, {"east": "up", "west": "down"}),
    ]
    (down,) = receiver.payloads  # partial sends nothing: the site is not down by its quorum
    assert (down["site"], down["state"]) == ("either", "DOWN")
    assert down["locations"] == {"east": "up", "west": "down"}
    assert down["error"] == "down from 1 of 2 locations (quorum 1): west; up: east"
    assert down["detail"] == "west: status: status 503 not in 200-399"
    assert "locations: east up, west down" in down["text"]

    # the same messages again (a redelivered batch): decided already, nothing sent twice
    again = replay(topic, conn, on_stored=verdicts)
    assert again.duplicates == 4
    assert len(stored_verdicts(conn)) == 2
    assert len(receiver.payloads) == 1

    # the next run: both locations up again → RECOVERED for the one that was down
    drained(topic, conn, verdicts, [
        check("either", "east", 1), check("either", "west", 1),
    ])  # fmt: skip
    assert [(p["site"], p["state"]) for p in receiver.payloads] == [
        ("either", "DOWN"),
        ("either", "RECOVERED"),
    ]


def test_a_location_still_retrying_holds_the_verdict_until_its_final_attempt(
    setup, verdicts, receiver, clock
):
    topic, conn = setup
    clock.now = T0 + timedelta(seconds=10)
    drained(topic, conn, verdicts, [
        check("either", "east", 0), check("either", "west", 0, up=False, final=False),
    ])  # fmt: skip
    assert stored_verdicts(conn) == []
    drained(topic, conn, verdicts, [check("either", "west", 0, up=False, attempt=2)])
    assert [v[2] for v in stored_verdicts(conn)] == ["down"]


def test_a_silent_location_is_missing_after_the_deadline_and_alerts_once(
    setup, verdicts, receiver, clock
):
    topic, conn = setup
    clock.now = T0 + timedelta(seconds=10)
    drained(topic, conn, verdicts, [check("both", "east", 0)])
    assert stored_verdicts(conn) == []  # west may still report

    clock.now = T0 + DEADLINE + timedelta(seconds=1)
    verdicts._last_sweep = float("-inf")  # the sweep runs at most every 15 s of real time
    verdicts.sweep()
    assert stored_verdicts(conn) == [
        ("both", timedelta(0), "up", 2, {"east": "up", "west": "missing"}),
    ]
    (problem,) = receiver.payloads
    assert (problem["site"], problem["state"]) == ("both", "PIPELINE PROBLEM")
    assert problem["error"] == "no checks from location west"
    assert "workers of sitewatch-west" in problem["detail"]
    assert alert_store.load(conn, "both") is None or alert_store.load(conn, "both").state == "up"
    assert alert_store.load(conn, location_key("both", "west")).pipeline_since is not None

    # west stays silent for the next run: no second message while the problem is open
    clock.now = T0 + timedelta(minutes=1, seconds=10)
    drained(topic, conn, verdicts, [check("both", "east", 1)])
    clock.now = T0 + timedelta(minutes=1) + DEADLINE + timedelta(seconds=1)
    verdicts._last_sweep = float("-inf")
    verdicts.sweep()
    assert [v[4]["west"] for v in stored_verdicts(conn)] == ["missing", "missing"]
    assert len(receiver.payloads) == 1

    # west is back: the problem closes without a message; its late check of run 0 is stored
    drained(topic, conn, verdicts, [
        check("both", "west", 0), check("both", "east", 2), check("both", "west", 2),
    ])  # fmt: skip
    assert alert_store.load(conn, location_key("both", "west")).pipeline_since is None
    assert len(receiver.payloads) == 1
    assert stored_verdicts(conn)[0][4] == {"east": "up", "west": "missing"}  # decided stays
    count = conn.execute("SELECT count(*) FROM site_checks WHERE site = 'both'").fetchone()[0]
    assert count == 5


def test_single_location_sites_and_unknown_sites_get_no_verdict_row(
    setup, verdicts, receiver, clock
):
    topic, conn = setup
    clock.now = T0 + timedelta(hours=1)
    drained(topic, conn, verdicts, [check("alone", "local", 0), check("gone", "east", 0)])
    verdicts._last_sweep = float("-inf")
    verdicts.sweep()
    assert stored_verdicts(conn) == []
    assert receiver.requests == []
