"""The alert state machine (``sitewatch.alerting.rules.decide``) and its messages, no services."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.alerting.rules import Alert, AlertState, Event, Kind, Verdict, alert_for, decide
from sitewatch.config.loader import site_for_url

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UP, DOWN, PIPELINE = Verdict.UP, Verdict.DOWN, Verdict.PIPELINE


def run(verdict: Verdict, minute: int, **extra) -> Event:
    """The event of the run scheduled ``minute`` minutes after T0, judged then."""
    at = T0 + timedelta(minutes=minute)
    return Event(verdict, at, run_id=f"run-{minute}", run_after=at, **extra)


def play(*events: Event, remind_every: timedelta | None = None) -> list[Kind | None]:
    """Feed events from a new site's empty state; return the message kind of each."""
    state, kinds = AlertState(), []
    for event in events:
        state, kind = decide(state, event, remind_every)
        kinds.append(kind)
    return kinds


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        pytest.param([UP], [None], id="first-ever-up-is-silent"),
        pytest.param([DOWN], [Kind.DOWN], id="first-ever-down-alerts"),
        pytest.param([UP, UP], [None, None], id="up-up-silent"),
        pytest.param([UP, DOWN], [None, Kind.DOWN], id="up-down-alerts"),
        pytest.param([UP, DOWN, DOWN, DOWN], [None, Kind.DOWN, None, None], id="down-down-silent"),
        pytest.param([DOWN, UP], [Kind.DOWN, Kind.RECOVERED], id="down-up-recovered"),
        pytest.param([DOWN, UP, UP], [Kind.DOWN, Kind.RECOVERED, None], id="recovered-once"),
        pytest.param([UP, PIPELINE], [None, Kind.PIPELINE], id="pipeline-alerts"),
        pytest.param(
            [UP, PIPELINE, PIPELINE, PIPELINE],
            [None, Kind.PIPELINE, None, None],
            id="repeated-pipeline-silent",
        ),
        pytest.param([PIPELINE], [Kind.PIPELINE], id="first-ever-pipeline-alerts"),
        pytest.param(
            [UP, PIPELINE, UP, PIPELINE],
            [None, Kind.PIPELINE, None, Kind.PIPELINE],
            id="pipeline-reopens-after-a-verdict",
        ),
        pytest.param([UP, PIPELINE, UP], [None, Kind.PIPELINE, None], id="pipeline-never-recovers"),
        pytest.param(
            [UP, PIPELINE, DOWN], [None, Kind.PIPELINE, Kind.DOWN], id="down-after-pipeline"
        ),
        pytest.param(
            [DOWN, PIPELINE, DOWN], [Kind.DOWN, Kind.PIPELINE, None], id="still-down-after-pipeline"
        ),
        pytest.param(
            [DOWN, PIPELINE, UP], [Kind.DOWN, Kind.PIPELINE, Kind.RECOVERED], id="recovered-after"
        ),
        pytest.param([PIPELINE, UP], [Kind.PIPELINE, None], id="new-site-up-after-pipeline"),
    ],
)
def test_state_machine_table(verdicts, expected):
    assert play(*(run(v, minute * 5) for minute, v in enumerate(verdicts))) == expected


def test_down_reminder_only_when_due():
    events = [run(DOWN, 0), run(DOWN, 30), run(DOWN, 59), run(DOWN, 60), run(DOWN, 90)]
    events += [run(DOWN, 121), run(UP, 125)]
    kinds = play(*events, remind_every=timedelta(hours=1))
    assert kinds == [Kind.DOWN, None, None, Kind.STILL_DOWN, None, Kind.STILL_DOWN, Kind.RECOVERED]


def test_no_reminders_without_remind_every():
    assert play(*(run(DOWN, m) for m in range(0, 600, 60))) == [Kind.DOWN] + [None] * 9


def test_a_down_message_never_delivered_is_sent_on_the_next_down_run():
    state, kind = decide(AlertState(), run(DOWN, 0))
    assert kind == Kind.DOWN
    released = AlertState(**{**state.__dict__, "last_notified_at": None})  # what release() does
    state, kind = decide(released, run(DOWN, 5))
    assert kind == Kind.DOWN
    assert state.since == T0  # still down since the first down run
    assert state.last_notified_at == T0 + timedelta(minutes=5)


def test_second_event_of_the_same_run_changes_nothing():
    state, kind = decide(AlertState(), run(DOWN, 0))
    dag_level = Event(PIPELINE, T0 + timedelta(seconds=30), run_id="run-0")  # no run_after known
    assert decide(state, dag_level) == (state, None)


