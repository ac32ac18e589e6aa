"""Per-site alert state in PostgreSQL (table ``site_alert_state``, migration 2): the SQL only.

``apply`` runs ``sitewatch.alerting.rules.decide`` on the stored row under a row lock and stores the
result in the same transaction, so of two workers judging the same site at once the second waits
and sees the first one's state: a state change is notified once. Takes a psycopg 3 connection, like
``sitewatch.storage.checks``, and imports nothing from Airflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg

from sitewatch.alerting.rules import AlertState, Event, Kind, decide
from sitewatch.errors import StorageError
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
# For any other state (up, or never judged) and no pipeline problem open, ``decide`` turns an UP
# verdict into no message; only its run bookkeeping would change.
_AWAITING_UP = (
    "SELECT site FROM site_alert_state "
    "WHERE site = ANY(%s) AND (state = 'down' OR pipeline_since IS NOT NULL)"
)


def apply(
    conn, site: str, event: Event, remind_every: timedelta | None = None
) -> tuple[AlertState, AlertState, Kind | None]:
    """Apply ``event`` to ``site``'s stored state in one transaction and commit.

    Returns (previous state, new state, message kind or None). The new state, including
    ``last_notified_at`` for the message about to be sent, is committed before the caller sends:
    see ``release`` for a message that could not be sent. Raises SchemaError when the results
    database predates the table (the drain's ``create_tables`` makes it; alerting never migrates),
    StorageError when PostgreSQL fails; nothing is stored then.
    """
    try:
        return _apply(conn, site, event, remind_every)
    except StorageError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
            raise
        require_current(conn)  # raises SchemaError naming what creates the table
        raise


def _apply(conn, site, event, remind_every):
    with transaction(conn, f"could not update the alert state of {site}") as cur:
        cur.execute(_ENSURE, (site,))
        cur.execute(_LOCK, (site,))
        previous = AlertState(*cur.fetchone())
        new, kind = decide(previous, event, remind_every)
        if new != previous:
            cur.execute(_STORE, (*dataclasses.astuple(new), site))
    return previous, new, kind


def release(conn, site: str, claimed_at: datetime) -> bool:
    """Forget that the DOWN message claimed at ``claimed_at`` went out, so that the site's next
    down run sends it again. Returns whether the claim was still in force. Raises StorageError."""
    with transaction(conn, f"could not release the alert claim of {site}") as cur:
        cur.execute(_RELEASE, (site, claimed_at))
        return cur.rowcount == 1


def awaiting_up(conn, sites: Sequence[str]) -> list[str]:
    """The few of ``sites`` for which an UP verdict means something: down, or with a pipeline
    problem open. One query whatever the number of sites, so that judging every up check costs
    one statement per drained batch, not one per site (sitewatch.airflow.recoveries). Read-only;
    raises StorageError."""
    with transaction(conn, f"could not read the alert state of {len(sites)} sites") as cur:
        cur.execute(_AWAITING_UP, (list(sites),))
        return [site for (site,) in cur.fetchall()]


def load(conn, site: str) -> AlertState | None:
    """The stored state of ``site`` (None: no row). Raises StorageError."""
    with transaction(conn, f"could not read the alert state of {site}") as cur:
        cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM site_alert_state WHERE site = %s", (site,))
        row = cur.fetchone()
    return None if row is None else AlertState(*row)
