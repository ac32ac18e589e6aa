"""Metrics scrape (issue 18): ``GET /metrics`` of 1,000 sites over 10 million stored checks,
side by side with the Sites page listing, where its time goes, and what migration 9 costs.

    source .state/env.sh && python bench/metrics.py [--schema bench_metrics] [--rounds 15]
        [--warmup 2] [--batches 40] [--keep]

1. Upgrade (``metrics_schema.py``): a scratch schema loaded by ``bench/dashboard_load.sql``
   (1,000 sites x 10,000 checks every 5 minutes, migration 1's table, made by hand) is recorded
   at version 1 and migrated one version at a time, each timed. Before migration 9,
   ``retention.refresh_hourly`` rolls up the hours as the maintenance DAG had done at version 8,
   so migration 9's time is what an upgrade of such a database costs (its backfill recounts only
   the last 48 hours). With ``--keep`` the schema stays, with its timings, and the next run
   reuses it while the load script and the schema version are unchanged.
2. Scrape: ``web.app.create_app`` on that schema with 1,000 configured sites (a third with an
   SLO), through fastapi's TestClient, in rounds after a warm-up: the scrape and the listing
   ``GET /`` alternately first, then the scrape's parts alone (``metrics_page.gather``;
   ``exposition``, and ``families``, its part before prometheus_client encodes) and each read.
   EXPLAIN (ANALYZE, BUFFERS) of ``storage.metrics``' ``_LATEST`` and ``_UPTIMES``, with the
   relations each plan reads (site_checks must not be one).
3. Drain: ``store_batch`` of 5,000 observations (5 checks of each of 1,000 sites) into a schema
   at migration 9 and into one whose trigger function is migration 8's (the daily rollup only),
   batch by batch alternately.

Results: bench/out/metrics.json, rendered by bench/report.py (section 5). Needs SITEWATCH_PG_DSN.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.builders
from common import cpu_busy, loadavg, machine, median, percentile, save  # noqa: E402, I001
from plans import explain, raw_tables  # noqa: E402
from metrics_schema import connect, data_now, from_migration, prepared  # noqa: E402

from sitewatch.airflow.web_app import AIRFLOW_HOST  # noqa: E402
from sitewatch.config.objectives import Slo  # noqa: E402
from sitewatch.config.site import Site  # noqa: E402
from sitewatch.dashboard.metrics import exposition, families  # noqa: E402
from sitewatch.observation import Observation  # noqa: E402
from sitewatch.pipeline.lag import KafkaLag  # noqa: E402
from sitewatch.storage import metrics, queries, schema  # noqa: E402
from sitewatch.storage.checks import store_batch  # noqa: E402
from sitewatch.storage.mutes import mutes_in_force  # noqa: E402
from sitewatch.storage.verdicts import latest_verdicts  # noqa: E402
from sitewatch.web import app as sites_app  # noqa: E402
from sitewatch.web import metrics_page, slo_figures  # noqa: E402
from tests.builders import observation  # noqa: E402

LAG = KafkaLag("sitewatch.checks", "sitewatch-drain", {0: 12, 1: 0, 2: 3})
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# The load script's sites are checked every 5 minutes; a site with an SLO every third one.
SCHEDULE, SLO_EVERY = timedelta(minutes=5), 3


# --- 2. the scrape beside the listing (1. is metrics_schema.py) ----------------------------


def configured_sites(conn) -> dict:
    """1,000 ``Site`` objects named as the loaded data's, single-location (the data has one),
    every third with a 99.9% SLO over 30 days."""
    names = [row[0] for row in conn.execute("SELECT site FROM site_latest ORDER BY site")]
    return {
        name: Site(
            name=name,
            url=f"https://{name}.example.com/",
            schedule=SCHEDULE,
            slo=Slo(99.9) if i % SLO_EVERY == 0 else None,
        )
        for i, name in enumerate(names)
    }


def timed(fn) -> tuple[object, float, float]:
    """``fn()``'s result, wall ms and this process's CPU ms (every thread: the app runs routes
    in its thread pool)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def get(client: TestClient, path: str, **headers: str):
    answer = client.get(path, headers=headers)
    if answer.status_code != 200:
        raise SystemExit(f"GET {path}: {answer.status_code} {answer.text[:300]}")
    return answer


