"""Status page rendering from plain values: statuses folded per component, every configured text
escaped, summary.json valid against a Statuspage-shaped schema, badges well-formed SVG."""

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import jsonschema
import pytest

from sitewatch.config.site import Site
from sitewatch.config.status_pages import Component, StatusPage
from sitewatch.status import model
from sitewatch.status.files import page_files
from sitewatch.status.html import LOCAL_TIMES_SCRIPT, PAGE_SCRIPT
from sitewatch.status.model import SiteFacts, fold, page_view
from sitewatch.storage.daily import Day
from sitewatch.storage.metrics import Latest
from sitewatch.storage.mutes import Mute
from sitewatch.storage.slo import Tally

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>&amp;\'"'
STATUS = {"enum": list(model.STATUSES)}
INDICATORS = ["none", "minor", "major", "critical", "maintenance"]
TIME = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"}
COMPONENT = {
    "type": "object",
    "required": ["id", "name", "status", "position", "description", "updated_at"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "status": STATUS,
        "position": {"type": "integer", "minimum": 1},
        "description": {"type": ["string", "null"]},
        "updated_at": TIME,
    },
}
SCHEMA = {
    "type": "object",
    "required": ["page", "status", "components", "incidents", "scheduled_maintenances"],
    "additionalProperties": False,
    "properties": {
        "page": {
            "type": "object",
            "required": ["id", "name", "updated_at", "time_zone"],
            "properties": {"updated_at": TIME},
        },
        "status": {
            "type": "object",
            "required": ["indicator", "description"],
            "properties": {"indicator": {"enum": INDICATORS}},
        },
        "components": {"type": "array", "items": COMPONENT},
        "incidents": {"type": "array", "maxItems": 0},
        "scheduled_maintenances": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "name", "status", "impact", "scheduled_for", "scheduled_until",
                             "components"],
                "properties": {
                    "status": {"enum": ["scheduled", "in_progress"]},
                    "scheduled_for": TIME,
                    "scheduled_until": TIME,
                    "components": {"type": "array", "items": COMPONENT, "minItems": 1},
                },
            },
        },
    },
}  # fmt: skip


def latest(site: str, up: bool, at: datetime = NOW, response_ms: float = 100.0) -> Latest:
    return Latest(
        site, "local", at - timedelta(minutes=1), at, up, 200 if up else 503, response_ms,
        None, None, None, None, None if up else "status", False, None, None, 1, at, 1,
        int(up),
    )  # fmt: skip


def facts(site: Site | None, *checks: Latest, mutes=(), days=None) -> SiteFacts:
    return SiteFacts(site, checks, None, mutes, days or {})


@pytest.mark.parametrize(
    ("statuses", "folded"),
    [
        ([model.OPERATIONAL, model.OPERATIONAL], model.OPERATIONAL),
        ([model.MAJOR, model.MAJOR], model.MAJOR),
        ([model.MAJOR, model.OPERATIONAL], model.PARTIAL),
        ([model.DEGRADED, model.OPERATIONAL], model.DEGRADED),
        ([model.MAINTENANCE, model.MAINTENANCE], model.MAINTENANCE),
        ([model.MAINTENANCE, model.MAJOR], model.MAJOR),
        ([model.PARTIAL], model.PARTIAL),
    ],
)
def test_a_group_reads_as_one(statuses, folded):
    assert fold(statuses) == folded


def page(*components: Component, title: str = "Example status") -> StatusPage:
    return StatusPage("public", title, components)


