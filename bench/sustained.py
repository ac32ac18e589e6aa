"""Sustained checks per minute on the run command's stack (PostgreSQL metadata), either executor.

    python bench/sustained.py [--executor local|celery] [--probe-in triggerer|worker]
        [--location NAME] [--schedule 1m] [--ks 600 1000] [--minutes 5] [--warmup MINUTES]
        [--profile SECONDS] [--flows N] [--settings NAME] [--label NAME] [--keep]

Starts a fresh private stack with ``scripts/dev.sh run`` (state in bench/out/stack/<label>, wiped
first; ports of its own, ``stack.py``) with ``SITEWATCH_EXECUTOR`` set to ``--executor``
(``local``: ``airflow standalone``; ``celery``: each component its own process, Redis,
``SITEWATCH_WORKERS`` Celery workers per location) and ``SITEWATCH_PROBE_IN`` to ``--probe-in``,
and a local HTTP server (its own process). Then for each K: writes a sites file of K sites on
``--schedule`` (each K a superset of the previous one; offsets ``auto``; with a ``--location``
other than ``local``, every site has ``locations: [<location>]``, so each check is a task on that
location's workers), waits until Airflow has the K DAGs, lets ``--warmup`` pass (default: one
interval), and measures a window of ``--minutes``. With ``--flows N`` (issue 26), each K's window
is followed by a second in the same stack with N flow sites beside the K (``common.flow_site``:
log in, read, delete, against the site server's JSON API), its figures also by kind: lag, missed
runs, and CPU-seconds per check, a single check's from the K's own window and a flow's the rest of
the second window's CPU over its stored flows.

From the results table ``site_checks`` (the headline): checks due in the window (every site's
``tick + offset`` moments) vs stored (rows with ``scheduled_at`` in the window), lag
``checked_at − scheduled_at`` of first attempts p50/p95/max. From Airflow's metadata database:
task instances completed per minute, missed runs (a DAG's consecutive runs more than 1.5
intervals apart), the phases of a run. From /proc: the whole machine's busy CPU-seconds and each
role's (Airflow component, LocalExecutor or Celery workers, PostgreSQL, Kafka, Redis, the site
server; ``stackcpu.py``), per stored check, sampled every 15 s. Saved to
bench/out/sustained/<label>.json, label ``<executor>-<place>-<schedule>-<Ks>[+<N>f]`` (place:
``--probe-in``, or ``@<location>`` for another location). The stack is stopped at the end unless
``--keep``. ``AIRFLOW__...`` and ``SITEWATCH_WORKERS`` variables exported before the run reach the
stack, and so do ``--settings``'s (``SETTINGS``: ``before`` puts the earlier defaults beside
today's in one run; the label gets ``~<name>``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from common import (  # noqa: E402
    KINDS,
    OUT,
    loadavg,
    machine,
    median,
    percentile,
    save,
    write_sites,
)
from pyspy import record, summarize  # noqa: E402
from stack import (  # noqa: E402
    EXECUTORS,
    HTTP_PORT,
    PORTS,
    bench_stack,
    celery_facts,
    fresh_state,
    start_http,
)
from stackcpu import airflow_roots, cpu_sample, cpu_stats  # noqa: E402

from sitewatch.config.loader import load_sites  # noqa: E402
from sitewatch.names import LOCAL_LOCATION, SITE_DAG_PREFIX, site_dag_id  # noqa: E402

PLACES = ("triggerer", "worker")  # SITEWATCH_PROBE_IN (sitewatch.airflow.operators)
RESULTS = "sustained"  # bench/out/sustained/<label>.json: what bench/report.py renders
SITE_DAGS = SITE_DAG_PREFIX.replace("_", "\\_") + "%"  # LIKE pattern of the site DAG ids
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SAMPLE_SECONDS = 15
# --settings: Airflow settings a row's stack gets on top of scripts/dev.sh's defaults, so a run can
# put a row with earlier defaults beside today's (the variables reach the stack: bench_stack).
SETTINGS = {
    "default": {},
    # before issue 30: no DAG-processor preload (nor its parse-time fix), Airflow's idle sleep,
    # 100 runs examined a loop
    "before": {
        "SITEWATCH_DAG_PROCESSOR_PRELOAD": "0",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
        "AIRFLOW__SCHEDULER__MAX_DAGRUNS_PER_LOOP_TO_SCHEDULE": "100",
    },
    # two schedulers (scripts/dev.sh's SITEWATCH_SCHEDULERS; docs/scaling.md)
    "two": {"SITEWATCH_SCHEDULERS": "2"},
    # Celery workers with Airflow's own configuration, without sitewatch.airflow.celery_config
    "plaincelery": {
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": (
            "airflow.providers.celery.executors.default_celery.DEFAULT_CELERY_CONFIG"
        )
    },
}


def place(args) -> str:
    """Where the checks run, as the label and the report name it: ``--probe-in`` for the default
    location, ``@<location>`` for another (whose checks are tasks on its workers either way)."""
    return args.probe_in if args.location == LOCAL_LOCATION else f"@{args.location}"


def site_location(args) -> str | None:
    """The ``locations`` entry of the generated sites: none for the default location."""
    return None if args.location == LOCAL_LOCATION else args.location


def write_checked_sites(path: Path, k: int, url: str, args, flows: int = 0) -> None:
    """The sites file for K (and ``flows`` flow sites); exits with the loader's problems if it is
    not valid (a bad ``--location`` would otherwise leave the stack without the sites' DAGs)."""
    write_sites(path, k, url, args.schedule, site_location(args), flows)
    if issues := load_sites(path).issues:
        sys.exit("\n".join(map(str, issues)))


def edit_one_site(path: Path) -> None:
    """Change the regex of the first site (one that still matches), written as an editor saves."""
    text = path.read_text()
    edited = text.replace("regex: 'status: OK'", "regex: 'status: O[K]'", 1)
    assert edited != text, f"no site to edit in {path}"
    tmp = path.with_suffix(".edit")
    tmp.write_text(edited)
    tmp.replace(path)
    print(f"{datetime.now(UTC):%H:%M:%S} edited one site of {path}", flush=True)


def minute_p95(series: list) -> list:
    """The lag p95 of the checks due in each whole minute of a window (``series``: minute into
    the window, lag)."""
    minutes: dict[int, list] = {}
    for minute, lag in series:
        minutes.setdefault(int(minute), []).append(lag)
    return [round(percentile(sorted(lags), 95), 1) for _, lags in sorted(minutes.items())]


def active_site_dags(db) -> int:
    return db.execute(
        "SELECT count(*) FROM dag WHERE dag_id LIKE %s AND NOT is_stale AND NOT is_paused",
        (SITE_DAGS,),
    ).fetchone()[0]


def due_checks(sites_path: Path, start: datetime, end: datetime) -> set[tuple[str, datetime]]:
    """(site, scheduled_at) of every check due in [start, end). On an interval schedule a site is
    due its offset after each multiple of the interval since the Unix epoch
    (``sitewatch.airflow.timetables``); the offsets are the loader's."""
    due = set()
    for site in load_sites(sites_path).sites:
        step = site.schedule
        moment = EPOCH + site.offset + (start - EPOCH - site.offset) // step * step
        moment += step if moment < start else timedelta(0)
        while moment < end:
            due.add((site.name, moment))
            moment += step
    return due


def stored_checks(db, start: datetime, end: datetime) -> list[tuple]:
    """(site, scheduled_at, attempt, checked_at) of the rows due in [start, end)."""
    try:
        return db.execute(
            "SELECT site, scheduled_at, attempt, checked_at FROM site_checks "
            "WHERE scheduled_at >= %s AND scheduled_at < %s",
            (start, end),
        ).fetchall()
    except psycopg.errors.UndefinedTable:  # the drain DAG has not created it yet
        return []


def wait_stored(db, due: set, start: datetime, end: datetime, limit: float = 300) -> list[tuple]:
    """The window's rows once every due check is stored, or once none arrived for 30 s (a run
    that was skipped never comes), at most ``limit`` seconds after the window."""
    deadline, last, still = time.monotonic() + limit, -1, 0
    while True:
        rows = stored_checks(db, start, end)
        first = {(site, at) for site, at, attempt, *_ in rows if attempt == 1}
        done = len(first & due)
        still = still + 1 if done == last else 0
        if done >= len(due) or still >= 3 or time.monotonic() > deadline:
            return rows
        last = done
        time.sleep(10)


def results_stats(rows: list[tuple], due: set, minutes: float, start: datetime) -> dict:
    """What site_checks says: stored vs due, the lag of first attempts."""
    first = {(site, at): checked for site, at, attempt, checked in rows if attempt == 1}
    lags = sorted((checked - at).total_seconds() for (_, at), checked in first.items())
    return {
        "due": len(due),
        "due_per_min": len(due) / minutes,
        "stored": len(rows),
        "stored_per_min": len(rows) / minutes,
        "not_stored": len(due - first.keys()),
        "lag_p50": median(lags) if lags else None,
        "lag_p95": percentile(lags, 95) if lags else None,
        "lag_max": lags[-1] if lags else None,
        "series": sorted(
            ((at - start).total_seconds() / 60, (checked - at).total_seconds())
            for (_, at), checked in first.items()
        ),
    }


def window_stats(
    db, start, end, minutes: float, interval: timedelta, checked: dict, dags: str = SITE_DAGS
) -> dict:
    """What the metadata DB says about runs due in [start, end); ``checked``: (site,
    scheduled_at) -> checked_at of first attempts, for the phase from task start to probe;
    ``dags``: a LIKE pattern of the DAG ids counted (default: every site's)."""
    rows = db.execute(
        """
        SELECT dr.dag_id, dr.logical_date, dr.queued_at, ti.scheduled_dttm, ti.queued_dttm,
               ti.start_date, ti.end_date
        FROM dag_run dr
        LEFT JOIN task_instance ti ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id
        WHERE dr.dag_id LIKE %s AND dr.run_after >= %s AND dr.run_after < %s
        ORDER BY dr.dag_id, dr.run_after
        """,
        (dags, start, end),
    ).fetchall()
    phases = {k: [] for k in ("create", "schedule", "queue", "start", "probe", "run")}
    not_started = on_worker = 0
    for dag_id, due, run_queued, ti_sched, ti_queued, ti_start, ti_end in rows:
        if ti_start is None:
            not_started += 1
            continue
        on_worker += ti_queued is not None  # a check that ends in the triggerer is never queued
        if run_queued:
            phases["create"].append((run_queued - due).total_seconds())
            # on a worker: scheduled, queued, started; in the triggerer: deferred by the scheduler
            if ti_sched and ti_queued:
                phases["schedule"].append((ti_sched - run_queued).total_seconds())
                phases["queue"].append((ti_queued - ti_sched).total_seconds())
            phases["start"].append((ti_start - (ti_queued or run_queued)).total_seconds())
        key = (dag_id.removeprefix(SITE_DAG_PREFIX), due)
        if key in checked:
            phases["probe"].append((checked[key] - ti_start).total_seconds())
        if ti_end:
            phases["run"].append((ti_end - ti_start).total_seconds())
    # missed: a DAG's consecutive runs more than 1.5 intervals apart (catchup=False skips ticks)
    missed, last = 0, {}
    for dag_id, due, *_ in rows:
        if dag_id in last and due - last[dag_id] > interval * 1.5:
            missed += round((due - last[dag_id]) / interval) - 1
        last[dag_id] = due
    completed = db.execute(
        """
        SELECT count(*) FILTER (WHERE state = 'success'), count(*)
        FROM task_instance
        WHERE dag_id LIKE %s AND end_date >= %s AND end_date < %s
          AND state IN ('success', 'failed', 'up_for_retry')
        """,
        (dags, start, end),
    ).fetchone()
    started = len(rows) - not_started
    return {
        "runs_due": len(rows),
        "not_started": not_started,
        "on_worker_share": on_worker / started if started else None,
        "completed_per_min": completed[1] / minutes,
        "succeeded_per_min": completed[0] / minutes,
        "missed_runs": missed,
        "phases_p50": {k: median(v) if v else None for k, v in phases.items()},
    }


def task_log_profile(state: Path, dag_ids: list[str], start: datetime) -> list[dict]:
    """For a few task logs of the window: seconds from the first log line to each milestone."""
    profiles = []
    for dag_id in dag_ids:
        base = state / "airflow" / "logs" / f"dag_id={dag_id}"
        logs = sorted(base.glob("run_id=*/task_id=probe/attempt=1.log*"))  # *: the trigger's part
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


def measure(k: int, args, state: Path, sites: Path, http: int, dbs, flows: int = 0) -> dict:
    """One window of K single sites (and ``flows`` flow sites): wait for their DAGs, warm up,
    measure, judge it once its checks are in; with flows, also each kind's figures."""
    meta, results = dbs
    t = time.monotonic()
    while active_site_dags(meta) < k + flows and time.monotonic() - t < 600:
        time.sleep(5)
    interval = load_sites(sites).sites[0].schedule
    warmup = interval if args.warmup is None else timedelta(minutes=args.warmup)
    print(f"K={k}+{flows}: {active_site_dags(meta)} DAGs active, warming up {warmup}", flush=True)
    time.sleep(warmup.total_seconds())
    start = datetime.now(UTC)
    end = start + timedelta(minutes=args.minutes)
    samples, loads = [cpu_sample(state, PORTS["SITEWATCH_PG_PORT"], http)], []
    edit_at = None if args.edit_at is None else start + timedelta(minutes=args.edit_at)
    while (left := (end - datetime.now(UTC)).total_seconds()) > 0:
        if edit_at is not None and datetime.now(UTC) >= edit_at:
            edit_one_site(sites)
            edit_at = None
        time.sleep(min(SAMPLE_SECONDS, left))
        samples.append(cpu_sample(state, PORTS["SITEWATCH_PG_PORT"], http))
        loads.append(os.getloadavg()[0])
    end = samples[-1]["at"]
    due = due_checks(sites, start, end)
    minutes = (end - start).total_seconds() / 60
    rows = wait_stored(results, due, start, end)
    stats = results_stats(rows, due, minutes, start)
    checked = {(site, at): c for site, at, attempt, c in rows if attempt == 1}
    stats |= window_stats(meta, start, end, minutes, interval, checked)
    stats |= cpu_stats(samples, stats["stored"])
    stats["load_avg_1m_mean"] = sum(loads) / len(loads)
    stats["window"] = [start.isoformat(), end.isoformat()]
    if args.edit_at is not None:
        stats["edited_at_minute"] = args.edit_at
        stats["lag_p95_by_minute"] = minute_p95(stats["series"])
    names = [f"{KINDS['single']}{i:05d}" for i in (0, k - 1)]
    names += [f"{KINDS['flow']}{i:05d}" for i in (0, flows - 1)] if flows else []
    stats["task_logs"] = task_log_profile(state, [site_dag_id(n) for n in names], start)
    if flows:
        window = (rows, due, minutes, start, end, interval)
        stats["kinds"] = {kind: kind_stats(meta, window, letter) for kind, letter in KINDS.items()}
    return stats


def kind_stats(meta, window: tuple, letter: str) -> dict:
    """The figures of one kind of site (names starting with ``letter``) in a window."""
    rows, due, minutes, start, end, interval = window
    rows = [row for row in rows if row[0].startswith(letter)]
    due = {check for check in due if check[0].startswith(letter)}
    stats = results_stats(rows, due, minutes, start)
    del stats["series"]  # the window's plot has every check
    checked = {(site, at): c for site, at, attempt, c in rows if attempt == 1}
    dags = SITE_DAGS.removesuffix("%") + letter + "%"
    return stats | window_stats(meta, start, end, minutes, interval, checked, dags)


def cpu_by_kind(alone: dict, mixed: dict) -> None:
    """CPU-seconds per check of each kind in ``mixed`` (the window with flows): a single check's
    as in ``alone`` (the same K without flows, just before), a flow's the rest of the window's
    busy CPU-seconds over its stored flows."""
    single, flow = mixed["kinds"]["single"], mixed["kinds"]["flow"]
    single["cpu_s_per_check"] = per_single = alone["cpu_s_per_check"]
    flow["cpu_s_per_check"] = None
    if per_single is not None and flow["stored"]:
        rest = mixed["cpu_busy_s"] - per_single * single["stored"]
        flow["cpu_s_per_check"] = rest / flow["stored"]


def profile(state: Path, label: str, key: str, args) -> dict:
    """py-spy over every Airflow tree of the stack for ``--profile`` seconds (bench/pyspy.py)."""
    raw = OUT / args.results / f"profile-{label}-{key}.txt"
    return summarize(record(airflow_roots(state), args.profile, raw))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[600, 1000])
    parser.add_argument("--schedule", default="1m", help="every site's schedule (an interval)")
    parser.add_argument("--executor", choices=EXECUTORS, default=EXECUTORS[0])
    parser.add_argument("--probe-in", choices=PLACES, default=PLACES[0])
    parser.add_argument(
        "--location",
        default=LOCAL_LOCATION,
        help=f"every site's location (default {LOCAL_LOCATION}: no locations key)",
    )
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument(
        "--flows",
        type=int,
        default=0,
        metavar="N",
        help="after each K's window, one more with N 3-step flow sites beside the K (default 0)",
    )
    parser.add_argument("--warmup", type=float, help="minutes (default: one interval)")
    parser.add_argument(
        "--edit-at",
        type=float,
        metavar="MINUTES",
        help="this far into each window, edit one site of the sites file (its regex), as an "
        "operator would; the report adds the lag p95 of each minute",
    )
    parser.add_argument("--state", help="stack state (default: bench/out/stack/<label>)")
    parser.add_argument("--label", help="default: <executor>-<place>-<schedule>-<ks>")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument(
        "--profile",
        type=float,
        metavar="SECONDS",
        help="after each K's window, py-spy every Airflow tree this long (bench/pyspy.py); "
        "0 or unset: no profile",
    )
    parser.add_argument(
        "--settings",
        choices=SETTINGS,
        default="default",
        help="Airflow settings on top of scripts/dev.sh's (SETTINGS; default: none)",
    )
    parser.add_argument(
        "--results", default=RESULTS, help=f"bench/out/<this>/<label>.json (default {RESULTS})"
    )
    return parser.parse_args()


