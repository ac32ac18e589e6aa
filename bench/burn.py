"""Burn-rate query (issue 24, item 3): ``storage.slo.burn_counts`` at 1,000 sites with an SLO over
10 million stored checks, before and after each site's rows were bounded by its own windows.

    source .state/env.sh && python bench/burn.py [--schema bench_burn] [--rounds 7] [--keep]

Data: a scratch schema migrated with ``storage.schema.migrate`` (day partitions, the insert
trigger and its rollups, as the drain leaves them), 1,000 sites x 10,000 slots, one every 13
minutes (90.3 days up to the load), inserted in time order; ~1% of slots down (attempt 1 not
final, attempt 2 final and up half the time), ~0.5% in maintenance. With ``--keep`` the schema
stays and the next run reuses it while this generator and the schema version are unchanged.

Before: ``burn_counts`` as of commit ``BASELINE``, read from git, called as its callers did
(every site over the union of every site's lengths). After: this checkout's, called as its
callers now do (each site with its own lengths). Three cases, each read the way its caller reads:
the drain's evaluation with the default rules everywhere; the same with one site whose only rule
is the issue's ``{severity: warn, factor: 1.01, long: 90d, short: 89d}``; and the Sites page
listing's burn cell with that site (each site's shortest long window). Per case and way: the
median wall time of ``--rounds`` calls (the ways alternate, first one then the other), and from
one EXPLAIN (ANALYZE, BUFFERS) of the statement it ran, after its transaction's settings: rows
read from ``site_checks`` (returned plus removed by a filter), scans started, partitions
touched, buffers, whether JIT compiled it; and, to tell the two changes apart, the median of 3
calls of "before" with JIT off (after turns it off). The two ways' results are compared for
every site and length the new call asks about; a difference stops the run.

Results: bench/out/burn.json, rendered by bench/report.py (section 6). Needs SITEWATCH_PG_DSN.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
import types
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

sys.path.insert(0, os.path.dirname(__file__))
from common import ROOT, loadavg, machine, median, save  # noqa: E402

from sitewatch.alerting.slo import burn_lengths  # noqa: E402
from sitewatch.config.objectives import BurnRule, Slo  # noqa: E402
from sitewatch.dashboard.budget import burn_window  # noqa: E402
from sitewatch.storage import schema  # noqa: E402
from sitewatch.storage import slo as after  # noqa: E402

BASELINE = "cac2fd2"  # the last commit whose burn_counts read every site over the widest window
SITES, SLOTS, EVERY_MINUTES = 1_000, 10_000, 13
SLOTS_PER_INSERT = 500  # 500,000 rows a statement: the trigger's transition table stays small
DAY = timedelta(days=1)
PATHOLOGICAL = Slo(99.9, window=90 * DAY, burn=(BurnRule("warn", 1.01, 90 * DAY, 89 * DAY),))

# One slot of every site per row of `slot`, oldest first (the drain's order). Deterministic:
# down and maintenance come from a hash of (site, slot), not random().
_LOAD = """
    INSERT INTO site_checks (
        site, url, scheduled_at, attempt, final, checked_at, up, status_code, response_time_ms,
        error, error_detail, final_url, maintenance, location, stored_at)
    SELECT s.name, 'https://' || s.name || '.example.com/', slot.at, a.attempt,
           a.attempt = 2 OR NOT t.down, slot.at + make_interval(secs => a.attempt * 30),
           NOT t.down OR a.attempt = 2 AND t.h / 7 %% 2 = 0,
           CASE WHEN t.down THEN 503 ELSE 200 END, 40 + t.h %% 400,
           CASE WHEN t.down THEN 'status' END,
           CASE WHEN t.down THEN 'status 503 not in 200-399' END,
           'https://' || s.name || '.example.com/', t.h %% 1000 BETWEEN 1 AND 5, 'local',
           slot.at + interval '40 seconds'
    FROM generate_series(%(high)s, %(low)s, -1) AS i
    CROSS JOIN LATERAL (SELECT %(end)s::timestamptz - i * %(every)s::interval AS at) AS slot
    CROSS JOIN generate_series(1, %(sites)s) AS n
    CROSS JOIN LATERAL (SELECT format('site-%%s', lpad(n::text, 4, '0')) AS name) AS s
    CROSS JOIN LATERAL (SELECT abs(hashtext(s.name || ':' || i)::bigint) AS h) AS hashed
    CROSS JOIN LATERAL (SELECT hashed.h AS h, hashed.h %% 100 = 0 AS down) AS t
    CROSS JOIN LATERAL generate_series(1, CASE WHEN t.down THEN 2 ELSE 1 END) AS a(attempt)
