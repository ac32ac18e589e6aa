"""The record's column declarations (``sitewatch.observation.COLUMNS``) against ``site_checks`` as
the released migrations build it, in a real PostgreSQL.

The migrations are frozen SQL, so they are the one other statement of the table: a migration that
adds, drops, retypes or relaxes a column without the record following (or the reverse) fails here
rather than in the drain's COPY.
"""

from __future__ import annotations

import pytest

from sitewatch.observation import COLUMNS

pytestmark = pytest.mark.services


def table_columns(conn, schema: str) -> dict[str, tuple[str, str, str | None]]:
    """``site_checks``' columns: name -> (data_type, is_nullable, column_default)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'site_checks'",
            (schema,),
        )
        found = {name: (kind, nullable, default) for name, kind, nullable, default in cur}
    conn.commit()
    return found


def test_the_declared_columns_are_the_tables_columns(pg_conn, migrated_schema):
    table = table_columns(pg_conn, migrated_schema)
    declared = {c.name: (c.kind.pg_type, "NO" if c.required else "YES") for c in COLUMNS}
    assert set(declared) - set(table) == set(), "declared, but not in site_checks"
    # A column the record does not carry must be one PostgreSQL fills itself (stored_at).
    unfilled = {name for name, (_, _, default) in table.items() if default is None}
    assert unfilled - set(declared) == set(), "in site_checks without a default, not declared"
    assert {name: table[name][:2] for name in declared} == declared
