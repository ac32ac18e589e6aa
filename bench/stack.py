"""The private stack ``bench/sustained.py`` measures: ``scripts/dev.sh run`` on ports of its own.

PostgreSQL 45432, Kafka 49092/49093, UI 48080, Redis 46379 (the Celery broker, started only by
the Celery stack) and the bench's site server 48181 never clash with the shared stack of
``make run`` and ``make test``. Everything of one stack lives in its state folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT

PORTS = {
    "SITEWATCH_PG_PORT": "45432",
    "SITEWATCH_KAFKA_PORT": "49092",
    "SITEWATCH_KAFKA_CONTROLLER_PORT": "49093",
    "SITEWATCH_UI_PORT": "48080",
    "SITEWATCH_REDIS_PORT": "46379",
}
HTTP_PORT = 48181
EXECUTORS = ("local", "celery")  # scripts/dev.sh's SITEWATCH_EXECUTOR; the first is its default


def stack_env(state: Path, sites: Path, executor: str, probe_in: str) -> dict:
    """The environment of ``scripts/dev.sh`` for the stack in ``state`` checking ``sites``: this
    process's (so exported ``AIRFLOW__...`` and ``SITEWATCH_WORKERS`` reach the stack) with the
    private ports, the executor and ``SITEWATCH_PROBE_IN``."""
    return {
        **os.environ,
        **PORTS,
        "SITEWATCH_STATE_DIR": str(state),
        "SITEWATCH_SITES_FILE": str(sites),
        "SITEWATCH_EXECUTOR": executor,
        "SITEWATCH_PROBE_IN": probe_in,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }


def dev(command: str, env: dict) -> None:
    """``scripts/dev.sh <command>``; raises CalledProcessError if it fails."""
    subprocess.run([str(ROOT / "scripts" / "dev.sh"), command], env=env, check=True)


def fresh_state(state: Path, env: dict) -> None:
    """Stop what an earlier run left in ``state`` (``--keep``) and empty it: every row starts from
    empty databases, so no run still open from another setting holds a DAG (one active run each)."""
    if state.exists():
        dev("stop", env)
        shutil.rmtree(state)
    state.mkdir(parents=True)


def stack_vars(state: Path) -> dict[str, str]:
    """The environment the stack's env.sh makes."""
    out = subprocess.run(
        ["bash", "-c", f"source {state / 'env.sh'} && env -0"], capture_output=True, check=True
    ).stdout.decode()
    return dict(line.split("=", 1) for line in out.split("\0") if "=" in line)


def stack_dsns(env: dict[str, str]) -> tuple[str, str]:
    """(metadata, results) DSNs from the stack's ``env``: the results database as the superuser
    (``SITEWATCH_PG_DSN``), Airflow's as Airflow itself connects."""
    metadata = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace(
        "postgresql+psycopg2", "postgresql"
    )
    return metadata, env["SITEWATCH_PG_DSN"]


def celery_facts(state: Path, env: dict[str, str]) -> dict:
    """The Celery stack's workers (the names of their pid files) and each one's concurrency."""
    return {
        "celery_workers": sorted(p.stem for p in (state / "airflow").glob("worker-*.pid")),
        "worker_concurrency": env.get("AIRFLOW__CELERY__WORKER_CONCURRENCY"),
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
