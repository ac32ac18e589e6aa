"""Verdicts across locations, judged by the drain (``sitewatch.judge.runs``): real Kafka,
real PostgreSQL as alerting's own role, a local webhook receiver, and a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.airflow.notifiers import send
from sitewatch.alerting import store as alert_store
from sitewatch.config.loader import cached_sites
from sitewatch.judge.runs import Verdicts, location_key
from sitewatch.judge.session import Session
from sitewatch.observation import Observation
from sitewatch.status.read import read_page
from sitewatch.storage.incidents import page_incidents
from sitewatch.storage.mutes import add_mutes
from tests.builders import observation
from tests.integration.test_drain import produce, run_drain
from tests.integration.test_recoveries import replay

T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
GRACE = timedelta(seconds=30)
# timeout 2s, retries 1, retry_delay 5s: a run's deadline is 2 * 2 + 5 + 30 = 39 s
SITES = """\
defaults:
  locations: [east, west]
  timeout: 2s
  retries: 1
  retry_delay: 5s
  notify:
    - webhook: ops_webhook
sites:
  - name: both
    url: https://both.example.com/
    quorum: 2
  - name: either
    url: https://either.example.com/
    quorum: 1
  - name: alone
    url: https://alone.example.com/
    locations: [local]
"""
DEADLINE = timedelta(seconds=39)


def check(site, location, minute, up=True, attempt=1, **fields) -> Observation:
    """Attempt ``attempt`` of ``site`` from ``location`` in the run ``minute`` minutes after T0."""
    at = T0 + timedelta(minutes=minute)
    return observation(
        site, at, location=location, attempt=attempt, checked_at=at + timedelta(seconds=attempt),
        up=up, error=None if up else "status",
        error_detail=None if up else "status 503 not in 200-399", **fields,
    )  # fmt: skip


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def setup(new_topic, migrated_conn):
    return new_topic(), migrated_conn


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def judges(alerting_connect, tmp_path, clock):
    """Factory: ``Verdicts`` over a sites file of ``text``, on alerting's own role."""
    sessions = []

    def make(text: str) -> Verdicts:
        path = tmp_path / f"sites{len(sessions)}.yaml"
        path.write_text(text)
        sessions.append(Session(alerting_connect, send, lambda: cached_sites(path)))
        return Verdicts(sessions[-1], grace=GRACE, clock=clock)

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def verdicts(judges):
    return judges(SITES)


def drained(topic, conn, verdicts, observations):
    produce(topic, observations)
    return run_drain(topic, conn, on_stored=verdicts, on_caught_up=verdicts.sweep)


def stored_verdicts(conn) -> list[tuple]:
    rows = conn.execute(
        "SELECT site, scheduled_at, verdict, quorum, locations FROM site_verdicts"
        " ORDER BY site, scheduled_at"
    ).fetchall()
    conn.commit()
    return [
        (site, at - T0, verdict, quorum, locations) for site, at, verdict, quorum, locations in rows
    ]


def test_one_location_down_is_partial_under_quorum_two_and_down_under_quorum_one(
    setup, verdicts, receiver, clock
):
    topic, conn = setup
    clock.now = T0 + timedelta(seconds=20)  # before the deadline: every location reported
    drained(topic, conn, verdicts, [
        check("both", "east", 0), check("both", "west", 0, up=False),
        check("either", "east", 0), check("either", "west", 0, up=False),
    ])  # fmt: skip
    assert stored_verdicts(conn) == [
        ("both", timedelta(0), "partial", 2, {"east": "up", "west": "down"}),
        ("either", timedelta(0), "down", 1, {"east": "up", "west": "down"}),
    ]
    (down,) = receiver.payloads  # partial sends nothing: the site is not down by its quorum
    assert (down["site"], down["state"]) == ("either", "DOWN")
    assert down["locations"] == {"east": "up", "west": "down"}
    assert down["error"] == "down from 1 of 2 locations (quorum 1): west; up: east"
    assert down["detail"] == "west: status: status 503 not in 200-399"
    assert "locations: east up, west down" in down["text"]

    # the same messages again (a redelivered batch): decided already, nothing sent twice
    again = replay(topic, conn, on_stored=verdicts)
    assert again.duplicates == 4
    assert len(stored_verdicts(conn)) == 2
    assert len(receiver.payloads) == 1

    # the next run: both locations up again → RECOVERED for the one that was down
    drained(topic, conn, verdicts, [
        check("either", "east", 1), check("either", "west", 1),
    ])  # fmt: skip
    assert [(p["site"], p["state"]) for p in receiver.payloads] == [
        ("either", "DOWN"),
        ("either", "RECOVERED"),
    ]