def test_states_come_from_site_state_and_the_maintenance_windows():
    shop, api = Site(name="shop", url="https://s.test/"), Site(name="api", url="https://a.test/")
    slow = Site(name="slow", url="https://x.test/", degraded_ms=50)
    mute = Mute(1, "api", NOW - timedelta(hours=1), NOW + timedelta(hours=1), "db", "alice")
    view = page_view(
        page(
            Component("Shop", ("shop",)),
            Component("API", ("api",)),
            Component("Slow", ("slow",)),
            Component("Gone", ("gone",)),
            Component("All", ("shop", "api", "slow"), group=True),
        ),
        {
            "shop": facts(shop, latest("shop", False)),
            "api": facts(api, latest("api", False), mutes=[mute]),
            "slow": facts(slow, latest("slow", True)),
        },
        NOW,
    )
    assert [(c.status, c.label) for c in view.components] == [
        (model.MAJOR, "Major outage"),
        (model.MAINTENANCE, "Under maintenance"),
        (model.DEGRADED, "Degraded performance"),
        (model.DEGRADED, "No recent data"),
        (model.PARTIAL, "Partial outage"),
    ]
    assert view.indicator == ("major", "Major System Outage")
    assert (
        '<span title="over the last 90 days">no data</span>'
        in page_files(view)["index.html"].decode()
    )
    (held,) = view.maintenances
    assert (held.start, held.end, held.active) == (mute.starts_at, mute.ends_at, True)
    assert held.components == ("api", "all")


def hostile_view():
    site = Site(name="shop", url="https://secret.internal.test/?token=abc")
    mute = Mute(1, "shop", NOW + timedelta(hours=2), NOW + timedelta(hours=3), HOSTILE, "bob")
    days = {
        NOW.date(): Day(100, 99, 0),
        NOW.date() - timedelta(days=1): Day(0, 0, 10),
        NOW.date() - timedelta(days=2): Day(10, 10, 0),
    }
    return page_view(
        page(Component(HOSTILE, ("shop",), HOSTILE), title=HOSTILE),
        {"shop": facts(site, latest("shop", True), mutes=[mute], days=days)},
        NOW,
    )


class _Texts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.texts, self.titles = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.titles += [v for k, v in attrs if k == "title"]

    def handle_data(self, data):
        self.texts.append(data)


def test_every_configured_text_is_escaped_and_nothing_private_is_published():
    files = page_files(hostile_view())
    assert set(files) == {
        "index.html",
        "summary.json",
        "feed.atom",
        "badges/script-alert-x-script-amp.svg",
        "shields/script-alert-x-script-amp.json",
        *(f"badges/uptime-{w}/script-alert-x-script-amp.svg" for w in ("24h", "7d", "30d")),
        *(f"shields/uptime-{w}/script-alert-x-script-amp.json" for w in ("24h", "7d", "30d")),
    }
    html = files["index.html"].decode()
    parsed = _Texts()
    parsed.feed(html.replace(f"<script>{PAGE_SCRIPT}</script>", "", 1))  # ours, constant
    assert "script" not in parsed.tags
    assert parsed.texts.count(HOSTILE) == 4  # <title>, <h1>, the name, the description
    assert parsed.texts.count("Scheduled from ") == 1
    for published in files.values():
        text = published.decode()
        for private in ("secret.internal", "token", "bob", "local", "status 503"):
            assert private not in text
    summary = json.loads(files["summary.json"])
    assert summary["page"]["name"] == summary["components"][0]["name"] == HOSTILE
    assert json.loads(files["shields/script-alert-x-script-amp.json"])["label"] == HOSTILE


def _bars(html: str) -> list[dict]:
    """Each bar's attributes, with its cells."""
    bars = re.findall(r'<div class="bar" ([^>]*)>((?:<i[^>]*></i>)*)</div>', html)
    return [
        {**dict(re.findall(r'([a-z-]+)="([^"]*)"', attrs)), "cells": re.findall("<i[^>]*>", cells)}
        for attrs, cells in bars
    ]


