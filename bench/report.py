"""Write bench/results.md (and the lag plot) from the JSON results in bench/out/.

    python bench/report.py

Each benchmark saves bench/out/<name>.json; this renders whichever exist, followed by the
hand-written analysis in bench/notes.md. Each part's section sits between ``<!-- part:NAME -->``
markers; a part without results in bench/out keeps its section of the previous results.md, so
one part run in a fresh checkout replaces its own section only.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import OUT, ROOT  # noqa: E402
from report_sustained import sustained_section  # noqa: E402

BENCH = ROOT / "bench"
# The parts in results.md's order; each section sits between <!-- part:NAME --> markers.
PARTS = (
    "drain",
    "probe",
    "parse",
    "parse_cache",
    "parse_callbacks",
    "sustained",
    "metrics",
    "burn",
    "flow",
    "status",
)


def load(name: str) -> dict | None:
    path = OUT / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def machine_section(m: dict) -> list[str]:
    return [
        f"- Date: {m['date']}",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}",
        f"- Python {m['python']}, Airflow {m.get('apache-airflow')}, confluent-kafka "
        f"{m.get('confluent-kafka')}, psycopg {m.get('psycopg')}, requests {m.get('requests')}"
        + (f", PostgreSQL {m['postgresql']}" if m.get("postgresql") else ""),
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


def parse_cache_section(c: dict) -> list[str]:
    runs = len(next(iter(c["runs"].values())))
    out = [
        "### Reading the sites file: `cached_sites` vs `load_sites` at every parse",
        "",
        "Fresh interpreter per parse, as the DAG processor and every task run parse "
        "`dags/sites.py` (sitewatch and Airflow imported beforehand, not timed). *old* = "
        "`load_sites` every time; *new* = `cached_sites` (memory, then the private on-disk cache "
        f"`sitewatch.config.diskcache`). Run {c['machine']['date']}: {runs} runs, the ways "
        "alternating in each. Times in ms; "
        "old / new is the median of the per-run ratios (wall · CPU). Load after each size: "
        + "; ".join(c["load"])
        + ".",
        "",
        "| sites | measure | old ms median | (min–max) | new ms median | (min–max) | "
        "old / new (wall · CPU) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count, rows in c["table"].items():
        for measure, label in c["measures"].items():
            wall = rows[measure]["wall"]
            old, new = (wall[way] for way in ("old", "new"))
            ratio = times(wall["ratio"])
            if "cpu" in rows[measure]:
                ratio += f" · {times(rows[measure]['cpu']['ratio'])}"
            out.append(
                f"| {int(count):,} | {label} | {ms(old[0])} | {ms(old[1])}–{ms(old[2])} | "
                f"{ms(new[0])} | {ms(new[1])}–{ms(new[2])} | {ratio} |"
            )
    out.append("")
    return out


def parse_callbacks_section(c: dict) -> list[str]:
    out = [
        "### A callback-only parse in the DAG processor: with and without sitewatch's preload",
        "",
        "Airflow's `_parse_file` on `dags/sites.py` with a batch of "
        f"{c['batch']} success callbacks (what tasks ending in the triggerer send), in a child "
        "forked from a stand-in for the `airflow dag-processor` process (Airflow's DAG "
        "processing imported, the plugins folder loaded by `Job()`, the garbage collector "
        "frozen). *baseline*: Airflow as it is; *preload*: "
        "`sitewatch.airflow.processor_preload` ran in the parent (its plugin, on the DAG "
        f"processor's command line). Run {c['machine']['date']}: {c['rounds']} parents of each "
        f"kind, alternating, {c['forks']} counted children each. Child CPU = the child's whole "
        "CPU (`wait4`); baseline / preload is the median of the paired ratios (child CPU · "
        "`_parse_file` CPU). Load after each size: " + "; ".join(c["load"]) + ".",
        "",
        "| sites | parent | child CPU s median | (min–max) | `_parse_file` CPU s | "
        "sitewatch modules imported | parent setup CPU s | parent RSS MB | "
        "baseline / preload |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count, row in c["table"].items():
        for parent in ("baseline", "preload"):
            child, parse = row["child_cpu"][parent], row["parse_cpu"][parent]
            ratio = ""
            if parent == "preload":
                ratio = f"{times(row['child_cpu']['ratio'])} · {times(row['parse_cpu']['ratio'])}"
            out.append(
                f"| {int(count):,} | {parent} | {child[0]:.3f} | {child[1]:.3f}–{child[2]:.3f} | "
                f"{parse[0]:.3f} | {row[parent]['sitewatch_imports']:.0f} | "
                f"{row[parent]['setup_cpu']:.2f} | {row[parent]['rss_mb']:.0f} | {ratio} |"
            )
    out.append("")
    return out


def metrics_section(m: dict) -> list[str]:
    """Section 5: the scrape beside the listing, its reads and plans, the upgrade, the drain."""
    sc, db, plans, trig = m["scrape"], m["schema"], m["plans"], m["trigger"]
    st = sc["stats"]
    out = [
        "## 5. Metrics scrape",
        "",
        f"Run {m['machine']['date']}. `GET /metrics` (issue 18) of {sc['configured']:,} "
        f"configured sites ({sc['slo_sites']} with an SLO, one location each) over "
        f"{db['rows']:,} stored "
        "checks (`bench/dashboard_load.sql`: 10,000 runs of each site, every 5 minutes, ~1% "
        "with a retry), "
        "beside the Sites page listing `GET /` of the same app (`web.app.create_app` "
        "through fastapi's TestClient, a new PostgreSQL connection per request as in the "
        f"route). {sc['rounds']} rounds after {sc['warmup']} of warm-up: each round the scrape "
        "and the listing (alternately first), then the scrape's parts alone on one "
        "connection. Wall ms; CPU = this process's (every thread), PostgreSQL's not included. "
        f"Load average before · after: {' · '.join(sc['load'])}; the machine's CPUs were "
        f"{sc['cpu_busy_pct']:.0f}% busy over the rounds (others' work included).",
        "",
        "| what | median ms | p90 ms | (min–max) | CPU ms median |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    labels = {
        "scrape": "**scrape** `GET /metrics` (text format)",
        "gather": "— `metrics_page.gather` (its queries), on a new connection as the route's",
        "gather (the connection's second)": "— `gather` again on that connection",
        "exposition": "— `exposition` (rendering, text format)",
        "families": "— — of which `families` (building them; the rest is prometheus_client's "
        "encoding)",
        "exposition (OpenMetrics)": "— `exposition`, OpenMetrics (as Prometheus asks)",
        "listing": "**listing** `GET /` (Sites page)",
    }
    for way, label in labels.items():
        out.append(_metrics_row(label, st[way]))
    ratio = sc["listing_over_scrape"]
    low, high = sc["listing_over_scrape_spread"]
    states = ", ".join(f"{n:,} {state}" for state, n in sorted(sc["states"].items()))
    out += [
        "",
        f"**Scrape p90 {st['scrape']['p90']:.0f} ms** (target < 500 ms); "
        f"**listing / scrape = {ratio:.1f}×** (median of the per-round ratios, "
        f"{low:.1f}–{high:.1f}). The scrape's body: {sc['body_bytes']:,} bytes, "
        f"{sc['series']:,} series in {sc['families']} families ({sc['content_type']}); sites "
        f"by state: {states}. The listing's page: {sc['listing_bytes']:,} bytes.",
        "",
        _where_the_time_goes(st),
        "",
        "Each read alone, as `gather` makes it (the first six), and the listing's two heaviest "
        "for comparison:",
        "",
        "| read | median ms | p90 ms | (min–max) | CPU ms median |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for way, row in st.items():
        if way not in labels:
            out.append(_metrics_row(f"`{way}`", row))
    out += [
        "",
        "EXPLAIN (ANALYZE, BUFFERS) of the scrape's per-site reads, for all the sites at once:",
        "",
        "| query | execution ms | planning ms | shared buffers hit · read | relations read | "
        "reads site_checks |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for name, plan in plans.items():
        relations = ", ".join(f"`{r}`" for r in plan["relations"])
        out.append(
            f"| `storage.metrics.{name}` | {plan['execution_ms']:.1f} | "
            f"{plan['planning_ms']:.1f} | {plan['shared_hit']:,} · {plan['shared_read']:,} | "
            f"{relations} | {'**yes**' if plan['reads_site_checks'] else 'no'} |"
        )
    for name, plan in plans.items():
        out += ["", f"<details><summary>{name} plan</summary>", "", "```", plan["text"], "```"]
        out += ["", "</details>"]
    out += _upgrade_lines(db)
    rates = trig["rows_per_s"]
    spread = {way: "–".join(f"{v:,.0f}" for v in values) for way, values in trig["spread"].items()}
    out += [
        "",
        f"What migration 9's trigger costs the drain: `store_batch` of {trig['batch_rows']:,} "
        "observations (5 one-minute checks of each of 1,000 sites, as the drain's batches "
        "come), into a fresh schema at migration 9 and one whose `site_checks_added()` is "
        "migration 8's function (the daily rollup only), the same batches alternately, "
        f"{trig['batches']} each after one of warm-up. Load before · after: "
        f"{' · '.join(trig['load'])}.",
        "",
        "| trigger | rows/s median | (min–max) |",
        "| --- | ---: | ---: |",
        f"| migration 8 (daily rollup) | {rates['migration 8']:,.0f} | {spread['migration 8']} |",
        f"| migration 9 (daily, hourly, `site_latest`) | {rates['migration 9']:,.0f} | "
        f"{spread['migration 9']} |",
        "",
        f"**Migration 9 / migration 8 = {trig['m9_over_m8']:.2f}** (median of per-batch ratios).",
        "",
    ]
    return out


def _where_the_time_goes(st: dict) -> str:
    """One sentence: the scrape's median split into its parts and its two slowest reads."""
    scrape = st["scrape"]["median"]
    reads = sorted(
        (row["median"], way) for way, row in st.items() if way.startswith(("metrics.", "slo_"))
    )
    slowest = " and ".join(f"`{way}` {ms:.0f} ms" for ms, way in reads[:-3:-1])
    return (
        f"Where the scrape's median {scrape:.0f} ms goes: `gather` "
        f"{st['gather']['median']:.0f} ms ({st['gather']['cpu_median']:.0f} ms of it this "
        f"process's CPU, the rest waiting on PostgreSQL; slowest reads {slowest}), "
        f"`exposition` {st['exposition']['median']:.0f} ms, nearly all CPU (`families` "
        f"{st['families']['median']:.0f} ms, prometheus_client's encoding the rest). The "
        "rest of the request (a new connection, the HTTP layers) is a few ms on a quiet "
        "machine; the parts are timed apart, so on a busy one their medians need not add up "
        "to the whole's."
    )


