"""DagBag integrity: the project's DAG files parse, and every site DAG is wired as promised."""

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable
from airflow.serialization.serialized_objects import DagSerialization

from sitewatch.airflow.drain_dag import PRIORITY
from sitewatch.airflow.factory import SHARDS, site_shard
from sitewatch.airflow.incident_update_dag import RESPONSE_TIMEOUT, PickIncident
from sitewatch.airflow.incident_watch import INCIDENTS, IncidentChangeTrigger
from sitewatch.airflow.timetables import SiteTimetable
from sitewatch.config.loader import load_sites
from sitewatch.config.offset import auto_offset
from sitewatch.storage.incidents import STATES

DAGS = "dags"


@pytest.fixture
def sites_file(tmp_path, monkeypatch):
    def write(text: str):
        path = tmp_path / "sites.yaml"
        path.write_text(textwrap.dedent(text))
        monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))
        return path

    return write


def test_shipped_sites_file_builds_dags_without_import_errors():
    bag = DagBag(DAGS)
    assert bag.import_errors == {}
    enabled = {f"site_{s.name}" for s in load_sites().sites if s.enabled}
    assert enabled, "include/sites.yaml ships no enabled site"
    assert enabled | {
        "sitewatch_drain",
        "sitewatch_maintenance",
        "sitewatch_mute",
        "sitewatch_unmute",
        "sitewatch_status_page",
        "sitewatch_incident",
        "sitewatch_incident_update",
        "sitewatch_watch",
    } == set(bag.dag_ids)
    for dag_id in enabled:
        dag = bag.dags[dag_id]
        assert "sitewatch" in dag.tags
        assert dag.schedule is not None
        assert dag.max_active_runs == 1
        assert not dag.catchup
        assert dag.doc_md
        (probe,) = dag.tasks
        assert probe.task_id == "probe"
        assert probe.retries >= 0


def test_each_site_dag_comes_from_the_file_of_its_shard_and_every_shard_has_one(sites_file):
    names = [f"shard-{i:03d}" for i in range(80)]
    entries = "".join(f"  - name: {n}\n    url: https://{n}.test/\n" for n in names)
    sites_file(f"sites:\n{entries}")
    bag = DagBag(DAGS)
    assert bag.import_errors == {}
    files = {f"sites_{n}.py" if n else "sites.py" for n in range(SHARDS)}
    assert files == {p.name for p in Path(DAGS).glob("sites*.py")} - {"sites_config_errors.py"}
    for name in names:
        shard = site_shard(name)
        assert Path(bag.dags[f"site_{name}"].fileloc).name == (
            f"sites_{shard}.py" if shard else "sites.py"
        )
    assert {site_shard(n) for n in names} == set(range(SHARDS))  # 80 names reach every shard


def test_maintenance_dag_runs_hourly_one_at_a_time():
    dag = DagBag(DAGS).dags["sitewatch_maintenance"]
    assert set(dag.tags) == {"sitewatch"}
    assert (dag.max_active_runs, dag.catchup, dag.is_paused_upon_creation) == (1, False, False)
    assert dag.schedule == "@hourly"
    assert dag.doc_md
    assert [t.task_id for t in dag.topological_sort()] == [
        "check_settings",
        "create_tables",
        "maintain",
    ]
    assert all(t.retries > 0 for t in dag.tasks)


def test_status_page_dag_publishes_every_minute_and_on_each_incident_change_one_at_a_time():
    dag = DagBag(DAGS).dags["sitewatch_status_page"]
    assert set(dag.tags) == {"sitewatch"}
    assert (dag.max_active_runs, dag.catchup, dag.is_paused_upon_creation) == (1, False, False)
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.timetable == CronTriggerTimetable("* * * * *", timezone="UTC")
    assert dag.timetable.asset_condition == INCIDENTS
    (watcher,) = INCIDENTS.watchers  # the triggerer fires the asset on each incident change
    assert isinstance(watcher.trigger, IncidentChangeTrigger)
    loaded = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    assert type(loaded).__name__ == "AssetOrTimeSchedule"  # as the scheduler reads it
    assert dag.doc_md
    assert [t.task_id for t in dag.tasks] == ["publish"]
    assert all(t.retries > 0 for t in dag.tasks)