def test_the_bar_has_a_cell_a_day_its_uptime_in_its_data_and_the_worst_days_in_its_label():
    html = page_files(hostile_view())["index.html"].decode()
    (bar,) = _bars(html)
    assert len(bar["cells"]) == model.DAYS
    assert bar["data-from"] == str(NOW.date() - timedelta(days=89))
    words = bar["data-u"].split(" ")
    assert len(words) == model.DAYS and words[0] == "-"
    assert words[-3:] == ["100.00%", "m", "99.00%"]
    assert bar["cells"][-3:] == ["<i class=o>", "<i class=m>", "<i class=w>"]
    assert bar["aria-label"] == (
        "Uptime per day, last 90 days: 99.09% uptime; lowest: 2026-12-06 99.00%"
    )
    assert "prefers-color-scheme:dark" in html
    assert 'content="width=device-width,initial-scale=1"' in html
    assert '<span title="over the last 90 days">99.09% uptime</span>' in html
    assert '<time datetime="2026-12-06T12:00:00+00:00">2026-12-06 12:00 UTC</time>' in html


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_script_writes_each_day_cell_s_tooltip():
    stub = (
        "const cells=[{},{},{},{}];"
        'const bar={dataset:{from:"2026-12-04",u:"100.00% m - 97.50%"},querySelectorAll:()=>cells};'
        "globalThis.document={querySelectorAll:s=>s.startsWith('.bar')?[bar]:[]};"
        f"{PAGE_SCRIPT};"
        "console.log(JSON.stringify(cells.map(c=>c.title)))"
    )
    out = subprocess.run(["node", "-e", stub], capture_output=True, text=True, timeout=30)
    assert json.loads(out.stdout) == [
        "2026-12-04: 100.00% up",
        "2026-12-05: maintenance",
        "2026-12-06: no data",
        "2026-12-07: 97.50% up",
    ]


def test_summary_json_has_statuspages_shape():
    summary = json.loads(page_files(hostile_view())["summary.json"])
    jsonschema.validate(summary, SCHEMA)
    assert summary["status"] == {"indicator": "none", "description": "All Systems Operational"}
    (maintenance,) = summary["scheduled_maintenances"]
    assert maintenance["status"] == "scheduled"
    assert maintenance["scheduled_for"] == "2026-12-06T14:00:00Z"
    assert maintenance["id"] == "20261206T1400Z-20261206T1500Z"
    assert HOSTILE not in json.dumps(maintenance["name"])  # a mute's reason stays private


def test_every_status_has_a_badge_that_parses_as_svg():
    for status in model.STATUSES:
        view = hostile_view()
        component = view.components[0]
        component = type(component)(**{**component.__dict__, "status": status})
        view = type(view)(**{**view.__dict__, "components": (component,)})
        svg = page_files(view)["badges/script-alert-x-script-amp.svg"].decode()
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
        assert texts[0] == HOSTILE
        assert json.loads(page_files(view)["summary.json"])["components"][0]["status"] == status


def test_a_page_of_twenty_components_with_ninety_days_stays_under_100_kb():
    days = {NOW.date() - timedelta(days=k): Day(288, 287, 0) for k in range(model.DAYS)}
    components = tuple(Component(f"Component {i}", (f"s{i}",), "What it does") for i in range(20))
    sites = {f"s{i}": facts(None, days=days) for i in range(20)}
    html = page_files(page_view(page(*components), sites, NOW))["index.html"]
    assert len(html) < 60_000  # 90 cells each, their tooltips written by the script
    assert html.count(b"<i class=w></i>") == 20 * model.DAYS


def test_uptime_badges_sum_a_groups_sites_per_window():
    tallies = {"24h": Tally(1000, 999), "7d": Tally(100, 96)}
    view = page_view(
        page(Component(HOSTILE, ("a", "b"), group=True)),
        {
            "a": SiteFacts(None, (), None, (), {}, tallies),
            "b": SiteFacts(None, (), None, (), {}, {"24h": Tally(1000, 1000)}),
        },
        NOW,
    )
    files = page_files(view)
    shields = {
        w: json.loads(files[f"shields/uptime-{w}/script-alert-x-script-amp.json"])
        for w in ("24h", "7d", "30d")
    }
    assert shields["24h"] == {
        "schemaVersion": 1,
        "label": f"{HOSTILE} 24h",
        "message": "99.95%",
        "color": "brightgreen",
    }
    assert (shields["7d"]["message"], shields["7d"]["color"]) == ("96.00%", "yellow")
    assert (shields["30d"]["message"], shields["30d"]["color"]) == ("no data", "lightgrey")
    svg = ET.fromstring(files["badges/uptime-7d/script-alert-x-script-amp.svg"].decode())
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == [f"{HOSTILE} 7d", "96.00%"]


