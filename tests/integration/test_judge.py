"""The drain's hooks on one alerting session (``sitewatch.judge.session.Judge``): real Kafka,
real PostgreSQL as alerting's own role, and a local webhook receiver."""

from __future__ import annotations

import pytest

from sitewatch.airflow.notifiers import send
from sitewatch.alerting.rules import Verdict
from sitewatch.config.loader import cached_sites
from sitewatch.judge.burn import BurnAlerts
from sitewatch.judge.recoveries import Recoveries
from sitewatch.judge.runs import Verdicts
from sitewatch.judge.session import Judge, Session
from sitewatch.storage.schema import migrate
from tests.integration.test_drain import produce, run_drain
from tests.integration.test_recoveries import judged
from tests.integration.test_verdicts import check

SITES = """\
defaults:
  notify:
    - webhook: ops_webhook
sites:
  - name: shop
    url: https://shop.example.com/
  - name: either
    url: https://either.example.com/
    locations: [east, west]
    quorum: 1
"""


@pytest.fixture
def judge(new_topic, pg_conn, alerting_connect, tmp_path):
    """A Judge whose alerting connections are counted, and a topic to drain."""
    migrate(pg_conn)  # grants the alerting role its privileges in the test's schema
    path = tmp_path / "sites.yaml"
    path.write_text(SITES)
    hooks = Judge(Session(alerting_connect, send, lambda: cached_sites(path)))
    yield hooks, alerting_connect.opened, new_topic()
    hooks.close()
    assert all(conn.closed for conn in alerting_connect.opened)


def drained(judge, conn, observations):
    hooks, _, topic = judge
    produce(topic, observations)
    return run_drain(topic, conn, on_stored=hooks.on_stored, on_caught_up=hooks.on_caught_up)


def test_a_drain_run_judges_ups_and_runs_on_one_connection(judge, pg_conn, receiver):
    _, opened, _ = judge
    judged(pg_conn, "shop", Verdict.DOWN, 0)
    drained(judge, pg_conn, [
        check("shop", "local", 5),
        check("either", "east", 0, up=False), check("either", "west", 0),
    ])  # fmt: skip
    assert sorted((p["site"], p["state"]) for p in receiver.payloads) == [
        ("either", "DOWN"),
        ("shop", "RECOVERED"),
    ]
    assert len(opened) == 1


def test_a_failing_judge_keeps_neither_the_others_nor_the_drain_from_their_work(
    judge, pg_conn, receiver, monkeypatch, caplog
):
    def boom(*args):
        raise RuntimeError("boom")

    burned = []
    monkeypatch.setattr(Recoveries, "__call__", boom)
    monkeypatch.setattr(Verdicts, "sweep", boom)
    monkeypatch.setattr(BurnAlerts, "__call__", lambda self: burned.append(True))
    judged(pg_conn, "shop", Verdict.DOWN, 0)
    result = drained(judge, pg_conn, [
        check("shop", "local", 5),
        check("either", "east", 0, up=False), check("either", "west", 0),
    ])  # fmt: skip
    assert result.inserted == 3
    assert [(p["site"], p["state"]) for p in receiver.payloads] == [("either", "DOWN")]
    assert burned
    assert "judge: recoveries failed in on_stored" in caplog.text
    assert "judge: runs sweep failed in on_caught_up" in caplog.text
    assert "on_stored failed" not in caplog.text  # the drain never saw it


def test_the_sites_index_is_rebuilt_only_when_the_sites_file_is_read_anew(tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text(SITES)
    session = Session(lambda: pytest.fail("no connection needed"), send, lambda: cached_sites(path))
    first = session.sites()
    assert sorted(first) == ["either", "shop"]
    assert session.sites() is first
    path.write_text(SITES.replace("name: shop", "name: store"))
    assert sorted(session.sites()) == ["either", "store"]
