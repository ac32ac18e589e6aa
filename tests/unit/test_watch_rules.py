"""Watch the watcher (``sitewatch.judge.watch``): when sitewatch itself cannot judge, from made-up
looks one minute apart, no services."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.alerting.incident_keys import Action, Incident, incident_for
from sitewatch.alerting.rules import Kind
from sitewatch.config.loader import load_sites
from sitewatch.config.notify import WebhookTarget
from sitewatch.errors import SettingError
from sitewatch.judge.watch import (
    EVERY,
    STALL,
    Look,
    WatchSettings,
    WatchState,
    decide,
    look,
    pipeline_targets,
    undelivered,
)
from sitewatch.pipeline.lag import KafkaLag

T0 = datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)
PROBLEM, OVER = Kind.PIPELINE, Kind.PIPELINE_OVER


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def healthy(minute: float, offset: int = 0, lag: int = 0) -> Look:
    """The drain at committed ``offset`` on partition 0 with ``lag`` messages waiting."""
    return Look(at(minute), lag={0: lag, 1: 0}, committed={0: offset, 1: 7})


def kafka_down(minute: float) -> Look:
    return Look(at(minute), kafka_error="timed out after 15s: Connection refused")


def database_down(minute: float, offset: int = 0, lag: int = 0) -> Look:
    return Look(
        at(minute),
        lag={0: lag},
        committed={0: offset},
        database_error="PostgreSQL unreachable on sitewatch_postgres_alerting: refused",
    )


def play(looks, state: WatchState | None = None, restart: bool = False):
    """Feed ``looks`` in order; return the final state and (minute, kind) of each message.
    restart: the state goes through JSON between looks, as the DAG keeps it."""
    state, sent = state or WatchState(), []
    for seen in looks:
        if restart:
            state = WatchState.from_json(state.to_json())
        state, alert = decide(state, seen)
        if alert is not None:
            sent.append(((seen.at - T0) / timedelta(minutes=1), alert.kind))
    return state, sent


def test_a_healthy_pipeline_says_nothing():
    busy = [healthy(m, offset=100 * m, lag=50) for m in range(60)]  # always behind, but moving
    idle = [healthy(m, offset=0, lag=0) for m in range(60, 120)]
    state, sent = play(busy + idle)
    assert sent == []
    assert state.problem_since is None


def test_a_stalled_drain_is_one_problem_after_three_minutes_then_one_all_clear():
    looks = [healthy(0, offset=10)]
    looks += [healthy(m, offset=10, lag=m) for m in range(1, 8)]  # messages pile up, unread
    looks += [healthy(m, offset=20 + m, lag=0) for m in range(8, 20)]  # the drain resumes
    state, sent = play(looks)
    # waiting first seen at minute 1, so sure at minute 4; healthy at 8 and 9: over at 9
    assert sent == [(4, PROBLEM), (9, OVER)]
    assert state.problem_since is None and state.over_at == at(9)


def test_the_messages_name_the_pipeline_not_a_site():
    state = WatchState()
    for m in range(1, 5):
        state, alert = decide(state, healthy(m, offset=10, lag=3 * m))
    assert alert.kind is PROBLEM
    assert (alert.site, alert.url, alert.concern) == ("sitewatch pipeline", "", "pipeline")
    assert (alert.since, alert.at, alert.error) == (at(1), at(4), "drain stalled")
    assert alert.detail == (
        "the drain's committed offsets have not moved for 3m while 12 messages wait (partitions 0)"
    )
    document = alert.document()
    assert (document["site"], document["concern"], document["state"]) == (
        None,
        "pipeline",
        "PIPELINE PROBLEM",
    )
    assert alert.title == (
        "[sitewatch] PIPELINE PROBLEM: sitewatch pipeline (drain stalled: the drain's committed"
        " offsets have not moved for 3m while 12 messages wait (partitions 0))"
    )
    assert ("note", "sitewatch itself failed; this says nothing about any site") in alert.lines()
    trigger = incident_for(alert)
    assert (trigger.action, trigger.key) == (Action.TRIGGER, "sitewatch/pipeline")

    state, _ = decide(state, healthy(5, offset=30))
    state, over = decide(state, healthy(6, offset=30))
    assert (over.kind, over.since, over.at, over.concern) == (OVER, at(1), at(6), "pipeline")
    assert over.detail.endswith("; it was: drain stalled")
    assert incident_for(over) == Incident(Action.RESOLVE, "sitewatch/pipeline", "info")


def test_looks_that_start_a_little_early_still_see_the_stall_on_time():
    # the scheduler starts each look a fraction of a second before the previous one's minute
    looks = [
        Look(T0 + timedelta(seconds=59.6 * i), lag={0: 1 + i}, committed={0: 4}) for i in range(4)
    ]
    state = WatchState()
    for seen in looks:
        state, alert = decide(state, seen)
    assert (alert.kind, alert.at) == (PROBLEM, T0 + timedelta(seconds=178.8))
    # ... but a span well short of STALL is not one
    short = [Look(T0 + timedelta(seconds=55 * i), lag={0: 1}, committed={0: 4}) for i in range(4)]
    assert play(short)[1] == []


def test_a_stall_is_timed_per_partition():
    looks = [
        Look(at(m), lag={0: 5, 1: 5}, committed={0: 100 + m, 1: 40}) for m in range(0, 3)
    ]  # partition 0 moves; partition 1 does not
    looks.append(Look(at(3), lag={0: 5, 1: 5}, committed={0: 103, 1: 40}))
    _, sent = play(looks)
    assert sent == [(3, PROBLEM)]


@pytest.mark.parametrize("down", [kafka_down, database_down], ids=["kafka", "database"])
def test_unreachable_at_two_looks_in_a_row_is_one_problem(down):
    looks = [healthy(0), down(1), healthy(2), down(3)]  # one bad look at a time: nothing
    looks += [down(m) for m in range(4, 30)]
    looks += [healthy(m) for m in range(30, 40)]
    state, sent = play(looks)
    assert sent == [(4, PROBLEM), (31, OVER)]
    assert state.problem_since is None


def test_kafka_and_database_name_what_failed_and_since_when():
    state = WatchState()
    for seen in (healthy(0), kafka_down(1), kafka_down(2)):
        state, alert = decide(state, seen)
    assert (alert.error, alert.since) == ("Kafka", at(1))
    assert alert.detail == "timed out after 15s: Connection refused"
    state = WatchState()
    for seen in (database_down(1), database_down(2)):
        state, alert = decide(state, seen)
    assert (alert.error, alert.since) == ("results database", at(1))
    assert alert.detail.startswith("PostgreSQL unreachable on sitewatch_postgres_alerting")


def test_a_kafka_outage_does_not_pass_for_a_stall_of_the_offsets_it_hid():
    # messages waited from minute 0 at offset 10; Kafka cannot be read at minute 3
    looks = [healthy(m, offset=10, lag=4) for m in range(3)] + [kafka_down(3)]
    state, sent = play(looks)
    assert sent == []
    # once Kafka answers again with the offset still unmoved, the stall is sure
    state, alert = decide(state, healthy(4, offset=10, lag=4))
    assert (alert.kind, alert.error, alert.since) == (PROBLEM, "drain stalled", at(0))


def test_a_cause_that_changes_while_open_sends_nothing_more():
    looks = [kafka_down(m) for m in range(1, 4)]
    # the database is down, so the drain stores nothing while messages pile up ...
    looks += [database_down(m, offset=10, lag=m) for m in range(4, 8)]
    looks += [healthy(m, offset=10, lag=m) for m in range(8, 14)]  # ... and it is stuck after
    looks += [healthy(m, offset=20 + m) for m in range(14, 17)]
    state, sent = play(looks)
    assert sent == [(2, PROBLEM), (15, OVER)]
    assert state.error is None


def test_flapping_every_other_look_never_alerts():
    looks = [(kafka_down if m % 2 else healthy)(m) for m in range(180)]
    looks += [(database_down if m % 2 else healthy)(m) for m in range(180, 360)]
    assert play(looks)[1] == []


def test_flapping_in_pairs_settles_into_one_open_problem_not_a_storm():
    # two looks down, two up, for three hours: each flap is sure, and each could be over
    looks = [(kafka_down if m % 4 < 2 else healthy)(m) for m in range(180)]
    looks += [healthy(m) for m in range(180, 240)]  # then an hour of health
    state, sent = play(looks)
    # the first problem ends as usual; it came back within the hour, so its all-clear waits
    # for 15 minutes of health, which the flapping never gives
    assert sent == [(1, PROBLEM), (3, OVER), (5, PROBLEM), (193, OVER)]
    assert state.problem_since is None


def test_a_problem_an_hour_after_the_last_all_clear_clears_quickly_again():
    looks = [kafka_down(m) for m in range(0, 3)] + [healthy(m) for m in range(3, 70)]
    looks += [kafka_down(m) for m in range(70, 73)] + [healthy(m) for m in range(73, 76)]
    assert play(looks)[1] == [(1, PROBLEM), (4, OVER), (71, PROBLEM), (74, OVER)]


def test_the_state_survives_a_restart_of_the_watcher():
    looks = [healthy(0, offset=10)]
    looks += [healthy(m, offset=10, lag=m) for m in range(1, 8)]
    looks += [kafka_down(m) for m in range(8, 12)]
    looks += [(kafka_down if m % 4 < 2 else healthy)(m) for m in range(12, 40)]
    looks += [healthy(m, offset=50 + m) for m in range(40, 60)]
    assert play(looks, restart=True) == play(looks)
    assert play(looks, restart=True)[1][0] == (4, PROBLEM)


def test_an_open_problem_outlives_a_watcher_that_was_away():
    open_problem, sent = play([kafka_down(m) for m in range(3)])
    assert sent == [(1, PROBLEM)]
    # the watcher did not run for half an hour; its first looks after are of a pipeline that
    # still fails: no second PROBLEM
    later, sent = play([kafka_down(m) for m in range(33, 36)], state=open_problem, restart=True)
    assert sent == []
    _, sent = play([healthy(m) for m in range(36, 39)], state=later, restart=True)
    assert sent == [(37, OVER)]


def test_looks_before_a_gap_are_no_evidence_after_it():
    looks = [kafka_down(0), kafka_down(10), kafka_down(11)]  # not two in a row: 10 min apart
    assert play(looks)[1] == [(11, PROBLEM)]
    stall = [healthy(0, offset=5, lag=3), healthy(30, offset=5, lag=3)]  # nobody saw 30 min
    stall += [healthy(m, offset=5, lag=3) for m in range(31, 34)]
    assert play(stall)[1] == [(33, PROBLEM)]


def test_an_undelivered_problem_is_sent_again_while_it_lasts():
    state, sent = play([kafka_down(m) for m in range(3)])
    assert sent == [(1, PROBLEM)]
    state, sent = play([kafka_down(3), kafka_down(4)], state=undelivered(state))
    assert sent == [(3, PROBLEM)]  # once: then it was delivered
    # never delivered, then healthy: nothing was opened, so nothing is closed
    state, _ = play([kafka_down(m) for m in range(10, 12)])
    state, sent = play([healthy(m) for m in range(12, 16)], state=undelivered(state))
    assert sent == []
    assert state.problem_since is None and state.over_at is None


def test_a_look_no_later_than_the_last_changes_nothing():
    state, _ = play([kafka_down(0), kafka_down(1)])
    assert decide(state, kafka_down(1)) == (state, None)
    assert decide(state, healthy(0.5)) == (state, None)


def test_the_state_reads_back_what_it_wrote_and_refuses_anything_else():
    state, _ = play([healthy(0, offset=3, lag=2), kafka_down(1), kafka_down(2)])
    text = state.to_json()
    assert WatchState.from_json(text) == state
    assert json.loads(text)["waiting"] == {"0": [3, at(0).isoformat()]}
    assert WatchState.from_json(None) == WatchState() == WatchState.from_json("")
    for bad in ("[]", "{}", '{"waiting": {}}', "not json", text.replace("+00:00", "")):
        with pytest.raises(ValueError, match="not a watch state"):
            WatchState.from_json(bad)


def test_the_targets_are_every_enabled_sites_each_once(tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text(
        textwrap.dedent("""
            defaults:
              notify:
                - webhook: ops
            sites:
              - name: a
                url: https://a.example.com/
              - name: b
                url: https://b.example.com/
                notify:
                  - webhook: team
                  - webhook: ops
                    degraded: true
              - name: off
                url: https://off.example.com/
                enabled: false
                notify:
                  - webhook: nobody
              - name: quiet
                url: https://quiet.example.com/
                notify: []
        """)
    )
    loaded = load_sites(path)
    assert loaded.issues == []
    assert pipeline_targets(loaded.sites) == [WebhookTarget("ops"), WebhookTarget("team")]


class Lag:
    def __init__(self, result: KafkaLag, delay: float = 0.0):
        self.result, self.delay = result, delay

    def read(self, timeout: float) -> KafkaLag:
        time.sleep(self.delay)
        return self.result


class Conn:
    def __init__(self, failure: Exception | None = None):
        self.failure, self.closed = failure, False

    def execute(self, sql):
        assert sql == "SELECT 1"
        if self.failure:
            raise self.failure
        return self

    def fetchone(self):
        return (1,)

    def close(self):
        self.closed = True


def test_a_look_reads_both_and_turns_trouble_into_values():
    lag = KafkaLag("t", "g", {0: 2, 1: 0}, committed={0: 5, 1: -1})
    conn = Conn()
    seen = look(Lag(lag), lambda: conn, now=lambda: T0)
    assert seen == Look(T0, {0: 2, 1: 0}, {0: 5, 1: -1})
    assert conn.closed

    broken = KafkaLag("t", "g", {}, error="topic t does not exist")
    failing = Conn(RuntimeError("canceling statement\n due to statement timeout"))
    seen = look(Lag(broken), lambda: failing, now=lambda: T0)
    assert (seen.kafka_error, seen.database_error) == (
        "topic t does not exist",
        "canceling statement due to statement timeout",
    )
    assert failing.closed

    def refuse():
        raise ConnectionRefusedError()

    assert look(Lag(lag), refuse).database_error == "ConnectionRefusedError"


def test_a_database_that_never_answers_costs_the_look_its_timeout_not_more():
    hang = threading.Event()
    started = time.monotonic()
    seen = look(Lag(KafkaLag("t", "g", {0: 0}), delay=0.2), lambda: hang.wait(60), timeout=1)
    assert 0.9 < time.monotonic() - started < 3
    assert seen.database_error == "no answer to SELECT 1 within 1s"
    hang.set()


def seconds(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_a_short_threshold_sees_a_stall_once_it_has_lasted_that_long():
    # SITEWATCH_WATCH_STALL_SECONDS=30, SITEWATCH_WATCH_EVERY_SECONDS=10: looks 10 s apart,
    # each starting up to a second early
    stall = timedelta(seconds=30)
    looks = [Look(seconds(9.8 * i), lag={0: 1 + i}, committed={0: 4}) for i in range(1, 7)]
    looks += [Look(seconds(9.8 * i), lag={0: 0}, committed={0: 20}) for i in range(7, 12)]
    state, sent = WatchState(), []
    for seen in looks:
        state, alert = decide(state, seen, stall)
        if alert is not None:
            sent.append((round((seen.at - T0).total_seconds(), 1), alert.kind, alert.detail))
    # waiting first seen at 9.8 s: sure at 39.2 s (29.4 s on), not at 29.4 s (19.6 s on);
    # healthy at 68.6 and 78.4 s: over at 78.4 s
    assert [(s, kind) for s, kind, _ in sent] == [(39.2, PROBLEM), (78.4, OVER)]
    assert sent[0][2] == (
        "the drain's committed offsets have not moved for 29s while 5 messages wait (partitions 0)"
    )
    # the default threshold sees nothing in these looks
    assert play(looks)[1] == []


def test_the_settings_default_to_three_minutes_and_a_look_a_minute():
    assert WatchSettings.from_env({}) == WatchSettings(STALL, EVERY)
    assert (timedelta(minutes=3), timedelta(minutes=1)) == (STALL, EVERY)
    blank = {"SITEWATCH_WATCH_STALL_SECONDS": " ", "SITEWATCH_WATCH_EVERY_SECONDS": ""}
    assert WatchSettings.from_env(blank) == WatchSettings()


def test_the_settings_read_whole_seconds_in_range():
    environ = {"SITEWATCH_WATCH_STALL_SECONDS": "30", "SITEWATCH_WATCH_EVERY_SECONDS": " 10 "}
    assert WatchSettings.from_env(environ) == WatchSettings(
        stall=timedelta(seconds=30), every=timedelta(seconds=10)
    )
    environ = {"SITEWATCH_WATCH_STALL_SECONDS": "3600", "SITEWATCH_WATCH_EVERY_SECONDS": "60"}
    assert WatchSettings.from_env(environ) == WatchSettings(
        timedelta(hours=1), timedelta(seconds=60)
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "SITEWATCH_WATCH_STALL_SECONDS",
            "29",
            "SITEWATCH_WATCH_STALL_SECONDS='29': expected whole seconds from 30 to 3600"
            " (default 180)",
        ),
        (
            "SITEWATCH_WATCH_STALL_SECONDS",
            "3601",
            "SITEWATCH_WATCH_STALL_SECONDS='3601': expected whole seconds from 30 to 3600"
            " (default 180)",
        ),
        (
            "SITEWATCH_WATCH_STALL_SECONDS",
            "3m",
            "SITEWATCH_WATCH_STALL_SECONDS='3m': expected whole seconds from 30 to 3600"
            " (default 180)",
        ),
        (
            "SITEWATCH_WATCH_EVERY_SECONDS",
            "9",
            "SITEWATCH_WATCH_EVERY_SECONDS='9': expected whole seconds from 10 to 60 (default 60)",
        ),
        (
            "SITEWATCH_WATCH_EVERY_SECONDS",
            "61",
            "SITEWATCH_WATCH_EVERY_SECONDS='61': expected whole seconds from 10 to 60 (default 60)",
        ),
    ],
)
def test_a_setting_out_of_range_is_an_error_naming_it(name, value, message):
    with pytest.raises(SettingError) as raised:
        WatchSettings.from_env({name: value})
    assert str(raised.value) == message


@pytest.mark.parametrize("value", ["-30", "30.5", "1e2", "٣٠", "9" * 5000, "nan"])
def test_a_setting_that_is_not_whole_seconds_is_an_error(value):
    with pytest.raises(SettingError, match=r"^SITEWATCH_WATCH_STALL_SECONDS='"):
        WatchSettings.from_env({"SITEWATCH_WATCH_STALL_SECONDS": value})
