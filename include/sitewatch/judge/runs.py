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
- up or partial: the site is not down by its quorum, so RECOVERED if it was; a partial one is a
  partial outage of the status page components showing the site (``sitewatch.judge.incidents``);
- a silent location (nothing final stored by the deadline) counts, with ``silent_location: keep``
  (the default), as what it last decided (``missing, last down``), so losing sight of a site
  neither recovers it nor takes it down; with ``ignore`` it counts neither way;
- a location is one alert, whatever the number of its sites (state row ``@<location>``):
  PIPELINE PROBLEM once while the latest verdict of any of its sites has it silent, PIPELINE
  PROBLEM OVER once none does, to every notify target of its sites.

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
from sitewatch.alerting.quorum import DOWN, MISSING, UP, Decision, RunVerdict, decide_run
from sitewatch.alerting.rules import Event, Verdict
from sitewatch.config.locations import KEEP, run_deadline, verdict_grace
from sitewatch.judge.alerts import judge, judge_concern
from sitewatch.judge.incidents import judged
from sitewatch.names import location_queue
from sitewatch.observation import POSITION
from sitewatch.storage import verdicts as verdict_store

log = logging.getLogger(__name__)

SWEEP_SECONDS = 15.0
HORIZON = timedelta(hours=6)

_SITE, _UP, _FINAL, _SCHEDULED = (POSITION[n] for n in ("site", "up", "final", "scheduled_at"))


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
            self._multi = {name: s for name, s in index.items() if s.several_locations}
        return self._multi

    def _deadline_passed(self, site, scheduled_at: datetime, now: datetime) -> bool:
        return scheduled_at + run_deadline(site, self._grace) <= now

    def _decide(self, runs: Sequence[tuple[str, datetime]], multi: dict) -> None:
        conn = self._session.connection()
        seen = verdict_store.location_outcomes(conn, runs)
        now = self._clock()
        passed = {run: self._deadline_passed(multi[run[0]], run[1], now) for run in runs}
        kept = [run for run in runs if passed[run] and multi[run[0]].silent_location == KEEP
                and len(seen.get(run, {})) < len(multi[run[0]].locations)]  # fmt: skip
        before = verdict_store.previous_outcomes(conn, kept) if kept else {}
        silent: dict[str, list[str]] = {}
        reported: set[str] = set()
        for run in runs:
            (name, at), site = run, multi[run[0]]
            previous = before.get(run, {}) if run in kept else None
            decision = decide_run(site.locations, site.quorum, seen.get(run, {}),
                                  deadline_passed=passed[run], previous=previous)  # fmt: skip
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
            for loc in decision.silent:
                silent.setdefault(loc, []).append(name)
            reported.update(loc for loc in decision.locations if loc not in decision.silent)
            if judged(site, self._session.pages()):
                self._alert(conn, site, at, decision, now)
        for loc in sorted(silent.keys() | reported):
            self._location(conn, loc, loc in silent, now)

    def _alert(self, conn, site, at: datetime, decision: Decision, now: datetime) -> None:
        locations = dict(decision.locations)
        if decision.verdict is RunVerdict.DOWN:
            errors = verdict_store.final_errors(conn, site.name, at, decision.where(DOWN))
            detail = "; ".join(f"{loc}: {text}" for loc, text in errors.items())
            event = Event(Verdict.DOWN, now, run_after=at, error=decision.summary, detail=detail,
                          locations=locations)  # fmt: skip
        else:
            partial = decision.verdict is RunVerdict.PARTIAL
            detail = decision.summary if partial else None
            event = Event(Verdict.UP, now, run_after=at, detail=detail, locations=locations,
                          partial=partial)  # fmt: skip
        judge(conn, site, event, send=self._session.send, pages=self._session.pages(),
              sites=self._session.sites())  # fmt: skip

    def _location(self, conn, loc: str, silent_now: bool, now: datetime) -> None:
        """One alert state per location (row ``@<location>``): PIPELINE PROBLEM once while the
        latest verdict of any of its sites has it silent, naming how many and its queue;
        PIPELINE PROBLEM OVER once none does. It goes to every notify target of its sites.
        silent_now: whether this batch decided a run with ``loc`` silent. The sites' verdicts are
        read only when that can change the state (silent with no problem open, or reporting
        with one open), so a batch of healthy runs costs one row read per location."""
        state = alert_store.load(conn, location_key(loc))
        if silent_now == (state is not None and state.pipeline_since is not None):
            return
        sites = [s for s in self._session.sites().values()
                 if loc in s.locations and s.several_locations and s.enabled]  # fmt: skip
        if not sites:
            return
        latest = verdict_store.latest_verdicts(conn, [s.name for s in sites])
        quiet = sorted(name for name, (_, _, seen) in latest.items()
                       if seen.get(loc, MISSING) not in (UP, DOWN))  # fmt: skip
        queue = location_queue(loc) or "the default queue"
        targets = list(dict.fromkeys(t for s in sites for t in s.notify))
        if quiet:
            named = ", ".join(quiet[:5]) + (f" and {len(quiet) - 5} more" if len(quiet) > 5 else "")
            detail = (
                f"nothing final from {loc} by the deadline of the latest run of {len(quiet)} of"
                f" its {len(sites)} sites ({named}); are the workers of {queue} running?"
            )
            event = Event(Verdict.PIPELINE, now, error=f"no checks from location {loc}",
                          detail=detail)  # fmt: skip
        else:
            detail = f"{loc} reports again for all its {len(sites)} sites"
            event = Event(Verdict.UP, now, detail=detail)
        judge_concern(conn, location_key(loc), f"location {loc}", f"location/{loc}", event,
                      targets, self._session.send)  # fmt: skip


def location_key(location: str) -> str:
    """The alert-state row of a location: ``@<location>`` (no site name has an ``@``)."""
    return f"@{location}"
