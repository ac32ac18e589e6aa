"""RECOVERED on a real Airflow: the drain judges the up check, so the message follows the check by
one drain cycle (the sensor seeing the message, the drain task starting, its first batch). This
test measures that delay over a few down-up flips and records it; it asserts only what was sent.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime

import pytest

from tests.faults.stack import Stack, private_airflow, private_stack, record  # noqa: F401
from tests.receivers import WebhookReceiver

FLIPS = 3


def wait_for(stack: Stack, receiver: WebhookReceiver, count: int, timeout: float = 240) -> datetime:
    """Wait until ``count`` messages arrived; return when the last one was seen (0.2 s steps)."""
    deadline = time.monotonic() + timeout
    while len(receiver.payloads) < count:
        assert time.monotonic() < deadline, (
            f"{len(receiver.payloads)} of {count} messages came; {stack.diagnose()}"
        )
        time.sleep(0.2)
    return datetime.now(UTC)


@pytest.mark.timeout(900)  # three flips of about 1 minute each, and the stack's check
def test_recovered_follows_the_up_check_by_one_drain_cycle(
    private_airflow: Stack,  # noqa: F811
    web,
):
    stack, name = private_airflow, f"rec-{uuid.uuid4().hex[:6]}"
    receiver = WebhookReceiver()
    try:
        stack.airflow_cli("connections", "add", "ops_webhook", "--conn-json", receiver.conn())
        web.reply = (500, "boom")
        stack.set_sites(
            f"sites:\n  - name: {name}\n    url: {web.url}\n    schedule: 30s\n    retries: 0\n"
            "    notify:\n      - webhook: ops_webhook\n"
            "    flapping: false\n"  # three flips in minutes are what this test is about
        )
        delays, stored = [], []
        for flip in range(FLIPS):
            web.reply = (500, "boom")
            wait_for(stack, receiver, 2 * flip + 1)
            web.reply = (200, "ok")
            arrived = wait_for(stack, receiver, 2 * flip + 2)
            with stack.results() as db:
                checked_at, stored_at = db.execute(
                    "SELECT checked_at, stored_at FROM site_checks WHERE site = %s AND up"
                    " AND scheduled_at > (SELECT max(scheduled_at) FROM site_checks"
                    "                     WHERE site = %s AND NOT up)"
                    " ORDER BY scheduled_at LIMIT 1",
                    (name, name),
                ).fetchone()
            delays.append((arrived - checked_at).total_seconds())
            stored.append((stored_at - checked_at).total_seconds())
        states = [p["state"] for p in receiver.payloads]
        assert states == ["DOWN", "RECOVERED"] * FLIPS
    finally:
        receiver.close()
        stack.set_sites("sites: []\n")
    record(
        "recovered_latency",
        {
            "flips": FLIPS,
            "check_to_message_s": [round(d, 1) for d in delays],
            "check_to_stored_s": [round(s, 1) for s in stored],
            "median_check_to_message_s": round(statistics.median(delays), 1),
        },
    )
