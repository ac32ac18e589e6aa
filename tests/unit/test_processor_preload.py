"""The DAG processor imports sitewatch once, before it forks its parse children
(sitewatch.airflow.processor_preload, through plugins/sitewatch_dag_processor.py).

Each case runs a fresh interpreter that loads the plugins folder as an Airflow process does
(``Job()``, whose listener manager loads it, before the DAG processor's parsing loop) under the
command line of one Airflow process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sitewatch.airflow.processor_preload import in_dag_processor, preload_dag_processor
from sitewatch.config.loader import load_sites
from tests.builders import sites_file

ROOT = Path(__file__).resolve().parents[2]
SITES = [f"pre{i}" for i in range(5)]

# Run in a fresh interpreter: argv[1] is the Airflow command to pose as. Loads the plugins as
# Job() does, then forks a child that runs Airflow's parse of dags/sites.py for two success
# callbacks, as the DAG processor does for a batch, and prints what parent and child imported.
PROCESS = """
import gc, json, os, sys, uuid
from pathlib import Path
sys.argv = ["airflow", sys.argv[1]]
from airflow.jobs.job import Job
Job()
from airflow import plugins_manager
from airflow.api_fastapi.execution_api.datamodels.taskinstance import TaskInstance
from airflow.callbacks.callback_requests import TaskCallbackRequest
from airflow.dag_processing.processor import DagFileParseRequest, _parse_file
from airflow.utils.state import TaskInstanceState

dag_file = Path(os.environ["TEST_DAG_FILE"])
callbacks = [
    TaskCallbackRequest(
        filepath=dag_file.name, bundle_name="t", bundle_version=None,
        task_callback_type=TaskInstanceState.SUCCESS,
        ti=TaskInstance(id=uuid.uuid4(), task_id="probe", dag_id=dag_id, run_id="r",
                        try_number=1, dag_version_id=uuid.uuid4()),
    )
    for dag_id in ("site_pre1", "site_pre3")
]
request = DagFileParseRequest(
    file=str(dag_file), bundle_path=dag_file.parent, bundle_name="t", callback_requests=callbacks
)
parent = {
    "sitewatch": sorted(m for m in sys.modules if m.startswith("sitewatch")),
    "frozen": gc.get_freeze_count(),
    "plugin_errors": plugins_manager.get_import_errors(),
}


class Log:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


read, write = os.pipe()
pid = os.fork()
if pid == 0:
    before = set(sys.modules)
    _parse_file(request, Log())
    new = sorted(m for m in set(sys.modules) - before if m.startswith("sitewatch"))
    os.write(write, json.dumps(new).encode())
    os._exit(0)
os.close(write)
with os.fdopen(read) as pipe:
    child = json.load(pipe)
