"""scripts/dev.sh with SITEWATCH_EXECUTOR=celery on a private state directory: the Redis broker.

Starts its own PostgreSQL, Kafka and Redis on free ports (never the shared stack) with
``scripts/dev.sh services`` and checks what the Celery stack stands on: an environment naming the
CeleryExecutor and a broker that only answers with the generated password, a password that is on
no command line, and ``scripts/dev.sh stop`` ending the broker. Airflow's own processes are not
started here: a whole ``make run`` takes minutes of the shared machine's two cores.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.stack import Stack


@pytest.fixture(scope="module")
def stack():
    with Stack.temporary("sitewatch-celery-", executor="celery") as private:

        def dev(command: str, executor: str = "celery") -> dict[str, str]:
            """Run ``dev.sh command``; the environment it wrote to env.sh."""
            private.dev(command, SITEWATCH_EXECUTOR=executor)
            return private.load_env()

        yield private.state, private.ports["SITEWATCH_REDIS_PORT"], dev


def test_celery_services_run_a_private_broker_that_stop_ends(stack):
    state, port, dev = stack
    env = dev("services")

    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    url = env["SITEWATCH_CELERY_BROKER_URL"]
    assert env["AIRFLOW__CELERY__BROKER_URL"] == url
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "redis",
        "127.0.0.1",
        port,
        "/0",
    )
    password = parts.password
    assert password == (state / "redis-password").read_text().strip()
    backend = env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert backend.startswith("db+postgresql://sitewatch_airflow:")
    assert backend.endswith(f":{env['PGPORT']}/airflow")  # Airflow's metadata database

    assert redis.Redis.from_url(url).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port).ping()  # no password, no broker
    for path in (state / "redis" / "redis.conf", state / "redis-password"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert password.encode() not in cmdline.read_bytes(), cmdline
        except OSError:
            continue  # the process ended meanwhile

    # again, and with the LocalExecutor: the same broker, named for the tests only
    assert dev("services")["SITEWATCH_CELERY_BROKER_URL"] == url
    local = dev("services", executor="local")
    assert local["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert local["SITEWATCH_CELERY_BROKER_URL"] == url
    assert "AIRFLOW__CELERY__BROKER_URL" not in local

    pid = int((state / "redis" / "pid").read_text())
    dev("stop")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url).ping()
