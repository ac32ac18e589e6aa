"""Locations and quorum: the keys' resolution, the run deadline, the verdict across locations."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from sitewatch.alerting.quorum import DOWN, MISSING, UP, RunVerdict, decide_run
from sitewatch.config.loader import load_text
from sitewatch.config.locations import run_deadline, verdict_grace
from sitewatch.errors import SettingError
from sitewatch.names import location_queue, probe_task_id


def site(**keys):
    entry = {"name": "s", "url": "https://s.example/", **keys}
    result = load_text(yaml.safe_dump({"sites": [entry]}))
    assert not result.issues, result.issues
    return result.sites[0]


@pytest.mark.parametrize(
    ("locations", "quorum"),
    [(["local"], 1), (["a", "b"], 2), (["a", "b", "c"], 2), (["a", "b", "c", "d"], 3)],
)
def test_majority_is_more_than_half(locations, quorum):
    assert site(locations=locations).quorum == quorum


def test_an_explicit_quorum_is_kept_and_the_default_location_is_local():
    assert site(locations=["a", "b", "c"], quorum=1).quorum == 1
    plain = site()
    assert (plain.locations, plain.quorum) == (("local",), 1)


def test_several_locations_means_more_than_one():
    assert not site().several_locations
    assert not site(locations=["eu"]).several_locations
    assert site(locations=["eu", "us"]).several_locations


def test_queues_and_task_ids_follow_the_locations():
    assert location_queue("local") is None  # Airflow's default queue
    assert location_queue("eu") == "sitewatch-eu"
    assert probe_task_id("local", ("local",)) == "probe"
    assert probe_task_id("eu", ("eu",)) == "probe"
    assert probe_task_id("eu", ("eu", "us")) == "probe.eu"


def test_run_deadline_covers_every_attempt_and_wait_plus_grace():
    s = site(timeout="5s", retries=2, retry_delay="30s")
    assert run_deadline(s, timedelta(seconds=60)) == timedelta(seconds=3 * 5 + 2 * 30 + 60)


def test_verdict_grace_reads_whole_seconds_and_names_a_bad_value():
    assert verdict_grace({}) == timedelta(minutes=2)
    assert verdict_grace({"SITEWATCH_VERDICT_GRACE_SECONDS": "45"}) == timedelta(seconds=45)
    for bad in ("-1", "1.5", "soon", "3601"):
        with pytest.raises(SettingError, match=r"SITEWATCH_VERDICT_GRACE_SECONDS='"):
            verdict_grace({"SITEWATCH_VERDICT_GRACE_SECONDS": bad})


THREE = ("eu", "us", "ap")


@pytest.mark.parametrize(
    ("seen", "quorum", "verdict"),
    [
        ({"eu": UP, "us": UP, "ap": UP}, 2, RunVerdict.UP),
        ({"eu": DOWN, "us": UP, "ap": UP}, 2, RunVerdict.PARTIAL),
        ({"eu": DOWN, "us": DOWN, "ap": UP}, 2, RunVerdict.DOWN),
        ({"eu": DOWN, "us": UP, "ap": UP}, 1, RunVerdict.DOWN),
        ({"eu": DOWN, "us": DOWN, "ap": DOWN}, 3, RunVerdict.DOWN),
    ],
)
def test_the_verdict_counts_the_locations_that_saw_it_down(seen, quorum, verdict):
    decision = decide_run(THREE, quorum, seen, deadline_passed=False)
    assert decision.verdict is verdict
    assert dict(decision.locations) == seen


def test_a_run_waits_for_every_location_until_its_deadline():
    seen = {"eu": DOWN, "us": DOWN}
    assert decide_run(THREE, 2, seen, deadline_passed=False) is None
    decision = decide_run(THREE, 2, seen, deadline_passed=True)
    assert decision.verdict is RunVerdict.DOWN
    assert decision.where(MISSING) == ["ap"]


def test_a_missing_location_is_counted_neither_up_nor_down():
    # two of three down would meet quorum 2 if the silent one counted as down; it must not
    decision = decide_run(THREE, 2, {"eu": DOWN, "us": UP}, deadline_passed=True)
    assert decision.verdict is RunVerdict.PARTIAL
    assert decision.summary == ("down from 1 of 3 locations (quorum 2): eu; up: us; missing: ap")
    assert decide_run(THREE, 1, {"us": UP}, deadline_passed=True).verdict is RunVerdict.UP


def test_a_run_nobody_reported_gets_no_verdict_and_stale_locations_are_ignored():
    assert decide_run(THREE, 2, {}, deadline_passed=True) is None
    decision = decide_run(
        ("eu", "us"), 1, {"eu": UP, "us": UP, "gone": DOWN}, deadline_passed=False
    )
    assert decision.verdict is RunVerdict.UP
    assert list(decision.locations) == ["eu", "us"]


def test_a_kept_silent_location_counts_as_its_last_word_marked_stale():
    # issue 29: west saw the site down, then went silent; east sees it up
    two = ("east", "west")
    before = {"east": UP, "west": DOWN}
    decision = decide_run(two, 1, {"east": UP}, deadline_passed=True, previous=before)
    assert decision.verdict is RunVerdict.DOWN  # not a recovery: nobody saw it come back
    assert dict(decision.locations) == {"east": UP, "west": "missing, last down"}
    assert decision.silent == ["west"] and decision.where(DOWN) == []
    assert decision.summary == (
        "down from 1 of 2 locations (quorum 1): west (silent, last down); up: east"
    )
    # the stale word carries over run after run while the location stays silent
    later = decide_run(two, 1, {"east": UP}, deadline_passed=True, previous=decision.locations)
    assert later.verdict is RunVerdict.DOWN
    assert dict(later.locations) == dict(decision.locations)
    # below the quorum it is partial, as it was
    partial = decide_run(two, 2, {"east": UP}, deadline_passed=True, previous=before)
    assert partial.verdict is RunVerdict.PARTIAL
    # a silent location that never decided, or ignore (previous=None), counts neither way
    unknown = decide_run(two, 1, {"east": UP}, deadline_passed=True, previous={"east": UP})
    assert unknown.verdict is RunVerdict.UP and unknown.locations["west"] == MISSING
    ignored = decide_run(two, 1, {"east": UP}, deadline_passed=True, previous=None)
    assert ignored.verdict is RunVerdict.UP and ignored.silent == ["west"]
    # a kept word never stands in for a location that may still report
    assert decide_run(two, 1, {"east": UP}, deadline_passed=False, previous=before) is None


def test_a_silent_location_that_was_up_keeps_a_down_site_from_reading_down():
    three = ("eu", "us", "ap")
    before = {"eu": UP, "us": UP, "ap": DOWN}
    decision = decide_run(three, 2, {"ap": DOWN, "eu": DOWN}, deadline_passed=True,
                          previous=before)  # fmt: skip
    assert decision.verdict is RunVerdict.DOWN  # two fresh downs meet quorum 2 anyway
    assert decision.locations["us"] == "missing, last up"
