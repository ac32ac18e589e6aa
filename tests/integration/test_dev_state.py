"""scripts/dev.sh on a private state directory: what it leaves on disk and in PostgreSQL.

Starts its own PostgreSQL and Kafka on free ports (never the shared stack), seeded the way an
older sitewatch left a state directory: Airflow's passwords file and standalone log readable by
everyone, and tables made by the superuser. One ``scripts/dev.sh services`` must make every file
private (issue 14 item 10) and hand the superuser's tables to the least-privilege roles, keeping
the script idempotent (item 9).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import psycopg
import pytest

from tests.stack import Stack


@pytest.fixture(scope="module")
def stack():
    with Stack.temporary("sitewatch-state-") as private:
        yield private.state, private.services


def loose_files(root: Path) -> list[str]:
    """Paths under ``root`` that anyone but their owner may read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.lstat().st_mode
        allowed = stat.S_IXOTH | stat.S_IXGRP if path == root and os.getuid() == 0 else 0
        if mode & 0o077 & ~allowed:
            found.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return found


def test_services_makes_the_state_private_and_the_roles_take_over(stack):
    state, services = stack
    env = services()
    admin_dsn = env["SITEWATCH_PG_DSN"]
    # what an older sitewatch left behind
    airflow = state / "airflow"
    for name, text in (("passwords.json", '{"admin": "secret"}'), ("standalone.log", "secret")):
        (airflow / name).write_text(text)
        (airflow / name).chmod(0o644)
    airflow.chmod(0o755)
    metadata_dsn = admin_dsn.rsplit("/", 1)[0] + "/airflow"
    with psycopg.connect(metadata_dsn, autocommit=True) as admin:
        admin.execute("CREATE TABLE old_airflow_table (id serial PRIMARY KEY)")
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute("CREATE TABLE old_results_table (id int)")

    env = services()  # a second start on the old state

    assert loose_files(state) == []
    assert stat.S_IMODE((airflow / "passwords.json").stat().st_mode) == 0o600
    with psycopg.connect(metadata_dsn) as admin:
        owners = admin.execute(
            "SELECT relname, relowner::regrole::text FROM pg_class"
            " WHERE relname IN ('old_airflow_table', 'old_airflow_table_id_seq')"
        ).fetchall()
    assert sorted(owners) == [
        ("old_airflow_table", "sitewatch_airflow"),
        ("old_airflow_table_id_seq", "sitewatch_airflow"),
    ]
    owner = json.loads(env["AIRFLOW_CONN_SITEWATCH_POSTGRES"])
    assert owner["login"] == "sitewatch_owner"
    with psycopg.connect(
        host=owner["host"], port=owner["port"], dbname=owner["schema"],
        user=owner["login"], password=owner["password"],
    ) as conn:  # fmt: skip
        conn.execute("DROP TABLE old_results_table")  # it owns what the superuser made
    # make run's environment splits the results connections; each logs in as its role
    for suffix in ("DRAIN", "ALERTING", "READER"):
        conn = json.loads(env[f"AIRFLOW_CONN_SITEWATCH_POSTGRES_{suffix}"])
        assert conn["login"] == f"sitewatch_{suffix.lower()}"
        with psycopg.connect(
            host=conn["host"], port=conn["port"], dbname=conn["schema"],
            user=conn["login"], password=conn["password"],
        ) as session:  # fmt: skip
            assert session.execute("SELECT current_user").fetchone() == (conn["login"],)
    assert "sitewatch_airflow:" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
