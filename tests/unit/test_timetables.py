"""SiteTimetable: each run is due at a tick of the schedule plus the site's offset, that moment is
its logical date, no tick is missed or doubled, and Airflow stores and loads it through the plugin.

Exact expectations use dates in 2100: with catchup off the timetable never schedules before the
latest due moment by now, so fixed dates in the past would be overtaken by the real clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pendulum
import pytest
from airflow import plugins_manager
from airflow.exceptions import AirflowTimetableInvalid
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable, DeltaTriggerTimetable

from sitewatch.airflow.factory import site_dag
from sitewatch.airflow.timetables import SiteTimetable
from sitewatch.config.loader import site_for_url
from sitewatch.config.offset import auto_offset
from sitewatch.names import DAG_START

OFFSET = timedelta(seconds=17)
MINUTE = timedelta(minutes=1)
# As the scheduler restricts sitewatch's DAGs (DAG_DEFAULTS); Airflow's times are pendulum's.
SITEWATCH = TimeRestriction(earliest=pendulum.instance(DAG_START), latest=None, catchup=False)
FUTURE = datetime(2100, 1, 1, 12, 0, tzinfo=UTC)  # a Friday


def at(*hms: int, day: int = 1) -> datetime:
    return datetime(2100, 1, day, *hms, tzinfo=UTC)


def next_run(timetable, last_end: datetime | None, restriction=SITEWATCH):
    """What the scheduler asks: the run after one whose data interval ended at ``last_end``
    (pendulum, as Airflow passes it; None: the DAG's first run)."""
    last = None if last_end is None else DataInterval.exact(pendulum.instance(last_end))
    return timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)


def runs(timetable, last_end: datetime, count: int, restriction=SITEWATCH) -> list[datetime]:
    """The logical dates of the next ``count`` runs after ``last_end``, one after the other."""
    dates = []
    for _ in range(count):
        info = next_run(timetable, last_end, restriction)
        assert info.run_after == info.logical_date == info.data_interval.end
        dates.append(last_end := info.logical_date)
    return dates


@pytest.mark.parametrize(
    ("schedule", "airflows"),
    [
        (timedelta(minutes=1), DeltaTriggerTimetable(timedelta(minutes=1))),
        (timedelta(seconds=90), DeltaTriggerTimetable(timedelta(seconds=90))),
        ("*/5 * * * *", CronTriggerTimetable("*/5 * * * *", timezone="UTC")),
        ("0 9 * * mon-fri", CronTriggerTimetable("0 9 * * mon-fri", timezone="UTC")),
    ],
)
def test_runs_are_airflows_ticks_shifted_by_the_offset(schedule, airflows):
    # From a tick in the future Airflow's own trigger timetables give the unshifted ticks.
    ticks = runs(airflows, FUTURE, 12)
    assert runs(SiteTimetable(schedule, OFFSET), FUTURE + OFFSET, 12) == [
        tick + OFFSET for tick in ticks
    ]


def test_interval_ticks_are_multiples_of_the_interval_since_the_epoch():
    assert runs(SiteTimetable(timedelta(minutes=7), OFFSET), at(12, 0), 3) == [
        at(12, 3, 17),  # 2100-01-01 12:03 is 9,767,829 times 7m after 1970-01-01 00:00
        at(12, 10, 17),
        at(12, 17, 17),
    ]


@pytest.mark.parametrize(
    ("after", "first"),
    [
        (at(12, 0, 16, 999999), at(12, 0, 17)),  # just before the offset: that same tick
        (at(12, 0, 17), at(12, 1, 17)),  # exactly on it: the next one, never the same twice
        (at(12, 0, 17, 1), at(12, 1, 17)),
        (at(12, 0, 0), at(12, 0, 17)),  # on the unshifted tick: its shifted run is still due
        (at(11, 59, 59), at(12, 0, 17)),
    ],
)
def test_no_tick_is_missed_or_doubled_across_the_offset(after, first):
    # A last run that is not on the grid: a DAG that ran on Airflow's timetables before.
    for schedule in (timedelta(minutes=1), "* * * * *"):
        assert runs(SiteTimetable(schedule, OFFSET), after, 2) == [first, first + MINUTE]


@pytest.mark.parametrize("schedule", [timedelta(minutes=1), "* * * * *"])
@pytest.mark.parametrize(
    ("earliest", "first"),
    [(at(12, 0, 17), at(12, 0, 17)), (at(12, 0, 18), at(12, 1, 17)), (at(12, 0), at(12, 0, 17))],
)
def test_the_first_run_is_the_first_due_moment_from_the_start_date(schedule, earliest, first):
    restriction = TimeRestriction(earliest=earliest, latest=None, catchup=False)
    assert next_run(SiteTimetable(schedule, OFFSET), None, restriction).logical_date == first


