"""Per-site alert state in PostgreSQL (table ``site_alert_state``, migration 2): the SQL only.

``apply`` runs ``sitewatch.alerting.rules.decide`` on the stored row under a row lock and stores the
result in the same transaction, so of two workers judging the same site at once the second waits
and sees the first one's state: a state change is notified once. Takes a psycopg 3 connection, like
``sitewatch.storage.checks``, and imports nothing from Airflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg

from sitewatch.alerting.rules import AlertState, Event, Kind, Verdict, decide
from sitewatch.config.maintenance import Window, maintenance_at
from sitewatch.config.objectives import Flapping
from sitewatch.errors import StorageError
from sitewatch.storage.mutes import mutes_covering
from sitewatch.storage.schema import require_current, transaction

_COLUMNS = tuple(f.name for f in dataclasses.fields(AlertState))
# Creates the row of a new site (all NULL: "never judged"); a concurrent creator waits on the
# primary key and then does nothing, so the SELECT ... FOR UPDATE below always finds one row.
_ENSURE = "INSERT INTO site_alert_state (site) VALUES (%s) ON CONFLICT (site) DO NOTHING"
_LOCK = f"SELECT {', '.join(_COLUMNS)} FROM site_alert_state WHERE site = %s FOR UPDATE"
_STORE = (
    f"UPDATE site_alert_state SET {', '.join(f'{c} = %s' for c in _COLUMNS)}, updated_at = now() "
    "WHERE site = %s"
)
# Only when the claim is still ours: a later run may have moved the state on meanwhile.
_RELEASE = (
    "UPDATE site_alert_state SET last_notified_at = NULL "
    "WHERE site = %s AND state = 'down' AND last_notified_at = %s"
)
# For any other state (up and neither degraded nor flapping, or never judged) and no pipeline
# problem open, ``decide`` turns an UP verdict that is not degraded into no message; only its run
# bookkeeping would change.
_AWAITING_UP = (
    "SELECT site FROM site_alert_state WHERE site = ANY(%s) AND (state = 'down' "
    "OR pipeline_since IS NOT NULL OR degraded OR flapping_since IS NOT NULL)"
)
_DOWN = "SELECT site FROM site_alert_state WHERE site = ANY(%s) AND state = 'down' AND held IS NULL"
# A parent is down when its latest verdict across locations says so, or, for a site checked from
# one place, its latest final check. Both are one backward index probe.
_PARENTS_DOWN = """
    SELECT p.site FROM unnest(%s::text[]) AS p(site)
    WHERE coalesce(
        (SELECT v.verdict = 'down' FROM site_verdicts v
         WHERE v.site = p.site ORDER BY v.scheduled_at DESC LIMIT 1),
        (SELECT NOT c.up FROM site_checks c
         WHERE c.site = p.site AND c.final ORDER BY c.scheduled_at DESC LIMIT 1),
        false)
    ORDER BY p.site