def test_watch_dag_looks_every_minute_ahead_of_the_sites():
    dag = DagBag(DAGS).dags["sitewatch_watch"]
    assert set(dag.tags) == {"sitewatch"}
    assert (dag.max_active_runs, dag.catchup, dag.is_paused_upon_creation) == (1, False, False)
    assert dag.schedule == timedelta(minutes=1)
    assert dag.doc_md
    (watch,) = dag.tasks
    assert watch.task_id == "watch"
    assert (watch.priority_weight, watch.weight_rule) == (PRIORITY, "absolute")
    assert watch.retries == 0
    assert watch.execution_timeout < timedelta(minutes=1)


def test_the_watchers_settings_are_read_where_its_dag_is_parsed(monkeypatch):
    monkeypatch.setenv("SITEWATCH_WATCH_EVERY_SECONDS", "10")
    assert DagBag(DAGS).dags["sitewatch_watch"].schedule == timedelta(seconds=10)
    # a bad value is the DAG file's import error, naming the variable, before any look
    monkeypatch.setenv("SITEWATCH_WATCH_STALL_SECONDS", "10")
    bag = DagBag(DAGS)
    assert "sitewatch_watch" not in bag.dags
    (error,) = [e for path, e in bag.import_errors.items() if path.endswith("watch.py")]
    assert "SITEWATCH_WATCH_STALL_SECONDS='10': expected whole seconds from 30 to 3600" in error


def test_mute_dags_run_only_when_triggered_with_a_form(sites_file):
    sites_file("""
        sites:
          - name: shop
            url: https://shop.example.com/
          - name: off
            url: http://off.example.com/
            enabled: false
    """)
    bag = DagBag(DAGS)
    for dag_id in ("sitewatch_mute", "sitewatch_unmute"):
        dag = bag.dags[dag_id]
        assert (dag.schedule, set(dag.tags), dag.is_paused_upon_creation) == (
            None,
            {"sitewatch"},
            False,
        )
        assert dag.doc_md
        # a multi-select of the sites file's sites in the trigger form (Airflow's form reads
        # ``examples`` of an array param), disabled ones included
        assert dag.params.get_param("sites").schema["examples"] == ["shop", "off"]
    mute = bag.dags["sitewatch_mute"]
    assert [t.task_id for t in mute.tasks] == ["mute"]
    assert set(mute.params) == {"sites", "duration", "reason"}
    assert mute.params["duration"] == "1h"
    assert bag.dags["sitewatch_unmute"].params["sites"] is None  # nothing chosen: every site
    assert [t.task_id for t in bag.dags["sitewatch_unmute"].tasks] == ["unmute"]


@pytest.fixture
def pages_bag(sites_file):
    """The DagBag of a sites file with two status pages."""
    sites_file("""
        sites:
          - name: shop
            url: https://shop.example.com/
          - name: api
            url: https://api.example.com/
        status_pages:
          - id: status
            title: Example
            components:
              - site: shop
                name: Shop
          - id: partners
            title: Partners
            components:
              - site: api
                name: Partner API
    """)
    bag = DagBag(DAGS)
    assert bag.import_errors == {}
    return bag


@pytest.mark.parametrize(
    ("dag_id", "form", "fields", "state", "states"),
    [
        (
            "sitewatch_incident",  # the trigger form
            lambda dag: dag.params,
            ["page", "incident", "title", "state", "text", "components"],
            "investigating",
            list(STATES),
        ),
        (
            "sitewatch_incident_update",  # the Required Action's form, checked before it is shown
            lambda dag: dag.get_task("pick").params,
            ["state", "text", "title", "components"],
            None,
            [None, *STATES],  # to be chosen
        ),
    ],
    ids=["trigger form", "required action"],
)
def test_incident_dags_run_only_when_triggered_with_a_form_of_an_update(
    pages_bag, dag_id, form, fields, state, states
):
    dag = pages_bag.dags[dag_id]
    assert (dag.schedule, set(dag.tags), dag.is_paused_upon_creation) == (
        None,
        {"sitewatch"},
        False,
    )
    assert dag.doc_md
    assert all(t.retries == 0 for t in dag.tasks)
    params = form(dag)
    assert list(params) == fields  # in the form's order
    assert params.get_param("state").value == state
    assert params.get_param("state").schema["enum"] == states
    assert params.get_param("text").schema["format"] == "multiline"
    assert params.get_param("components").schema["examples"] == ["Partner API", "Shop"]


