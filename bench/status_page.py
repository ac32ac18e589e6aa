"""Status page (issue 27): the ``sitewatch_status_page`` DAG's render and publish of one page of
1,000 components over 90 days of rollups from 10 million checks, and the plan of every query.

    source .state/env.sh && python bench/status_page.py [--schema bench_status] [--runs 7]
        [--warmup 1] [--keep] [--profile]

Data: burn.py's loader (``burn.prepared``) in a scratch schema migrated as the drain's: 1,000
sites x 10,000 checks (one every 13 minutes, 90.3 days) inserted through the insert trigger, which
keeps ``site_checks_daily``, the hourly counts and ``site_latest`` as it does for the drain; then
the maintenance DAG's ``retention.refresh_hourly`` computes the hourly percentiles (the charts).
On top, made afresh each run with the storage functions the judge and the UI call: verdicts of the
sites checked from two locations, mutes in force and to come, incidents open and resolved. With
``--keep`` the schema stays and the next run reuses its checks while burn.py's generator and the
schema version are unchanged.

Page: a sites file (bench/out/status/sites.yaml) of the 1,000 sites, some with maintenance
windows, and two pages: ``all``, 1,000 components (every tenth a group of ``GROUP_SIZE`` sites,
every tenth another with the response-time chart), and ``twenty``, its first 20, for the page
size the issue sets (under 100 KB for 20 components).

Timed as the DAG's task runs it, ``--runs`` times after ``--warmup``: a new connection,
``status.read.read_page``, ``status.files.page_files``, then ``publish_files`` into a local folder
(bench/out/status/pages). Then one more render with a recording cursor: every statement it ran
is run again under EXPLAIN (ANALYZE, BUFFERS), after the settings its transaction made, and the
run exits 1 (after saving) if a plan reads ``site_checks`` or a partition of it. ``--profile``:
one more render and publish under cProfile, its top functions printed.

Results: bench/out/status.json, rendered by bench/report.py (section 8). Needs SITEWATCH_PG_DSN.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import os
import pstats
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

sys.path.insert(0, os.path.dirname(__file__))
from burn import SITES, SLOTS, connect, prepared  # noqa: E402
from common import OUT, loadavg, machine, median, save  # noqa: E402
from plans import explain, raw_tables  # noqa: E402

from sitewatch.airflow.status_page_dag import publish_files  # noqa: E402
from sitewatch.config.loader import load_sites  # noqa: E402
from sitewatch.status.files import page_files  # noqa: E402
from sitewatch.status.read import read_page  # noqa: E402
from sitewatch.storage.incidents import open_automatic, write_update  # noqa: E402
from sitewatch.storage.mutes import add_mutes  # noqa: E402
from sitewatch.storage.retention import refresh_hourly  # noqa: E402
from sitewatch.storage.verdicts import record_verdict  # noqa: E402

HERE = OUT / "status"
GROUP_SIZE = 5
SEVERAL = 20  # the last sites, checked from two locations (their verdicts are read)
SMALL = 20  # the issue's page size target is for a 20-component page
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
TARGET_S = 2.0
# the tables the bench makes afresh on the loaded checks, children first
AFRESH = ("status_incident_updates", "status_incidents", "site_mutes", "site_verdicts")


def name(n: int) -> str:
    """burn.py's site names: site-0001 ... site-1000."""
    return f"site-{n:04d}"


def components() -> list[list[str]]:
    """The big page's components as sites-file lines: position i (1-based) is a group when i is
    a multiple of 10 (one site of 901..1000 with 4 of the single ones), else the next single
    site; positions 5, 15, ... chart their response time, every third has a description."""
    found, single = [], 0
    for i in range(1, SITES + 1):
        if i % 10 == 0:
            g = i // 10
            sites = [name(900 + g)] + [name(single - k) for k in range(GROUP_SIZE - 1)]
            lines = [f"      - group: [{', '.join(sites)}]", f"        name: Region {g}"]
        else:
            single += 1
            lines = [f"      - site: {name(single)}", f"        name: Service {single}"]
        if i % 3 == 0:
            lines.append(f"        description: Orders, payments and the public API of shop {i}")
        if i % 10 == 5:
            lines.append("        response_time: true")
        found.append(lines)
    return found


