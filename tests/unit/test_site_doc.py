"""The settings table on a site's DAG page (``factory.site_doc``): what a flow and a TLS minimum
show there."""

from __future__ import annotations

from sitewatch.airflow.factory import site_doc
from sitewatch.config.site import Site
from sitewatch.config.steps import Step


def rows(doc: str) -> dict[str, str]:
    lines = [line.split(" | ") for line in doc.splitlines() if line.startswith("| ")]
    return {key.removeprefix("| "): value.removesuffix(" |") for key, value in lines[2:]}


def test_a_flow_lists_its_steps_with_their_methods_and_no_single_request_keys():
    steps = (
        Step("login", "https://api.example/login", method="POST"),
        Step("read", "https://api.example/items/${login.id}"),
        Step("cleanup", "https://api.example/items/${login.id}", method="DELETE", always=True),
    )
    shown = rows(site_doc(Site(name="api", url="https://api.example/login", steps=steps)))
    assert shown["steps"] == "`POST login → GET read → DELETE cleanup (always)`"
    assert "method" not in shown and "${login.id}" not in str(shown)
    assert "tls_min_version" not in shown  # not set


def test_a_tls_minimum_is_listed():
    site = Site(name="shop", url="https://shop.example/", tls_min_version="1.3")
    shown = rows(site_doc(site))
    assert shown["tls_min_version"] == "`1.3`" and "steps" not in shown
