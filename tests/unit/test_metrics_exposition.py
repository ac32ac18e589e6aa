"""sitewatch.dashboard.metrics: what ``/sitewatch/metrics`` renders from a Snapshot, in both
text formats, read back with prometheus_client's own parsers; no services."""

from __future__ import annotations

import math
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import parser as text_parser
from prometheus_client.openmetrics import parser as openmetrics_parser

from sitewatch.config.objectives import Slo
from sitewatch.dashboard.budget import Budget
from sitewatch.dashboard.metrics import (
    FAMILIES,
    PHASES,
    STATES,
    SiteFigures,
    Snapshot,
    exposition,
)
from sitewatch.pipeline.lag import KafkaLag
from sitewatch.storage.metrics import Latest, Pipeline
from sitewatch.storage.slo import Tally

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# What Prometheus 2.x sends by default: OpenMetrics first, text 0.0.4 as the fallback.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
FORMATS = {"text": None, "openmetrics": OPENMETRICS}
EMPTY_PIPELINE = Pipeline(None, None, 0, 0)
NAMES = {family.name: family for family in FAMILIES}


def latest(location: str = "local", site: str = "shop", **changes) -> Latest:
    """A location's latest final check: up, every phase measured, a certificate seen with it."""
    checked = NOW - timedelta(minutes=2)
    row = Latest(
        site=site,
        location=location,
        scheduled_at=checked - timedelta(seconds=1),
        checked_at=checked,
        up=True,
        status_code=200,
        response_time_ms=250.0,
        dns_ms=12.0,
        connect_ms=30.0,
        tls_ms=45.5,
        ttfb_ms=180.0,
        error=None,
        maintenance=False,
        tls_expires_at=NOW + timedelta(days=40),
        tls_seen_at=checked,
        stored=10,
        stored_at=checked + timedelta(seconds=3),
        checks=9,
        ups=8,
    )
    return replace(row, **changes)


def site(name: str = "shop", **changes) -> SiteFigures:
    figures = SiteFigures(
        name=name, state="up", up=True, uptime={}, budget=None, checks=(latest(site=name),)
    )
    return replace(figures, **changes)


def snapshot(*sites: SiteFigures, **changes) -> Snapshot:
    shot = Snapshot(
        now=NOW,
        configured=len(sites),
        sites=sites,
        pipeline=EMPTY_PIPELINE,
        kafka=None,
        duration=0.0125,
    )
    return replace(shot, **changes)


def scrape(shot: Snapshot, fmt: str) -> dict:
    """``shot`` rendered in ``fmt`` and parsed back: {family name as FAMILIES spells it: the
    parsed family}. Fails when the body does not parse or a family appears twice."""
    body, content_type = exposition(shot, FORMATS[fmt])
    text = body.decode("utf-8")
    parse = openmetrics_parser if fmt == "openmetrics" else text_parser
    parsed = {}
    for family in parse.text_string_to_metric_families(text):
        # Both parsers name a counter's family without _total; FAMILIES spells it with.
        name = family.name + "_total" if family.type == "counter" else family.name
        assert name not in parsed, f"{name} declared twice"
        parsed[name] = family
    return parsed


def samples(parsed: dict, name: str) -> dict[tuple, float]:
    """{label values in the family's label order: value} of ``name``'s samples."""
    labels = NAMES[name].labels
    found = {}
    for sample in parsed[name].samples:
        assert sample.name == name
        assert set(sample.labels) == set(labels)
        found[tuple(sample.labels[key] for key in labels)] = sample.value
    return found


@pytest.fixture(params=sorted(FORMATS))
def fmt(request):
    return request.param


def test_every_family_is_declared_from_families_even_with_no_sites(fmt):
    parsed = scrape(snapshot(), fmt)
    # Exactly FAMILIES: a fresh registry, so nothing from the process's global one leaks in.
    assert list(parsed) == [family.name for family in FAMILIES]
    for family in FAMILIES:
        assert parsed[family.name].type == family.kind
        assert parsed[family.name].documentation == family.help
    for family in FAMILIES:
        if "site" in family.labels:
            assert samples(parsed, family.name) == {}, family.name


def test_counter_samples_end_in_total_in_both_formats(fmt):
    pipeline = Pipeline(NOW, NOW, stored_total=12345, rejected_total=3)
    parsed = scrape(snapshot(pipeline=pipeline), fmt)
    counters = [family.name for family in FAMILIES if family.kind == "counter"]
    assert counters == [
        "sitewatch_site_checks_total",
        "sitewatch_site_checks_up_total",
        "sitewatch_checks_stored_total",
        "sitewatch_rejected_messages_total",
    ]
    assert samples(parsed, "sitewatch_checks_stored_total") == {(): 12345}
    assert samples(parsed, "sitewatch_rejected_messages_total") == {(): 3}


