"""The UP verdict, judged where every check is stored: the drain (its ``on_stored`` hook).

A healthy check may end in the triggerer, where a task's ``on_success_callback`` never runs, so
RECOVERED cannot come from the site's task. The drain stores every observation exactly once,
whichever process made it, so it judges UP for all of them at a cost that does not grow with the
number of healthy checks: per batch, one query on the alerting connection finds the few sites with
an up check whose state an UP verdict changes (down, or a pipeline problem open); only those are
looked up in the sites file and judged, through the one path of every verdict
(``sitewatch.judge.alerts.judge``). A redelivered batch judges again and changes nothing,
since the state machine ignores what it has seen (``sitewatch.alerting.rules.decide``).

The message goes out one drain cycle after the up check: the sensor's wake-up, the drain task's
start and its first batch. It carries no run link, since an observation does not name its run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sitewatch.alerting import store as alert_store
from sitewatch.alerting.rules import Event, Verdict
from sitewatch.config import objectives
from sitewatch.judge.alerts import judge
from sitewatch.judge.incidents import judged
from sitewatch.observation import POSITION

log = logging.getLogger(__name__)

_SITE, _UP, _SCHEDULED, _MS = (
    POSITION[n] for n in ("site", "up", "scheduled_at", "response_time_ms")
)


def latest_ups(rows: Iterable[tuple]) -> dict[str, tuple[datetime, float | None]]:
    """site -> (``scheduled_at``, ``response_time_ms``) of its latest up check among ``rows``
    (``COLUMNS`` order).

    Any up attempt counts, a retry's too: an up attempt ends its run as a success.
    """
    latest: dict[str, tuple[datetime, float | None]] = {}
    for row in rows:
        if row[_UP]:
            site, at = row[_SITE], row[_SCHEDULED]
            known = latest.get(site)
            if known is None or at > known[0]:
                latest[site] = (at, row[_MS])
    return latest


def slow(site, response_ms: float | None) -> bool:
    """Whether an up check of ``site`` that took ``response_ms`` is degraded (``degraded_ms``)."""
    return objectives.slow(site.degraded_ms, response_ms)


class Recoveries:
    """``drain``'s ``on_stored`` hook: judge UP for the sites whose up checks a batch stored.

    session: the drain run's alerting session (``sitewatch.judge.session.Session``). Its
    connection is opened at the first batch with an up check, so a drain that stores only down
    checks never opens it; its sites are read for each batch with an up check: a slow one of a
    site with ``degraded_ms`` is judged too (DEGRADED), whatever its stored state. Raises what the
    connection or the query raise (StorageError); the caller logs it and goes on.
    """

    def __init__(self, session) -> None:
        self._session = session

    def __call__(self, rows: Sequence[tuple]) -> None:
        ups = latest_ups(rows)
        if not ups:
            return
        conn = self._session.connection()
        sites = self._session.sites()
        degraded = {n for n, (_, ms) in ups.items() if n in sites and slow(sites[n], ms)}
        names = sorted(set(alert_store.awaiting_up(conn, list(ups))) | degraded)
        now = datetime.now(UTC)
        for name in names:
            site = sites.get(name)
            if site is None or not judged(site, self._session.pages()):
                why = "not in the sites file" if site is None else "no notify targets, no page"
                log.info("recoveries: skipped site=%s: %s", name, why)
                continue
            if site.several_locations:  # one location's up check is not the run's verdict
                continue
            at, _ = ups[name]
            event = Event(Verdict.UP, now, run_after=at, degraded=name in degraded)
            pages = self._session.pages()
            judge(conn, site, event, send=self._session.send, pages=pages, sites=sites)
