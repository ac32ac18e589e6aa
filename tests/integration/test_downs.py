"""The DOWN verdict of a site checked from one location, judged by the drain as it stores the
final down check (``sitewatch.judge.downs`` through ``session.Judge``): real Kafka, real
PostgreSQL with alerting's own role, a local webhook receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.airflow.notifiers import send
from sitewatch.config.loader import cached_sites
from sitewatch.judge.session import Judge, Session
from tests.builders import observation
from tests.integration.test_drain import produce, run_drain
from tests.integration.test_recoveries import replay, state

T0 = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
SITES = """\
sites:
  - name: shop
    url: https://shop.example/
    remind_every: 30m
    notify:
      - webhook: ops_webhook
  - name: quiet
    url: https://quiet.example/
  - name: multi
    url: https://multi.example/
    locations: [east, west]
    notify:
      - webhook: ops_webhook
"""


def check(site: str, minute: int, up: bool = False, final: bool = True, **fields):
    """Attempt 1 of ``site``'s run ``minute`` minutes after T0, naming its run."""
    at = T0 + timedelta(minutes=minute)
    run_id = f"scheduled__{at.isoformat()}"
    return observation(site, at, up=up, final=final, run_id=run_id, **fields)


@pytest.fixture
def judge(alerting_connect, tmp_path):
    """The drain's judges on the alerting role, with a link per attempt that names it."""
    path = tmp_path / "sites.yaml"
    path.write_text(SITES)

    def log_url(site, run_id, attempt):
        return f"http://airflow.test/dags/site_{site.name}/runs/{run_id}/tasks/probe?try={attempt}"

    session = Session(alerting_connect, send, lambda: cached_sites(path), log_url=log_url)
    hooks = Judge(session)
    yield hooks
    hooks.close()


def test_a_stored_final_down_check_sends_down_once_with_its_log(
    new_topic, migrated_conn, judge, receiver
):
    topic, conn = new_topic(), migrated_conn
    produce(topic, [check("shop", 0, final=False), check("quiet", 0), check("shop", 5)])
    assert run_drain(topic, conn, on_stored=judge.on_stored).inserted == 3

    (down,) = receiver.payloads  # not the retried attempt, not the site without targets
    assert (down["site"], down["state"], down["error"]) == ("shop", "DOWN", "status")
    assert down["detail"] == "status 503 not in 200-399"
    run_id = f"scheduled__{(T0 + timedelta(minutes=5)).isoformat()}"
    assert down["run_url"] == f"http://airflow.test/dags/site_shop/runs/{run_id}/tasks/probe?try=1"
    assert state(conn, "shop") == ("down", False)

    # redelivered (a crash before the offsets were committed): judged again, nothing sent
    again = replay(topic, conn, on_stored=judge.on_stored)
    assert (again.inserted, again.duplicates) == (0, 3)
    assert len(receiver.payloads) == 1

    # the next down run says nothing: remind_every (30 minutes) has not passed
    produce(topic, [check("shop", 10)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert len(receiver.payloads) == 1
    assert state(conn, "shop") == ("down", False)


def test_a_down_run_and_a_later_up_run_in_one_batch_send_down_then_recovered(
    new_topic, migrated_conn, judge, receiver
):
    topic, conn = new_topic(), migrated_conn
    produce(topic, [check("shop", 0), check("shop", 5, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert [p["state"] for p in receiver.payloads] == ["DOWN", "RECOVERED"]
    assert state(conn, "shop") == ("up", False)

    # an up run older than the latest verdict changes nothing, nor does a down one
    produce(topic, [check("shop", 1), check("shop", 2, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert len(receiver.payloads) == 2


def test_one_location_of_a_site_checked_from_several_is_not_its_verdict(
    new_topic, migrated_conn, judge, receiver
):
    topic, conn = new_topic(), migrated_conn
    now = datetime.now(UTC).replace(microsecond=0)  # its deadline still ahead
    produce(topic, [observation("multi", now, up=False, location="east", run_id="manual__1")])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert receiver.payloads == []  # the run waits for west (sitewatch.judge.runs)
    assert state(conn, "multi") is None
