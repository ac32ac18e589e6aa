"""The sustained part of bench/results.md: the rows of bench/out/sustained/*.json (one
``sustained.py`` run each, several executors and places side by side), CPU by role, the lag plot.

Used by ``bench/report.py``.
"""

from __future__ import annotations

import sys
from datetime import datetime

from common import OUT, ROOT
from stackcpu import BY_ROLE, REST, ROLES

from sitewatch.names import LOCAL_LOCATION, location_queue

PLOT = ROOT / "bench" / "sustained_lag.png"
# the sustained figures measured before bench/out/sustained/ existed, kept as printed then
PREVIOUS = ROOT / "bench" / "sustained_previous.md"


def sustained_section(results: list[dict]) -> list[str]:
    """The rows of bench/out/sustained/*.json (one ``sustained.py`` run each), then the previous
    figures."""
    out = ["## 4. Sustained checks per minute", ""]
    if results:
        plot(results)
        out += sustained_table(results)
        out += kinds_table(results)
        out += cpu_by_role_section(results)
    if PREVIOUS.exists():
        out.append(PREVIOUS.read_text())
    return out


def executor(res: dict) -> str:
    """The row's executor; results saved before the Celery rows existed are the LocalExecutor's.
    A row run with other ``--settings`` than today's names them: ``local (before)``."""
    settings = res.get("settings", "default")
    return res.get("executor", "local") + ("" if settings == "default" else f" ({settings})")


def place(res: dict) -> str:
    """Where the row's checks run (``sustained.place``), also for results saved before it."""
    return res.get("place", res["probe_in"])


