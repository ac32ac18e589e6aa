"""A live Airflow of the tests' own, a local site to watch, and headless Chromium.

The module starts the whole stack with ``scripts/dev.sh run`` on a private stack (tests/stack.py:
a temporary state directory, free ports), so it never touches the developer's stack (``make
run``, ports 8080/15432/19092), and stops it with ``scripts/dev.sh stop`` at the end. The browser
is Debian's ``/usr/bin/chromium`` driven by Playwright (Playwright's own browser downloads are
not used).

The sites file also names ``MULTI_SITE``, checked from three locations with a quorum of two. The
LocalExecutor runs every location's probe here, and the watched site refuses one location (by the
User-Agent the probe sends), so each of its runs ends partial: the drain stores the checks and
judges the verdict as it would across real places. ``several_locations`` adds an hour of older
runs (a down one, a missing location, a retry) so that the page's run matrix has them to show.

Both have an ``slo``, and ``MAINT_SITE`` is in a maintenance window of the sites file for the
whole session, and down (the watched site answers its path 503); ``slo_history`` adds a day of
older checks and rolls the hours up, so that the Sites page has error budgets to show (its
screenshot is the README's), and the last hour's checks of ``MAINT_SITE`` (the first before its
window) and of ``SLOW_SITE``, which is up but slower than its ``degraded_ms`` (the watched site
answers its path late).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from sitewatch.alerting.quorum import DOWN, UP, decide_run
from sitewatch.observation import Observation
from sitewatch.probe.transport import user_agent
from sitewatch.storage.checks import store_batch
from sitewatch.storage.retention import refresh_hourly
from sitewatch.storage.schema import SCHEMA_VERSION
from sitewatch.storage.schema import version as schema_version
from sitewatch.storage.verdicts import record_verdict
from tests.builders import observation
from tests.conftest import LocalSite
from tests.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling home, which on a closed network
# is a stream of refused connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SITE = "local-web"
SITE_TAG = "browser-test"
MULTI_SITE = "global-web"
LOCATIONS = ("eu-west", "us-east", "ap-south")
QUORUM = 2
REFUSED = "us-east"
"""The location the watched site answers 503: one down location, one short of the quorum."""
MULTI_RETRIES = 1
MAINT_SITE = "docs-web"
MAINT_REASON = "moving to a new host"
MAINT_PATH = "/down"
"""Where the watched site answers 503: ``MAINT_SITE`` is down in its window."""
SLOW_SITE = "slow-web"
SLOW_PATH, SLOW_SECONDS, DEGRADED_MS = "/slow", 0.3, 150
"""``SLOW_SITE`` is answered ``SLOW_SECONDS`` late, above its ``degraded_ms``: degraded."""
STATUS_PAGE, COMPONENT = "status", "Web"
"""The sites file's status page and its one component, ``SITE``."""
HISTORY_CHECKS = 288
"""Checks of a day before the last 24 hours that ``slo_history`` stores for each single-location
site: every 5 minutes, one of SITE's down (99% over 30 days: 65.2% of its budget left)."""


class Airflow:
    """The browser tests' handle on their stack (a ``tests.stack.Stack``): ``url`` the UI's
    address, ``api`` calls relative to /api/v2 with requests' keywords (``params``, ``json``),
    ``cli`` the airflow CLI (its output), ``results`` the results database as its owner."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.url = stack.url("")
        self.password = stack.password()
        self.token = stack.token
        self.cli = stack.airflow_cli
        self.results = stack.owner

    def api(self, method: str, path: str, **kwargs) -> dict:
        headers = {"Authorization": f"Bearer {self.token()}"}
        reply = requests.request(
            method, f"{self.url}/api/v2{path}", headers=headers, timeout=60, **kwargs
        )
        reply.raise_for_status()
        return reply.json()


def wait_for(what: str, probe, timeout: float, every: float = 1.0):
    """Call ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
        except requests.RequestException:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def failed_logs(airflow: Airflow, dag_id: str, run_id: str) -> str:
    """What a failed run's failed tasks logged (their last tries, as the UI shows them): a
    failing test's message, so that a failure in CI says why."""
    run = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
    parts = []
    for ti in airflow.api("GET", f"{run}/taskInstances")["task_instances"]:
        if ti["state"] not in ("failed", "upstream_failed"):
            continue
        path = f"{run}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}"
        content = airflow.api("GET", path, params={"full_content": "true"})["content"]
        lines = []
        for entry in content:  # a message, then its other fields (an exception's detail)
            entry = dict(entry) if isinstance(entry, dict) else {"event": entry}
            entry.pop("timestamp", None)
            event = str(entry.pop("event", ""))
            lines.append(f"{event} {entry}" if entry else event)
        parts.append(f"--- {ti['task_id']} ({ti['state']}):\n" + "\n".join(lines[-40:]))
    return "\n".join(parts) or "no task failed"