def test_incident_dag_writes_an_update_to_a_page_of_the_sites_file(pages_bag):
    dag = pages_bag.dags["sitewatch_incident"]
    assert [t.task_id for t in dag.tasks] == ["write"]
    assert dag.params.get_param("page").schema["enum"] == ["status", "partners"]


def test_incident_update_dag_lists_the_open_incidents_then_asks_whoever_answers(pages_bag):
    dag = pages_bag.dags["sitewatch_incident_update"]
    assert dag.max_active_runs > 1  # one form left open blocks nobody
    assert not dag.params  # no trigger form: the form is the Required Action
    assert [t.task_id for t in dag.topological_sort()] == ["open_incidents", "pick", "write"]
    pick = dag.get_task("pick")
    assert isinstance(pick, PickIncident) and "options" in pick.template_fields
    assert (pick.multiple, pick.response_timeout) == (False, RESPONSE_TIMEOUT)
    assert set(dag.get_task("write").upstream_task_ids) == {"open_incidents", "pick"}


def test_site_settings_reach_the_dag(sites_file):
    sites_file("""
        defaults:
          retries: 4
        sites:
          - name: shop
            url: https://shop.example.com/
            schedule: "*/10 * * * *"
            retry_delay: 45s
            tags: [team-a, prod]
            owner: alice
          - name: blog
            url: http://blog.example.com/
            schedule: 90s
            offset: 7s
            retries: 0
          - name: off
            url: http://off.example.com/
            enabled: false
    """)
    bag = DagBag(DAGS)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "site_shop",
        "site_blog",
        "sitewatch_drain",
        "sitewatch_maintenance",
        "sitewatch_mute",
        "sitewatch_unmute",
        "sitewatch_status_page",
        "sitewatch_incident",
        "sitewatch_incident_update",
        "sitewatch_watch",
    }
    shop, blog = bag.dags["site_shop"], bag.dags["site_blog"]
    assert set(shop.tags) == {"sitewatch", "team-a", "prod"}
    assert shop.timetable == SiteTimetable("*/10 * * * *", auto_offset("shop", "*/10 * * * *"))
    probe = shop.get_task("probe")
    assert (probe.retries, probe.retry_delay.total_seconds(), probe.owner) == (4, 45, "alice")
    assert blog.get_task("probe").retries == 0
    assert blog.timetable == SiteTimetable(timedelta(seconds=90), timedelta(seconds=7))
    assert "https://shop.example.com/" in shop.doc_md
    assert "| offset | `+7s` |" in blog.doc_md


def test_site_dags_serialize_as_the_dag_processor_stores_them():
    # Their timetable is sitewatch's own: Airflow stores and loads it only because
    # plugins/sitewatch_timetables.py registers it.
    site_dags = [dag for dag in DagBag(DAGS).dags.values() if dag.dag_id.startswith("site_")]
    assert site_dags
    for dag in site_dags:
        loaded = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
        assert isinstance(loaded, SiteTimetable), dag.dag_id
        assert loaded == dag.timetable
        assert " at +" in loaded.summary  # what the UI shows as the schedule


def test_broken_entry_keeps_valid_sites_and_shows_the_error(sites_file):
    path = sites_file("""
        sites:
          - name: good
            url: http://good.example.com/
          - name: broken
            url: http://broken.example.com/
            regex: "unclosed("
          - name: also-good
            url: http://also.example.com/
    """)
    bag = DagBag(DAGS)
    assert {"site_good", "site_also-good"} <= set(bag.dag_ids)
    assert "site_broken" not in bag.dag_ids
    (error,) = [e for f, e in bag.import_errors.items() if f.endswith("sites_config_errors.py")]
    assert f"{path}:7: sites[1].regex: invalid regex at position 9" in error
    assert len(bag.import_errors) == 1
