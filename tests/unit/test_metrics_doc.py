"""docs/metrics.md says what the code does: its table lists exactly the metrics of
``FAMILIES`` (type and labels), its scrape example scrapes the plugin's path, and its alert list
is docker/prometheus/alerts.yml's."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import yaml

from sitewatch.dashboard.metrics import FAMILIES
from tests.unit.metrics_files import (
    ALERTS_YML,
    FAMILY_BY_NAME,
    METRICS_DOC,
    metrics_path,
    scrape_job,
)

NO_LABELS = "—"


def section(title: str, text: str | None = None) -> str:
    """The ``## title`` section of ``text`` (the doc's by default), up to the next ``## ``."""
    text = METRICS_DOC.read_text() if text is None else text
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/metrics.md has no section {title!r}"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text``, as stripped cells."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) > 2 and set(lines[1]) <= set("|- "), "no table"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def code(cell: str) -> list[str]:
    """The `code` spans of a cell, in order."""
    return re.findall(r"`([^`]+)`", cell)


def drift(text: str) -> list[str]:
    """How the Metrics table of doc ``text`` differs from FAMILIES (empty: it does not).

    Each row is ``| `name` | type | `label`, `label` | meaning |`` (labels ``—`` for none),
    in FAMILIES' order."""
    rows, problems = {}, []
    for name, kind, labels, meaning in table_rows(section("Metrics", text)):
        (name,) = code(name)
        if name in rows:
            problems.append(f"{name}: listed twice")
        rows[name] = (kind, () if labels == NO_LABELS else tuple(code(labels)))
        if not meaning:
            problems.append(f"{name}: no meaning")
    for name in rows.keys() - FAMILY_BY_NAME.keys():
        problems.append(f"{name}: not in FAMILIES")
    for family in FAMILIES:
        if family.name not in rows:
            problems.append(f"{family.name}: missing")
        elif rows[family.name] != (family.kind, family.labels):
            problems.append(
                f"{family.name}: {rows[family.name]}, code says {family.kind, family.labels}"
            )
    if not problems and list(rows) != [family.name for family in FAMILIES]:
        problems.append("not in FAMILIES' order")
    return problems


def test_the_table_lists_every_family_with_its_type_and_labels():
    assert drift(METRICS_DOC.read_text()) == []


def test_drift_is_caught():
    text = METRICS_DOC.read_text()
    first, last = FAMILIES[0], FAMILIES[-1]
    row = re.search(rf"^\| `{first.name}` \|.*$", text, re.M).group(0)
    assert drift(text.replace(row, "")) == [f"{first.name}: missing"]
    assert drift(text.replace(row, row.replace("| gauge |", "| counter |")))
    assert drift(text.replace(row, row.replace("`site` |", "`site`, `location` |")))
    assert drift(text.replace(row, row + "\n" + row)) == [f"{first.name}: listed twice"]
    last_row = re.search(rf"^\| `{last.name}` \|.*$", text, re.M).group(0)
    swapped = text.replace(row, "@@").replace(last_row, row).replace("@@", last_row)
    assert drift(swapped) == ["not in FAMILIES' order"]


def test_the_scrape_example_scrapes_the_plugins_path_with_a_token_file():
    (block,) = re.findall(r"```yaml\n(.*?)```", section("Scraping it"), re.S)
    (job,) = yaml.safe_load(block)["scrape_configs"]
    assert job["metrics_path"] == metrics_path()
    assert job["authorization"]["type"] == "Bearer"
    assert "credentials_file" in job["authorization"]  # the token never sits in the config
    assert "credentials" not in job["authorization"]
    assert job["job_name"] == scrape_job()["job_name"]  # the dashboard's and the rules' job


def test_the_alert_list_is_the_rules_file():
    rules = yaml.safe_load(ALERTS_YML.read_text())["groups"][0]["rules"]
    listed = [code(cells[0])[0] for cells in table_rows(section("Alerts"))]
    assert listed == [rule["alert"] for rule in rules]


def test_the_cost_section_leaves_room_for_the_benchmark():
    assert "Measured: see bench/results.md, section 5" in section("Cost")
    assert "never scans `site_checks`" in section("Cost")  # a flow's steps are read by key


def test_the_docker_steps_leave_the_token_readable_by_prometheus_alone(tmp_path):
    """The doc's shell steps, run as written (without ``docker compose``; ``sudo`` only when not
    root already): the token file and .env end up private, the token owned by the container's
    user, nobody (65534)."""
    (block,) = re.findall(r"```sh\n(.*?)```", section("Prometheus and Grafana on Docker"), re.S)
    steps = [line for line in block.splitlines() if not line.startswith("docker compose")]
    script = "\n".join(steps)
    if os.geteuid() == 0:
        script = script.replace("sudo ", "")
    (tmp_path / "docker" / "prometheus").mkdir(parents=True)
    (tmp_path / ".env").write_text("AIRFLOW_UID=1000\n")
    (tmp_path / ".env").chmod(0o644)  # made earlier, readable by all
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, check=True)
    token = (tmp_path / "docker" / "prometheus" / "token").stat()
    assert stat.S_IMODE(token.st_mode) == 0o400
    if os.geteuid() == 0:
        assert (token.st_uid, token.st_gid) == (65534, 65534)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert "SITEWATCH_METRICS_TOKEN=" in (tmp_path / ".env").read_text()
