"""The ``callbacks`` part of ``bench/parse.py``: a callback-only parse of ``dags/sites.py`` in a
child forked from a DAG processor, with and without sitewatch's preload
(``sitewatch.airflow.processor_preload``).

    source .state/env.sh && python bench/parse.py --parts callbacks [--callback-sizes 1000 10000]
        [--forks 4] [--callback-rounds 2]

For each size and round, two fresh interpreters stand in for the ``airflow dag-processor``
process, one after the other (the order alternates by round): each imports what the DAG
processor has imported, loads the plugins folder as its ``Job()`` does (the preload's plugin acts
when the command line is ``airflow dag-processor``, which only the *preload* parent poses as),
pre-imports the DAG file's Airflow modules as Airflow does before a fork, freezes the garbage
collector as the processor's loop does, then forks one child after another. Each child runs
Airflow's ``_parse_file`` with a ``DagFileParseRequest`` of 20 success callbacks for 20 of the
sites (what the triggerer's ending tasks send, a full batch) and exits. The first child of each
parent fills the sites disk cache and is not counted. Reported per size and parent: the child's
whole CPU (``wait4``: the parse, its page copies and its exit), the ``_parse_file`` call's alone,
the sitewatch modules the child imported, the DAGs it built, and the parent's setup CPU and
memory (RSS). Saved to ``bench/out/parse_callbacks.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from common import (
    OUT,
    ROOT,
    all_sites_dag_file,
    loadavg,
    machine,
    median,
    save,
    write_sites,
)

WORK = OUT / "parse"
SCHEDULE = "*/5 * * * *"
# Callback requests of one parse: the DAG processor's batch (max_callbacks_per_loop, 20).
BATCH = 20
# A settled file is one whose stat alone proves it unchanged (sitewatch.config.loader._RACY_NS).
SETTLE_SECONDS = 2.5
PARENTS = ("baseline", "preload")

# Runs in the fresh interpreter: the DAG processor's parent. argv: parent (baseline|preload), the
# DAG file, sites count, forks, callbacks per parse. Prints one JSON line.
PARENT = """
import gc, json, os, sys, time, traceback, uuid
from pathlib import Path
parent, dag_file = sys.argv[1], Path(sys.argv[2])
count, forks, batch = (int(arg) for arg in sys.argv[3:6])
sys.argv = ["airflow", "dag-processor" if parent == "preload" else "bench-baseline"]
import airflow.cli.commands.dag_processor_command  # noqa: F401
import airflow.dag_processing.manager  # noqa: F401
from airflow.api_fastapi.execution_api.datamodels.taskinstance import TaskInstance
from airflow.callbacks.callback_requests import TaskCallbackRequest
from airflow.dag_processing.processor import (
    DagFileParseRequest, _parse_file, _pre_import_airflow_modules)
from airflow.jobs.job import Job
from airflow.utils.state import TaskInstanceState


class Log:
    \"\"\"_parse_file's logger: counts what it reports as failed.\"\"\"
    failures = 0

    def exception(self, *args, **kwargs):
        Log.failures += 1

    error = exception

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


c0 = time.process_time()
Job()  # loads the plugins folder: with the preload's command line, the preload runs here
setup_cpu = time.process_time() - c0
_pre_import_airflow_modules(str(dag_file), Log())
gc.freeze()  # DagFileProcessorManager.before_run
dag_ids = [f"site_s{i * count // batch:05d}" for i in range(batch)]
callbacks = [
    TaskCallbackRequest(
        filepath=dag_file.name, bundle_name="dags-folder", bundle_version=None,
        task_callback_type=TaskInstanceState.SUCCESS,
        ti=TaskInstance(id=uuid.uuid4(), task_id="probe", dag_id=dag_id, run_id="r",
                        try_number=1, dag_version_id=uuid.uuid4()),
    )
    for dag_id in dag_ids
]
request = DagFileParseRequest(file=str(dag_file), bundle_path=dag_file.parent,
                              bundle_name="dags-folder", callback_requests=callbacks)


def child(write):
    before = set(sys.modules)
    c0 = time.process_time()
    _parse_file(request, Log())
    parse_cpu = time.process_time() - c0
    built = [m for m in sys.modules.values() if getattr(m, "__file__", None) == str(dag_file)]
    report = {
        "parse_cpu": parse_cpu,
        "sitewatch_imports": sum(m.startswith("sitewatch") for m in set(sys.modules) - before),
        "dags": sum(hasattr(value, "dag_id") for m in built for value in vars(m).values()),
        "failures": Log.failures,
    }
    os.write(write, json.dumps(report).encode())


