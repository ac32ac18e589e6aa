"""Alert state in the real PostgreSQL, and alerts sent to a real local webhook and SMTP server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.airflow.notifiers import WebhookNotifier, send, webhook_request
from sitewatch.alerting import store as alert_store
from sitewatch.alerting.rules import Alert, AlertState, Event, Kind, Verdict
from sitewatch.config.loader import site_for_url
from sitewatch.config.notify import EmailTarget, WebhookTarget
from sitewatch.errors import NotificationError, SchemaError
from sitewatch.storage.schema import migrate
from sitewatch.storage.schema import version as schema_version
from tests.receivers import SmtpReceiver, WebhookReceiver

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALERT = Alert(
    "shop",
    "https://shop.example.com/",
    Kind.DOWN,
    at=T0,
    since=T0,
    error="status",
    detail="status 500 not in 200-399",
    run_url="http://localhost:8080/dags/site_shop/runs/r1/tasks/probe?try_number=3",
)


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def smtp():
    server = SmtpReceiver()
    yield server
    server.close()


def event(verdict: Verdict, minute: int) -> Event:
    at = T0 + timedelta(minutes=minute)
    return Event(verdict, at, f"run-{minute}", at, "status", "status 500")


# --- state in PostgreSQL --------------------------------------------------------------------------


def test_state_is_stored_and_read_back_by_another_connection(pg_connect, migrated_schema):
    first, second = pg_connect(), pg_connect()
    previous, new, kind = alert_store.apply(first, "shop", event(Verdict.DOWN, 0))
    assert (previous, kind) == (AlertState(), Kind.DOWN)
    assert alert_store.load(second, "shop") == new
    assert new.state == "down" and new.since == T0 and new.last_notified_at == T0
    # a "restart": a new connection continues from the stored state
    assert alert_store.apply(second, "shop", event(Verdict.DOWN, 5))[2] is None
    assert alert_store.apply(second, "shop", event(Verdict.UP, 10))[2] is Kind.RECOVERED
    assert alert_store.load(first, "shop").state == "up"


def test_apply_never_migrates_and_names_what_does(pg_conn):
    with pytest.raises(SchemaError, match="do not exist yet.*create_tables"):
        alert_store.apply(pg_conn, "new", event(Verdict.UP, 0))
    assert schema_version(pg_conn) == 0  # alerting only reads the schema
    migrate(pg_conn)
    assert alert_store.apply(pg_conn, "new", event(Verdict.UP, 0))[2] is None
    assert alert_store.load(pg_conn, "new").state == "up"


@pytest.mark.parametrize("existing", [False, True], ids=["new-site", "known-site"])
def test_concurrent_transitions_notify_once(pg_connect, migrated_schema, existing):
    setup = pg_connect()
    workers = [pg_connect() for _ in range(8)]
    for round_ in range(10):
        site = f"site-{round_}"
        if existing:
            alert_store.apply(setup, site, event(Verdict.UP, 0))
        start = threading.Barrier(len(workers))
        kinds = []

        def judge(conn, minute, site=site, start=start, kinds=kinds):
            start.wait()
            kinds.append(alert_store.apply(conn, site, event(Verdict.DOWN, minute))[2])

        threads = [
            threading.Thread(target=judge, args=(conn, 5 + i)) for i, conn in enumerate(workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(kinds, key=str) == [Kind.DOWN] + [None] * (len(workers) - 1)


def test_release_lets_the_next_down_run_send_again(pg_conn, migrated_schema):
    _, new, _ = alert_store.apply(pg_conn, "shop", event(Verdict.DOWN, 0))
    assert alert_store.release(pg_conn, "shop", new.last_notified_at)
    assert alert_store.release(pg_conn, "shop", new.last_notified_at) is False  # already released
    assert alert_store.load(pg_conn, "shop").last_notified_at is None
    assert alert_store.apply(pg_conn, "shop", event(Verdict.DOWN, 5))[2] is Kind.DOWN


# --- webhook --------------------------------------------------------------------------------------


def test_webhook_json_payload(receiver, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", receiver.conn(headers={"X-Token": "t0k3n"}))
    WebhookNotifier(ALERT, "ops_webhook").notify({})
    ((path, headers, _),) = receiver.requests
    assert path == "/hooks/T000/secret"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Token"] == "t0k3n"
    (doc,) = receiver.payloads
    assert doc == ALERT.document()
    assert doc["state"] == "DOWN" and doc["detail"] == "status 500 not in 200-399"
    assert doc["run_url"].startswith("http://localhost:8080/dags/site_shop/")


def test_webhook_slack_payload(receiver, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", receiver.conn())
    WebhookNotifier(ALERT, "ops_webhook", format="slack").notify({})
    (doc,) = receiver.payloads
    assert doc["text"] == "[sitewatch] DOWN: shop `status: status 500 not in 200-399`"
    assert [block["type"] for block in doc["blocks"]] == ["header", "section"]
    assert "*url:* https://shop.example.com/" in doc["blocks"][1]["text"]["text"]


def test_webhook_url_from_host_port_and_path_with_bearer_token(receiver, monkeypatch):
    port = receiver.server.server_port
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", f"http://:s3cr3t-token@127.0.0.1:{port}/in/x")
    from airflow.sdk import BaseHook

    url, headers, auth = webhook_request(BaseHook.get_connection("ops_webhook"))
    assert (url, auth) == (f"http://127.0.0.1:{port}/in/x", None)
    WebhookNotifier(ALERT, "ops_webhook").notify({})
    ((path, received, _),) = receiver.requests
    assert path == "/in/x"
    assert received["Authorization"] == "Bearer s3cr3t-token"


def test_webhook_error_answer_is_a_notification_error(receiver, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", receiver.conn())
    receiver.set_status(500)
    with pytest.raises(NotificationError, match="webhook ops_webhook: answered HTTP 500: no"):
        WebhookNotifier(ALERT, "ops_webhook").notify({})


def test_send_logs_a_failing_target_without_its_url_and_still_serves_the_others(
    receiver, monkeypatch, caplog
):
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", receiver.conn())
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEAD_WEBHOOK",
        '{"conn_type": "http", "extra": {"url": "http://127.0.0.1:9/hooks/T000/secret"}}',
    )
    targets = (WebhookTarget("dead_webhook"), WebhookTarget("ops_webhook"))
    assert send(ALERT, targets, {}) == 1
    assert len(receiver.requests) == 1
    failure = [r for r in caplog.records if "NOT delivered" in r.getMessage()]
    assert len(failure) == 1
    message = failure[0].getMessage()
    assert "target=webhook dead_webhook" in message and "request to 127.0.0.1 failed" in message
    assert "secret" not in caplog.text


# --- e-mail ---------------------------------------------------------------------------------------


def test_email_through_the_smtp_provider(smtp, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_TEST", smtp.conn())
    target = EmailTarget(("oncall@example.com", "web@example.org"), "smtp_test")
    assert send(ALERT, [target], {}) == 1
    ((sender, recipients, message),) = smtp.messages
    assert sender == "sitewatch@example.com"
    assert recipients == ["oncall@example.com", "web@example.org"]
    assert message["Subject"] == "[sitewatch] DOWN: shop (status: status 500 not in 200-399)"
    assert message["To"] == "oncall@example.com, web@example.org"
    body = message.get_body(("html",)).get_content()
    assert "<th align='left'>detail</th><td>status 500 not in 200-399</td>" in body
    assert "try_number=3" in body


def test_email_escapes_text_and_uses_the_target_sender(smtp, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_TEST", smtp.conn())
    site = site_for_url("https://x.example.com/")
    alert = Alert(site.name, site.url, Kind.PIPELINE, T0, T0, "DeliveryError", "<b>{{ 7*7 }}</b>")
    target = EmailTarget(("a@example.com",), "smtp_test", "alerts@example.net")
    assert send(alert, [target], {}) == 1
    ((sender, _, message),) = smtp.messages
    assert sender == "alerts@example.net"
    body = message.get_body(("html",)).get_content()
    assert "&lt;b&gt;{{ 7*7 }}&lt;/b&gt;" in body  # escaped, and never run through Jinja
    assert message["Subject"].startswith("[sitewatch] PIPELINE PROBLEM: x-example-com")


def test_unreachable_smtp_server_is_logged_not_raised(monkeypatch, caplog):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_TEST",
        '{"conn_type": "smtp", "host": "127.0.0.1", "port": 9,'
        ' "extra": {"disable_ssl": true, "disable_tls": true, "from_email": "s@example.com"}}',
    )
    assert send(ALERT, [EmailTarget(("a@example.com",), "smtp_test")], {}) == 0
    assert "target=email smtp_test error=ConnectionRefusedError" in caplog.text
