"""A private sitewatch stack: its own PostgreSQL, Kafka, maybe Redis and Airflow, real processes.

Tests that break, restart or reconfigure servers (tests/faults, tests/browser, the dev.sh and TLS
tests in tests/integration) and bench/sustained.py never touch the shared stack of ``make
services``: each starts a ``Stack`` with ``scripts/dev.sh`` on a state directory and ports of its
own. A stack starts in one of three ways:

- ``services()``: Kafka and PostgreSQL (Redis too with ``executor="celery"``; certificates and
  TLS listeners with ``tls=True``), no Airflow;
- ``run()``: ``dev.sh run``, the whole Airflow with its UI as ``make run`` starts it (``airflow
  standalone``, or with Celery each component and a worker per location);
- ``airflow()``, after ``services()``: Airflow's four components started here one by one, so that
  a test can stop or restart one of them alone.

``Stack.temporary()`` makes one in a fresh directory and always stops what was started in it
(``dev.sh stop``). Ports come from ``tests.conftest.free_ports``, so the private stacks of make
test's processes never share one. Every process is found by its pid file; none is killed by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg

from tests.conftest import free_ports

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "scripts" / "dev.sh"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
EXECUTORS = ("local", "celery")  # dev.sh's SITEWATCH_EXECUTOR
PORTS = (
    "SITEWATCH_PG_PORT",
    "SITEWATCH_KAFKA_PORT",
    "SITEWATCH_KAFKA_CONTROLLER_PORT",
    "SITEWATCH_KAFKA_TLS_PORT",
    "SITEWATCH_UI_PORT",
    "SITEWATCH_STATUS_PORT",  # dev.sh run's status page server
    "SITEWATCH_REDIS_PORT",
    # the log servers of a worker and a triggerer, which another Airflow on the machine would
    # otherwise hold (8793, 8794)
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
)
# What the shared stack's env.sh exports, and what a Stack decides itself: never taken from the
# caller's environment (make test's), so a private stack is only what it is told.
NOT_INHERITED = (
    "AIRFLOW",
    "PG",
    "SITEWATCH_PG",
    "SITEWATCH_KAFKA",
    "SITEWATCH_TOPIC",
    "SITEWATCH_CELERY",
    "SITEWATCH_TLS",
    "SITEWATCH_POSTGRES",
    "SITEWATCH_STATE_DIR",
    "SITEWATCH_SITES_FILE",
    "SITEWATCH_EXECUTOR",
    "SITEWATCH_UI_PORT",
    "SITEWATCH_STATUS_PORT",
    "SITEWATCH_REDIS_PORT",
    "SITEWATCH_AIRFLOW_DB",
    "SITEWATCH_RESULTS_DB",
)


class StackError(RuntimeError):
    """A ``scripts/dev.sh`` command or the airflow CLI failed; the message ends with its output."""


class Stack:
    """Our own Kafka, PostgreSQL and maybe Airflow in ``state``; see the module doc.

    ``executor``: ``local`` or ``celery``. ``tls``: ``SITEWATCH_TLS=1``. ``ports``: fixed ports by
    variable name (``PORTS``); the others are free ones. ``settings``: more environment for
    ``dev.sh`` and every Airflow process of the stack. Its sites file is ``sites``.
    """

    def __init__(
        self,
        state: Path,
        *,
        executor: str = "local",
        tls: bool = False,
        ports: dict[str, int] | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
        self.state = Path(state)
        self.sites = self.state / "sites.yaml"
        self.executor, self.tls = executor, tls
        given = dict(ports or {})
        missing = [name for name in PORTS if name not in given]
        self.ports = {**dict(zip(missing, free_ports(len(missing)), strict=True)), **given}
        self.settings = dict(settings or {})
        self.env: dict[str, str] = {}  # what env.sh exports, once loaded
        self._extra: dict[str, str] = {}  # of airflow()
        self._token: str | None = None

    @classmethod
    @contextmanager
    def temporary(cls, prefix: str = "sitewatch-", **options) -> Iterator[Stack]:
        """A stack (``options``: the constructor's keywords) in a fresh directory, which the
        caller starts. At the end, whatever happened, everything started in it is stopped, and
        the directory deleted once that succeeded (kept, to stop by hand, if not).

        The directory is under the system's temporary one, not pytest's tmp_path: other pytest
        runs prune those while a stack may still run."""
        state = Path(tempfile.mkdtemp(prefix=prefix))
        state.chmod(0o755)  # as root, the postgres user must reach the cluster below it
        stack = cls(state, **options)
        try:
            yield stack
        finally:
            stack.stop()
            stack.remove()

    # --- services ------------------------------------------------------------------------------
    def dev_env(self, **extra: str) -> dict[str, str]:
        """The environment of ``dev.sh``: ours without the shared stack's settings, then this
        stack's (state, sites file, executor, TLS, ports, ``settings``), then ``extra``."""
        own = {
            "SITEWATCH_STATE_DIR": str(self.state),
            "SITEWATCH_SITES_FILE": str(self.sites),
            "SITEWATCH_EXECUTOR": self.executor,
            "SITEWATCH_TLS": "1" if self.tls else "0",
            **{name: str(port) for name, port in self.ports.items()},
        }
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
        return {**inherited, **own, **self.settings, **extra}

    def dev(self, command: str, timeout: float = 600, **extra: str) -> None:
        """Run ``scripts/dev.sh command`` on this stack, ``extra`` added to its environment (and
        so to the Airflow it starts). Its output is appended to ``dev.log`` in the state
        directory (private, like everything there); raises StackError if the command fails."""
        log = self.state / "dev.log"
        with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as out:
            out.write(f"--- scripts/dev.sh {command}\n")
            out.flush()
            done = subprocess.run(
                ["bash", str(DEV), command],
                env=self.dev_env(**extra),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                cwd=ROOT,
            )
        if done.returncode:
            tail = log.read_text(errors="replace")[-3000:]
            raise StackError(f"scripts/dev.sh {command} failed (log {log}):\n{tail}")

    def services(self, **extra: str) -> dict[str, str]:
        """Start (or restart the missing parts of) the services; return ``load_env()``."""
        self.dev("services", **extra)
        return self.load_env()

    def run(self, timeout: float = 900, **extra: str) -> dict[str, str]:
        """``dev.sh run``: the services and the whole Airflow (what is missing of it); return
        ``load_env()``."""
        self.dev("run", timeout=timeout, **extra)
        return self.load_env()

    def stop(self) -> None:
        """Stop every process of the stack, Airflow's (either way started) and the services."""
        self.dev("stop", timeout=300)

    def remove(self) -> None:
        """Delete the state directory and the cluster directory, wherever dev.sh put it."""
        pg = self.pg_dir()
        if pg != self.state / "pg":
            shutil.rmtree(pg, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)

    def load_env(self) -> dict[str, str]:
        """Read the environment ``dev.sh`` wrote (``env.sh``) into ``self.env``; return it."""
        out = subprocess.run(
            ["bash", "-c", f"source {self.state / 'env.sh'} && env -0"],
            capture_output=True,
            check=True,
        ).stdout
        self.env = dict(line.split("=", 1) for line in out.decode().split("\0") if "=" in line)
        return self.env

    def pg_dir(self) -> Path:
        """The cluster directory dev.sh chose (its pg_dir(): under /var/tmp when the postgres user
        cannot reach the state directory)."""
        local = self.state / "pg"
        if (local / "data" / "PG_VERSION").exists():
            return local
        digest = hashlib.sha256(f"{self.state}\n".encode()).hexdigest()[:12]
        return Path(f"/var/tmp/sitewatch-pg-{digest}")

    def results(self, **kwargs) -> psycopg.Connection:
        """A connection to the results database (``sitewatch``) as the cluster's superuser."""
        return psycopg.connect(self.env["SITEWATCH_PG_DSN"], **kwargs)

    def owner(self) -> psycopg.Connection:
        """A connection to the results database as its owner, the role the stack's Airflow
        writes it as (env.sh's libpq variables, the ones psql uses)."""
        names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE"}
        return psycopg.connect(
            **{k: self.env[v] for k, v in names.items()}, password=self.env["PGPASSWORD"]
        )

    def metadata(self) -> psycopg.Connection:
        """A connection to Airflow's metadata database (``airflow``), autocommit."""
        dsn = self.env["SITEWATCH_PG_DSN"].rsplit("/", 1)[0] + "/airflow"
        return psycopg.connect(dsn, autocommit=True)

    def set_sites(self, text: str) -> None:
        """Replace the sites file (a running Airflow re-parses it every few seconds)."""
        tmp = self.sites.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.sites)

    # --- Airflow -------------------------------------------------------------------------------
    def airflow_env(self, **extra: str) -> dict[str, str]:
        """The environment of an Airflow process of this stack: ``dev_env()``, then env.sh, then
        the ``extra`` of ``airflow()``, then ``extra``."""
        return {**self.dev_env(), **self.env, **self._extra, **extra}

    def airflow_cli(self, *args: str, timeout: float = 300, **extra: str) -> str:
        """Run the airflow CLI on this stack; return its output (also appended to
        ``airflow/cli.log``). Raises StackError with the output if it fails."""
        done = subprocess.run(
            ["airflow", *args],
            env=self.airflow_env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = done.stdout + done.stderr
        with (self.state / "airflow" / "cli.log").open("a") as log:
            log.write(f"--- airflow {' '.join(args)}\n{output}")
        if done.returncode:
            raise StackError(f"airflow {' '.join(args)} failed:\n{output[-3000:]}")
        return output

    @contextmanager
    def airflow(self, **extra: str) -> Iterator[Stack]:
        """Run Airflow's four components on this stack; ``extra`` is added to their environment.

        Yields when the API answers; stops every component afterwards, whatever happened.
        """
        self._extra = extra
        self._token = None
        self.airflow_cli("db", "migrate")
        try:
            for name in COMPONENTS:
                self.start_component(name)
            self.wait_api()
            yield self
        finally:
            for name in reversed(COMPONENTS):
                self.stop_component(name)

    def alive(self, name: str) -> bool:
        """Whether the component's process still runs (a zombie counts as dead)."""
        try:
            status = Path(f"/proc/{int(self.pidfile(name).read_text())}/status").read_text()
        except (FileNotFoundError, ValueError):
            return False
        return "\nState:\tZ" not in status

    def pidfile(self, name: str) -> Path:
        """Where dev.sh and this class keep component ``name``'s pid (``dev.sh stop`` reads it)."""
        return self.state / "airflow" / f"{name}.pid"

    def start_component(self, name: str, **extra: str) -> None:
        """Start component ``name`` again; ``extra`` is added to its environment this time."""
        log = (self.state / "airflow" / f"{name}.log").open("a")
        proc = subprocess.Popen(
            ["airflow", name],
            env=self.airflow_env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its children
        )
        log.close()
        self.pidfile(name).write_text(str(proc.pid))

    def stop_component(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Signal a component's process group; wait (SIGKILL after 60 s) until it is gone."""
        path = self.pidfile(name)
        if not path.exists():
            return
        pid = int(path.read_text())
        with suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if not wait_gone(pid, 60):
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            wait_gone(pid)
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # children that outlived their parent
        path.unlink()

    def wait_api(self, timeout: float = 240) -> None:
        """Wait until the API answers; raise RuntimeError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url("/api/v2/version"), timeout=5).read()
                return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"Airflow API did not answer on {self.url('')}")

    # --- the REST API --------------------------------------------------------------------------
    def url(self, path: str) -> str:
        """The address of ``path`` on the api-server, which serves the UI too."""
        return f"http://localhost:{self.ports['SITEWATCH_UI_PORT']}{path}"

    def password(self) -> str:
        """The admin's password, which Airflow generated at its first start."""
        return json.loads((self.state / "airflow" / "passwords.json").read_text())["admin"]

    def token(self) -> str:
        """An API token of the admin (``POST /auth/token``), kept until Airflow restarts."""
        if self._token is None:
            login = {"username": "admin", "password": self.password()}
            reply = _json_call("POST", self.url("/auth/token"), login, None, 60)
            self._token = reply["access_token"]
        return self._token

    def api(self, method: str, path: str, body=None, timeout: float = 60):
        """Call the REST API as admin; returns decoded JSON."""
        return _json_call(method, self.url(path), body, self.token(), timeout)

    def pause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def wait_dags(self, dag_ids: set[str], timeout: float = 240) -> None:
        """Wait until the dag-processor has serialized every DAG in ``dag_ids``."""
        deadline = time.monotonic() + timeout
        found: set[str] = set()
        while time.monotonic() < deadline:
            with self.metadata() as db:
                found = {r[0] for r in db.execute("SELECT dag_id FROM serialized_dag")}
            if dag_ids <= found:
                return
            time.sleep(2)
        raise AssertionError(f"DAGs never parsed: {sorted(dag_ids - found)[:5]}...")


def _json_call(method: str, url: str, body, token: str | None, timeout: float):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for attempt in range(5):  # the API may be briefly busy while the machine is loaded
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError:
            raise
        except OSError:
            if attempt == 4:
                raise
            time.sleep(2)
    return None


def wait_gone(pid: int, timeout: float = 30) -> bool:
    """Wait until process ``pid`` is gone (a zombie child of ours is reaped); whether it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a child of ours (started with Popen) stays a zombie until reaped
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.2)
    return False
