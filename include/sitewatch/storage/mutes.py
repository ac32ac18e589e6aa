"""Ad-hoc maintenance windows ("mutes"): the SQL of table ``site_mutes`` (migration 8).

A mute says that a site's checks from ``starts_at`` (inclusive) to ``ends_at`` (exclusive) fall in
maintenance: they still run and are stored, marked ``maintenance``, and their alerts are held.
The ``sitewatch_mute`` DAG adds mutes (``add_capped_mutes``, which keeps a site from staying
muted past a cap by re-muting) and ``sitewatch_unmute`` ends them early; the drain asks
which of a batch's checks fell in one (``mutes_overlapping`` once per batch, then
``config.maintenance.maintenance_at`` per check, in memory), and so do the judge
(``mutes_covering``, inside its own transaction) and the Sites page (``mutes_in_force``): which
mute, if any, puts a site in maintenance is ``maintenance_at``'s alone. A mute is never deleted,
only ended (``end_mutes`` moves ``ends_at``), so the record of who muted what, when and why stays.

Every function takes a psycopg 3 connection, runs in its own transaction
(``schema.transaction``) and refuses naive datetimes (PostgreSQL would read them in the
session's time zone). Reads use the index on (site, ends_at): mutes that ended before the time
asked about are never read, however long the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sitewatch.storage.schema import transaction


@dataclass(frozen=True, slots=True)
class Mute:
    """One row of ``site_mutes``: ``site``'s checks with ``starts_at <= scheduled_at < ends_at``
    are in maintenance. ``created_by`` is the Airflow user who asked for it (None if unknown)."""

    id: int
    site: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str | None

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` lies in the mute: ``starts_at <= at < ends_at``."""
        return self.starts_at <= at < self.ends_at


_COLUMNS = "id, site, starts_at, ends_at, reason, created_by"

_ADD = """
    INSERT INTO site_mutes (site, starts_at, ends_at, reason, created_by)
    SELECT s.site, %(starts_at)s, %(ends_at)s, %(reason)s, %(created_by)s
    FROM unnest(%(sites)s::text[]) AS s(site)
    RETURNING site, id
"""

# "Still in force at": started strictly before `at`, so that ending it at `at` leaves a non-empty
# window (the table's CHECK wants ends_at > starts_at).
_END = """
    UPDATE site_mutes SET ends_at = %(at)s
    WHERE starts_at < %(at)s AND ends_at > %(at)s
      AND (%(sites)s::text[] IS NULL OR site = ANY(%(sites)s::text[]))
"""

# Mutes that cover some instant of [since, until]. The (site, ends_at) index gives each site's
# mutes ending after `since`; starts_at filters those rows.
_OVERLAPPING = f"""
    SELECT {_COLUMNS} FROM site_mutes
    WHERE (%(sites)s::text[] IS NULL OR site = ANY(%(sites)s::text[]))
      AND ends_at > %(since)s AND starts_at <= %(until)s
    ORDER BY site, starts_at, id
"""


def add_mutes(
    conn,
    sites: Iterable[str],
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    created_by: str | None,
) -> list[int]:
    """Store one mute per site, all from ``starts_at`` to ``ends_at``, in one transaction; return
    their ids in the order of ``sites`` (a site named twice gets one mute).

    Names are stored as given: the caller checks them against the sites file (storage cannot
    read it). Raises ValueError for a naive bound, ``ends_at <= starts_at`` or a blank reason
    (refused before touching the database), StorageError when PostgreSQL fails (nothing stored).
    """
    wanted = list(dict.fromkeys(sites))
    _check_window(starts_at, ends_at, reason)
    if not wanted:
        return []
    params = {
        "sites": wanted,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "reason": reason,
        "created_by": created_by,
    }
    with transaction(conn, f"could not mute {', '.join(wanted)}") as cur:
        cur.execute(_ADD, params)
        ids = dict(cur.fetchall())
    return [ids[site] for site in wanted]


