"""Incidents on a status page from real PostgreSQL: open ones on top, 90 days of history with
their updates, operators' Markdown rendered safely, Statuspage's ``incidents`` in summary.json,
and the Atom feed parsed back."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from sitewatch.status.files import page_files
from sitewatch.status.html import PAGE_SCRIPT
from sitewatch.storage.incidents import open_automatic, write_update
from tests.integration import test_status_page as page
from tests.integration.test_status_page import NOW, view

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
stored = page.stored  # the checks, verdicts and mutes the page shows (shop is down)
ATOM = "{http://www.w3.org/2005/Atom}"
HOSTILE_TITLE = '<script>alert("t")</script> & "quotes"'
HOSTILE_BODY = (
    "Rolling **back**. <img src=x onerror=alert(1)> <script>alert(2)</script>\n\n"
    "[click](javascript:alert(3)) [data](data:text/html,<b>x</b>) ![pixel](https://t.example/p.png)"
    " [ok](https://example.com/status)"
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)


@pytest.fixture
def incidents(stored):
    conn = stored
    auto = open_automatic(
        conn, "public", "Shop", "shop", "Shop is down", "Shop is down.", NOW - HOUR
    )
    operator = write_update(
        conn, "public", incident=None, state="identified", body=HOSTILE_BODY, author="mallory",
        at=NOW - 2 * DAY, title=HOSTILE_TITLE, components=["API"],
    )  # fmt: skip
    write_update(
        conn, "public", incident=operator, state="resolved", body="Fixed *for good*.",
        author="mallory", at=NOW - 2 * DAY + HOUR,
    )  # fmt: skip
    old = write_update(
        conn, "public", incident=None, state="resolved", body="Long ago.", author="mallory",
        at=NOW - 100 * DAY, title="Ancient history",
    )  # fmt: skip
    other = write_update(
        conn, "elsewhere", incident=None, state="investigating", body="x", author="mallory",
        at=NOW - HOUR, title="Another page's",
    )  # fmt: skip
    return conn, auto, operator, old, other


def test_open_incidents_on_top_and_history_with_updates(incidents):
    conn, auto, operator, _, _ = incidents
    files = page_files(view(conn))
    html = files["index.html"].decode()
    top, components, history = (
        html.index(f'id="{s}"') for s in ("incidents", "components", "history")
    )
    assert top < components < history
    assert html.index(f'id="i-{auto}"') < components < html.index(f'id="i-{operator}"')
    assert "Ancient history" not in html and "Another page" not in html  # 90 days, this page
    assert "<em>for good</em>" in html and "<strong>back</strong>" in html
    assert html.index("Fixed") < html.index("Rolling")  # updates newest first
    assert 'rel="alternate" type="application/atom+xml" href="feed.atom"' in html


def test_every_operator_written_string_is_escaped_and_no_author_is_published(incidents):
    files = page_files(view(incidents[0]))
    html = files["index.html"].decode()
    parsed = _Tags()
    parsed.feed(html.replace(f"<script>{PAGE_SCRIPT}</script>", "", 1))  # ours, constant
    assert "script" not in parsed.tags and "img" not in parsed.tags
    hrefs = [value for name, value in parsed.attrs if name in ("href", "src")]
    assert "https://example.com/status" in hrefs
    assert not [h for h in hrefs if h and not h.startswith(("https:", "#", "feed.atom"))]
    assert not [name for name, _ in parsed.attrs if name.startswith("on")]
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    for text in (f.decode() for f in files.values()):
        assert "mallory" not in text


def test_summary_lists_the_open_incidents_statuspage_style(incidents):
    conn, auto, *_ = incidents
    summary = json.loads(page_files(view(conn))["summary.json"])
    (incident,) = summary["incidents"]
    assert (incident["id"], incident["name"], incident["status"]) == (
        str(auto),
        "Shop is down",
        "investigating",
    )
    assert incident["impact"] == "critical"  # Shop is down in the stored checks
    assert [c["name"] for c in incident["components"]] == ["Shop"]
    (update,) = incident["incident_updates"]
    assert (update["status"], update["body"]) == ("investigating", "Shop is down.")
    assert incident["created_at"] == (NOW - HOUR).isoformat().replace("+00:00", "Z")
    assert "author" not in json.dumps(summary)


def test_the_atom_feed_parses_back_with_every_required_element(incidents):
    conn, auto, operator, *_ = incidents
    feed = ET.fromstring(page_files(view(conn))["feed.atom"])
    assert feed.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert feed.find(f"{ATOM}{required}").text
    assert feed.find(f"{ATOM}author/{ATOM}name").text == "<Example> status"
    entries = feed.findall(f"{ATOM}entry")
    ids = [e.find(f"{ATOM}id").text for e in entries]
    assert ids[:2] == [
        f"urn:sitewatch:status:public:incident:{auto}",
        f"urn:sitewatch:status:public:incident:{operator}",
    ]
    assert len(ids) == len(set(ids)) == 4  # two incidents, two maintenances
    assert sum(":maintenance:" in i for i in ids) == 2
    for entry in entries:
        for required in ("id", "title", "updated"):
            assert entry.find(f"{ATOM}{required}").text
    hostile = entries[1]
    assert hostile.find(f"{ATOM}title").text == f"{HOSTILE_TITLE} (Resolved)"
    content = hostile.find(f"{ATOM}content")
    assert content.get("type") == "html"
    parsed = _Tags()
    parsed.feed(content.text)  # the HTML a reader shows, once the XML is unescaped
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not [v for n, v in parsed.attrs if n == "href" and not v.startswith("https:")]
