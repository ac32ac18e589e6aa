"""Hostile sites beside healthy ones in one triggerer: the healthy checks do not wait for them.

A probe in the triggerer holds a thread of the trigger pool for its whole attempt, so a site that
drips or stays silent holds one for its full timeout. 40 healthy sites are checked every minute
beside 24 hostile ones from ``hostile.py``'s catalogue (10 s timeout, no retries) and 80 sites
that accept and never answer, with a 60 s timeout: more than the 64 threads the pool once had,
held for a minute each (the pool now has a thread for each trigger the triggerer may hold, and a
site one probe in flight at most). The window is the minute in which every hung probe is in
flight (each hung site is checked once), and each healthy and each hostile site is due once in it.

Had the hostile probes starved the pool, a healthy probe would have queued behind them, and had
one blocked the triggerer's event loop, every trigger would have stalled with it; either costs up
to the hostile timeout. So no healthy probe may wait that long between its trigger starting (the
triggerer's "trigger … starting" line) and the probe starting (``checked_at``), Airflow's
watchdog may never see the loop blocked that long, and every check due in either window must be
stored, the healthy ones up, the hostile ones down with the error the catalogue names. The whole
lag, ``checked_at − scheduled_at``, also carries the scheduler's delay, which follows the
machine's load: its distributions are recorded, not asserted. (The healthy sites' lag with no
hostile site beside them is the sustained benchmark's, bench/README.md.)
"""

from __future__ import annotations

import json
import re
import statistics
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.config.offset import auto_offset
from tests import hostile
from tests.faults.stack import (  # noqa: F401
    Stack,
    private_airflow,
    private_stack,
    record,
    site_server,
)

HEALTHY = 40
HOSTILE = 24  # six of each kind in DRIP_OR_SILENT
TIMEOUT = timedelta(seconds=10)
MINUTE = timedelta(minutes=1)
DRIP_OR_SILENT = ("drip_body", "drip_headers", "never_answers", "tls_silent")
HUNG = 80  # more than OLD_POOL, with room for connections spread before the window
HUNG_TIMEOUT = timedelta(seconds=60)
# Each site's offset comes round once (40 healthy checks, 24 hostile ones, spread over the
# minute) while the hung probes hold their threads.
WINDOW = timedelta(seconds=60)
OLD_POOL = 64  # SITEWATCH_PROBE_THREADS' default before the pool followed the triggerer's capacity
SETTINGS = "defaults:\n  schedule: 1m\n  timeout: 10s\n  retries: 0\nsites:\n"
BLOCKED = re.compile(r"async thread was blocked for ([0-9.]+) seconds")
DEADLOCKED = "event loop appears deadlocked"


def sites_yaml(urls: dict[str, str], hung: dict[str, str] | None = None) -> str:
    # A hung site's one attempt is due at once (a daily schedule's last tick) and holds its thread
    # through the window; then it resumes on a worker to fail, once: a run every minute would put
    # a hundred failing attempts a minute on the workers, where the hostile ones are published.
    timeout = f"    timeout: {HUNG_TIMEOUT.seconds}s\n    schedule: '0 0 * * *'\n"
    return SETTINGS + "".join(
        [f"  - name: {n}\n    url: {u}\n" for n, u in urls.items()]
        + [f"  - name: {n}\n    url: {u}\n{timeout}" for n, u in (hung or {}).items()]
    )


class HungServer(hostile.HostileServer):
    """``hostile.never_answers`` for any number of sites at once; ``connected`` holds when each
    probe connected (it hangs up ``HUNG_TIMEOUT`` later)."""

    request_queue_size = 256  # every hung site connects at once

    def __init__(self) -> None:
        self.connected: list[datetime] = []
        super().__init__(hostile.never_answers)

    def process_request(self, request, client_address):
        self.connected.append(datetime.now(UTC))
        super().process_request(request, client_address)

    def wait_connected(self, count: int, stack: Stack, timeout: float = 240) -> datetime:
        """Wait until ``count`` probes have connected (every hung site's first one is in flight);
        return that moment."""
        deadline = time.monotonic() + timeout
        while len(self.connected) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.connected)} of {count} hung probes connected; {stack.diagnose()}"
            )
            time.sleep(1)
        return datetime.now(UTC)


