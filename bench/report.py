"""Write bench/results.md (and the lag plot) from the JSON results in bench/out/.

    python bench/report.py

Each benchmark saves bench/out/<name>.json; this renders whichever exist, followed by the
hand-written analysis in bench/notes.md.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, ROOT  # noqa: E402

BENCH = ROOT / "bench"
PLOT = BENCH / "sustained_lag.png"


def load(name: str) -> dict | None:
    path = OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def machine_section(m: dict) -> list[str]:
    return [
        f"- Date: {m['date']}",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}",
        f"- Python {m['python']}, Airflow {m.get('apache-airflow')}, confluent-kafka "
        f"{m.get('confluent-kafka')}, psycopg {m.get('psycopg')}, requests {m.get('requests')}, "
        f"PostgreSQL {m.get('postgresql') or '?'}",
    ]


def drain_section(d: dict) -> list[str]:
    labels = {
        "drain": "sitewatch `drain()` (Kafka → PostgreSQL)",
        "ceiling": "ceiling: `psql \\copy` into `site_checks`",
        "ceiling_plain": "`psql \\copy` into a plain table (no trigger)",
        "baseline": "baseline: poll + json.loads + INSERT + COMMIT per message",
        "drain_objects": "the drain decoding via `Observation` objects (before this change)",
        "python_copy": "no Kafka: `fast_row` + `store_rows`, 5,000 a batch",
    }
    runs = len(d["runs"]["drain"])
    out = [
        "## 1. Drain throughput",
        "",
        f"{d['messages']:,} observations produced beforehand to a fresh 3-partition topic; "
        f"{runs} runs, the ways interleaved in each run. The baseline ran on the first "
        f"{d['baseline_messages']:,} messages of the topic (one COMMIT per message is too slow "
        "for the full set). The drain's rate is rows over the time to its "
        "last batch's transaction commit; `drain()` returns after one more, empty 2-s poll "
        f"(median call {d['splits']['call_seconds']:.1f} s vs {d['splits']['seconds']:.1f} s to "
        "the last row stored). Load average (1/5/15 min) after each run: "
        + "; ".join(d["load"])
        + ".",
        "",
        "| way | rows | rows/s (median) | spread (min–max) | CPU ms / 1,000 rows: "
        "client · PostgreSQL · Kafka |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for way in ("drain", "drain_objects", "python_copy", "ceiling", "ceiling_plain", "baseline"):
        if way not in d["median_rate"]:
            continue
        rows = d["baseline_messages"] if way == "baseline" else d["messages"]
        cpu = d["cpu_ms_per_1k"][way]
        out.append(
            f"| {labels[way]} | {rows:,} | {d['median_rate'][way]:,.0f} | {d['spread'][way]} | "
            f"{cpu['client']:.0f} · {cpu['pg']:.0f} · {cpu['kafka']:.0f} |"
        )
    s = d["splits"]
    out += [
        "",
        f"**Drain / ceiling = {d['drain_vs_ceiling']:.2f}** (target ≥ 0.5); "
        f"**drain / baseline = {d['drain_vs_baseline']:.0f}×**; drain / drain via `Observation` = "
        f"{d.get('drain_vs_objects', float('nan')):.2f} (medians of the per-run ratios).",
        "",
        f"Where the drain's time goes (median of runs, seconds): consume {s['consume_s']:.2f} "
        f"(including the final empty {d.get('poll_timeout', 2):g}-s poll), decode + COPY + "
        f"commit {s['store_s']:.2f} (rows stream into the COPY as they are decoded), Kafka "
        f"offset commit {s['commit_s']:.2f}; {s['seconds']:.2f} to the last row stored."
        + (
            " Decoding via `Observation`: consume {consume_s:.2f}, decode + COPY + commit "
            "{store_s:.2f}, offset commit {commit_s:.2f}; {seconds:.2f} to the last row "
            "stored.".format(**d["splits_objects"])
            if "splits_objects" in d
            else ""
        ),
        "",
    ]
    return out


def probe_section(p: dict) -> list[str]:
    out = [
        "## 2. Probe overhead",
        "",
        "A minimal local HTTP server (`common.serve_plain`) in its own process, fixed delay before "
        "the response headers. Per run "
        "and delay, probes and bare `requests.get` calls alternate ("
        + ", ".join(f"{n} at {d} ms" for d, n in p["samples"].items())
        + " per way per run); overhead = measured time − injected delay. Medians over runs of the "
        "per-run median and p95 (spread = min–max of the per-run medians). Load after each "
        "run: " + "; ".join(p["load"]) + ".",
        "",
        "| delay | way | overhead median ms | (spread) | overhead p95 ms | CPU ms per call |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    ways = (
        ("probe", "`probe()`: `response_time_ms` − delay", "probe_cpu"),
        ("probe_call", "`probe()`: whole call − delay", "probe_cpu"),
        ("get", "`requests.get` (perf_counter) − delay", "get_cpu"),
    )
    for delay, table in p["table"].items():
        for key, label, cpu in ways:
            row = table[key]
            out.append(
                f"| {delay} ms | {label} | {row['median']['median']:.2f} | "
                f"{row['median']['spread']} | {row['p95']['median']:.2f} | "
                f"{table[cpu]['median']['median']:.2f} |"
            )
    out.append("")
    return out


def parse_section(p: dict) -> list[str]:
    out = [
        "## 3. Factory parse time",
        "",
        "Fresh interpreter per parse, `DagBag(dag_folder=<file>)` as the DAG processor does. "
        "*parse* = the `DagBag` call alone (after `import airflow` and the DagBag import); "
        "*total* = the whole subprocess (interpreter start, imports, parse). sitewatch: "
        "`dags/sites.py` on a sites file of N entries; dag-factory 1.1.0: one YAML with N DAGs, "
        "one BashOperator each, same cron schedule. Load after each size: "
        + "; ".join(p["load"])
        + ".",
        "",
        "| sites | tool | parse s median | (min–max) | parse CPU s | total s median | "
        "dag-factory / sitewatch (wall · CPU) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count, row in p["table"].items():
        for tool in ("sitewatch", "dag-factory"):
            parse, total = row[tool]["parse"], row[tool]["total"]
            ratio = ""
            if tool == "dag-factory":
                ratio = f"{row['dagfactory_over_sitewatch']:.1f}×"
                if "cpu_ratio" in row:
                    ratio += f" · {row['cpu_ratio']:.1f}×"
            cpu = f"{row[tool]['parse_cpu'][0]:.3f}" if "parse_cpu" in row[tool] else "–"
            out.append(
                f"| {int(count):,} | {tool} | {parse[0]:.3f} | {parse[1]:.3f}–{parse[2]:.3f} | "
                f"{cpu} | {total[0]:.2f} | {ratio} |"
            )
    out.append("")
    return out


def sustained_section(results: list[dict]) -> list[str]:
    out = [
        "## 4. Sustained checks per minute",
        "",
        "`scripts/dev.sh run` stack on private ports (LocalExecutor, PostgreSQL metadata), K sites "
        "on a 1-minute schedule against a local HTTP server; per K one warm-up minute, then the "
        "measured window. Lag = `task_instance.start_date − dag_run.run_after`; missed runs = a "
        "DAG's consecutive runs more than 1.5 minutes apart (with `catchup=False` a late "
        "scheduler skips ticks rather than queueing them); CPU = whole machine busy % from "
        "/proc/stat (anything else running included); phases are medians, in seconds: run created "
        "− run_after · TI scheduled − run created · queued − scheduled · started − queued · "
        "task run time.",
        "",
        "| settings | K | window | checks/min | lag p50 s | lag p95 s | lag max s | missed | "
        "not started | CPU busy | load (mean 1-min) | phases s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for res in results:
        for k, s in res["ks"].items():
            ph = s["phases_p50"]
            phases = " · ".join(
                "–" if ph[x] is None else f"{ph[x]:.1f}"
                for x in ("create", "schedule", "queue", "start", "run")
            )
            start, end = (datetime.fromisoformat(t) for t in s["window"])
            out.append(
                f"| {label(res)} | {k} | {(end - start).total_seconds() / 60:.0f} min | "
                f"{s['completed_per_min']:.0f} | {fmt(s['lag_p50'])} | {fmt(s['lag_p95'])} | "
                f"{fmt(s['lag_max'])} | {s['missed_runs']} | {s['not_started']} | "
                f"{s['cpu_busy_pct']:.0f}% | {s['load_avg_1m_mean']:.1f} | {phases} |"
            )
    out += ["", f"![schedule lag over time for each K]({PLOT.name})", ""]
    out += cpu_by_role_section(results)
    return out


# what each sustained run's --label means (bench/README.md)
LABELS = {
    "ab-default": "Airflow's defaults (workers forked from the scheduler)",
    "ab-preload-lazy": "preloaded workers (A/B, run right after the row above)",
    "sweep": "preloaded workers (scripts/dev.sh now)",
    "sweep-300": "preloaded workers (scripts/dev.sh now)",
}


def label(result: dict) -> str:
    return LABELS.get(result["label"], result["label"])


def cpu_by_role_section(results: list[dict]) -> list[str]:
    """CPU seconds per completed check by process role, from bench/out/sustained/cpu-samples.jsonl
    (``sustained.py --sample-cpu``), over each K's window."""
    path = OUT / "sustained" / "cpu-samples.jsonl"
    if not path.exists():
        return []
    samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for sample in samples:
        sample["at"] = datetime.fromisoformat(sample["at"])
    roles = [k for k in samples[0] if k != "at"]
    out = [
        "CPU of the private stack by process role over each window, in CPU-seconds per completed "
        "check (`worker` = LocalExecutor workers with the supervisors and task processes they "
        "fork; from /proc, sampled every 15 s):",
        "",
        "| settings | K | " + " | ".join(roles) + " | total |",
        "| --- | ---: |" + " ---: |" * (len(roles) + 1),
    ]
    for res in results:
        for k, s in res["ks"].items():
            start, end = (datetime.fromisoformat(t) for t in s["window"])
            first = min(samples, key=lambda x: abs((x["at"] - start).total_seconds()))
            last = min(samples, key=lambda x: abs((x["at"] - end).total_seconds()))
            checks = s["completed_per_min"] * (last["at"] - first["at"]).total_seconds() / 60
            if checks <= 0:
                continue
            per = {r: (last[r] - first[r]) / checks for r in roles}
            out.append(
                f"| {label(res)} | {k} | "
                + " | ".join(f"{per[r]:.2f}" for r in roles)
                + f" | {sum(per.values()):.2f} |"
            )
    out.append("")
    return out


