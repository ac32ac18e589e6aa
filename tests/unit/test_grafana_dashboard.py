"""The Grafana dashboard (docker/grafana/dashboards/sitewatch.json) and its provisioning.

Every expression may name only metrics of ``FAMILIES`` (plus Prometheus's ``up`` of the scrape
job) and use only ``$site`` and ``$__rate_interval``; promtool checks that each parses. A real
Prometheus runs them in the lead's end-to-end test; Grafana itself does not run here.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
import yaml

from tests.unit.metrics_files import (
    DASHBOARD,
    FAMILY_BY_NAME,
    ROOT,
    check_promql,
    metric_names,
    prometheus_config,
    scrape_job,
)
from tests.unit.test_compose import binds, env_of, load

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
VARIABLES = {"site", "__rate_interval"}  # the only ones an expression may use
# Each section: a word of its row's title, and metrics its panels must show.
SECTIONS = {
    "overview": {"sitewatch_site_state", "sitewatch_site_up", "sitewatch_uptime_ratio"},
    "phase": {"sitewatch_check_phase_seconds", "sitewatch_check_duration_seconds"},
    "slo": {
        "sitewatch_slo_error_budget_remaining_ratio",
        "sitewatch_site_checks_total",
        "sitewatch_site_checks_up_total",
    },
    "drain": {
        "sitewatch_drain_lag_seconds",
        "sitewatch_kafka_consumer_lag_messages",
        "sitewatch_checks_stored_total",
        "sitewatch_rejected_messages_total",
    },
}
PROVISIONING = ROOT / "docker/grafana/provisioning"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    """Every panel in order, a collapsed row's own panels right after it."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def graphs(dashboard: dict) -> list[dict]:
    """The panels that query (all but rows)."""
    return [p for p in all_panels(dashboard) if p["type"] != "row"]


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in graphs(dashboard) for t in p["targets"]]


def variable(dashboard: dict, name: str) -> dict:
    (found,) = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    return found


def sections(dashboard: dict) -> dict[str, list[dict]]:
    """Row title -> the panels under it (up to the next row)."""
    rows: dict[str, list[dict]] = {}
    current = None
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            assert current is not None, f"panel {panel['title']!r} sits above every row"
            current.append(panel)
    return rows


def test_the_dashboard_has_its_uid_title_and_schema(dashboard):
    assert dashboard["uid"] == "sitewatch"
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41  # Grafana 10 and 11
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_every_panel_has_a_datasource_and_targets(dashboard):
    assert graphs(dashboard)
    for panel in graphs(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_expressions_name_only_metrics_of_families(dashboard):
    for expr in [*exprs(dashboard), variable(dashboard, "site")["definition"]]:
        unknown = metric_names(expr) - FAMILY_BY_NAME.keys()
        assert not unknown, f"{expr}: {unknown}"


def test_every_family_is_on_the_dashboard(dashboard):
    shown = set().union(*map(metric_names, exprs(dashboard)))
    assert shown == set(FAMILY_BY_NAME)


def test_the_scrape_panel_asks_for_the_job_prometheus_scrapes(dashboard):
    jobs = {job for e in exprs(dashboard) for job in re.findall(r'\bup\{job="([^"]+)"\}', e)}
    assert jobs == {scrape_job()["job_name"]}


def test_expressions_use_only_the_site_and_rate_interval_variables(dashboard):
    for expr in exprs(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= VARIABLES, expr
    assert any("$site" in e for e in exprs(dashboard))


def test_every_expression_is_valid_promql(dashboard, tmp_path):
    concrete = [
        e.replace("$site", "example").replace("$__rate_interval", "2m") for e in exprs(dashboard)
    ]
    check_promql(concrete, tmp_path)


def test_the_site_variable_lists_the_sites(dashboard):
    site = variable(dashboard, "site")
    assert site["type"] == "query"
    assert site["datasource"] == DATASOURCE
    assert site["query"]["query"] == site["definition"] == "label_values(sitewatch_site_up, site)"
    assert "site" in FAMILY_BY_NAME["sitewatch_site_up"].labels
    assert not site["multi"] and not site["includeAll"]  # the phase panels show one site
    source = variable(dashboard, "datasource")
    assert (source["type"], source["query"]) == ("datasource", "prometheus")


def test_the_four_sections_are_there_with_their_metrics(dashboard):
    rows = sections(dashboard)
    for word, metrics in SECTIONS.items():
        (title,) = [t for t in rows if word in t.lower()]
        shown = set().union(*(metric_names(t["expr"]) for p in rows[title] for t in p["targets"]))
        assert metrics <= shown, (title, metrics - shown)
    (phases,) = [t for t in rows if "phase" in t.lower()]
    for panel in rows[phases]:
        assert all('site="$site"' in t["expr"] for t in panel["targets"]), panel["title"]


def test_panels_fit_the_grid_without_overlapping(dashboard):
    taken: set[tuple[int, int]] = set()
    for panel in all_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells


# --- provisioning -----------------------------------------------------------------------------


def provisioned(kind: str) -> dict:
    (path,) = (PROVISIONING / kind).iterdir()
    return yaml.safe_load(path.read_text())


def test_the_datasource_is_the_compose_prometheus_at_its_scrape_interval():
    (source,) = provisioned("datasources")["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"]
    url = urlsplit(source["url"])
    services = load("docker-compose.yaml")["services"]
    assert url.hostname in services and url.port == 9090
    # $__rate_interval is four of these: it must be the real scrape interval
    assert source["jsonData"]["timeInterval"] == prometheus_config()["global"]["scrape_interval"]


def test_the_provider_loads_the_mounted_dashboard_folder():
    (provider,) = provisioned("dashboards")["providers"]
    assert provider["type"] == "file"
    grafana = load("docker-compose.yaml")["services"]["grafana"]
    mounts = {b["target"]: b for b in binds(grafana)}
    folder = mounts[provider["options"]["path"]]
    assert folder["read_only"] and (ROOT / folder["source"]) == DASHBOARD.parent
    for kind in ("datasources", "dashboards"):
        mount = mounts[f"/etc/grafana/provisioning/{kind}"]
        assert (ROOT / mount["source"]) == PROVISIONING / kind and mount["read_only"]
    home = env_of(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
