"""The ``maintenance`` site key: windows in which checks run but alerts are held (issue 17).

A window is recurring (``cron`` + ``duration``, in ``timezone``, default UTC) or one-off
(``start`` + ``end``). ``Window.covering(at)`` asks whether one covers an instant; how a cron's
wall-clock times become instants across DST changes is ``crontime``'s.

Whether a site is in maintenance, since and until when and why, is ``maintenance_at``'s alone:
of its windows and its ad-hoc mutes (``sitewatch_mute``, rows of ``storage.mutes``, handed in as
plain values since configuration reads no database), the one that ends last. The probe task
marks a check, the drain marks a muted one, the judge holds an alert and the Sites page shows
the badge by it, so an alert's "until" and the badge's are the same instant.
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sitewatch.config.crontime import latest_fire, next_fire, zone
from sitewatch.config.schedule import check_cron, format_duration
from sitewatch.config.values import (
    checked,
    describe,
    duration,
    entries,
    free_text,
    only_keys,
    text,
)
from sitewatch.config.yamltree import Invalid

RECURRING_KEYS = ("cron", "duration", "timezone", "reason")
ONE_OFF_KEYS = ("start", "end", "reason")
_ALL_KEYS = tuple(dict.fromkeys(RECURRING_KEYS + ONE_OFF_KEYS))
MAX_WINDOWS = 50
MIN_DURATION, MAX_DURATION = timedelta(minutes=1), timedelta(days=7)
MAX_ONE_OFF = timedelta(days=366)
MAX_REASON, MAX_CRON = 200, 1000
# One-off windows lie in this range: wide enough for any real plan, narrow enough that every
# instant of a window, and a day either side of it, stays representable (datetime ends at 9999).
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
DEFAULT_TIMEZONE = "UTC"
SITES_FILE = "sites file"
"""The ``source`` of maintenance from the sites file's windows (a mute's is ``mute by <user>``)."""
# Keys the zoneinfo search path may hold that name no zone of their own: the host's setting
# (which differs between the machine that validates and the one that checks) and tzdata files.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_ZONE_KEY = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,2}")


@dataclass(frozen=True, slots=True)
class Window:
    """One maintenance window. Recurring: ``cron`` (normalised 5-field, read in ``timezone``) and
    ``duration``; one-off: ``start`` and ``end`` (aware, UTC). ``reason`` is shown with it."""

    cron: str | None = None
    duration: timedelta | None = None
    timezone: str = DEFAULT_TIMEZONE
    start: datetime | None = None
    end: datetime | None = None
    reason: str | None = None

    def covering(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence (start, end), both aware UTC, with start <= at < end; None if none.

        ``at`` must be aware (ValueError). A recurring window's occurrence starts when its cron
        fires on the clocks of ``timezone`` (DST: ``sitewatch.config.crontime``) and lasts
        ``duration`` of elapsed time, so a 2h window across a clock change is still two hours.
        When occurrences overlap (a cron firing more often than ``duration``), the latest that
        started is the one returned: it ends last. A few microseconds: called at every check.
        """
        if self.cron is None:
            if at.tzinfo is None:
                raise ValueError(f"expected an aware datetime, got {at!r}")
            return (self.start, self.end) if self.start <= at < self.end else None
        start = latest_fire(self.cron, self.timezone, at, self.duration)
        return None if start is None else (start, start + self.duration)

    def next_start(self, at: datetime) -> datetime | None:
        """When the window next starts after ``at`` (aware; ValueError otherwise), aware UTC: a
        recurring one when its cron next fires on the clocks of ``timezone``, by the rules that
        ``covering`` reads its last start with (``crontime.next_fire``); a one-off one its
        ``start`` if that is still to come, else None."""
        if self.cron is None:
            if at.tzinfo is None:
                raise ValueError(f"expected an aware datetime, got {at!r}")
            return self.start if self.start > at else None
        return next_fire(self.cron, self.timezone, at)


def active_window(
    windows: Sequence[Window], at: datetime
) -> tuple[Window, datetime, datetime] | None:
    """The window of ``windows`` covering ``at`` with its occurrence (window, start, end), or None.

    When several cover it, the one ending last (the first listed among equals), as
    ``maintenance_at`` decides; that is the question to ask of a site.
    """
    found = None
    for window in windows:
        span = window.covering(at)
        if span is not None and (found is None or span[1] > found[2]):
            found = (window, *span)
    return found


