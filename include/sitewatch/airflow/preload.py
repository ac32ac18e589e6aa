"""What a LocalExecutor worker imports once, so that no site check pays for it.

Airflow forks a new task process for every check, and that process imports what it uses: the
task runner, Airflow's DagBag (to parse ``dags/sites.py``), the factory, the probe and the Kafka
producer — about 0.4 s of CPU for a check whose own work is a few milliseconds. Started from a
forkserver that imported this module, the workers already hold all of it, and each task process
inherits it from its worker::

    AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver
    AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=sitewatch.airflow.preload

(``scripts/dev.sh`` sets both.) Besides importing, it loads what every task would load again for
itself: the plugins folder (Airflow's task runner looks there for listeners; Airflow caches the
result) and the sites file (``cached_sites``). A task still sees every change of the sites file,
since ``cached_sites`` compares the file with the copy at each call and reads a changed file again
(from the disk cache, as without this). It also corrects one thing in Airflow's task supervisor
(``sitewatch.airflow.task_exit``: a check's worker slot is free when its process ends, not up to
5 s later). Then it freezes the garbage collector's view of all of it (``gc.freeze``): without
that, each task process's first full collection walks, and so copies, every page of the
inherited modules — 0.2 s of CPU, more than the imports it saves. Nothing here connects anywhere.
Any failure past the imports is logged, and the tasks do that part for themselves.
"""

import gc
import logging

import airflow.dag_processing.dagbag  # noqa: F401 - the task parses its DAG file with it
import airflow.executors.local_executor  # noqa: F401 - the worker's own loop
import airflow.listeners.listener  # noqa: F401 - a task loads plugins to find listeners
import airflow.plugins_manager  # noqa: F401
import airflow.sdk.execution_time.supervisor  # noqa: F401
import airflow.sdk.execution_time.task_runner  # noqa: F401
import confluent_kafka  # noqa: F401

import sitewatch.airflow.factory  # noqa: F401 - what dags/sites.py imports
import sitewatch.airflow.hooks  # noqa: F401 - the producer hook
import sitewatch.attempt  # noqa: F401 - probe and publish
import sitewatch.config.secrets  # noqa: F401
from sitewatch.airflow.task_exit import wait_for_exit_without_sockets
from sitewatch.config.loader import cached_sites

log = logging.getLogger(__name__)


def _load_once() -> None:
    """The plugins and the sites file, as each task would load them."""
    from airflow.sdk.plugins_manager import _get_plugins

    _get_plugins()
    cached_sites()


wait_for_exit_without_sockets()
try:
    _load_once()
except Exception:  # noqa: BLE001 - each task loads them itself
    log.exception("sitewatch.airflow.preload: plugins or sites file not loaded; each task will")
gc.freeze()  # what is imported by now is shared by every worker and task: never collect it
