"""Status updates (``sitewatch.judge.status_updates``): who receives an incident's updates and
what the message says, no services. Delivery, once per update, to a local receiver:
tests/integration/test_incidents.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sitewatch.alerting.rules import NOTE_TEXT_LIMIT, Kind
from sitewatch.config.loader import load_text
from sitewatch.config.notify import EmailTarget, WebhookTarget
from sitewatch.judge.status_updates import note, targets
from sitewatch.storage.incidents import Incident, Update

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SITES = """\
sites:
  - name: shop-eu
    url: https://eu.shop.example/
    notify:
      - webhook: ops_webhook
      - webhook: status_channel
        status_updates: true
  - name: shop-us
    url: https://us.shop.example/
    notify:
      - webhook: status_channel
        status_updates: true
      - email: shop-team@example.com
        status_updates: true
  - name: api
    url: https://api.example/
    notify:
      - email: api-team@example.com
        status_updates: true
status_pages:
  - id: status
    title: Example <status>
    url: https://status.example.com/
    components:
      - group: [shop-eu, shop-us]
        name: Shop
      - site: api
        name: Public API
"""


def loaded():
    result = load_text(SITES, "sites.yaml")
    assert result.issues == []
    return result.status_pages[0], {site.name: site for site in result.sites}


def incident(*updates: Update, components=("Shop",)) -> Incident:
    return Incident(42, "status", components, "Shop is down", updates[-1].state, T0, None,
                    "shop-eu", False, updates=updates)  # fmt: skip


def test_an_incident_reaches_the_opted_in_targets_of_its_components_sites_once_each():
    page, sites = loaded()
    shop = [WebhookTarget("status_channel", status_updates=True),
            EmailTarget(("shop-team@example.com",), status_updates=True)]  # fmt: skip
    assert targets(page, ["Shop"], sites) == shop  # the group's; ops_webhook did not opt in
    api = EmailTarget(("api-team@example.com",), status_updates=True)
    assert targets(page, ["Public API", "Shop"], sites) == [*shop, api]
    assert targets(page, [], sites) == []  # an incident naming no component reaches nobody
    assert targets(page, ["Gone"], sites) == []


def test_the_message_names_page_incident_state_text_author_and_links_the_incident():
    page, _ = loaded()
    first = Update(T0, "investigating", "Shop is down. We are investigating.", "sitewatch")
    second = Update(T0 + timedelta(minutes=5), "identified", "A **bad** deploy.\n\n- rolling back",
                    "alice")  # fmt: skip
    alert = note(page, incident(first, second))
    assert alert.kind is Kind.STATUS_UPDATE and alert.at == second.at and alert.since == T0
    assert alert.concern == "status/status/42"
    assert alert.title == "[sitewatch] STATUS UPDATE: Example <status>: Shop is down (identified)"
    assert dict(alert.lines()) == {
        "page": "Example <status>",
        "incident": "Shop is down",
        "state": "identified",
        "update": "A **bad** deploy. - rolling back",  # the Markdown as written, on one line
        "by": "alice",
        "at": "2026-03-01T12:05:00+00:00",
        "link": "https://status.example.com/#i-42",
    }
    doc = alert.document()
    assert json.loads(json.dumps(doc)) == doc
    assert (doc["site"], doc["state"]) == (None, "STATUS UPDATE")
    assert doc["incident"] == {
        "page": "Example <status>",
        "title": "Shop is down",
        "state": "identified",
        "text": "A **bad** deploy.\n\n- rolling back",
        "author": "alice",
        "link": "https://status.example.com/#i-42",
    }
    slack = alert.slack()
    assert slack["text"] == (
        "[sitewatch] STATUS UPDATE: Example &lt;status&gt;: Shop is down (identified)"
    )


def test_a_long_text_is_bounded_and_a_page_without_url_sends_no_link():
    page, _ = loaded()
    page = type(page)(page.id, page.title, page.components)  # no url
    alert = note(page, incident(Update(T0, "monitoring", "x" * 10_000, "bob")))
    lines = dict(alert.lines())
    assert "link" not in lines and alert.url == ""
    assert len(lines["update"]) == NOTE_TEXT_LIMIT and lines["update"].endswith("...")
    assert len(alert.document()["incident"]["text"]) == NOTE_TEXT_LIMIT
    assert alert.document()["incident"]["link"] is None
