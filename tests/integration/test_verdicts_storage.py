"""sitewatch.storage.verdicts against a real PostgreSQL: the locations' outcomes of runs, the
verdict stored once, the runs still without one, and each site's latest (issue 16)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sitewatch.storage import verdicts
from sitewatch.storage.checks import store_batch
from sitewatch.storage.verdicts import (
    latest_verdicts,
    location_outcomes,
    record_verdict,
    undecided_runs,
)
from tests.builders import observation

pytestmark = pytest.mark.services

T0 = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)
RUN = ("shop", T0)
SECOND, DAY = timedelta(seconds=1), timedelta(days=1)


def retried(site: str, at: datetime, location: str, ups: list[bool], *, done=True):
    """A location's attempts of one run: ``ups[i]`` is attempt i+1; the last is final if
    ``done`` (no retry left), else the location is still retrying."""
    last = len(ups)
    return [
        observation(
            site,
            at,
            location=location,
            attempt=i,
            checked_at=at + i * SECOND,
            up=up,
            final=done and i == last,
        )
        for i, up in enumerate(ups, start=1)
    ]


@pytest.fixture
def db(migrated_conn):
    return migrated_conn


def plan(conn, statement: str, params) -> str:
    """The plan of ``statement`` with sequential scans priced out: a ``Seq Scan`` left in it is
    one no index can replace."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("EXPLAIN " + statement, params)
        return "\n".join(row[0] for row in cur.fetchall())


# --- location_outcomes ---------------------------------------------------------------------------


def test_each_location_is_up_down_or_left_out_while_it_retries(db):
    store_batch(
        db,
        [
            *retried("shop", T0, "east", [True]),
            *retried("shop", T0, "west", [False, True]),  # up at its retry
            *retried("shop", T0, "north", [False, False, False]),  # final and down
            *retried("shop", T0, "south", [False], done=False),  # retrying: undecided
            *retried("shop", T0 + timedelta(minutes=5), "east", [False]),  # the next run
            *retried("blog", T0, "east", [False]),  # another site, same time
        ],
    )
    assert location_outcomes(db, [RUN]) == {RUN: {"east": "up", "west": "up", "north": "down"}}


def test_one_call_answers_every_run_asked_about_as_given(db):
    other_day = T0 - timedelta(days=3)
    store_batch(
        db,
        [
            *retried("shop", T0, "east", [True]),
            *retried("shop", T0, "west", [False]),
            *retried("blog", other_day, "local", [False, False]),
        ],
    )
    plus_two = timezone(timedelta(hours=2))
    blog_run = ("blog", other_day.astimezone(plus_two))  # the same instant, another offset
    nothing = ("shop", T0 + timedelta(minutes=5))
    runs = [RUN, blog_run, nothing, RUN]
    outcomes = location_outcomes(db, runs)
    assert outcomes == {
        RUN: {"east": "up", "west": "down"},
        blog_run: {"local": "down"},
        nothing: {},
    }
    assert list(outcomes) == [RUN, blog_run, nothing]
    assert location_outcomes(db, []) == {}


def test_a_redelivered_check_changes_no_outcome(db):
    batch = [*retried("shop", T0, "east", [False, True]), *retried("shop", T0, "west", [False])]
    store_batch(db, batch)
    store_batch(db, batch)
    assert location_outcomes(db, [RUN]) == {RUN: {"east": "up", "west": "down"}}


def test_a_naive_time_is_refused_before_the_query(db):
    with pytest.raises(ValueError, match="timezone-aware"):
        location_outcomes(db, [("shop", T0.replace(tzinfo=None))])


def three_days(db) -> None:
    """Checks on the day of T0 and on the days around it, so that each has a partition."""
    days = (-1, 0, 1)
    store_batch(db, [observation("shop", T0 + d * DAY, location="east") for d in days])