runs = []
for _ in range(forks + 1):
    read, write = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child(write)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read())
    _, _, usage = os.wait4(pid, 0)
    report |= {"child_cpu": usage.ru_utime + usage.ru_stime, "wall": time.perf_counter() - start}
    runs.append(report)
with open("/proc/self/statm") as statm:
    rss_mb = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
print(json.dumps({"setup_cpu": setup_cpu, "rss_mb": rss_mb, "forks": runs[1:]}))
"""

MEASURES = {
    "child_cpu": "the parse child's whole CPU",
    "parse_cpu": "`_parse_file` alone",
    "wall": "fork to exit, wall",
}


def parent_run(parent: str, count: int, forks: int, env: dict) -> dict:
    """One parent of kind ``parent`` and its ``forks`` counted children."""
    done = subprocess.run(
        [sys.executable, "-c", PARENT, parent, str(all_sites_dag_file())]
        + [str(count), str(forks), str(BATCH)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"the {parent} parent failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for run in result["forks"]:
        if run["dags"] != BATCH or run["failures"]:
            built, failed = run["dags"], run["failures"]
            raise RuntimeError(f"{parent}: a child built {built} DAGs, {failed} errors")
    return result


def callbacks_part(sizes: list[int], forks: int, rounds: int, base_env: dict) -> None:
    """Baseline vs preload parents, saved as parse_callbacks.json."""
    env = {
        **base_env,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "SITEWATCH_CACHE_DIR": str(WORK / "cache-callbacks"),
    }
    results: dict = {}
    loads = []
    for count in sizes:
        sites = write_sites(WORK / f"callbacks_{count}.yaml", count, "http://127.0.0.1/", SCHEDULE)
        time.sleep(SETTLE_SECONDS)
        run_env = {**env, "SITEWATCH_SITES_FILE": str(sites)}
        results[count] = {parent: [] for parent in PARENTS}
        for i in range(rounds):
            # the baseline first in the first round: its uncounted child fills the disk cache
            for parent in PARENTS[:: 1 if i % 2 == 0 else -1]:
                results[count][parent].append(parent_run(parent, count, forks, run_env))
            last = {p: results[count][p][-1]["forks"] for p in PARENTS}
            row = {p: median([f["child_cpu"] for f in last[p]]) for p in PARENTS}
            print(
                f"{count:>6,d} sites round {i + 1}: child CPU baseline {row['baseline']:.3f} s "
                f"preload {row['preload']:.3f} s  load {loadavg()}",
                flush=True,
            )
        loads.append(loadavg())
    table = callbacks_table(results)
    save(
        "parse_callbacks",
        {
            "machine": machine(),
            "load": loads,
            "batch": BATCH,
            "forks": forks,
            "rounds": rounds,
            "measures": MEASURES,
            "table": table,
            "runs": results,
        },
    )


def callbacks_table(results: dict) -> dict:
    """Per size: each measure's median, min, max for each parent, the median of the paired
    baseline / preload ratios, and the parents' setup CPU, RSS and children's imports."""
    table: dict = {}
    for count, by_parent in results.items():
        forks = {p: [f for r in by_parent[p] for f in r["forks"]] for p in PARENTS}
        row = table[count] = {}
        for measure in MEASURES:
            values = {p: [f[measure] for f in forks[p]] for p in PARENTS}
            row[measure] = {p: (median(v), min(v), max(v)) for p, v in values.items()}
            row[measure]["ratio"] = median(
                [b / p for b, p in zip(values["baseline"], values["preload"], strict=True)]
            )
        for p in PARENTS:
            row[p] = {
                "setup_cpu": median([r["setup_cpu"] for r in by_parent[p]]),
                "rss_mb": median([r["rss_mb"] for r in by_parent[p]]),
                "sitewatch_imports": median([f["sitewatch_imports"] for f in forks[p]]),
            }
        child = row["child_cpu"]
        print(
            f"{count:>6,d} child CPU baseline {child['baseline'][0]:.3f} s preload "
            f"{child['preload'][0]:.3f} s  baseline/preload {child['ratio']:.1f}x; parse alone "
            f"{row['parse_cpu']['baseline'][0]:.3f} / {row['parse_cpu']['preload'][0]:.3f} s; "
            f"sitewatch modules imported {row['baseline']['sitewatch_imports']:.0f} / "
            f"{row['preload']['sitewatch_imports']:.0f}; parent setup CPU "
            f"{row['baseline']['setup_cpu']:.2f} / {row['preload']['setup_cpu']:.2f} s, RSS "
            f"{row['baseline']['rss_mb']:.0f} / {row['preload']['rss_mb']:.0f} MB"
        )
    return table