def test_a_site_with_no_checks_yet_has_a_state_and_nothing_else(fmt):
    waiting = site(state="no_data", up=None, checks=())
    # Stored attempts but no final one yet: its columns are None, so it shows nothing either.
    retrying = site("blog", state="no_data", up=None, checks=(latest(site="blog", up=None),))
    parsed = scrape(snapshot(waiting, retrying), fmt)
    state = samples(parsed, "sitewatch_site_state")
    for name in ("shop", "blog"):
        shown = {key[1]: value for key, value in state.items() if key[0] == name}
        assert shown == {state: float(state == "no_data") for state in STATES}, name
    assert samples(parsed, "sitewatch_site_up") == {}
    for family in FAMILIES:
        if family.name.startswith(("sitewatch_check_", "sitewatch_tls_", "sitewatch_slo_")):
            assert samples(parsed, family.name) == {}, family.name
    assert samples(parsed, "sitewatch_uptime_ratio") == {}
    assert samples(parsed, "sitewatch_sites_configured") == {(): 2}


def test_site_state_has_one_sample_per_state_and_up_follows_the_verdict(fmt):
    parsed = scrape(snapshot(site(state="degraded"), site("api", state="down", up=False)), fmt)
    state = samples(parsed, "sitewatch_site_state")
    assert len(state) == 2 * len(STATES)
    assert [s for (name, s), value in state.items() if value == 1] == ["degraded", "down"]
    assert samples(parsed, "sitewatch_site_up") == {("shop",): 1, ("api",): 0}


def test_a_state_outside_states_is_refused():
    with pytest.raises(ValueError, match="'asleep' is not one of"):
        exposition(snapshot(site(state="asleep")), None)


def test_the_dashboard_s_no_data_is_the_label_no_data(fmt):
    parsed = scrape(snapshot(site(state="no data", up=None, checks=())), fmt)
    shown = {key[1] for key, value in samples(parsed, "sitewatch_site_state").items() if value}
    assert shown == {"no_data"}


def test_a_site_checked_from_two_locations_has_two_label_sets(fmt):
    eu = latest("eu")
    us = latest(
        "us",
        up=False,
        status_code=503,
        response_time_ms=1500.0,
        checked_at=NOW - timedelta(minutes=1),
    )
    parsed = scrape(snapshot(site(state="partial", checks=(eu, us))), fmt)
    assert samples(parsed, "sitewatch_check_up") == {("shop", "eu"): 1, ("shop", "us"): 0}
    assert samples(parsed, "sitewatch_check_status_code") == {
        ("shop", "eu"): 200,
        ("shop", "us"): 503,
    }
    assert samples(parsed, "sitewatch_check_duration_seconds") == {
        ("shop", "eu"): 0.25,
        ("shop", "us"): 1.5,
    }
    assert samples(parsed, "sitewatch_check_timestamp_seconds") == {
        ("shop", "eu"): (NOW - timedelta(minutes=2)).timestamp(),
        ("shop", "us"): (NOW - timedelta(minutes=1)).timestamp(),
    }
    phases = samples(parsed, "sitewatch_check_phase_seconds")
    assert {key for key in phases if key[1] == "eu"} == {("shop", "eu", p) for p in PHASES}
    assert phases[("shop", "eu", "tls")] == 0.0455
    assert phases[("shop", "eu", "ttfb")] == 0.18


def test_phases_and_figures_a_check_did_not_measure_are_absent(fmt):
    # Plain http to an IP address: no DNS, no TLS; the other location was refused outright.
    http = latest("eu", dns_ms=None, tls_ms=None, tls_expires_at=None, tls_seen_at=None)
    refused = latest(
        "us",
        up=False,
        status_code=None,
        response_time_ms=None,
        dns_ms=None,
        connect_ms=None,
        tls_ms=None,
        ttfb_ms=None,
        error="connect",
    )
    parsed = scrape(snapshot(site(state="partial", checks=(http, refused))), fmt)
    assert samples(parsed, "sitewatch_check_phase_seconds") == {
        ("shop", "eu", "connect"): 0.03,
        ("shop", "eu", "ttfb"): 0.18,
    }
    assert samples(parsed, "sitewatch_check_status_code") == {("shop", "eu"): 200}
    assert samples(parsed, "sitewatch_check_duration_seconds") == {("shop", "eu"): 0.25}
    assert samples(parsed, "sitewatch_check_up") == {("shop", "eu"): 1, ("shop", "us"): 0}


