"""Ad-hoc maintenance windows ("mutes"): the SQL of table ``site_mutes`` (migration 8).

A mute says that a site's checks from ``starts_at`` (inclusive) to ``ends_at`` (exclusive) fall in
maintenance: they still run and are stored, marked ``maintenance``, and their alerts are held.
The ``sitewatch_mute`` DAG adds mutes and ``sitewatch_unmute`` ends them early; the drain asks
which of a batch's checks fell in one (``mutes_overlapping`` once per batch, then ``covered`` per
check, in memory). A mute is never deleted, only ended (``end_mutes`` moves ``ends_at``), so the
record of who muted what, when and why stays.

Every function takes a psycopg 3 connection, runs in its own transaction
(``schema.transaction``) and refuses naive datetimes (PostgreSQL would read them in the
session's time zone). Reads use the index on (site, ends_at): mutes that ended before the time
asked about are never read, however long the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

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
    _aware(starts_at, ends_at)
    if ends_at <= starts_at:
        raise ValueError(f"a mute must end after it starts: {starts_at} to {ends_at}")
    if not reason or not reason.strip():
        raise ValueError("a mute needs a reason")
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
    ``scheduled_at``, then ``covered(result.get(site, ()), scheduled_at)`` for each check.
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


def covered(mutes: Iterable[Mute], at: datetime) -> Mute | None:
    """The mute among ``mutes`` that covers ``at``, or None. Of several, the one that ends last
    (what a person wants to see: until when the site is muted). Pure: no database."""
    covering = [m for m in mutes if m.covers(at)]
    return max(covering, key=lambda m: (m.ends_at, m.id)) if covering else None


def _aware(*times: datetime) -> None:
    """Refuse naive datetimes: PostgreSQL would read them in the session's time zone."""
    if any(at.tzinfo is None for at in times):
        raise ValueError("mute times must be timezone-aware (UTC), got a naive datetime")
