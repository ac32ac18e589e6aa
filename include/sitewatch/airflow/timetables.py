"""The site DAGs' timetable: a run at each tick of the site's schedule, shifted by its offset.

Airflow's trigger timetables do not fit: ``CronTriggerTimetable`` starts every site on one cron in
the same second, and ``DeltaTriggerTimetable`` aligns to nothing (its first run is whenever the
scheduler first looks, and downtime re-anchors it). ``SiteTimetable`` puts ticks on a fixed grid
(multiples of the interval since the Unix epoch, or the cron's times in UTC) and runs each one
``offset`` later. That shifted moment is the run's logical date, which sitewatch stores as
``scheduled_at``: when the check was due.

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
        return {kind: schedule, "offset": self.offset.total_seconds()}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> SiteTimetable:
        schedule = timedelta(seconds=data["every"]) if "every" in data else data["cron"]
        return cls(schedule, timedelta(seconds=data["offset"]))

    def validate(self) -> None:
        """Raises AirflowTimetableInvalid for an interval not above 0 or an offset out of range."""
        if isinstance(self.schedule, timedelta) and self.schedule <= timedelta(0):
            raise AirflowTimetableInvalid(f"interval must be positive, not {self.schedule}")
        if not timedelta(0) <= self.offset < schedule_period(self.schedule):
            offset = format_duration(self.offset)
            raise AirflowTimetableInvalid(f"offset {offset} is not in [0, the schedule's period)")

    def infer_manual_data_interval(self, *, run_after: datetime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        """The first due moment after the last run and not before ``start_date``; with catchup
        off, no earlier than the latest one due by now (the others are skipped, not made up).

        The last run's end need not be a due moment (a DAG that ran on another timetable before):
        the next run is the first due moment after it, so the grid takes over at once.
        """
        candidates = []
        if last_automated_data_interval is not None:
            candidates.append(self._due_after(last_automated_data_interval.end))
        if restriction.earliest is not None:
            candidates.append(self._due_from(restriction.earliest))
        if not restriction.catchup or not candidates:
            candidates.append(self._due_until(datetime.now(UTC)))
        due = max(candidates)
        if restriction.latest is not None and due > restriction.latest:
            return None
        return DagRunInfo.exact(pendulum.instance(due))

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
