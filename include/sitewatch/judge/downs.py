"""The DOWN verdict of a site checked from one location, judged where its checks are stored: the
drain (its ``on_stored`` hook).

Such a site's run is decided by its final attempt (quorum 1 of 1): a final down check is a DOWN
verdict, or STILL DOWN when ``remind_every`` has passed, as the state machine decides. The drain
judges it as it stores the check, wherever the attempt ran: the triggerer publishes the last try
of a run itself (``sitewatch.airflow.probe_trigger.last_try``), so the message does not wait for a
worker to resume the task. Down checks are few, so each is judged on its own, oldest first, through
the one path of every verdict (``sitewatch.judge.alerts.judge``); a redelivered batch changes
nothing, since the state machine ignores a run it has judged (same ``run_id``). The message links
to the attempt's log (``Session.log_url``), since a check names its run.

This hook runs before ``recoveries`` on the same batch, so a batch that holds a site's down run and
a later up one sends DOWN, then RECOVERED.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sitewatch.alerting.rules import Event, Verdict
from sitewatch.judge.alerts import judge
from sitewatch.judge.incidents import judged
from sitewatch.observation import POSITION

log = logging.getLogger(__name__)

_SITE, _UP, _FINAL, _SCHEDULED, _ATTEMPT, _ERROR, _DETAIL, _RUN = (
    POSITION[n]
    for n in ("site", "up", "final", "scheduled_at", "attempt", "error", "error_detail", "run_id")
)


def final_downs(rows: Iterable[tuple], sites: dict, pages: Sequence = ()) -> list[tuple]:
    """The final down checks among ``rows`` (``COLUMNS`` order) of the sites in ``sites`` (by
    name) checked from one location that have notify targets or are on one of ``pages``
    (``incidents.judged``), oldest run first."""
    wanted = (
        row
        for row in rows
        if row[_FINAL] and not row[_UP] and _judged_here(sites.get(row[_SITE]), pages)
    )
    return sorted(wanted, key=lambda row: row[_SCHEDULED])


def _judged_here(site, pages: Sequence) -> bool:
    return site is not None and not site.several_locations and judged(site, pages)


class Downs:
    """``drain``'s ``on_stored`` hook: judge DOWN for the final down checks a batch stored.

    session: the drain run's alerting session (``sitewatch.judge.session.Session``); its
    connection is opened only for a batch with such a check. Raises what the connection raises
    (StorageError); the caller logs it and goes on.
    """

    def __init__(self, session) -> None:
        self._session = session

    def __call__(self, rows: Sequence[tuple]) -> None:
        sites = self._session.sites()
        downs = final_downs(rows, sites, self._session.pages())
        if not downs:
            return
        conn = self._session.connection()
        now = datetime.now(UTC)
        for row in downs:
            site, run_id = sites[row[_SITE]], row[_RUN]
            event = Event(
                Verdict.DOWN,
                now,
                run_id=run_id,
                run_after=row[_SCHEDULED],
                error=row[_ERROR],
                detail=row[_DETAIL],
            )
            url = self._session.log_url(site, run_id, row[_ATTEMPT]) if run_id else None
            judge(
                conn,
                site,
                event,
                send=self._session.send,
                run_url=url,
                pages=self._session.pages(),
                sites=sites,
            )