def test_a_location_still_retrying_holds_the_verdict_until_its_final_attempt(
    setup, verdicts, receiver, clock
):
    topic, conn = setup
    clock.now = T0 + timedelta(seconds=10)
    drained(topic, conn, verdicts, [
        check("either", "east", 0), check("either", "west", 0, up=False, final=False),
    ])  # fmt: skip
    assert stored_verdicts(conn) == []
    drained(topic, conn, verdicts, [check("either", "west", 0, up=False, attempt=2)])
    assert [v[2] for v in stored_verdicts(conn)] == ["down"]


def test_a_silent_location_is_missing_after_the_deadline_and_alerts_once(
    setup, verdicts, receiver, clock
):
    topic, conn = setup
    clock.now = T0 + timedelta(seconds=10)
    drained(topic, conn, verdicts, [check("both", "east", 0)])
    assert stored_verdicts(conn) == []  # west may still report

    clock.now = T0 + DEADLINE + timedelta(seconds=1)
    verdicts._last_sweep = float("-inf")  # the sweep runs at most every 15 s of real time
    verdicts.sweep()
    assert stored_verdicts(conn) == [
        ("both", timedelta(0), "up", 2, {"east": "up", "west": "missing"}),
    ]
    (problem,) = receiver.payloads  # one alert about the location, not about the site
    assert (problem["site"], problem["concern"]) == (None, "location/west")
    assert problem["state"] == "PIPELINE PROBLEM"
    assert problem["error"] == "no checks from location west"
    assert "1 of its 2 sites (both)" in problem["detail"]
    assert "workers of sitewatch-west" in problem["detail"]
    assert alert_store.load(conn, "both") is None or alert_store.load(conn, "both").state == "up"
    assert alert_store.load(conn, location_key("west")).pipeline_since is not None

    # west stays silent for the next run: no second message while the problem is open
    clock.now = T0 + timedelta(minutes=1, seconds=10)
    drained(topic, conn, verdicts, [check("both", "east", 1)])
    clock.now = T0 + timedelta(minutes=1) + DEADLINE + timedelta(seconds=1)
    verdicts._last_sweep = float("-inf")
    verdicts.sweep()
    assert [v[4]["west"] for v in stored_verdicts(conn)] == ["missing", "missing"]
    assert len(receiver.payloads) == 1

    # west is back: one all-clear for the location; its late check of run 0 is stored
    drained(topic, conn, verdicts, [
        check("both", "west", 0), check("both", "east", 2), check("both", "west", 2),
    ])  # fmt: skip
    assert alert_store.load(conn, location_key("west")).pipeline_since is None
    over = receiver.payloads[1]
    assert (over["state"], over["concern"]) == ("PIPELINE PROBLEM OVER", "location/west")
    assert over["since"] == problem["since"]
    assert len(receiver.payloads) == 2
    assert stored_verdicts(conn)[0][4] == {"east": "up", "west": "missing"}  # decided stays
    count = conn.execute("SELECT count(*) FROM site_checks WHERE site = 'both'").fetchone()[0]
    assert count == 5


def sweep_at(verdicts, clock, when):
    clock.now = when
    verdicts._last_sweep = float("-inf")  # the sweep runs at most every 15 s of real time
    verdicts.sweep()


