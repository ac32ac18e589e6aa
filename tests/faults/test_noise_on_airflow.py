"""Noise control on a real Airflow (issue 17): a parent down with three children pages once, and
a site whose server flaps sends one FLAPPING and then nothing. Real DAGs, real callbacks, the real
drain judging the stored checks, a local webhook."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.builders import DAILY
from tests.faults.stack import Stack, private_airflow, private_stack  # noqa: F401
from tests.receivers import WebhookReceiver


@pytest.fixture
def hook(private_airflow: Stack):  # noqa: F811
    """A webhook receiver behind an Airflow connection of its own (``hook.conn_id``)."""
    receiver = WebhookReceiver()
    receiver.conn_id = f"noise_{uuid.uuid4().hex[:8]}"
    private_airflow.airflow_cli(
        "connections", "add", receiver.conn_id, "--conn-json", receiver.conn()
    )
    yield receiver
    receiver.close()


def notify(hook) -> str:
    return f"    notify:\n      - webhook: {hook.conn_id}\n"


@pytest.mark.timeout(600)
def test_a_parent_down_with_three_children_pages_once(private_airflow: Stack, web, hook):  # noqa: F811
    stack, tag = private_airflow, uuid.uuid4().hex[:6]
    parent = f"db-{tag}"
    web.reply = (500, "down for everyone")
    children = "".join(
        f"  - name: app{i}-{tag}\n    url: {web.url}?app={i}\n    schedule: {DAILY}\n"
        f"    retries: 1\n    retry_delay: 15s\n    depends_on: [{parent}]\n" + notify(hook)
        for i in range(3)
    )
    stack.set_sites(
        f"sites:\n  - name: {parent}\n    url: {web.url}\n    schedule: {DAILY}\n"
        "    retries: 0\n" + notify(hook) + children
    )
    stack.wait_runs_done(f"site_%-{tag}", 4, timeout=400)
    time.sleep(10)  # the drain judges the children's last (final) checks just after they end
    assert [(p["site"], p["state"]) for p in hook.payloads] == [(parent, "DOWN")]
    with stack.results() as db:
        held = db.execute(
            "SELECT site, kind, held FROM site_alert_log WHERE site LIKE %s ORDER BY site",
            (f"app%-{tag}",),
        ).fetchall()
    assert held == [(f"app{i}-{tag}", "DOWN", f"parent {parent} down") for i in range(3)]


@pytest.mark.timeout(600)
def test_a_flapping_server_sends_one_flapping_alert(private_airflow: Stack, web, hook):  # noqa: F811
    stack, name = private_airflow, f"flap-{uuid.uuid4().hex[:6]}"
    web.reply = (500, "boom")
    stop = threading.Event()

    def flap():  # a new state every 15 s: each one seen by a 10 s check or two (a missed one
        while not stop.wait(15):  # is two flips that cancel out: no change, no message)
            web.reply = (200, "ok") if web.reply[0] == 500 else (500, "boom")

    stack.set_sites(
        f"sites:\n  - name: {name}\n    url: {web.url}\n    schedule: 10s\n    retries: 0\n"
        + notify(hook)
        + "    flapping: {changes: 2, window: 30m, stable: 30m}\n"
    )
    flipper = threading.Thread(target=flap, daemon=True)
    deadline = time.monotonic() + 300
    try:
        while not hook.payloads:  # the first verdict, before the flapping starts
            assert time.monotonic() < deadline, f"no DOWN came; {stack.diagnose()}"
            time.sleep(1)
        flipper.start()
        while "FLAPPING" not in [p["state"] for p in hook.payloads]:
            assert time.monotonic() < deadline, f"{hook.payloads}; {stack.diagnose()}"
            time.sleep(1)
        time.sleep(45)  # three more flips: all quiet
    finally:
        stop.set()
    states = [p["state"] for p in hook.payloads]
    assert states == ["DOWN", "RECOVERED", "DOWN", "FLAPPING"]
