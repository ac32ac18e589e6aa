"""The statement timeout on the reads that run over and over (issue 24, item 3), on the real
PostgreSQL: a read past ``SITEWATCH_QUERY_TIMEOUT_SECONDS`` is a StorageError that names the
limit and leaves the connection usable; it stops neither the drain nor the next burn-rate
evaluation, and the Sites page says the results are unavailable. A lock held by another
connection makes the read wait: the limit counts the wait."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from sitewatch.airflow.hooks import BOUNDED_CONN_IDS, results_connection
from sitewatch.airflow.notifiers import send
from sitewatch.config.loader import load_text
from sitewatch.errors import StorageError
from sitewatch.judge.burn import BurnAlerts
from sitewatch.judge.session import Session
from sitewatch.storage.checks import store_batch
from sitewatch.storage.timeouts import TIMEOUT_VAR, bounded
from tests.builders import observation
from tests.integration.test_burn_windows import SITES
from tests.integration.test_drain import produce, run_drain
from tests.integration.test_sites_page import app_on

pytestmark = pytest.mark.services

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
MINUTE = timedelta(minutes=1)
LIMIT_SAYS = rf"canceling statement due to statement timeout \(limit 0.2 s, {TIMEOUT_VAR}\)"


@pytest.fixture
def conn(pg_conn, migrated_schema):
    """A migrated schema; slow, alpha and beta checked every minute for 6 hours, every 20th
    check down (slow's 90-day rule burns at 50x)."""
    rows = [
        observation(site, NOW - k * MINUTE, up=k % 20 != 0)
        for site in ("slow", "alpha", "beta")
        for k in range(360)
    ]
    store_batch(pg_conn, rows)
    return pg_conn


@pytest.fixture
def locked(pg_connect):
    """Lock a table exclusively from another connection; returns what releases it (the test's
    end does too)."""
    holder = pg_connect()

    def lock(table: str):
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        return holder.rollback

    yield lock
    holder.rollback()


def test_a_statement_past_the_limit_is_a_storage_error_and_the_connection_goes_on(conn):
    sleeping = bounded(conn, "could not sleep", 0.2)
    with pytest.raises(StorageError, match=LIMIT_SAYS) as raised, sleeping as cur:
        cur.execute("SELECT pg_sleep(5)")
    assert raised.value.args[0].startswith("PostgreSQL could not sleep: ")
    assert isinstance(raised.value.__cause__, psycopg.errors.QueryCanceled)
    # the limit was the transaction's own: the connection keeps the server's
    assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    conn.commit()
    with bounded(conn, "could not count", 0.2) as cur:
        cur.execute("SELECT count(*) FROM site_checks")
        assert cur.fetchone() == (1080,)
    with pytest.raises(ValueError, match="positive"), bounded(conn, "never runs", 0):
        pass


def test_a_burn_evaluation_past_the_limit_fails_alone_and_the_next_one_runs(
    conn, alerting_connect, locked
):
    sites = load_text(SITES).sites
    session = Session(alerting_connect, send)
    hook = BurnAlerts(session, timeout=0.2)
    release = locked("site_checks")
    counting = "could not count the checks for burn rates: "
    with pytest.raises(StorageError, match=counting + LIMIT_SAYS):
        hook.evaluate(sites, NOW)
    release()

    # on the same connection, its transaction rolled back
    (alert,) = hook.evaluate(sites, NOW)
    assert (alert.site, alert.kind.value, alert.severity) == ("slow", "SLO BURN", "warn")
    session.close()


def test_a_burn_evaluation_past_the_limit_does_not_stop_the_drain(
    conn, alerting_connect, locked, new_topic, monkeypatch, caplog
):
    topic = new_topic()
    sites = load_text(SITES)
    monkeypatch.setenv(TIMEOUT_VAR, "0.2")  # the hook reads the setting at each evaluation
    session = Session(alerting_connect, send, sites=lambda: sites)
    hook = BurnAlerts(session, every=0)
    locked("site_slo_alerts")  # the burn check's second read; the drain never touches it
    produce(topic, [observation("alpha", NOW - k * MINUTE - MINUTE / 2) for k in range(50)])

    with caplog.at_level(logging.ERROR):
        result = run_drain(topic, conn, on_caught_up=hook)

    assert result.inserted == 50
    assert conn.execute("SELECT count(*) FROM site_checks").fetchone() == (1130,)
    conn.commit()
    failures = [r.exc_info[1] for r in caplog.records if "on_caught_up failed" in r.getMessage()]
    assert failures, "the burn check never ran"
    assert all(isinstance(e, StorageError) for e in failures)
    assert "could not read the SLO alerts: canceling statement due to statement timeout" in str(
        failures[0]
    )
    session.close()


def test_the_sites_page_past_the_limit_says_the_results_are_unavailable(
    conn, pg_connect, locked, monkeypatch
):
    configured = {site.name: site for site in load_text(SITES).sites}
    client = TestClient(app_on(pg_connect, sites=lambda: configured))
    assert client.get("/").status_code == 200
    monkeypatch.setenv(TIMEOUT_VAR, "0.2")
    locked("site_slo_alerts")  # read by the SLO figures only

    page = client.get("/")

    assert page.status_code == 503
    assert "could not read the SLO alerts" in page.text and "statement timeout" in page.text


@pytest.mark.parametrize("conn_id", sorted(BOUNDED_CONN_IDS))
def test_every_statement_on_alerting_and_the_sites_page_is_bounded(conn_id, monkeypatch):
    """Alerting's and the Sites page's connections (here falling back to the owner's, as in a
    deployment with one connection) bound every statement, not only the burn-rate reads; the
    owner's own connection keeps the server's limit."""
    monkeypatch.setenv(TIMEOUT_VAR, "0.2")
    bounded_conn, owner = results_connection(conn_id), results_connection()
    try:
        assert bounded_conn.execute("SHOW statement_timeout").fetchone() == ("200ms",)
        with pytest.raises(psycopg.errors.QueryCanceled):
            bounded_conn.execute("SELECT pg_sleep(1)")
        bounded_conn.rollback()
        assert owner.execute("SHOW statement_timeout").fetchone() == ("0",)
        # a transaction with a limit of its own (the report's) still has it
        with bounded(bounded_conn, "sleep", 2.0) as cur:
            cur.execute("SELECT pg_sleep(0.5)")
    finally:
        bounded_conn.close()
        owner.close()
