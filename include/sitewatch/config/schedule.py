"""Durations ("30s", "1h30m", "500ms") and 5-field cron expressions, parsed strictly.

Both raise ``ValueError`` with a message meant for the person editing the sites file. The cron
checker accepts the classic Vixie subset (numbers, names, ``*``, ranges, steps, lists) that every
scheduler agrees on, so an expression that passes here also means the same thing to Airflow.
"""

from __future__ import annotations

import functools
import itertools
import re
from datetime import timedelta
from typing import NamedTuple

DURATION_HINT = "a duration like '30s', '5m', '1h30m' or '500ms'"
MAX_DURATION = timedelta(days=365)
MAX_DURATION_TEXT = 40

# Units largest first, each at most once: "1h30m" reads one way only, "30m1h" is rejected.
# ASCII digits only: int() reads '٣' as 3, but nobody reading the file would.
_DURATION = re.compile(
    r"(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?",
    re.ASCII,
)
_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``"10s"``, ``"5m"``, ``"1h30m"`` or ``"500ms"``.

    Units are d, h, m, s and ms, integers only, largest first. Raises ValueError when the text is
    not a duration, is longer than ``MAX_DURATION_TEXT`` or exceeds a year (which also keeps
    ``timedelta`` far from overflowing).
    """
    if len(text) > MAX_DURATION_TEXT:  # "1d23h59m59s999ms" is 16; Python reads 4300 digits at most
        raise ValueError(
            f"too long for a duration: {len(text)} characters (at most {MAX_DURATION_TEXT})"
        )
    if text.isascii() and text.isdigit():
        raise ValueError(f"invalid duration {text!r}: missing unit, e.g. '{text}s'")
    match = _DURATION.fullmatch(text)
    if not text.isascii() and any(char.isdigit() for char in text):
        raise ValueError(f"invalid duration {text!r}: write its digits as 0-9")
    if not text or match is None:
        raise ValueError(f"invalid duration {text!r}: expected {DURATION_HINT}")
    total_ms = sum(int(v) * _UNIT_MS[unit] for unit, v in match.groupdict().items() if v)
    if total_ms > MAX_DURATION // timedelta(milliseconds=1):
        raise ValueError(f"duration {text!r} is longer than 365d")
    return timedelta(milliseconds=total_ms)


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the duration syntax ``parse_duration`` reads ("1h30m", "500ms")."""
    ms = value // timedelta(milliseconds=1)
    parts = []
    for unit, size in _UNIT_MS.items():
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names mapped to numbers)
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTHS)}),
    ("day-of-week", 0, 7, {n: i for i, n in enumerate(_DAYS)}),  # 0 and 7 are both Sunday
)
# A leap year's: 29 February comes every four years (within eight across 2100), so it fires.
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ITEM = re.compile(r"(?P<range>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?")


def check_cron(text: str) -> str:
    """Validate a 5-field cron expression and return it with whitespace normalised.

    Raises ValueError naming the first bad field, e.g.
    ``invalid cron expression '61 * * * *': minute: 61 is out of range 0-59``, or saying that the
    expression never fires (``0 0 30 2 *``), which Airflow's timetable cannot schedule.
    """
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {text!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    values = []
    for value, spec in zip(fields, _FIELDS, strict=True):
        try:
            values.append(_cron_values(value.lower(), *spec[1:]))
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {text!r}: {spec[0]}: {exc}") from None
    if (day := _missing_day(fields[4], *values[2:4])) is not None:
        raise ValueError(
            f"invalid cron expression {text!r}: never fires: none of its months has a day {day}"
        )
    return " ".join(fields)


class CronFields(NamedTuple):
    """What a valid cron expression selects, field by field; weekdays count Sunday as 0.

    ``either_day``: both day fields are restricted (neither has a ``*`` item), so a day that
    matches either of them fires, as in croniter, which Airflow schedules with; otherwise a day
    must match both (an unrestricted field matches every day).
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    either_day: bool


@functools.lru_cache(maxsize=1024)
def cron_fields(text: str) -> CronFields:
    """The values ``text`` (a cron expression ``check_cron`` accepts) fires on. Raises ValueError
    for one it refuses. Cached: callers step through fire times at every check."""
    fields = check_cron(text).lower().split()
    values = [
        frozenset(_cron_values(v, *spec[1:])) for v, spec in zip(fields, _FIELDS, strict=True)
    ]
    weekdays = frozenset(day % 7 for day in values[4])  # 7 is Sunday too
    either = all("*" not in fields[i].split(",") for i in (2, 4))
    return CronFields(*values[:4], weekdays, either)


def shortest_gap(schedule: timedelta | str) -> timedelta:
    """The shortest time between two runs of ``schedule`` (an interval, or a cron expression
    ``check_cron`` accepts): the interval itself, or the two closest times of day a cron fires
    at. Days and months a cron leaves out only ever lengthen a gap, so this is exact whenever
    some day has two runs, and a day for a cron that fires once a day."""
    if isinstance(schedule, timedelta):
        return schedule
    fields = cron_fields(schedule)
    times = sorted(hour * 60 + minute for hour in fields.hours for minute in fields.minutes)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return timedelta(minutes=min([*gaps, times[0] + 24 * 60 - times[-1]]))


def _missing_day(weekday_field: str, days: set[int], months: set[int]) -> int | None:
    """The first of ``days`` when none of them occurs in any of ``months``, else None.

    Airflow schedules with croniter, which (like Vixie cron) fires on a day that matches
    day-of-month OR day-of-week unless day-of-week is ``*``; only then can the expression name
    nothing but impossible dates (30 February, 31 April). Minutes and hours always select some.
    Exact, so no search over a horizon: a leap day (``0 0 29 2 *``) passes.
    """
    if weekday_field != "*" or min(days) <= max(_DAYS_IN_MONTH[m - 1] for m in months):
        return None
    return min(days)


def _cron_values(value: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    """The numbers one cron field selects; raises ValueError naming what cannot be read.

    Only the day fields' numbers are used (to tell whether the expression ever fires). As in
    croniter, which Airflow schedules with, a number with a step (``5/15``) runs to the field's end.
    """
    selected: set[int] = set()
    for item in value.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"cannot read {item!r}")
        first, last, step = low, high, match["step"]
        if match["range"] != "*":
            bounds = [_cron_number(part, low, high, names) for part in match["range"].split("-")]
            if bounds[0] > bounds[-1]:
                raise ValueError(f"range {match['range']!r} runs backwards")
            first = bounds[0]
            last = bounds[-1] if len(bounds) > 1 or step is None else high
        if step is not None and not 1 <= int(step) <= high - low + 1:
            raise ValueError(f"step {step} is out of range 1-{high - low + 1}")
        selected.update(range(first, last + 1, int(step or 1)))
    return selected


def _cron_number(part: str, low: int, high: int, names: dict[str, int]) -> int:
    if part in names:
        return names[part]
    if not part.isdigit():
        raise ValueError(f"{part!r} is not a number" + (" or a name" if names else ""))
    if not low <= int(part) <= high:
        raise ValueError(f"{part} is out of range {low}-{high}")
    return int(part)