def test_a_site_down_from_a_location_that_goes_silent_stays_down(setup, verdicts, receiver, clock):
    # issue 29: "either" (quorum 1) is down from west only; then west goes silent
    topic, conn = setup
    clock.now = T0 + timedelta(seconds=20)
    drained(
        topic, conn, verdicts, [check("either", "east", 0), check("either", "west", 0, up=False)]
    )
    for minute in (1, 2):  # east keeps seeing it up, west says nothing
        drained(topic, conn, verdicts, [check("either", "east", minute)])
        sweep_at(verdicts, clock, T0 + timedelta(minutes=minute) + DEADLINE + timedelta(seconds=1))
    assert [(v[2], v[4]) for v in stored_verdicts(conn)] == [
        ("down", {"east": "up", "west": "down"}),
        ("down", {"east": "up", "west": "missing, last down"}),
        ("down", {"east": "up", "west": "missing, last down"}),
    ]
    sent = [(p["site"] or p["concern"], p["state"]) for p in receiver.payloads]
    assert sent == [("either", "DOWN"), ("location/west", "PIPELINE PROBLEM")]  # no RECOVERED

    # west reports again and still sees it down: no second DOWN; the location's all-clear
    clock.now = T0 + timedelta(minutes=3, seconds=20)
    drained(
        topic, conn, verdicts, [check("either", "east", 3), check("either", "west", 3, up=False)]
    )
    sent = [(p["site"] or p["concern"], p["state"]) for p in receiver.payloads]
    assert sent[2:] == [("location/west", "PIPELINE PROBLEM OVER")]
    # and when west sees it up, it recovers, for real
    drained(topic, conn, verdicts, [check("either", "east", 4), check("either", "west", 4)])
    assert receiver.payloads[-1]["state"] == "RECOVERED"
    assert len(receiver.payloads) == 4


def test_ignore_lets_a_silent_location_count_neither_way(setup, judges, receiver, clock):
    topic, conn = setup
    ignoring = judges(SITES.replace("  retries:", "  silent_location: ignore\n  retries:"))
    clock.now = T0 + timedelta(seconds=20)
    first = [check("either", "east", 0), check("either", "west", 0, up=False)]
    drained(topic, conn, ignoring, first)
    drained(topic, conn, ignoring, [check("either", "east", 1)])
    sweep_at(ignoring, clock, T0 + timedelta(minutes=1) + DEADLINE + timedelta(seconds=1))
    assert [v[4]["west"] for v in stored_verdicts(conn)] == ["down", "missing"]
    states = [p["state"] for p in receiver.payloads]
    assert states == ["DOWN", "RECOVERED", "PIPELINE PROBLEM"]  # the trade-off ignore makes


def test_fifty_sites_on_a_silent_location_make_one_location_alert(setup, judges, receiver, clock):
    topic, conn = setup
    names = [f"s{i:02d}" for i in range(50)]
    entries = "".join(f"  - name: {n}\n    url: https://{n}.example.com/\n" for n in names)
    fifty = judges(SITES.split("sites:")[0] + "sites:\n" + entries)
    both = ("east", "west")
    clock.now = T0 + timedelta(seconds=20)
    drained(topic, conn, fifty, [check(n, loc, 0) for n in names for loc in both])
    drained(topic, conn, fifty, [check(n, "east", 1) for n in names])
    sweep_at(fifty, clock, T0 + timedelta(minutes=1) + DEADLINE + timedelta(seconds=1))
    assert len(stored_verdicts(conn)) == 100
    (problem,) = receiver.payloads
    assert (problem["concern"], problem["state"]) == ("location/west", "PIPELINE PROBLEM")
    assert "50 of its 50 sites (s00, s01, s02, s03, s04 and 45 more)" in problem["detail"]
    # half of them report again: still one open problem, no all-clear yet
    clock.now = T0 + timedelta(minutes=2, seconds=20)
    drained(topic, conn, fifty, [check(n, loc, 2) for n in names[:25] for loc in both])
    assert len(receiver.payloads) == 1
    drained(topic, conn, fifty, [check(n, loc, 2) for n in names[25:] for loc in both])
    assert [p["state"] for p in receiver.payloads] == ["PIPELINE PROBLEM", "PIPELINE PROBLEM OVER"]