def report(label: str, key: str, stats: dict) -> None:
    """The window's line, then one line per kind when it had flows."""
    print(
        f"{label} K={key}: due {stats['due_per_min']:.0f}/min, stored "
        f"{stats['stored_per_min']:.0f}/min, TIs {stats['completed_per_min']:.0f}/min, "
        f"lag p50 {stats['lag_p50']} p95 {stats['lag_p95']}, missed "
        f"{stats['missed_runs']}, not stored {stats['not_stored']}, CPU "
        f"{stats['cpu_busy_pct']:.0f}% {stats['cpu_s_per_check']} s/check, "
        f"load {loadavg()}",
        flush=True,
    )
    if "lag_p95_by_minute" in stats:
        print(
            f"  edited at minute {stats['edited_at_minute']:g}; lag p95 by minute: "
            f"{stats['lag_p95_by_minute']}",
            flush=True,
        )
    for kind, figures in stats.get("kinds", {}).items():
        print(
            f"  {kind}: due {figures['due_per_min']:.0f}/min, stored "
            f"{figures['stored_per_min']:.0f}/min, lag p50 {figures['lag_p50']} p95 "
            f"{figures['lag_p95']}, missed {figures['missed_runs']}, not stored "
            f"{figures['not_stored']}, CPU {figures['cpu_s_per_check']} s/check",
            flush=True,
        )