# One transaction at a time may add capped mutes for a site, so two runs muting it at once cannot
# both read the stretch before either stored its mute. The lock's first key names this use.
_LOCK = """
    SELECT pg_advisory_xact_lock(%(lock)s, hashtext(s.site))
    FROM unnest(%(sites)s::text[]) AS s(site) ORDER BY s.site
"""
_LOCK_CLASS = 0x6D757465  # "mute"

# The mutes that may chain into a stretch through `at`: started by then and ended no earlier than
# `oldest` (a stretch reaching further back is over the cap whatever else it holds).
_RECENT = """
    SELECT site, starts_at, ends_at FROM site_mutes
    WHERE site = ANY(%(sites)s::text[]) AND ends_at >= %(oldest)s AND starts_at <= %(at)s
    ORDER BY site, ends_at DESC
"""


def add_capped_mutes(
    conn,
    sites: Iterable[str],
    at: datetime,
    ends_at: datetime,
    reason: str,
    created_by: str | None,
    longest: timedelta,
) -> dict[str, Mute]:
    """Mute each of ``sites`` from ``at`` to ``ends_at``, but keep every site's stretch of muted
    time within ``longest``; return the stored mutes by site, in the order of ``sites``.

    A site's stretch is its mute in force at ``at`` and every earlier one that overlaps or
    touches it, chained back. A site already muted since ``since`` gets a mute ending at
    ``min(ends_at, since + longest)``: muting it again never keeps it muted longer than
    ``longest`` at a stretch (ending it first, with ``end_mutes``, starts a new stretch and lets
    a site that is still down alert). Mutes that start after ``at`` are not counted (only this
    module's callers make them). Raises CapReached naming every site with no time left (nothing
    stored), ValueError as ``add_mutes``, StorageError when PostgreSQL fails.
    """
    wanted = list(dict.fromkeys(sites))
    _check_window(at, ends_at, reason)
    if not wanted:
        return {}
    params = {"sites": wanted, "at": at, "oldest": at - longest, "lock": _LOCK_CLASS}
    with transaction(conn, f"could not mute {', '.join(wanted)}") as cur:
        cur.execute(_LOCK, params)
        cur.execute(_RECENT, params)
        recent: dict[str, list[tuple[datetime, datetime]]] = {}
        for site, starts, ends in cur.fetchall():
            recent.setdefault(site, []).append((starts, ends))
        since = {site: stretch_start(recent.get(site, ()), at) for site in wanted}
        ends = {site: min(ends_at, since[site] + longest) for site in wanted}
        full = {site: since[site] for site in wanted if ends[site] <= at}
        if full:
            raise CapReached(full, longest)
        stored: dict[str, Mute] = {}
        for site in wanted:
            row = (site, at, ends[site], reason, created_by)
            cur.execute(_ADD_ONE, row)
            stored[site] = Mute(cur.fetchone()[0], *row)
    return stored


_ADD_ONE = """
    INSERT INTO site_mutes (site, starts_at, ends_at, reason, created_by)
    VALUES (%s, %s, %s, %s, %s)
    RETURNING id
"""


class CapReached(ValueError):
    """Sites already muted for the longest stretch allowed: ``since`` maps each to the start of
    its stretch. Nothing was stored."""

    def __init__(self, since: dict[str, datetime], longest: timedelta):
        self.since = since
        named = ", ".join(
            f"{site} (muted since {_shown(start)}, so at most until {_shown(start + longest)})"
            for site, start in since.items()
        )
        super().__init__(
            f"already muted for the longest stretch allowed: {named}; end the mute first "
            "(sitewatch_unmute) or plan a longer pause in the sites file (maintenance)"
        )


