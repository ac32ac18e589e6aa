"""The monthly SLA report (issue 17): sitewatch.storage.sla against a real PostgreSQL, its
rendering (sitewatch.dashboard.report) and ``sitewatch report`` through the real command line.

The history below is sparse on purpose: a run's state holds until the next run, so every figure
is worked out by hand in the comments."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from sitewatch.config.objectives import Slo
from sitewatch.dashboard import report
from sitewatch.errors import SettingError, StorageError
from sitewatch.storage.checks import store_batch
from sitewatch.storage.sla import (
    REPORT_TIMEOUT_VAR,
    Incident,
    Period,
    SitePeriod,
    period,
    report_timeout,
)
from sitewatch.storage.verdicts import record_verdict
from tests.builders import observation

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
NOVEMBER = (date(2026, 11, 1), date(2026, 12, 1))
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOSTILE = '<script>alert(1)</script> | =HYPERLINK("x") *bold*'


def at(month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# shop, one location: three incidents touch November.
#   A: down Oct 31 23:30, up Nov 1 00:30: 60 min long, 30 of them in November.
#   B: down Nov 10 10:10 (a retried failure), 10:20 down in maintenance, 10:30 down, up 10:40:
#      30 min long, the 10 min of the maintenance run left out: 20 min.
#   C: down Nov 30 23:50 ("connect"), up Dec 1 00:20: 30 min long, 10 in November.
#   Maintenance: the 10:20 run (until 10:30) and Nov 20 02:00 (until 02:10): 20 min.
#   November's final checks outside maintenance: 00:30, 10:00, 10:10, 10:30, 10:40, Nov 20
#   02:10, 23:50: 7, 4 up (57.14%); 2 in maintenance. Downtime 30 + 20 + 10 = 60 min.
SHOP = [
    observation("shop", at(10, 31, 23, 0)),
    observation(
        "shop", at(10, 31, 23, 30), up=False, error="timeout", error_detail="no answer in 10 s"
    ),
    observation("shop", at(11, 1, 0, 30)),
    observation("shop", at(11, 10, 10, 0)),
    observation(
        "shop", at(11, 10, 10, 10), up=False, final=False, error="connect", error_detail="refused"
    ),
    observation("shop", at(11, 10, 10, 10), up=False, attempt=2, error_detail=HOSTILE),
    observation("shop", at(11, 10, 10, 20), up=False, maintenance=True),
    observation("shop", at(11, 10, 10, 30), up=False),
    observation("shop", at(11, 10, 10, 40)),
    observation("shop", at(11, 20, 2, 0), maintenance=True),
    observation("shop", at(11, 20, 2, 10)),
    observation("shop", at(11, 30, 23, 50), up=False, error="connect", error_detail="refused"),
    observation("shop", at(12, 1, 0, 20)),
]


# api, two locations, Nov 5:
#   12:00 both up; 12:05 east down, verdict partial (up); 12:10 east down, verdict down: an
#   incident until 12:15 (both up, no verdict); 12:20 both down, no verdict: down until 12:25.
#   Two incidents of 5 min: downtime 10 min. 12 location checks, 8 up (66.66%).
def api(conn) -> None:
    runs = [(0, True, True), (5, False, True), (10, False, True), (15, True, True)]
    runs += [(20, False, False), (25, True, True)]
    batch = []
    for minute, east, west in runs:
        when = at(11, 5, 12, minute)
        batch.append(
            observation("api", when, up=east, location="east", error="tls", error_detail="expired")
        )
        batch.append(observation("api", when, up=west, location="west"))
    store_batch(conn, batch)
    for minute, verdict in ((0, "up"), (5, "partial"), (10, "down")):
        outcomes = {"east": "down" if minute else "up", "west": "up"}
        record_verdict(conn, "api", at(11, 5, 12, minute), verdict, 1, outcomes)


def blog(conn) -> None:
    """Up all along: one check a day of November."""
    store_batch(conn, [observation("blog", at(11, 1 + d, 6, 0)) for d in range(30)])


@pytest.fixture
def history(pg_conn, migrated_schema):
    store_batch(pg_conn, SHOP)
    api(pg_conn)
    blog(pg_conn)
    return pg_conn


def test_figures_incidents_downtime_and_maintenance_of_a_month(history):
    got = period(history, *NOVEMBER, NOW)
    assert (got.first, got.after, got.now, got.raw_since) == (*NOVEMBER, NOW, date(2026, 10, 31))
    api_, blog_, shop = got.sites
    assert (shop.site, shop.checks, shop.ups, shop.maint_checks) == ("shop", 7, 4, 2)
    assert shop.maintenance == 20 * MINUTE
    assert shop.incidents == (
        Incident("shop", at(10, 31, 23, 30), at(11, 1, 0, 30), "timeout", "no answer in 10 s",
                 30 * MINUTE),
        Incident("shop", at(11, 10, 10, 10), at(11, 10, 10, 40), "status", HOSTILE,
                 20 * MINUTE),
        Incident("shop", at(11, 30, 23, 50), at(12, 1, 0, 20), "connect", "refused",
                 10 * MINUTE),
    )  # fmt: skip
    assert shop.downtime == 60 * MINUTE

    assert (api_.site, api_.checks, api_.ups, api_.maint_checks) == ("api", 12, 8, 0)
    assert [(i.start, i.end, i.error, i.downtime) for i in api_.incidents] == [
        (at(11, 5, 12, 10), at(11, 5, 12, 15), "tls", 5 * MINUTE),
        (at(11, 5, 12, 20), at(11, 5, 12, 25), "tls", 5 * MINUTE),
    ]
    assert (blog_.checks, blog_.ups, blog_.incidents, blog_.downtime) == (30, 30, (), timedelta())


def test_an_incident_open_now_runs_until_now_and_later_months_see_only_their_part(history):
    # as of Dec 1 00:10, C has not ended yet: open, counted until the month's end
    now = at(12, 1, 0, 10)
    shop = {s.site: s for s in period(history, *NOVEMBER, now).sites}["shop"]
    assert shop.incidents[-1] == Incident(
        "shop", at(11, 30, 23, 50), None, "connect", "refused", 10 * MINUTE
    )
    # December sees C's last 20 minutes; November's incidents are not December's
    december = {s.site: s for s in period(history, date(2026, 12, 1), date(2027, 1, 1), NOW).sites}
    assert [(i.start, i.downtime) for i in december["shop"].incidents] == [
        (at(11, 30, 23, 50), 20 * MINUTE)
    ]
    # mid-month, a month not over counts up to now only
    mid = period(history, *NOVEMBER, at(11, 10, 10, 25))
    shop = {s.site: s for s in mid.sites}["shop"]
    assert shop.incidents[-1] == Incident(
        "shop", at(11, 10, 10, 10), None, "status", HOSTILE, 10 * MINUTE
    )  # 10:10-10:20 down, then maintenance until now (10:25)
    assert shop.maintenance == 5 * MINUTE


def test_a_down_streak_across_maintenance_is_one_incident_less_the_window(pg_conn, migrated_schema):
    # down 08:00, maintenance 08:10-08:40 (down), down 08:40, up 09:00: one incident of 60 min,
    # 30 of them maintenance; a maintenance run that is up neither ends nor starts one
    runs = [(0, False, False), (10, False, True), (20, True, True), (30, False, True)]
    runs += [(40, False, False), (60, True, False)]
    store_batch(
        pg_conn,
        [
            observation("db", at(11, 3, 8, 0) + m * MINUTE, up=up, maintenance=maint)
            for m, up, maint in runs
        ],
    )
    (db,) = period(pg_conn, *NOVEMBER, NOW).sites
    assert [(i.start, i.end, i.downtime) for i in db.incidents] == [
        (at(11, 3, 8, 0), at(11, 3, 9, 0), 30 * MINUTE)
    ]
    assert db.maintenance == 30 * MINUTE
    assert (db.checks, db.ups, db.maint_checks) == (3, 1, 3)


# --- rendering ------------------------------------------------------------------------------------

OBJECTIVES = {"shop": Slo(99.9), "api": Slo(60.0), "blog": None}


def test_csv_is_one_table_with_a_section_column(history):
    text = report.render(period(history, *NOVEMBER, NOW), OBJECTIVES, "csv")
    # One table: every line has the header's cells, so a spreadsheet imports all of it.
    header, *lines = csv.reader(io.StringIO(text))
    assert header == list(report.CSV_COLUMNS) and header[1:8] == list(report.COLUMNS)
    assert {len(line) for line in lines} == {len(header)}
    table = [dict(zip(header, line, strict=True)) for line in lines]
    sites = [[d[c] for c in report.COLUMNS] for d in table if d["section"] == "site"]
    assert sites == [
        ["api", "66.66", "10.0", "2", "0.0", "60", "yes"],
        ["blog", "100.00", "0.0", "0", "0.0", "-", "-"],
        ["shop", "57.14", "60.0", "3", "20.0", "99.9", "no"],
    ]
    incidents = [[d[c] for c in report.INCIDENT_COLUMNS] for d in table
                 if d["section"] == "incident"]  # fmt: skip
    assert incidents == [
        ["shop", "2026-10-31T23:30:00Z", "2026-11-01T00:30:00Z", "60.0",
         "timeout: no answer in 10 s"],
        ["api", "2026-11-05T12:10:00Z", "2026-11-05T12:15:00Z", "5.0", "tls: expired"],
        ["api", "2026-11-05T12:20:00Z", "2026-11-05T12:25:00Z", "5.0", "tls: expired"],
        ["shop", "2026-11-10T10:10:00Z", "2026-11-10T10:40:00Z", "30.0",
         f"status: {HOSTILE}"],
        ["shop", "2026-11-30T23:50:00Z", "2026-12-01T00:20:00Z", "30.0", "connect: refused"],
    ]  # fmt: skip
    # a site line leaves the incident cells empty, and the other way round
    assert all(d["start"] == "" for d in table if d["section"] == "site")
    assert all(d["uptime %"] == "" for d in table if d["section"] == "incident")
    assert [d["section"] for d in table] == ["site"] * 3 + ["incident"] * 5  # a closed month


def test_csv_of_a_month_without_checks_says_so():
    empty = Period(date(2027, 1, 1), date(2027, 2, 1), NOW, (), None)
    got = list(csv.DictReader(io.StringIO(report.render(empty, {}, "csv"))))
    assert [(d["section"], d["note"]) for d in got] == [
        ("note", "No checks are stored for 2027-01."),
        ("note", "The month is not over: figures up to 2026-12-05 09:00:00 UTC."),
    ]
    assert all(d[c] == "" for d in got for c in report.CSV_COLUMNS if c not in ("section", "note"))


def test_markdown_and_html_of_a_month_without_checks_say_so_without_an_empty_table():
    empty = Period(date(2027, 1, 1), date(2027, 2, 1), NOW, (), None)
    md = report.render(empty, {}, "md")
    assert md.splitlines() == [
        "# SLA report 2027-01 (UTC)",
        "",
        "_No checks are stored for 2027-01._",
        "",
        "_The month is not over: figures up to 2026-12-05 09:00:00 UTC._",
    ]
    html = report.render(empty, {}, "html")
    assert "No checks are stored for 2027-01." in html
    assert "<table" not in html and "<h2>" not in html


def test_markdown_and_html_escape_what_sites_answered(history):
    got = period(history, *NOVEMBER, NOW)
    md = report.render(got, OBJECTIVES, "md")
    assert md.startswith("# SLA report 2026-11 (UTC)\n\n| site | uptime % |")
    assert "| shop | 57.14 | 60.0 | 3 | 20.0 | 99.9 | no |" in md.splitlines()
    hostile = next(line for line in md.splitlines() if "HYPERLINK" in line)
    assert "\\<script\\>" in hostile and "\\| =HYPERLINK" in hostile
    assert hostile.count(" | ") == 4  # the detail's pipe does not open a sixth cell

    html = report.render(got, OBJECTIVES, "html")
    assert html.startswith("<!doctype html>") and "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<td>shop</td><td class=num>57.14</td>" in html
    assert html.count("<tr>") == 1 + 3 + 1 + 5  # two heads, 3 sites, 5 incidents


def test_met_is_exact_and_notes_say_what_is_missing():
    site = SitePeriod("a", 1000, 999, 0, timedelta(), ())
    assert report.met(site, Slo(99.9)) is True
    assert report.met(SitePeriod("a", 1000, 998, 0, timedelta(), ()), Slo(99.9)) is False
    assert report.met(site, None) is None
    assert report.met(SitePeriod("a", 0, 0, 5, timedelta(), ()), Slo(99.9)) is None
    old = Period(*NOVEMBER, NOW, (site,), date(2026, 11, 20))
    # the same words on a new install (its first day) and past the retention
    assert report.notes(old) == [
        "Raw checks start on 2026-11-20 (the first day stored, or the oldest that"
        " SITEWATCH_RETENTION_DAYS keeps): incidents, downtime and maintenance minutes cover the"
        " month from then on."
    ]
    assert "dropped" not in report.notes(old)[0]
    empty = Period(date(2027, 1, 1), date(2027, 2, 1), NOW, (), None)
    assert report.notes(empty) == [
        "No checks are stored for 2027-01.",
        "The month is not over: figures up to 2026-12-05 09:00:00 UTC.",
    ]


def test_csv_never_starts_a_cell_with_a_formula():
    start = datetime(2026, 11, 2, tzinfo=UTC)
    incident = Incident("a", start, None, "=cmd|' /C calc'!A0", None, timedelta(minutes=5))
    site = SitePeriod("a", 10, 9, 0, timedelta(), (incident,))
    text = report.render(Period(*NOVEMBER, NOW, (site,), date(2026, 10, 1)), {}, "csv")
    *_, last = csv.DictReader(io.StringIO(text))  # open: Nov 2 until NOW, 801 h
    cells = [last[c] for c in ("section", *report.INCIDENT_COLUMNS)]
    assert cells == ["incident", "a", "2026-11-02T00:00:00Z", "", "48060.0", "'=cmd|' /C calc'!A0"]


@pytest.mark.parametrize(
    ("month", "days"),
    [("2026-11", NOVEMBER), ("2026-12", (date(2026, 12, 1), date(2027, 1, 1)))],
)
def test_month_days(month, days):
    assert report.month_days(month) == days


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", ""])
def test_month_days_refuses_anything_but_yyyy_mm(month):
    with pytest.raises(ValueError, match="expected YYYY-MM"):
        report.month_days(month)


# --- the command ----------------------------------------------------------------------------------


def sitewatch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "SITEWATCH_SITES_FILE"}
    return subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", *args],
        cwd=REPO,
        env=environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def sites_file(tmp_path) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(
        "sites:\n  - name: shop\n    url: https://shop.example/\n"
        "    slo: {target: 99.9, window: 30d}\n"
        "  - name: blog\n    url: https://blog.example/\n",
        encoding="utf-8",
    )
    return path


def test_the_command_prints_the_month(history, pg_dsn, pg_schema, sites_file):
    env = {"PGOPTIONS": f"-c search_path={pg_schema}"}
    month = ("report", "--month", "2026-11", "--sites", str(sites_file))
    result = sitewatch(*month, "--dsn", pg_dsn, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        ",".join(report.CSV_COLUMNS),
        "site,api,66.66,10.0,2,0.0,-,-,,,,,",
        "site,blog,100.00,0.0,0,0.0,-,-,,,,,",
        "site,shop,57.14,60.0,3,20.0,99.9,no,,,,,",  # the sites file's SLO
    ]
    # without --dsn, libpq's own environment variables say where the database is
    given = conninfo_to_dict(pg_dsn)
    libpq = {"PGHOST": given["host"], "PGPORT": str(given["port"]), "PGUSER": given["user"]}
    libpq |= {"PGPASSWORD": given["password"], "PGDATABASE": given["dbname"]}
    html = sitewatch(*month, "--format", "html", env=env | libpq)
    assert html.returncode == 0, html.stderr
    assert "<h1>SLA report 2026-11 (UTC)</h1>" in html.stdout
    assert "<td>shop</td><td class=num>57.14</td>" in html.stdout


def test_the_command_fails_with_the_reason_when_the_database_cannot_answer(
    pg_dsn, pg_schema, sites_file
):
    env = {"PGOPTIONS": f"-c search_path={pg_schema}"}  # an empty schema: no tables
    result = sitewatch(
        "report", "--month", "2026-11", "--sites", str(sites_file), "--dsn", pg_dsn, env=env
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("sitewatch report: the sitewatch tables do not exist yet")
    closed = "postgresql://nobody@127.0.0.1:1/none"
    result = sitewatch("report", "--month", "2026-11", "--sites", str(sites_file), "--dsn", closed)
    assert result.returncode == 1
    assert result.stderr.startswith("sitewatch report: PostgreSQL could not be reached: ")


# --- the rollups where they suffice, and the timeout (issue 24, item 4) ---------------------------


def test_sites_the_rollup_calls_quiet_keep_what_happened_at_the_months_edges(
    pg_conn, migrated_schema
):
    # Each site's November is all up outside maintenance in the daily rollup, yet the raw runs
    # say otherwise, so each must still be read from them:
    #   late: a maintenance run Oct 31 23:50 lasts until the next run, Nov 1 00:10: 10 minutes
    #   edge: down Oct 31 23:40, up Nov 1 00:20: an incident of 20 minutes in November
    #   judged: east up, west and north missing, judged down at Nov 3 12:00 (quorum 2); up at
    #   12:05: an incident of 5 minutes that no stored check shows
    store_batch(pg_conn, [
        observation("late", at(10, 31, 23, 50), maintenance=True),
        observation("late", at(11, 1, 0, 10)),
        observation("edge", at(10, 31, 23, 40), up=False), observation("edge", at(11, 1, 0, 20)),
        observation("judged", at(11, 3, 12, 0), location="east"),
        observation("judged", at(11, 3, 12, 5), location="east"),
    ])  # fmt: skip
    missing = {"east": "up", "west": "missing", "north": "missing"}
    record_verdict(pg_conn, "judged", at(11, 3, 12, 0), "down", 2, missing)
    record_verdict(pg_conn, "judged", at(11, 3, 12, 5), "up", 2, missing)
    sites = {s.site: s for s in period(pg_conn, *NOVEMBER, NOW).sites}
    assert {name: (s.checks, s.ups, s.maint_checks) for name, s in sites.items()} == {
        "late": (1, 1, 0), "edge": (1, 1, 0), "judged": (2, 2, 0)
    }  # fmt: skip
    assert (sites["late"].maintenance, sites["late"].incidents) == (10 * MINUTE, ())
    assert [(i.start, i.end, i.downtime) for i in sites["edge"].incidents] == [
        (at(10, 31, 23, 40), at(11, 1, 0, 20), 20 * MINUTE)
    ]
    assert [(i.start, i.end, i.downtime) for i in sites["judged"].incidents] == [
        (at(11, 3, 12, 0), at(11, 3, 12, 5), 5 * MINUTE)
    ]


def raw_rows_read(conn) -> int:
    """Rows the test schema's raw partitions have returned so far (sequential scans and index
    entries), by PostgreSQL's own counters."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")  # the counters of this backend
    conn.commit()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables"
            "        WHERE schemaname = current_schema() AND relname LIKE 'site\\_checks\\_p%%')"
            "     + (SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes"
            "        WHERE schemaname = current_schema() AND relname LIKE 'site\\_checks\\_p%%')"
        )
        (count,) = cur.fetchone()
    conn.commit()
    return count


