"""What a LocalExecutor worker imports once, so that no site check pays for it.

Airflow forks a new task process for every check, and that process imports what it uses: the
task runner, Airflow's DagBag (to parse ``dags/sites.py``), the factory, the probe and the Kafka
producer — about 0.4 s of CPU for a check whose own work is a few milliseconds. Started from a
forkserver that imported this module, the workers already hold all of it, and each task process
inherits it from its worker::

    AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver
    AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=sitewatch.airflow.preload

(``scripts/dev.sh`` sets both.) Importing is all this module does, but for one correction of
Airflow's task supervisor (``sitewatch.airflow.task_exit``: a check's worker slot is free when its
process ends, not up to 5 s later), and then it freezes the garbage collector's view of what it
imported (``gc.freeze``): without that, each task process's first full collection walks, and so
copies, every page of the inherited modules — 0.2 s of CPU, more than the imports it saves.
Nothing here connects anywhere or reads the sites file, so a forkserver holds no state a task
could see stale.
"""

import gc

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

wait_for_exit_without_sockets()
gc.freeze()  # what is imported by now is shared by every worker and task: never collect it