def sites_file(path: Path, now) -> Path:
    """The sites file: every site on the 13-minute schedule the data has, some with a daily
    maintenance window or a one-off window in two days; the pages ``all`` and ``twenty``."""
    soon = (now + 2 * DAY).replace(second=0, microsecond=0)
    lines = ["defaults:", "  schedule: 13m", "sites:"]
    for n in range(1, SITES + 1):
        lines += [f"  - name: {name(n)}", f"    url: https://{name(n)}.example.com/"]
        if n > SITES - SEVERAL:
            lines.append("    locations: [local, east]")
        if n % 50 == 0:
            lines += ["    maintenance:", "      - {cron: '0 3 * * *', duration: 1h}"]
        elif n % 125 == 1:
            lines += [
                "    maintenance:",
                f"      - {{start: '{soon.isoformat()}', end: '{(soon + 4 * HOUR).isoformat()}'}}",
            ]
    parts = components()
    lines.append("status_pages:")
    for page, title, count in (("all", "Example Inc. status", SITES), ("twenty", "Shop", SMALL)):
        lines += [f"  - id: {page}", f"    title: {title}", "    components:"]
        lines += [line for component in parts[:count] for line in component]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def afresh(dsn: str, schema: str, pages, now) -> dict:
    """Verdicts, mutes and incidents on the loaded checks, the earlier run's removed first."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in AFRESH:
            conn.execute(sql.SQL("DELETE FROM {}.{}").format(*map(sql.Identifier, (schema, table))))
    muted, coming = [name(n) for n in range(2, 8)], [name(n) for n in range(8, 12)]
    with connect(dsn, schema) as conn:
        newest = conn.execute("SELECT max(scheduled_at) FROM site_latest").fetchone()[0]
        for n in range(SITES - SEVERAL + 1, SITES + 1):
            east = "down" if n % 4 == 0 else "up"
            verdict = "partial" if east == "down" else "up"
            record_verdict(conn, name(n), newest, verdict, 2, {"local": "up", "east": east})
        add_mutes(conn, muted, now - HOUR, now + HOUR, "deploy", "bench")
        add_mutes(conn, coming, now + DAY, now + DAY + 2 * HOUR, "database upgrade", None)
        incidents = sum(incidents_of(conn, page, now) for page in pages)
    return {"incidents": incidents, "mutes": len(muted) + len(coming), "verdicts": SEVERAL}


UPDATES = (
    ("investigating", "Checkout fails for **some** customers; we are *investigating*."),
    (
        "identified",
        "A bad deploy of the payment service: rolling back ([notes](https://x.test/n)).",
    ),
    ("resolved", "Fixed. Orders placed between 10:02 and 10:40 UTC were\n\n- retried\n- refunded"),
)


def incidents_of(conn, page, now) -> int:
    """Two open automatic incidents, one an operator opened, ten resolved over 90 days (each with
    ``UPDATES``); returns how many."""
    names = [c.name for c in page.components]
    for k in range(2):
        site = page.components[k].sites[0]
        at = now - (k + 1) * HOUR
        open_automatic(conn, page.id, names[k], site, f"{names[k]} is down", "Looking.", at)
    state, body = UPDATES[1]
    write_update(
        conn, page.id, incident=None, state=state, body=body, author="alice",
        at=now - 3 * HOUR, title="Slow checkout", components=names[2:4],
    )  # fmt: skip
    for k in range(10):
        at, incident = now - (k * 9 + 2) * DAY, None
        for step, (state, body) in enumerate(UPDATES):
            incident = write_update(
                conn, page.id, incident=incident, state=state, body=body, author="alice",
                at=at + step * HOUR, title=f"Payments failing ({k})",
                components=[names[k * 7 % len(names)]],
            )  # fmt: skip
    return 13


def render_publish(dsn: str, schema: str, page, configured, now, url: str, cursor=None) -> tuple:
    """One run of the DAG's task for ``page``: (seconds per step, the page's files, bytes
    written)."""
    start = time.perf_counter()
    conn = connect(dsn, schema)
    if cursor is not None:
        conn.cursor_factory = cursor
    connected = time.perf_counter()
    try:
        view = read_page(conn, page, configured, now)
    finally:
        conn.close()
    read = time.perf_counter()
    files = page_files(view)
    rendered = time.perf_counter()
    written = publish_files(url, view.id, files)
    done = time.perf_counter()
    steps = {
        "connect": connected - start,
        "read_page (the queries)": read - connected,
        "page_files (render)": rendered - read,
        "publish_files (write)": done - rendered,
        "total": done - start,
    }
    return steps, files, written


def series(run, runs: int, warmup: int, label: str) -> dict:
    """``run(r)`` ``warmup + runs`` times: each measured run's seconds per step and bytes
    written, and per step the median, max and min."""
    seconds: dict[str, list[float]] = {}
    written = []
    for r in range(warmup + runs):
        steps, _, size = run(r)
        if r >= warmup:
            written.append(size)
            for step, value in steps.items():
                seconds.setdefault(step, []).append(value)
        parts = ", ".join(f"{k} {v * 1000:,.0f}" for k, v in steps.items() if k != "total")
        name = "warm-up" if r < warmup else f"run {r + 1 - warmup}"
        print(
            f"{label}, {name}: {steps['total'] * 1000:,.0f} ms ({parts}), {size:,} bytes written"
            f"  load {loadavg()}",
            flush=True,
        )
    stats = {
        step: {"median": median(v), "max": max(v), "min": min(v)} for step, v in seconds.items()
    }
    return {"seconds": seconds, "written": written, "stats": stats}


class Recording(psycopg.Cursor):
    """A cursor that notes each statement it runs: (storage function, whether it opens a
    transaction, text, parameters)."""

    statements: list = []

    def execute(self, query, params=None, **kwargs):
        text = query if isinstance(query, str) else query.as_string(self.connection)
        opens = self.connection.info.transaction_status == TransactionStatus.IDLE
        Recording.statements.append((caller(), opens, text, params))
        return super().execute(query, params, **kwargs)


def caller() -> str:
    """The innermost function of ``sitewatch.storage`` on the stack (schema.transaction aside)."""
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename)
        if path.parent.name == "storage" and path.stem != "schema":
            return f"storage.{path.stem}.{frame.name}"
    return "?"


def plans(dsn: str, schema: str, statements: list) -> list[dict]:
    """EXPLAIN (ANALYZE, BUFFERS) of every recorded read, in a transaction replaying the
    settings its own made before it (``SET LOCAL``), rolled back; relations each plan reads."""
    found = []
    with connect(dsn, schema) as conn:
        raw = raw_tables(conn)
        settings: list = []
        for function, opens, text, params in statements:
            if opens:
                conn.rollback()
                settings = []
            if text.lstrip().upper().startswith("SET "):
                conn.execute(text, params)
                settings.append(text.strip())
                continue
            plan = explain(conn, text, params, raw)
            found.append({"function": function, "settings": settings[:], **plan})
        conn.rollback()
    return found


def sizes(files: dict[str, bytes]) -> dict:
    index = files["index.html"]
    return {
        "count": len(files),
        "bytes": sum(len(data) for data in files.values()),
        "index_html": len(index),
        "index_html_gzip": len(gzip.compress(index)),
    }


def profile(run) -> str:
    """One ``run()`` under cProfile: its 25 costliest functions, cumulative time."""
    profiler = cProfile.Profile()
    profiler.runcall(run)
    path = HERE / "profile.txt"
    with path.open("w") as out:
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    return path.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", default="bench_status")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--first", type=int, default=3, help="runs into an empty folder")
    parser.add_argument("--keep", action="store_true", help="keep the schema for the next run")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    args = parser.parse_args()
    if not args.schema.startswith("bench_"):
        sys.exit("--schema: a scratch schema's name starts with bench_")
    dsn = os.environ["SITEWATCH_PG_DSN"]
    url = (HERE / "pages").resolve().as_uri()
    data = prepared(dsn, args.schema)
    now = data["data_end"] + timedelta(minutes=2)
    try:
        with connect(dsn, args.schema) as conn:
            start = time.perf_counter()
            data["hourly_rows"] = refresh_hourly(conn, now)
            data["hourly_s"] = time.perf_counter() - start
        print(f"refresh_hourly: {data['hourly_rows']:,} rows in {data['hourly_s']:.1f} s")
        sites = load_sites(sites_file(HERE / "sites.yaml", now))
        if sites.issues:
            sys.exit(f"the bench's sites file is invalid: {sites.issues[:3]}")
        big, small = sites.status_pages
        data.update(afresh(dsn, args.schema, (big, small), now))
        data["windows"] = sum(1 for s in sites.sites if s.maintenance)

        def run(page, at=now, to=url, cursor=None):
            return render_publish(dsn, args.schema, page, sites.by_name, at, to, cursor)

        def fresh(_):  # an empty folder of its own: every file written
            with tempfile.TemporaryDirectory(prefix="sitewatch-status-") as folder:
                return run(big, to=Path(folder).as_uri())

        load = [loadavg()]
        ways = {
            # as the DAG runs every minute: the page a minute later, into the same folder
            "minute": series(lambda r: run(big, at=now + r * MINUTE), args.runs, args.warmup,
                             "every minute"),
            "first": series(fresh, args.first, 0, "into an empty folder"),
        }  # fmt: skip
        load.append(loadavg())
        files = run(big)[1]
        small_files = run(small)[1]
        Recording.statements = []
        run(big, cursor=Recording)
        found = plans(dsn, args.schema, Recording.statements)
        later = now + (args.warmup + args.runs) * MINUTE  # the next minute's page
        text = profile(lambda: run(big, at=later)) if args.profile else None
    finally:
        if not args.keep:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(args.schema)))
    page = {
        "components": len(big.components),
        "groups": sum(1 for c in big.components if c.group),
        "group_size": GROUP_SIZE,
        "charted": sum(1 for c in big.components if c.response_time),
        "several": SEVERAL,
    }
    reads_raw = any(p["reads_site_checks"] for p in found)
    result = {
        "machine": machine(),
        "data": {**data, "sites": SITES, "slots": SLOTS},
        "page": page,
        "runs": args.runs,
        "warmup": args.warmup,
        "first_runs": args.first,
        "ways": ways,
        "load": load,
        "target_s": TARGET_S,
        "files": sizes(files),
        "small": {"components": len(small.components), **sizes(small_files)},
        "plans": found,
        "reads_site_checks": reads_raw,
        "profile": text,
    }
    for plan in found:
        print(f"\n-- {plan['function']} ({', '.join(plan['relations'])})")
        print(plan["text"])
    if text:
        print(text)
    for way, label in (("minute", "every minute"), ("first", "into an empty folder")):
        total = ways[way]["stats"]["total"]
        print(
            f"render + publish of {page['components']:,} components, {label}: median "
            f"{total['median']:.2f} s, max {total['max']:.2f} s (target < {TARGET_S:.0f} s)"
        )
    print(
        f"index.html {result['files']['index_html']:,} B for {page['components']:,} components, "
        f"{result['small']['index_html']:,} B for {SMALL}; load {' -> '.join(load)}"
    )
    print(f"wrote {save('status', result)}")
    verdict = "FAILED: a plan reads site_checks" if reads_raw else "OK, rollups only"
    print(f"assert no plan of the render's {len(found)} queries reads site_checks: {verdict}")
    if reads_raw:
        sys.exit(1)


if __name__ == "__main__":
    main()
