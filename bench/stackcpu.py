"""CPU of a private sitewatch stack by process role, from /proc (for ``bench/sustained.py``).

A sample holds CPU-seconds used so far: the whole machine's busy and total time (all cores, from
/proc/stat) and the stack's by role. The difference of two samples is what was used between them,
including processes that came and went: a reaped child's time is in its parent's.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from common import cpu_busy

TICK = os.sysconf("SC_CLK_TCK")
# the roles CPU is reported by; REST (cpu_stats) is what none of them used
ROLES = (
    "scheduler",
    "dag-processor",
    "api_server",
    "triggerer",
    "worker",
    "celery worker",
    "airflow other",
    "postgres",
    "kafka",
    "redis",
    "site server",
)
REST = "rest of machine"
BY_ROLE = "cpu_s_per_check_by_role"  # cpu_stats's key of CPU-seconds per check by role
# What gives an Airflow process its role: a mark in its command line or an ancestor's. Under
# `airflow standalone` (the LocalExecutor stack) the nearest marked process decides: a LocalExecutor
# worker (with the supervisors and task processes it forks) or the forkserver the workers come from,
# else the component it is or descends from. A process an Airflow component forks without exec
# keeps the component's command line (the triggerer's trigger runner, the DAG processor's parsers);
# one it starts (a trigger's subprocess) is found through its parent. In the Celery stack each
# component and each Celery worker is a tree of its own, and its root's mark decides for the whole
# tree, so that a forkserver the scheduler starts is the scheduler's. A Celery worker renames
# itself and its pool processes "[celeryd: <hostname>:…] … (celery worker …)".
_MARKS = (
    ("LocalExecutor", "worker"),
    ("multiprocessing.forkserver", "worker"),
    ("celery worker", "celery worker"),
    ("[celeryd", "celery worker"),
    ("airflow scheduler", "scheduler"),
    ("airflow dag-processor", "dag-processor"),
    ("airflow api_server", "api_server"),
    ("airflow api-server", "api_server"),
    ("airflow triggerer", "triggerer"),
)


def _mark(command: str) -> str | None:
    return next((role for mark, role in _MARKS if mark in command), None)


def airflow_role(commands: list[str]) -> str:
    """The role of an Airflow process from the command lines of its tree's root, its ancestors
    below the root and its own, in that order (``_MARKS``): ``airflow other`` when none has a
    mark (``airflow standalone`` itself)."""
    marked = _mark(commands[0]) if commands else None
    return marked or next(filter(None, map(_mark, reversed(commands))), "airflow other")


def airflow_roots(state: Path) -> list[int]:
    """The pids of the stack's Airflow trees, from ``scripts/dev.sh``'s pid files: ``airflow
    standalone`` (``airflow/pid``) with its extra schedulers (``airflow/standalone-extra/``), or
    each component and Celery worker (``airflow/<name>.pid``)."""
    folder = state / "airflow"
    files = [folder / "pid", *sorted(folder.glob("*.pid")), *sorted(folder.glob("*/*.pid"))]
    return [int(f.read_text()) for f in files if f.exists()]


def _service_pid(state: Path, name: str) -> int | None:
    pid = state / name / "pid"
    return int(pid.read_text()) if pid.exists() else None


def cpu_by_role(state: Path, pg_port: str, site_server: int) -> dict[str, float]:
    """CPU-seconds so far of the stack in ``state`` by role (``ROLES``): the process trees of its
    Airflow (``airflow_role``), Kafka, Redis (with Celery), the PostgreSQL on ``pg_port`` and the
    bench's site server."""
    procs = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        cpu = sum(int(x) for x in stat[11:15]) / TICK  # utime stime cutime cstime
        procs[int(entry)] = (int(stat[1]), cmd.decode(errors="replace"), cpu)
    port = f"-p {pg_port} "
    postmaster = next(
        (p for p, (_, cmd, _) in procs.items() if "bin/postgres" in cmd and port in cmd), None
    )
    services = {
        _service_pid(state, "kafka"): "kafka",
        _service_pid(state, "redis"): "redis",  # the Celery broker: only in the Celery stack
        postmaster: "postgres",
        site_server: "site server",
    }
    roots = dict.fromkeys(airflow_roots(state), "airflow") | {
        pid: role for pid, role in services.items() if pid
    }
    out = dict.fromkeys(ROLES, 0.0)
    for pid, (_, _, cpu) in procs.items():
        chain = []
        while pid in procs and pid not in roots:
            chain.append(procs[pid][1])
            pid = procs[pid][0]
        role = roots.get(pid)
        if role == "airflow":
            role = airflow_role([procs[pid][1], *reversed(chain)])
        if role:
            out[role] += cpu
    return out


def cpu_sample(state: Path, pg_port: str, site_server: int) -> dict:
    """CPU-seconds so far: the whole machine's busy and total (all cores), the stack's by role."""
    busy, total = cpu_busy()
    return {
        "at": datetime.now(UTC),
        "machine": busy / TICK,
        "machine_total": total / TICK,
        **cpu_by_role(state, pg_port, site_server),
    }


def cpu_stats(samples: list[dict], stored: int) -> dict:
    """CPU over the window (first to last sample): whole machine busy CPU-seconds, and per stored
    check all-in and by role; ``REST`` is what no role of the stack accounts for."""
    first, last = samples[0], samples[-1]
    used = {k: last[k] - first[k] for k in ("machine", *ROLES)}
    used[REST] = used["machine"] - sum(used[r] for r in ROLES)
    return {
        "cpu_busy_pct": 100 * used["machine"] / (last["machine_total"] - first["machine_total"]),
        "cpu_busy_s": used["machine"],
        "cpu_s_per_check": used["machine"] / stored if stored else None,
        BY_ROLE: {k: v / stored if stored else None for k, v in used.items() if k != "machine"},
        "cpu_samples": [
            {"at": s["at"].isoformat(), **{k: s[k] - first[k] for k in ("machine", *ROLES)}}
            for s in samples
        ],
    }
