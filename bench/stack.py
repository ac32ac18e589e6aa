"""The private stack ``bench/sustained.py`` measures: the tests' ``Stack`` on ports of its own.

PostgreSQL 45432, Kafka 49092/49093, UI 48080, Redis 46379 (the Celery broker, started only by
the Celery stack) and the bench's site server 48181 never clash with the shared stack of
``make run`` and ``make test``; the stack's other ports (a TLS listener it does not start,
Airflow's log servers) are free ones. Everything of one stack lives in its state folder. The
stack itself is tests/stack.py's, the one harness that starts and stops private stacks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from common import API_PASSWORD, ROOT

sys.path.insert(0, str(ROOT))  # the bench scripts run from bench/, tests/ is beside it
from tests.stack import EXECUTORS, Stack  # noqa: E402, F401 (EXECUTORS: sustained.py's choices)

PORTS = {
    "SITEWATCH_PG_PORT": 45432,
    "SITEWATCH_KAFKA_PORT": 49092,
    "SITEWATCH_KAFKA_CONTROLLER_PORT": 49093,
    "SITEWATCH_UI_PORT": 48080,
    "SITEWATCH_REDIS_PORT": 46379,
}
HTTP_PORT = 48181
# sitewatch's own variables a run may set for its stack, besides Airflow's AIRFLOW__...
KNOBS = ("SITEWATCH_WORKERS", "SITEWATCH_SCHEDULERS", "SITEWATCH_DAG_PROCESSOR_PRELOAD")


def bench_stack(state: Path, executor: str, probe_in: str) -> Stack:
    """The stack in ``state`` (its sites file ``state/sites.yaml``) with ``executor`` and
    ``SITEWATCH_PROBE_IN``, its DAGs unpaused at creation. The ``AIRFLOW__...`` and ``KNOBS``
    variables of this process reach it: a run's knobs are set so. The flow sites' password
    secret is set for its triggerer and workers."""
    knobs = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW__") or k in KNOBS}
    settings = {
        **knobs,
        "SITEWATCH_PROBE_IN": probe_in,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "SITEWATCH_SECRET_BENCH_PASSWORD": API_PASSWORD,  # common.flow_site's login
    }
    return Stack(state, executor=executor, ports=PORTS, settings=settings)


def fresh_state(stack: Stack) -> None:
    """Stop what an earlier run left in the stack's state (``--keep``) and empty it: every row
    starts from empty databases, so no run still open from another setting holds a DAG (one
    active run each)."""
    if stack.state.exists():
        stack.stop()
        stack.remove()
    stack.state.mkdir(parents=True)


def celery_facts(stack: Stack) -> dict:
    """The Celery stack's workers (the names of their pid files) and each one's concurrency."""
    return {
        "celery_workers": sorted(p.stem for p in (stack.state / "airflow").glob("worker-*.pid")),
        "worker_concurrency": stack.env.get("AIRFLOW__CELERY__WORKER_CONCURRENCY"),
    }


def start_http(log_path: Path) -> subprocess.Popen:
    """The site server every generated site probes, its own process on ``HTTP_PORT``."""
    log = open(log_path, "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "common.py"), "serve", str(HTTP_PORT)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    time.sleep(1)
    return proc
