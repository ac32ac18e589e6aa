"""The site DAGs' timetable: a run at each tick of the site's schedule, shifted by its offset.

Airflow's trigger timetables do not fit: ``CronTriggerTimetable`` starts every site on one cron in
the same second, and ``DeltaTriggerTimetable`` aligns to nothing (its first run is whenever the
scheduler first looks, and downtime re-anchors it). ``SiteTimetable`` puts ticks on a fixed grid
(multiples of the interval since the Unix epoch, or the cron's times in UTC) and runs each one
``offset`` later. That shifted moment is the run's logical date, which sitewatch stores as
``scheduled_at``: when the check was due.

A scheduler that starts with many sites due, or comes back after missing ticks, would otherwise
have every one of them due at once (with catchup off, the latest missed tick of each): 10,000 runs
in a second, which Airflow then works through for longer than any check is worth. With a
``spread`` (``sitewatch.airflow.factory.start_spread``, from the number of sites) such a site
resumes at its next due moment instead, or for a schedule longer than the spread at its place on a
grid of the spread (``spread_offset``), so a cold start makes runs due at the steady rate.

Airflow 3 deserializes a timetable of its own or one a plugin registers:
``plugins/sitewatch_timetables.py`` registers this one. The scheduler deserializes every DAG it
looks at, so the stored form is a number or a string plus a number, and nothing is computed
before it is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
from airflow.exceptions import AirflowTimetableInvalid
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable

from sitewatch.config.offset import schedule_period
from sitewatch.config.schedule import format_duration

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
SPREAD_KEYS = ("spread", "spread_offset")


@dataclass(frozen=True)
class SiteTimetable(Timetable):
    """Runs at ``tick + offset`` for each tick of ``schedule`` (an interval or a UTC cron).

    ``offset`` must lie in ``[0, period)`` (``sitewatch.config.offset``), so shifting keeps the
    ticks in order and one run never passes the next. Each run's data interval is the instant it
    is due, as with Airflow's trigger timetables. With catchup off (sitewatch's DAGs) a scheduler
    that was down runs only the latest missed tick.
    """

    schedule: timedelta | str
    offset: timedelta = timedelta(0)
    spread: timedelta = timedelta(0)
    """How long a start, or a return after missed ticks, may take to make the site due: 0 for at
    once (the latest due moment)."""
    spread_offset: timedelta = timedelta(0)
    """Where in each span of ``spread`` the site resumes when its schedule is longer."""

    @property
    def summary(self) -> str:
        """Shown as the DAG's schedule in the UI: ``every 1m at +17s``."""
        return f"{self._every} at +{format_duration(self.offset)}"

    @property
    def description(self) -> str:
        offset = format_duration(self.offset)
        if isinstance(self.schedule, timedelta):
            every = format_duration(self.schedule)
            return f"{self._every}, {offset} after each multiple of {every} since 1970 (UTC)"
        return f"{self._every} in UTC, each run {offset} after the cron's time"

    @property
    def _every(self) -> str:
        if isinstance(self.schedule, timedelta):
            return f"every {format_duration(self.schedule)}"
        return f"cron {self.schedule}"

    def serialize(self) -> dict[str, Any]:
        kind = "every" if isinstance(self.schedule, timedelta) else "cron"
        schedule = self.schedule.total_seconds() if kind == "every" else self.schedule
        data = {kind: schedule, "offset": self.offset.total_seconds()}
        if self.spread:  # absent at 0: DAGs stored before it existed read the same
            data["spread"] = self.spread.total_seconds()
            data["spread_offset"] = self.spread_offset.total_seconds()
        return data

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> SiteTimetable:
        schedule = timedelta(seconds=data["every"]) if "every" in data else data["cron"]
        spread, spread_offset = (timedelta(seconds=data.get(k, 0)) for k in SPREAD_KEYS)
        return cls(schedule, timedelta(seconds=data["offset"]), spread, spread_offset)

    def validate(self) -> None:
        """Raises AirflowTimetableInvalid for an interval not above 0 or an offset out of range."""
        if isinstance(self.schedule, timedelta) and self.schedule <= timedelta(0):
            raise AirflowTimetableInvalid(f"interval must be positive, not {self.schedule}")
        if not timedelta(0) <= self.offset < schedule_period(self.schedule):
            offset = format_duration(self.offset)
            raise AirflowTimetableInvalid(f"offset {offset} is not in [0, the schedule's period)")
        if self.spread < timedelta(0) or not timedelta(0) <= self.spread_offset < max(
            self.spread, _SECOND
        ):
            raise AirflowTimetableInvalid("spread_offset is not in [0, spread)")

    def infer_manual_data_interval(self, *, run_after: datetime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        """The first due moment after the last run and not before ``start_date``. With catchup
        off, missed ticks are not made up: a site whose next due moment passed more than a
        ``_step`` ago (at once without a spread), or that has never run, resumes as ``_resume``
        says.

        The last run's end need not be a due moment (a DAG that ran on another timetable before):
        the next run is the first due moment after it, so the grid takes over at once.
        """
        now = datetime.now(UTC)
        candidates = []
        if last_automated_data_interval is not None:
            candidates.append(self._due_after(last_automated_data_interval.end))
        if restriction.earliest is not None:
            candidates.append(self._due_from(restriction.earliest))
        if not candidates or (not restriction.catchup and max(candidates) < now - self._step):
            candidates.append(self._resume(now))
        due = max(candidates)
        if restriction.latest is not None and due > restriction.latest:
            return None
        return DagRunInfo.exact(pendulum.instance(due))

    @property
    def _step(self) -> timedelta:
        """The grid a resuming site is due on: its own up to ``spread``, else the spread's
        (0 without a spread)."""
        if isinstance(self.schedule, timedelta) and self.schedule <= self.spread:
            return self.schedule
        return self.spread

    @property
    def _grace(self) -> timedelta:
        """How late a resume moment may still be taken: the DAG processor asks again at every
        parse, and a site due a moment ago must not be put off by a whole step meanwhile."""
        return self._step / 10

    def _resume(self, now: datetime) -> datetime:
        """When a site that is not due on its own (its first run, or ticks missed) runs: without
        a spread the latest due moment by ``now``; with one, the first moment from ``now`` less
        the grace on its own grid when its schedule is no longer than the spread (so sites start
        as they go on), else on the spread's grid at ``spread_offset``."""
        if not self.spread:
            return self._due_until(now)
        start = _plain(now) - self._grace
        if self._step == self.schedule:
            return self._due_from(start)
        step, base = self._step, _EPOCH + self.spread_offset
        return base + -((base - start) // step) * step

    def _due_until(self, moment: datetime) -> datetime:
        """The last due moment at or before ``moment``."""
        return self._tick_until(_plain(moment) - self.offset) + self.offset

    def _due_after(self, moment: datetime) -> datetime:
        """The first due moment after ``moment``."""
        return self._tick_after(self._tick_until(_plain(moment) - self.offset)) + self.offset

    def _due_from(self, moment: datetime) -> datetime:
        """The first due moment at or after ``moment``."""
        due = self._due_until(moment)
        return due if due == moment else self._due_after(moment)

    def _tick_until(self, moment: datetime) -> datetime:
        """The last tick (without offset) at or before ``moment``, a plain UTC datetime."""
        if isinstance(self.schedule, timedelta):
            return _EPOCH + (moment - _EPOCH) // self.schedule * self.schedule
        # Cron ticks are whole minutes; croniter's get_prev is strictly before its start.
        start = moment.replace(second=0, microsecond=0) + _MINUTE
        return self._cron(start).get_prev(datetime).replace(tzinfo=UTC)

    def _tick_after(self, tick: datetime) -> datetime:
        """The tick that follows ``tick``."""
        if isinstance(self.schedule, timedelta):
            return tick + self.schedule
        return self._cron(tick).get_next(datetime).replace(tzinfo=UTC)

    def _cron(self, start: datetime):
        # Imported here: only the scheduler and the DAG processor ask for runs, while every task
        # process builds this timetable when it parses its DAG file.
        from croniter import croniter

        return croniter(self.schedule, start.replace(tzinfo=None))


def _plain(moment: datetime) -> datetime:
    """``moment`` as a plain UTC datetime: Airflow passes pendulum's, whose differences are
    pendulum Intervals, and those cannot be floor-divided by a timedelta."""
    return datetime.combine(moment.date(), moment.time(), moment.tzinfo).astimezone(UTC)
