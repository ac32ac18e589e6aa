"""Noise control in the alert state machine (issue 17): holds (maintenance, a parent down),
flapping and degraded, through ``sitewatch.alerting.rules.decide``; no services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sitewatch.alerting.rules import AlertState, Event, Kind, Verdict, alert_for, decide
from sitewatch.config.loader import site_for_url
from sitewatch.config.objectives import Flapping

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UP, DOWN = Verdict.UP, Verdict.DOWN
HOLD = "maintenance until 2026-03-01 13:00 UTC: db upgrade"
FLAP = Flapping(changes=4, window=timedelta(hours=1), stable=timedelta(minutes=30))


def run(verdict: Verdict, minute: int, **extra) -> Event:
    at = T0 + timedelta(minutes=minute)
    return Event(verdict, at, run_id=f"run-{minute}", run_after=at, **extra)


def play(*events: Event, flapping=None, remind_every=None, state=None):
    """Feed events from ``state`` (a new site's by default); return the kinds and the end state."""
    state, kinds = state or AlertState(), []
    for event in events:
        state, kind = decide(state, event, remind_every, flapping)
        kinds.append(kind)
    return kinds, state


def test_a_site_still_down_after_its_hold_alerts_once():
    kinds, state = play(
        run(UP, 0),
        run(DOWN, 1, hold=HOLD),
        run(DOWN, 2, hold=HOLD),
        run(DOWN, 3),  # the window is over
        run(DOWN, 4),
    )
    assert kinds == [None, None, None, Kind.DOWN, None]
    assert state.held is None and state.since == T0 + timedelta(minutes=1)


def test_a_site_that_recovered_during_its_hold_says_nothing():
    kinds, state = play(run(UP, 0), run(DOWN, 1, hold=HOLD), run(UP, 2, hold=HOLD), run(UP, 3))
    assert kinds == [None, None, None, None]
    assert state.state == "up" and state.held is None


def test_recovering_after_the_hold_without_another_down_run_is_silent():
    kinds, _ = play(run(UP, 0), run(DOWN, 1, hold=HOLD), run(UP, 3))
    assert kinds == [None, None, None]


def test_the_held_reason_is_kept_on_the_state():
    _, state = play(run(UP, 0), run(DOWN, 1, hold="parent db down"))
    assert state.state == "down" and state.held == "parent db down"
    assert state.last_notified_at is None


def test_a_down_that_went_out_before_the_hold_is_closed_during_it():
    kinds, _ = play(run(DOWN, 0), run(DOWN, 1, hold=HOLD), run(UP, 2, hold=HOLD))
    assert kinds == [Kind.DOWN, None, Kind.RECOVERED]


def test_reminders_wait_for_the_end_of_the_hold():
    hour = timedelta(hours=1)
    kinds, _ = play(run(DOWN, 0), run(DOWN, 61, hold=HOLD), run(DOWN, 62), remind_every=hour)
    assert kinds == [Kind.DOWN, None, Kind.STILL_DOWN]


def test_a_release_without_a_hold_still_resends_down_and_recovered():
    # A DOWN whose delivery failed (release: last_notified_at None, held None) is not a held one.
    state, _ = decide(AlertState(), run(DOWN, 0))
    released = AlertState(**{**state.__dict__, "last_notified_at": None})
    assert decide(released, run(UP, 1))[1] is Kind.RECOVERED


def flips(count: int, start: int = 0, every: int = 1) -> list[Event]:
    return [run(DOWN if i % 2 == 0 else UP, start + i * every) for i in range(count)]


def test_flapping_sends_one_flapping_then_silence():
    kinds, state = play(*flips(10), flapping=FLAP)
    # DOWN, RECOVERED, DOWN, RECOVERED: 4 changes (the first verdict is not a change);
    # the 5th change is more than 4 in the hour: FLAPPING; then nothing.
    assert kinds[:4] == [Kind.DOWN, Kind.RECOVERED, Kind.DOWN, Kind.RECOVERED]
    assert kinds[5] is Kind.FLAPPING and kinds.count(Kind.FLAPPING) == 1
    assert kinds[6:] == [None] * 4
    assert state.flapping_since == T0 + timedelta(minutes=5)


def test_flapping_ends_with_the_current_state_once_stable():
    events = [*flips(7), *(run(DOWN, m) for m in range(7, 60))]  # down from minute 6 on
    kinds, state = play(*events, flapping=FLAP)
    sent = [k for k in kinds if k is not None]
    assert sent[-2:] == [Kind.FLAPPING, Kind.DOWN]
    assert kinds.index(Kind.DOWN, 5) == 36  # 30 minutes after the last change, at minute 6
    assert state.flapping_since is None and state.changes == ()


def test_flapping_that_settles_up_sends_recovered_since_it_began():
    events = [*flips(6), *(run(UP, m) for m in range(6, 40))]  # up from minute 5 on
    kinds, state = play(*events, flapping=FLAP)
    assert [k for k in kinds if k][-2:] == [Kind.FLAPPING, Kind.RECOVERED]
    at = kinds.index(Kind.RECOVERED, 5)
    assert at == 35
    previous = play(*events[:at], flapping=FLAP)[1]
    new, kind = decide(previous, events[at], None, FLAP)
    site = site_for_url("https://flappy.example/")
    alert = alert_for(site, kind, previous, new, events[at])
    assert alert.since == T0 + timedelta(minutes=5)  # flapping since


def test_changes_older_than_the_window_do_not_count():
    kinds, _ = play(*flips(8, every=20), flapping=FLAP)  # one change every 20 minutes
    assert Kind.FLAPPING not in kinds


def test_without_a_flapping_rule_every_change_alerts():
    kinds, _ = play(*flips(10))
    assert Kind.FLAPPING not in kinds and kinds.count(Kind.DOWN) == 5


def test_flapping_is_held_too():
    held = [Event(e.verdict, e.at, e.run_id, e.run_after, hold=HOLD) for e in flips(10)]
    kinds, state = play(*held, flapping=FLAP)
    assert kinds == [None] * 10 and state.flapping_since is None


def test_degraded_enters_once_and_clears_silently():
    kinds, state = play(
        run(UP, 0),
        run(UP, 1, degraded=True),
        run(UP, 2, degraded=True),
        run(UP, 3),
        run(UP, 4, degraded=True),
    )
    assert kinds == [None, Kind.DEGRADED, None, None, Kind.DEGRADED]
    assert state.degraded is True


def test_degraded_is_held_and_sent_after_the_hold():
    kinds, _ = play(run(UP, 0), run(UP, 1, degraded=True, hold=HOLD), run(UP, 2, degraded=True))
    assert kinds == [None, None, Kind.DEGRADED]


def test_a_down_site_is_never_degraded():
    kinds, state = play(run(UP, 0, degraded=True), run(DOWN, 1))
    assert kinds == [Kind.DEGRADED, Kind.DOWN] and state.degraded is False