@pytest.mark.parametrize(
    ("schedule", "period"), [(timedelta(minutes=5), timedelta(minutes=5)), ("* * * * *", MINUTE)]
)
@pytest.mark.parametrize("last", [None, datetime(2026, 1, 2, tzinfo=UTC)])
def test_catchup_off_runs_only_the_latest_due_moment(schedule, period, last):
    # sitewatch's DAGs: a scheduler that was down (or a new DAG) checks once now, not once per
    # missed tick. The real clock: the run is the last due moment by the time of asking.
    before = datetime.now(UTC)
    info = next_run(SiteTimetable(schedule, OFFSET), last)
    after = datetime.now(UTC)
    assert before - period < info.logical_date <= after
    assert (info.logical_date.timestamp() - 17) % period.total_seconds() == 0  # on the grid


def test_catchup_on_makes_up_every_missed_tick():
    restriction = TimeRestriction(earliest=DAG_START, latest=None, catchup=True)
    timetable = SiteTimetable("0 * * * *", OFFSET)
    first = next_run(timetable, None, restriction)
    assert first.logical_date == DAG_START + OFFSET
    assert runs(timetable, first.logical_date, 2, restriction) == [
        DAG_START + timedelta(hours=1) + OFFSET,
        DAG_START + timedelta(hours=2) + OFFSET,
    ]


def test_no_run_past_the_end_date():
    restriction = TimeRestriction(earliest=DAG_START, latest=at(12, 1, 16), catchup=False)
    timetable = SiteTimetable(timedelta(minutes=1), OFFSET)
    assert runs(timetable, at(11, 59, 17), 1, restriction) == [at(12, 0, 17)]
    assert next_run(timetable, at(12, 0, 17), restriction) is None


def test_a_manual_run_is_due_when_it_was_triggered():
    interval = SiteTimetable(timedelta(minutes=1), OFFSET).infer_manual_data_interval(
        run_after=at(12, 0, 3)
    )
    assert interval == DataInterval(at(12, 0, 3), at(12, 0, 3))


def test_the_ui_shows_schedule_and_offset():
    interval = SiteTimetable(timedelta(seconds=90), OFFSET)
    assert interval.summary == "every 1m30s at +17s"
    assert interval.description == "every 1m30s, 17s after each multiple of 1m30s since 1970 (UTC)"
    cron = SiteTimetable("*/5 * * * *", timedelta(seconds=3))
    assert cron.summary == "cron */5 * * * * at +3s"
    assert cron.description == "cron */5 * * * * in UTC, each run 3s after the cron's time"


@pytest.mark.parametrize(
    ("schedule", "offset"),
    [
        (timedelta(minutes=1), timedelta(minutes=1)),
        ("*/5 * * * *", timedelta(minutes=1)),
        (timedelta(minutes=1), timedelta(seconds=-1)),
        (timedelta(0), timedelta(0)),
    ],
)
def test_an_offset_outside_the_period_is_an_invalid_timetable(schedule, offset):
    with pytest.raises(AirflowTimetableInvalid):
        SiteTimetable(schedule, offset).validate()


@pytest.mark.parametrize(
    ("overrides", "stored"),
    [
        ({"schedule": "1m", "offset": "17s"}, {"every": 60.0, "offset": 17.0}),
        ({"schedule": "10500ms", "offset": "1500ms"}, {"every": 10.5, "offset": 1.5}),
        ({"schedule": "*/5 * * * *", "offset": "59s"}, {"cron": "*/5 * * * *", "offset": 59.0}),
    ],
)
def test_a_site_dag_round_trips_through_airflows_serialization(overrides, stored):
    # Airflow finds a custom timetable's class only through a plugin: plugins/ must register it.
    assert SiteTimetable in plugins_manager.get_timetables_plugins().values()
    dag = site_dag(site_for_url("https://shop.test/", **overrides))
    data = DagSerialization.to_dict(dag)
    assert data["dag"]["timetable"] == {
        "__type": "sitewatch.airflow.timetables.SiteTimetable",
        "__var": stored,
    }
    loaded = DagSerialization.from_dict(data)
    assert loaded.timetable == dag.timetable
    # As the scheduler asks the stored DAG (with the DAG's start date and catchup).
    last = DagRunInfo.exact(pendulum.instance(FUTURE))
    assert (
        loaded.next_dagrun_info(last_automated_run_info=last).logical_date
        == runs(dag.timetable, FUTURE, 1)[0]
    )


