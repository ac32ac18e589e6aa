"""Checks that start in the triggerer, on a real Airflow: where each attempt ends, and what a
killed triggerer does to the checks it was running.

An up site's task ends in the triggerer (no worker ever runs it); a down site's attempt resumes on
a worker (after the triggerer published it, when it is the run's last try), which fails it with
``SiteDown`` so that the retry re-checks the site, again from the triggerer. Every attempt writes
its summary line to the attempt's log and its row to site_checks.
"""

from __future__ import annotations

import http.server
import re
import signal
import threading
import time
import uuid
from urllib.parse import quote

import pytest

from tests.builders import DAILY, sites_file
from tests.faults.stack import (  # noqa: F401
    Stack,
    private_airflow,
    private_stack,
    record,
    site_server,
)

IN_FLIGHT = 100
# What Airflow logs of every attempt before sitewatch has a word: the API's group of the log's
# sources (its files) and the triggerer's start line (docs/dashboard.md, "Run logs").
SOURCES, END = "::group::Log message source details", "::endgroup::"
TRIGGER_STARTING = re.compile(r"trigger \S+ \(ID \d+\) starting")


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


def trigger_text(stack: Stack, attempt: dict) -> str:
    """What the triggerer wrote for one try so far (``attempt=N.log.trigger.<job>.log``, beside
    the worker's ``attempt=N.log``)."""
    folder = (stack.state / "airflow" / "logs" / f"dag_id={attempt['dag_id']}").joinpath(
        f"run_id={attempt['run_id']}", "task_id=probe"
    )
    return "".join(
        p.read_text(errors="replace")
        for p in sorted(folder.glob(f"attempt={attempt['try_number']}.log.trigger.*.log"))
    )


def trigger_log(stack: Stack, attempt: dict, expect: str, timeout: float = 60) -> str:
    """The triggerer's log of one try once it holds ``expect``: the triggerer writes a trigger's
    log out when the trigger is done, a moment after the task instance's state changed."""
    deadline = time.monotonic() + timeout
    while True:
        text = trigger_text(stack, attempt)
        if expect in text or time.monotonic() > deadline:
            return text
        time.sleep(1)


def api_log(stack: Stack, attempt: dict) -> list[str]:
    """One try's log as the UI shows it (Airflow's API, the triggerer's and the worker's parts
    merged in time order): each line's message, with its other fields after it."""
    path = (
        f"/api/v2/dags/{attempt['dag_id']}/dagRuns/{quote(attempt['run_id'], safe='')}"
        f"/taskInstances/probe/logs/{attempt['try_number']}?full_content=true"
    )
    lines = []
    for entry in stack.api("GET", path)["content"]:
        event = str(entry.pop("event", ""))
        entry.pop("timestamp", None)
        lines.append(f"{event} {entry}" if entry else event)
    return lines


def starts_with_summary(lines: list[str], summary: str) -> None:
    """``summary`` is the first line after Airflow's own start lines, and no line says a user
    cancelled the attempt or shows an object's address."""
    first = lines.index(END) + 1 if lines[0] == SOURCES else 0
    while TRIGGER_STARTING.match(lines[first]):
        first += 1
    assert lines[first].startswith(summary), "\n".join(lines)
    text = "\n".join(lines)
    assert "cancelled by user action" not in text and " object at 0x" not in text, text


def tries_told(stack: Stack, tries: list[dict]) -> list[str]:
    """What a failed assertion on tries should show: each try, then its worker's and its
    triggerer's log (the last 3,000 characters of each)."""
    return [
        f"{t}\n{stack.task_log(t)[-3000:]}\n-- triggerer:\n{trigger_text(stack, t)[-3000:]}"
        for t in tries
    ]


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
    stack.set_sites(sites_file([name], site_server.url, schedule=DAILY))
    stack.wait_runs_done(f"site_{name}", 1, timeout=300)

    (attempt,) = stack.tries(f"site_{name}")
    assert attempt["state"] == "success"
    assert hostnames(stack, f"site_{name}") in ([""], [None])
    summary = f"site={name} attempt=1 final=True up=True status=200"
    assert summary in trigger_log(stack, attempt, "trigger completed")
    lines = api_log(stack, attempt)
    starts_with_summary(lines, summary)
    assert "error=" not in "\n".join(lines)  # an up attempt has none
    stack.wait_stored(name, {(name, attempt["logical_date"], 1)})
    assert final_flags(stack, name) == [(1, True, True)]  # an up attempt ends its run


@pytest.mark.timeout(600)  # the runs, and the stack's check when it is the module's first
def test_a_down_site_retries_through_a_worker_and_fails_after_its_last_attempt(
    private_airflow: Stack,  # noqa: F811
    failing_site,
):
    stack, name = private_airflow, f"tdn-{uuid.uuid4().hex[:6]}"
    stack.set_sites(sites_file([name], failing_site, schedule=DAILY, retries=1, retry_delay="1s"))
    stack.wait_runs_done(f"site_{name}", 1, timeout=300)

    tries = sorted(stack.tries(f"site_{name}"), key=lambda t: t["try_number"])
    # (task_instance_history keeps a retried try as failed)
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "failed")]
    # each attempt was probed in the triggerer and failed on a worker; the first was published
    # by the worker (only it knows a retry remains), the last by the triggerer, at once; each
    # one's log starts with its summary line, logged in the triggerer, saying what is stored
    assert all(hostnames(stack, f"site_{name}"))
    for attempt, final in zip(tries, ("False", "True"), strict=True):
        n = attempt["try_number"]
        summary = f"site={name} attempt={n} final={final} up=False status=500"
        probed = trigger_log(stack, attempt, "trigger completed")
        assert "Trigger fired event" in probed and "'down'" in probed
        assert f'\\"final\\":{final.lower()}' in probed  # the event's observation agrees
        assert '"exc_type":"SiteDown"' in stack.task_log(attempt)
        lines = api_log(stack, attempt)
        starts_with_summary(lines, f"{summary} response_ms=")
        assert sum(summary in line for line in lines) == 1, "\n".join(lines)
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
    # An attempt's trigger times out its timeout plus 2 min after the run was scheduled. Here it
    # waits for the other 99 probes, then for the hand-over (30 s without the dead triggerer's
    # heartbeat) and a new triggerer's start: on a busy machine, more than the 2 min 10 s a
    # 10-s timeout gives, and the attempt would fail as TriggerTimeout and be retried.
    names = [f"{prefix}-{i:03d}" for i in range(IN_FLIGHT)]
    stack.set_sites(sites_file(names, server.url, schedule=DAILY, timeout="60s"))
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
    failed = [t for t in tries if t["state"] != "success"]
    assert not failed, "\n\n".join(tries_told(stack, failed[:3]))
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
