"""How the dashboard writes what it shows: one way for an error on every page, one format for
every percentage, headers that look sortable."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest

from sitewatch.config.objectives import Slo
from sitewatch.dashboard import budget, locations, render, status
from sitewatch.storage.queries import Attempt
from sitewatch.storage.slo import Tally
from tests.unit.test_dashboard_status import NOW, SUMMARY

ERROR = "status: status 503 <not> in 200-399"


def test_an_error_reads_one_way():
    assert status.error_text("status", "status 503 not in 200-399") == (
        "status: status 503 not in 200-399"
    )
    assert status.error_text("timeout", None) == "timeout"
    assert status.error_text(None, None) == ""


def test_the_listing_the_attempts_and_the_locations_write_an_error_alike():
    listing = render.listing([("shop", SUMMARY, status.DOWN)], NOW)
    escaped = "status: status 503 &lt;not&gt; in 200-399"
    assert f'<span class="err" title="{escaped}">{escaped}</span>' in listing
    attempt = Attempt(NOW, 1, True, NOW, False, 503, 90.0, 40.0, "status",
                      "status 503 <not> in 200-399")  # fmt: skip
    page = render.site_page("shop", SUMMARY, status.DOWN, [], [attempt], NOW)
    assert f"<td>{escaped}</td>" in page and " — " not in page.split("id=attempts")[1]
    # a location's cell and a run's cell say it on hover, escaped where they are written
    assert locations._error("status", "status 503 <not> in 200-399") == f" · {ERROR}"
    assert locations._error("status", None) == " · status"


def test_a_long_error_is_cut_short_in_the_listing_and_whole_on_hover():
    long = replace(SUMMARY, last_error_detail="x" * 200)
    cell = re.search(r'<span class="err" title="([^"]*)">([^<]*)</span>',
                     render.listing([("shop", long, status.DOWN)], NOW))  # fmt: skip
    assert cell[1] == "status: " + "x" * 200
    assert len(cell[2]) == 60 and cell[2].endswith("…")


@pytest.mark.parametrize(
    ("left", "text"),
    [(1.0, "100.00%"), (0.99999, "99.99%"), (0.7, "70.00%"), (-0.44927, "-44.93%"),
     (-1.0, "-100.00%"), (0.0, "0.00%")],
)  # fmt: skip
def test_a_budget_left_has_two_decimals_like_every_percentage(left, text):
    assert status.budget_percent(left) == text
    assert status.uptime(1, 1) == "100.00%"  # the uptimes' format


def test_sortable_headers_look_sortable():
    head = render.listing([], NOW, sort="burn")
    sortable = re.findall(
        r'<a class=sort href="\?sort=(\w+)"[^>]*>[^<]*<span class="([^"]*)">', head
    )
    assert sortable == [("name", "mark"), ("status", "mark"), ("budget", "mark"),
                        ("burn", "mark on")]  # fmt: skip
    assert "a.sort{cursor:pointer" in head
    assert "<th>Last check</th>" in head  # a header that does not sort has no link nor mark


def test_attainment_is_written_as_the_uptimes_are():
    slo = Slo(99.0, window=timedelta(days=30))
    figures = budget.Budget(slo, Tally(2000, 1999), 0.95, 410.0, 0.0, timedelta(hours=1))
    site = budget.SiteBudget(figures, 99.95, 90.0, None, (), ())
    cards = dict(re.findall(r'data-card="([^"]+)">[^<]*<b>([^<]*)', budget.section(site, slo, NOW)))
    assert (cards["Attainment"], cards["Budget left"]) == ("99.95%", "95.00%")
