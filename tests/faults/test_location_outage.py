"""Checks from two locations with a quorum, on the CeleryExecutor, for real on one machine.

``scripts/dev.sh run`` with ``SITEWATCH_EXECUTOR=celery`` starts a stack of its own here: Redis,
Airflow's components as separate processes, and one Celery worker per location (``east`` and
``west``, queues ``sitewatch-east`` and ``sitewatch-west``), exactly as ``make run`` does, with
two schedulers (``SITEWATCH_SCHEDULERS=2``: everything below holds with both at work). A
local site answers 503 to the probes of ``west`` only (the probe names its location in its
User-Agent). Then:

1. with ``quorum: 2`` the run's verdict is partial and no DOWN goes out; with ``quorum: 1`` it is
   down, and the DOWN message names west;
2. west's worker is SIGKILLed: its checks are reported missing, each kept as west's last word
   (``missing, last down``: the quorum-1 site stays down and sends no RECOVERED), east's go on,
   one PIPELINE PROBLEM names the location (not one per site), and every check a worker
   finished is stored once;
3. ``dev.sh run`` again starts only the missing worker, west reports again, including runs that
   were waiting for it, and one PIPELINE PROBLEM OVER says so.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sitewatch.probe.transport import user_agent
from tests.conftest import LocalSite
from tests.faults.stack import record
from tests.receivers import WebhookReceiver
from tests.stack import Stack, wait_gone

SITES = """\
defaults:
  locations: [east, west]
  schedule: 20s
  timeout: 3s
  retries: 0
  notify:
    - webhook: ops_webhook
sites:
  - name: loc-q2
    url: {url}
    quorum: 2
  - name: loc-q1
    url: {url}
    quorum: 1
  - name: loc-fine
    url: {fine}
"""
GRACE_SECONDS = 40  # a run's deadline: 3 s of probing + 40 s


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    with LocalSite() as site:
        site.reply_by_agent[user_agent("west")] = (503, "refused in the west")
        yield site.url


@pytest.fixture(scope="module")
def fine_url() -> Iterator[str]:
    with LocalSite() as site:
        yield site.url


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def celery_stack(site_url, fine_url, receiver) -> Iterator[tuple[Stack, dict]]:
    """A stack of its own, run with the CeleryExecutor by ``dev.sh run``; stopped at the end."""
    env = {
        "SITEWATCH_WORKERS": "1",
        "SITEWATCH_SCHEDULERS": "2",
        "SITEWATCH_VERDICT_GRACE_SECONDS": str(GRACE_SECONDS),
        "AIRFLOW_CONN_OPS_WEBHOOK": receiver.conn(),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    }
    with Stack.temporary("sitewatch-locations-", executor="celery", settings=env) as stack:
        stack.set_sites(SITES.format(url=site_url, fine=fine_url))
        stack.run()
        yield stack, env


def test_two_schedulers_run_and_heartbeat(celery_stack):
    stack, _ = celery_stack
    assert (stack.state / "airflow" / "scheduler-2.pid").exists()

    def beating() -> int:
        with stack.metadata() as db:
            return db.execute(
                "SELECT count(*) FROM job WHERE job_type ="
                " 'SchedulerJob' AND state = 'running'"
                " AND latest_heartbeat > now() - interval '30 seconds'"
            ).fetchone()[0]

    assert wait_for("two schedulers heartbeating", lambda: beating() == 2, timeout=120)


def verdicts(stack: Stack) -> list[tuple]:
    """(site, scheduled_at, verdict, locations) of every stored verdict, oldest first."""
    try:
        with stack.results() as db:
            return db.execute(
                "SELECT site, scheduled_at, verdict, locations FROM site_verdicts"
                " ORDER BY scheduled_at, site"
            ).fetchall()
    except Exception as exc:  # the drain DAG has not created its tables yet
        if "does not exist" in str(exc):
            return []
        raise


def wait_for(what: str, found, timeout: float = 300, stack: Stack | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(3)
    seen = "" if stack is None else f"; latest verdicts {verdicts(stack)[-6:]}; {judged(stack)}"
    raise AssertionError(f"not seen within {timeout:.0f} s: {what}{seen}")


def judged(stack: Stack) -> str:
    """The last lines of the drain's logs that say what the judge did or why it failed."""
    logs = sorted((stack.state / "airflow" / "logs" / "dag_id=sitewatch_drain").rglob("*.log"))
    lines = [
        line[:300]
        for path in logs[-3:]
        for line in path.read_text(errors="replace").splitlines()
        if "judge" in line or "verdict" in line or "Error" in line
    ]
    return "drain log: " + " | ".join(lines[-12:])