def _metrics_row(label: str, row: dict) -> str:
    return (
        f"| {label} | {row['median']:.1f} | {row['p90']:.1f} | {row['min']:.1f}–"
        f"{row['max']:.1f} | {row['cpu_median']:.1f} |"
    )


def _upgrade_lines(db: dict) -> list[str]:
    """What the upgrade to this version cost on the 10M rows, step by step."""
    steps = " · ".join(f"{s['step']} {s['seconds']:.1f} s" for s in db["steps"])
    where = (
        f"measured when the kept schema was loaded, {db['loaded_at']}"
        if db.get("reused")
        else f"this run, load average after it {db['load_avg']}"
    )
    nine = next(s["seconds"] for s in db["steps"] if s["step"] == "migration 9")
    return [
        "",
        f"The upgrade at {db['rows']:,} rows ({where}): loading them took "
        f"{db['load_s']:.0f} s; then, one version at a time: {steps}. The maintenance DAG's "
        "hourly rollup ran before migration 9, as a database at version 8 has it, so "
        f"**migration 9 took {nine:.1f} s**: its lock holds back the drain (not readers) "
        "while it recounts the last 48 hours and fills `site_latest`.",
    ]


def burn_section(b: dict) -> list[str]:
    """Section 6: the burn-rate query before and after each site's own windows."""
    data = b["data"]
    out = [
        "## 6. Burn-rate query",
        "",
        f"Run {b['machine']['date']}. `storage.slo.burn_counts` (issue 24, item 3) at "
        f"{data['sites']:,} sites with an SLO over {data['rows']:,} stored checks (each site "
        f"{data['slots']:,} slots, one every {data['every_minutes']} minutes, 90.3 days; ~1% with "
        "a retry, ~0.5% in maintenance; `bench/burn.py`, in a scratch schema migrated as the "
        f"drain's). Before: commit `{b['baseline']}`'s code, every site read over the widest "
        "window any site asks for; after: each site over its own. Each called as its caller calls "
        "it: the drain's burn check (every site's rule lengths) and the Sites page listing (each "
        "site's shortest long window); the 90d site has only the issue's rule `{severity: warn, "
        f"factor: 1.01, long: 90d, short: 89d}}`. {b['rounds']} rounds, the ways alternating; rows "
        "read (returned plus removed by a filter), scans, buffers and JIT from one EXPLAIN "
        "(ANALYZE, BUFFERS) of each. Before and after returned the same counts for every site "
        "and length asked (checked in the run). After also turns JIT off for this read; "
        '"before, no JIT" is the old read with JIT off (median of 3), to tell the two apart.',
        "",
        "| case | before ms | after ms | before / after | before, no JIT ms | rows read "
        "before · after | rows ratio | scans before · after | buffers before · after | "
        "JIT before · after | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for label, row in b["cases"].items():
        before, after = row["plans"]["before"], row["plans"]["after"]
        ms_before, ms_after = row["median_ms"]["before"], row["median_ms"]["after"]
        out.append(
            f"| {label} | {ms_before:,.1f} | {ms_after:,.1f} | {times(row['speedup'])} | "
            f"{row['before_without_jit_ms']:,.1f} | "
            f"{before['rows_read']:,} · {after['rows_read']:,} | {times(row['rows_ratio'])} | "
            f"{before['scans']:,} · {after['scans']:,} | "
            f"{before['buffers']:,} · {after['buffers']:,} | "
            f"{'yes' if before['jit'] else 'no'} · {'yes' if after['jit'] else 'no'} | "
            f"{row['load']} |"
        )
    return [*out, ""]


def flow_section(f: dict) -> list[str]:
    r = f["ratio"]
    out = [
        "## 7. Flow overhead",
        "",
        "A 3-step flow (log in with a secret password and extract the token, read the item and "
        "check its id, delete it; issue 26) against a local JSON API that answers at once "
        "(`common.serve_api`, in its own process). sitewatch: `expand_headers` + `probe()`, as a "
        "site DAG's attempt calls them; baseline: the same three requests and checks on a new "
        f"bare `requests.Session`. Each run: {f['warmup']} flows of each way discarded, then "
        f"{f['flows']} of each, alternating and taking turns going first; {f['runs']} runs. "
        "Medians over runs of the per-run median and p95 (spread = min–max over runs). Load "
        "after each run: " + "; ".join(f["load"]) + ".",
        "",
        "| way | ms per flow, median | (spread) | p95 | (spread) | CPU ms per flow |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ways = (
        ("sitewatch", "sitewatch `probe()` of the flow (wall)", "sitewatch_cpu"),
        ("sitewatch_response", "sitewatch's own `response_time_ms`", None),
        ("bare", "bare `requests.Session` (wall)", "bare_cpu"),
    )
    for key, label, cpu in ways:
        row = f["table"][key]
        out.append(
            f"| {label} | {row['median']['median']:.2f} | {row['median']['spread']} | "
            f"{row['p95']['median']:.2f} | {row['p95']['spread']} | "
            + (f"{f['table'][cpu]['median']['median']:.2f} |" if cpu else "– |")
        )
    out += [
        "",
        f"**sitewatch / bare = {r['median']['median']:.2f}× at the median** "
        f"({r['median']['spread']}), {r['p95']['median']:.2f}× at p95 ({r['p95']['spread']}); "
        "target ≤ 1.1× (medians of the per-run ratios).",
        "",
    ]
    return out


def status_section(s: dict) -> list[str]:
    """Section 8: the public status page's render and publish, its queries' plans, its sizes."""
    d, page, ways, big, small = s["data"], s["page"], s["ways"], s["files"], s["small"]
    out = [
        "## 8. Status page",
        "",
        f"Run {s['machine']['date']}. The `sitewatch_status_page` DAG's task for one page of "
        f"{page['components']:,} components ({page['groups']} of them groups of "
        f"{page['group_size']} sites, {page['charted']} with the response-time chart, "
        f"{page['several']} sites checked from two locations) over {d['rows']:,} stored checks "
        f"of {d['sites']:,} sites over 90 days (`burn.py`'s loader, through the insert trigger "
        "that keeps the daily rollup; then maintenance's `refresh_hourly`), with "
        f"{d['incidents']} incidents, {d['mutes']} mutes and {d['windows']} sites with "
        "maintenance windows (`bench/status_page.py`): a new connection, "
        "`status.read.read_page`, `status.files.page_files`, then `publish_files` to a local "
        "folder. *Every minute*: the page a minute later each run, into the folder the run "
        f"before wrote, as the DAG runs ({s['runs']} runs after {s['warmup']} of warm-up); "
        f"*first publish*: into an empty folder, every file written ({s['first_runs']} runs). "
        f"Load average before · after: {' · '.join(s['load'])}.",
        "",
        "| step | every minute: median ms | max ms | first publish: median ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    minute, first = ways["minute"]["stats"], ways["first"]["stats"]
    for step, row in minute.items():
        label = f"**{step}**" if step == "total" else step
        other = first[step]
        out.append(
            f"| {label} | {row['median'] * 1000:,.0f} | {row['max'] * 1000:,.0f} | "
            f"{other['median'] * 1000:,.0f} | {other['max'] * 1000:,.0f} |"
        )
    total, cold = minute["total"], first["total"]
    written = ways["minute"]["written"]
    reads = "none reads" if not s["reads_site_checks"] else "**one reads**"
    out += [
        "",
        f"**Render + publish every minute: {total['median']:.2f} s median, {total['max']:.2f} s "
        f"max** (target under 2 s); the first publish {cold['median']:.2f} s median, "
        f"{cold['max']:.2f} s max. The page is {big['count']:,} files, {big['bytes']:,} bytes; "
        f"a minute's run wrote {_span(written)} bytes of them (the files that changed). "
        f"`index.html`: {big['index_html']:,} bytes ({big['index_html_gzip']:,} "
        f"gzipped) for {page['components']:,} components; **{small['index_html']:,} bytes** "
        f"({small['index_html_gzip']:,} gzipped) for a page of the first {small['components']} "
        "with the same incidents (target under 100 KB).",
        "",
        f"The render's {len(s['plans'])} queries, each EXPLAIN (ANALYZE, BUFFERS) after its "
        f"transaction's settings: {reads} `site_checks` or a partition of it.",
        "",
        "| function | execution ms | shared buffers hit · read | relations |",
        "| --- | ---: | ---: | --- |",
    ]
    for plan in s["plans"]:
        relations = ", ".join(f"`{r}`" for r in plan["relations"])
        out.append(
            f"| `{plan['function']}` | {plan['execution_ms']:.1f} | "
            f"{plan['shared_hit']:,} · {plan['shared_read']:,} | {relations} |"
        )
    for plan in s["plans"]:
        out += ["", f"<details><summary>{plan['function']} plan</summary>", "", "```"]
        out += [plan["text"], "```", "", "</details>"]
    return [*out, ""]


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def times(ratio: float) -> str:
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.1f}×"


def ms(seconds: float) -> str:
    """Milliseconds with three significant digits below 100 ms (a cache hit is microseconds)."""
    value = seconds * 1000
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def main() -> None:
    sustained = [json.loads(p.read_text()) for p in (OUT / "sustained").glob("*.json")]
    sustained.sort(key=lambda r: min(s["window"][0] for s in r["ks"].values()))  # run order
    found = {name: load(name) for name in PARTS if name != "sustained"}
    first = next((p for p in [*found.values(), *sustained] if p), None)
    if first is None:
        sys.exit("no results in bench/out: run `make bench` first")
    renderers = {
        "drain": drain_section,
        "probe": probe_section,
        "parse": parse_section,
        "parse_cache": parse_cache_section,
        "parse_callbacks": parse_callbacks_section,
        "metrics": metrics_section,
        "burn": burn_section,
        "flow": flow_section,
        "status": status_section,
    }
    fresh = {name: renderers[name](data) for name, data in found.items() if data}
    if sustained:
        fresh["sustained"] = sustained_section(sustained)
    kept = kept_sections(BENCH / "results.md")
    sections = [
        "# sitewatch benchmarks: results",
        "",
        "Generated by `bench/report.py` from `bench/out/*.json`; how to run: `bench/README.md`. "
        "Every ratio compares ways measured side by side in the same run, and each table gives "
        "the load average while it ran. This VM's speed varies from minute to minute, which is "
        "why the ways are interleaved and every table shows the spread. A part without results "
        "in `bench/out/` keeps its section from the previous `results.md` (each section names "
        "its run's date).",
        "",
        *machine_section(first["machine"]),
        "",
    ]
    for name in PARTS:
        lines = fresh.get(name) or kept.get(name)
        if lines:
            body = "\n".join(lines).strip("\n")
            sections += [f"<!-- part:{name} -->", body, f"<!-- /part:{name} -->", ""]
    notes = BENCH / "notes.md"
    if notes.exists():
        sections += [notes.read_text()]
    (BENCH / "results.md").write_text("\n".join(sections).rstrip() + "\n")
    print(f"wrote {BENCH / 'results.md'} (new: {', '.join(fresh)})")


def kept_sections(path: Path) -> dict[str, list[str]]:
    """Each part's section of an existing results.md, between its ``<!-- part:NAME -->``
    markers: kept for a part whose results are not in bench/out (a fresh checkout that ran
    one part)."""
    text = path.read_text() if path.exists() else ""
    return {
        found[1]: found[2].strip("\n").split("\n")
        for found in re.finditer(
            r"^<!-- part:(\w+) -->\n(.*?)^<!-- /part:\1 -->$", text, re.M | re.S
        )
    }


if __name__ == "__main__":
    main()
