"""A real Prometheus for tests: Debian's ``/usr/bin/prometheus`` (package ``prometheus``, which
``scripts/dev.sh test`` installs as root), one private server per ``with`` block.

``Prometheus(jobs)`` writes a config with one scrape job per ``Job``, starts the server on a free
port of 127.0.0.1 with a temporary TSDB, and waits until it is ready. Tests then read what it
scraped through its HTTP API: ``query`` (PromQL), ``one`` (a single series' value), ``targets``
and ``wait_scraped``. On exit it is stopped (SIGTERM, then SIGKILL) and its files deleted; when
the block raised, the server's log goes to stderr, which pytest shows with the failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import free_ports

BINARY = Path("/usr/bin/prometheus")
PACKAGE = "prometheus"  # Debian's; scripts/dev.sh prometheus_install
NEVER = "0001-01-01T00:00:00Z"  # a target's lastScrape before its first scrape


class PrometheusError(AssertionError):
    """The server refused a query (``errorType: error``), or did not get ready or scrape."""


@dataclass(frozen=True)
class Job:
    """One scrape job: ``name`` (its ``job`` label), the metrics endpoint's full ``url``, and a
    file holding a Bearer token to send (None: no Authorization header)."""

    name: str
    url: str
    token_file: Path | None = None

    def config(self) -> dict:
        """The job's ``scrape_configs`` entry."""
        url = urlsplit(self.url)
        job = {
            "job_name": self.name,
            "scheme": url.scheme,
            "metrics_path": url.path or "/",
            "static_configs": [{"targets": [url.netloc]}],
        }
        if self.token_file is not None:
            # credentials_file, not credentials: the token never sits in the config
            job["authorization"] = {"type": "Bearer", "credentials_file": str(self.token_file)}
        return job


class Prometheus:
    """A private Prometheus scraping ``jobs`` every ``interval`` seconds (the scrape timeout is
    the same); ``url`` is its base URL once entered. See the module doc."""

    def __init__(self, jobs: list[Job], interval: float = 2.0, ready_timeout: float = 60.0):
        self.jobs, self.interval, self.ready_timeout = jobs, interval, ready_timeout
        self.url = ""
        self.dir: Path | None = None
        self.process: subprocess.Popen | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Prometheus:
        if not BINARY.exists():
            pytest.fail(
                f"{BINARY} is missing: install Debian's {PACKAGE!r} package "
                "(scripts/dev.sh test does as root)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="sitewatch-prometheus-"))
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps(self.config(), indent=2))  # JSON is YAML
        (port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{port}"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(BINARY),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # pytest's own signals (Ctrl-C) are not its
            )
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                sys.stderr.write(f"--- Prometheus log ({self.log_path}) ---\n{self.log_tail()}\n")
        finally:
            self._stop()

    def config(self) -> dict:
        """The whole configuration file's content."""
        every = f"{self.interval:g}s"
        return {
            "global": {"scrape_interval": every, "scrape_timeout": every},
            "scrape_configs": [job.config() for job in self.jobs],
        }

    @property
    def log_path(self) -> Path:
        assert self.dir is not None, "enter the Prometheus first"
        return self.dir / "prometheus.log"

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log (stdout and stderr)."""
        if self.dir is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if requests.get(f"{self.url}/-/ready", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass  # not listening yet
            time.sleep(0.2)
        raise PrometheusError(
            f"prometheus not ready after {self.ready_timeout:g} s:\n{self.log_tail()}"
        )

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- the HTTP API --------------------------------------------------------------------------
    def _api(self, path: str, **params) -> dict | list:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list:
        """The result of an instant query now (``/api/v1/query``): for a vector, one dict per
        series, ``{"metric": {label: value}, "value": [unix time, "value as text"]}``. Raises
        PrometheusError with Prometheus's message when it refuses the expression."""
        return self._api("query", query=promql)["result"]

    def one(self, promql: str) -> float:
        """The value of the one series ``promql`` selects; PrometheusError unless exactly one."""
        result = self.query(promql)
        if len(result) != 1:
            raise PrometheusError(f"{promql}: {len(result)} series, not 1: {result}")
        return float(result[0]["value"][1])

    def targets(self) -> dict[str, dict]:
        """Each job's (active) target as ``/api/v1/targets`` gives it: ``health`` (up, down,
        unknown), ``lastError``, ``lastScrape``, ``scrapeUrl``, ``labels``... keyed by job name
        (each ``Job`` has one target)."""
        active = self._api("targets", state="active")["activeTargets"]
        return {target["labels"]["job"]: target for target in active}

    def wait_scraped(self, job: str, timeout: float = 30.0) -> dict:
        """Wait until ``job``'s target was scraped once and that scrape's samples are
        queryable (its ``up`` series exists: the target reports its scrape just before the
        samples are committed); return the target. PrometheusError on timeout."""
        deadline = time.monotonic() + timeout
        target: dict = {}
        while time.monotonic() < deadline:
            target = self.targets().get(job, {})
            if target.get("lastScrape", NEVER) != NEVER and self.query(f'up{{job="{job}"}}'):
                return target
            time.sleep(0.5)
        raise PrometheusError(
            f"job {job!r} not scraped in {timeout:g} s; target: {target}\n{self.log_tail()}"
        )
