"""sitewatch.dashboard.timeaxis and the charts that use it: a new site's chart starts at its
first check, labels carry dates where the axis crosses a UTC day, and the budget chart starts at
the first day with checks."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from sitewatch.alerting.slo import budget_series
from sitewatch.config.objectives import Slo
from sitewatch.dashboard import budget, render, status, timeaxis
from sitewatch.storage.slo import Tally
from tests.unit.test_dashboard_status import SUMMARY

NOW = datetime(2026, 12, 6, 10, 33, tzinfo=UTC)
DAY = timedelta(hours=24)


def labels(svg: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, text in re.findall(r"data-axis=(\w+)>([^<]*)</text>", svg):
        found.setdefault(kind, []).append(text)
    return found


def test_an_axis_starts_at_the_first_check_when_that_is_inside_the_window():
    eight = NOW - timedelta(minutes=8)
    assert timeaxis.axis_start(eight, NOW, DAY) == eight
    assert timeaxis.axis_start(None, NOW, DAY) == NOW - DAY
    assert timeaxis.axis_start(NOW - 2 * DAY, NOW, DAY) == NOW - DAY
    just_now = NOW - timedelta(seconds=10)
    assert timeaxis.axis_start(just_now, NOW, DAY) == NOW - timeaxis.MIN_SPAN


def test_ticks_are_round_times_and_at_most_seven():
    assert timeaxis.ticks(NOW - timedelta(minutes=8), NOW) == [
        datetime(2026, 12, 6, 10, m, tzinfo=UTC) for m in (26, 28, 30, 32)
    ]
    day = timeaxis.ticks(NOW - DAY, NOW)
    assert len(day) <= 7 and all(t.minute == 0 and t.hour % 6 == 0 for t in day)
    assert datetime(2026, 12, 6, tzinfo=UTC) in day
    assert timeaxis.tick_label(datetime(2026, 12, 6, tzinfo=UTC)) == "2026-12-06"
    assert timeaxis.tick_label(datetime(2026, 12, 5, 18, tzinfo=UTC)) == "18:00"


def test_a_24_hour_chart_labels_its_ends_with_their_dates():
    series = [(NOW - timedelta(hours=h), 100.0, True, False) for h in (20, 10, 1)]
    svg = render.chart(series, NOW)
    found = labels(svg)
    assert found["start"] == ["2026-12-05 10:33"] and found["end"] == ["2026-12-06 10:33 UTC"]
    assert "2026-12-06" in found["tick"]  # midnight, where the day changes
    assert f'data-start="{(NOW - DAY).isoformat()}"' in svg


def test_a_chart_within_one_day_dates_its_start_only():
    first = NOW - timedelta(minutes=8)
    svg = render.chart([(first, 90.0, True, False), (NOW, 95.0, True, False)], NOW, first=first)
    found = labels(svg)
    assert found["start"] == ["2026-12-06 10:25"] and found["end"] == ["10:33 UTC"]
    # the first check at the left edge, the last at the right: the data fills the chart
    xs = [float(x) for x in re.search(r'points="([^"]*)"', svg)[1].replace(",", " ").split()[::2]]
    assert xs == [56.0, 890.0]


def test_a_new_sites_page_charts_from_its_first_check():
    first = NOW - timedelta(minutes=8)
    series = [(first + timedelta(minutes=m), 90.0, True, False) for m in range(0, 8, 2)]
    new = replace(SUMMARY, checks_24h=4, checks_7d=4, checks_30d=4)
    html = render.site_page("shop", new, status.UP, series, [], NOW)
    assert f'data-start="{first.isoformat()}"' in html
    assert "Response time since the first check, 8 min ago (final attempts)" in html
    # a site with older checks keeps the whole window, even when its last day has a gap
    html = render.site_page("shop", SUMMARY, status.UP, series, [], NOW)
    assert f'data-start="{(NOW - DAY).isoformat()}"' in html
    assert "Response time, last 24 h (final attempts)" in html


def test_the_budget_series_starts_at_the_first_day_with_checks():
    slo = Slo(99.0, window=timedelta(days=30))
    days = [(date(2026, 12, d), Tally(0, 0)) for d in range(1, 6)]
    days.append((date(2026, 12, 6), Tally(8, 8)))
    assert budget_series(days, slo) == [(date(2026, 12, 6), 1.0)]
    assert budget_series(days[:5], slo) == []


def test_a_budget_chart_of_one_day_has_one_point_and_one_label():
    svg = budget.chart([(date(2026, 12, 6), 1.0)])
    assert svg.count("<circle") == 1
    assert svg.count(">2026-12-06</text>") == 1


def test_a_budget_chart_since_the_first_check_says_so():
    slo = Slo(99.0, window=timedelta(days=30))
    tally = Tally(8, 8)
    figures = budget.Budget(slo, tally, 1.0, 432.0, 0.0, timedelta(hours=1))
    site = budget.SiteBudget(figures, 100.0, 90.0, None, (), ((NOW.date(), 1.0),))
    html = budget.section(site, slo, NOW)
    assert "Error budget left since the first check, 2026-12-06 (UTC days; window 30d)" in html
    old = replace(site, series=((date(2026, 11, 6), 1.0), (NOW.date(), 1.0)))
    assert "Error budget left over the last 30d (UTC days)" in budget.section(old, slo, NOW)
