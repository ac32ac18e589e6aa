"""Checks that start in the triggerer, on a real Airflow: where each attempt ends, and what a
killed triggerer does to the checks it was running.

An up site's task ends in the triggerer (no worker ever runs it); a down site's attempt resumes on
a worker (after the triggerer published it, when it is the run's last try), which fails it with
``SiteDown`` so that the retry re-checks the site, again from the triggerer. Every attempt writes
its summary line to the attempt's log and its row to site_checks.
"""

from __future__ import annotations

import http.server
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.faults.stack import (  # noqa: F401
    Stack,
    private_airflow,
    private_stack,
    record,
    site_server,
)

IN_FLIGHT = 100
# The daily schedule's last tick is due at once (catchup off); later ones are out of the test.
DAILY = "'0 0 * * *'"


class _Failing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(500)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"boom")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def failing_site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def trigger_log(stack: Stack, attempt: dict, expect: str, timeout: float = 60) -> str:
    """What the triggerer wrote for one try (``attempt=N.log.trigger.<job>.log``, beside the
    worker's ``attempt=N.log``), once it holds ``expect``: the triggerer writes a trigger's log
    out when the trigger is done, a moment after the task instance's state changed."""
    folder = Path(
        stack.state / "airflow" / "logs" / f"dag_id={attempt['dag_id']}"
        f"/run_id={attempt['run_id']}/task_id=probe"
    )
    deadline = time.monotonic() + timeout
    while True:
        text = "".join(
            p.read_text(errors="replace")
            for p in sorted(folder.glob(f"attempt={attempt['try_number']}.log.trigger.*.log"))
        )
        if expect in text or time.monotonic() > deadline:
            return text
        time.sleep(1)


def hostnames(stack: Stack, dag_id: str) -> list[str]:
    """The worker host of each try of the DAG's probe task ('' or None: no worker ran it)."""
    query = "SELECT try_number, hostname FROM {} WHERE dag_id = %s AND task_id = 'probe'"
    with stack.metadata() as db:
        rows = []
        for table in ("task_instance_history", "task_instance"):
            rows += db.execute(query.format(table), (dag_id,)).fetchall()
    return [host for _, host in sorted(rows)]


def final_flags(stack: Stack, site: str) -> list[tuple]:
    with stack.results() as db:
        return db.execute(
            "SELECT attempt, final, up FROM site_checks WHERE site = %s ORDER BY attempt", (site,)
        ).fetchall()


@pytest.mark.timeout(600)  # the run, and the stack's check when it is the module's first
def test_an_up_site_ends_in_the_triggerer_without_a_worker(
    private_airflow: Stack,  # noqa: F811
    site_server,  # noqa: F811
):
    stack, name = private_airflow, f"tup-{uuid.uuid4().hex[:6]}"
    stack.set_sites(
        f"sites:\n  - name: {name}\n    url: {site_server.url}\n    schedule: {DAILY}\n"
    )
    stack.wait_runs_done(f"site_{name}", 1, timeout=300)

    (attempt,) = stack.tries(f"site_{name}")
    assert attempt["state"] == "success"
    assert hostnames(stack, f"site_{name}") in ([""], [None])
    summary = f"site={name} attempt=1 final=True up=True status=200"
    assert summary in trigger_log(stack, attempt, summary)
    stack.wait_stored(name, {(name, attempt["logical_date"], 1)})
    assert final_flags(stack, name) == [(1, True, True)]  # an up attempt ends its run


@pytest.mark.timeout(600)  # the runs, and the stack's check when it is the module's first
def test_a_down_site_retries_through_a_worker_and_fails_after_its_last_attempt(
    private_airflow: Stack,  # noqa: F811
    failing_site,
):
    stack, name = private_airflow, f"tdn-{uuid.uuid4().hex[:6]}"
    stack.set_sites(
        f"sites:\n  - name: {name}\n    url: {failing_site}\n    schedule: {DAILY}\n"
        "    retries: 1\n    retry_delay: 1s\n"
    )
    stack.wait_runs_done(f"site_{name}", 1, timeout=300)

    tries = sorted(stack.tries(f"site_{name}"), key=lambda t: t["try_number"])
    # (task_instance_history keeps a retried try as failed)
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "failed")]
    # each attempt was probed in the triggerer and failed on a worker; the first was published
    # by the worker (only it knows a retry remains), the last by the triggerer, at once
    assert all(hostnames(stack, f"site_{name}"))
    for attempt, final in zip(tries, ("False", "True"), strict=True):
        n = attempt["try_number"]
        summary = f"site={name} attempt={n} final={final} up=False status=500"
        probed = trigger_log(stack, attempt, "trigger completed")
        assert "Trigger fired event" in probed and "'down'" in probed
        log = stack.task_log(attempt)
        assert summary in (log if final == "False" else trigger_log(stack, attempt, summary))
        assert '"exc_type":"SiteDown"' in log
    keys = {(name, t["logical_date"], t["try_number"]) for t in tries}
    stack.wait_stored(name, keys)
    assert final_flags(stack, name) == [(1, False, False), (2, True, False)]


@pytest.mark.timeout(900)  # 100 new DAGs, a triggerer killed and its triggers' ~30 s hand-over
def test_checks_in_flight_in_a_killed_triggerer_are_stored_once(
    private_airflow: Stack,  # noqa: F811
    site_server,  # noqa: F811
):
    """100 probes held at the site inside the triggerer; the triggerer is SIGKILLed and started
    again: each check is picked up again and stored exactly once, its task green."""
    stack, server = private_airflow, site_server
    prefix = f"tk{uuid.uuid4().hex[:4]}"
    server.hold(IN_FLIGHT)
    stack.set_sites(
        "sites:\n"
        + "".join(
            f"  - name: {prefix}-{i:03d}\n    url: {server.url}\n    schedule: {DAILY}\n"
            for i in range(IN_FLIGHT)
        )
    )
    assert server.all_waiting.wait(400), (
        f"only {server.requests} probes reached the site; {stack.diagnose()}"
    )
    stack.stop_component("triggerer", signal.SIGKILL)
    server.release.set()  # the dead triggerer's probes never publish: their process is gone
    stack.start_component("triggerer")

    dag_like = f"site_{prefix}-%"
    stack.wait_runs_done(dag_like, IN_FLIGHT, timeout=500)
    tries = stack.tries(dag_like)
    due = {(t["dag_id"].removeprefix("site_"), t["logical_date"], 1) for t in tries}
    assert len(due) == IN_FLIGHT
    assert {t["state"] for t in tries} == {"success"}
    rows = stack.wait_stored(f"{prefix}-%", due)
    keys = [r[:3] for r in rows]
    assert len(keys) == len(set(keys)) == IN_FLIGHT
    record(
        "triggerer_killed",
        {
            "checks_in_flight": IN_FLIGHT,
            "stored": len(keys),
            "duplicated": len(keys) - len(set(keys)),
            "lost": len(due - set(keys)),
            "tries": len(tries),
        },
    )