class Mute(Protocol):
    """What ``maintenance_at`` reads of an ad-hoc mute: ``storage.mutes.Mute`` is one (the
    configuration layer may not import storage, so it is described here, not imported)."""

    @property
    def id(self) -> int: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def created_by(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class InMaintenance:
    """A site's maintenance at an instant: from ``since`` to ``until`` (aware UTC, the occurrence
    or the mute that decided it), its ``reason`` (None: the window gives none) and its
    ``source``: ``SITES_FILE``, or ``mute by <user>`` (``mute`` when the user is unknown)."""

    since: datetime
    until: datetime
    reason: str | None
    source: str


def maintenance_at(
    windows: Sequence[Window], mutes: Iterable[Mute], at: datetime
) -> InMaintenance | None:
    """Whether a site is in maintenance at ``at`` (aware; ValueError otherwise), and until when.

    windows: the site's sites-file windows (``Site.maintenance``). mutes: its ad-hoc mutes, any
    that may cover ``at`` (those that do not are ignored). None when none covers ``at``.

    The one precedence: of every window occurrence and every mute covering ``at``, the one that
    ends last, since a site's alerts stay held until every one is over; among equal ends a
    sites-file window before a mute, the first window listed, the mute stored last (highest id).
    """
    if at.tzinfo is None:
        raise ValueError(f"expected an aware datetime, got {at!r}")
    found = None
    window = active_window(windows, at)
    if window is not None:
        entry, start, end = window
        found = InMaintenance(start, end, entry.reason, SITES_FILE)
    covering = [m for m in mutes if m.starts_at <= at < m.ends_at]
    if covering:
        mute = max(covering, key=lambda m: (m.ends_at, m.id))
        if found is None or mute.ends_at > found.until:
            found = InMaintenance(mute.starts_at, mute.ends_at, mute.reason, muted_by(mute))
    return found


def muted_by(mute: Mute) -> str:
    """A mute's ``source``: ``mute by <user>``, or ``mute`` when the user is unknown."""
    return f"mute by {mute.created_by}" if mute.created_by else "mute"


def check_maintenance(value: Any) -> tuple[Window, ...]:
    """A list of windows (``null`` or ``[]``: none). Raises Invalid with ``item`` a path tuple
    like ``(0, "timezone")``."""
    return entries(value, _window, MAX_WINDOWS, "maintenance windows")


def _window(entry: Any) -> Window:
    if not isinstance(entry, dict):
        raise Invalid(
            "expected a mapping with 'cron' and 'duration' (recurring) or 'start' and 'end'"
            f" (one-off), got {describe(entry)}"
        )
    recurring = any(key in entry for key in RECURRING_KEYS[:3])
    one_off = any(key in entry for key in ONE_OFF_KEYS[:2])
    if recurring and one_off:
        raise Invalid(
            "a window has 'cron' and 'duration' (recurring) or 'start' and 'end'"
            " (one-off), not both"
        )
    keys = RECURRING_KEYS if recurring else ONE_OFF_KEYS if one_off else _ALL_KEYS
    only_keys(entry, keys)
    if not (recurring or one_off):
        raise Invalid(
            "a window needs 'cron' and 'duration' (recurring) or 'start' and 'end' (one-off)"
        )
    for key in keys[:2]:
        if key not in entry:
            kind = "a recurring window" if recurring else "a one-off window"
            raise Invalid(f"{kind} needs {key!r}")
    reason = checked(_reason, entry, "reason")
    if recurring:
        return Window(
            cron=checked(_cron, entry, "cron"),
            duration=checked(_duration, entry, "duration"),
            timezone=checked(check_timezone, entry, "timezone", DEFAULT_TIMEZONE),
            reason=reason,
        )
    start, end = checked(_instant, entry, "start"), checked(_instant, entry, "end")
    if end <= start:
        raise Invalid(f"end {entry['end']} is not after start {entry['start']}", item="end")
    if end - start > MAX_ONE_OFF:
        length = format_duration(end - start)
        limit = format_duration(MAX_ONE_OFF)
        raise Invalid(f"a one-off window lasts at most {limit}, this one {length}", item="end")
    return Window(start=start, end=end, reason=reason)


def _cron(value: Any) -> str:
    cron = text(value, MAX_CRON, "a 5-field cron expression like '0 2 * * 0'")
    try:
        return check_cron(cron)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _duration(value: Any) -> timedelta:
    return duration(value, MIN_DURATION, MAX_DURATION)


def _reason(value: Any) -> str | None:
    return None if value is None else free_text(value, MAX_REASON)


def _instant(value: Any) -> datetime:
    """An ISO 8601 date and time with a UTC offset or Z, as aware UTC."""
    example = "like 2026-12-24T22:00:00+01:00 or 2026-12-24T21:00:00Z"
    if not isinstance(value, str):
        raise Invalid(f"expected a date and time {example}, got {describe(value)}")
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        instant = None
    if instant is None or len(value) <= len("2026-12-24"):  # a date alone: when on that day?
        raise Invalid(f"expected a date and time {example}, got {describe(value)}")
    if instant.tzinfo is None:
        raise Invalid(f"{value!r} has no UTC offset: add one or Z, {example}")
    try:
        instant = instant.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-12:00 is past the last instant datetime holds
        instant = None
    if instant is None or not EARLIEST <= instant < LATEST:
        raise Invalid(
            f"{value!r} is out of range: a window lies between {EARLIEST:%Y-%m-%d} and"
            f" {LATEST:%Y-%m-%d} (UTC)"
        )
    return instant


def check_timezone(value: Any) -> str:
    """An IANA time zone name (``Europe/Berlin``, ``UTC``) this machine's zone data knows; raises
    Invalid with the closest known name. Trade-off: the workers must know it too (the ``tzdata``
    package gives every machine the same names)."""
    name = text(value, 64, "an IANA time zone name like 'Europe/Berlin'")
    if _ZONE_KEY.fullmatch(name) and name not in _NOT_ZONES:
        try:
            zone(name)
            return name
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass  # OSError: a directory (Europe) or an unreadable file
    close = difflib.get_close_matches(name, _zone_names(), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else " (an IANA name like 'Europe/Berlin')"
    raise Invalid(f"unknown time zone {name!r}{hint}")


@functools.cache
def _zone_names() -> tuple[str, ...]:
    # Listing them reads the whole zone directory (~40 ms): only done to word an error.
    return tuple(sorted(zoneinfo.available_timezones() - _NOT_ZONES))
