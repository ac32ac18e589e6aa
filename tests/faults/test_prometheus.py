"""``/sitewatch/metrics`` scraped by a real Prometheus (issue 18): a site is checked on a private
Airflow, then Debian's Prometheus scrapes the endpoint with an Airflow API token (Bearer JWT from
``POST /auth/token``) and its query API must show the site's and the pipeline's figures under the
names of ``sitewatch.dashboard.metrics.FAMILIES``. A job without a token is refused (401), and
every query of the Grafana dashboard is one Prometheus accepts."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests
from confluent_kafka.admin import AdminClient

from sitewatch.dashboard.metrics import FAMILIES, PHASES, STATES
from tests.builders import DAILY
from tests.conftest import LocalSite
from tests.faults.stack import ROOT, Stack, private_airflow, private_stack  # noqa: F401
from tests.prometheus import Job, Prometheus, PrometheusError

PATH = "/sitewatch/metrics"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "sitewatch.json"
# Grafana's own variables, as a dashboard query may use them; $site is the test's site
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
# Slow enough for an api-server sharing 2 cores with the whole stack to answer in time
INTERVAL = 5.0


def family(name: str) -> str:
    """``name`` as FAMILIES has it (a KeyError here means a renamed metric, not a bad scrape)."""
    return {f.name: f for f in FAMILIES}[name].name


@pytest.fixture(scope="module")
def checked(private_airflow: Stack):  # noqa: F811
    """The name of a site (up, on a local server) whose check the private stack has stored."""
    stack, name = private_airflow, f"prom-{uuid.uuid4().hex[:6]}"
    with LocalSite() as web:
        stack.set_sites(
            f"sites:\n  - name: {name}\n    url: {web.url}\n    schedule: {DAILY}\n    retries: 0\n"
        )
        stack.wait_runs_done(f"site_{name}", 1, timeout=300)
        (attempt,) = stack.tries(f"site_{name}")
        stack.wait_stored(name, {(name, attempt["logical_date"], 1)})
    return name


def airflow_token(stack: Stack) -> str:
    """A JWT for the admin, as ``Stack.api`` gets one (``POST /auth/token``)."""
    passwords = json.loads((stack.state / "airflow" / "passwords.json").read_text())
    response = requests.post(
        stack.url("/auth/token"),
        json={"username": "admin", "password": passwords["admin"]},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def prometheus(private_airflow: Stack, checked, tmp_path_factory):  # noqa: F811
    """A Prometheus scraping the endpoint as job ``sitewatch`` (with the token) and as job
    ``anonymous`` (without), each scraped once."""
    token = tmp_path_factory.mktemp("scrape") / "token"
    token.write_text(airflow_token(private_airflow))
    url = private_airflow.url(PATH)
    jobs = [Job("sitewatch", url, token), Job("anonymous", url)]
    with Prometheus(jobs, interval=INTERVAL) as prom:
        for job in jobs:
            prom.wait_scraped(job.name, timeout=60)
        yield prom


@pytest.mark.timeout(600)  # the site's run, and the stack's check when it is the module's first
def test_the_sites_figures_reach_prometheus(prometheus: Prometheus, checked):
    site = f'{{site="{checked}"}}'
    target = prometheus.targets()["sitewatch"]
    assert target["health"] == "up", target["lastError"]
    assert prometheus.one('up{job="sitewatch"}') == 1
    assert prometheus.one(family("sitewatch_site_up") + site) == 1
    assert prometheus.one(family("sitewatch_check_up") + site) == 1
    assert prometheus.one(family("sitewatch_check_duration_seconds") + site) > 0
    assert prometheus.one(family("sitewatch_check_status_code") + site) == 200
    assert prometheus.one(family("sitewatch_check_timestamp_seconds") + site) > 0

    states = prometheus.query(family("sitewatch_site_state") + site)
    assert {s["metric"]["state"]: float(s["value"][1]) for s in states} == {
        state: float(state == "up") for state in STATES
    }


@pytest.mark.timeout(600)
def test_each_phase_of_a_plain_http_check_is_a_series(prometheus: Prometheus, checked):
    # The web fixture's URL is http://127.0.0.1:<port>/: the probe still times resolving the
    # literal (dns, near 0), connects and reads; there is no TLS handshake, so no tls series.
    result = prometheus.query(family("sitewatch_check_phase_seconds") + f'{{site="{checked}"}}')
    phases = {s["metric"]["phase"]: float(s["value"][1]) for s in result}
    assert set(phases) == set(PHASES) - {"tls"}
    assert all(seconds >= 0 for seconds in phases.values()), phases
    assert phases["ttfb"] > 0


@pytest.mark.timeout(600)
def test_the_pipelines_figures_reach_prometheus(
    prometheus: Prometheus,
    private_airflow: Stack,  # noqa: F811
):
    job = '{job="sitewatch"}'
    assert prometheus.one(family("sitewatch_checks_stored_total") + job) >= 1
    assert prometheus.one(family("sitewatch_rejected_messages_total") + job) >= 0
    assert prometheus.one(family("sitewatch_sites_configured") + job) >= 1
    assert prometheus.one(family("sitewatch_kafka_up") + job) == 1

    topic = private_airflow.env["SITEWATCH_TOPIC"]
    admin = AdminClient({"bootstrap.servers": private_airflow.env["SITEWATCH_KAFKA_BOOTSTRAP"]})
    partitions = admin.list_topics(topic, timeout=30).topics[topic].partitions
    lag = prometheus.query(family("sitewatch_kafka_consumer_lag_messages") + job)
    assert sorted(int(s["metric"]["partition"]) for s in lag) == sorted(partitions)
    assert {s["metric"]["topic"] for s in lag} == {topic}
    assert all(float(s["value"][1]) >= 0 for s in lag), lag


@pytest.mark.timeout(600)
def test_a_scrape_without_a_valid_token_is_refused(
    prometheus: Prometheus,
    private_airflow: Stack,  # noqa: F811
):
    assert prometheus.one('up{job="anonymous"}') == 0
    target = prometheus.targets()["anonymous"]
    assert target["health"] == "down"
    assert "401" in target["lastError"]

    url = private_airflow.url(PATH)
    assert requests.get(url, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not.a.token"}
    assert requests.get(url, headers=wrong, timeout=30).status_code == 401


@pytest.mark.timeout(600)
def test_every_series_exposed_is_one_of_the_families(prometheus: Prometheus):
    result = prometheus.query('{job="sitewatch", __name__=~"sitewatch_.*"}')
    names = {s["metric"]["__name__"] for s in result}
    assert names, "no sitewatch_ series scraped"
    # an OpenMetrics counter also has a _created sample (when it started counting)
    known = {f.name for f in FAMILIES}
    known |= {f.name.removesuffix("_total") + "_created" for f in FAMILIES if f.kind == "counter"}
    assert names - known == set()


def dashboard_queries(node) -> list[str]:
    """Every ``expr`` in a Grafana dashboard's JSON, panels in rows included."""
    if isinstance(node, dict):
        own = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return own + [e for value in node.values() for e in dashboard_queries(value)]
    if isinstance(node, list):
        return [e for item in node for e in dashboard_queries(item)]
    return []


def fill(expr: str, site: str) -> str:
    """``expr`` with Grafana's ``$name`` / ``${name}`` variables replaced: ``site`` by the
    test's site, Grafana's own by fixed values (GRAFANA_VARIABLES)."""
    values = {**GRAFANA_VARIABLES, "site": site}
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: values.get(m.group(1) or m.group(2), m.group(0)),
        expr,
    )


@pytest.mark.timeout(600)
def test_every_query_of_the_grafana_dashboard_is_accepted(prometheus: Prometheus, checked):
    if not DASHBOARD.exists():
        pytest.skip(f"{DASHBOARD.relative_to(ROOT)} does not exist yet")
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    assert queries, f"no expr in {DASHBOARD}"
    # a misspelt name is valid PromQL that finds nothing: every name must be one of FAMILIES
    used = {name for expr in queries for name in re.findall(r"\bsitewatch_\w+", expr)}
    assert used - {f.name for f in FAMILIES} == set()
    refused = {}
    for expr in queries:
        try:
            prometheus.query(fill(expr, checked))
        except PrometheusError as exc:
            refused[expr] = str(exc)
    assert refused == {}
