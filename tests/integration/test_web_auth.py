"""The pages' login on Airflow's own pieces (``sitewatch.airflow.web_app``), without a browser:
who gets the listing, a site's page, a redirect to the login page or a 401."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sitewatch.config.site import Site
from sitewatch.web import app as sites_app
from tests.integration import test_metrics_endpoint as metrics_endpoint
from tests.integration.test_sites_page import NOW, host

airflow_tokens = metrics_endpoint.airflow_tokens  # Airflow's auth manager and a token maker
SHOP = Site(name="shop", url="https://shop.example/")


@pytest.fixture
def client(pg_connect, migrated_schema, airflow_tokens, monkeypatch):
    """The app with its default auth (``page_auth`` on Airflow's host) over a migrated schema."""
    monkeypatch.setattr(sites_app._Schema, "current", False)
    app = sites_app.create_app(
        host(pg_connect), sites=lambda: {"shop": SHOP}, clock=lambda: NOW, lag=lambda: None
    )
    return TestClient(app, follow_redirects=False)


@pytest.mark.parametrize("path", ["/", "/rows", "/sites/shop"])
def test_a_user_who_may_read_dags_gets_the_pages(client, airflow_tokens, path):
    for role in ("admin", "viewer"):
        token = airflow_tokens(role)
        answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, (role, answer.text)


@pytest.mark.parametrize("path", ["/", "/rows", "/sites/shop"])
def test_a_user_who_may_not_read_dags_is_refused(client, airflow_tokens, path):
    answer = client.get(path, headers={"Authorization": f"Bearer {airflow_tokens(None)}"})
    assert answer.status_code == 403


def test_without_a_token_a_browser_goes_to_the_login_page_and_a_client_gets_401(client):
    page = client.get("/sites/shop", headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"].startswith("/auth/login")
    assert "sites%2Fshop" in page.headers["location"]  # and back here after it
    assert client.get("/").status_code == 401
    forged = client.get("/", cookies={"_token": "not-a-jwt"})
    assert forged.status_code == 401
    # the page's script asks for its rows without text/html: a lapsed login is a 401 it shows,
    # not the login page's HTML taken for rows
    assert client.get("/rows").status_code == 401


def test_the_pages_script_reads_its_rows_with_the_login_cookie(client, airflow_tokens):
    client.cookies.set("_token", airflow_tokens("viewer"))  # as the UI sets it at login
    answer = client.get("/rows")
    assert answer.status_code == 200 and answer.text.startswith("<tbody data-read=")
