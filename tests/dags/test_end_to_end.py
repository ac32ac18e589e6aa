"""Two site DAGs and the drain DAG through ``dag.test()``: what was observed is what is stored."""

import json
import uuid
from datetime import timedelta

from airflow.providers.postgres.hooks.postgres import PostgresHook

from sitewatch.airflow.drain_dag import drain_dag
from sitewatch.airflow.factory import site_dag
from sitewatch.config.loader import load_sites
from sitewatch.observation import FIELDS, Observation
from tests.conftest import read_topic


def test_observations_reach_site_checks_field_by_field(web, new_topic, tmp_path, monkeypatch):
    topic = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", topic)
    tag = uuid.uuid4().hex[:8]
    web.reply = (200, "<h1>Forum</h1> welcome back, Ünïcode")
    path = tmp_path / "sites.yaml"
    path.write_text(
        json.dumps(
            {
                "sites": [
                    {"name": f"up-{tag}", "url": web.url, "regex": "welcome back", "retries": 0},
                    {
                        "name": f"down-{tag}",
                        "url": web.url + "missing",
                        "retries": 0,
                        "expect_status": [201],
                    },
                ]
            }
        )
    )  # JSON is YAML
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))
    sites = load_sites(path)
    assert sites.issues == []
    runs = [site_dag(site).test() for site in sites.sites]
    assert [r.state for r in runs] == ["success", "failed"]

    published = {
        Observation.from_message(m.value()).site: Observation.from_message(m.value())
        for m in read_topic(topic, 2)
    }
    assert drain_dag().test().state == "success"

    columns = [f.name for f in FIELDS]
    with PostgresHook(postgres_conn_id="sitewatch_postgres").get_conn() as conn:
        cur = conn.cursor()
        cur.execute(
            f"SELECT {', '.join(columns)} FROM site_checks WHERE site LIKE %s", (f"%-{tag}",)
        )
        stored = {
            row[0]: Observation(**dict(zip(columns, row, strict=True))) for row in cur.fetchall()
        }
    assert stored == published
    up, down = stored[f"up-{tag}"], stored[f"down-{tag}"]
    assert (up.up, up.regex_matched, up.status_code, down.up, down.error) == (
        True,
        True,
        200,
        False,
        "status",
    )
    assert up.scheduled_at.utcoffset() == timedelta(0)
    assert up.regex == "welcome back" and down.regex is None