def test_tls_expiry_only_from_a_check_within_24_hours(fmt):
    expires = NOW + timedelta(days=40)
    checks = (
        latest("fresh", tls_seen_at=NOW - timedelta(hours=23, minutes=59)),
        latest("stale", tls_seen_at=NOW - timedelta(hours=24, minutes=1)),
        latest("none", tls_expires_at=None, tls_seen_at=None),
        # A refused check keeps the expiry an earlier one saw; still fresh, still shown.
        latest("kept", up=False, status_code=None, tls_seen_at=NOW - timedelta(hours=2)),
    )
    parsed = scrape(snapshot(site(checks=checks)), fmt)
    assert samples(parsed, "sitewatch_tls_cert_expiry_timestamp_seconds") == {
        ("shop", "fresh"): expires.timestamp(),
        ("shop", "kept"): expires.timestamp(),
    }


def test_uptime_ratio_per_window_skips_windows_without_checks(fmt):
    uptime = {"24h": Tally(288, 287), "7d": Tally(2016, 2016), "30d": Tally(0, 0)}
    parsed = scrape(snapshot(site(uptime=uptime)), fmt)
    assert samples(parsed, "sitewatch_uptime_ratio") == {
        ("shop", "24h"): pytest.approx(287 / 288),
        ("shop", "7d"): 1,
    }


def test_slo_figures_as_ratios(fmt):
    slo = Slo(target=99.9)
    spent = Budget(
        slo, Tally(100, 0), -99.0, -4000.0, burn=math.inf, burn_window=timedelta(hours=1)
    )
    fresh = Budget(Slo(target=99.5), Tally(0, 0), None, None, None, timedelta(hours=6))
    parsed = scrape(snapshot(site(budget=spent), site("api", budget=fresh)), fmt)
    assert samples(parsed, "sitewatch_slo_objective_ratio") == {
        ("shop",): pytest.approx(0.999),
        ("api",): pytest.approx(0.995),
    }
    assert samples(parsed, "sitewatch_slo_error_budget_remaining_ratio") == {("shop",): -99}


def test_final_check_counters_per_location_also_before_the_first_final_check(fmt):
    checks = (latest(), latest("east", checks=0, ups=0, up=None, checked_at=None))
    parsed = scrape(snapshot(site(checks=checks)), fmt)
    assert samples(parsed, "sitewatch_site_checks_total") == {
        ("shop", "local"): 9,
        ("shop", "east"): 0,
    }
    assert samples(parsed, "sitewatch_site_checks_up_total") == {
        ("shop", "local"): 8,
        ("shop", "east"): 0,
    }
    assert samples(parsed, "sitewatch_check_up") == {("shop", "local"): 1}


def test_pipeline_figures(fmt):
    pipeline = Pipeline(
        newest_checked_at=NOW - timedelta(seconds=90),
        newest_stored_at=NOW - timedelta(seconds=85),
        stored_total=7,
        rejected_total=0,
    )
    parsed = scrape(snapshot(pipeline=pipeline, configured=4, duration=0.5, problems=2), fmt)
    assert samples(parsed, "sitewatch_sites_configured") == {(): 4}
    assert samples(parsed, "sitewatch_sites_file_problems") == {(): 2}
    assert samples(parsed, "sitewatch_drain_lag_seconds") == {(): 90}
    stored = (NOW - timedelta(seconds=85)).timestamp()
    assert samples(parsed, "sitewatch_drain_last_stored_timestamp_seconds") == {(): stored}
    assert samples(parsed, "sitewatch_metrics_duration_seconds") == {(): 0.5}


def test_drain_lag_is_absent_before_the_first_check_and_never_negative(fmt):
    parsed = scrape(snapshot(), fmt)
    assert samples(parsed, "sitewatch_drain_lag_seconds") == {}
    assert samples(parsed, "sitewatch_drain_last_stored_timestamp_seconds") == {}
    assert samples(parsed, "sitewatch_checks_stored_total") == {(): 0}
    ahead = Pipeline(NOW + timedelta(seconds=5), NOW, 1, 0)  # a worker's clock ahead of ours
    assert samples(scrape(snapshot(pipeline=ahead), fmt), "sitewatch_drain_lag_seconds") == {(): 0}


def test_kafka_not_read_shows_no_kafka_samples(fmt):
    parsed = scrape(snapshot(kafka=None), fmt)
    assert samples(parsed, "sitewatch_kafka_up") == {}
    assert samples(parsed, "sitewatch_kafka_consumer_lag_messages") == {}


def test_kafka_error_shows_down_and_no_lag(fmt):
    # Partitions are empty with an error; given some anyway, none may pass for a current lag.
    failed = KafkaLag("sitewatch.checks", "sitewatch-drain", {0: 5}, error="broker unreachable")
    parsed = scrape(snapshot(kafka=failed), fmt)
    assert samples(parsed, "sitewatch_kafka_up") == {(): 0}
    assert samples(parsed, "sitewatch_kafka_consumer_lag_messages") == {}


