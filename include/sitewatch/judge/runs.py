"""Verdicts across locations, judged where every check is stored: the drain.

A site checked from several locations has one task per location in each run, and one location's
failure is not the site's verdict. The drain stores every location's checks, so it decides each run
(``sitewatch.alerting.quorum``) as soon as every location's last word is stored, or, for a location
whose checks did not arrive, once the run's deadline has passed (``run_deadline``: the attempts'
timeouts and retry waits plus ``SITEWATCH_VERDICT_GRACE_SECONDS``; the DAG's ``dagrun_timeout`` is
the same figure, so Airflow gives up on such a run at the same time). Each decision is stored once
in ``site_verdicts``; only the call that stored it sends what it calls for, through the one path
of every verdict (``sitewatch.judge.alerts.judge``):

- down: DOWN (then STILL DOWN on ``remind_every``), naming each location's error;
- up or partial: the site is not down by its quorum, so RECOVERED if it was;
- a missing location: PIPELINE PROBLEM for that location (state row ``<site>@<location>``, so it
  is sent once while the location stays silent and is closed quietly when it reports again).

Two hooks of ``sitewatch.pipeline.drain.drain``: ``on_stored`` (a batch that holds a location's
last word decides the runs it completes) and ``on_caught_up`` (``sweep``: runs whose deadline
passed with a location missing; at most every ``SWEEP_SECONDS``, and only while the drain has read
everything there is, so a lagging drain never calls a location missing whose checks wait in Kafka).
Runs of the last ``HORIZON`` are swept; a run older than that with a location missing gets its
verdict only if that location's checks still arrive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sitewatch.alerting import store as alert_store
from sitewatch.alerting.quorum import DOWN, MISSING, Decision, RunVerdict, decide_run
from sitewatch.alerting.rules import Event, Verdict
from sitewatch.config.locations import run_deadline, verdict_grace
from sitewatch.judge.alerts import judge
from sitewatch.names import location_queue
from sitewatch.observation import COLUMNS
from sitewatch.storage import verdicts as verdict_store

log = logging.getLogger(__name__)

SWEEP_SECONDS = 15.0
HORIZON = timedelta(hours=6)

_NAMES = [c.name for c in COLUMNS]
_SITE, _UP, _FINAL, _SCHEDULED = (_NAMES.index(n) for n in ("site", "up", "final", "scheduled_at"))


def settled_runs(rows: Iterable[tuple], sites: Iterable[str]) -> set[tuple[str, datetime]]:
    """(site, scheduled_at) of ``rows`` (``COLUMNS`` order) that hold a location's last word (an
    up attempt, or a final one) for one of ``sites``."""
    wanted = set(sites)
    return {
        (row[_SITE], row[_SCHEDULED])
        for row in rows
        if row[_SITE] in wanted and (row[_UP] or row[_FINAL])
    }


class Verdicts:
    """The drain's verdict hooks; see the module doc.

    session: the drain run's alerting session (``sitewatch.judge.session.Session``), whose
    connection is opened at first need. grace: ``verdict_grace()`` by default. clock: now, UTC.
    Raises what the connection or the queries raise (StorageError); the caller logs it and goes
    on.
    """

    def __init__(
        self,
        session,
        grace: timedelta | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._session = session
        self._grace = verdict_grace() if grace is None else grace
        self._clock = clock
        self._index: dict | None = None
        self._multi: dict = {}
        self._last_sweep = float("-inf")

    def __call__(self, rows: Sequence[tuple]) -> None:
        """``on_stored``: decide the runs whose last location this batch completed."""
        multi = self._multi_sites()
        runs = settled_runs(rows, multi) if multi else set()
        if runs:
            self._decide(sorted(runs), multi)

    def sweep(self) -> None:
        """``on_caught_up``: decide the runs whose deadline passed with a location missing."""
        if time.monotonic() - self._last_sweep < SWEEP_SECONDS:
            return
        self._last_sweep = time.monotonic()
        multi = self._multi_sites()
        if not multi:
            return
        now = self._clock()
        earliest = min(run_deadline(site, self._grace) for site in multi.values())
        candidates = verdict_store.undecided_runs(
            self._session.connection(), list(multi), since=now - HORIZON, before=now - earliest
        )
        due = [(name, at) for name, at in candidates if self._deadline_passed(multi[name], at, now)]
        if due:
            self._decide(due, multi)

    def _multi_sites(self) -> dict:
        index = self._session.sites()
        if index is not self._index:  # the same dict while the sites file is unchanged
            self._index = index
            self._multi = {name: s for name, s in index.items() if len(s.locations) > 1}
        return self._multi

    def _deadline_passed(self, site, scheduled_at: datetime, now: datetime) -> bool:
        return scheduled_at + run_deadline(site, self._grace) <= now

    def _decide(self, runs: Sequence[tuple[str, datetime]], multi: dict) -> None:
        conn = self._session.connection()
        seen = verdict_store.location_outcomes(conn, runs)
        now = self._clock()
        for name, at in runs:
            site = multi[name]
            passed = self._deadline_passed(site, at, now)
            decision = decide_run(site.locations, site.quorum, seen.get((name, at), {}),
                                  deadline_passed=passed)  # fmt: skip
            if decision is None:
                continue
            stored = verdict_store.record_verdict(
                conn, name, at, decision.verdict.value, decision.quorum, decision.locations
            )
            if not stored:  # decided before (a redelivered batch): its alerts went out then
                continue
            log.info(
                "verdict: site=%s run=%s verdict=%s %s",
                name,
                at.isoformat(),
                decision.verdict.value,
                decision.summary,
            )
            if site.notify:
                self._alert(conn, site, at, decision, now)

    def _alert(self, conn, site, at: datetime, decision: Decision, now: datetime) -> None:
        locations = dict(decision.locations)
        if decision.verdict is RunVerdict.DOWN:
            errors = verdict_store.final_errors(conn, site.name, at, decision.where(DOWN))
            detail = "; ".join(f"{loc}: {text}" for loc, text in errors.items())
            event = Event(Verdict.DOWN, now, run_after=at, error=decision.summary, detail=detail,
                          locations=locations)  # fmt: skip
        else:
            detail = decision.summary if decision.verdict is RunVerdict.PARTIAL else None
            event = Event(Verdict.UP, now, run_after=at, detail=detail, locations=locations)
        judge(conn, site, event, send=self._session.send)
        self._location_problems(conn, site, at, decision, now)

    def _location_problems(self, conn, site, at, decision: Decision, now) -> None:
        """PIPELINE PROBLEM once per missing location; quietly close those that reported."""
        for loc in decision.where(MISSING):
            queue = location_queue(loc) or "the default queue"
            detail = (
                f"nothing final from {loc} for the run scheduled {at.isoformat()} within"
                f" {run_deadline(site, self._grace)}; are the workers of {queue} running?"
            )
            event = Event(Verdict.PIPELINE, now, run_after=at,
                          error=f"no checks from location {loc}", detail=detail)  # fmt: skip
            judge(conn, site, event, send=self._session.send, key=location_key(site.name, loc))
        reported = [loc for loc, seen in decision.locations.items() if seen != MISSING]
        keys = {location_key(site.name, loc): loc for loc in reported}
        for key in alert_store.awaiting_up(conn, list(keys)):
            event = Event(Verdict.UP, now, run_after=at)
            judge(conn, site, event, send=self._session.send, key=key)


def location_key(site: str, location: str) -> str:
    """The alert-state row of one location of a site: ``<site>@<location>``."""
    return f"{site}@{location}"
