"""The ``offset`` site key: how long after each tick of its schedule a site is checked.

Sites that share a schedule would otherwise all be due in the same second, so every minute would
start with a burst of requests, task processes and Kafka messages. ``auto`` (the default) spreads
them: each site gets an offset derived from its name alone, so it is the same in every process,
on every machine and after every restart, and a site keeps its rhythm while different sites land
in different seconds. The timetable that applies it is ``sitewatch.airflow.timetables``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sitewatch.config.schedule import DURATION_HINT, MAX_DURATION, format_duration
from sitewatch.config.values import duration
from sitewatch.config.yamltree import Invalid

AUTO = "auto"
CRON_PERIOD = timedelta(minutes=1)
"""What an offset must stay below on a cron schedule: its finest unit, the shortest gap between
two of its ticks, so shifted runs keep the cron's order and never pass the next tick."""
_SECOND = timedelta(seconds=1)


def check_offset(value: Any) -> timedelta | None:
    """``auto`` (returned as None, which ``Site`` resolves with ``auto_offset``) or a duration.

    Whether the duration fits the schedule needs the whole entry: ``offset_problem``. Raises
    Invalid.
    """
    if value == AUTO:
        return None
    try:
        return duration(value, timedelta(0), MAX_DURATION)
    except Invalid as exc:  # say that `auto` is an answer too
        raise Invalid(exc.message.replace(DURATION_HINT, f"'auto' or {DURATION_HINT}")) from None


def schedule_period(schedule: timedelta | str) -> timedelta:
    """The span an offset lies in: the interval of an interval schedule, one minute for a cron."""
    return schedule if isinstance(schedule, timedelta) else CRON_PERIOD


def auto_offset(name: str, schedule: timedelta | str) -> timedelta:
    """The offset ``auto`` gives site ``name``: whole seconds in ``[0, period)``, from a hash.

    A digest (blake2b), not ``hash()``, which Python salts per process. Whole seconds, because
    Airflow's scheduler creates runs in loops about a second apart, so finer offsets would not
    spread the work further, and ``+17s`` reads well in the UI. Measured over 1,000 names on a 1m
    schedule: every second is used, 17 sites per second on average and 25 to 30 at most, where
    all 1,000 started in the same second before (``tests/unit/test_offset.py``). The 8-byte
    digest keeps the modulo's bias below 1e-11 for any period.
    """
    seconds = schedule_period(schedule) // _SECOND  # intervals are at least 10s
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return timedelta(seconds=int.from_bytes(digest, "big") % seconds)


def offset_problem(values: Mapping[str, Any]) -> str | None:
    """The message when a complete set of site values has an offset its schedule cannot hold.

    An offset must be shorter than the interval, or than one minute on a cron schedule: a longer
    one would only be a shorter one plus whole ticks (interval), or could push a run past the
    cron's next tick (write the minutes in the cron expression instead).
    """
    offset, schedule = values["offset"], values["schedule"]
    if offset is None or offset < schedule_period(schedule):
        return None
    if isinstance(schedule, timedelta):
        return (
            f"{format_duration(offset)} is not shorter than the schedule's interval"
            f" {format_duration(schedule)}"
        )
    return (
        f"{format_duration(offset)} is not shorter than 1m, the finest step of a cron schedule"
        " (put whole minutes in the cron expression)"
    )