def settle(stack: Stack, dag_like: str, count: int, timeout: float = 300) -> datetime:
    """Wait until each of the ``count`` matching DAGs has finished a run; return that moment.

    A site added to the file is due at once (its latest tick), so the sites just added start in
    one burst; from here on each runs at its own offset in the minute.
    """
    deadline = time.monotonic() + timeout
    while True:
        done = {t["dag_id"] for t in stack.tries(dag_like) if t["state"] in ("success", "failed")}
        if len(done) >= count:
            return datetime.now(UTC)
        assert time.monotonic() < deadline, (
            f"{len(done)} of {count} {dag_like} finished a run; {stack.diagnose()}"
        )
        time.sleep(2)


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def due(names: list[str], start: datetime, window: timedelta = WINDOW) -> set[tuple]:
    """(site, scheduled_at, 1) of every check due in ``[start, start + window)``: whole minutes
    plus each site's automatic offset."""
    keys = set()
    for name in names:
        offset = auto_offset(name, MINUTE)
        at = (start - offset).replace(second=0, microsecond=0) + offset
        at += MINUTE if at < start else timedelta(0)
        while at < start + window:
            keys.add((name, at, 1))
            at += MINUTE
    return keys


def checks(stack: Stack, prefix: str) -> dict[tuple, tuple]:
    """First attempts of the test's sites by key: (checked_at, up, error, error_detail)."""
    with stack.results() as db:
        rows = db.execute(
            "SELECT site, scheduled_at, attempt, checked_at, up, error, error_detail"
            " FROM site_checks WHERE site LIKE %s AND attempt = 1",
            (f"{prefix}-%",),
        ).fetchall()
    return {row[:3]: row[3:] for row in rows}


def trigger_started(stack: Stack, dag_id: str, run_id: str, timeout: float = 180) -> datetime:
    """When the triggerer started the run's first try: its "trigger … starting" line, in the log
    the triggerer writes out once the trigger is done (``attempt=1.log.trigger.<job>.log``; a
    loaded triggerer wrote one of the window's last checks more than a minute after it was
    stored)."""
    folder = stack.state / "airflow" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    deadline = time.monotonic() + timeout
    while True:
        for path in (folder / "task_id=probe").glob("attempt=1.log.trigger.*.log"):
            for line in path.read_text(errors="replace").splitlines():
                entry = json.loads(line) if line.endswith("}") else {}  # not one being written
                event = entry.get("event", "")
                if event.startswith("trigger ") and event.endswith(" starting"):
                    return datetime.fromisoformat(entry["timestamp"])
        assert time.monotonic() < deadline, f"no trigger log for {dag_id} {run_id}"
        time.sleep(1)


def figures(seconds: list[float]) -> dict:
    return {
        "checks": len(seconds),
        "p50_s": round(statistics.median(seconds), 2),
        "p95_s": round(statistics.quantiles(seconds, n=20, method="inclusive")[18], 2),
        "max_s": round(max(seconds), 2),
    }