def test_a_backfill_runs_the_due_moments_in_its_range():
    dag = DagSerialization.from_dict(
        DagSerialization.to_dict(site_dag(site_for_url("https://shop.test/", offset="17s")))
    )
    infos = dag.iter_dagrun_infos_between(at(12, 0), at(12, 20))
    assert [info.logical_date for info in infos] == [
        at(12, 0, 17),
        at(12, 5, 17),
        at(12, 10, 17),
        at(12, 15, 17),
    ]


# --- a cold start of many sites: the first runs spread over the steady rate -----------------

SPREAD = timedelta(minutes=10)


def spread(schedule, name: str, spread=SPREAD) -> SiteTimetable:
    """Site ``name``'s timetable as ``factory.site_dag`` makes it with a spread."""
    place = auto_offset(name, spread) if spread else timedelta(0)
    return SiteTimetable(schedule, auto_offset(name, schedule), spread, place)


def first_runs(schedule, count: int, spread_=SPREAD) -> list[datetime]:
    """The first run of ``count`` new sites, as the DAG processor computes it for a new DAG."""
    return [
        next_run(spread(schedule, f"s{i:05d}", spread_), None).logical_date for i in range(count)
    ]


def per_minute(dates: list[datetime], since: datetime) -> list[int]:
    """How many of ``dates`` fall in each minute from one before ``since`` (the grace) on."""
    counts = [0] * 12
    for date in dates:
        counts[int((date.timestamp() - since.timestamp()) // 60) + 1] += 1
    return counts


def test_with_a_spread_10000_sites_on_10m_start_at_the_steady_rate_on_their_own_ticks():
    now = datetime.now(UTC)
    dates = first_runs(timedelta(minutes=10), 10_000)
    counts = per_minute(dates, now)
    # a site due less than a tenth of its step ago stays due; all within 10 minutes
    assert counts[11] == 0 and max(counts) <= 1_200, counts  # 1,000 a minute, as from then on
    for i, date in enumerate(dates[:100]):  # each on its own grid: its next runs follow on
        timetable = spread(timedelta(minutes=10), f"s{i:05d}")
        assert (date - timetable.offset).timestamp() % 600 == 0
        assert next_run(timetable, date).logical_date == date + timedelta(minutes=10)


@pytest.mark.parametrize("schedule", [timedelta(hours=1), "0 0 * * *"])
def test_with_a_spread_a_longer_schedule_starts_within_it_then_keeps_its_own(schedule):
    now = datetime.now(UTC)
    dates = first_runs(schedule, 3_000)
    counts = per_minute(dates, now)
    assert counts[11] == 0 and max(counts) <= 450, counts  # 300 a minute, never 3,000 at once
    # the run after the first is the site's own next due moment
    timetable = spread(schedule, "s00000")
    plain = SiteTimetable(schedule, timetable.offset)
    assert next_run(timetable, dates[0]) == next_run(plain, dates[0])


def test_without_a_spread_every_new_site_is_due_at_once():
    before = datetime.now(UTC)
    dates = first_runs(timedelta(minutes=10), 200, timedelta(0))
    assert all(before - timedelta(minutes=10) < d <= datetime.now(UTC) for d in dates)


def test_with_a_spread_a_site_a_little_behind_runs_at_once_and_one_far_behind_resumes():
    timetable = spread(timedelta(minutes=1), "a")
    now = datetime.now(UTC)
    # the tick after its last run passed less than a step ago: it runs now
    last = now - MINUTE
    last -= timedelta(seconds=(last - timetable.offset).timestamp() % 60)  # a due moment
    assert next_run(timetable, last).logical_date == last + MINUTE <= now
    # the scheduler was down for an hour: not the latest missed tick, its next within a step
    resumed = next_run(timetable, now - timedelta(hours=1)).logical_date
    assert now - timedelta(seconds=6) <= resumed < datetime.now(UTC) + MINUTE
    assert (resumed - timetable.offset).timestamp() % 60 == 0
    # in steady state nothing changes: the next tick after the last
    assert next_run(timetable, FUTURE + timetable.offset).logical_date == (
        FUTURE + timetable.offset + MINUTE
    )


def test_a_spread_round_trips_through_airflows_serialization():
    dag = site_dag(site_for_url("https://shop.test/", schedule="1h", offset="17s"), spread=SPREAD)
    data = DagSerialization.to_dict(dag)
    stored = data["dag"]["timetable"]["__var"]
    assert (stored["every"], stored["offset"], stored["spread"]) == (3600.0, 17.0, 600.0)
    assert stored["spread_offset"] == auto_offset("shop-test", SPREAD).total_seconds()
    assert DagSerialization.from_dict(data).timetable == dag.timetable
