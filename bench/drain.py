"""Drain throughput: ``sitewatch.pipeline.drain.drain`` beside a per-message baseline and
``psql \\copy``.

    source .state/env.sh && python bench/drain.py [--messages 200000] [--runs 5]

Produces the observations once to a fresh topic, then for each run (the ways interleaved, so
their ratios come from the same minutes of the same machine):

- drain: a real consumer in a new group (``GroupConsumerHook``) and ``drain(consumer, conn)`` into
  a scratch schema migrated with ``sitewatch.storage.schema.migrate``; the rows/s figure is rows
  over the time to the last batch's commit (the empty poll that ends ``drain`` is reported apart);
- baseline: what a simple consumer does, one poll + json.loads + INSERT + COMMIT per message, into
  a plain table of site_checks' shape (no trigger), on a subset;
- ceiling: ``psql \\copy`` of the same rows from a CSV file into the migrated ``site_checks``;
- for reference: the drain decoding each batch into ``Observation`` objects before its COPY (the
  decoding before ``fast_row``), the same decoding and COPY with no Kafka, and ``psql \\copy``
  into a plain table (no rollup trigger).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(__file__))
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.builders
from common import OUT, find_pid, loadavg, machine, median, save, spread, tree_cpu  # noqa: E402, I001

import sitewatch.pipeline.drain as drain_module  # noqa: E402
from sitewatch.airflow.hooks import GroupConsumerHook  # noqa: E402
from sitewatch.observation import FIELDS, Observation, fast_row  # noqa: E402
from sitewatch.storage.schema import migrate  # noqa: E402
from sitewatch.storage.checks import observation_rows, store_rows  # noqa: E402
from tests.builders import observation  # noqa: E402

NAMES = [f.name for f in FIELDS]
# Recent, inside the window the drain stores (a day ago, on the hour; 200,000 messages span 3 h).
START = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def observations(count: int, sites: int = 1000):
    """Realistic observations: ``sites`` sites checked every minute, ~2% down with an error."""
    for i in range(count):
        site, tick = i % sites, i // sites
        down = i % 50 == 0
        at = START + timedelta(minutes=tick)
        yield observation(
            f"site-{site:04d}",
            at,
            up=not down,
            url=f"https://site-{site:04d}.example.com/status?probe=1",
            checked_at=at + timedelta(milliseconds=site),
            response_time_ms=42.5 + site % 100,
            dns_ms=1.2,
            connect_ms=0.8,
            tls_ms=12.3,
            ttfb_ms=30.1,
            regex=r"(?i)status:\s+ok",
            regex_matched=not down,
            error="status" if down else None,
            error_detail="status 503 not in 200-399" if down else None,
            final_url=f"https://site-{site:04d}.example.com/status?probe=1",
            body_bytes=5120 + site,
            tls_expires_at=START + timedelta(days=90),
        )


def run_python_copy(raw: list[bytes], dsn: str, schema: str) -> dict:
    """No Kafka: decode the same message bytes with ``fast_row``, ``store_rows`` 5,000 a batch."""
    conn = psycopg.connect(dsn, options=f"-c search_path={schema}")
    try:
        start = time.perf_counter()
        for i in range(0, len(raw), 5000):
            store_rows(conn, [fast_row(m) for m in raw[i : i + 5000]])
        seconds = time.perf_counter() - start
    finally:
        conn.close()
    return {"rows": len(raw), "seconds": seconds, "rate": len(raw) / seconds}


def produce(bootstrap: str, topic: str, count: int, csv_path: str) -> list[bytes]:
    """Create ``topic`` (3 partitions), fill it with ``count`` observations, write them as CSV."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "none"}
    )
    raw = []
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        for obs in observations(count):
            raw.append(obs.to_message())
            while True:
                try:
                    producer.produce(topic, key=obs.site.encode(), value=raw[-1])
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            writer.writerow(
                [
                    "" if v is None else v.isoformat() if isinstance(v, datetime) else v
                    for v in (getattr(obs, n) for n in NAMES)
                ]
            )
    if producer.flush(60):
        raise RuntimeError("messages not delivered")
    return raw


def reset(conn, schema: str) -> None:
    with conn.cursor() as cur:
        cur.execute(
            f"TRUNCATE {schema}.site_checks, {schema}.site_checks_daily, "
            f"{schema}.site_checks_rejected, {schema}.plain_checks"
        )
    conn.commit()
    conn.execute("CHECKPOINT")  # every way starts with no dirty pages left by the previous one
    conn.commit()


class TimedConsumer:
    """Wraps a Consumer to time consume() and commit() calls and note the last commit."""

    def __init__(self, consumer):
        self.consumer = consumer
        self.consume_s = self.commit_s = 0.0
        self.last_commit = None
        self.consumed = 0

    def consume(self, num, timeout):
        t = time.perf_counter()
        messages = self.consumer.consume(num, timeout)
        self.consume_s += time.perf_counter() - t
        self.consumed += len(messages)
        return messages

    def commit(self, **kwargs):
        t = time.perf_counter()
        self.consumer.commit(**kwargs)
        self.last_commit = time.perf_counter()
        self.commit_s += self.last_commit - t


