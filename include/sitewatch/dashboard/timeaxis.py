"""The time axis of a site's response-time chart: where it starts, where its ticks go and how
its times read.

A chart of the last 24 hours of a site checked for eight minutes would squeeze its checks into a
sliver at the right edge, under two labels that say the same time a day apart. So the axis
starts at the site's first check when that is later than the window's start, and a label
carries its date wherever the axis crosses a UTC day. Pure functions of times: nothing here
reads the database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MIN_SPAN = timedelta(minutes=5)
"""The shortest axis: a site checked once a moment ago still gets a readable chart."""
# Tick spacings, finest first: the first that leaves at most ``_MOST_TICKS`` ticks is used.
_STEPS = tuple(timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720))
_MOST_TICKS = 7
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def axis_start(first: datetime | None, now: datetime, span: timedelta) -> datetime:
    """Where an axis ending at ``now`` starts: ``now - span``, or ``first`` (the site's first
    check; None: it has checks from before the window) when that is later, at least
    ``MIN_SPAN`` before ``now``."""
    start = now - span
    if first is None or first <= start:
        return start
    return min(first, now - MIN_SPAN)


def ticks(start: datetime, end: datetime) -> list[datetime]:
    """The round times strictly between ``start`` and ``end`` (whole minutes, hours, UTC
    midnights), at most seven, evenly spaced."""
    length = end - start
    step = next((s for s in _STEPS if length / s <= _MOST_TICKS), _STEPS[-1])
    first = _EPOCH + ((start - _EPOCH) // step + 1) * step
    found = []
    at = first
    while at < end:
        found.append(at)
        at += step
    return found


def crosses_day(start: datetime, end: datetime) -> bool:
    """Whether ``start`` and ``end`` fall on different UTC days."""
    return start.astimezone(UTC).date() != end.astimezone(UTC).date()


def end_labels(start: datetime, end: datetime) -> tuple[str, str]:
    """The labels of an axis's two ends: the start with its date ("2026-12-06 10:25"), the end
    with its date too when the axis crosses a UTC day, and "UTC" ("10:33 UTC")."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    right = f"{end:%Y-%m-%d %H:%M} UTC" if crosses_day(start, end) else f"{end:%H:%M} UTC"
    return f"{start:%Y-%m-%d %H:%M}", right


def tick_label(at: datetime) -> str:
    """A tick's label: the date at a UTC midnight ("2026-12-06"), else the time ("15:00")."""
    at = at.astimezone(UTC)
    return f"{at:%Y-%m-%d}" if at.hour == at.minute == 0 else f"{at:%H:%M}"
