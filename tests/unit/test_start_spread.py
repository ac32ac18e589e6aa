"""How many sites a cold start makes due at once (sitewatch.airflow.factory.start_spread).

A scheduler that starts with 10,000 site DAGs, none of which has run, would otherwise make all
10,000 due in its first second (tests/unit/test_timetables.py shows the timetable's side).
"""

import logging
from datetime import timedelta

import pytest

from sitewatch.airflow.factory import (
    MAX_SPREAD,
    START_RATE,
    START_RATE_VAR,
    site_dags,
    start_rate,
    start_spread,
)


@pytest.mark.parametrize(
    ("sites", "minutes"),
    [(1, 0), (START_RATE, 0), (START_RATE + 1, 2), (1_000, 2), (2_600, 6), (10_000, 10)],
)
def test_up_to_the_rate_all_start_at_once_more_spread_over_whole_minutes(sites, minutes):
    assert start_spread(sites) == timedelta(minutes=minutes)


def test_the_spread_never_passes_ten_minutes():
    assert start_spread(1_000_000) == MAX_SPREAD == timedelta(minutes=10)
    assert start_spread(1_000_000, rate=1) == MAX_SPREAD


@pytest.mark.parametrize("value", ["0", "-3", "fast", "1.5"])
def test_a_bad_start_rate_is_logged_and_the_default_used(monkeypatch, caplog, value):
    monkeypatch.setenv(START_RATE_VAR, value)
    with caplog.at_level(logging.ERROR, logger="sitewatch.airflow.factory"):
        assert start_rate() == START_RATE
    assert f"{START_RATE_VAR}={value!r} is not a whole number above 0" in caplog.text


def test_the_factory_gives_every_site_the_spread_of_all_enabled_sites(tmp_path, monkeypatch):
    sites = tmp_path / "sites.yaml"
    entries = "".join(f"  - name: s{i}\n    url: http://127.0.0.1:9/\n" for i in range(5))
    sites.write_text(
        f"sites:\n{entries}  - name: off\n    url: http://127.0.0.1:9/\n    enabled: false\n"
    )
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(sites))
    monkeypatch.setenv("SITEWATCH_CACHE_DIR", str(tmp_path / "cache"))
    assert {d.timetable.spread for d in site_dags().values()} == {timedelta(0)}
    monkeypatch.setenv(START_RATE_VAR, "2")  # 5 enabled sites at 2 a minute: 3 minutes
    timetables = [d.timetable for d in site_dags().values()]
    assert len(timetables) == 5
    assert {t.spread for t in timetables} == {timedelta(minutes=3)}
    places = {t.spread_offset for t in timetables}
    assert len(places) > 1 and all(timedelta(0) <= p < timedelta(minutes=3) for p in places)
