"""Status page incidents (``sitewatch.judge.incidents``, ``sitewatch.storage.incidents``): opened
by a DOWN the drain's judge sends, grown and shrunk with a group's outage, resolved by its
RECOVERED, taken over by an operator's update, and sent to the notify targets that ask for status
updates (``sitewatch.judge.status_updates``) once per update; real Kafka, real PostgreSQL with
alerting's own role, a local webhook receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.airflow.incident_dag import incident_dag
from sitewatch.airflow.notifiers import send
from sitewatch.config.loader import cached_sites
from sitewatch.judge.session import Judge, Session
from sitewatch.judge.status_updates import announce
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
# api's target asks for status updates; docs has no targets at all
UPDATES = """\
sites:
  - name: api
    url: https://api.example/
    notify:
      - webhook: ops_webhook
        status_updates: true
  - name: docs
    url: https://docs.example/
status_pages:
  - id: status
    title: Example
    url: https://status.example.com/
    components:
      - site: api
        name: Public API
      - site: docs
        name: Docs
"""
LONG_AGO = T0 - timedelta(days=1)
# the mute DAG's: a sites file, the alerting connection as deployed, dag.test() and its logs
db, dag_env, run = mutes.db, mutes.dag_env, mutes.run


@pytest.fixture
def judges(alerting_connect, tmp_path):
    """Factory: the drain's judge hooks over a sites file of ``text``, on alerting's own role."""
    made = []

    def make(text: str) -> Judge:
        path = tmp_path / f"sites{len(made)}.yaml"
        path.write_text(text)
        made.append(Judge(Session(alerting_connect, send, lambda: cached_sites(path))))
        return made[-1]

    yield make
    for hooks in made:
        hooks.close()


@pytest.fixture
def judge(judges):
    return judges(SITES)


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
    # one site of two down is a partial outage, as the page shows it; both down, a major one
    assert [(u.state, u.author, u.body) for u in incident.updates] == [
        ("investigating", "sitewatch", "Shop is partly down. We are investigating."),
        ("investigating", "sitewatch", "Shop is down now."),
    ]

    # the site whose DOWN opened it shrinks it when it recovers, the other resolves it
    produce(topic, [check("shop", 10, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    (incident,) = incidents(conn)
    assert (incident.title, incident.state) == ("Shop is partly down", "investigating")
    produce(topic, [check("shop-us", 10, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    (incident,) = incidents(conn)
    assert incident.state == "resolved" and incident.resolved_at is not None
    bodies = [u.body for u in incident.updates]
    assert bodies[2:] == ["Shop works again in part.", "It works again."]

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
    assert [(i.title, i.state) for i in incidents(conn)] == [
        ("Shop is partly down", "investigating")
    ]
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


# --- status updates to the notify targets that ask for them ---------------------------------------


def status_updates(receiver) -> list[dict]:
    return [p["incident"] for p in receiver.payloads if p["state"] == "STATUS UPDATE"]


def updates_file(tmp_path):
    path = tmp_path / "updates.yaml"
    path.write_text(UPDATES)
    return cached_sites(path)


def test_each_incident_update_goes_once_to_the_targets_that_ask(
    new_topic, migrated_conn, judges, receiver, alerting_connect, tmp_path
):
    topic, conn, judge = new_topic(), migrated_conn, judges(UPDATES)
    produce(topic, [check("api", 0), check("docs", 0)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    # the alert first, then the update; docs' incident opens too, but nobody asked for it
    assert [p["state"] for p in receiver.payloads] == ["DOWN", "STATUS UPDATE"]
    docs, api = sorted(incidents(conn), key=lambda i: i.title)
    assert (api.title, docs.title) == ("Public API is down", "Docs is down")
    assert status_updates(receiver) == [
        {
            "page": "Example",
            "title": "Public API is down",
            "state": "investigating",
            "text": "Public API is down. We are investigating.",
            "author": "sitewatch",
            "link": f"https://status.example.com/#i-{api.id}",
        }
    ]
    assert receiver.payloads[1]["concern"] == f"status/status/{api.id}"

    # announced again (a retry, a second judge): it was recorded before it was sent
    loaded = updates_file(tmp_path)
    with alerting_connect() as again:
        assert announce(again, [api.id], loaded.status_pages, loaded.by_name, send) == 0
    assert len(receiver.payloads) == 2

    # an operator's update, as the sitewatch_incident DAG writes and announces it
    with alerting_connect() as operator:
        write_update(operator, "status", incident=api.id, state="identified",
                     body="A **bad** deploy.", author="alice", at=datetime.now(UTC))  # fmt: skip
        assert announce(operator, [api.id], loaded.status_pages, loaded.by_name, send) == 1
        assert announce(operator, [api.id], loaded.status_pages, loaded.by_name, send) == 0
        # an operator's incident on Docs alone reaches nobody
        other = write_update(operator, "status", incident=None, state="investigating",
                             body="Slow docs.", author="bob", at=datetime.now(UTC),
                             title="Slow docs", components=["Docs"])  # fmt: skip
        assert announce(operator, [other], loaded.status_pages, loaded.by_name, send) == 0
    assert [(u["state"], u["author"], u["text"]) for u in status_updates(receiver)][1:] == [
        ("identified", "alice", "A **bad** deploy.")
    ]

    # taken over: its site's recovery pages, but the incident and its readers hear nothing
    produce(topic, [check("api", 5, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert [p["state"] for p in receiver.payloads][-1] == "RECOVERED"
    assert len(status_updates(receiver)) == 2
    logged = conn.execute(
        "SELECT site, run_id FROM site_alert_log WHERE kind = 'STATUS UPDATE' ORDER BY at"
    ).fetchall()
    conn.commit()
    assert logged == [("status/status", f"{api.id}-1"), ("status/status", f"{api.id}-2")]


def test_a_failing_notifier_keeps_no_incident_from_the_page(
    new_topic, migrated_conn, judges, receiver
):
    topic, conn, judge = new_topic(), migrated_conn, judges(UPDATES)
    receiver.set_status(500)
    produce(topic, [check("api", 0)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    assert len(receiver.requests) == 2  # the DOWN and the update were tried, and refused
    (incident,) = incidents(conn)
    assert (incident.title, incident.state) == ("Public API is down", "investigating")
    receiver.set_status(200)
    produce(topic, [check("api", 5, up=True)])
    run_drain(topic, conn, on_stored=judge.on_stored)
    (incident,) = incidents(conn)
    assert incident.state == "resolved"
    assert [p["state"] for p in receiver.payloads[2:]] == ["RECOVERED", "STATUS UPDATE"]
    assert status_updates(receiver)[-1]["state"] == "resolved"


def test_the_incident_dag_sends_the_operators_update_to_the_targets_that_ask(
    dag_env, run, migrated_conn, receiver, tmp_path, monkeypatch
):
    path = tmp_path / "updates.yaml"
    path.write_text(UPDATES)
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))
    conf = {"page": "status", "title": "Slow API", "state": "identified", "text": "We know.",
            "components": ["Public API"]}  # fmt: skip
    state, logs = run(incident_dag(), conf)
    assert state == "success", logs
    (incident,) = incidents(migrated_conn)
    assert status_updates(receiver) == [
        {
            "page": "Example",
            "title": "Slow API",
            "state": "identified",
            "text": "We know.",
            "author": "dag_test",
            "link": f"https://status.example.com/#i-{incident.id}",
        }
    ]