def decode_objects(messages, rejected, window, sources):
    """The drain's decoding before the fast path, kept as a reference: every message through
    ``Observation.from_message``, then the objects turned into rows (the bench's messages are all
    valid and inside the window)."""
    kept = [m for m in messages if m.error() is None]
    sources.extend(kept)
    yield from observation_rows([Observation.from_message(m.value()) for m in kept])


def run_drain(topic: str, dsn: str, schema: str, expected: int, objects: bool = False) -> dict:
    stored = {"seconds": 0.0, "at": 0.0}
    decode, store_rows = drain_module.decode, drain_module.store_rows

    def timed_store(*args, **kwargs):  # decoding included: rows stream into the COPY
        t = time.perf_counter()
        try:
            return store_rows(*args, **kwargs)
        finally:
            stored["at"] = time.perf_counter()
            stored["seconds"] += stored["at"] - t

    drain_module.store_rows = timed_store
    if objects:
        drain_module.decode = decode_objects
    conn = psycopg.connect(dsn, options=f"-c search_path={schema}")
    hook = GroupConsumerHook([topic], f"sitewatch-drain-bench-{uuid.uuid4().hex[:8]}")
    consumer = TimedConsumer(hook.get_consumer())
    try:
        start = time.perf_counter()
        result = drain_module.drain(consumer, conn)
        end = time.perf_counter()
    finally:
        drain_module.decode, drain_module.store_rows = decode, store_rows
        consumer.consumer.close()
        conn.close()
    if result.inserted != expected:
        raise RuntimeError(f"drain stored {result.inserted} of {expected}")
    # throughput: rows over the time until the last batch's transaction committed (``drain``
    # returns only after one more, empty poll)
    active = stored["at"] - start
    return {
        "rows": result.inserted,
        "batches": result.batches,
        "seconds": active,
        "call_seconds": end - start,
        "rate": result.inserted / active,
        "consume_s": consumer.consume_s,
        "store_s": stored["seconds"],
        "commit_s": consumer.commit_s,
    }


_INSERT = f"INSERT INTO plain_checks ({', '.join(NAMES)}) VALUES ({', '.join(['%s'] * len(NAMES))})"


def run_baseline(topic: str, bootstrap: str, dsn: str, schema: str, count: int) -> dict:
    """The simple consumer: one message at a time, one INSERT and one COMMIT each."""
    conn = psycopg.connect(dsn, options=f"-c search_path={schema}")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-baseline-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    done = 0
    start = time.perf_counter()
    try:
        while done < count:
            msg = consumer.poll(5.0)
            if msg is None or msg.error():
                continue
            doc = json.loads(msg.value())
            conn.execute(_INSERT, [doc[n] for n in NAMES])
            conn.commit()
            done += 1
        seconds = time.perf_counter() - start
    finally:
        consumer.close()
        conn.close()
    return {"rows": done, "seconds": seconds, "rate": done / seconds}


def run_copy(csv_path: str, schema: str, table: str, rows: int) -> dict:
    # As the role that made the scratch schema (SITEWATCH_PG_DSN), like the drain's own run;
    # PG* in .state/env.sh log in as the tables' owner role, which cannot see that schema.
    env = {**os.environ, "PGOPTIONS": f"-c search_path={schema}"}
    command = f"\\copy {table} ({', '.join(NAMES)}) from '{csv_path}' with (format csv)"
    start = time.perf_counter()
    psql = ["psql", "-Xqv", "ON_ERROR_STOP=1", "-d", os.environ["SITEWATCH_PG_DSN"], "-c", command]
    subprocess.run(psql, env=env, check=True)
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rate": rows / seconds}