"""
_LOG = (
    "INSERT INTO site_alert_log (site, at, kind, held, error, detail, run_id) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
# A message that is no verdict's (a status incident's update) is logged once per (key, at, id):
# one transaction at a time claims a key, so of two that try, the second finds the first's row.
_CLAIM_LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_CLAIM_LOCK_CLASS = 0x6E6F7465  # "note"
_CLAIMED = "SELECT 1 FROM site_alert_log WHERE site = %s AND at = %s AND kind = %s AND run_id = %s"


def apply(
    conn,
    site: str,
    event: Event,
    remind_every: timedelta | None = None,
    *,
    flapping: Flapping | None = None,
    windows: Sequence[Window] = (),
    parents: Sequence[str] = (),
) -> tuple[AlertState, AlertState, Kind | None]:
    """Apply ``event`` to ``site``'s stored state in one transaction and commit.

    flapping: the site's flapping rule (None: off). windows: its maintenance windows from the
    sites file; an ad-hoc one (``site_mutes``) is looked up here. parents: the sites it depends
    on (``depends_on``). A verdict of a run scheduled in a window, or judged while a parent is
    down, is held (``Event.hold``, see ``decide``). Every message decided, sent or held, is
    recorded in ``site_alert_log``.

    Returns (previous state, new state, message kind or None). The new state, including
    ``last_notified_at`` for the message about to be sent, is committed before the caller sends:
    see ``release`` for a message that could not be sent. Raises SchemaError when the results
    database predates the table (the drain's ``create_tables`` makes it; alerting never migrates),
    StorageError when PostgreSQL fails; nothing is stored then.
    """
    try:
        return _apply(conn, site, event, remind_every, flapping, windows, parents)
    except StorageError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
            raise
        require_current(conn)  # raises SchemaError naming what creates the table
        raise


def _apply(conn, site, event, remind_every, flapping, windows, parents):
    with transaction(conn, f"could not update the alert state of {site}") as cur:
        cur.execute(_ENSURE, (site,))
        cur.execute(_LOCK, (site,))
        previous = _state(cur.fetchone())
        if event.verdict is not Verdict.PIPELINE:
            hold = _hold_reason(cur, site, event.run_after or event.at, windows, parents)
            event = dataclasses.replace(event, hold=hold)
        new, kind = decide(previous, event, remind_every, flapping)
        if new != previous:
            cur.execute(_STORE, (*_values(new), site))
        held = None
        if kind is None and event.hold is not None:
            unheld = dataclasses.replace(event, hold=None)
            held = decide(previous, unheld, remind_every, flapping)[1]
        if kind is not None or held is not None:
            logged = (kind or held).value, None if kind else event.hold
            cur.execute(_LOG, (site, event.at, *logged, event.error, event.detail, event.run_id))
    return previous, new, kind


def _state(row: tuple) -> AlertState:
    values = dict(zip(_COLUMNS, row, strict=True))
    return AlertState(**{**values, "changes": tuple(values["changes"] or ())})


def _values(state: AlertState) -> list:
    # a timestamptz[] is sent as a list (psycopg adapts a tuple as a composite, not an array)
    return [list(v) if isinstance(v, tuple) else v for v in dataclasses.astuple(state)]


def _hold_reason(cur, site: str, at: datetime, windows, parents) -> str | None:
    """Why messages about ``site`` are held for a run at ``at``; None when they are not.

    Maintenance first (``maintenance_at`` of its sites-file ``windows`` and its mutes in force:
    the one that ends last, as the Sites page's badge says), then a parent down."""
    maintenance = maintenance_at(windows, mutes_covering(cur, site, at), at)
    if maintenance is not None:
        return _maintenance(maintenance.reason, maintenance.until)
    if parents:
        cur.execute(_PARENTS_DOWN, (list(parents),))
        down = [name for (name,) in cur.fetchall()]
        if down:
            return f"{'parent' if len(down) == 1 else 'parents'} {', '.join(down)} down"
    return None


def _maintenance(reason: str | None, ends: datetime) -> str:
    until = ends.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"maintenance until {until}" + (f": {reason}" if reason else "")


def hold_reason(
    conn, site: str, at: datetime, windows: Sequence[Window] = (), parents: Sequence[str] = ()
) -> str | None:
    """Why messages about ``site`` are held for a run at ``at`` (maintenance from ``windows``
    or a mute, a parent in ``parents`` down), as ``apply`` holds them; None when they are not.
    Read-only; raises StorageError."""
    with transaction(conn, f"could not read the holds of {site}") as cur:
        return _hold_reason(cur, site, at, windows, parents)


def claim(conn, key: str, at: datetime, kind: Kind, message_id: str) -> bool:
    """Record in ``site_alert_log`` that message ``message_id`` of ``kind`` about ``key`` at
    ``at`` is being sent, before it is: True the first time, False when it was recorded before
    (a retry, a second judge), so it is sent once. As with ``apply``'s state, a crash after the
    claim loses the message rather than sending it twice. Raises StorageError."""
    with transaction(conn, f"could not record the {kind.value} of {key}") as cur:
        cur.execute(_CLAIM_LOCK, (_CLAIM_LOCK_CLASS, key))
        cur.execute(_CLAIMED, (key, at, kind.value, message_id))
        if cur.fetchone() is not None:
            return False
        cur.execute(_LOG, (key, at, kind.value, None, None, None, message_id))
    return True


def release(conn, site: str, claimed_at: datetime) -> bool:
    """Forget that the DOWN message claimed at ``claimed_at`` went out, so that the site's next
    down run sends it again. Returns whether the claim was still in force. Raises StorageError."""
    with transaction(conn, f"could not release the alert claim of {site}") as cur:
        cur.execute(_RELEASE, (site, claimed_at))
        return cur.rowcount == 1


def awaiting_up(conn, sites: Sequence[str]) -> list[str]:
    """The few of ``sites`` for which an UP verdict means something: down, or with a pipeline
    problem open. One query whatever the number of sites, so that judging every up check costs
    one statement per drained batch, not one per site (sitewatch.judge.recoveries). Read-only;
    raises StorageError."""
    with transaction(conn, f"could not read the alert state of {len(sites)} sites") as cur:
        cur.execute(_AWAITING_UP, (list(sites),))
        return [site for (site,) in cur.fetchall()]


def down(conn, sites: Sequence[str]) -> list[str]:
    """The few of ``sites`` whose outage is public: down, and its DOWN not held (a held DOWN
    opened no incident, so it keeps none open; ``sitewatch.judge.incidents``). Read-only;
    raises StorageError."""
    with transaction(conn, f"could not read the alert state of {len(sites)} sites") as cur:
        cur.execute(_DOWN, (list(sites),))
        return [site for (site,) in cur.fetchall()]


def load(conn, site: str) -> AlertState | None:
    """The stored state of ``site`` (None: no row). Raises StorageError."""
    with transaction(conn, f"could not read the alert state of {site}") as cur:
        cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM site_alert_state WHERE site = %s", (site,))
        row = cur.fetchone()
    return None if row is None else _state(row)
