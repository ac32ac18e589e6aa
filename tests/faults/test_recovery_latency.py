"""DOWN and RECOVERED on a real Airflow: how long after the check that decides it each message
reaches a webhook. Several sites flip down and up together; each message is paired with the
stored check that changed the site's state (its first down final check, its first up check), and
the delay from the end of that check to the message's arrival is recorded (p50, p95, max) in the
reliability artifact. It asserts only what was sent: one DOWN and one RECOVERED per site and flip,
and, for the site on a status page, one incident per flip, opened by its DOWN and resolved by its
RECOVERED (issue 27).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.storage.incidents import page_incidents
from tests.faults.stack import Stack, private_airflow, private_stack, record  # noqa: F401
from tests.receivers import WebhookReceiver

SITES = 8
FLIPS = 2


class Arrivals:
    """Polls a receiver (0.2 s steps) and notes when each message was first seen."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.seen: list[tuple[dict, datetime]] = []

    def wait(self, stack: Stack, count: int, sites: list[str], timeout: float = 240) -> None:
        """Until every site of ``sites`` got ``count`` messages."""
        deadline = time.monotonic() + timeout
        while True:
            payloads = self.receiver.payloads
            now = datetime.now(UTC)
            self.seen += [(p, now) for p in payloads[len(self.seen) :]]
            per_site = defaultdict(int)
            for payload, _ in self.seen:
                per_site[payload["site"]] += 1
            if all(per_site[site] >= count for site in sites):
                return
            assert time.monotonic() < deadline, (
                f"{dict(per_site)} of {count} messages each came; {stack.diagnose()}"
            )
            time.sleep(0.2)


def state_changes(db, site: str) -> list[tuple[str, datetime]]:
    """(DOWN or RECOVERED, when the deciding check ended) for each change of ``site``'s state in
    its stored final checks."""
    rows = db.execute(
        "SELECT up, checked_at, response_time_ms FROM site_checks WHERE site = %s AND final"
        " ORDER BY scheduled_at",
        (site,),
    ).fetchall()
    changes, state = [], "up"
    for up, checked_at, ms in rows:
        now = "up" if up else "down"
        if now != state:
            ended = checked_at + timedelta(milliseconds=ms or 0)
            changes.append(("RECOVERED" if up else "DOWN", ended))
            state = now
    return changes


def figures(delays: list[float]) -> dict:
    ordered = sorted(delays)
    return {
        "n": len(ordered),
        "p50_s": round(statistics.median(ordered), 1),
        "p95_s": round(ordered[max(0, round(0.95 * len(ordered)) - 1)], 1),
        "max_s": round(ordered[-1], 1),
    }


@pytest.mark.timeout(900)  # two flips of about a minute each, and the stack's check
def test_down_and_recovered_follow_the_deciding_check(
    private_airflow: Stack,  # noqa: F811
    web,
):
    stack, tag = private_airflow, uuid.uuid4().hex[:6]
    names = [f"lat-{tag}-{i}" for i in range(SITES)]
    receiver = WebhookReceiver()
    arrivals = Arrivals(receiver)
    try:
        stack.airflow_cli("connections", "add", "ops_webhook", "--conn-json", receiver.conn())
        web.reply = (500, "boom")
        started = datetime.now(UTC)
        stack.set_sites(
            "sites:\n"
            + "".join(
                f"  - name: {name}\n    url: {web.url}\n    schedule: 30s\n    retries: 0\n"
                "    notify:\n      - webhook: ops_webhook\n"
                "    flapping: false\n"  # flips within minutes are what this test is about
                for name in names
            )
            + f"status_pages:\n  - id: lat-{tag}\n    title: Latency\n    components:\n"
            f"      - {{name: Shop, site: {names[0]}}}\n"
        )
        for flip in range(FLIPS):
            web.reply = (500, "boom")
            arrivals.wait(stack, 2 * flip + 1, names)
            web.reply = (200, "ok")
            arrivals.wait(stack, 2 * flip + 2, names)
        delays = defaultdict(list)
        with stack.results() as db:
            for name in names:
                sent = [(p["state"], at) for p, at in arrivals.seen if p["site"] == name]
                assert [state for state, _ in sent] == ["DOWN", "RECOVERED"] * FLIPS, name
                changes = state_changes(db, name)[: len(sent)]
                assert [kind for kind, _ in changes] == ["DOWN", "RECOVERED"] * FLIPS, name
                for (kind, arrived), (_, ended) in zip(sent, changes, strict=True):
                    delays[kind].append((arrived - ended).total_seconds())
            incidents = page_incidents(db, f"lat-{tag}", started)
        # the page's component had one incident per flip: opened by the DOWN, resolved by the
        # RECOVERED (nobody took it over), in the order of the flips
        assert [(i.components, i.opened_by_site, i.state) for i in incidents] == [
            (("Shop",), names[0], "resolved")
        ] * FLIPS
    finally:
        receiver.close()
        stack.set_sites("sites: []\n")
    record(
        "alert_latency",
        {
            "sites": SITES,
            "flips": FLIPS,
            "down_check_to_message": figures(delays["DOWN"]),
            "recovered_check_to_message": figures(delays["RECOVERED"]),
        },
    )