def scrape_reads(configured: dict, now: datetime) -> dict:
    """Each read of one scrape as ``gather`` makes it, and the listing's two heaviest, by name."""
    names = sorted(configured)
    several = [name for name, site in configured.items() if len(site.locations) > 1]
    return {
        "metrics.latest": lambda c: metrics.latest(c, names),
        "metrics.uptimes": lambda c: metrics.uptimes(c, names, now),
        "metrics.pipeline": lambda c: metrics.pipeline(c),
        "slo_figures.budgets(burn=False)": lambda c: slo_figures.budgets(
            c, configured, now, burn=False
        ),
        "mutes_in_force": lambda c: mutes_in_force(c, names, now),
        "latest_verdicts": lambda c: latest_verdicts(c, several),
        "listing: queries.site_summaries": lambda c: queries.site_summaries(c, now),
        "listing: slo_figures.budgets(burn=True)": lambda c: slo_figures.budgets(
            c, configured, now
        ),
    }


def scrape_bench(dsn: str, name: str, rounds: int, warmup: int) -> dict:
    """Rounds of: the scrape and the listing (alternately first), then gather, exposition (text
    and OpenMetrics), families and each read alone; the first ``warmup`` rounds are not kept."""
    with connect(dsn, name) as conn:
        now = data_now(conn)
        configured = configured_sites(conn)
    app = sites_app.create_app(
        replace(AIRFLOW_HOST, connect=lambda: connect(dsn, name), ui_base=str),
        sites=lambda: configured,
        clock=lambda: now,
        auth=lambda: None,
        scrape_auth=lambda: None,
        lag=lambda: LAG,
    )
    client = TestClient(app)
    requests = {"scrape": lambda: get(client, "/metrics"), "listing": lambda: get(client, "/")}
    reads = scrape_reads(configured, now)
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def keep(way: str, fn, measured: bool):
        result, ms, cpu_ms = timed(fn)
        if measured:
            wall.setdefault(way, []).append(ms)
            cpu.setdefault(way, []).append(cpu_ms)
        return result

    load = [loadavg()]
    busy0 = cpu_busy()
    for r in range(warmup + rounds):
        measured = r >= warmup
        order = ("scrape", "listing") if r % 2 == 0 else ("listing", "scrape")
        answers = {way: keep(way, requests[way], measured) for way in order}
        with connect(dsn, name) as conn:
            gather = functools.partial(
                metrics_page.gather, conn, configured, now, LAG, time.perf_counter()
            )
            # first on a new connection, as the route's; again once its backend has its caches
            snapshot = keep("gather", gather, measured)
            keep("gather (the connection's second)", gather, measured)
            keep("exposition", lambda s=snapshot: exposition(s, None), measured)
            keep("families", lambda s=snapshot: families(s), measured)
            keep(
                "exposition (OpenMetrics)", lambda s=snapshot: exposition(s, OPENMETRICS), measured
            )
            for label, read in reads.items():
                keep(label, lambda c=conn, f=read: f(c), measured)
        if measured:
            print(
                f"round {r - warmup + 1}: scrape {wall['scrape'][-1]:.0f} ms, "
                f"listing {wall['listing'][-1]:.0f} ms  load {loadavg()}",
                flush=True,
            )
    busy1 = cpu_busy()
    load.append(loadavg())
    body = answers["scrape"].text
    ratios = [lst / scr for lst, scr in zip(wall["listing"], wall["scrape"], strict=True)]
    return {
        "now": now.isoformat(),
        "configured": len(configured),
        "slo_sites": sum(1 for s in configured.values() if s.slo is not None),
        "rounds": rounds,
        "warmup": warmup,
        "runs_ms": wall,
        "cpu_ms": cpu,
        "stats": {way: stats(values, cpu[way]) for way, values in wall.items()},
        "listing_over_scrape": median(ratios),
        "listing_over_scrape_spread": [min(ratios), max(ratios)],
        "body_bytes": len(answers["scrape"].content),
        "content_type": answers["scrape"].headers["content-type"],
        "series": sum(1 for line in body.splitlines() if line and not line.startswith("#")),
        "families": sum(1 for line in body.splitlines() if line.startswith("# TYPE")),
        "states": states(body),
        "listing_bytes": len(answers["listing"].content),
        "load": load,
        "cpu_busy_pct": 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
    }


def stats(values: list[float], cpu_values: list[float]) -> dict:
    return {
        "median": median(values),
        "p90": percentile(values, 90),
        "min": min(values),
        "max": max(values),
        "cpu_median": median(cpu_values),
    }


def states(body: str) -> dict[str, int]:
    """How many sites the scrape shows in each state: a check that it read real figures."""
    found: dict[str, int] = {}
    for family in text_string_to_metric_families(body):
        if family.name == "sitewatch_site_state":
            for sample in family.samples:
                if sample.value == 1:
                    found[sample.labels["state"]] = found.get(sample.labels["state"], 0) + 1
    return found