def test_single_location_sites_and_unknown_sites_get_no_verdict_row(
    setup, verdicts, receiver, clock
):
    topic, conn = setup
    clock.now = T0 + timedelta(hours=1)
    drained(topic, conn, verdicts, [check("alone", "local", 0), check("gone", "east", 0)])
    verdicts._last_sweep = float("-inf")
    verdicts.sweep()
    assert stored_verdicts(conn) == []
    assert receiver.requests == []


# status updates on; "both" (quorum 2 of east and west) is the page's one component
PAGED = (
    SITES.replace(
        "    - webhook: ops_webhook\n", "    - webhook: ops_webhook\n      status_updates: true\n"
    )
    + """\
status_pages:
  - id: status
    title: Example
    components:
      - site: both
        name: Both
"""
)


def test_a_partial_outage_is_one_incident_that_grows_shrinks_and_resolves_as_the_page_shows(
    setup, judges, receiver, clock, tmp_path
):
    topic, conn = setup
    verdicts = judges(PAGED)
    path = tmp_path / "paged.yaml"
    path.write_text(PAGED)
    loaded = cached_sites(path)
    (page,) = loaded.status_pages

    def run_with(minute: int, east: bool, west: bool) -> tuple[str, list, tuple]:
        """Run ``minute`` as east and west saw it: the component's status on the page, the
        messages it sent, and the page's incidents as (title, state, newest update)."""
        clock.now = T0 + timedelta(minutes=minute, seconds=20)
        before = len(receiver.payloads)
        drained(topic, conn, verdicts, [
            check("both", "east", minute, up=east), check("both", "west", minute, up=west),
        ])  # fmt: skip
        view = read_page(conn, page, loaded.by_name, clock.now)
        sent = [
            (p["state"], p["incident"] and p["incident"]["title"])
            for p in receiver.payloads[before:]
        ]
        found = tuple((i.title, i.state, i.updates[-1].body) for i in view.incidents)
        return view.components[0].status, sent, found

    # west down, east up: partial by the quorum; no page, but an incident and its update
    said = "Both is partly down. We are investigating."
    opened = (("Both is partly down", "investigating", said),)
    assert run_with(0, east=True, west=False) == (
        "partial_outage",
        [("STATUS UPDATE", "Both is partly down")],
        opened,
    )
    # the next partial run changes nothing
    assert run_with(1, east=True, west=False) == ("partial_outage", [], opened)
    # both down: DOWN, and the same incident grows
    assert run_with(2, east=False, west=False) == (
        "major_outage",
        [("DOWN", None), ("STATUS UPDATE", "Both is down")],
        (("Both is down", "investigating", "Both is down now."),),
    )
    # east is back: the pager's RECOVERED, the page's partial outage, the incident shrinks
    assert run_with(3, east=True, west=False) == (
        "partial_outage",
        [("RECOVERED", None), ("STATUS UPDATE", "Both is partly down")],
        (("Both is partly down", "investigating", "Both works again in part."),),
    )
    # every location up: resolved
    status, sent, found = run_with(4, east=True, west=True)
    assert (status, sent) == ("operational", [("STATUS UPDATE", "Both is partly down")])
    assert found == (("Both is partly down", "resolved", "It works again."),)
    assert len(read_page(conn, page, loaded.by_name, clock.now).incidents) == 1


def test_a_partial_run_in_maintenance_opens_no_incident(setup, judges, receiver, clock):
    topic, conn = setup
    verdicts = judges(PAGED)
    add_mutes(conn, ["both"], T0 - timedelta(hours=1), T0 + timedelta(hours=1), "work", "ops")
    clock.now = T0 + timedelta(seconds=20)
    drained(topic, conn, verdicts, [check("both", "east", 0), check("both", "west", 0, up=False)])
    assert [v[2] for v in stored_verdicts(conn)] == ["partial"]
    assert page_incidents(conn, "status", T0 - timedelta(days=1)) == []
    assert receiver.payloads == []