def cpu_now(servers) -> tuple[float, float, float]:
    """CPU seconds so far: this process and its reaped children (psql), PostgreSQL, Kafka."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return client, tree_cpu(servers[0]), tree_cpu(servers[1])


def find_kafka(bootstrap: str) -> int | None:
    """The broker JVM whose server.properties listens on ``bootstrap``'s port."""
    port = bootstrap.rsplit(":", 1)[1]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"kafka.Kafka" in args:
                props = Path(args[args.index(b"kafka.Kafka") + 1].decode()).read_text()
                if f":{port}," in props:
                    return int(pid)
        except OSError:
            continue
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--baseline-messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bootstrap, dsn = os.environ["SITEWATCH_KAFKA_BOOTSTRAP"], os.environ["SITEWATCH_PG_DSN"]
    tag = uuid.uuid4().hex[:8]
    topic, schema = f"bench.drain.{tag}", f"bench_drain_{tag}"
    csv_path = str(OUT / f"drain-{tag}.csv")
    OUT.mkdir(parents=True, exist_ok=True)

    print(f"producing {args.messages:,} observations to {topic} ...", flush=True)
    raw = produce(bootstrap, topic, args.messages, csv_path)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    conn = psycopg.connect(dsn, options=f"-c search_path={schema}")
    migrate(conn)
    conn.execute("CREATE TABLE plain_checks (LIKE site_checks INCLUDING ALL)")
    conn.commit()

    servers = (
        find_pid("postgres", f"-p {os.environ['PGPORT']}"),
        find_kafka(bootstrap),
    )
    ways = ["drain", "ceiling", "baseline", "drain_objects", "python_copy", "ceiling_plain"]
    runs: dict[str, list[dict]] = {w: [] for w in ways}
    loads = []
    try:
        for i in range(args.runs):
            order = ways[i % len(ways) :] + ways[: i % len(ways)]
            for way in order:
                reset(conn, schema)
                cpu0 = cpu_now(servers)
                if way in ("drain", "drain_objects"):
                    r = run_drain(topic, dsn, schema, args.messages, objects=way == "drain_objects")
                elif way == "ceiling":
                    r = run_copy(csv_path, schema, "site_checks", args.messages)
                elif way == "python_copy":
                    r = run_python_copy(raw, dsn, schema)
                elif way == "ceiling_plain":
                    r = run_copy(csv_path, schema, "plain_checks", args.messages)
                else:
                    r = run_baseline(topic, bootstrap, dsn, schema, args.baseline_messages)
                time.sleep(0.5)  # the backend just closed: let the postmaster reap it
                cpu1 = cpu_now(servers)
                for key, before, after in zip(("client", "pg", "kafka"), cpu0, cpu1, strict=True):
                    r[f"cpu_{key}_ms_per_1k"] = (after - before) * 1000 / r["rows"] * 1000
                runs[way].append(r)
                print(f"run {i + 1} {way:14s} {r['rate']:>10,.0f} rows/s  load {loadavg()}")
            loads.append(loadavg())
    finally:
        conn.close()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic])
        os.unlink(csv_path)

    rate = {w: median([r["rate"] for r in runs[w]]) for w in ways}
    # ratios per run (same minutes), then their median
    vs_ceiling = median(
        [d["rate"] / c["rate"] for d, c in zip(runs["drain"], runs["ceiling"], strict=True)]
    )
    vs_objects = median(
        [d["rate"] / c["rate"] for d, c in zip(runs["drain"], runs["drain_objects"], strict=True)]
    )
    vs_base = median(
        [d["rate"] / b["rate"] for d, b in zip(runs["drain"], runs["baseline"], strict=True)]
    )
    summary = {
        "machine": machine(),
        "messages": args.messages,
        "baseline_messages": args.baseline_messages,
        "runs": runs,
        "load": loads,
        "median_rate": rate,
        "spread": {w: spread([r["rate"] for r in runs[w]]) for w in ways},
        "drain_vs_ceiling": vs_ceiling,
        "drain_vs_baseline": vs_base,
        "drain_vs_objects": vs_objects,
        "cpu_ms_per_1k": {
            w: {
                k: median([r[f"cpu_{k}_ms_per_1k"] for r in runs[w]])
                for k in ("client", "pg", "kafka")
            }
            for w in ways
        },
        "splits_objects": {
            k: median([r[k] for r in runs["drain_objects"]])
            for k in ("seconds", "call_seconds", "consume_s", "store_s", "commit_s")
        },
        "splits": {
            k: median([r[k] for r in runs["drain"]])
            for k in ("seconds", "call_seconds", "consume_s", "store_s", "commit_s")
        },
    }
    save("drain", summary)
    print()
    print(f"{'way':34s} {'rows':>8s} {'rows/s (median)':>16s} {'spread':>16s}")
    labels = {
        "drain": "sitewatch drain (Kafka -> PG)",
        "baseline": "baseline: INSERT+COMMIT per msg",
        "ceiling": "ceiling: psql \\copy site_checks",
        "ceiling_plain": "psql \\copy, table w/o trigger",
        "drain_objects": "drain decoding via Observation",
        "python_copy": "no Kafka: fast_row + store_rows",
    }
    for w in ways:
        rows = args.baseline_messages if w == "baseline" else args.messages
        print(f"{labels[w]:34s} {rows:>8,d} {rate[w]:>16,.0f} {summary['spread'][w]:>16s}")
    print(
        f"drain / ceiling = {vs_ceiling:.2f}   drain / baseline = {vs_base:.0f}x   "
        f"drain / drain via Observation = {vs_objects:.2f}"
    )
    print("CPU ms per 1,000 rows (median): client / PostgreSQL / Kafka broker")
    for w in ways:
        c = summary["cpu_ms_per_1k"][w]
        print(f"  {labels[w]:34s} {c['client']:8.1f} {c['pg']:8.1f} {c['kafka']:8.1f}")
    s = summary["splits"]
    print(
        "drain splits (median s): to last row stored {seconds:.2f}, call {call_seconds:.2f}, "
        "consume {consume_s:.2f}, decode + store {store_s:.2f}, "
        "commit {commit_s:.2f}".format(**s)
    )


if __name__ == "__main__":
    main()
