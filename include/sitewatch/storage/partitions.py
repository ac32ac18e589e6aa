"""The day partitions of ``site_checks`` (migration 4): which exist, and the ones a batch makes.

``site_checks`` is partitioned by the UTC day of ``scheduled_at``; a partition is named
``site_checks_pYYYYMMDD``, and the SQL function ``site_checks_create_partitions`` is the one
definition of a partition's name and bounds. The maintenance DAG makes them days ahead
(``sitewatch.storage.retention``); a drain batch makes a missing one itself, a bounded number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, datetime

MAX_NEW_PARTITIONS = 31
"""Day partitions one batch may create. A month covers any backlog Kafka keeps (7 days by
default) while maintenance is down; thousands in one transaction exhaust PostgreSQL's lock table
("out of shared memory") and slow every query of ``site_checks``."""

_PREFIX = "site_checks_p"


def partition_day(name: str) -> date | None:
    """The UTC day of a partition named ``site_checks_pYYYYMMDD``; None for any other name."""
    digits = name.removeprefix(_PREFIX)
    if digits == name or len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return datetime.strptime(digits, "%Y%m%d").date()
    except ValueError:
        return None


LIST_PARTITIONS = """
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'site_checks'::regclass ORDER BY c.relname
"""


def partition_days(cur) -> set[date]:
    """The UTC days that have a partition named by sitewatch, read with ``cur`` (in the caller's
    transaction, so a batch sees the partitions it made itself)."""
    cur.execute(LIST_PARTITIONS)
    return {day for (name,) in cur.fetchall() if (day := partition_day(name)) is not None}


_CAN_PARTITION = "SELECT to_regprocedure('site_checks_create_partitions(date[])') IS NOT NULL"
CREATE_PARTITIONS = "SELECT site_checks_create_partitions(%s::date[])"
"""Creates the partitions of the given days that do not exist (migration 4 defines it)."""


def make_missing(cur, days: list[date], refuse: Callable[[int, str], None] | None) -> list[int]:
    """Create the missing partitions of ``days`` (each row's UTC day, in row order), at most
    ``MAX_NEW_PARTITIONS`` (the days with the most rows, then the latest, first); return the
    positions of the rows to store.

    With ``refuse``, the rows of a missing day past the cap are refused with a reason that says
    so, and left out; without it they stay, for PostgreSQL to refuse. On a schema older than
    migration 4 there is nothing to create.
    """
    positions = list(range(len(days)))
    cur.execute(_CAN_PARTITION)
    if not cur.fetchone()[0]:
        return positions
    counts = Counter(days)
    existing = partition_days(cur)
    missing = sorted((d for d in counts if d not in existing), key=lambda d: (counts[d], d))
    made, skipped = missing[-MAX_NEW_PARTITIONS:], set(missing[:-MAX_NEW_PARTITIONS])
    if made:
        cur.execute(CREATE_PARTITIONS, (sorted(made),))
    if not skipped or refuse is None:
        return positions
    for position in positions:
        if days[position] in skipped:
            refuse(position, _no_partition(days[position]))
    return [p for p in positions if days[p] not in skipped]


def _no_partition(day: date) -> str:
    return (
        f"scheduled_at: no partition for {day} and this batch already made "
        f"{MAX_NEW_PARTITIONS}, the most one batch may make (the maintenance DAG makes them ahead)"
    )
