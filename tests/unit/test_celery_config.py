"""A Celery worker imports sitewatch before its pool forks (sitewatch.airflow.celery_config).

Each case runs a fresh interpreter with the Celery executor configured as scripts/dev.sh and
compose configure it, and lets Celery do what a starting worker does: import its task modules,
which sends the ``import_modules`` signal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

WORKER = """
import json, sys
from airflow.providers.celery.executors.celery_executor_utils import app
from airflow.sdk.execution_time.supervisor import WatchedSubprocess
from airflow.sdk.plugins_manager import _get_plugins
before = "sitewatch.airflow.factory" in sys.modules
app.loader.import_default_modules()  # a starting worker's step: sends import_modules
loader = sys.modules.get("sitewatch.config.loader")
print(json.dumps({
    "before": before,
    "after": sorted(m for m in sys.modules if m in WANTED),
    "broker": app.conf.broker_url,
    "plugins": _get_plugins.cache_info().currsize,
    "sites_read": sorted(loader._cached) if loader else [],
    "exit_seen_at_once": getattr(WatchedSubprocess._service_subprocess, "waits_for_exit", False),
}))
""".replace("WANTED", repr(("sitewatch.airflow.factory", "sitewatch.attempt", "confluent_kafka")))


def worker(options: str | None, sites: str = "") -> dict:
    env = {
        **os.environ,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:9/0",
        "SITEWATCH_SITES_FILE": sites,
    }
    env.pop("AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS", None)
    if options is not None:
        env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] = options
    done = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_worker_with_sitewatchs_configuration_imports_sitewatch_before_its_tasks(tmp_path):
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites: []\n")
    report = worker("sitewatch.airflow.celery_config.CELERY_CONFIG", str(sites))
    assert report["before"] is False  # only the signal imports it
    assert report["after"] == ["confluent_kafka", "sitewatch.airflow.factory", "sitewatch.attempt"]
    assert report["broker"] == "redis://127.0.0.1:9/0"  # Airflow's configuration, unchanged
    # and loads once what each task would load: the plugins folder, the sites file
    assert (report["plugins"], report["sites_read"]) == (1, [str(sites)])
    assert report["exit_seen_at_once"] is True  # sitewatch.airflow.task_exit


@pytest.mark.parametrize(
    "options", [None, "airflow.providers.celery.executors.default_celery.DEFAULT_CELERY_CONFIG"]
)
def test_with_airflows_own_configuration_the_tasks_import_it_themselves(options, tmp_path):
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites: []\n")
    report = worker(options, str(sites))
    assert (report["after"], report["plugins"], report["sites_read"]) == ([], 0, [])
    assert report["exit_seen_at_once"] is False


def test_the_configuration_is_airflows_default():
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from sitewatch.airflow.celery_config import CELERY_CONFIG

    assert CELERY_CONFIG is DEFAULT_CELERY_CONFIG