def main() -> None:
    args = parse_args()
    label = args.label or "-".join([args.executor, place(args), args.schedule, *map(str, args.ks)])
    label += f"+{args.flows}f" if args.flows and not args.label else ""
    label += f"~{args.settings}" if args.settings != "default" and not args.label else ""
    os.environ.update(SETTINGS[args.settings])
    state = Path(args.state or OUT / "stack" / label)
    stack = bench_stack(state, args.executor, args.probe_in)
    sites = stack.sites
    url = f"http://127.0.0.1:{HTTP_PORT}/"
    fresh_state(stack)
    write_checked_sites(sites, args.ks[0], url, args)
    http = start_http(state / "http.log")
    (OUT / args.results).mkdir(parents=True, exist_ok=True)
    results = {
        "machine": machine(),
        "label": label,
        "executor": args.executor,
        "probe_in": args.probe_in,
        "location": args.location,
        "place": place(args),
        "schedule": args.schedule,
        "flows": args.flows,
        "settings": args.settings,
        "ks": {},  # "<K>" or, the same K with flows beside it, "<K>+<flows>"
    }
    try:
        stack.run()
        if args.executor == "celery":
            results |= celery_facts(stack)
        with stack.metadata() as meta, stack.results(autocommit=True) as stored:
            # each K alone, then (with --flows) the same K with the flow sites beside it
            for k, flows in [(k, f) for k in args.ks for f in sorted({0, args.flows})]:
                write_checked_sites(sites, k, url, args, flows)
                stats = measure(k, args, state, sites, http.pid, (meta, stored), flows)
                key = f"{k}+{flows}" if flows else str(k)
                if args.profile:
                    stats["profile"] = profile(state, label, key, args)
                if flows:
                    cpu_by_kind(results["ks"][str(k)], stats)
                results["ks"][key] = stats
                report(label, key, stats)
                save(f"{args.results}/{label}", results)
    finally:
        if not args.keep:
            stack.stop()
        http.terminate()
        http.wait()


if __name__ == "__main__":
    main()