def sustained_table(results: list[dict]) -> list[str]:
    out = [
        "`scripts/dev.sh run` stack on private ports (PostgreSQL metadata), a fresh one for each "
        "executor, place and schedule (K grows within one), K sites (offsets `auto`) against a "
        "local HTTP server; per K one warm-up interval, then the measured window. *executor*: "
        "`local` = `airflow standalone` (LocalExecutor, workers from the preloaded forkserver); "
        "`celery` = the CeleryExecutor, with the API server, scheduler, DAG processor and "
        "triggerer each a process of its own, a Redis broker, and Celery workers for each location "
        "the sites use (the default location's on Airflow's default queue, which only sitewatch's "
        "own DAGs use while checks start in the triggerer); `(before)`: the same with the "
        "scheduler settings before issue 30 (`SETTINGS` in bench/sustained.py), beside today's. "
        "*place*: `triggerer` = each attempt "
        "starts in the triggerer and a healthy check ends there (`SITEWATCH_PROBE_IN` default); "
        "`worker` = every attempt a task on a worker (`SITEWATCH_PROBE_IN=worker`); `@<location>` "
        "= every site has `locations: [<location>]`, so every attempt is a task on that location's "
        "Celery workers. Due = every site's `tick + offset` moments in the window; stored = "
        "`site_checks` rows with `scheduled_at` in it; TIs = task instances completed in it. Lag = "
        "`checked_at − scheduled_at` of stored first attempts. Missed = a DAG's consecutive runs "
        "more than 1.5 intervals apart (with `catchup=False` a late scheduler skips ticks rather "
        "than queueing them); not stored = due checks without a first attempt in `site_checks` "
        "once the drain caught up. On a worker = share of the started task instances that were "
        "queued for a worker. CPU = the whole machine's busy CPU-seconds from /proc/stat over the "
        "window (anything else running included), % and per stored check. Phases are medians, in "
        "seconds: run created − due · TI scheduled − run created · queued − scheduled · started − "
        "queued (on a worker) or − run created (deferred to the triggerer) · probe started − TI "
        "started · TI run time. Targets (issue 15): ≥ 600 checks/min with p95 lag < 15 s and no "
        "missed run, ≤ 0.12 CPU-s per check all-in.",
        "",
        "| executor | place | schedule | K | window | due/min | stored/min | TIs/min | lag p50 s | "
        "lag p95 s | lag max s | missed | not stored | on a worker | CPU busy | CPU-s per check | "
        "load (mean 1-min) | phases s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for res in results:
        for k, s in res["ks"].items():
            ph = s["phases_p50"]
            phases = " · ".join(
                fmt(ph[x]) for x in ("create", "schedule", "queue", "start", "probe", "run")
            )
            share = s["on_worker_share"]
            out.append(
                f"| {executor(res)} | {place(res)} | {res['schedule']} | {k_label(k)} | "
                f"{minutes(s):.0f} min | "
                f"{s['due_per_min']:.0f} | {s['stored_per_min']:.0f} | "
                f"{s['completed_per_min']:.0f} | {fmt(s['lag_p50'])} | {fmt(s['lag_p95'])} | "
                f"{fmt(s['lag_max'])} | {s['missed_runs']} | {s['not_stored']} | "
                f"{'–' if share is None else f'{100 * share:.0f}%'} | {s['cpu_busy_pct']:.0f}% | "
                f"{fmt(s['cpu_s_per_check'], 3)} | {s['load_avg_1m_mean']:.1f} | {phases} |"
            )
    out += ["", *celery_workers(results)]
    out += [f"![lag of each stored check over the window, for each row]({PLOT.name})", ""]
    return out


def celery_workers(results: list[dict]) -> list[str]:
    """One line per Celery row group: its workers, their concurrency, the checks' queue (once
    for rows that differ only in their settings)."""
    out = []
    for res in results:
        if "celery_workers" not in res:
            continue
        queue = location_queue(res.get("location", LOCAL_LOCATION))
        line = (
            f"- celery {place(res)}: workers {', '.join(res['celery_workers'])}, concurrency "
            f"{res['worker_concurrency']} each"
            + (f"; the checks on queue `{queue}`" if queue else "")
            + "."
        )
        out += [line] if line not in out else []
    return [*out, ""] if out else []


def k_label(key: str) -> str:
    """The K column: ``600``, or ``600 + 300 flows`` for a window with flow sites beside the K."""
    singles, _, flows = str(key).partition("+")
    return f"{int(singles):,}" + (f" + {int(flows):,} flows" if flows else "")


def kinds_table(results: list[dict]) -> list[str]:
    """Each kind's figures in the windows with flows beside the single sites (issue 26)."""
    rows = [(res, k, s) for res in results for k, s in res["ks"].items() if "kinds" in s]
    if not rows:
        return []
    out = [
        "Single checks and flows in the same window (issue 26: 300 three-step flows a minute "
        "beside 600 single checks, p95 lag < 15 s): each kind's figures as above. CPU-s per "
        "check: a single check's is the row of the same K without flows, measured just before "
        "on the same stack; a flow's is the rest of the window's busy CPU-seconds over its "
        "stored flows.",
        "",
        "| executor | place | schedule | K | kind | due/min | stored/min | lag p50 s | lag p95 s "
        "| lag max s | missed | not stored | CPU-s per check |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for res, k, s in rows:
        for kind, f in s["kinds"].items():
            out.append(
                f"| {executor(res)} | {place(res)} | {res['schedule']} | {k_label(k)} | {kind} | "
                f"{f['due_per_min']:.0f} | {f['stored_per_min']:.0f} | {fmt(f['lag_p50'])} | "
                f"{fmt(f['lag_p95'])} | {fmt(f['lag_max'])} | {f['missed_runs']} | "
                f"{f['not_stored']} | {fmt(f['cpu_s_per_check'], 3)} |"
            )
    return [*out, ""]


def minutes(stats: dict) -> float:
    start, end = (datetime.fromisoformat(t) for t in stats["window"])
    return (end - start).total_seconds() / 60


def cpu_by_role_section(results: list[dict]) -> list[str]:
    """CPU-seconds per stored check by process role (``sustained.py``'s ``cpu_by_role``)."""
    # every role any row has (rows saved before a role existed lack it), in stackcpu's order
    order = (*ROLES, REST)
    present = {r for res in results for s in res["ks"].values() for r in s[BY_ROLE]}
    roles = sorted(present, key=lambda r: (order.index(r) if r in order else len(order), r))
    out = [
        "CPU over each window by process role, in CPU-seconds per stored check, from /proc "
        "(sampled every 15 s; a process counts for the role of its nearest ancestor that has "
        "one): `triggerer` includes its trigger runner and the processes triggers start; "
        "`dag-processor` its parsers; `worker` the LocalExecutor workers, the forkserver they "
        "come from and the supervisors and task processes they fork (the drain's tasks too); "
        "`celery worker` the Celery workers, their pool processes and the supervisors and task "
        "processes those fork (with Celery, the drain's tasks too); `redis` the Celery broker; "
        "with Celery each component is a process tree of its own and counts whole for its role; "
        "`site server` is the bench's HTTP server; `rest of machine` is the whole machine's "
        "busy time that no process of the stack accounts for (the bench itself, anything else "
        "running, the kernel). *all-in* = the whole machine.",
        "",
        "| executor | place | schedule | K | " + " | ".join(roles) + " | all-in |",
        "| --- | --- | --- | ---: |" + " ---: |" * (len(roles) + 1),
    ]
    for res in results:
        for k, s in res["ks"].items():
            per = s[BY_ROLE]
            out.append(
                f"| {executor(res)} | {place(res)} | {res['schedule']} | {k_label(k)} | "
                + " | ".join(fmt(per.get(r), 3) for r in roles)
                + f" | {fmt(s['cpu_s_per_check'], 3)} |"
            )
    out.append("")
    return out


def fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def plot(results: list[dict]) -> bool:
    sys.path.append(
        str(OUT / "deps")
    )  # matplotlib is a bench-only package (bench/requirements.txt)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (make bench-deps): plot skipped", file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(10, 5))
    for res in results:
        for k, s in res["ks"].items():
            if not s["series"]:
                continue
            xs, ys = zip(*s["series"], strict=True)
            label = f"{executor(res)} {place(res)}, K={k_label(k)}, every {res['schedule']}"
            ax.plot(xs, ys, ".", markersize=3, label=label)
    ax.axhline(15, color="grey", linestyle="--", linewidth=1, label="15 s")
    ax.set_xlabel("minutes into the measured window (scheduled_at)")
    ax.set_ylabel("lag: checked_at − scheduled_at (s)")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title("sitewatch sustained run: lag of each stored check")
    ax.legend(markerscale=4)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    return True
