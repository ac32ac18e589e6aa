"""Alerts through Airflow's Apprise, PagerDuty and Opsgenie providers, sent to local receivers that
speak each protocol (tests/receivers.py): the exact requests, the incident keys, trigger then
resolve, and what a refused or unreachable target does."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.airflow.notifiers import send
from sitewatch.airflow.notify_apprise import AppriseAlertNotifier
from sitewatch.airflow.notify_opsgenie import OpsgenieAlertNotifier
from sitewatch.airflow.notify_pagerduty import PagerdutyAlertNotifier
from sitewatch.alerting.rules import Alert, Kind, StatusNote
from sitewatch.config.notify import AppriseTarget, OpsgenieTarget, PagerdutyTarget, WebhookTarget
from sitewatch.errors import NotificationError
from tests.receivers import OpsgenieReceiver, PagerdutyReceiver, WebhookReceiver

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RUN_URL = "http://localhost:8080/dags/site_shop/runs/r1/tasks/probe?try_number=3"
TIMEOUT = 5.0


def alert(kind: Kind, **changes) -> Alert:
    fields = {
        "site": "shop",
        "url": "https://shop.example.com/",
        "kind": kind,
        "at": T0,
        "since": T0,
        "error": "status",
        "detail": "status 500 not in 200-399",
        "run_url": RUN_URL,
    }
    return Alert(**{**fields, **changes})


DOWN = alert(Kind.DOWN)
RECOVERED = alert(Kind.RECOVERED, at=T0 + timedelta(minutes=7), run_url=None)


@pytest.fixture
def pagerduty(monkeypatch):
    """A PagerDuty receiver behind Airflow connection ``pd_ops``; its CA is trusted."""
    server = PagerdutyReceiver()
    monkeypatch.setenv("AIRFLOW_CONN_PD_OPS", server.conn())
    monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
    yield server
    server.close()


@pytest.fixture
def opsgenie(monkeypatch):
    """An Opsgenie receiver behind Airflow connection ``og_ops``."""
    server = OpsgenieReceiver()
    monkeypatch.setenv("AIRFLOW_CONN_OG_OPS", server.conn())
    yield server
    server.close()


@pytest.fixture
def chat(monkeypatch):
    """Two webhook receivers reached through one Apprise connection ``chat`` (json:// URLs),
    tagged ``ops`` and ``web``."""
    ops, web = WebhookReceiver(), WebhookReceiver()
    config = [
        {"path": ops.url.replace("http://", "json://"), "tag": "ops"},
        {"path": web.url.replace("http://", "json://"), "tag": "web"},
    ]
    monkeypatch.setenv("AIRFLOW_CONN_CHAT", apprise_conn(config))
    yield ops, web
    ops.close()
    web.close()


def apprise_conn(config) -> str:
    return json.dumps({"conn_type": "apprise", "extra": {"config": config}})


# --- PagerDuty ------------------------------------------------------------------------------------


def test_pagerduty_down_triggers_still_down_repeats_and_recovered_resolves(pagerduty):
    target = PagerdutyTarget("pd_ops")
    assert send(DOWN, [target], {}) == 1
    assert pagerduty.incidents == {"sitewatch/shop": "critical"}
    assert send(alert(Kind.STILL_DOWN, at=T0 + timedelta(hours=1)), [target], {}) == 1
    assert send(RECOVERED, [target], {}) == 1
    assert pagerduty.incidents == {}
    assert [path for path, _, _ in pagerduty.requests] == ["/v2/enqueue"] * 3
    down, still, recovered = (body for _, _, body in pagerduty.requests)
    assert down == {
        "routing_key": pagerduty.routing_key,
        "event_action": "trigger",
        "dedup_key": "sitewatch/shop",
        "payload": {
            "summary": "[sitewatch] DOWN: shop (status: status 500 not in 200-399)",
            "severity": "critical",
            "source": "shop.example.com",
            "component": "shop",
            "group": "sitewatch",
            "class": "DOWN",
            "custom_details": DOWN.document(),
        },
        "links": [{"href": RUN_URL, "text": "Airflow log"}],
    }
    assert (still["event_action"], still["dedup_key"]) == ("trigger", "sitewatch/shop")
    assert still["payload"]["class"] == "STILL DOWN"
    assert (recovered["event_action"], recovered["dedup_key"]) == ("resolve", "sitewatch/shop")
    assert recovered["routing_key"] == pagerduty.routing_key
    assert "links" not in recovered


@pytest.mark.parametrize(
    ("message", "key", "severity"),
    [
        (alert(Kind.PIPELINE, error="DeliveryError"), "sitewatch/shop/pipeline", "warning"),
        (alert(Kind.DEGRADED, error=None, detail=None), "sitewatch/shop/degraded", "warning"),
        (alert(Kind.SLO_BURN, severity="page"), "sitewatch/shop/slo/page", "critical"),
        (alert(Kind.SLO_BURN, severity="warn"), "sitewatch/shop/slo/warn", "warning"),
        (alert(Kind.FLAPPING), "sitewatch/shop", "error"),
    ],
    ids=["pipeline", "degraded", "slo-page", "slo-warn", "flapping"],
)
def test_pagerduty_key_and_severity_per_concern(pagerduty, message, key, severity):
    PagerdutyAlertNotifier(message, "pd_ops", TIMEOUT).notify({})
    assert pagerduty.incidents == {key: severity}
    ((_, _, body),) = pagerduty.requests
    assert body["payload"]["class"] == message.kind.value


def test_pagerduty_refused_event_is_logged_without_the_routing_key(pagerduty, monkeypatch, caplog):
    monkeypatch.setenv(
        "AIRFLOW_CONN_PD_OPS",
        json.dumps(
            {"conn_type": "pagerduty_events", "host": pagerduty.base_url, "password": "wr0ngkey"}
        ),
    )
    with pytest.raises(NotificationError, match=r"^pagerduty pd_ops: .*400"):
        PagerdutyAlertNotifier(DOWN, "pd_ops", TIMEOUT).notify({})
    assert send(DOWN, [PagerdutyTarget("pd_ops")], {}) == 0
    assert "target=pagerduty pd_ops error=NotificationError" in caplog.text
    assert "wr0ngkey" not in caplog.text
    assert pagerduty.incidents == {}


def test_pagerduty_outage_is_retried_once_then_given_up(pagerduty):
    pagerduty.set_outage(503)
    started = time.monotonic()
    with pytest.raises(NotificationError, match=r"^pagerduty pd_ops: .*503"):
        PagerdutyAlertNotifier(DOWN, "pd_ops", TIMEOUT).notify({})
    assert len(pagerduty.requests) == 2  # not the client's default of six retries
    assert time.monotonic() - started < 10


def test_pagerduty_base_url_must_be_https(pagerduty, monkeypatch):
    conn = json.loads(pagerduty.conn())
    conn["host"] = pagerduty.base_url.replace("https://", "http://")
    monkeypatch.setenv("AIRFLOW_CONN_PD_OPS", json.dumps(conn))
    with pytest.raises(NotificationError, match="^pagerduty pd_ops: API base URL must use .*https"):
        PagerdutyAlertNotifier(DOWN, "pd_ops", TIMEOUT).notify({})
    assert pagerduty.requests == []


# --- Opsgenie -------------------------------------------------------------------------------------


def test_opsgenie_down_creates_an_alert_and_recovered_closes_it_by_alias(opsgenie):
    target = OpsgenieTarget("og_ops")
    assert send(DOWN, [target], {}) == 1
    assert list(opsgenie.alerts) == ["sitewatch/shop"]
    assert send(RECOVERED, [target], {}) == 1
    assert opsgenie.alerts == {}
    (create_path, headers, create), (close_path, _, close) = opsgenie.requests
    assert create_path == "/v2/alerts"
    assert headers["Authorization"] == f"GenieKey {opsgenie.api_key}"
    assert create == {
        "message": "[sitewatch] DOWN: shop (status: status 500 not in 200-399)",
        "alias": "sitewatch/shop",
        "description": DOWN.text,
        "priority": "P1",
        "entity": "shop",
        "source": "sitewatch",
        "tags": ["sitewatch", "DOWN"],
        "details": dict(DOWN.lines()),
    }
    # the alias is a path segment, so its '/' travels encoded
    assert close_path == "/v2/alerts/sitewatch%2Fshop/close?identifierType=alias"
    assert close == {"source": "sitewatch", "note": "[sitewatch] RECOVERED: shop"}


@pytest.mark.parametrize(
    ("message", "alias", "priority"),
    [
        (alert(Kind.PIPELINE, error="DeliveryError"), "sitewatch/shop/pipeline", "P3"),
        (alert(Kind.SLO_BURN, severity="page"), "sitewatch/shop/slo/page", "P1"),
        (alert(Kind.SLO_BURN, severity="warn"), "sitewatch/shop/slo/warn", "P3"),
        (alert(Kind.FLAPPING), "sitewatch/shop", "P2"),
    ],
    ids=["pipeline", "slo-page", "slo-warn", "flapping"],
)
def test_opsgenie_alias_and_priority_per_concern(opsgenie, message, alias, priority):
    OpsgenieAlertNotifier(message, "og_ops", TIMEOUT).notify({})
    assert {a: body["priority"] for a, body in opsgenie.alerts.items()} == {alias: priority}


def test_opsgenie_long_title_is_cut_to_opsgenies_message_limit(opsgenie):
    long = alert(Kind.DOWN, detail="x" * 500)
    OpsgenieAlertNotifier(long, "og_ops", TIMEOUT).notify({})
    ((_, _, body),) = opsgenie.requests
    assert len(body["message"]) == 130 and body["message"].endswith("...")
    assert body["description"] == long.text  # the whole text is still there


def test_opsgenie_wrong_key_is_a_notification_error(opsgenie, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_OG_OPS",
        json.dumps({"conn_type": "opsgenie", "host": opsgenie.base_url, "password": "wr0ng"}),
    )
    with pytest.raises(
        NotificationError, match=r"^opsgenie og_ops: answered HTTP 401: .*Could not authenticate"
    ):
        OpsgenieAlertNotifier(DOWN, "og_ops", TIMEOUT).notify({})
    assert opsgenie.alerts == {}


def test_unreachable_opsgenie_is_logged_and_does_not_hold_the_callback(monkeypatch, caplog):
    monkeypatch.setenv(
        "AIRFLOW_CONN_OG_OPS",
        json.dumps(
            {"conn_type": "opsgenie", "host": "http://127.0.0.1:9", "password": "k3y-0f-0ps"}
        ),
    )
    started = time.monotonic()
    assert send(DOWN, [OpsgenieTarget("og_ops")], {}) == 0
    assert time.monotonic() - started < 15  # one retry at most, not the SDK's minute
    assert "target=opsgenie og_ops error=NotificationError" in caplog.text
    assert "opsgenie og_ops: NewConnectionError: " in caplog.text
    assert "Connection refused" in caplog.text


# --- Apprise --------------------------------------------------------------------------------------


def test_apprise_json_url_gets_title_rows_and_message_type(chat):
    ops, web = chat
    assert send(DOWN, [AppriseTarget("chat")], {}) == 1
    assert send(RECOVERED, [AppriseTarget("chat")], {}) == 1
    for receiver in (ops, web):
        down, recovered = receiver.payloads
        assert down == {
            "version": "1.0",
            "title": DOWN.title,
            "message": "\n".join(f"{label}: {value}" for label, value in DOWN.lines()),
            "attachments": [],
            "type": "failure",
        }
        assert (recovered["title"], recovered["type"]) == ("[sitewatch] RECOVERED: shop", "success")
        assert [path for path, _, _ in receiver.requests] == ["/hooks/T000/secret"] * 2


def test_apprise_tag_picks_the_urls_so_tagged(chat):
    ops, web = chat
    assert send(alert(Kind.PIPELINE), [AppriseTarget("chat", tag="web")], {}) == 1
    assert (len(ops.requests), len(web.requests)) == (0, 1)
    assert web.payloads[0]["type"] == "warning"


def test_apprise_tag_no_url_has_is_an_error(chat):
    with pytest.raises(
        NotificationError, match="^apprise chat: the connection has no Apprise URL tagged 'db'$"
    ):
        AppriseAlertNotifier(DOWN, "chat", "db", TIMEOUT).notify({})


def test_apprise_refused_message_is_an_error_and_logs_no_url(chat, caplog):
    ops, web = chat
    ops.set_status(500)
    web.set_status(500)
    assert send(DOWN, [AppriseTarget("chat")], {}) == 0
    assert "target=apprise chat error=NotificationError" in caplog.text
    assert "failure: 2 of 2 services did not accept the message" in caplog.text
    assert "T000/secret" not in caplog.text


def test_apprise_some_services_failing_still_counts_as_delivered(chat, caplog):
    ops, web = chat
    ops.set_status(500)
    assert send(DOWN, [AppriseTarget("chat")], {}) == 1
    assert len(web.requests) == 1
    assert (
        "apprise delivered to some services only target=apprise chat failed=1 of 2" in caplog.text
    )


def test_apprise_connection_without_config_is_named(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CHAT", json.dumps({"conn_type": "apprise", "extra": {}}))
    with pytest.raises(NotificationError, match="^apprise chat: connection extra 'config' must be"):
        AppriseAlertNotifier(DOWN, "chat", None, TIMEOUT).notify({})


# --- every target type together -------------------------------------------------------------------


def test_degraded_only_to_targets_that_opt_in_flapping_to_every_target(
    receiver, pagerduty, opsgenie, chat
):
    targets = (
        WebhookTarget("ops_webhook"),
        PagerdutyTarget("pd_ops", degraded=True),
        OpsgenieTarget("og_ops"),
        AppriseTarget("chat", tag="ops", degraded=True),
    )
    degraded = alert(Kind.DEGRADED, error=None, detail=None)
    assert send(degraded, targets, {}) == 2
    assert receiver.requests == [] and opsgenie.requests == []
    assert pagerduty.incidents == {"sitewatch/shop/degraded": "warning"}
    assert [p["type"] for p in chat[0].payloads] == ["warning"]
    assert send(alert(Kind.FLAPPING), targets, {}) == 4
    assert [doc["state"] for doc in receiver.payloads] == ["FLAPPING"]
    assert list(opsgenie.alerts) == ["sitewatch/shop"]
    assert pagerduty.incidents["sitewatch/shop"] == "error"


def test_a_status_update_reaches_every_opted_in_type_as_its_own_incident(
    receiver, pagerduty, opsgenie, chat
):
    targets = (
        WebhookTarget("ops_webhook"),  # did not opt in
        PagerdutyTarget("pd_ops", status_updates=True),
        OpsgenieTarget("og_ops", status_updates=True),
        AppriseTarget("chat", tag="ops", status_updates=True),
    )
    note = StatusNote("Example", "Shop is down", "investigating", "Looking *now*.", "sitewatch")
    update = Alert("Example", "https://status.example.com/#i-42", Kind.STATUS_UPDATE, T0, T0,
                   concern="status/status/42", note=note)  # fmt: skip
    assert send(update, targets, {}) == 3
    assert receiver.requests == []
    assert pagerduty.incidents == {"sitewatch/status/status/42": "info"}
    assert list(opsgenie.alerts) == ["sitewatch/status/status/42"]
    (message,) = chat[0].payloads
    assert message["title"] == "[sitewatch] STATUS UPDATE: Example: Shop is down (investigating)"
    assert "update: Looking *now*." in message["message"]
    resolved = dataclasses.replace(note, state="resolved", text="It works again.")
    assert send(dataclasses.replace(update, note=resolved), targets, {}) == 3
    assert pagerduty.incidents == {} and opsgenie.alerts == {}