"""


def connect(dsn: str, name: str):
    return psycopg.connect(dsn, options=f"-c search_path={name}")


def prepared(dsn: str, name: str) -> dict:
    """The scratch schema ``name`` with its 10 million checks: reused when a kept one matches
    this generator and the code's schema version, else made afresh. Returns its facts."""
    digest = hashlib.sha256(f"{_LOAD}{SITES}/{SLOTS}/{EVERY_MINUTES}".encode()).hexdigest()
    with connect(dsn, name) as conn:
        kept = conn.execute("SELECT to_regclass('bench_load') IS NOT NULL").fetchone()[0]
        if kept and schema.version(conn) == schema.SCHEMA_VERSION:
            sha, rows, end, seconds = conn.execute(
                "SELECT sha, rows, data_end, load_s FROM bench_load"
            ).fetchone()
            if sha == digest:
                print(f"reusing schema {name}: {rows:,} rows up to {end}", flush=True)
                return {"rows": rows, "data_end": end, "load_s": seconds, "reused": True}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    start = time.perf_counter()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    every = timedelta(minutes=EVERY_MINUTES)
    with connect(dsn, name) as conn:
        schema.migrate(conn)
        first = (end - (SLOTS - 1) * every).date()
        days = [first + timedelta(days=d) for d in range((end.date() - first).days + 1)]
        conn.execute("SELECT site_checks_create_partitions(%s::date[])", (days,))
        conn.commit()
        for low in range(0, SLOTS, SLOTS_PER_INSERT):
            high = min(low + SLOTS_PER_INSERT, SLOTS) - 1
            params = {"low": low, "high": high, "end": end, "every": every, "sites": SITES}
            conn.execute(_LOAD, params)
            conn.commit()
            print(f"  slots {low:,}-{high:,} stored, load {loadavg()}", flush=True)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        rows = conn.execute("SELECT count(*) FROM site_checks").fetchone()[0]
        seconds = time.perf_counter() - start
        conn.execute(
            "CREATE TABLE bench_load (sha text, rows bigint, data_end timestamptz, load_s float)"
        )
        conn.execute("INSERT INTO bench_load VALUES (%s, %s, %s, %s)", (digest, rows, end, seconds))
    print(f"loaded {rows:,} rows in {seconds:.0f} s", flush=True)
    return {"rows": rows, "data_end": end, "load_s": seconds, "reused": False}


def baseline():
    """``storage.slo`` as of ``BASELINE``, from git: the code before, not a copy of it."""
    source = subprocess.run(
        ["git", "show", f"{BASELINE}:include/sitewatch/storage/slo.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("baseline_slo")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{BASELINE}:storage/slo.py", "exec"), module.__dict__)  # noqa: S102
    return module


def cases(names: list[str]) -> dict[str, dict[str, dict]]:
    """Each case: site -> the lengths its caller reads (before: the union, for every site)."""
    default = Slo(99.9)
    odd = {names[0]: PATHOLOGICAL}
    result = {}
    for label, objectives, lengths_of in (
        ("drain, default rules", {}, burn_lengths),
        ("drain, one site with a 90d rule", odd, burn_lengths),
        ("Sites page listing, one site with a 90d rule", odd, lambda s: {burn_window(s)}),
    ):
        own = {name: set(lengths_of(objectives.get(name, default))) for name in names}
        result[label] = own
    return result


class Recording(psycopg.Cursor):
    """A cursor that keeps the statements of the last transaction that read ``site_checks``:
    the settings it made (``SET LOCAL``, ``set_config``) and the read, for EXPLAIN."""

    pending: list = []
    last: list = []

    def execute(self, query, params=None, **kwargs):
        text = query if isinstance(query, str) else query.as_string(self.connection)
        Recording.pending.append((text, params))
        if "site_checks" in text:
            Recording.last, Recording.pending = Recording.pending, []
        return super().execute(query, params, **kwargs)


