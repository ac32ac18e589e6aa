"""Extreme values in every site key, through the whole path (issue 24, item 1).

One sites file holds two plain sites and, for every key, the key's reference example with each
leaf (and the whole value) replaced in turn by each value of ``EXTREMES``: dates at the ends of
what ``datetime`` holds, numbers past 64 bits, infinities, durations of other scripts' digits,
control characters, empty and huge containers. Every such entry must become a site or problems
of its own, and every part that reads the sites file must go on serving the rest: ``sitewatch
validate``, the DAG factory, the validated-sites cache, the triggerer's lookup, the mute form, the
Sites page and ``/sitewatch/metrics``.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from datetime import date, datetime

import pytest
import yaml
from fastapi.testclient import TestClient

from sitewatch.airflow import probe_trigger
from sitewatch.airflow.factory import site_dags
from sitewatch.airflow.mute_dag import mute_dag
from sitewatch.config.keys import KEYS
from sitewatch.config.loader import ENV_VAR, cached_sites, load_sites
from sitewatch.pipeline.lag import KafkaLag
from sitewatch.web import app as sites_app
from tests.integration.test_sites_page import host

EXTREMES = [
    None, True, 0, -1, 2**63, 10**400, 1e308, float("inf"), float("nan"), -0.0, 1e-320,
    "", " ", "x" * 5000, "\0", "a\u202eb", "\x1b[31m", "\u0663h", "\uff15m",
    "9999999999999999d", "1e308s", "-1s", "99999999999999999999999999999s", "99999999h",
    "9999-12-31T00:00:00-12:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z", "2099-12-31T23:59:59+00:00",
    "0 0 30 2 *", "* * * * *", "59 23 31 12 *", "0 0 29 2 1",
    "Etc/GMT+12", "Etc/GMT-14", "../../etc/passwd", "localtime",
    "http://[::1]:99999/", "${HOME}", "%00", "2147483648", "1e400", "0x7fffffffffffffff",
    [], {}, [[[]]], [0] * 1000, date(9999, 12, 31), date(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59), datetime(1, 1, 1),
]  # fmt: skip
PLAIN = [
    {"name": "home", "url": "https://example.com/"},
    {"name": "other", "url": "https://example.net/", "depends_on": ["home"]},
]
ISSUE = re.compile(r"[^\n]+?:\d+: [^\n]+?: [^\n]+")
LAG = KafkaLag("sitewatch.checks", "sitewatch-drain", {0: 0})


def _leaves(value, path=()):
    """Paths to every leaf and container of ``value``, itself included (``()``)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _leaves(inner, (*path, index))
    yield path


def _replaced(value, path, new):
    if not path:
        return new
    value = copy.deepcopy(value)
    inner = value
    for part in path[:-1]:
        inner = inner[part]
    inner[path[-1]] = new
    return value


def catalogue() -> list[tuple[str, str, dict]]:
    """(key, what it tries, entry): every key's example with each extreme at each place in it."""
    cases = []
    for key in KEYS.values():
        example = yaml.safe_load(key.example)
        for path in dict.fromkeys(_leaves(example)):
            for extreme in EXTREMES:
                entry = {"name": f"x{len(cases)}", "url": "https://example.org/"}
                entry[key.name] = _replaced(example, path, extreme)
                cases.append((key.name, f"{key.name}{list(path)}={extreme!r:.40}", entry))
    return cases


def _name(entry: dict) -> str | None:
    """The entry's name as the sites file reads it (a YAML date is text to it), or None."""
    name = entry["name"]
    return name.isoformat() if isinstance(name, date) else name if isinstance(name, str) else None


@pytest.fixture(scope="module")
def sites_file(tmp_path_factory):
    cases = catalogue()
    document = {"sites": PLAIN + [entry for _, _, entry in cases]}
    path = tmp_path_factory.mktemp("extreme") / "sites.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "utf-8")
    return path, cases


@pytest.fixture
def configured(sites_file, monkeypatch):
    path, _ = sites_file
    monkeypatch.setenv(ENV_VAR, str(path))
    return path


def test_validate_lists_problems_and_never_a_traceback(sites_file):
    path, _ = sites_file
    done = subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", "validate", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) > 1000
    assert [line for line in lines if not ISSUE.fullmatch(line)] == []


def test_every_entry_is_a_site_or_problems_of_its_own(sites_file):
    path, cases = sites_file
    result = load_sites(path)
    names = {site.name for site in result.sites}
    assert {"home", "other"} <= names
    reported = {re.match(r"sites\[(\d+)\]", issue.field)[1] for issue in result.issues}
    neither = [
        what for index, (_, what, entry) in enumerate(cases, start=len(PLAIN))
        if str(index) not in reported and _name(entry) not in names
    ]  # fmt: skip
    assert neither == []
    assert not any("please report this bug" in issue.message for issue in result.issues)
    # both outcomes occur: the catalogue is no list of values that all fail the same check
    assert 300 < len(names) < len(cases)


def test_factory_cache_lookup_and_mute_form_keep_every_valid_site(configured):
    expected = load_sites(configured)
    cached = cached_sites()
    assert [s.name for s in cached.sites] == [s.name for s in expected.sites]
    dags = site_dags(cached)
    assert set(dags) == {f"site_{s.name}" for s in expected.sites if s.enabled}
    assert probe_trigger._site("home", str(configured)).name == "home"
    offered = mute_dag().params.get_param("sites").schema["examples"]
    assert offered == [s.name for s in expected.sites]


def test_sites_page_and_metrics_answer_for_every_valid_site(
    sites_file, configured, pg_connect, migrated_schema
):
    app = sites_app.create_app(
        host(pg_connect), auth=lambda: None, scrape_auth=lambda: None, lag=lambda: LAG
    )
    client = TestClient(app)
    listing = client.get("/")
    assert listing.status_code == 200, listing.text[-2000:]
    assert "home" in listing.text
    # A site page per key: the first valid entry that tried an extreme value of that key.
    valid, shown = sites_app.configured_sites(), {"": "home"}
    for key, _, entry in sites_file[1]:
        if _name(entry) in valid:
            shown.setdefault(key, entry["name"])
    assert len(shown) > 20
    for name in shown.values():
        page = client.get(f"/sites/{name}")
        assert page.status_code == 200, (name, page.text[-2000:])
    metrics = client.get("/metrics")
    assert metrics.status_code == 200, metrics.text[-2000:]
    assert 'site="home"' in metrics.text
