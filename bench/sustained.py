"""Sustained checks per minute on the run command's stack (LocalExecutor, PostgreSQL metadata).

    python bench/sustained.py [--ks 60 120 240 480] [--minutes 5] [--keep]

Starts a private stack with ``scripts/dev.sh run`` on ports that never clash with the shared one
(state in bench/out/stack; PostgreSQL 45432, Kafka 49092/49093, UI 48080) and a local HTTP server
(its own process), then for each K: writes a sites file of K sites on a 1-minute schedule (each K a
superset of the previous one), waits until Airflow has the K DAGs, lets one minute pass, and
measures a window of ``--minutes``. From Airflow's metadata database: completed checks per minute,
schedule lag (task start minus the run's ``run_after``) p50/p95, missed runs (gaps of more than one
interval between a DAG's consecutive runs); from /proc: CPU busy %. The stack is stopped at the end
unless ``--keep``. ``AIRFLOW__...`` variables exported before the run reach the stack (for A/Bs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from common import (  # noqa: E402
    OUT,
    ROOT,
    cpu_busy,
    loadavg,
    machine,
    median,
    percentile,
    save,
    write_sites,
)

PORTS = {
    "SITEWATCH_PG_PORT": "45432",
    "SITEWATCH_KAFKA_PORT": "49092",
    "SITEWATCH_KAFKA_CONTROLLER_PORT": "49093",
    "SITEWATCH_UI_PORT": "48080",
}
HTTP_PORT = 48181
WORK = OUT / "sustained"


def stack_env(state: Path, sites: Path) -> dict:
    return {
        **os.environ,
        **PORTS,
        "SITEWATCH_STATE_DIR": str(state),
        "SITEWATCH_SITES_FILE": str(sites),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }


def dev(command: str, env: dict) -> None:
    subprocess.run([str(ROOT / "scripts" / "dev.sh"), command], env=env, check=True)


def metadata_dsn(state: Path) -> str:
    password = (state / "pg-password").read_text().strip()
    return f"postgresql://sitewatch:{password}@127.0.0.1:{PORTS['SITEWATCH_PG_PORT']}/airflow"


def start_http() -> subprocess.Popen:
    log = open(WORK / "http.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "common.py"), "serve", str(HTTP_PORT)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    time.sleep(1)
    return proc


def active_site_dags(db) -> int:
    return db.execute(
        "SELECT count(*) FROM dag WHERE dag_id LIKE 'site\\_%' AND NOT is_stale AND NOT is_paused"
    ).fetchone()[0]


def window_stats(db, start: datetime, end: datetime, minutes: float) -> dict:
    """What the metadata DB says about runs due in [start, end)."""
    rows = db.execute(
        """
        SELECT dr.dag_id, dr.run_after, dr.queued_at, dr.start_date, ti.scheduled_dttm,
               ti.queued_dttm, ti.start_date, ti.end_date, ti.state
        FROM dag_run dr
        LEFT JOIN task_instance ti ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id
        WHERE dr.dag_id LIKE 'site\\_%%' AND dr.run_after >= %s AND dr.run_after < %s
        ORDER BY dr.dag_id, dr.run_after
        """,
        (start, end),
    ).fetchall()
    lags, series, phases = [], [], {k: [] for k in ("create", "schedule", "queue", "start", "run")}
    not_started = 0
    for _dag, run_after, run_queued, _run_start, ti_sched, ti_queued, ti_start, ti_end, _ in rows:
        if ti_start is None:
            not_started += 1
            continue
        lag = (ti_start - run_after).total_seconds()
        lags.append(lag)
        series.append((ti_start.isoformat(), lag))
        if run_queued and ti_sched and ti_queued:
            phases["create"].append((run_queued - run_after).total_seconds())
            phases["schedule"].append((ti_sched - run_queued).total_seconds())
            phases["queue"].append((ti_queued - ti_sched).total_seconds())
            phases["start"].append((ti_start - ti_queued).total_seconds())
        if ti_end:
            phases["run"].append((ti_end - ti_start).total_seconds())
    # missed: a DAG's consecutive runs more than 1.5 intervals apart (catchup=False skips ticks)
    missed, last = 0, {}
    for dag_id, run_after, *_ in rows:
        if dag_id in last:
            gap = (run_after - last[dag_id]).total_seconds()
            if gap > 90:
                missed += round(gap / 60) - 1
        last[dag_id] = run_after
    completed = db.execute(
        """
        SELECT count(*) FILTER (WHERE state = 'success'), count(*)
        FROM task_instance
        WHERE dag_id LIKE 'site\\_%%' AND end_date >= %s AND end_date < %s
          AND state IN ('success', 'failed', 'up_for_retry')
        """,
        (start, end),
    ).fetchone()
    return {
        "runs_due": len(rows),
        "not_started": not_started,
        "completed_per_min": completed[1] / minutes,
        "succeeded_per_min": completed[0] / minutes,
        "lag_p50": median(lags) if lags else None,
        "lag_p95": percentile(lags, 95) if lags else None,
        "lag_max": max(lags) if lags else None,
        "missed_runs": missed,
        "phases_p50": {k: median(v) if v else None for k, v in phases.items()},
        "series": series,
    }


def task_log_profile(state: Path, dag_ids: list[str], start: datetime) -> list[dict]:
    """For a few task logs of the window: seconds from the first log line to each milestone."""
    profiles = []
    for dag_id in dag_ids:
        base = state / "airflow" / "logs" / f"dag_id={dag_id}"
        logs = sorted(base.glob("run_id=*/task_id=probe/attempt=1.log"))
        logs = [p for p in logs if datetime.fromtimestamp(p.stat().st_mtime, UTC) > start]
        if not logs:
            continue
        events = []
        for line in logs[-1].read_text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            events.append((doc.get("timestamp"), str(doc.get("event"))[:90]))
        profiles.append({"log": str(logs[-1].relative_to(state)), "events": events})
    return profiles


ROLES = ("scheduler", "dag-processor", "api_server", "triggerer", "worker")


def cpu_by_role(state: Path) -> dict[str, float]:
    """CPU seconds so far of the private stack, by role: Airflow's processes (a LocalExecutor
    worker with the supervisors and task processes it forked and reaped), PostgreSQL, Kafka."""
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        procs[int(entry)] = (int(stat[1]), cmd, sum(int(x) for x in stat[11:15]) / tick)
    roots = {
        "airflow": int((state / "airflow" / "pid").read_text()),
        "postgres": next(
            (pid for pid, (_, cmd, _) in procs.items() if "-p 45432" in cmd and "postgres" in cmd),
            None,
        ),
        "kafka": next(
            (
                pid
                for pid, (_, cmd, _) in procs.items()
                if "kafka.Kafka" in cmd and str(state) in cmd
            ),
            None,
        ),
    }
    out = dict.fromkeys((*ROLES, "airflow other", "postgres", "kafka"), 0.0)
    for pid, (_, cmd, cpu) in procs.items():
        chain, role = pid, None
        while chain in procs and role is None:
            if chain == roots["postgres"]:
                role = "postgres"
            elif chain == roots["kafka"]:
                role = "kafka"
            elif chain == roots["airflow"]:
                role = "airflow other"
            chain = procs[chain][0]
        if role is None:
            continue
        if role == "airflow other":
            role = next((r for r in ROLES if r in cmd), "airflow other")
            if role == "airflow other" and "LocalExecutor" in _ancestry(procs, pid):
                role = "worker"
        out[role] += cpu
    return out


def _ancestry(procs, pid) -> str:
    names = []
    while pid in procs:
        names.append(procs[pid][1])
        pid = procs[pid][0]
    return " ".join(names)


def sample_cpu(state: Path, path: Path, every: float = 15) -> None:
    """Append a CPU-by-role sample to ``path`` (JSON lines) every ``every`` seconds, forever."""
    while True:
        try:
            sample = {"at": datetime.now(UTC).isoformat(), **cpu_by_role(state)}
        except (OSError, ValueError):  # the stack is (re)starting
            sample = None
        if sample:
            with path.open("a") as handle:
                handle.write(json.dumps(sample) + "\n")
        time.sleep(every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[60, 120, 240, 480])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--state", default=str(OUT / "stack"))
    parser.add_argument("--label", default="default")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--sample-cpu", metavar="FILE", help="only sample CPU by role into FILE")
    args = parser.parse_args()
    if args.sample_cpu:
        sample_cpu(Path(args.state), Path(args.sample_cpu))
    WORK.mkdir(parents=True, exist_ok=True)
    state = Path(args.state)
    sites = WORK / "sites.yaml"
    url = f"http://127.0.0.1:{HTTP_PORT}/"
    write_sites(sites, args.ks[0], url, "1m")
    env = stack_env(state, sites)
    http = start_http()
    results = {"machine": machine(), "label": args.label, "ks": {}}
    try:
        dev("run", env)
        db = psycopg.connect(metadata_dsn(state), autocommit=True)
        for k in args.ks:
            write_sites(sites, k, url, "1m")
            t = time.monotonic()
            while active_site_dags(db) < k and time.monotonic() - t < 300:
                time.sleep(5)
            print(f"K={k}: {active_site_dags(db)} DAGs active, warming up", flush=True)
            time.sleep(args.warmup * 60)
            start = datetime.now(UTC)
            busy0, total0 = cpu_busy()
            loads = []
            while datetime.now(UTC) < start + timedelta(minutes=args.minutes):
                time.sleep(15)
                loads.append(os.getloadavg()[0])
            end = datetime.now(UTC)
            busy1, total1 = cpu_busy()
            # runs due late in the window are judged a little later, when they had time to start
            time.sleep(20)
            stats = window_stats(db, start, end, args.minutes)
            stats["cpu_busy_pct"] = 100 * (busy1 - busy0) / (total1 - total0)
            stats["load_avg_1m_mean"] = sum(loads) / len(loads)
            stats["window"] = [start.isoformat(), end.isoformat()]
            sample = ["site_s00000", f"site_s{k - 1:05d}"]
            stats["task_logs"] = task_log_profile(state, sample, start)
            results["ks"][k] = stats
            print(
                f"K={k:>4d}: {stats['completed_per_min']:6.1f} checks/min, lag p50 "
                f"{stats['lag_p50']} p95 {stats['lag_p95']}, missed {stats['missed_runs']}, "
                f"not started {stats['not_started']}, CPU {stats['cpu_busy_pct']:.0f}%, "
                f"load {loadavg()}",
                flush=True,
            )
            save(f"sustained-{args.label}", results)
    finally:
        if not args.keep:
            dev("stop", env)
        http.terminate()
        http.wait()
    save(f"sustained-{args.label}", results)


if __name__ == "__main__":
    main()