@pytest.fixture(scope="module")
def watched_site():
    """A local web server the site DAGs check (refusing the location ``REFUSED``); its URL."""
    with LocalSite() as site:
        site.reply = (200, "<html><body>hello from the watched site</body></html>")
        site.reply_by_agent[user_agent(REFUSED)] = (503, "<html><body>refused</body></html>")
        site.reply_by_path[MAINT_PATH] = (503, "<html><body>moving</body></html>")
        site.delay_by_path[SLOW_PATH] = SLOW_SECONDS
        yield site.url


@pytest.fixture(scope="module")
def airflow(watched_site) -> Iterator[Airflow]:
    """Kafka, PostgreSQL and Airflow standalone of this module (``dev.sh run``); stopped
    afterwards, its logs kept in tests/artifacts."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does, as root)")
    with Stack.temporary("sitewatch-browser-") as stack:
        try:
            stack.set_sites(sites_file(watched_site))
            stack.run(timeout=420)
            yield Airflow(stack)
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            logs = {"dev.log": "dev-run.log", "airflow/standalone.log": "standalone.log"}
            for name, kept in logs.items():
                if (stack.state / name).exists():
                    shutil.copyfile(stack.state / name, ARTIFACTS / kept)


def sites_file(watched_site: str) -> str:
    """``SITE``, ``MULTI_SITE``, ``MAINT_SITE`` (in maintenance for the whole session, down)
    and ``SLOW_SITE`` (degraded); status page ``STATUS_PAGE`` shows ``SITE`` as ``COMPONENT``."""
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = (now + timedelta(hours=h) for h in (-1, 3))  # the whole session, and more
    window = f"{{start: '{start.isoformat()}', end: '{end.isoformat()}', reason: {MAINT_REASON}}}"
    return (
        "sites:\n"
        f"  - name: {SITE}\n"
        f"    url: {watched_site}\n"
        "    schedule: 1h\n"
        "    regex: hello\n"
        "    retries: 0\n"
        f"    tags: [{SITE_TAG}]\n"
        "    slo: {target: 99, window: 30d, p95_ms: 200}\n"
        f"  - name: {MULTI_SITE}\n"
        f"    url: {watched_site}\n"
        "    schedule: 5m\n"
        f"    locations: [{', '.join(LOCATIONS)}]\n"
        f"    quorum: {QUORUM}\n"
        f"    retries: {MULTI_RETRIES}\n"
        "    retry_delay: 1s\n"
        f"    tags: [{SITE_TAG}]\n"
        "    slo: {target: 95, window: 7d}\n"
        f"  - name: {MAINT_SITE}\n"
        f"    url: {watched_site.rstrip('/')}{MAINT_PATH}\n"
        "    schedule: 1h\n"
        "    retries: 0\n"
        f"    tags: [{SITE_TAG}]\n"
        "    slo: {target: 99.5, window: 30d}\n"
        f"    maintenance: [{window}]\n"
        f"  - name: {SLOW_SITE}\n"
        f"    url: {watched_site.rstrip('/')}{SLOW_PATH}\n"
        "    schedule: 1h\n"
        "    retries: 0\n"
        f"    degraded_ms: {DEGRADED_MS}\n"
        f"    tags: [{SITE_TAG}]\n"
        "status_pages:\n"
        f"  - id: {STATUS_PAGE}\n"
        "    title: Browser test status\n"
        f"    components: [{{site: {SITE}, name: {COMPONENT}}}]\n"
    )


@pytest.fixture(scope="module")
def dags_parsed(airflow):
    """Wait until the site DAG and the drain DAG are parsed, and unpause both."""
    wanted = {f"site_{SITE}", "sitewatch_drain"}

    def parsed():
        dags = airflow.api("GET", "/dags", params={"limit": 100})["dags"]
        return {d["dag_id"]: d for d in dags if d["dag_id"] in wanted}

    dags = wait_for("the DAGs to be parsed", lambda: len(parsed()) == 2 and parsed(), 120)
    for dag_id in wanted:
        airflow.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    return dags


@pytest.fixture(scope="module")
def several_locations(airflow, watched_site) -> list[datetime]:
    """An hour of older runs of ``MULTI_SITE`` (every 5 minutes, the newest half an hour ago,
    before any run of its DAG in this stack), stored as the drain stores them: each location's
    attempts and each run's verdict by ``decide_run``. One run is down (two locations), one
    partial, one misses ap-south, and in one eu-west needed its retry. Returns them, newest first.

    The verdicts go in first: the drain's sweep decides runs that have checks and no verdict,
    and must find none of these.
    """
    newest = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    newest -= timedelta(minutes=newest.minute % 5)
    runs = [newest - timedelta(minutes=5 * i) for i in range(12)]
    down = {1: {"us-east", "ap-south"}, 8: {"us-east"}}
    missing, retried = {4: "ap-south"}, {6: "eu-west"}
    with airflow.results() as conn:
        current = lambda: schema_version(conn) >= SCHEMA_VERSION  # noqa: E731
        wait_for("the drain to create the tables", current, 180, every=2)
        observations = []
        for i, at in enumerate(runs):
            seen = {}
            for n, loc in enumerate(LOCATIONS):
                if missing.get(i) == loc:
                    continue
                is_down = loc in down.get(i, ())
                ms = 90.0 + 37 * ((i + 2 * n) % 5)
                observations += _attempts(watched_site, at, loc, ms, is_down, retried.get(i) == loc)
                seen[loc] = DOWN if is_down else UP
            decision = decide_run(LOCATIONS, QUORUM, seen, deadline_passed=True)
            record_verdict(conn, MULTI_SITE, at, decision.verdict.value, QUORUM, decision.locations)
        store_batch(conn, observations)
    return runs


@pytest.fixture(scope="module")
def slo_history(airflow, watched_site, several_locations) -> None:
    """A day of older checks of ``SITE`` and ``MAINT_SITE`` (``HISTORY_CHECKS`` each, from 49 to
    25 hours ago, so the last 24 hours of ``SITE`` are the stack's own), then the hourly rollup
    refreshed as the maintenance DAG does, for these and ``several_locations``' runs: the SLO
    figures read it. And the last hour's checks (``recent_states``) of ``MAINT_SITE`` and
    ``SLOW_SITE``, as their own DAGs make them, so the pages have their states to show at once.
    """
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=49)
    observations = [
        observation(
            site,
            at,
            up=up,
            url=watched_site,
            checked_at=at + timedelta(seconds=1),
            response_time_ms=80.0 + 9 * (i % 7) if up else None,
        )
        for i in range(HISTORY_CHECKS)
        for at in [start + timedelta(minutes=5 * i)]
        for site, up in ((SITE, i != 100), (MAINT_SITE, True))
    ]
    observations += recent_states(watched_site)
    with airflow.results() as conn:
        store_batch(conn, observations)
        refresh_hourly(conn, datetime.now(UTC), late_hours=72)


def recent_states(url: str) -> list[Observation]:
    """``MAINT_SITE``'s checks 70, 40 and 20 minutes ago: up before its window (which began an
    hour before the session), then down in it, stored marked ``maintenance`` as the task marks
    them; ``SLOW_SITE``'s 40 and 20 minutes ago, up and slower than its ``degraded_ms``."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    maint = [
        observation(MAINT_SITE, now - timedelta(minutes=m), up=m > 60, maintenance=m < 60,
                    url=url.rstrip("/") + MAINT_PATH, response_time_ms=20.0 + m)
        for m in (70, 40, 20)
    ]  # fmt: skip
    slow = [
        observation(SLOW_SITE, now - timedelta(minutes=m), url=url.rstrip("/") + SLOW_PATH,
                    response_time_ms=1000 * SLOW_SECONDS + m)
        for m in (40, 20)
    ]  # fmt: skip
    return maint + slow


def _attempts(url: str, at: datetime, location: str, ms: float, down: bool, retried: bool):
    """One location's attempts in one run: a timeout then a timeout (down), a timeout then an up
    (retried), or one up attempt. ``final`` as the probe task sets it: up, or no retry remains."""

    def attempt(n: int, up: bool) -> Observation:
        return observation(
            MULTI_SITE, at, up=up, url=url, location=location, attempt=n,
            final=up or n > MULTI_RETRIES,
            checked_at=at + timedelta(seconds=3 + 31 * (n - 1)),
            status_code=200 if up else None, response_time_ms=ms if up else None,
            error=None if up else "timeout",
            error_detail=None if up else "no response within 10 s",
        )  # fmt: skip

    if down:
        return [attempt(1, False), attempt(2, False)]
    return [attempt(1, False), attempt(2, True)] if retried else [attempt(1, True)]


# Module scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it lives, and later tests that use asyncio (dag.test() runs triggers) must not
# find one running.
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, airflow):
    """A page logged in to Airflow as admin (through the login form)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(airflow.url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(airflow.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    yield page
    context.close()


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
