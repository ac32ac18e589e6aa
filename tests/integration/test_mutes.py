"""Ad-hoc mutes against the real PostgreSQL: the storage functions (sitewatch.storage.mutes), then
the ``sitewatch_mute`` and ``sitewatch_unmute`` DAGs through ``dag.test()``, writing as the
alerting role exactly as deployed."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from sitewatch.airflow.mute_dag import mute_dag, unmute_dag
from sitewatch.config.maintenance import maintenance_at
from sitewatch.errors import StorageError
from sitewatch.names import ALERTING_ROLE, READER_ROLE
from sitewatch.storage.mutes import (
    CapReached,
    Mute,
    add_capped_mutes,
    add_mutes,
    end_mutes,
    mutes_in_force,
    mutes_overlapping,
    stretch_start,
)
from sitewatch.storage.schema import SCHEMA_VERSION
from tests.integration import test_roles as roles

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
H, M, D = timedelta(hours=1), timedelta(minutes=1), timedelta(days=1)
SITES = ("shop", "blog", "api")


@pytest.fixture
def db(migrated_conn):
    return migrated_conn


def rows(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT site, starts_at, ends_at, reason, created_by FROM site_mutes ORDER BY id"
        )
        result = cur.fetchall()
    conn.commit()
    return result


# --- storage ------------------------------------------------------------------------------------


def test_add_mutes_stores_one_row_per_site_and_returns_their_ids(db):
    ids = add_mutes(db, ["shop", "blog", "shop"], T0, T0 + 2 * H, "deploy v2", "alice")
    assert len(ids) == 2 and ids[0] != ids[1]  # a site named twice is muted once
    assert rows(db) == [
        ("shop", T0, T0 + 2 * H, "deploy v2", "alice"),
        ("blog", T0, T0 + 2 * H, "deploy v2", "alice"),
    ]
    with db.cursor() as cur:
        cur.execute("SELECT id FROM site_mutes WHERE site = 'blog'")
        assert cur.fetchone()[0] == ids[1]
    assert add_mutes(db, [], T0, T0 + H, "nothing", None) == []


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "reason", "message"),
    [
        (T0, T0, "x", "must end after it starts"),
        (T0, T0 - H, "x", "must end after it starts"),
        (T0, T0 + H, "  ", "needs a reason"),
        (T0.replace(tzinfo=None), T0 + H, "x", "timezone-aware"),
    ],
)
def test_add_mutes_refuses_a_bad_window_before_storing(db, starts_at, ends_at, reason, message):
    with pytest.raises(ValueError, match=message):
        add_mutes(db, ["shop"], starts_at, ends_at, reason, None)
    assert rows(db) == []


def test_in_force_is_half_open_and_per_site(db):
    add_mutes(db, ["shop"], T0, T0 + H, "first", None)
    add_mutes(db, ["shop", "blog"], T0 + 30 * M, T0 + 3 * H, "second", "bob")
    add_mutes(db, ["api"], T0 + 5 * H, T0 + 6 * H, "later", None)

    assert mutes_in_force(db, SITES, T0 - M) == {}
    assert {s: [m.reason for m in ms] for s, ms in mutes_in_force(db, SITES, T0).items()} == {
        "shop": ["first"]
    }
    both = mutes_in_force(db, SITES, T0 + 45 * M)
    assert [m.reason for m in both["shop"]] == ["first", "second"]  # by start
    assert [m.reason for m in both["blog"]] == ["second"]
    assert "api" not in both
    # ends_at is exclusive: at T0 + 1h only the second one covers shop
    assert [m.reason for m in mutes_in_force(db, ["shop"], T0 + H)["shop"]] == ["second"]
    assert set(mutes_in_force(db, None, T0 + 5 * H)) == {"api"}  # None: every site
    assert mutes_in_force(db, [], T0 + 45 * M) == {}


def test_overlapping_returns_every_mute_touching_the_range_in_one_query(db):
    add_mutes(db, ["shop"], T0, T0 + H, "morning", None)
    add_mutes(db, ["shop"], T0 + 4 * H, T0 + 5 * H, "noon", None)
    add_mutes(db, ["blog"], T0 - 3 * H, T0 - 2 * H, "long ago", None)
    add_mutes(db, ["api"], T0 + 2 * H, T0 + 3 * H, "api", None)

    found = mutes_overlapping(db, ["shop", "blog"], T0 + 30 * M, T0 + 4 * H)
    # until is inclusive (a check scheduled at T0 + 4h is in "noon"); blog's ended before since;
    # api was not asked about
    assert {s: [m.reason for m in ms] for s, ms in found.items()} == {"shop": ["morning", "noon"]}
    assert mutes_overlapping(db, ["shop"], T0 + H, T0 + 2 * H) == {}  # "morning" ended at T0 + 1h
    assert set(mutes_overlapping(db, None, T0 - 3 * H, T0 + 5 * H)) == {"shop", "blog", "api"}
    with pytest.raises(ValueError, match="before since"):
        mutes_overlapping(db, ["shop"], T0 + H, T0)


def test_the_mutes_of_a_batch_tell_which_checks_fell_in_one(db):
    """As the drain asks: one read for the batch, then ``maintenance_at`` per check."""
    add_mutes(db, ["shop"], T0, T0 + H, "short", None)
    add_mutes(db, ["shop"], T0 + 30 * M, T0 + 2 * H, "long", "admin")
    batch = [T0 - M, T0, T0 + 45 * M, T0 + 90 * M, T0 + 2 * H]
    mutes = mutes_overlapping(db, ["shop", "blog"], min(batch), max(batch))
    assert all(isinstance(m, Mute) and m.site == "shop" for m in mutes["shop"])
    seen = [maintenance_at((), mutes.get("shop", ()), at) for at in batch]
    # where both cover, the one that ends last
    assert [m and m.reason for m in seen] == [None, "short", "long", "long", None]
    assert [m and m.source for m in seen][1:3] == ["mute", "mute by admin"]
    assert maintenance_at((), mutes.get("blog", ()), T0) is None


def test_end_mutes_ends_those_in_force_and_keeps_the_record(db):
    add_mutes(db, ["shop", "blog", "api"], T0, T0 + 4 * H, "deploy", None)
    add_mutes(db, ["shop"], T0 - 3 * H, T0 - 2 * H, "over", None)
    add_mutes(db, ["shop"], T0 + 5 * H, T0 + 6 * H, "planned", None)
    add_mutes(db, ["blog"], T0 + H, T0 + 2 * H, "starts at the end", None)

    assert end_mutes(db, ["shop"], T0 + H) == 1
    assert mutes_in_force(db, ["shop"], T0 + H) == {}
    assert set(mutes_in_force(db, None, T0 + H)) == {"blog", "api"}
    # a mute starting exactly then is not in force yet (and could not be ended to nothing)
    assert end_mutes(db, None, T0 + H) == 2
    in_force = mutes_in_force(db, None, T0 + H)
    assert {site: [m.reason for m in ms] for site, ms in in_force.items()} == {
        "blog": ["starts at the end"]
    }
    assert end_mutes(db, [], T0 + H) == 0
    assert [(site, start, end, reason) for site, start, end, reason, _ in rows(db)] == [
        ("shop", T0, T0 + H, "deploy"),
        ("blog", T0, T0 + H, "deploy"),
        ("api", T0, T0 + H, "deploy"),
        ("shop", T0 - 3 * H, T0 - 2 * H, "over"),  # already over: untouched
        ("shop", T0 + 5 * H, T0 + 6 * H, "planned"),  # not started: untouched
        ("blog", T0 + H, T0 + 2 * H, "starts at the end"),
    ]


def test_only_alerting_may_write_mutes(pg_dsn, pg_schema, alerting_connect, db):
    with alerting_connect() as conn:
        (mute_id,) = add_mutes(conn, ["shop"], T0, T0 + H, "as alerting", None)
        assert end_mutes(conn, ["shop"], T0 + 30 * M) == 1
    with roles.as_role(pg_dsn, READER_ROLE, pg_schema) as conn:
        assert mutes_in_force(conn, ["shop"], T0)["shop"][0].id == mute_id
        with pytest.raises(StorageError, match="could not mute shop: permission denied"):
            add_mutes(conn, ["shop"], T0, T0 + H, "as reader", None)


# --- the cap on a stretch of muted time (issue 24 item 9) ---------------------------------------


def test_stretch_start_chains_overlapping_and_touching_mutes_back_from_now():
    windows = [(T0 - 5 * D, T0 - 3 * D), (T0 - 3 * D, T0 + H), (T0 - H, T0 + D)]
    assert stretch_start(windows, T0) == T0 - 5 * D  # touching at T0 - 3d chains on
    assert stretch_start([(T0 - 5 * D, T0 - 3 * D), (T0 - 2 * D, T0 + H)], T0) == T0 - 2 * D
    assert stretch_start([(T0 - 2 * D, T0 - D)], T0) == T0  # over: a new stretch starts now
    assert stretch_start([(T0 - 2 * D, T0)], T0) == T0  # ended just now (ends_at is exclusive)
    assert stretch_start([], T0) == T0


def test_capped_mutes_end_at_most_the_longest_stretch_after_it_began(db):
    add_mutes(db, ["shop"], T0 - 6 * D, T0 + H, "long job", "alice")  # muted for 6 days already
    stored = add_capped_mutes(db, ["shop", "blog"], T0, T0 + 7 * D, "again", "bob", 7 * D)
    assert [(m.site, m.starts_at, m.ends_at) for m in stored.values()] == [
        ("shop", T0, T0 + D),  # clamped: 6 days done, one left
        ("blog", T0, T0 + 7 * D),  # not muted: the whole duration
    ]
    assert rows(db)[-2:] == [
        ("shop", T0, T0 + D, "again", "bob"),
        ("blog", T0, T0 + 7 * D, "again", "bob"),
    ]
    # muting again and again never reaches past the first mute's start + 7 days
    later = add_capped_mutes(db, ["shop"], T0 + 12 * H, T0 + 12 * H + 7 * D, "more", "bob", 7 * D)
    assert later["shop"].ends_at == T0 + D


def test_a_site_muted_for_the_longest_stretch_is_refused_and_nothing_is_stored(db):
    add_mutes(db, ["shop"], T0 - 7 * D - H, T0 - 2 * D, "first", "alice")
    add_mutes(db, ["shop"], T0 - 2 * D, T0 + H, "touching", "alice")
    before = rows(db)
    with pytest.raises(CapReached) as refused:
        add_capped_mutes(db, ["blog", "shop"], T0, T0 + H, "once more", "bob", 7 * D)
    assert str(refused.value) == (
        "already muted for the longest stretch allowed: shop (muted since "
        "2026-10-26T08:00:00+00:00, so at most until 2026-11-02T08:00:00+00:00); end the mute "
        "first (sitewatch_unmute) or plan a longer pause in the sites file (maintenance)"
    )
    assert rows(db) == before  # blog was fine, but the request stores all or nothing
    assert end_mutes(db, ["shop"], T0) == 1  # ending it starts a new stretch
    assert add_capped_mutes(db, ["shop"], T0, T0 + H, "fresh", "bob", 7 * D)["shop"].ends_at == (
        T0 + H
    )


# --- the DAGs, through dag.test() ---------------------------------------------------------------


@pytest.fixture
def dag_env(pg_dsn, pg_schema, db, tmp_path, monkeypatch):
    """A sites file naming ``SITES``; the owner connection on the test's schema, and the alerting
    connection as ``ALERTING_ROLE`` there (what the DAGs use). Returns a reader of the rows."""
    path = tmp_path / "sites.yaml"
    path.write_text(
        "sites:\n" + "".join(f"  - {{name: {s}, url: http://{s}.test/}}\n" for s in SITES)
    )
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))
    dsn = conninfo_to_dict(pg_dsn)

    def conn(options: str) -> str:
        return json.dumps(
            {
                "conn_type": "postgres",
                "host": dsn.get("host"),
                "port": int(dsn.get("port", 5432)),
                "login": dsn.get("user"),
                "password": dsn.get("password"),
                "schema": dsn.get("dbname"),
                "extra": {"options": options},
            }
        )

    # dag.test() runs as the user "dag_test": Airflow's SimpleAuthManager knows it as a USER,
    # who may edit every DAG (tests below change its role)
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "dag_test:user")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    path_option = f"-c search_path={pg_schema}"
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES", conn(path_option))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SITEWATCH_POSTGRES_ALERTING", conn(f"-c role={ALERTING_ROLE} {path_option}")
    )
    return lambda: rows(db)


@pytest.fixture
def run(capfd, caplog):
    """``run(dag, conf)``: run ``dag`` once with ``conf``; its state and what it logged."""

    def run(dag, conf: dict) -> tuple[str, str]:
        capfd.readouterr()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            state = dag.test(run_conf=conf).state
        out, err = capfd.readouterr()
        return state, out + err + caplog.text  # task logs reach stdout or the logging capture

    return run


def test_mute_dag_mutes_each_site_from_now(dag_env, run):
    before = datetime.now(UTC)
    conf = {"sites": ["shop", "api"], "duration": "2h", "reason": " deploy v2 "}
    state, logs = run(mute_dag(), conf)
    after = datetime.now(UTC)
    assert state == "success"
    (shop, api) = dag_env()
    assert shop[0] == "shop" and api[0] == "api"
    for _, starts_at, ends_at, reason, created_by in (shop, api):
        assert before <= starts_at <= after
        assert ends_at - starts_at == 2 * H
        assert (reason, created_by) == ("deploy v2", "dag_test")  # dag.test()'s triggering user
    until = shop[2].astimezone(UTC).isoformat(timespec="seconds")
    assert f"mute: site=shop until={until} reason='deploy v2'" in logs
    assert f"mute: site=api until={until} reason='deploy v2'" in logs


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"sites": ["shop", "shpo", "nope"]},
            "not in the sites file: 'shpo' (did you mean 'shop'?)",
        ),
        ({"duration": "30s"}, "duration '30s' is out of range 1m to 7d"),
        ({"duration": "8d"}, "duration '8d' is out of range 1m to 7d"),
        ({"duration": "2 hours"}, "invalid duration '2 hours'"),
        ({"reason": "   "}, "a mute needs a reason"),
        # (a NUL never gets this far: Airflow's own JSONB column refuses it in the run's conf)
        ({"reason": "a\x1b[31mb\u202e"}, "reason contains U+001B (a control character) at"),
        ({"reason": "rollout \u202eevil"}, "reason contains U+202E (a bidi control) at"),
        ({"duration": "\u0663h"}, "write its digits as 0-9"),
    ],
)
def test_mute_dag_refuses_a_bad_request_and_stores_nothing(dag_env, run, conf, message):
    good = {"sites": ["shop"], "duration": "1h", "reason": "deploy"}
    state, logs = run(mute_dag(), good | conf)
    assert state == "failed"
    assert message in logs
    assert dag_env() == []


def test_mute_dag_names_the_dag_that_creates_missing_tables(pg_dsn, pg_schema, dag_env, run):
    with psycopg.connect(pg_dsn, options=f"-c search_path={pg_schema}") as conn:
        conn.execute("DELETE FROM sitewatch_schema_version WHERE version = %s", (SCHEMA_VERSION,))
    state, logs = run(mute_dag(), {"sites": ["shop"], "reason": "deploy"})
    assert state == "failed"
    assert f"are at version {SCHEMA_VERSION - 1}; this code needs version {SCHEMA_VERSION}" in logs
    assert "Unpause DAG sitewatch_drain (task create_tables)" in logs


def test_unmute_dag_ends_the_named_sites_mutes_or_all(dag_env, run):
    conf = {"sites": list(SITES), "duration": "3h", "reason": "migration"}
    assert run(mute_dag(), conf)[0] == "success"

    state, logs = run(unmute_dag(), {"sites": ["blog"]})
    assert state == "success"
    assert "unmute: sites=blog ended=1" in logs
    ended = {site: ends_at - starts_at < H for site, starts_at, ends_at, *_ in dag_env()}
    assert ended == {"shop": False, "blog": True, "api": False}

    state, logs = run(unmute_dag(), {"sites": None})  # the form's empty choice: all
    assert state == "success"
    assert "unmute: sites=all ended=2" in logs
    assert all(ends_at - starts_at < H for _, starts_at, ends_at, *_ in dag_env())
    assert len(dag_env()) == 3  # ended, not deleted

    state, logs = run(unmute_dag(), {"sites": ["nope"]})
    assert state == "failed" and "not in the sites file: 'nope'" in logs


# --- who may mute, and for how long (issue 24 item 9) --------------------------------------------


@pytest.mark.parametrize("dag", [mute_dag, unmute_dag])
def test_a_user_who_may_not_edit_the_sites_dags_cannot_mute_or_unmute(
    dag_env, run, monkeypatch, dag
):
    assert run(mute_dag(), {"sites": ["shop"], "duration": "1h", "reason": "deploy"})[0] == (
        "success"
    )
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "dag_test:viewer")
    conf = {"sites": ["shop", "api"], "duration": "2h", "reason": "not mine"}
    state, logs = run(dag(), conf if dag is mute_dag else {"sites": ["shop", "api"]})
    assert state == "failed"
    assert (
        "user 'dag_test' may not edit the DAGs of these sites, so may not mute or unmute them: "
        "shop (site_shop), api (site_api)"
    ) in logs
    [(site, starts_at, ends_at, *_)] = dag_env()  # nothing added, nothing ended
    assert (site, ends_at - starts_at) == ("shop", H)


def test_muting_again_never_keeps_a_site_muted_past_seven_days(db, dag_env, run):
    now = datetime.now(UTC)
    add_mutes(db, ["shop"], now - 6 * D, now + H, "long job", "alice")
    conf = {"sites": ["shop", "blog"], "duration": "7d", "reason": "still at it"}
    state, logs = run(mute_dag(), conf)
    assert state == "success"
    shop, blog = dag_env()[1:]
    assert shop[2] == now - 6 * D + 7 * D  # the stretch's start + 7 days, not now + 7 days
    assert blog[2] - blog[1] == 7 * D
    assert f"mute: site=shop until={shop[2].isoformat(timespec='seconds')} instead of" in logs
    assert "muted for at most 7d at a stretch" in logs

    add_mutes(db, ["api"], now - 7 * D, now + H, "forever", "alice")
    state, logs = run(mute_dag(), {"sites": ["api"], "duration": "1h", "reason": "more"})
    assert state == "failed"
    assert "already muted for the longest stretch allowed: api (muted since" in logs
    assert len(dag_env()) == 4