def fmt(value) -> str:
    return "–" if value is None else f"{value:.1f}"


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
            t0 = datetime.fromisoformat(s["window"][0])
            points = sorted(
                ((datetime.fromisoformat(t) - t0).total_seconds() / 60, lag)
                for t, lag in s["series"]
            )
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, ".", markersize=3, label=f"K={k} ({label(res)})")
    ax.axhline(15, color="grey", linestyle="--", linewidth=1, label="15 s")
    ax.set_xlabel("minutes into the measured window (task start)")
    ax.set_ylabel("schedule lag: task start − run_after (s)")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title("sitewatch sustained run: schedule lag per check")
    ax.legend(markerscale=4)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    return True


def main() -> None:
    sections = ["# sitewatch benchmarks: results", ""]
    parts = {name: load(name) for name in ("drain", "probe", "parse")}
    sustained = [load(p.stem) for p in sorted(OUT.glob("sustained-*.json"))]
    first = next((p for p in [*parts.values(), *sustained] if p), None)
    if first is None:
        sys.exit("no results in bench/out: run `make bench` first")
    sections += [
        "Generated by `bench/report.py` from `bench/out/*.json`; how to run: `bench/README.md`. "
        "Every ratio compares ways measured side by side in the same run, and each table gives "
        "the load average while it ran. This VM's speed varies from minute to minute, which is "
        "why the ways are interleaved and every table shows the spread.",
        "",
        *machine_section(first["machine"]),
        "",
    ]
    if parts["drain"]:
        sections += drain_section(parts["drain"])
    if parts["probe"]:
        sections += probe_section(parts["probe"])
    if parts["parse"]:
        sections += parse_section(parts["parse"])
    if sustained:
        plot(sustained)
        sections += sustained_section(sustained)
    notes = BENCH / "notes.md"
    if notes.exists():
        sections += [notes.read_text()]
    (BENCH / "results.md").write_text("\n".join(sections).rstrip() + "\n")
    print(f"wrote {BENCH / 'results.md'}")


if __name__ == "__main__":
    main()