def test_outcomes_walk_the_primary_key_of_the_runs_days_only(db):
    three_days(db)
    runs = [RUN, ("shop", T0 + timedelta(hours=1))]
    params = {"sites": ["shop", "shop"], "times": [at for _, at in runs]}
    params.update(first=T0, last=T0 + timedelta(hours=1))
    text = plan(db, verdicts._OUTCOMES, params)
    assert "Seq Scan on site_checks" not in text
    assert set(re.findall(r"site_checks_p\d{8}", text)) == {"site_checks_p20260402"}


# --- record_verdict ------------------------------------------------------------------------------


def test_a_runs_verdict_is_recorded_once(db):
    first = {"east": "up", "west": "down", "north": "missing"}
    assert record_verdict(db, "shop", T0, "partial", 2, first) is True
    assert record_verdict(db, "shop", T0, "down", 2, {"east": "down"}) is False
    assert record_verdict(db, "shop", T0 + timedelta(minutes=5), "up", 2, {"east": "up"})
    rows = db.execute(
        "SELECT site, scheduled_at, verdict, quorum, locations, decided_at IS NOT NULL"
        " FROM site_verdicts ORDER BY scheduled_at"
    ).fetchall()
    assert rows == [
        ("shop", T0, "partial", 2, first, True),
        ("shop", T0 + timedelta(minutes=5), "up", 2, {"east": "up"}, True),
    ]


@pytest.mark.parametrize("verdict", ["UP", "missing", ""])
def test_an_unknown_verdict_is_refused_and_nothing_is_stored(db, verdict):
    with pytest.raises(ValueError, match="is not one of up, down, partial"):
        record_verdict(db, "shop", T0, verdict, 1, {})
    assert db.execute("SELECT count(*) FROM site_verdicts").fetchone() == (0,)


# --- undecided_runs ------------------------------------------------------------------------------


def test_runs_with_checks_and_no_verdict_in_the_window(db):
    minute = timedelta(minutes=1)
    store_batch(
        db,
        [
            *retried("shop", T0 - minute, "east", [True]),  # before the window
            *retried("shop", T0, "east", [True]),  # decided below
            *retried("shop", T0, "west", [True]),
            *retried("shop", T0 + minute, "east", [False], done=False),  # still retrying
            *retried("shop", T0 + 2 * minute, "west", [False]),
            *retried("shop", T0 + 3 * minute, "east", [True]),  # at `before`: outside
            *retried("blog", T0 + minute, "east", [True]),
            *retried("other", T0 + minute, "east", [True]),  # a site not asked about
        ],
    )
    record_verdict(db, "shop", T0, "up", 2, {"east": "up", "west": "up"})
    found = undecided_runs(db, ["shop", "blog"], T0, T0 + 3 * minute)
    assert found == [
        ("blog", T0 + minute),
        ("shop", T0 + minute),
        ("shop", T0 + 2 * minute),
    ]
    assert undecided_runs(db, [], T0, T0 + 3 * minute) == []


def test_undecided_runs_walk_the_primary_key_not_the_table(db):
    three_days(db)
    params = {"sites": ["shop", "blog"], "since": T0, "before": T0 + timedelta(hours=1)}
    text = plan(db, verdicts._UNDECIDED, params)
    assert "Seq Scan on site_checks" not in text
    assert "site_checks_p20260402_pkey" in text
    assert set(re.findall(r"site_checks_p\d{8}", text)) == {"site_checks_p20260402"}


# --- latest_verdicts -----------------------------------------------------------------------------


def test_each_sites_latest_verdict(db):
    for minutes, verdict in ((0, "up"), (10, "down"), (5, "partial")):
        outcomes = {"east": verdict if verdict != "partial" else "up", "west": "down"}
        record_verdict(db, "shop", T0 + timedelta(minutes=minutes), verdict, 2, outcomes)
    record_verdict(db, "blog", T0, "up", 1, {"east": "up"})
    assert latest_verdicts(db, ["shop", "blog", "nosuchsite"]) == {
        "shop": (T0 + timedelta(minutes=10), "down", {"east": "down", "west": "down"}),
        "blog": (T0, "up", {"east": "up"}),
    }
    assert latest_verdicts(db, []) == {}
