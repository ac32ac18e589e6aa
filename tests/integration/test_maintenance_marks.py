"""Checks in maintenance on the real Kafka and PostgreSQL (issue 17): the drain marks those of an
ad-hoc mute (``site_mutes``), the task those of the sites file's windows, and uptime leaves both
out: the rollups count them apart (``maint_checks``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sitewatch.attempt import place
from sitewatch.config.loader import load_text
from sitewatch.observation import Observation
from sitewatch.storage.mutes import add_mutes
from sitewatch.storage.retention import refresh_hourly
from tests.builders import observation
from tests.integration.test_drain import produce, run_drain

T0 = (datetime.now(UTC) - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)


def check(site: str, minute: int, up: bool, maintenance: bool = False) -> Observation:
    """The final check of ``site`` in the run ``minute`` minutes after T0."""
    return observation(site, T0 + timedelta(minutes=minute), up=up, maintenance=maintenance)


def test_the_drain_marks_checks_in_a_mute_and_uptime_leaves_them_out(
    new_topic, pg_conn, migrated_schema
):
    add_mutes(
        pg_conn, ["shop"], T0 + timedelta(minutes=2), T0 + timedelta(minutes=5), "deploy", None
    )
    topic = new_topic()
    checks = [check("shop", m, up=m not in (2, 3, 4)) for m in range(8)]
    checks += [check("blog", m, up=True) for m in range(8)]  # no mute: nothing marked
    checks.append(check("blog", 9, up=False, maintenance=True))  # marked by its task
    produce(topic, checks)
    assert run_drain(topic, pg_conn).inserted == 17

    marked = pg_conn.execute(
        "SELECT site, extract(minute FROM scheduled_at)::int FROM site_checks "
        "WHERE maintenance ORDER BY 1, 2"
    ).fetchall()
    assert marked == [("blog", 9), ("shop", 2), ("shop", 3), ("shop", 4)]

    refresh_hourly(pg_conn, datetime.now(UTC))
    hourly = pg_conn.execute(
        "SELECT site, checks, ups, maint_checks FROM site_checks_hourly ORDER BY site"
    ).fetchall()
    daily = pg_conn.execute(
        "SELECT site, checks, ups, maint_checks FROM site_checks_daily ORDER BY site"
    ).fetchall()
    # shop: 8 checks, 3 of them down but in the mute: 5 counted, all up (100% uptime).
    assert hourly == daily == [("blog", 8, 8, 1), ("shop", 5, 5, 3)]


def test_the_task_marks_a_run_in_a_window_of_the_sites_file():
    (site,) = load_text(
        "sites:\n  - name: shop\n    url: https://shop.example.com/\n    maintenance:\n"
        "      - {cron: '0 23 * * *', duration: 2h, timezone: Europe/Berlin}\n"
    ).sites
    observation = check("shop", 0, up=False)
    inside = datetime(2026, 7, 1, 22, 30, tzinfo=UTC)  # 00:30 in Berlin (summer time)
    place(observation, site, inside, 2)
    assert (observation.scheduled_at, observation.attempt, observation.maintenance) == (
        inside,
        2,
        True,
    )
    place(observation, site, inside + timedelta(hours=1), 1)  # 01:30 Berlin: over
    assert observation.maintenance is False
