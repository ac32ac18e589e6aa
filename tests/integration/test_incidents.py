"""Status page incidents (``sitewatch.judge.incidents``, ``sitewatch.storage.incidents``): opened
by a DOWN the drain's judge sends, resolved by its RECOVERED, taken over by an operator's update;
real Kafka, real PostgreSQL with alerting's own role, a local webhook receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.airflow.incident_dag import incident_dag
from sitewatch.airflow.notifiers import send
from sitewatch.config.loader import cached_sites
from sitewatch.judge.session import Judge, Session
from sitewatch.storage.incidents import page_incidents, write_update
from sitewatch.storage.mutes import add_mutes
from tests.integration import test_mutes as mutes
from tests.integration.test_downs import T0, check
from tests.integration.test_drain import produce, run_drain

SITES = """\
sites:
  - name: shop
    url: https://shop.example/
    notify:
      - webhook: ops_webhook
  - name: shop-us
    url: https://us.shop.example/
    notify:
      - webhook: ops_webhook
  - name: api
    url: https://api.example/
    notify:
      - webhook: ops_webhook
  - name: blog
    url: https://blog.example/
status_pages:
  - id: status
    title: Example
    components:
      - group: [shop, shop-us]
        name: Shop
      - site: api
        name: Public API
      - site: blog
        name: Blog
