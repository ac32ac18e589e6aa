"""What Airflow's DAG processor imports once, so that no callback-only parse pays for it.

Airflow 3.3 sends the DAG processor a success callback for every task that ends in the
triggerer, and the processor runs each batch of callbacks (up to 20) in a child it forks to
parse ``dags/sites.py`` again (``DagFileProcessorProcess.start``). The factory builds only the
DAGs the callbacks name (``sitewatch.airflow.factory._callback_dag_ids``), but before this
module the child still imported sitewatch and its dependencies and read the sites file from the
disk cache: Airflow pre-imports only the ``airflow.*`` modules a DAG file names
(``_pre_import_airflow_modules``). ``preload_dag_processor`` does the rest once, in the
``airflow dag-processor`` process before its parsing loop: it imports the factory and reads the
sites file (``cached_sites``), then freezes the garbage collector's view of it (``gc.freeze``,
as in ``sitewatch.airflow.preload``), and every child inherits both. Measured with
``bench/parse.py --parts callbacks`` (a forked child running Airflow's ``_parse_file`` on 20
success callbacks; bench/notes.md, section 3): 0.031 instead of 0.125 CPU-s per parse child at
1,000 sites, 0.045 instead of 0.200 at 10,000; the child imports no sitewatch module.

``plugins/sitewatch_dag_processor.py`` calls it: Airflow loads the plugins folder in every
process (in the DAG processor when ``Job()`` builds its listener manager, before the parsing
loop), and the command line tells the DAG processor from the others (``in_dag_processor``);
``airflow standalone`` runs it as an ``airflow dag-processor`` process of its own too. Nothing
happens in any other process: a task process or the API server has no use for the factory.

A warm sites cache does not go stale: ``cached_sites`` compares the file's stat with the cached
one at every call, so a child reads a changed file again (from the disk cache, as before this
module). After such a change the parent's copy is of no use until the processor restarts, since
the parent never reads the file again: its children pay the disk-cache read again (53 ms at
10,000 sites), but still not the imports. The cost, once per DAG processor start: 0.19 s of CPU
and 16 MB of memory at 10,000 sites.

Nothing here may stop the DAG processor: any failure is logged and the processor runs as it
would without this module (each child imports what it needs, and reports what fails to import
as the DAG file's import error).
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

# The Airflow CLI command of the DAG processor (``airflow dag-processor``).
COMMAND = "dag-processor"


def in_dag_processor(argv: Sequence[str] | None = None) -> bool:
    """Whether ``argv`` (default ``sys.argv``) runs Airflow's DAG processor: ``airflow
    dag-processor [options]`` or ``python -m airflow dag-processor [options]``. The command is
    the first argument, since the Airflow CLI takes no option before it."""
    argv = sys.argv if argv is None else argv
    return len(argv) > 1 and argv[1] == COMMAND


def preload_dag_processor(argv: Sequence[str] | None = None) -> bool:
    """In the DAG processor only, import what a parse of ``dags/sites.py`` imports and read the
    sites file, then freeze it all for the forked parse children. True when it did.

    argv: the command line to judge (default ``sys.argv``). Never raises: a failure is logged
    with its traceback and gives False.
    """
    if not in_dag_processor(argv):
        return False
    start = time.process_time()
    try:
        sites = _preload()
    except Exception:  # noqa: BLE001 - without the preload each parse imports for itself
        log.exception("preload_dag_processor: failed, each parse imports sitewatch itself")
        return False
    log.info(
        "preload_dag_processor: sites=%d file=%s cpu_s=%.3f",
        len(sites.sites),
        sites.path,
        time.process_time() - start,
    )
    return True


def _preload():
    """The factory imported (what ``dags/sites.py`` imports, and with it sitewatch's config and
    its dependencies), the sites file read; the result of the read."""
    from sitewatch.airflow import factory

    sites = factory.cached_sites()
    gc.freeze()  # shared by every parse child: never collect it
    return sites