@pytest.mark.timeout(900)  # about 3 minutes, plus the private stack's start when it runs first
def test_hostile_sites_do_not_delay_healthy_ones_in_the_triggerer(
    private_airflow: Stack,  # noqa: F811
    site_server,  # noqa: F811
):
    stack, prefix = private_airflow, f"hx{uuid.uuid4().hex[:4]}"
    healthy = {f"{prefix}-ok-{i:03d}": site_server.url for i in range(HEALTHY)}
    catalogue = [t for t in hostile.TARGETS if t.name in DRIP_OR_SILENT]
    targets = {f"{prefix}-bad-{i:02d}": catalogue[i % len(catalogue)] for i in range(HOSTILE)}
    servers = {name: hostile.HostileServer(t.behaviour) for name, t in targets.items()}
    bad = {name: hostile.url_of(t, servers[name]) for name, t in targets.items()}
    hung_server = HungServer()
    hung = {
        f"{prefix}-hung-{i:03d}": f"http://127.0.0.1:{hung_server.port}/{i}" for i in range(HUNG)
    }
    previous = (stack.state / "sites.yaml").read_text()
    triggerer_log = stack.state / "airflow" / "triggerer.log"
    log_from = triggerer_log.stat().st_size
    try:
        # the first runs of sites just added are due at once: the window starts after that burst
        stack.set_sites(sites_yaml({**healthy, **bad}))
        settle(stack, f"site_{prefix}-ok-%", HEALTHY)
        settle(stack, f"site_{prefix}-bad-%", HOSTILE)
        stack.set_sites(sites_yaml({**healthy, **bad}, hung))
        start = hung_server.wait_connected(HUNG, stack)
        sleep_until(start + WINDOW)
        windows = {"beside_hostile_and_hung": due(list(healthy), start)}
        due_hostile = due(list(bad), start)
        stack.wait_stored(f"{prefix}-%", windows["beside_hostile_and_hung"] | due_hostile)
        hung_spans = [(t, t + HUNG_TIMEOUT) for t in list(hung_server.connected)]
        runs = {
            (t["dag_id"].removeprefix("site_"), t["logical_date"]): (t["dag_id"], t["run_id"])
            for t in stack.tries(f"site_{prefix}-ok-%")
        }
        started = {k: trigger_started(stack, *runs[k[:2]]) for w in windows.values() for k in w}
    finally:
        stack.set_sites(previous)
        for server in [*servers.values(), hung_server]:
            server.stop()
    with triggerer_log.open("rb") as log:
        log.seek(log_from)
        loop_log = log.read().decode(errors="replace")

    found = checks(stack, prefix)
    lag = {w: [(found[k][0] - k[1]).total_seconds() for k in keys] for w, keys in windows.items()}
    wait = {
        w: [(found[k][0] - started[k]).total_seconds() for k in keys] for w, keys in windows.items()
    }
    blocked = max((float(s) for s in BLOCKED.findall(loop_log)), default=0.0)
    # a hostile probe holds its thread from its start until its timeout
    spans = [(found[k][0], found[k][0] + TIMEOUT) for k in due_hostile]
    healthy_due = windows["beside_hostile_and_hung"]
    started_beside = sum(any(s <= found[k][0] < e for s, e in spans) for k in healthy_due)
    errors = Counter((found[k][2], targets[k[0]].name) for k in due_hostile)
    # hung probes in flight as each healthy check of the window started
    beside_hung = [sum(s <= found[k][0] < e for s, e in hung_spans) for k in healthy_due]

    for k in healthy_due:
        assert found[k][1], f"{k[0]} was down at {k[1]}: {found[k][2:]}"
    for k in due_hostile:
        _, up, error, detail = found[k]
        target = targets[k[0]]
        assert (up, error) == (False, target.kind), (target.name, found[k])
        assert target.detail in detail, (target.name, detail)
    # the hostile probes were in flight while the healthy ones started, not at other moments
    assert started_beside > len(healthy_due) // 2, started_beside
    # more hung probes than the old pool's threads were in flight as the healthy checks started
    assert statistics.median(beside_hung) > OLD_POOL, Counter(beside_hung)
    for window, seconds in wait.items():
        assert max(seconds) < TIMEOUT.total_seconds(), (window, figures(seconds))
    assert blocked < TIMEOUT.total_seconds() and DEADLOCKED not in loop_log, blocked
    record(
        "hostile_in_triggerer",
        {
            "healthy_sites": HEALTHY,
            "hostile_sites": {t.name: sum(x is t for x in targets.values()) for t in catalogue},
            "hostile_timeout_s": TIMEOUT.total_seconds(),
            "window_s": WINDOW.total_seconds(),
            "healthy_lag": {w: figures(seconds) for w, seconds in lag.items()},
            "healthy_pool_wait": {w: figures(seconds) for w, seconds in wait.items()},
            "loop_blocked_max_s": blocked,
            "healthy_checks_started_beside_a_hostile_probe": started_beside,
            "hostile_probes_in_flight_max": max(
                sum(s <= start < e for s, e in spans) for start, _ in spans
            ),
            "hostile_checks": {f"{error} ({name})": n for (error, name), n in errors.items()},
            "hung_sites": HUNG,
            "hung_timeout_s": HUNG_TIMEOUT.total_seconds(),
            "hung_probes_in_flight_at_healthy_starts": {
                "min": min(beside_hung),
                "median": statistics.median(beside_hung),
                "max": max(beside_hung),
            },
        },
    )
