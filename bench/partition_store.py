"""store_batch speed before and after migration 4 (site_checks partitioned by day).

    source .state/env.sh && python bench/partition_store.py [--rounds 3]

Each round stores 50,000 observations (500 sites, 100 checks each 5 minutes apart, ~1 in 10
retried) in batches of 5,000 into fresh scratch schemas, interleaved so every layout sees the
same minutes of the machine: "v3" (unpartitioned, migration 3's trigger), "v4" (partitioned,
the trigger on the parent), and "v4, no trigger" (the same with the trigger dropped, which
shows what the trigger costs COPY on a partitioned table). Prints rows/s; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from sitewatch.observation import Observation
from sitewatch.storage.checks import store_batch
from sitewatch.storage.schema import MIGRATIONS, migrate

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.builders
from tests.builders import observation  # noqa: E402

BATCH = 5000


def observations(start: datetime) -> list[Observation]:
    rows = []
    for step in range(100):
        at = start + timedelta(minutes=5 * step)
        for s in range(500):
            retried = (s + step) % 10 == 0
            for attempt in (1, 2) if retried else (1,):
                final = attempt == 2 or not retried
                rows.append(
                    observation(f"site-{s:03}", at, up=final, url=f"https://s{s}.example/",
                                attempt=attempt, final=final, response_time_ms=80.5 + s,
                                ttfb_ms=40.0)
                )  # fmt: skip
    return rows[:50_000]


def prepare(dsn: str, layout: str) -> tuple[str, psycopg.Connection]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    conn = psycopg.connect(dsn, options=f"-c search_path={schema}")
    if layout == "v3":
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE sitewatch_schema_version (version integer PRIMARY KEY, "
                        "applied_at timestamptz NOT NULL DEFAULT now())")  # fmt: skip
            for version in (1, 2, 3):
                cur.execute(MIGRATIONS[version - 1])
                cur.execute("INSERT INTO sitewatch_schema_version VALUES (%s)", (version,))
        conn.commit()
    else:
        migrate(conn)
        if layout == "v4, no trigger":
            conn.execute("DROP TRIGGER site_checks_daily ON site_checks")
            conn.commit()
    return schema, conn


def run(dsn: str, layout: str, rows: list[Observation]) -> tuple[float, float]:
    schema, conn = prepare(dsn, layout)
    try:
        times = []
        for i in range(0, len(rows), BATCH):
            began = time.perf_counter()
            store_batch(conn, rows[i : i + BATCH])
            times.append(time.perf_counter() - began)
        return len(rows) / sum(times), BATCH / statistics.median(times)
    finally:
        conn.close()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dsn = os.environ["SITEWATCH_PG_DSN"]
    rows = observations(datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0))
    results: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for layout in ("v3", "v4", "v4, no trigger"):
            results.setdefault(layout, []).append(run(dsn, layout, rows))
    print(f"store_batch, {len(rows)} observations in batches of {BATCH}, {args.rounds} rounds")
    print(f"load average: {os.getloadavg()}")
    for layout, figures in results.items():
        overall = ", ".join(f"{total:,.0f}" for total, _ in figures)
        batch = ", ".join(f"{median:,.0f}" for _, median in figures)
        print(f"{layout:15} rows/s overall: {overall}; median batch: {batch}")


if __name__ == "__main__":
    main()
