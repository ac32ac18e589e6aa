"""Least-privilege roles on the real local PostgreSQL (scripts/dev.sh makes them; issue 14 item 9).

The tables are made the way deployments make them: migrated by the owner role, in a schema the
owner owns. Each role is then exercised in a session of its own (``-c role=...`` at connection
time, from the superuser DSN, so the test needs no role's password): what its component needs
works, everything else is refused by PostgreSQL. Airflow's metadata role is checked with its real
login, taken from ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.errors import InsufficientPrivilege
from sqlalchemy.engine import make_url

from sitewatch.alerting import store as alert_store
from sitewatch.alerting.rules import Event, Verdict
from sitewatch.names import ALERTING_ROLE, DRAIN_ROLE, READER_ROLE
from sitewatch.storage.checks import Rejected, store_batch
from sitewatch.storage.incidents import open_automatic, page_incidents, resolve_automatic
from sitewatch.storage.schema import migrate
from sitewatch.storage.verdicts import (
    latest_verdicts,
    location_outcomes,
    record_verdict,
    undecided_runs,
)
from tests.builders import observation

OWNER_ROLE = "sitewatch_owner"  # docker/postgres/sitewatch-roles.psql
AIRFLOW_ROLE = "sitewatch_airflow"


@pytest.fixture
def owned_schema(pg_dsn):
    """A schema owned by the owner role and migrated by it, as create_tables does."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {OWNER_ROLE}")
    with as_role(pg_dsn, OWNER_ROLE, schema) as owner:
        migrate(owner)
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


def as_role(dsn: str, role: str, schema: str, **kwargs) -> psycopg.Connection:
    """A session whose every statement runs with ``role``'s privileges, in ``schema``."""
    return psycopg.connect(dsn, options=f"-c role={role} -c search_path={schema}", **kwargs)


def refused(conn: psycopg.Connection, statement: str, params=()) -> bool:
    """True when PostgreSQL refuses ``statement`` for lack of privilege."""
    try:
        with conn.transaction():
            conn.execute(statement, params)
    except InsufficientPrivilege:
        return True
    return False


def test_the_roles_exist_and_none_is_a_superuser(pg_dsn):
    roles = [OWNER_ROLE, AIRFLOW_ROLE, DRAIN_ROLE, ALERTING_ROLE, READER_ROLE]
    with psycopg.connect(pg_dsn) as admin:
        found = dict(
            admin.execute(
                "SELECT rolname, rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls"
                " FROM pg_roles WHERE rolname = ANY(%s)",
                (roles,),
            ).fetchall()
        )
    assert found == dict.fromkeys(roles, False)


def test_the_connections_log_in_as_roles_not_as_the_superuser(pg_dsn):
    """Every connection the stack's environment defines uses a role without superuser rights."""
    logins = {
        name: json.loads(value)["login"]
        for name, value in os.environ.items()
        if name.startswith("AIRFLOW_CONN_SITEWATCH_POSTGRES")
    }
    logins["metadata"] = make_url(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).username
    assert logins["AIRFLOW_CONN_SITEWATCH_POSTGRES"] == OWNER_ROLE
    assert logins["metadata"] == AIRFLOW_ROLE
    expected = {
        "AIRFLOW_CONN_SITEWATCH_POSTGRES_DRAIN": DRAIN_ROLE,
        "AIRFLOW_CONN_SITEWATCH_POSTGRES_ALERTING": ALERTING_ROLE,
        "AIRFLOW_CONN_SITEWATCH_POSTGRES_READER": READER_ROLE,
    }
    for name, role in expected.items():
        assert logins.get(name, role) == role, name  # make test defines only sitewatch_postgres


def test_the_sites_page_role_reads_but_cannot_write_or_change_anything(pg_dsn, owned_schema):
    with as_role(pg_dsn, READER_ROLE, owned_schema) as reader:
        assert reader.execute("SELECT count(*) FROM site_checks").fetchone() == (0,)
        assert reader.execute("SELECT count(*) FROM site_checks_daily").fetchone() == (0,)
        assert reader.execute("SELECT count(*) FROM site_alert_state").fetchone() == (0,)
        assert reader.execute("SELECT count(*) FROM site_verdicts").fetchone() == (0,)
        now = datetime.now(UTC)
        assert refused(
            reader,
            "INSERT INTO site_checks (site, url, scheduled_at, attempt, final, checked_at, up)"
            " VALUES ('x', 'https://x/', %s, 1, true, %s, true)",
            (now, now),
        )
        assert refused(reader, "UPDATE site_alert_state SET state = 'up'")
        assert refused(reader, "DELETE FROM site_checks_daily")
        assert refused(
            reader,
            "INSERT INTO site_verdicts (site, scheduled_at, verdict, quorum, locations)"
            " VALUES ('x', now(), 'up', 1, '{}')",
        )
        assert refused(reader, "CREATE TABLE sneaky (x int)")
        assert refused(reader, "DROP TABLE site_checks")
        assert refused(reader, "ALTER TABLE site_checks ADD COLUMN sneaky int")
        assert refused(reader, "SELECT count(*) FROM site_checks_rejected")  # raw messages
        assert refused(reader, "SELECT site_checks_create_partitions(ARRAY[current_date + 9])")
        # the status page reads incidents and never writes them
        assert page_incidents(reader, "status", now) == []
        assert refused(reader, "UPDATE status_incidents SET state = 'resolved'")
        assert refused(
            reader,
            "INSERT INTO status_incidents (page, title, state, opened_at)"
            " VALUES ('status', 'x', 'investigating', now())",
        )