def test_a_month_of_healthy_sites_is_read_from_the_rollup_not_the_raw_checks(
    pg_conn, migrated_schema
):
    # Five sites up every 30 minutes all November (7,200 raw rows) and one site with one
    # incident: before, the report read every raw row of the month; now the healthy sites
    # cost a few index probes and only the troubled one's runs are read.
    every = [at(11, 1, 0, 0) + n * 30 * MINUTE for n in range(30 * 48)]
    for name in ("a", "b", "c", "d", "e"):
        store_batch(pg_conn, [observation(name, when) for when in every])
    store_batch(pg_conn, [
        observation("shop", at(11, 2, 10, 0)), observation("shop", at(11, 2, 10, 5), up=False),
        observation("shop", at(11, 2, 10, 10)),
    ])  # fmt: skip
    before = raw_rows_read(pg_conn)
    got = period(pg_conn, *NOVEMBER, NOW)
    read = raw_rows_read(pg_conn) - before
    assert [(s.site, s.checks, s.ups, len(s.incidents)) for s in got.sites] == [
        *((name, 1440, 1440, 0) for name in "abcde"),
        ("shop", 3, 2, 1),
    ]
    assert read < 200, f"{read} raw rows read for 3 troubled checks"


@pytest.fixture
def locked_rollup(pg_connect, history):
    """Another session holds the daily rollup locked, so any read of it waits (until the test
    ends): a report that takes too long, on demand."""
    other = pg_connect()
    other.execute("LOCK TABLE site_checks_daily IN ACCESS EXCLUSIVE MODE")
    yield history
    other.rollback()


