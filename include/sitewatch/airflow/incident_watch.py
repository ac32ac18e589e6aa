"""The Airflow Asset of status page incidents: an event whenever one changed, from any writer.

Incidents change in two places: the drain's judge (a DOWN opens one, a recovery resolves it) and
the operators' DAGs (``sitewatch_incident``, ``sitewatch_incident_update``). The drain's task
lasts a day and Airflow emits a task's asset events only when it ends, so the event cannot come
from the writers' tasks. Instead an ``AssetWatcher`` on ``INCIDENTS`` runs
``IncidentChangeTrigger`` in the triggerer: it reads ``storage.incidents.change_mark`` (one
small query) every few seconds and fires when the mark moved. Every change adds an update row,
so it sees each writer's changes, and nothing else: a drain batch that changed no incident causes
no event. ``sitewatch_status_page`` runs on the asset or every minute, whichever comes first; a
change made while the triggerer is down waits for that minute.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from sitewatch.names import INCIDENTS_ASSET_URI, POSTGRES_READER_CONN_ID

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
"""How often the trigger reads the mark: the status page follows a change within this and a
scheduler loop."""


class IncidentChangeTrigger(BaseEventTrigger):
    """Fires ``{"updates": n, "newest": id}`` each time ``change_mark`` differs from the one it
    read before, every ``poll_seconds``, on the reader's connection (``POSTGRES_READER_CONN_ID``,
    which may read the incidents). The first mark after a start is the baseline, not a change.
    Never raises: while PostgreSQL cannot be read (down, or not migrated yet) it logs once and
    tries again at the next poll, keeping its baseline."""

    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__()
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.{type(self).__name__}", {"poll_seconds": self.poll_seconds}

    async def run(self):
        seen, conn, failing = None, None, False
        try:
            while True:
                try:
                    if conn is None or conn.closed:
                        conn = await asyncio.to_thread(_connect)
                    mark = await asyncio.to_thread(_mark, conn)
                except Exception as exc:  # the trigger must outlive any database trouble
                    if not failing:
                        log.warning("incident_watch: cannot read the incidents: %s", exc)
                    failing = True
                    conn = _closed(conn)
                else:
                    if failing:
                        log.info("incident_watch: reading the incidents again")
                    failing = False
                    if seen is not None and mark != seen:
                        log.info("incident_watch: incidents changed updates=%d newest=%d", *mark)
                        yield TriggerEvent({"updates": mark[0], "newest": mark[1]})
                    seen = mark
                await asyncio.sleep(self.poll_seconds)
        finally:
            _closed(conn)


def _connect():
    from sitewatch.airflow.hooks import results_connection

    return results_connection(POSTGRES_READER_CONN_ID)


def _mark(conn) -> tuple[int, int]:
    from sitewatch.storage.incidents import change_mark

    return change_mark(conn)


def _closed(conn) -> None:
    if conn is not None:
        conn.close()


INCIDENTS = Asset(
    uri=INCIDENTS_ASSET_URI,
    watchers=[AssetWatcher(name="sitewatch_incident_changes", trigger=IncidentChangeTrigger())],
)
"""Gets an event whenever a status page incident changed (see the module doc)."""