os.waitpid(pid, 0)
print(json.dumps({"parent": parent, "child": child}))
"""


@pytest.fixture
def env(tmp_path):
    """The environment of an Airflow process on a sites file of ``SITES``."""
    sites = tmp_path / "sites.yaml"
    sites.write_text(
        "sites:\n" + "".join(f"  - name: {n}\n    url: http://127.0.0.1:9/\n" for n in SITES)
    )
    return {
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "SITEWATCH_SITES_FILE": str(sites),
        "SITEWATCH_CACHE_DIR": str(tmp_path / "cache"),
        "TEST_DAG_FILE": str(ROOT / "dags" / "sites.py"),
    }


def run_as(command: str, env: dict, extra_path: Path | None = None) -> tuple[dict, str]:
    """PROCESS posing as ``airflow <command>``: its JSON report and its log (stderr)."""
    if extra_path is not None:
        env = {**env, "PYTHONPATH": os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", PROCESS, command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/airflow", "dag-processor"], True),
        (["/venv/bin/airflow", "dag-processor", "--num-runs", "1"], True),
        (["/venv/lib/python3.11/site-packages/airflow/__main__.py", "dag-processor"], True),
        (["/venv/bin/airflow", "scheduler"], False),
        (["/venv/bin/airflow", "triggerer"], False),
        (["/venv/bin/airflow", "api-server"], False),
        (["/venv/bin/airflow", "standalone"], False),
        (["/venv/bin/airflow", "celery", "worker"], False),
        (["/venv/bin/airflow", "dags", "reserialize"], False),
        (["-c"], False),
        ([], False),
    ],
)
def test_only_the_dag_processor_command_counts(argv, expected):
    assert in_dag_processor(argv) is expected


def test_elsewhere_the_preload_does_nothing():
    assert preload_dag_processor(["/venv/bin/airflow", "scheduler"]) is False


@pytest.mark.parametrize(("value", "done"), [("0", False), ("false", False), ("1", True)])
def test_the_switch_turns_the_preload_off(monkeypatch, value, done):
    from airflow.dag_processing.manager import DagFileProcessorManager

    monkeypatch.setenv("SITEWATCH_DAG_PROCESSOR_PRELOAD", value)
    # whatever the preload does to Airflow's manager is undone after this test
    monkeypatch.setattr(
        DagFileProcessorManager,
        "handle_parsing_result",
        DagFileProcessorManager.handle_parsing_result,
    )
    # the preload's own work (imports, reading the sites file, freezing this process's garbage
    # collector) is not what this test is about
    read = type("Read", (), {"sites": [], "path": "sites.yaml"})()
    monkeypatch.setattr("sitewatch.airflow.processor_preload._preload", lambda: read)
    assert preload_dag_processor(["airflow", "dag-processor"]) is done


def test_in_the_dag_processor_a_callback_parse_imports_no_sitewatch_module(env):
    report, log = run_as("dag-processor", env)
    parent = report["parent"]
    assert "sitewatch.airflow.factory" in parent["sitewatch"]
    assert "sitewatch.config.loader" in parent["sitewatch"]
    assert parent["frozen"] > 0
    assert parent["plugin_errors"] == {}
    assert f"preload_dag_processor: sites={len(SITES)} file={env['SITEWATCH_SITES_FILE']}" in log
    assert report["child"] == []


def test_in_another_process_the_child_imports_what_it_uses(env):
    # Without the preload (the scheduler's command line, here only for contrast): the child
    # imports the factory itself, which is the cost the preload saves each parse.
    report, log = run_as("scheduler", env)
    assert "sitewatch.airflow.factory" not in report["parent"]["sitewatch"]
    assert "sitewatch.airflow.factory" in report["child"]
    assert "preload_dag_processor" not in log


def test_a_failing_preload_is_logged_and_the_processor_goes_on(env, tmp_path):
    # A dependency of the factory that fails to import in the DAG processor's environment.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "jsonpath.py").write_text("raise RuntimeError('jsonpath is broken here')\n")
    report, log = run_as("dag-processor", env, extra_path=broken)
    assert "preload_dag_processor: failed, each parse imports sitewatch itself" in log
    assert "RuntimeError: jsonpath is broken here" in log
    assert "sitewatch.airflow.factory" not in report["parent"]["sitewatch"]
    assert report["parent"]["plugin_errors"] == {}  # the plugin itself loaded


# --- keep_parse_time_after_callbacks: a callback-only run does not make the file due again ------


def _manager_with_parsed_file(tmp_path):
    """Airflow's own DAG processor manager holding one file parsed just now (1,000 DAGs), and a
    callback-only run of that file as ``handle_parsing_result`` receives it."""
    from types import SimpleNamespace

    from airflow.dag_processing.manager import DagFileInfo, DagFileProcessorManager, DagFileStat

    (tmp_path / "sites.py").write_text("")
    file = DagFileInfo(rel_path=Path("sites.py"), bundle_name="dags-folder", bundle_path=tmp_path)
    manager = DagFileProcessorManager(max_runs=0)
    parsed = datetime.now(UTC)
    manager._file_stats[file] = DagFileStat(num_dags=1000, last_finish_time=parsed, run_count=3)
    callback_only = SimpleNamespace(had_callbacks=True, parsing_result=None, start_time=0.0)
    return manager, file, parsed, callback_only


def _queued_after(manager, file) -> bool:
    manager._file_queue.clear()
    manager.prepare_file_queue(known_files={file.bundle_name: {file}})
    return file in manager._file_queue


def test_airflow_forgets_the_parse_time_after_a_callback_only_run(tmp_path, monkeypatch):
    """What keep_parse_time_after_callbacks corrects, pinned on the installed Airflow: after a
    callback-only run the file has no finish time and is queued for a full parse at once,
    although it was parsed a moment ago. If this fails, Airflow fixed it: drop the wrapper."""
    from airflow.dag_processing.manager import DagFileProcessorManager

    original = getattr(DagFileProcessorManager.handle_parsing_result, "__wrapped__", None)
    if original is not None:  # another test of this process applied the wrapper
        monkeypatch.setattr(DagFileProcessorManager, "handle_parsing_result", original)
    manager, file, _, callback_only = _manager_with_parsed_file(tmp_path)
    assert not _queued_after(manager, file)  # parsed just now: not due

    manager.handle_parsing_result(file, callback_only)

    assert manager._file_stats[file].last_finish_time is None
    assert _queued_after(manager, file)


def test_a_callback_only_run_keeps_the_last_parse(tmp_path):
    from sitewatch.airflow.processor_preload import keep_parse_time_after_callbacks

    keep_parse_time_after_callbacks()
    keep_parse_time_after_callbacks()  # once only: no wrapper around the wrapper
    manager, file, parsed, callback_only = _manager_with_parsed_file(tmp_path)

    manager.handle_parsing_result(file, callback_only)

    stat = manager._file_stats[file]
    assert (stat.last_finish_time, stat.num_dags, stat.run_count) == (parsed, 1000, 3)
    assert stat.last_duration is not None  # the callback run's own duration
    assert not _queued_after(manager, file)


def test_every_stat_of_a_file_carries_its_latest_parse(tmp_path):
    """A callback that names a bundle version gets a stat of its own for the same file; the
    queue reads whichever comes last, so both must say when the file was last parsed."""
    from dataclasses import replace

    from sitewatch.airflow.processor_preload import keep_parse_time_after_callbacks

    keep_parse_time_after_callbacks()
    manager, file, parsed, callback_only = _manager_with_parsed_file(tmp_path)
    pinned = replace(file, bundle_version="v1")
    manager.handle_parsing_result(pinned, callback_only)

    assert manager._file_stats[pinned].last_finish_time == parsed
    assert not _queued_after(manager, file)


def test_a_real_parse_after_callbacks_still_counts(tmp_path):
    """The wrapper changes nothing for a run that parsed: its finish time is the new one."""
    from airflow.dag_processing.manager import DagFileStat

    from sitewatch.airflow.processor_preload import last_parse_stands

    _, file, parsed, _ = _manager_with_parsed_file(tmp_path)
    later = datetime.now(UTC)
    stats = {file: DagFileStat(num_dags=999, last_finish_time=later, run_count=4)}

    last_parse_stands(stats, file, DagFileStat(num_dags=1000, last_finish_time=parsed))

    assert (stats[file].last_finish_time, stats[file].num_dags) == (later, 999)


# --- reparse_when_sites_change: a long parse interval, and a sites change parsed at once --------


@pytest.fixture
def parse_on_change(monkeypatch):
    """Airflow's DAG processor manager with both wrappers on, as it is after the preload; undone
    after the test."""
    from airflow.dag_processing.manager import DagFileProcessorManager

    from sitewatch.airflow.processor_preload import (
        keep_parse_time_after_callbacks,
        reparse_when_sites_change,
    )

    for name in ("handle_parsing_result", "_sort_by_mtime"):
        monkeypatch.setattr(DagFileProcessorManager, name, getattr(DagFileProcessorManager, name))
    # no DAG held at its run limit (test_a_dag_held_at_its_run_limit_is_parsed_again has them)
    monkeypatch.setattr("sitewatch.airflow.processor_preload.held_dag_files", set)
    keep_parse_time_after_callbacks()
    reparse_when_sites_change()


def test_a_file_parsed_before_the_sites_file_changed_is_parsed_again_at_once(
    tmp_path, monkeypatch, parse_on_change
):
    from types import SimpleNamespace

    from sitewatch.airflow.processor_preload import parse_starts, reparse_when_sites_change

    reparse_when_sites_change()  # once only
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites: []\n")
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(sites))
    manager, file, _, callback_only = _manager_with_parsed_file(tmp_path)
    # a full parse that began 5 s ago ends now (one that failed: no DAGs to write back)
    parse = SimpleNamespace(
        had_callbacks=False, parsing_result=None, start_time=time.monotonic() - 5
    )
    manager.handle_parsing_result(file, parse)
    began = parse_starts(manager)[file.presence_key]
    assert time.time() - 6 < began < time.time() - 4

    os.utime(sites, (began - 10, began - 10))  # changed before the parse began: it read that
    assert not _queued_after(manager, file)
    os.utime(sites, (began + 1, began + 1))  # changed while it ran: it may have read the old one
    assert _queued_after(manager, file)
    manager.handle_parsing_result(file, callback_only)  # running callbacks is not a parse
    assert _queued_after(manager, file)
    later = SimpleNamespace(had_callbacks=False, parsing_result=None, start_time=time.monotonic())
    manager.handle_parsing_result(file, later)  # a parse that began after the change
    assert not _queued_after(manager, file)


def test_a_file_not_parsed_since_the_processor_started_is_left_to_airflow():
    from airflow.dag_processing.manager import DagFileInfo

    from sitewatch.airflow.processor_preload import parsed_before

    a, b, c = (DagFileInfo(rel_path=Path(f"{k}.py"), bundle_name="d") for k in "abc")
    starts = {a.presence_key: 100.0, b.presence_key: 200.0}
    assert parsed_before([a, b, c], starts, 150.0) == {a}
    # a parse that began within a second after the change may have read the old content
    assert parsed_before([a, b, c], starts, 199.5) == {a, b}


def test_a_change_of_the_sites_file_parses_only_the_shards_it_touched(
    tmp_path, monkeypatch, parse_on_change
):
    """At 10,000 sites a parse of all eight shard files holds the schedulers for minutes: an edit
    of one site parses its shard's file again, and every file that is not a shard's; a shard
    whose sites did not change keeps its DAGs."""
    from types import SimpleNamespace

    from airflow.dag_processing.manager import DagFileInfo, DagFileProcessorManager, DagFileStat

    from sitewatch.airflow.factory import site_shard
    from sitewatch.airflow.processor_preload import parse_prints

    names = [f"site-{n}" for n in range(40)]
    edited = names[7]
    shard = site_shard(edited)
    other = next(site_shard(n) for n in names if site_shard(n) != shard)
    files = {
        key: DagFileInfo(rel_path=Path(name), bundle_name="dags-folder", bundle_path=tmp_path)
        for key, name in [
            (shard, "sites.py" if shard == 0 else f"sites_{shard}.py"),
            (other, "sites.py" if other == 0 else f"sites_{other}.py"),
            ("drain", "drain.py"),
        ]
    }
    sites = tmp_path / "sites.yaml"
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(sites))
    manager = DagFileProcessorManager(max_runs=0)

    def write(text: str, at: float) -> None:
        sites.write_text(text)
        os.utime(sites, (at, at))

    def parsed(key, began: float) -> None:
        """A full parse of ``files[key]`` that began at ``began`` ends now."""
        file = files[key]
        manager._file_stats[file] = DagFileStat(num_dags=5, last_finish_time=datetime.now(UTC))
        start = time.monotonic() - (time.time() - began)
        parse = SimpleNamespace(had_callbacks=False, parsing_result=None, start_time=start)
        manager.handle_parsing_result(file, parse)

    def queued() -> set:
        manager._file_queue.clear()
        manager.prepare_file_queue(known_files={"dags-folder": set(files.values())})
        return {key for key, file in files.items() if file in manager._file_queue}

    text = sites_file(names, "https://example.test/")
    now = time.time()
    write(text, now - 20)
    for key, file in files.items():
        (tmp_path / file.rel_path).write_text("")
        parsed(key, now - 18)
    assert set(parse_prints(manager)) == {files[shard].presence_key, files[other].presence_key}
    assert queued() == set()

    # one site edited: its shard's file and the files of no shard
    edited_text = text.replace(f"name: {edited}\n", f"name: {edited}\n    timeout: 3s\n")
    write(edited_text, now - 16)
    assert load_sites(sites).by_name[edited].timeout == 3  # a valid edit, not a site dropped
    assert queued() == {shard, "drain"}
    parsed(shard, now - 14)
    parsed("drain", now - 14)
    assert queued() == set()

    # the same sites in another order (every site's line changes): no shard's file
    entries = [f"  - {entry}" for entry in edited_text.removeprefix("sites:\n").split("  - ")[1:]]
    write("sites:\n" + "".join(reversed(entries)), now - 12)
    assert queued() == {"drain"}
    parsed("drain", now - 10)

    # a parse that began just before a change may have read either content: it keeps no print,
    # and the next change parses its file again although the file's shard is untouched
    write(edited_text, now - 8)
    parsed(other, now - 8.5)
    assert files[other].presence_key not in parse_prints(manager)
    assert queued() == {other, "drain"}


def test_a_dag_held_at_its_run_limit_is_parsed_again(monkeypatch, caplog, parse_on_change):
    """A file whose DAG Airflow keeps marked at its run limit with fewer runs active (a run
    ended while its DAG was paused) is parsed again once, at most 30 s after it was marked;
    the metadata database is asked once per 30 s, and an answer it cannot give parses nothing.
    (``parse_on_change`` imports Airflow before the test: its logging setup would drop caplog's.)"""
    from types import SimpleNamespace

    from airflow.dag_processing.manager import DagFileInfo

    from sitewatch.airflow import processor_preload
    from sitewatch.airflow.processor_preload import LOOK_INTERVAL, held_back, parse_starts

    answers: list = [{("d", "sites_3.py")}, set(), RuntimeError("the database is gone")]
    asked: list[float] = []

    def held_dag_files():
        asked.append(now)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(processor_preload, "held_dag_files", held_dag_files)
    caplog.set_level("INFO", logger=processor_preload.__name__)
    shard, drain = (
        DagFileInfo(rel_path=Path(name), bundle_name="d") for name in ("sites_3.py", "drain.py")
    )
    elsewhere = DagFileInfo(rel_path=Path("sites_3.py"), bundle_name="other")
    manager = SimpleNamespace()
    parse_starts(manager).update({shard.presence_key: 900.0, drain.presence_key: 900.0})
    files = [shard, drain, elsewhere]

    now = 1000.0
    assert held_back(manager, files, now) == {shard}
    assert "held_back: parsing again sites_3.py" in caplog.text
    now = 1010.0  # not parsed yet: still held, and the database is not asked again
    assert held_back(manager, files, now) == {shard}
    parse_starts(manager)[shard.presence_key] = 1012.0  # parsed since the look
    now = 1015.0
    assert held_back(manager, files, now) == set()
    assert asked == [1000.0]

    now = 1000.0 + LOOK_INTERVAL  # the next look finds nothing held
    assert held_back(manager, files, now) == set()
    now += LOOK_INTERVAL  # the database fails: logged, nothing parsed, nothing raised
    assert held_back(manager, files, now) == set()
    assert "could not read the DAGs' run limits" in caplog.text
    assert asked == [1000.0, 1030.0, 1060.0]


def test_a_held_dag_file_is_queued_with_or_without_a_sites_file(
    tmp_path, monkeypatch, parse_on_change
):
    """Through Airflow's own ``prepare_file_queue``: the drain's file, parsed a moment ago, is
    queued again when its DAG is held at its run limit, also when there is no sites file."""
    from types import SimpleNamespace

    from airflow.dag_processing.manager import DagFileInfo, DagFileProcessorManager, DagFileStat

    from sitewatch.airflow import processor_preload

    drain = DagFileInfo(rel_path=Path("drain.py"), bundle_name="dags-folder", bundle_path=tmp_path)
    (tmp_path / "drain.py").write_text("")
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(tmp_path / "no-such-sites.yaml"))
    manager = DagFileProcessorManager(max_runs=0)
    manager._file_process_interval = 86400  # as make run and compose set it
    manager._file_stats[drain] = DagFileStat(num_dags=1, last_finish_time=datetime.now(UTC))
    parse = SimpleNamespace(had_callbacks=False, parsing_result=None, start_time=time.monotonic())
    manager.handle_parsing_result(drain, parse)

    def queued(held: set) -> bool:
        monkeypatch.setattr(processor_preload, "held_dag_files", lambda: held)
        manager.__dict__.pop("_sitewatch_held", None)  # look again now
        manager._file_queue.clear()
        manager.prepare_file_queue(known_files={"dags-folder": {drain}})
        return drain in manager._file_queue

    assert not queued(set())
    time.sleep(0.01)  # the look comes after the parse began
    assert queued({("dags-folder", "drain.py")})