def explain(conn, statements: list) -> dict:
    """Rows read from site_checks' partitions (returned plus removed by a filter), scans
    started, partitions touched, buffers, of the last statement run after the others (its
    transaction's settings), as EXPLAIN (ANALYZE, BUFFERS) reports them."""
    *settings, (text, params) = statements
    for setting, values in settings:
        conn.execute(setting, values)
    plan = conn.execute(
        sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + sql.SQL(text), params
    ).fetchone()[0][0]
    conn.rollback()
    facts = {"rows_read": 0, "scans": 0, "partitions": set()}

    def walk(node: dict) -> None:
        relation = node.get("Relation Name", "")
        loops = node.get("Actual Loops", 0)
        if relation.startswith("site_checks_p") and loops:
            read = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            facts["rows_read"] += round(read * loops)
            facts["scans"] += loops
            facts["partitions"].add(relation)
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan["Plan"])
    top = plan["Plan"]
    return {
        "rows_read": facts["rows_read"],
        "scans": facts["scans"],
        "partitions": len(facts["partitions"]),
        "buffers": top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0),
        "plan_ms": plan.get("Planning Time"),
        "exec_ms": plan.get("Execution Time"),
        "jit": "JIT" in plan,
    }


def measure(conn, old, label: str, own: dict, now: datetime, rounds: int) -> dict:
    every = sorted(set().union(*own.values()))
    ways = {
        "before": lambda: old.burn_counts(conn, list(own), every, now),
        "after": lambda: after.burn_counts(conn, own, now),
    }
    results = {way: call() for way, call in ways.items()}  # warm-up, and the comparison
    for site, lengths in own.items():
        for length in lengths:
            now_, then = results["after"][site][length], results["before"][site][length]
            if (now_.checks, now_.ups) != (then.checks, then.ups):  # two Tally classes
                sys.exit(f"{label}: {site} {length}: before and after differ")
    plans = {}
    for way, call in ways.items():
        call()
        plans[way] = explain(conn, Recording.last)
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    order = list(ways)
    for _ in range(rounds):
        for way in order:
            start = time.perf_counter()
            ways[way]()
            seconds[way].append(time.perf_counter() - start)
        order.reverse()
    # how much of "before" is JIT (which "after" turns off): the old read with JIT off, alone
    conn.execute("SET jit = off")
    without_jit = []
    for _ in range(3):
        start = time.perf_counter()
        ways["before"]()
        without_jit.append(time.perf_counter() - start)
    conn.execute("RESET jit")
    conn.commit()
    row = {
        "before_without_jit_ms": median(without_jit) * 1000,
        "lengths": [str(length) for length in every],
        "ms": {way: [s * 1000 for s in values] for way, values in seconds.items()},
        "median_ms": {way: median(values) * 1000 for way, values in seconds.items()},
        "plans": plans,
        "load": loadavg(),
    }
    row["speedup"] = row["median_ms"]["before"] / row["median_ms"]["after"]
    row["rows_ratio"] = plans["before"]["rows_read"] / max(1, plans["after"]["rows_read"])
    print(
        f"{label}: before {row['median_ms']['before']:,.0f} ms, {plans['before']['rows_read']:,}"
        f" rows; after {row['median_ms']['after']:,.1f} ms, {plans['after']['rows_read']:,} rows"
        f" ({row['speedup']:,.0f}x faster); load {row['load']}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", default="bench_burn")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the schema for the next run")
    args = parser.parse_args()
    dsn = os.environ["SITEWATCH_PG_DSN"]
    data = prepared(dsn, args.schema)
    now = data["data_end"] + timedelta(minutes=2)
    old = baseline()
    names = [f"site-{n:04d}" for n in range(1, SITES + 1)]
    try:
        with connect(dsn, args.schema) as conn:
            conn.cursor_factory = Recording
            rows = {
                label: measure(conn, old, label, own, now, args.rounds)
                for label, own in cases(names).items()
            }
    finally:
        if not args.keep:
            with psycopg.connect(dsn, autocommit=True) as conn:
                drop = sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(args.schema))
                conn.execute(drop)
    path = save(
        "burn",
        {
            "machine": machine(),
            "data": {**data, "sites": SITES, "slots": SLOTS, "every_minutes": EVERY_MINUTES},
            "baseline": BASELINE,
            "rounds": args.rounds,
            "cases": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