def plans(dsn: str, name: str) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS) of the scrape's two per-site reads with the parameters their
    functions pass; the relations each plan reads, and whether site_checks (or a partition of
    it) is one of them."""
    with connect(dsn, name) as conn:
        now = data_now(conn)
        names = sorted(configured_sites(conn))
        raw = raw_tables(conn)
        hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        cases = {
            "_LATEST": (metrics._LATEST, {"all": False, "sites": names}),
            "_UPTIMES": (metrics._UPTIMES, {"sites": names, "hour": hour, "today": hour.date()}),
        }
        found = {}
        for label, (sql, params) in cases.items():
            found[label] = plan = explain(conn, sql, params, raw)
            relations = plan["relations"]
            print(f"{label}: {plan['execution_ms']:.1f} ms, relations {relations}", flush=True)
        conn.rollback()
    return found


# --- 3. what migration 9's trigger costs the drain --------------------------------------------


def migration_8_trigger() -> str:
    """Migration 8's trigger function (the daily rollup only), renamed to migration 9's
    ``site_checks_added()``, which its trigger calls."""
    function = from_migration(8, r"CREATE OR REPLACE FUNCTION site_checks_daily_add\(\).*?\$\$;")
    return function.replace("site_checks_daily_add()", "site_checks_added()")


def batch(start: datetime, sites: int = 1000, per_site: int = 5) -> list[Observation]:
    """A drain batch: ``per_site`` consecutive 1-minute checks of each of ``sites`` sites, ~2%
    down with an error, phases and a certificate expiry like a real https check."""
    out = []
    for tick in range(per_site):
        at = start + timedelta(minutes=tick)
        for n in range(sites):
            down = (n + tick) % 50 == 0
            name = f"site-{n + 1:04d}"
            out.append(
                observation(
                    name,
                    at,
                    up=not down,
                    url=f"https://{name}.example.com/",
                    response_time_ms=40.0 + n % 300,
                    dns_ms=1.0,
                    connect_ms=2.0,
                    tls_ms=5.0,
                    ttfb_ms=30.0,
                    tls_expires_at=start + timedelta(days=60),
                )
            )
    return out


def trigger_bench(dsn: str, batches: int) -> dict:
    """``store_batch`` of 5,000 rows into two fresh schemas, migration 9's trigger and migration
    8's, the same batches alternately (which first alternates too); one warm-up batch each."""
    ways = ("migration 9", "migration 8")
    names = {way: f"bench_trigger_{uuid.uuid4().hex[:8]}" for way in ways}
    conns = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as admin:
            for name in names.values():
                admin.execute(f"CREATE SCHEMA {name}")
        for way, name in names.items():
            conns[way] = connect(dsn, name)
            schema.migrate(conns[way])
        conns["migration 8"].execute(migration_8_trigger())
        conns["migration 8"].commit()
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        load = [loadavg()]
        for b in range(batches + 1):
            rows = batch(start + timedelta(minutes=5 * b))
            for way in ways if b % 2 == 0 else ways[::-1]:
                begin = time.perf_counter()
                result = store_batch(conns[way], rows)
                if result.inserted != len(rows):
                    raise SystemExit(f"{way}: stored {result.inserted} of {len(rows)}")
                if b:
                    seconds[way].append(time.perf_counter() - begin)
        load.append(loadavg())
    finally:
        for conn in conns.values():
            conn.close()
        with psycopg.connect(dsn, autocommit=True) as admin:
            for name in names.values():
                admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    size = len(rows)
    rates = {way: [size / s for s in seconds[way]] for way in ways}
    pairs = [a / b for a, b in zip(rates["migration 9"], rates["migration 8"], strict=True)]
    result = {
        "batches": batches,
        "batch_rows": size,
        "rows_per_s": {way: median(rates[way]) for way in ways},
        "spread": {way: [min(rates[way]), max(rates[way])] for way in ways},
        "m9_over_m8": median(pairs),
        "load": load,
    }
    for way in ways:
        print(f"store_batch, {way}'s trigger: {result['rows_per_s'][way]:,.0f} rows/s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="bench_metrics")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the 10M-row schema for a rerun")
    args = parser.parse_args()
    dsn = os.environ["SITEWATCH_PG_DSN"]
    data = {"machine": machine()}
    try:
        data["schema"] = prepared(dsn, args.schema)
        data["scrape"] = scrape_bench(dsn, args.schema, args.rounds, args.warmup)
        data["plans"] = plans(dsn, args.schema)
    finally:
        if not args.keep:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
    data["trigger"] = trigger_bench(dsn, args.batches)
    s = data["scrape"]["stats"]
    print(
        f"scrape median {s['scrape']['median']:.0f} ms (p90 {s['scrape']['p90']:.0f}), listing "
        f"{s['listing']['median']:.0f} ms; listing / scrape "
        f"{data['scrape']['listing_over_scrape']:.1f}x"
    )
    print(f"wrote {save('metrics', data)}")


if __name__ == "__main__":
    main()
