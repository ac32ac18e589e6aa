"""The `offset` site key: `auto` derives a stable, well-spread offset from the name; an explicit
one is kept when it fits the schedule and named in the issue when it does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest

from sitewatch.config.loader import Site, load_text, site_for_url
from sitewatch.config.offset import auto_offset
from sitewatch.errors import ConfigError

MINUTE = timedelta(minutes=1)
NAMES = [f"site-{i:04d}" for i in range(1000)]


def test_auto_offsets_are_pinned_because_changing_them_moves_every_site():
    # A new derivation would shift every deployed site's runs; this pins the current one.
    assert auto_offset("a", timedelta(minutes=5)) == timedelta(seconds=143)
    assert auto_offset("hacker-news", MINUTE) == auto_offset("hacker-news", "*/5 * * * *")
    assert [auto_offset(name, MINUTE).seconds for name in NAMES[:5]] == [52, 54, 46, 52, 49]


def test_auto_offset_is_the_same_in_another_process_with_another_hash_seed():
    script = (
        "import json, sys; from datetime import timedelta;"
        "from sitewatch.config.offset import auto_offset;"
        "print(json.dumps([auto_offset(n, timedelta(minutes=5)).seconds for n in sys.argv[1:]]))"
    )
    here = [auto_offset(name, timedelta(minutes=5)).seconds for name in NAMES[:50]]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script, *NAMES[:50]],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out) == here


@pytest.mark.parametrize("schedule", [timedelta(seconds=10), MINUTE, "*/5 * * * *"])
def test_auto_offsets_spread_over_every_second_of_the_period(schedule):
    seconds = 10 if schedule == timedelta(seconds=10) else 60
    counts = Counter(auto_offset(name, schedule) for name in NAMES)
    assert set(counts) == {timedelta(seconds=s) for s in range(seconds)}  # whole, in range, all
    mean = len(NAMES) / seconds
    # Roughly uniform: no second gets twice its share or less than half (binomial spread of
    # 1,000 draws allows about +-3.5 standard deviations: 17 +- 14 for 60 seconds).
    assert max(counts.values()) < 2 * mean
    assert min(counts.values()) > mean / 2


def test_auto_offsets_spread_over_a_long_interval_too():
    counts = Counter(auto_offset(name, timedelta(hours=1)) // MINUTE for name in NAMES)
    assert set(counts) == set(range(60))
    assert max(counts.values()) < 2 * len(NAMES) / 60


def test_auto_offset_of_an_interval_with_milliseconds_stays_below_it():
    interval = timedelta(milliseconds=10_500)
    assert {auto_offset(name, interval) for name in NAMES} == {
        timedelta(seconds=s) for s in range(10)
    }


def test_sites_get_auto_unless_they_say_otherwise():
    result = load_text("""\
defaults:
  offset: 20s
sites:
  - {name: from-defaults, url: "https://a.test/"}
  - {name: explicit, url: "https://a.test/", schedule: 1m, offset: 59s}
  - {name: milliseconds, url: "https://a.test/", schedule: 10s, offset: 1500ms}
  - {name: auto-again, url: "https://a.test/", schedule: "0 * * * *", offset: auto}
  - {name: zero, url: "https://a.test/", offset: 0s}
""")
    assert result.issues == []
    offsets = {site.name: site.offset for site in result.sites}
    assert offsets == {
        "from-defaults": timedelta(seconds=20),
        "explicit": timedelta(seconds=59),
        "milliseconds": timedelta(milliseconds=1500),
        "auto-again": auto_offset("auto-again", "0 * * * *"),
        "zero": timedelta(0),
    }


def test_auto_is_resolved_for_sites_built_in_code_and_from_the_command_line():
    assert Site(name="a", url="https://a.test/").offset == auto_offset("a", timedelta(minutes=5))
    site = Site(name="a", url="https://a.test/", schedule=MINUTE, offset=timedelta(seconds=3))
    assert site.offset == timedelta(seconds=3)
    adhoc = site_for_url("https://shop.test/", schedule="30s")
    assert adhoc.offset == auto_offset("shop-test", timedelta(seconds=30))
    assert site_for_url("https://shop.test/", offset="29s").offset == timedelta(seconds=29)


def test_an_offset_that_does_not_fit_is_refused_on_the_command_line_too():
    with pytest.raises(ConfigError) as caught:
        site_for_url("https://shop.test/", schedule="1m", offset="1m")
    assert [str(issue) for issue in caught.value.issues] == [
        "<command line>:0: offset: 1m is not shorter than the schedule's interval 1m"
    ]