def test_times_are_utc_without_javascript_and_local_with_it():
    html = page_files(hostile_view())["index.html"].decode()
    assert html.count("<script") == 1
    assert html.endswith(f"</main><script>{PAGE_SCRIPT}</script></body></html>\n")
    assert 'document.querySelectorAll("time[datetime]")' in LOCAL_TIMES_SCRIPT
    assert "t.title=t.textContent" in LOCAL_TIMES_SCRIPT  # UTC on hover
    utc = '<time datetime="2026-12-06T12:00:00+00:00">2026-12-06 12:00 UTC</time>'
    assert f"<footer>Updated at {utc}</footer>" in html  # what a reader without JS sees


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_script_rewrites_each_time_and_keeps_utc_on_hover():
    stub = (
        'const t={textContent:"2026-12-06 12:00 UTC",getAttribute:()=>"2026-12-06T12:00:00+00:00"};'
        'const bad={textContent:"x",getAttribute:()=>"nonsense"};'
        "globalThis.document={querySelectorAll:()=>[t,bad]};"
        f"{LOCAL_TIMES_SCRIPT};"
        "console.log(JSON.stringify([t.title,t.textContent,bad.textContent]))"
    )
    env = {"TZ": "Asia/Tokyo", "PATH": os.environ["PATH"]}
    out = subprocess.run(["node", "-e", stub], capture_output=True, text=True, env=env, timeout=30)
    title, local, untouched = json.loads(out.stdout)
    assert title == "2026-12-06 12:00 UTC"
    assert ("9:00" in local or "21:00" in local) and "UTC" not in local  # Tokyo, reader's format
    assert untouched == "x"


def test_a_component_that_opts_in_gets_a_response_time_chart_with_a_caption():
    hour = NOW.replace(minute=0)
    medians = {hour - timedelta(hours=k): 100.0 + k for k in range(3)}  # the 3 newest hours
    medians[hour - timedelta(hours=10)] = 400.0  # alone: a dot
    view = page_view(
        page(
            Component(HOSTILE, ("a", "b"), group=True, response_time=True),
            Component("Quiet", ("a",)),
            Component("Empty", ("c",), response_time=True),
        ),
        {
            "a": SiteFacts(None, (), None, (), {}, {}, medians),
            "b": SiteFacts(None, (), None, (), {}, {}, {hour: 150.0}),
        },
        NOW,
    )
    charted, quiet, empty = view.components
    assert len(charted.response) == model.HOURS
    assert charted.response[0] == (hour - timedelta(hours=23), None)
    assert charted.response[-1] == (hour, 150.0)  # the slowest of the group's sites
    assert quiet.response == () and empty.response[-1] == (hour, None)
    html = page_files(view)["index.html"].decode()
    assert html.count('<figure class="rt">') == 2
    assert (
        "<figcaption>Response time, last 24 h: typically 150 ms, at most 400 ms"
        " (each hour&#x27;s median)</figcaption>" in html
    )
    assert "<figcaption>Response time, last 24 h: no data</figcaption>" in html
    svg = html[html.index("<svg") : html.index("</svg>") + 6]
    root = ET.fromstring(svg)
    lines = [p.get("points").split() for p in root.iter("polyline")]
    assert [len(points) for points in lines] == [2, 3]  # the lone hour drawn as a dot
    assert lines[0][0] == "135.7,1.0"  # 13 hours in, the slowest: the top
    assert root.get("aria-hidden") == "true"