def test_the_drain_role_stores_checks_and_makes_a_missing_day_but_cannot_drop(pg_dsn, owned_schema):
    now = datetime.now(UTC)
    today = f"site_checks_p{now:%Y%m%d}"
    with as_role(pg_dsn, OWNER_ROLE, owned_schema, autocommit=True) as owner:
        owner.execute(f"DROP TABLE {today}")  # so that storing today must make it again
    with as_role(pg_dsn, DRAIN_ROLE, owned_schema) as drain:
        rejected = [Rejected(b"{", None, "t", 0, 1, "not JSON")]
        result = store_batch(drain, [observation("roles", now)], rejected)  # COPY, partition
        assert (result.inserted, result.rejected) == (1, 1)
        assert drain.execute("SELECT to_regclass(%s) IS NOT NULL", (today,)).fetchone() == (True,)
        # the rollup trigger ran as the drain
        assert drain.execute("SELECT checks, ups FROM site_checks_daily").fetchall() == [(1, 1)]
        assert refused(drain, f"DROP TABLE {today}")
        assert refused(drain, "DROP TABLE site_checks")
        assert refused(drain, "TRUNCATE site_checks")
        assert refused(drain, "DELETE FROM site_checks")
        assert refused(drain, "UPDATE site_checks SET up = false")
        assert refused(drain, "CREATE TABLE sneaky (x int)")
        assert refused(drain, "SELECT count(*) FROM site_alert_state")
        assert refused(drain, "DELETE FROM site_checks_rejected")
        assert refused(drain, "SELECT count(*) FROM site_verdicts")


def test_the_alerting_role_keeps_alert_state_and_verdicts_and_nothing_else(pg_dsn, owned_schema):
    now = datetime.now(UTC)
    with as_role(pg_dsn, DRAIN_ROLE, owned_schema) as drain:
        store_batch(drain, [observation("roles", now), observation("roles", now, location="east")])
    with as_role(pg_dsn, ALERTING_ROLE, owned_schema) as alerting:
        event = Event(Verdict.DOWN, at=now, run_id="r1", error="HTTP", detail="500")
        _, new, _ = alert_store.apply(alerting, "roles", event, timedelta(hours=1))
        assert new.state == "down"
        # the verdict across locations: read the run's checks, record the verdict once
        run = ("roles", now)
        assert location_outcomes(alerting, [run]) == {run: {"local": "up", "east": "up"}}
        assert undecided_runs(alerting, ["roles"], now, now + timedelta(seconds=1)) == [run]
        outcomes = {"local": "up", "east": "up"}
        assert record_verdict(alerting, "roles", now, "up", 2, outcomes)
        assert not record_verdict(alerting, "roles", now, "down", 2, outcomes)
        assert latest_verdicts(alerting, ["roles"]) == {"roles": (now, "up", outcomes)}
        assert refused(alerting, "UPDATE site_verdicts SET verdict = 'down'")
        assert refused(alerting, "DELETE FROM site_verdicts")
        assert refused(alerting, "DELETE FROM site_checks")
        assert refused(alerting, "UPDATE site_checks SET up = false")
        assert refused(alerting, "SELECT count(*) FROM site_checks_rejected")
        assert refused(alerting, "DELETE FROM site_alert_state")
        assert refused(alerting, "DROP TABLE site_alert_state")
        assert refused(alerting, "INSERT INTO site_checks_daily VALUES ('x', current_date, 1, 1)")
        # status page incidents (migration 11): opened, updated, resolved; updates only added
        opened = open_automatic(alerting, "status", "Shop", "roles", "Shop is down", "Down.", now)
        assert resolve_automatic(alerting, "status", "Shop", "Up.", now) == [opened]
        assert refused(alerting, "UPDATE status_incident_updates SET body = 'x'")
        assert refused(alerting, "DELETE FROM status_incident_updates")
        assert refused(alerting, "DELETE FROM status_incidents")


def test_airflow_metadata_role_cannot_reach_the_results(pg_dsn, owned_schema):
    url = make_url(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    results_db = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password,
            dbname=results_db,
        ).close()  # fmt: skip
    # ...and even inside that database (were CONNECT granted), no table is open to it
    with as_role(pg_dsn, AIRFLOW_ROLE, owned_schema) as airflow:
        assert refused(airflow, f"SELECT count(*) FROM {owned_schema}.site_checks")
