"""The UP verdict judged by the drain (``on_stored`` and ``sitewatch.judge.recoveries``): real
Kafka, real PostgreSQL with alerting's own role, and a local webhook receiver."""

from __future__ import annotations

import json
import tempfile
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from psycopg import pq

from sitewatch.airflow.hooks import GroupConsumerHook, results_connection
from sitewatch.airflow.notifiers import send
from sitewatch.alerting import store as alert_store
from sitewatch.alerting.rules import Event, Verdict
from sitewatch.config.loader import cached_sites
from sitewatch.judge.recoveries import Recoveries, latest_ups
from sitewatch.judge.session import Session
from sitewatch.names import POSTGRES_ALERTING_CONN_ID
from sitewatch.observation import Observation
from sitewatch.pipeline.drain import drain
from sitewatch.storage.checks import observation_rows
from tests.builders import observation
from tests.integration.test_drain import committed, execute, long_url, produce, run_drain

T0 = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
SITES = """\
sites:
  - name: shop
    url: https://shop.example.com/
    notify:
      - webhook: ops_webhook
  - name: quiet
    url: https://quiet.example.com/
"""


def check(site: str, minute: int, up: bool = True) -> Observation:
    """The final check of ``site`` in the run ``minute`` minutes after T0 (no response time)."""
    return observation(site, T0 + timedelta(minutes=minute), up=up, response_time_ms=None)


def judged(conn, site: str, verdict: Verdict, minute: int) -> None:
    """What the site's task callbacks recorded for its run ``minute`` minutes after T0."""
    at = T0 + timedelta(minutes=minute)
    alert_store.apply(conn, site, Event(verdict, at, f"run-{minute}", at, "status", "status 500"))


def stored_offsets(topic: str) -> int:
    """How many messages of ``topic`` the drain group committed, all partitions together."""
    return sum(offset for offset in committed(topic).values() if offset > 0)


def replay(topic: str, conn, **kwargs):
    """Drain ``topic`` again from its start (a new group): every batch is redelivered."""
    consumer = GroupConsumerHook([topic], f"replay-{uuid.uuid4().hex}").get_consumer()
    try:
        return drain(consumer, conn, poll_timeout=3.0, **kwargs)
    finally:
        consumer.close()


def state(conn, site: str) -> tuple | None:
    found = alert_store.load(conn, site)
    return None if found is None else (found.state, found.pipeline_since is not None)


@pytest.fixture
def setup(new_topic, migrated_conn):
    return new_topic(), migrated_conn


@pytest.fixture
def recoveries(alerting_connect, tmp_path):
    """Recoveries on connections as the alerting role (only what its PRIVILEGES allow), with a
    sites file where ``shop`` has a webhook target and ``quiet`` none."""
    path = tmp_path / "sites.yaml"
    path.write_text(SITES)
    session = Session(alerting_connect, send, lambda: cached_sites(path))
    hook = Recoveries(session)
    hook.opened = alerting_connect.opened  # for the tests' eyes only
    yield hook
    session.close()
    assert all(conn.closed for conn in alerting_connect.opened)


def test_a_drained_up_check_of_a_down_site_sends_recovered_once(setup, recoveries, receiver):
    topic, conn = setup
    judged(conn, "shop", Verdict.DOWN, 0)
    produce(topic, [check("shop", 5), check("shop", 10)])
    assert run_drain(topic, conn, on_stored=recoveries).inserted == 2

    (recovered,) = receiver.payloads
    assert (recovered["site"], recovered["state"]) == ("shop", "RECOVERED")
    assert recovered["since"] == T0.isoformat(timespec="seconds")  # down since
    assert recovered["run_url"] is None  # an observation does not name its run ...
    lines = recovered["text"].splitlines()  # ... and the message reads well without it
    assert lines[0] == "[sitewatch] RECOVERED: shop"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "site",
        "state",
        "url",
        "down since",
        "recovered at",
        "downtime",
    ]
    assert state(conn, "shop") == ("up", False)
    assert alert_store.load(conn, "shop").last_run_after == T0 + timedelta(minutes=10)

    # The same batch again (a crash before the offset commit): judged again, nothing sent.
    told = []

    def hook(rows):
        told.append(len(rows))
        recoveries(rows)

    again = replay(topic, conn, on_stored=hook)
    assert (again.inserted, again.duplicates, sum(told)) == (0, 2, 2)
    assert len(receiver.payloads) == 1
    assert len(recoveries.opened) == 1  # one connection for the whole drain, reused


def test_up_checks_of_up_sites_cost_one_query_and_change_no_row(setup, recoveries, receiver):
    _, conn = setup
    conn.execute(
        "INSERT INTO site_alert_state (site, state, since, updated_at)"
        " SELECT 'site-' || i, 'up', %s, '2026-01-01T00:00Z' FROM generate_series(1, 1000) i",
        (T0,),
    )
    conn.commit()
    rows = observation_rows([check(f"site-{i}", 5) for i in range(1, 1001)])
    before = conn.execute("SELECT * FROM site_alert_state ORDER BY site").fetchall()
    conn.commit()

    recoveries(rows[:1])  # opens the connection, which then is traced
    with traced(recoveries.opened[0]) as statements:
        recoveries(rows)
    assert len(statements) == 3, statements
    assert (statements[0], statements[2]) == ("BEGIN", "COMMIT")
    assert statements[1].startswith("SELECT site FROM site_alert_state WHERE site = ANY($1)")
    assert conn.execute("SELECT * FROM site_alert_state ORDER BY site").fetchall() == before
    assert receiver.requests == []