def test_kafka_lag_per_partition(fmt):
    lag = KafkaLag("sitewatch.checks", "sitewatch-drain", {2: 0, 0: 5, 1: 120})
    parsed = scrape(snapshot(kafka=lag), fmt)
    assert samples(parsed, "sitewatch_kafka_up") == {(): 1}
    assert samples(parsed, "sitewatch_kafka_consumer_lag_messages") == {
        ("sitewatch.checks", "0", "sitewatch-drain"): 5,
        ("sitewatch.checks", "1", "sitewatch-drain"): 120,
        ("sitewatch.checks", "2", "sitewatch-drain"): 0,
    }


def test_label_values_with_quotes_backslashes_and_newlines_survive(fmt):
    # Site names are [a-z0-9_-], but a topic (SITEWATCH_TOPIC) or a group can hold anything.
    odd = 'we"ird\\topic\nname'
    lag = KafkaLag(odd, 'group "a"\\', {0: 1})
    parsed = scrape(snapshot(site(odd), kafka=lag), fmt)
    assert samples(parsed, "sitewatch_site_up") == {(odd,): 1}
    assert samples(parsed, "sitewatch_kafka_consumer_lag_messages") == {
        (odd, "0", 'group "a"\\'): 1
    }


@pytest.mark.parametrize(
    ("accept", "media_type", "version"),
    [
        (None, "text/plain", "0.0.4"),
        ("", "text/plain", "0.0.4"),
        ("text/plain", "text/plain", "0.0.4"),
        ("*/*", "text/plain", "0.0.4"),
        ("application/openmetrics-text", "application/openmetrics-text", "1.0.0"),
        (OPENMETRICS, "application/openmetrics-text", "1.0.0"),
        (PROMETHEUS_ACCEPT, "application/openmetrics-text", "1.0.0"),
    ],
)
def test_content_type_follows_accept(accept, media_type, version):
    body, content_type = exposition(snapshot(site()), accept)
    kind, *params = (part.strip() for part in content_type.split(";"))
    params = dict(param.split("=", 1) for param in params)
    assert (kind, params["version"], params["charset"]) == (media_type, version, "utf-8")
    # The body is the format the type names: only OpenMetrics ends in "# EOF".
    assert body.endswith(b"# EOF\n") == (media_type == "application/openmetrics-text")


# Units: base units only (Prometheus naming guide); no unit word may be a scaled one.
SCALED_UNITS = {"ms", "milliseconds", "microseconds", "minutes", "hours", "days", "percent"}
# OpenMetrics gives these suffixes to the samples of other types; a gauge must not end in one.
RESERVED_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket", "_info", "_gcount")


@pytest.mark.parametrize("family", FAMILIES, ids=[family.name for family in FAMILIES])
def test_family_names_follow_the_conventions(family):
    assert re.fullmatch(r"sitewatch_[a-z][a-z0-9_]*[a-z0-9]", family.name)
    assert family.kind in ("gauge", "counter")
    if family.kind == "counter":
        assert family.name.endswith("_total")
    else:
        assert not family.name.endswith(RESERVED_SUFFIXES)
    words = family.name.removesuffix("_total").split("_")
    assert not SCALED_UNITS & set(words)
    if "timestamp" in words:
        assert family.name.endswith("_timestamp_seconds")
    if "seconds" in words or "ratio" in words:
        assert words[-1] in ("seconds", "ratio")  # the unit comes last
    for label in family.labels:
        assert re.fullmatch(r"[a-z][a-z_]*", label) and label not in ("le", "quantile")
    assert family.help and "\n" not in family.help


def test_a_thousand_sites_render(fmt, capsys):
    sites = [
        site(
            f"site-{i:04d}",
            uptime={"24h": Tally(288, 287), "7d": Tally(2016, 2010), "30d": Tally(8640, 8600)},
            budget=Budget(Slo(99.9), Tally(8640, 8600), 0.5, 20.0, 0.4, timedelta(hours=1)),
            checks=(latest("eu", site=f"site-{i:04d}"), latest("us", site=f"site-{i:04d}")),
        )
        for i in range(1000)
    ]
    shot = snapshot(*sites, kafka=KafkaLag("sitewatch.checks", "g", {0: 1, 1: 2, 2: 3}))
    started = time.perf_counter()
    body, _ = exposition(shot, FORMATS[fmt])
    elapsed = time.perf_counter() - started
    with capsys.disabled():  # a sanity figure for the reader, not a timed assertion
        print(f"\n1,000 sites in {fmt}: {len(body):,} bytes in {elapsed * 1000:.0f} ms")
    parsed = scrape(shot, fmt)
    assert len(samples(parsed, "sitewatch_site_state")) == 1000 * len(STATES)
    assert len(samples(parsed, "sitewatch_check_phase_seconds")) == 2000 * len(PHASES)
