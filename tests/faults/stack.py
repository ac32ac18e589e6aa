"""The fault suite's private stack: its own PostgreSQL, Kafka and Airflow, real processes.

Fault tests kill brokers and restart databases, so they never touch the shared stack. The session
fixture ``private_stack`` starts Kafka and PostgreSQL of a ``Stack`` (the one harness,
tests/stack.py, with what the fault tests break, read and wait for) and stops them after the last
test of its group that uses them (tests/faults/conftest.py; one stack per process of make test).
``private_airflow`` runs Airflow's four components on it as separate processes (what ``airflow
standalone`` runs in one process group), so that a test can restart one of them alone.

Figures for the reliability report go through ``record()`` into
``tests/artifacts/reliability-faults.json``.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import psycopg
import pytest

import tests.stack
from tests.faults import report
from tests.stack import COMPONENTS, ROOT, wait_gone

ARTIFACT = ROOT / "tests" / "artifacts" / "reliability-faults.json"
# Lowered for the fault tests only: a dead broker fails an attempt in 5 s instead of 30 s.
KAFKA_MESSAGE_TIMEOUT_MS = 5000


class Stack(tests.stack.Stack):
    """The private stack (tests/stack.py) with what fault tests do to it and read from it."""

    def kafka_pid(self) -> int:
        return int((self.state / "kafka" / "pid").read_text())

    def kill_kafka(self) -> None:
        """SIGKILL the broker (its whole process group) and wait until it is gone."""
        pid = self.kafka_pid()
        os.killpg(pid, signal.SIGKILL)
        wait_gone(pid)

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on our cluster, as its owner (``postgres`` when we are root)."""
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        pg_ctl = str(bindir[-1]) if bindir else "pg_ctl"
        command = [pg_ctl, "-D", str(self.pg_dir() / "data"), *args]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, timeout=120, stdout=subprocess.DEVNULL)

    def restart_airflow(self) -> None:
        """Stop every component, then start them all again (a cold start on the same DB)."""
        for name in reversed(COMPONENTS):
            self.stop_component(name)
        self._token = None
        for name in COMPONENTS:
            self.start_component(name)
        self.wait_api()

    def health(self) -> dict[str, str]:
        """Each heartbeating component's status from the API (``/api/v2/monitor/health``):
        ``healthy`` or ``unhealthy``, keyed by component name as in ``COMPONENTS``; every one is
        ``unreachable`` when the API does not answer."""
        try:
            with urllib.request.urlopen(self.url("/api/v2/monitor/health"), timeout=10) as r:
                body = json.loads(r.read())
        except (OSError, ValueError):
            return {name: "unreachable" for name in COMPONENTS}
        names = {
            "scheduler": "scheduler",
            "triggerer": "triggerer",
            "dag_processor": "dag-processor",
        }
        return {
            names[k]: (v or {}).get("status") or "unknown" for k, v in body.items() if k in names
        }

    def ensure_airflow(self, timeout: float = 120) -> dict[str, str]:
        """Restart every component that is dead, started before PostgreSQL last did, or reported
        unhealthy for ``timeout`` seconds; return {name: why} of those restarted, with the tail
        of the log of each.

        An Airflow component does not survive its database's restart (a query in flight ends
        it, at once or minutes later: a triggerer alive at a module's start died during its
        test), so one older than the database's start is restarted although it still runs."""
        restarted = {}
        with self.metadata() as db:
            (database_started,) = db.execute(
                "SELECT extract(epoch FROM pg_postmaster_start_time())::float8"
            ).fetchone()
        for name in COMPONENTS:
            if not self.alive(name):
                restarted[name] = "dead: " + self.log_tail(name)
            elif self.pidfile(name).stat().st_mtime < database_started:
                restarted[name] = "started before PostgreSQL restarted"
            else:
                continue
            self.stop_component(name)
            self.start_component(name)
        self.wait_api()
        deadline = time.monotonic() + timeout
        while (sick := [n for n, s in self.health().items() if s != "healthy"]) and (
            time.monotonic() < deadline
        ):
            time.sleep(3)
        for name in sick:
            restarted[name] = "unhealthy: " + self.log_tail(name)
            self.stop_component(name)
            self.start_component(name)
        return restarted

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last ``lines`` lines of a component's log, for a failure message."""
        path = self.state / "airflow" / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def diagnose(self) -> str:
        """What a failed wait should report: each component's liveness and health."""
        health = self.health()
        return "; ".join(
            f"{name}: {'alive' if self.alive(name) else 'DEAD'}, {health.get(name, '-')}"
            for name in COMPONENTS
        )

    def stored(self, site_like: str) -> list[tuple]:
        """(site, scheduled_at, attempt, up) of every site_checks row of the matching sites."""
        with self.results() as db:
            return db.execute(
                "SELECT site, scheduled_at, attempt, up FROM site_checks WHERE site LIKE %s",
                (site_like,),
            ).fetchall()

    def wait_stored(self, site_like: str, keys: set[tuple], timeout: float = 240) -> list[tuple]:
        """Wait until rows for every (site, scheduled_at, attempt) in ``keys`` are stored (the
        drain DAG stores them); return all rows of the matching sites."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                rows = self.stored(site_like)
            except psycopg.errors.UndefinedTable:
                rows = []  # the drain DAG has not created its tables yet
            if keys <= {r[:3] for r in rows}:
                return rows
            if time.monotonic() > deadline:
                missing = keys - {r[:3] for r in rows}
                dead = [n for n in COMPONENTS if self.pidfile(n).exists() and not self.alive(n)]
                raise AssertionError(
                    f"{len(missing)} never stored: {sorted(missing)[:5]}"
                    + (f"; Airflow components dead: {dead} (see their logs)" if dead else "")
                )
            time.sleep(2)

    def drain_waiting(self, timeout: float = 300) -> None:
        """Wait until the drain DAG waits in the triggerer (its sensor or its drain deferred)."""
        deadline = time.monotonic() + timeout
        query = (
            "SELECT count(*) FROM task_instance WHERE dag_id = 'sitewatch_drain'"
            " AND state = 'deferred'"
        )
        while time.monotonic() < deadline:
            with self.metadata() as db:
                if db.execute(query).fetchone()[0]:
                    return
            time.sleep(2)
        raise AssertionError(f"the drain never waited in the triggerer; {self.diagnose()}")

    def ti_states(self, dag_like: str) -> dict[str, int]:
        """Task instances of the matching DAGs by state (current tries only)."""
        with self.metadata() as db:
            rows = db.execute(
                "SELECT coalesce(state, 'none'), count(*) FROM task_instance "
                "WHERE dag_id LIKE %s GROUP BY 1",
                (dag_like,),
            ).fetchall()
        return dict(rows)

    def wait_runs_done(self, dag_like: str, count: int, timeout: float) -> None:
        """Wait until ``count`` task instances of the matching DAGs are success or failed."""
        deadline = time.monotonic() + timeout
        states: dict[str, int] = {}
        while time.monotonic() < deadline:
            states = self.ti_states(dag_like)
            if states.get("success", 0) + states.get("failed", 0) >= count:
                return
            time.sleep(3)
        raise AssertionError(
            f"runs of {dag_like} not done after {timeout:.0f} s: {states}; {self.diagnose()}"
        )

    def tries(self, dag_like: str) -> list[dict]:
        """Every try of every ``probe`` task of the matching DAGs: earlier tries (from
        task_instance_history) and the current one, with the run's logical date."""
        query = """
            SELECT t.dag_id, t.run_id, r.logical_date, t.try_number, t.state, t.start_date
            FROM {table} t JOIN dag_run r USING (dag_id, run_id)
            WHERE t.dag_id LIKE %s AND t.task_id = 'probe'
        """
        found = []
        with self.metadata() as db:
            for table in ("task_instance_history", "task_instance"):
                cur = db.execute(query.format(table=table), (dag_like,))
                names = [c.name for c in cur.description]
                found += [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return found

    def task_log(self, attempt: dict) -> str:
        """The task log of one try (Airflow's default log file layout), or "" if none."""
        path = (
            self.state
            / "airflow"
            / "logs"
            / f"dag_id={attempt['dag_id']}"
            / f"run_id={attempt['run_id']}"
            / "task_id=probe"
            / f"attempt={attempt['try_number']}.log"
        )
        return path.read_text(errors="replace") if path.exists() else ""


class HoldingServer(http.server.ThreadingHTTPServer):
    """A local site that answers 200 "ok"; ``hold(n)`` makes the next ``n`` requests wait for
    each other (or 90 s), so that ``n`` probes are provably in flight at one moment."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_port}/"
        self.requests = 0
        self._lock = threading.Lock()
        self._gate: threading.Barrier | None = None
        self.all_waiting = threading.Event()
        self.release = threading.Event()

    def hold(self, n: int) -> None:
        self.all_waiting.clear()
        self.release.clear()
        self._held = n
        self._gate = threading.Barrier(n, action=self.all_waiting.set)

    def arrive(self) -> None:
        with self._lock:
            self.requests += 1
            gate = self._gate
            if gate is not None:
                self._held -= 1
                if self._held == 0:
                    self._gate = None
        if gate is not None:
            with suppress(threading.BrokenBarrierError):
                gate.wait(90)
            self.release.wait(90)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.arrive()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def record(section: str, figures: dict) -> None:
    """Merge ``figures`` under ``section`` into the reliability artifact (JSON)."""
    recorded_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report.merge(ARTIFACT, section, {**figures, "recorded_at": recorded_at})


@pytest.fixture(scope="session")
def site_server() -> Iterator[HoldingServer]:
    server = HoldingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


# Test modules import these fixtures by name, which makes each module's copy a fixture of its own
# that pytest would set up once per module. They share one instance through _SHARED instead: the
# first copy set up starts it, and stop_shared() stops it: after the last test that uses it
# (tests/faults/conftest.py), or at the end of the session.
_SHARED: dict[str, object] = {}
_STARTED = ExitStack()


def _shared(name: str, start):
    if name not in _SHARED:
        _SHARED[name] = _STARTED.enter_context(start())
    return _SHARED[name]


def stop_shared() -> None:
    """Stop the private stack's Airflow, then its services (nothing if they do not run)."""
    _SHARED.clear()
    _STARTED.close()


@pytest.fixture(scope="session")
def private_airflow(private_stack: Stack) -> Iterator[Stack]:
    """Airflow on the private stack, reading ``$STATE/sites.yaml`` (empty at first).

    Shared by every module; each module that uses it first gets its components checked, and any
    that died or stopped heartbeating restarted (``Stack.ensure_airflow``): a module before it
    may have restarted PostgreSQL under them, which a component may not survive."""
    stack = _shared("airflow", lambda: _airflow(private_stack))
    restarted = stack.ensure_airflow()
    if restarted:
        warnings.warn(f"private Airflow: restarted {restarted}", stacklevel=1)
    yield stack
    stop_shared()


@contextmanager
def _airflow(stack: Stack) -> Iterator[Stack]:
    stack.set_sites("sites: []\n")
    kafka = json.loads(stack.env["AIRFLOW_CONN_SITEWATCH_KAFKA"])
    kafka["extra"]["message.timeout.ms"] = KAFKA_MESSAGE_TIMEOUT_MS
    extra = {
        "AIRFLOW_CONN_SITEWATCH_KAFKA": json.dumps(kafka),
        # a crashing component (the triggerer's runner once died of SIGSEGV here) leaves a trace
        "PYTHONFAULTHANDLER": "true",
    }
    with stack.airflow(**extra):
        yield stack


@pytest.fixture(scope="session")
def private_stack() -> Iterator[Stack]:
    """Kafka and PostgreSQL of our own, stopped and deleted after the last test that uses them."""
    yield _shared("stack", _services)
    stop_shared()


@contextmanager
def _services() -> Iterator[Stack]:
    with Stack.temporary("sitewatch-faults-") as stack:
        stack.services()
        yield stack