def test_late_event_of_an_older_run_changes_nothing():
    state, _ = decide(AlertState(), run(UP, 10))
    assert decide(state, run(PIPELINE, 5)) == (state, None)
    assert decide(state, run(DOWN, 5)) == (state, None)


def test_pipeline_problem_keeps_the_site_state():
    state, _ = decide(AlertState(), run(DOWN, 0, error="status", detail="status 500"))
    state, kind = decide(state, run(PIPELINE, 5, error="DeliveryError", detail="no broker"))
    assert kind == Kind.PIPELINE
    assert (state.state, state.since, state.error) == ("down", T0, "status")
    assert state.pipeline_since == T0 + timedelta(minutes=5)
    state, _ = decide(state, run(DOWN, 10, error="status", detail="status 503"))
    assert state.pipeline_since is None
    assert state.detail == "status 503"


def test_recovered_message_tells_how_long_the_site_was_down():
    site = site_for_url("https://shop.example.com/")
    down = run(DOWN, 0, error="regex", detail="pattern not found")
    previous, _ = decide(AlertState(), down)
    up = run(UP, 95)
    new, kind = decide(previous, up)
    alert = alert_for(site, kind, previous, new, up, "http://airflow/log")
    assert alert.title == "[sitewatch] RECOVERED: shop-example-com"
    assert dict(alert.lines()) == {
        "site": "shop-example-com",
        "state": "RECOVERED",
        "url": "https://shop.example.com/",
        "down since": "2026-03-01T12:00:00+00:00",
        "recovered at": "2026-03-01T13:35:00+00:00",
        "downtime": "1h35m",
        "run": "http://airflow/log",
    }


def test_down_message_document_and_slack_payloads():
    alert = Alert(
        "shop",
        "https://shop.example.com/",
        Kind.DOWN,
        at=T0,
        since=T0,
        error="status",
        detail="status 500 not in 200-399 <b>",
        run_url="http://localhost:8080/dags/site_shop/runs/r1/tasks/probe",
    )
    assert alert.title == "[sitewatch] DOWN: shop (status: status 500 not in 200-399 <b>)"
    doc = alert.document()
    assert json.loads(json.dumps(doc)) == doc
    assert {k: doc[k] for k in ("v", "site", "state", "error", "since")} == {
        "v": 1,
        "site": "shop",
        "state": "DOWN",
        "error": "status",
        "since": "2026-03-01T12:00:00+00:00",
    }
    assert doc["text"].splitlines()[0] == alert.title
    slack = alert.slack()
    assert slack["text"] == "[sitewatch] DOWN: shop `status: status 500 not in 200-399 &lt;b&gt;`"
    section = slack["blocks"][1]["text"]
    assert section["type"] == "mrkdwn"
    assert "*detail:* `status 500 not in 200-399 &lt;b&gt;`" in section["text"]
    assert "*run:* http://localhost:8080/dags/site_shop/runs/r1/tasks/probe" in section["text"]


def test_what_a_site_wrote_cannot_link_or_mention_in_chat():
    """A redirect target crafted as Slack's link and mention syntax, and as Mattermost's
    Markdown: in the slack payload it is inert text in code spans, wherever it appears."""
    target = (
        "http://[<!channel> <https://evil.example/|Ack here>] [Ack](https://evil.example/) @all`x`/"
    )
    alert = Alert(
        "shop", "https://s/", Kind.DOWN, T0, T0, "invalid_redirect",
        f"invalid redirect target {target!r}",
    )  # fmt: skip
    slack = alert.slack()
    texts = [slack["text"], slack["blocks"][1]["text"]["text"]]
    for text in texts:
        assert "<" not in text.replace("&lt;", "") and ">" not in text.replace("&gt;", "")
        spans = re.findall(r"`[^`]*`", text)
        outside = re.sub(r"`[^`]*`", "", text)
        assert "evil.example" not in outside and "@all" not in outside, text
        assert any("&lt;!channel&gt;" in span for span in spans), text
    assert slack["blocks"][0]["text"]["type"] == "plain_text"


def test_pipeline_message_says_it_is_not_the_site():
    alert = Alert("shop", "https://s/", Kind.PIPELINE, T0, T0, "DeliveryError", "Kafka down")
    assert alert.title == "[sitewatch] PIPELINE PROBLEM: shop (DeliveryError: Kafka down)"
    assert "says nothing about the site" in alert.text
