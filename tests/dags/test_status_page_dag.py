"""The ``sitewatch_status_page`` DAG through ``dag.test()``: the sites file's page rendered from
the results database named by the Airflow connection and written to the folder of
``SITEWATCH_STATUS_PAGE_URL``."""

from __future__ import annotations

import json
import textwrap

from sitewatch.airflow.hooks import results_connection
from sitewatch.airflow.status_page_dag import status_page_dag
from sitewatch.status.files import MANIFEST
from sitewatch.storage.schema import migrate


def test_a_run_publishes_each_page_to_the_configured_folder(tmp_path, monkeypatch):
    sites = tmp_path / "sites.yaml"
    sites.write_text(
        textwrap.dedent("""\
        sites:
          - name: shop
            url: https://shop.internal.example/
        status_pages:
          - id: public
            title: Shop status
            components: [{site: shop, name: Shop}]
    """)
    )
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(sites))
    monkeypatch.setenv("SITEWATCH_STATUS_PAGE_URL", (tmp_path / "out").as_uri())
    conn = results_connection()
    try:
        migrate(conn)
    finally:
        conn.close()
    assert status_page_dag().test().state == "success"
    page = tmp_path / "out" / "public"
    assert sorted(p.relative_to(page).as_posix() for p in page.rglob("*") if p.is_file()) == [
        MANIFEST,
        "badges/shop.svg",
        *(f"badges/uptime-{window}/shop.svg" for window in ("24h", "30d", "7d")),
        "feed.atom",
        "index.html",
        "shields/shop.json",
        *(f"shields/uptime-{window}/shop.json" for window in ("24h", "30d", "7d")),
        "summary.json",
    ]
    assert "<h1>Shop status</h1>" in (page / "index.html").read_text()
    assert "internal" not in (page / "index.html").read_text()
    assert json.loads((page / "summary.json").read_text())["page"]["id"] == "public"
