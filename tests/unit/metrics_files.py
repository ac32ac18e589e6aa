"""What the metrics tests share: the repo's metrics files, the endpoint's path, the metric names
an expression uses, and promtool.

The names come from ``sitewatch.dashboard.metrics.FAMILIES`` (their one owner) and the path
from the plugin's ``URL_PREFIX``, read from its source: importing the plugin would import Airflow.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sitewatch.dashboard.metrics import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "docker/prometheus/prometheus.yml"
ALERTS_YML = ROOT / "docker/prometheus/alerts.yml"
DASHBOARD = ROOT / "docker/grafana/dashboards/sitewatch.json"
METRICS_DOC = ROOT / "docs/metrics.md"
PROMTOOL = Path("/usr/bin/promtool")  # Debian's package prometheus (scripts/dev.sh test)

FAMILY_BY_NAME = {family.name: family for family in FAMILIES}
_METRIC = re.compile(r"\bsitewatch_[a-z0-9_]+")


def metric_names(expr: str) -> set[str]:
    """The ``sitewatch_*`` names in a PromQL expression (no suffixed series exist here)."""
    return set(_METRIC.findall(expr))


def metrics_path() -> str:
    """The endpoint's path: ``plugins/sitewatch_dashboard.py``'s URL_PREFIX + ``/metrics``."""
    tree = ast.parse((ROOT / "plugins/sitewatch_dashboard.py").read_text())
    (prefix,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["URL_PREFIX"]
    ]
    return f"{prefix}/metrics"


def prometheus_config() -> dict:
    """docker/prometheus/prometheus.yml, parsed."""
    return yaml.safe_load(PROMETHEUS_YML.read_text())


def scrape_job() -> dict:
    """The one scrape job of docker/prometheus/prometheus.yml (sitewatch's)."""
    (job,) = prometheus_config()["scrape_configs"]
    return job


def promtool(*args: str | Path) -> subprocess.CompletedProcess:
    """Run promtool; the test fails with its output when it does not exit 0."""
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: install Debian's 'prometheus' (scripts/dev.sh test)")
    done = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{done.stdout}{done.stderr}"
    return done


def check_promql(exprs: list[str], folder: Path) -> None:
    """Fail unless promtool accepts every expression (as recording rules in a file of
    ``folder``): a syntax check without a server."""
    rules = [{"record": f"check:expr_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = folder / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    promtool("check", "rules", path)
