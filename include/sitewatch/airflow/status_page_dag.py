"""The ``sitewatch_status_page`` DAG: every minute, and whenever an incident changed, each public
status page of the sites file is rendered and written as static files (issue 27).

Each page goes to ``<SITEWATCH_STATUS_PAGE_URL>/<page id>/``: ``index.html``, ``summary.json``
(Statuspage's shape), ``badges/<component>.svg`` and ``shields/<component>.json``. The target is
any folder Airflow's object storage (``ObjectStoragePath``) reaches: a local folder by default
(under the state dir), ``s3://<connection>@bucket/prefix`` through an Airflow connection, or any
fsspec file system by its scheme. An incident's change reaches the page within seconds: the
DAG also runs on the asset ``INCIDENTS`` (``sitewatch.airflow.incident_watch``). Public traffic
never reaches Airflow or PostgreSQL: the page stays readable, with its "updated at" time, while
the monitoring stack is down. See docs/status-page.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, ObjectStoragePath, task
from fsspec import AbstractFileSystem

from sitewatch.airflow.hooks import results_connection
from sitewatch.airflow.incident_watch import INCIDENTS
from sitewatch.names import DAG_DEFAULTS, DAG_TAG, POSTGRES_READER_CONN_ID, STATUS_PAGE_DAG_ID

log = logging.getLogger(__name__)

# File systems where a rename replaces the target in one step, so a reader never sees half a
# file: write a temporary name, then rename. Object stores have no rename (it is a copy), but
# one PUT replaces an object whole, so they are written in place.
_RENAMING = frozenset({"file", "local", "memory"})


def _target(url: str) -> tuple[ObjectStoragePath, AbstractFileSystem]:
    """``url`` as an ``ObjectStoragePath`` and the file system that reaches it (through its
    Airflow connection, if any); a scheme no Airflow provider registers (say ``memory``) is
    reached through fsspec's own file system of that name."""
    path = ObjectStoragePath(url)
    try:
        return path, path.fs
    except ValueError:
        import fsspec

        return path, fsspec.filesystem(path.protocol)


def publish_files(url: str, page_id: str, files: dict[str, bytes]) -> int:
    """Write ``files`` (relative path -> bytes, ``status.files.page_files``) under
    ``<url>/<page_id>/`` (``status.files.write_files``), each replaced whole: a temporary name
    and a rename where the target renames in one step (a file already there unchanged is left
    alone), else written in place. Returns the bytes written."""
    from sitewatch.status.files import write_files

    root, fs = _target(url)
    renaming = (root.protocol or "file") in _RENAMING
    return write_files(fs, f"{root.path.rstrip('/')}/{page_id}", files, renaming=renaming)


@task
def publish() -> dict:
    """Render every valid page of the sites file as of now and publish it; returns, per page id,
    the files and bytes written. A sites file without pages publishes nothing."""
    from sitewatch.config.loader import cached_sites
    from sitewatch.status.files import page_files
    from sitewatch.status.read import read_page
    from sitewatch.status.settings import target_url

    url = target_url()
    sites = cached_sites()
    if not sites.status_pages:
        log.info("status_page: no status_pages in %s, nothing to publish", sites.path)
        return {}
    now = datetime.now(UTC)
    conn = results_connection(POSTGRES_READER_CONN_ID)
    try:
        views = [read_page(conn, page, sites.by_name, now) for page in sites.status_pages]
    finally:
        conn.close()
    done = {}
    for view in views:
        files = page_files(view)
        size = publish_files(url, view.id, files)
        log.info("status_page: page=%s files=%d bytes=%d target=%s", view.id, len(files), size, url)
        done[view.id] = {"files": len(files), "bytes": size}
    return done


def status_page_dag() -> DAG:
    with DAG(
        dag_id=STATUS_PAGE_DAG_ID,
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable("* * * * *", timezone="UTC"), assets=INCIDENTS
        ),
        tags=[DAG_TAG],
        doc_md=__doc__,
        default_args={"owner": "sitewatch", "retries": 1, "retry_delay": timedelta(seconds=10)},
        dagrun_timeout=timedelta(minutes=5),
        **DAG_DEFAULTS,
    ) as dag:
        publish()
    return dag
