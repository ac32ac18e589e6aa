"""A callback-only parse builds only the DAGs its callbacks name (sitewatch.airflow.factory).

Every check that ends in the triggerer makes Airflow's DAG processor parse ``dags/sites.py`` again
to run a (success) callback. These tests drive Airflow's own ``_parse_file`` with real parse
requests, so an Airflow upgrade that moves what the factory looks for shows up here as every DAG
being built again, not as a silent slowdown in production.
"""

import json
import uuid

import pytest
from airflow.api_fastapi.execution_api.datamodels.taskinstance import TaskInstance
from airflow.callbacks.callback_requests import DagCallbackRequest, TaskCallbackRequest
from airflow.dag_processing.processor import DagFileParseRequest, _parse_file
from airflow.utils.state import TaskInstanceState

from sitewatch.airflow.factory import site_dags

SITES = [f"cb{i}" for i in range(5)]

DAG_FILE = """
import json, os
from sitewatch.airflow.factory import site_dags

built = site_dags()
globals().update(built)
with open(os.environ["SITEWATCH_TEST_BUILT"], "w") as out:
    json.dump(sorted(built), out)
"""


@pytest.fixture
def dag_file(tmp_path, monkeypatch):
    sites = tmp_path / "sites.yaml"
    sites.write_text(
        "sites:\n" + "".join(f"  - name: {n}\n    url: http://127.0.0.1:9/\n" for n in SITES)
    )
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(sites))
    monkeypatch.setenv("SITEWATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SITEWATCH_TEST_BUILT", str(tmp_path / "built.json"))
    path = tmp_path / "dags" / "sites.py"
    path.parent.mkdir()
    path.write_text(DAG_FILE)
    return path


def parse(path, callbacks):
    """Airflow's parse of ``path`` with ``callbacks``; the DAG ids the factory built."""
    request = DagFileParseRequest(
        file=str(path), bundle_path=path.parent, bundle_name="t", callback_requests=callbacks
    )
    result = _parse_file(request, _Log())
    built = json.loads((path.parent.parent / "built.json").read_text())
    return result, built


def task_callback(path, dag_id, state=TaskInstanceState.SUCCESS):
    ti = TaskInstance(
        id=uuid.uuid4(),
        task_id="probe",
        dag_id=dag_id,
        run_id="scheduled__2026-11-29T00:00:00+00:00",
        try_number=1,
        dag_version_id=uuid.uuid4(),
    )
    return TaskCallbackRequest(
        filepath=path.name, bundle_name="t", bundle_version=None, ti=ti, task_callback_type=state
    )


def test_a_normal_parse_builds_every_site(dag_file):
    result, built = parse(dag_file, [])
    assert built == sorted(f"site_{n}" for n in SITES)
    assert sorted(d.dag_id for d in result.serialized_dags) == built


def test_a_callback_parse_builds_only_the_dags_its_callbacks_name(dag_file):
    callbacks = [
        task_callback(dag_file, "site_cb1"),
        task_callback(dag_file, "site_cb3", TaskInstanceState.FAILED),
        DagCallbackRequest(
            filepath=dag_file.name,
            bundle_name="t",
            bundle_version=None,
            dag_id="site_cb4",
            run_id="manual__1",
            is_failure_callback=True,
        ),
    ]
    result, built = parse(dag_file, callbacks)
    assert result is None  # Airflow ran the callbacks and serialized nothing
    assert built == ["site_cb1", "site_cb3", "site_cb4"]


def test_outside_airflows_parse_every_site_is_built(dag_file):
    assert sorted(site_dags()) == sorted(f"site_{n}" for n in SITES)


class _Log:
    """The bound logger ``_parse_file`` writes to; what it says is not under test here."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
