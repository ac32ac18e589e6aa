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
# the roles CPU is reported by; "rest of machine" (cpu_stats) is what none of them used
ROLES = (
    "scheduler",
    "dag-processor",
    "api_server",
    "triggerer",
    "worker",
    "airflow other",
    "postgres",
    "kafka",
    "site server",
)
# What gives an Airflow process its role, looking at the process and then its parents, nearest
# first: a LocalExecutor worker (with the supervisors and task processes it forks) or the
# forkserver the workers come from; else the component whose command line it has or descends
# from. A process an Airflow component forks without exec keeps the component's command line (the
# triggerer's trigger runner, the DAG processor's parsers); one it starts (a trigger's
# subprocess) is found through its parent.
_MARKS = (
    ("LocalExecutor", "worker"),
    ("multiprocessing.forkserver", "worker"),
    ("airflow scheduler", "scheduler"),
    ("airflow dag-processor", "dag-processor"),
    ("airflow api_server", "api_server"),
    ("airflow api-server", "api_server"),
    ("airflow triggerer", "triggerer"),
)


def cpu_by_role(state: Path, pg_port: str, site_server: int) -> dict[str, float]:
    """CPU-seconds so far of the stack in ``state`` by role (``ROLES``): the process trees of its
    Airflow (by ``_MARKS``), Kafka, the PostgreSQL on ``pg_port`` and the bench's site server."""
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
    roots = {
        int((state / "airflow" / "pid").read_text()): "airflow",
        int((state / "kafka" / "pid").read_text()): "kafka",
        postmaster: "postgres",
        site_server: "site server",
    }
    out = dict.fromkeys(ROLES, 0.0)
    for pid, (_, _, cpu) in procs.items():
        chain = []
        while pid in procs and pid not in roots:
            chain.append(procs[pid][1])
            pid = procs[pid][0]
        role = roots.get(pid)
        if role == "airflow":
            marks = (r for cmd in chain for mark, r in _MARKS if mark in cmd)
            role = next(marks, "airflow other")
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
    check all-in and by role; ``rest of machine`` is what no role of the stack accounts for."""
    first, last = samples[0], samples[-1]
    used = {k: last[k] - first[k] for k in ("machine", *ROLES)}
    used["rest of machine"] = used["machine"] - sum(used[r] for r in ROLES)
    return {
        "cpu_busy_pct": 100 * used["machine"] / (last["machine_total"] - first["machine_total"]),
        "cpu_busy_s": used["machine"],
        "cpu_s_per_check": used["machine"] / stored if stored else None,
        "cpu_s_per_check_by_role": {
            k: v / stored if stored else None for k, v in used.items() if k != "machine"
        },
        "cpu_samples": [
            {"at": s["at"].isoformat(), **{k: s[k] - first[k] for k in ("machine", *ROLES)}}
            for s in samples
        ],
    }
