"""When a cron expression fires in a time zone: its wall-clock times as instants, DST included.

A maintenance window's cron is read in its own zone (``0 2 * * 0`` in Europe/Berlin is 02:00 on
the clocks there), so a fire time is a wall-clock time that must become an instant. Two days a year
that is not one-to-one, and this module decides, as Vixie cron does:

- spring forward: a wall time inside the gap (02:30 when clocks jump from 02:00 to 03:00) does
  not exist; it fires at the first instant after the gap (03:00 new time). Several wall times in
  the gap all fire at that one instant.
- fall back: a wall time that happens twice (02:30 when clocks go from 03:00 back to 02:00)
  fires once, at its first occurrence (summer time).

Both rules keep the mapping monotonic: a later wall time never fires at an earlier instant, which
is what lets ``latest_fire`` walk wall times backwards and stop at the first one not after ``at``,
and ``next_fire`` walk them forwards and stop at the first one after it. Airflow's timetables read
crons with croniter; these two are sitewatch's one reading of a maintenance window's cron (when
it last started, when it next starts) and of a schedule's interval on the Sites page.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sitewatch.config.schedule import CronFields, cron_fields

MAX_FOLD = timedelta(hours=3)
"""The largest fall-back handled exactly. Clocks go back by an hour, half an hour on Lord Howe
Island, two hours in Antarctica/Troll; a fire time up to that much later on the wall than ``at``
can be earlier in time, during the repeated hour."""
_DAY = timedelta(days=1)
_SECOND = timedelta(seconds=1)
_HORIZON = timedelta(days=8 * 366)
"""How far ahead ``next_fire`` looks: a cron ``check_cron`` accepts fires within it (the rarest,
29 February, fires again after at most 8 years: 2100 is no leap year)."""


@functools.lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The zone ``name`` (an IANA key), cached so a check pays no lookup. Raises as ZoneInfo."""
    return ZoneInfo(name)


def latest_fire(cron: str, zone_name: str, at: datetime, lookback: timedelta) -> datetime | None:
    """The last instant at or before ``at``, and after ``at - lookback``, at which ``cron`` fires
    on the clocks of ``zone_name``; aware UTC, or None when it did not fire then.

    ``at`` must be aware (ValueError otherwise: a naive time would silently be read as the host's
    local time). Cost: one pass over the days of ``lookback`` (plus two), each rejected by its
    day-of-month, month and weekday alone or searched from its latest hour and minute down; after
    a fall-back up to ``MAX_FOLD`` of wall time is skipped over.
    """
    if at.tzinfo is None:
        raise ValueError(f"expected an aware datetime, got {at!r}")
    here = zone(zone_name)
    fields = _fields(cron)
    local = at.astimezone(here)
    earlier = (at - MAX_FOLD).astimezone(here).utcoffset()
    newest = local.replace(tzinfo=None) + max(earlier - local.utcoffset(), timedelta(0))
    oldest = (at - lookback).astimezone(here).date() - _DAY  # offsets differ by less than a day
    for wall in _walls_back(fields, newest, oldest):
        instant = instant_of(wall, here)
        if instant <= at:
            return instant if instant > at - lookback else None
    return None


def next_fire(cron: str, zone_name: str, at: datetime) -> datetime | None:
    """The first instant after ``at`` at which ``cron`` fires on the clocks of ``zone_name``;
    aware UTC. So ``latest_fire(...) <= at < next_fire(...)``, by the same DST rules.

    ``at`` must be aware (ValueError otherwise). None only when the cron does not fire within
    ``_HORIZON``, which no cron ``check_cron`` accepts does. Cost: one pass over the days until it
    fires, each rejected by its day-of-month, month and weekday alone or searched from its
    earliest hour and minute up; a wall time of the repeated hour after a fall-back that fired
    already, the first time the clocks showed it, is skipped (it fires once).
    """
    if at.tzinfo is None:
        raise ValueError(f"expected an aware datetime, got {at!r}")
    here = zone(zone_name)
    # No wall time before ``at``'s own fires after ``at`` (the mapping is monotonic).
    oldest = at.astimezone(here).replace(tzinfo=None)
    for wall in _walls_forward(_fields(cron), oldest, oldest.date() + _HORIZON):
        instant = instant_of(wall, here)
        if instant > at:
            return instant
    return None


def instant_of(wall: datetime, here: ZoneInfo) -> datetime:
    """The instant (aware UTC) at which naive wall-clock time ``wall`` in ``here`` fires: its first
    occurrence when it happens twice, the end of the gap when it does not exist."""
    instant = wall.replace(tzinfo=here).astimezone(UTC)  # fold 0: the earlier reading
    if instant.astimezone(here).replace(tzinfo=None) == wall:
        return instant
    # In a gap fold 0 reads the wall with the offset from before it, which lands inside the
    # new time; the gap's end lies less than the jump before that instant.
    jump = wall.replace(tzinfo=here, fold=1).utcoffset() - wall.replace(tzinfo=here).utcoffset()
    before, after, new = instant - jump, instant, instant.astimezone(here).utcoffset()
    while (seconds := (after - before) // _SECOND) > 1:  # whole seconds, as transitions are
        middle = before + seconds // 2 * _SECOND
        if middle.astimezone(here).utcoffset() == new:
            after = middle
        else:
            before = middle
    return after


@functools.lru_cache(maxsize=1024)
def _fields(cron: str) -> tuple[CronFields, tuple[int, ...], tuple[int, ...]]:
    """The cron's fields and its hours and minutes, latest first."""
    fields = cron_fields(cron)
    return (
        fields,
        tuple(sorted(fields.hours, reverse=True)),
        tuple(sorted(fields.minutes, reverse=True)),
    )


def _walls_back(parsed, newest: datetime, oldest: date):
    """The cron's wall-clock fire times from ``newest`` back to the start of day ``oldest``,
    latest first."""
    fields, hours, minutes = parsed
    day = newest.date()
    while day >= oldest:
        if _fires_on(fields, day):
            for hour in hours:
                if day == newest.date() and hour > newest.hour:
                    continue
                for minute in minutes:
                    wall = datetime(day.year, day.month, day.day, hour, minute)
                    if wall <= newest:
                        yield wall
        day -= _DAY


def _walls_forward(parsed, oldest: datetime, newest: date):
    """The cron's wall-clock fire times from ``oldest`` on to the end of day ``newest``, earliest
    first."""
    fields, hours, minutes = parsed
    hours, minutes = hours[::-1], minutes[::-1]
    day = oldest.date()
    while day <= newest:
        if _fires_on(fields, day):
            for hour in hours:
                if day == oldest.date() and hour < oldest.hour:
                    continue
                for minute in minutes:
                    wall = datetime(day.year, day.month, day.day, hour, minute)
                    if wall >= oldest:
                        yield wall
        day += _DAY


def _fires_on(fields: CronFields, day: date) -> bool:
    if day.month not in fields.months:
        return False
    by_date = day.day in fields.days
    by_weekday = (day.weekday() + 1) % 7 in fields.weekdays  # cron counts from Sunday
    return by_date or by_weekday if fields.either_day else by_date and by_weekday