def test_a_report_past_its_timeout_stops_with_a_message_that_names_the_setting(locked_rollup):
    with pytest.raises(StorageError) as raised:
        period(locked_rollup, *NOVEMBER, NOW, timeout=0.2)
    assert str(raised.value) == (
        "PostgreSQL could not read the report of 2026-11-01 to 2026-12-01: the report's read "
        "took longer than 0.2 s and was stopped (SITEWATCH_REPORT_TIMEOUT_SECONDS sets the limit)"
    )
    # the connection is usable, at its own isolation level again
    assert locked_rollup.isolation_level is None and locked_rollup.read_only is None
    locked_rollup.execute("SELECT 1")


def test_the_command_stops_a_report_past_its_timeout(locked_rollup, pg_dsn, pg_schema, sites_file):
    env = {"PGOPTIONS": f"-c search_path={pg_schema}", "SITEWATCH_REPORT_TIMEOUT_SECONDS": "0.5"}
    result = sitewatch(
        "report", "--month", "2026-11", "--sites", str(sites_file), "--dsn", pg_dsn, env=env
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "sitewatch report: PostgreSQL could not read the report of 2026-11-01 to 2026-12-01: the"
        " report's read took longer than 0.5 s and was stopped (SITEWATCH_REPORT_TIMEOUT_SECONDS"
        " sets the limit)\n"
    )
    bad = sitewatch("report", "--month", "2026-11", env={"SITEWATCH_REPORT_TIMEOUT_SECONDS": "0"})
    assert bad.returncode == 2
    assert "SITEWATCH_REPORT_TIMEOUT_SECONDS='0': expected a number of seconds from 0.1 to" in (
        bad.stderr
    )


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 120.0), ("", 120.0), ("0.5", 0.5), ("3600", 3600.0)]
)
def test_the_report_timeout_setting(value, seconds):
    assert report_timeout({} if value is None else {REPORT_TIMEOUT_VAR: value}) == seconds


@pytest.mark.parametrize("value", ["0", "0.05", "3601", "nan", "inf", "two minutes", "-1"])
def test_the_report_timeout_setting_refuses_what_is_not_a_sane_number(value):
    with pytest.raises(SettingError, match=f"^{REPORT_TIMEOUT_VAR}="):
        report_timeout({REPORT_TIMEOUT_VAR: value})