def checks(stack: Stack, location: str, after: datetime | None = None) -> list[tuple]:
    with stack.results() as db:
        return db.execute(
            "SELECT site, scheduled_at, attempt FROM site_checks WHERE location = %s"
            " AND scheduled_at >= %s ORDER BY scheduled_at",
            (location, after or datetime(2000, 1, 1, tzinfo=UTC)),
        ).fetchall()


def alerts(receiver: WebhookReceiver, state: str) -> list[dict]:
    return [p for p in receiver.payloads if p["state"] == state]


@pytest.mark.timeout(1500)
def test_quorum_verdicts_a_killed_location_and_its_return(celery_stack, receiver):
    stack, env = celery_stack
    started = time.monotonic()

    # 1. both locations report: partial under quorum 2, down (naming west) under quorum 1
    def both_reported():
        seen = {}
        for site, _, verdict, locations in verdicts(stack):
            if "missing" not in locations.values():
                seen[site] = (verdict, locations)
        return seen if {"loc-q1", "loc-q2", "loc-fine"} <= set(seen) else None

    first = wait_for("a verdict of each site with both locations in", both_reported, 420)
    assert first["loc-q2"] == ("partial", {"east": "up", "west": "down"})
    assert first["loc-q1"] == ("down", {"east": "up", "west": "down"})
    assert first["loc-fine"] == ("up", {"east": "up", "west": "up"})
    down = wait_for("the DOWN alert of loc-q1", lambda: alerts(receiver, "DOWN"), 60)
    assert [a["site"] for a in down] == ["loc-q1"]  # partial never pages
    assert down[0]["locations"] == {"east": "up", "west": "down"}
    assert down[0]["detail"] == "west: status: status 503 not in 200-399"
    first_verdict_s = time.monotonic() - started

    # each location's attempt is in its own task log
    logs = stack.state / "airflow" / "logs" / "dag_id=site_loc-q1"
    west_logs = [p.read_text(errors="replace") for p in logs.rglob("task_id=probe.west/*.log")]
    assert any("location=west" in text and "status=503" in text for text in west_logs)

    # 2. west's worker dies: its checks go missing, east's go on; a site down from west alone
    #    keeps west's last word (silent_location: keep), so it neither recovers nor pages again
    pidfile = stack.state / "airflow" / "worker-west-1.pid"
    pid = int(pidfile.read_text())
    killed_at = datetime.now(UTC)
    os.killpg(pid, signal.SIGKILL)
    assert wait_gone(pid)

    def missing_after_kill():
        gone = {
            site
            for site, at, _, locations in verdicts(stack)
            if at >= killed_at and locations.get("west", "").startswith("missing")
        }
        return gone if gone == {"loc-q1", "loc-q2", "loc-fine"} else None

    wait_for("verdicts with west missing for every site", missing_after_kill, 300, stack)
    silent = {site: (verdict, locations) for site, at, verdict, locations in verdicts(stack)
              if at >= killed_at and locations.get("west", "").startswith("missing")}  # fmt: skip
    assert silent["loc-q1"] == ("down", {"east": "up", "west": "missing, last down"})
    assert silent["loc-q2"] == ("partial", {"east": "up", "west": "missing, last down"})
    assert silent["loc-fine"] == ("up", {"east": "up", "west": "missing, last up"})
    problems = wait_for(
        "PIPELINE PROBLEM for west",
        lambda: [a for a in alerts(receiver, "PIPELINE PROBLEM") if "west" in a["error"]],
        60,
    )
    missing_s = (datetime.now(UTC) - killed_at).total_seconds()
    east_during = checks(stack, "east", killed_at)
    assert {site for site, _, _ in east_during} == {"loc-q1", "loc-q2", "loc-fine"}

    # 3. the same command starts what is missing: west reports again and catches up
    restarted_at = datetime.now(UTC)
    stack.dev("run", timeout=600, **env)
    assert int(pidfile.read_text()) != pid
    back = wait_for(
        "west's checks after the restart",
        lambda: checks(stack, "west", killed_at),
        300,
    )
    caught_up = [row for row in back if row[1] < restarted_at]
    wait_for("a verdict with both locations in after the restart", lambda: [
        v for v in verdicts(stack)
        if v[1] > restarted_at and "missing" not in v[3].values()
    ], 300)  # fmt: skip

    over = wait_for("the all-clear for west", lambda: alerts(receiver, "PIPELINE PROBLEM OVER"))
    back_s = (datetime.now(UTC) - restarted_at).total_seconds()

    # one PIPELINE PROBLEM for the location for the whole outage (not one per site), none for
    # east, one all-clear; loc-q1 paged DOWN once and never RECOVERED: it never came back
    problems = alerts(receiver, "PIPELINE PROBLEM")
    (west,) = [a for a in problems if a["concern"]]
    assert (west["site"], west["concern"]) == (None, "location/west")
    assert west["error"] == "no checks from location west"
    assert "workers of sitewatch-west" in west["detail"]
    assert [(a["concern"], a["since"]) for a in over] == [("location/west", west["since"])]
    # a run with nothing stored from any location (east late too, on a loaded machine) is its
    # site's own pipeline problem, never one of west's
    own = [(a["site"], a["error"]) for a in problems if not a["concern"]]
    assert all(error == "no location reported" for _, error in own), own
    assert [a["site"] for a in alerts(receiver, "DOWN")] == ["loc-q1"]
    assert alerts(receiver, "RECOVERED") == []

    # nothing lost: every probe task that succeeded or failed on a live worker has its row
    def stored_and_lost() -> tuple[list, list, int]:
        with stack.metadata() as meta:
            finished = meta.execute(
                "SELECT r.dag_id, r.logical_date, t.task_id FROM task_instance t"
                " JOIN dag_run r USING (dag_id, run_id)"
                " WHERE t.dag_id LIKE 'site_loc-%%' AND t.state IN ('success', 'failed')"
            ).fetchall()
        with stack.results() as db:
            stored = {
                (f"site_{site}", at, f"probe.{loc}")
                for site, at, loc in db.execute(
                    "SELECT site, scheduled_at, location FROM site_checks"
                )
            }
            doubled = db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM site_checks"
                " GROUP BY site, scheduled_at, location HAVING count(*) > 1) d"
            ).fetchone()[0]
        return finished, [row for row in finished if tuple(row) not in stored], doubled

    # a task that just ended may wait a drain cycle for its row
    finished, lost, doubled = stored_and_lost()
    deadline = time.monotonic() + 60
    while lost and time.monotonic() < deadline:
        time.sleep(3)
        finished, lost, doubled = stored_and_lost()
    assert finished and lost == [], lost[:5]
    assert doubled == 0  # retries: 0, so one attempt per run and location

    record(
        "locations (Celery, 2 locations, SIGKILLed worker)",
        {
            "first_verdict_seconds": round(first_verdict_s),
            "missing_reported_after_kill_seconds": round(missing_s),
            "east_checks_during_outage": len(east_during),
            "west_runs_caught_up_after_restart": len(caught_up),
            "probe_tasks_finished": len(finished),
            "lost": len(lost),
            "doubled": doubled,
            "location_alerts": 1,
            "site_pipeline_alerts_no_location_reported": len(own),
            "all_clear_after_restart_seconds": round(back_s),
        },
    )