def stretch_start(windows: Iterable[tuple[datetime, datetime]], at: datetime) -> datetime:
    """The start of the stretch of muted time through ``at``: the earliest start among the
    ``(starts_at, ends_at)`` windows in force at ``at`` and those chained back from them by
    overlapping or touching ends. ``at`` itself when none is in force. Pure: no database."""
    start = at
    for starts, ends in sorted(windows, key=lambda w: w[1], reverse=True):
        # ends_at is exclusive: a mute that ended at ``at`` is over (ended, then muted again,
        # starts a new stretch), while one that ended where the stretch began is part of it
        if ends > start if start == at else ends >= start:
            start = min(start, starts)
    return start


def _shown(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def end_mutes(conn, sites: Sequence[str] | None, at: datetime) -> int:
    """End every mute of ``sites`` (None: of every site) in force at ``at`` by setting its
    ``ends_at`` to ``at``; return how many were ended. The rows stay, as the record.

    A mute that starts at ``at`` or later is left alone: it is not in force yet, and ending it at
    ``at`` would leave it empty. Raises ValueError for a naive ``at``, StorageError when
    PostgreSQL fails.
    """
    _aware(at)
    params = {"sites": None if sites is None else list(sites), "at": at}
    if params["sites"] == []:
        return 0
    with transaction(conn, "could not end the mutes") as cur:
        cur.execute(_END, params)
        return cur.rowcount


def mutes_in_force(conn, sites: Sequence[str] | None, at: datetime) -> dict[str, list[Mute]]:
    """The mutes of ``sites`` (None: of every site) that cover ``at``: site -> its mutes, by
    start. Sites with none are left out.

    Raises ValueError for a naive ``at``, StorageError when PostgreSQL fails.
    """
    return mutes_overlapping(conn, sites, at, at)  # covering some instant of [at, at]


def mutes_overlapping(
    conn, sites: Sequence[str] | None, since: datetime, until: datetime
) -> dict[str, list[Mute]]:
    """The mutes of ``sites`` (None: of every site) that cover some instant from ``since`` to
    ``until`` (both inclusive): site -> its mutes, by start. Sites with none are left out.

    One query for all sites, meant for the drain: ask once with a batch's earliest and latest
    ``scheduled_at``, then ``maintenance_at((), result.get(site, ()), scheduled_at)`` for each
    check.
    Raises ValueError for a naive bound or ``until < since``, StorageError when PostgreSQL fails.
    """
    _aware(since, until)
    if until < since:
        raise ValueError(f"until ({until}) is before since ({since})")
    params = {"sites": None if sites is None else list(sites), "since": since, "until": until}
    if params["sites"] == []:
        return {}
    found: dict[str, list[Mute]] = {}
    with transaction(conn, "could not read the mutes") as cur:
        cur.execute(_OVERLAPPING, params)
        for row in cur:
            mute = Mute(*row)
            found.setdefault(mute.site, []).append(mute)
    return found


def mutes_covering(cur, site: str, at: datetime) -> list[Mute]:
    """The mutes of ``site`` that cover ``at``, by start, read with the caller's cursor ``cur``:
    inside its transaction, for the judge, which decides an alert under the lock of the site's
    alert state (``sitewatch.alerting.store``). Raises ValueError for a naive ``at``; a
    PostgreSQL error is the caller's transaction's to report."""
    _aware(at)
    cur.execute(_OVERLAPPING, {"sites": [site], "since": at, "until": at})
    return [Mute(*row) for row in cur.fetchall()]


def _check_window(starts_at: datetime, ends_at: datetime, reason: str) -> None:
    """Refuse, before touching the database, what the table would refuse or store wrongly."""
    _aware(starts_at, ends_at)
    if ends_at <= starts_at:
        raise ValueError(f"a mute must end after it starts: {starts_at} to {ends_at}")
    if not reason or not reason.strip():
        raise ValueError("a mute needs a reason")


def _aware(*times: datetime) -> None:
    """Refuse naive datetimes: PostgreSQL would read them in the session's time zone."""
    if any(at.tzinfo is None for at in times):
        raise ValueError("mute times must be timezone-aware (UTC), got a naive datetime")