def test_an_open_pipeline_problem_is_closed_silently(setup, recoveries, receiver):
    topic, conn = setup
    judged(conn, "shop", Verdict.UP, 0)
    judged(conn, "shop", Verdict.PIPELINE, 5)
    assert state(conn, "shop") == ("up", True)
    produce(topic, [check("shop", 10)])
    run_drain(topic, conn, on_stored=recoveries)
    assert state(conn, "shop") == ("up", False)
    assert receiver.requests == []


def test_an_up_check_older_than_the_last_verdict_changes_nothing(setup, recoveries, receiver):
    topic, conn = setup
    judged(conn, "shop", Verdict.DOWN, 10)
    produce(topic, [check("shop", 5)])  # drained late, after the next run was judged down
    run_drain(topic, conn, on_stored=recoveries)
    assert state(conn, "shop") == ("down", False)
    assert receiver.requests == []


def test_sites_missing_from_the_sites_file_or_without_targets_are_skipped(
    setup, recoveries, receiver, caplog
):
    topic, conn = setup
    for site in ("shop", "quiet", "gone"):
        judged(conn, site, Verdict.DOWN, 0)
    produce(topic, [check("gone", 5), check("quiet", 5), check("shop", 5)])
    run_drain(topic, conn, on_stored=recoveries)
    assert [p["site"] for p in receiver.payloads] == ["shop"]
    assert [state(conn, s) for s in ("shop", "quiet", "gone")] == [
        ("up", False),
        ("down", False),
        ("down", False),
    ]
    assert "skipped site=gone: not in the sites file" in caplog.text
    assert "skipped site=quiet: no notify targets, no page" in caplog.text


def test_a_failing_hook_never_stops_the_drain(setup, monkeypatch, caplog):
    """Alerting's PostgreSQL unreachable: every batch is stored and committed all the same."""
    topic, conn = setup
    dead = {"conn_type": "postgres", "host": "127.0.0.1", "port": 9, "login": "x", "schema": "x"}
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES_ALERTING", json.dumps(dead))
    produce(topic, [check("shop", minute) for minute in range(30)])
    # the drain DAG's: results_connection on the alerting connection
    session = Session(partial(results_connection, POSTGRES_ALERTING_CONN_ID), send)
    hook = Recoveries(session)
    result = run_drain(topic, conn, batch_size=10, on_stored=hook)
    session.close()
    assert (result.inserted, stored_offsets(topic)) == (30, 30)
    failures = [r for r in caplog.records if "on_stored failed" in r.getMessage()]
    assert len(failures) == result.batches >= 3
    assert "PostgreSQL unreachable on sitewatch_postgres_alerting" in caplog.text


def test_the_hook_gets_the_stored_rows_after_the_offset_commit(setup):
    """Duplicates of stored rows are told again; rows PostgreSQL refused are not told."""
    topic, conn = setup
    execute(conn, "CREATE INDEX site_checks_url ON site_checks (url)")
    poison = check("poison", 1)
    poison.url = long_url(0)  # refused by that index
    produce(topic, [check("a", 1), poison, check("b", 2, up=False)])
    produce(topic, [check("a", 1)])  # a redelivery within the batch
    told = []

    def hook(rows):
        told.append(([row[0] for row in rows], stored_offsets(topic)))

    result = run_drain(topic, conn, batch_size=100, on_stored=hook)
    assert (result.batches, result.inserted, result.duplicates, result.rejected) == (1, 2, 1, 1)
    (sites, offsets_then) = told[0]
    assert sorted(sites) == ["a", "a", "b"]
    assert offsets_then == 4


def test_latest_ups_keeps_the_latest_up_check_of_each_site():
    rows = observation_rows(
        [check("a", 5), check("a", 9), check("a", 7), check("b", 3, up=False), check("c", 1)]
    )
    assert latest_ups(rows) == {
        "a": (T0 + timedelta(minutes=9), None),
        "c": (T0 + timedelta(minutes=1), None),
    }


@contextmanager
def traced(conn):
    """Every statement ``conn`` sends while inside, as libpq's protocol trace shows it: a simple
    query's text, or an extended query's text (with ``$n`` parameters) when it is executed."""
    statements: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield statements
        finally:
            conn.pgconn.untrace()
        trace.seek(0)
        parsed = None
        for line in trace:
            direction, _, kind, *rest = line.rstrip("\n").split("\t")
            if direction != "F":
                continue
            text = rest[0].strip() if rest else ""
            if kind == "Query":
                statements.append(json.loads(text))
            elif kind == "Parse":
                parsed = json.loads(text[text.index('" "') + 2 : text.rindex('"') + 1])
            elif kind == "Execute":
                statements.append(parsed)