"""
LONG_AGO = T0 - timedelta(days=1)
# the mute DAG's: a sites file, the alerting connection as deployed, dag.test() and its logs
db, dag_env, run = mutes.db, mutes.dag_env, mutes.run


@pytest.fixture
def judge(alerting_connect, tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text(SITES)
    hooks = Judge(Session(alerting_connect, send, lambda: cached_sites(path)))
    yield hooks
    hooks.close()


def incidents(conn):
    return page_incidents(conn, "status", LONG_AGO)


def test_a_down_opens_one_incident_per_outage_and_recovered_resolves_it(
    new_topic, migrated_conn, judge, receiver
):
    topic, conn = new_topic(), migrated_conn
    produce(topic, [check("shop", 0), check("shop-us", 0), check("shop", 5)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert [p["state"] for p in receiver.payloads] == ["DOWN", "DOWN"]

    (incident,) = incidents(conn)  # one for the group, however many of its sites are down
    assert (incident.title, incident.state, incident.components) == (
        "Shop is down",
        "investigating",
        ("Shop",),
    )
    assert incident.automatic and incident.resolved_at is None
    assert [(u.state, u.author) for u in incident.updates] == [("investigating", "sitewatch")]

    # the site whose DOWN opened it resolves it when it recovers
    produce(topic, [check("shop", 10, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert [i.state for i in incidents(conn)] == ["investigating"]
    produce(topic, [check("shop-us", 10, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    (incident,) = incidents(conn)
    assert incident.state == "resolved" and incident.resolved_at is not None
    assert [u.state for u in incident.updates] == ["investigating", "resolved"]

    # the next outage is a new incident
    produce(topic, [check("shop", 15)])  # its first DOWN since RECOVERED
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert [i.state for i in incidents(conn)] == ["investigating", "resolved"]


def test_a_site_without_notify_targets_still_opens_and_resolves_its_incident(
    new_topic, migrated_conn, judge, receiver
):
    topic, conn = new_topic(), migrated_conn
    produce(topic, [check("blog", 0), check("blog", 5)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    (incident,) = incidents(conn)
    assert (incident.title, incident.state) == ("Blog is down", "investigating")
    produce(topic, [check("blog", 10, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    (incident,) = incidents(conn)
    assert incident.state == "resolved"
    assert receiver.payloads == []  # nobody to page: nothing sent


def test_a_group_incident_waits_for_the_site_that_did_not_open_it(
    new_topic, migrated_conn, judge, receiver
):
    topic, conn = new_topic(), migrated_conn
    produce(topic, [check("shop", 0), check("shop-us", 1)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    produce(topic, [check("shop-us", 5, up=True)])  # not the opener; shop still down
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert [i.state for i in incidents(conn)] == ["investigating"]
    produce(topic, [check("shop", 10, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    (incident,) = incidents(conn)
    assert incident.state == "resolved"
    assert [(u.state, u.body) for u in incident.updates][-1] == ("resolved", "It works again.")


def test_a_down_held_by_maintenance_opens_nothing(new_topic, migrated_conn, judge, receiver):
    topic, conn = new_topic(), migrated_conn
    add_mutes(conn, ["api"], T0 - timedelta(hours=1), T0 + timedelta(hours=1), "work", "ops")
    produce(topic, [check("api", 0)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert receiver.payloads == []
    assert incidents(conn) == []


def test_an_operators_update_takes_an_automatic_incident_over(
    new_topic, migrated_conn, judge, receiver, alerting_connect
):
    topic, conn = new_topic(), migrated_conn
    produce(topic, [check("api", 0)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    (incident,) = incidents(conn)

    with alerting_connect() as operator:  # as the sitewatch_incident DAG writes
        at = datetime.now(UTC)
        write_update(
            operator,
            "status",
            incident=incident.id,
            state="identified",
            body="A **bad** deploy; rolling back.",
            author="alice",
            at=at,
        )
    produce(topic, [check("api", 5, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert [p["state"] for p in receiver.payloads] == ["DOWN", "RECOVERED"]
    (incident,) = incidents(conn)
    assert (incident.state, incident.taken_over, incident.automatic) == ("identified", True, False)
    assert [(u.state, u.author) for u in incident.updates] == [
        ("investigating", "sitewatch"),
        ("identified", "alice"),
    ]

    with alerting_connect() as operator:
        write_update(
            operator, "status", incident=incident.id, state="resolved", body="Fixed.",
            author="alice", at=datetime.now(UTC),
        )  # fmt: skip
    (incident,) = incidents(conn)
    assert incident.state == "resolved" and incident.resolved_at is not None


def test_an_operator_opens_an_incident_and_a_wrong_page_stores_nothing(
    migrated_conn, alerting_connect
):
    with alerting_connect() as operator:
        at = datetime.now(UTC)
        opened = write_update(
            operator, "status", incident=None, state="investigating", body="Slow checkout.",
            author="bob", at=at, title="Slow checkout", components=["Shop"],
        )  # fmt: skip
        with pytest.raises(ValueError, match="not on page other"):
            write_update(
                operator, "other", incident=opened, state="resolved", body="x", author="bob",
                at=at,
            )  # fmt: skip
        with pytest.raises(ValueError, match="needs a title"):
            write_update(
                operator, "status", incident=None, state="investigating", body="x",
                author="bob", at=at,
            )  # fmt: skip
    (incident,) = incidents(migrated_conn)
    assert (incident.id, incident.title, incident.components) == (
        opened,
        "Slow checkout",
        ("Shop",),
    )
    assert not incident.automatic and incident.state == "investigating"


# --- the sitewatch_incident DAG, through dag.test() ----------------------------------------------


def test_the_incident_dag_records_the_triggering_user_and_takes_over(
    dag_env, run, migrated_conn, tmp_path, monkeypatch
):
    path = tmp_path / "pages.yaml"
    path.write_text(SITES)
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))
    dag = incident_dag()
    conf = {
        "page": "status",
        "title": "Checkout <b>slow</b>",
        "state": "identified",
        "text": "We **know**.\n\n- step one",
        "components": ["Shop"],
    }
    state, logs = run(dag, conf)
    assert state == "success", logs
    (incident,) = incidents(migrated_conn)
    assert (incident.title, incident.state, incident.components) == (
        "Checkout <b>slow</b>",
        "identified",
        ("Shop",),
    )
    assert [(u.author, u.body) for u in incident.updates] == [
        ("dag_test", "We **know**.\n\n- step one")
    ]

    state, logs = run(dag, {"page": "status", "incident": incident.id, "state": "resolved",
                            "text": "Fixed."})  # fmt: skip
    assert state == "success", logs
    (incident,) = incidents(migrated_conn)
    assert incident.state == "resolved" and len(incident.updates) == 2


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"page": "gone"}, "page 'gone' is not in the sites file"),  # since the form was made
        ({"title": None}, "a new incident needs a title"),
        ({"components": ["Docs"]}, "not components of page status: 'Docs'"),
        ({"title": "a\x1bb"}, "title contains U+001B (a control character)"),
        ({"text": "   "}, "an update needs a text"),
    ],
)
def test_the_incident_dag_refuses_a_bad_request_and_stores_nothing(
    dag_env, run, migrated_conn, tmp_path, monkeypatch, conf, message
):
    path = tmp_path / "pages.yaml"
    path.write_text(SITES)
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))
    good = {"page": "status", "title": "t", "state": "investigating", "text": "x"}
    state, logs = run(incident_dag({"status": ["Shop", "Public API"], "gone": []}), good | conf)
    assert state == "failed"
    assert message in logs
    assert incidents(migrated_conn) == []
