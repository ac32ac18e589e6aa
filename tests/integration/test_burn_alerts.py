"""Burn-rate alerts from the drain's ``on_caught_up`` hook (``sitewatch.judge.burn``) on the
real PostgreSQL, as the alerting role, with a local webhook: a synthetic history that burns the
budget 20 times too fast pages once and says when it is over; a healthy one never fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.airflow.notifiers import send
from sitewatch.config.loader import load_text
from sitewatch.judge.burn import BurnAlerts
from sitewatch.judge.session import Session
from sitewatch.observation import Observation
from sitewatch.storage.checks import observation_rows, store_rows
from tests.builders import observation

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
SITES = """\
sites:
  - name: burning
    url: https://burning.example.com/
    slo: {target: 99, window: 30d}
    notify:
      - webhook: ops_webhook
  - name: healthy
    url: https://healthy.example.com/
    slo: {target: 99, window: 30d}
    notify:
      - webhook: ops_webhook
"""


def history(site: str, down_every: int) -> list[Observation]:
    """One final check a minute over the last 6 hours, each half a minute off the minute (no
    check on a window's edge); every ``down_every``-th one down."""
    checks = []
    for minute in range(1, 361):
        at = NOW - timedelta(minutes=minute - 0.5)
        checks.append(observation(site, at, up=down_every == 0 or minute % down_every != 0))
    return checks


@pytest.fixture
def burn(migrated_schema, alerting_connect, pg_conn, tmp_path):
    # burning: 1 in 5 down (20% bad, 20x a 1% budget) over every window; healthy: none
    store_rows(pg_conn, observation_rows(history("burning", 5) + history("healthy", 0)), [])
    sites = load_text(SITES).sites
    session = Session(alerting_connect, send)
    yield BurnAlerts(session, every=0), sites
    session.close()


def test_a_fast_burn_pages_and_warns_once_then_says_it_is_over(burn, pg_conn, receiver):
    hook, sites = burn
    sent = hook.evaluate(sites, NOW)
    assert sorted((a.site, a.kind.value, a.severity) for a in sent) == [
        ("burning", "SLO BURN", "page"),
        ("burning", "SLO BURN", "warn"),
    ]
    page = next(p for p in receiver.payloads if "page" in p["error"])
    assert (
        page["title"]
        if "title" in page
        else page["text"].startswith("[sitewatch] SLO BURN: burning (page burn rate: 20.0x over 1h")
    )
    rows = pg_conn.execute(
        "SELECT site, severity, round(burn_long::numeric, 1) FROM site_slo_alerts ORDER BY 2"
    ).fetchall()
    assert [(s, v, float(b)) for s, v, b in rows] == [
        ("burning", "page", 20.0),
        ("burning", "warn", 20.0),
    ]

    assert hook.evaluate(sites, NOW + timedelta(seconds=10)) == []  # still firing: silent
    assert len(receiver.payloads) == 2

    # Seven hours on, no check in any window: the rules stop firing, each says so once.
    later = hook.evaluate(sites, NOW + timedelta(hours=7))
    assert sorted((a.kind.value, a.severity) for a in later) == [
        ("SLO BURN OVER", "page"),
        ("SLO BURN OVER", "warn"),
    ]
    assert pg_conn.execute("SELECT count(*) FROM site_slo_alerts").fetchone()[0] == 0
    assert hook.evaluate(sites, NOW + timedelta(hours=8)) == []
    assert len(receiver.payloads) == 4


def test_the_hook_evaluates_at_most_every_interval(burn, receiver, monkeypatch):
    _, sites = burn
    calls = []
    hook = BurnAlerts(Session(lambda: None, send, lambda: load_text(SITES)), every=3600)
    monkeypatch.setattr(hook, "evaluate", lambda s, now: calls.append(len(s)))
    hook()
    hook()
    assert calls == [2]
