"""``/sitewatch/metrics`` against a real PostgreSQL: what one scrape says about configured sites
and the pipeline, parsed back with prometheus_client's own parser, and who may scrape it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sitewatch.airflow.web_app import AIRFLOW_HOST
from sitewatch.config.maintenance import Window
from sitewatch.config.objectives import Slo
from sitewatch.config.site import Site
from sitewatch.config.steps import Step
from sitewatch.dashboard.metrics import FAMILIES
from sitewatch.names import DRAIN_GROUP, READER_ROLE
from sitewatch.pipeline.lag import KafkaLag
from sitewatch.storage.checks import Rejected, store_batch
from sitewatch.storage.mutes import add_mutes
from sitewatch.storage.verdicts import record_verdict
from sitewatch.web import app as sites_app
from sitewatch.web import metrics_page
from tests.builders import observation
from tests.conftest import free_ports
from tests.integration import test_kafka_lag as kafka_lag
from tests.integration import test_roles as roles
from tests.integration.test_sites_page import host

NOW = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
LAG = KafkaLag("sitewatch.checks", "sitewatch-drain", {0: 3, 1: 0})


def check(site, ago, *, ms=100.0, **fields):
    """A check of ``site`` scheduled ``ago`` before NOW, started 10 s into its run, every phase
    timed."""
    at = NOW - ago
    return observation(
        site, at, checked_at=at + MINUTE / 6, response_time_ms=ms, dns_ms=1.0, connect_ms=2.0,
        tls_ms=3.0, ttfb_ms=ms - 10, **fields,
    )  # fmt: skip


def scrape(client, **headers) -> dict:
    """{(name, labels as a sorted tuple): value} of one text-format scrape."""
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels):
    return found.get((name, tuple(sorted(labels.items()))))


def app(connect, configured, **kwargs):
    kwargs.setdefault("scrape_auth", lambda: None)
    if "lag" not in kwargs:
        kwargs["lag"] = lambda: LAG
    return sites_app.create_app(
        host(connect), sites=lambda: configured, clock=lambda: NOW, auth=lambda: None, **kwargs
    )


@pytest.fixture
def migrated(migrated_conn, monkeypatch):
    monkeypatch.setattr(sites_app._Schema, "current", False)
    return migrated_conn


@pytest.fixture
def sites(migrated):
    """shop: up, slow (degraded), TLS seen; blog: down; docs: in a window of the sites file;
    api: muted; global: two locations, its latest verdict partial; new: nothing stored yet;
    gone: stored, no longer configured."""
    expiry = datetime(2026, 8, 1, tzinfo=UTC)
    store_batch(migrated, [
        check("shop", 2 * HOUR, up=False),
        dataclasses.replace(check("shop", 5 * MINUTE, ms=900.0), tls_expires_at=expiry),
        check("blog", 5 * MINUTE, up=False, final=False),
        check("blog", 4 * MINUTE, up=False, attempt=2),
        check("docs", 5 * MINUTE, up=False),
        check("api", 5 * MINUTE),
        check("global", 5 * MINUTE, location="east"),
        check("global", 5 * MINUTE, location="west", up=False),
        check("gone", 5 * MINUTE),
    ], [Rejected(b"{", None, "sitewatch.checks", 0, 7, "not JSON")])  # fmt: skip
    record_verdict(
        migrated, "global", NOW - 5 * MINUTE, "partial", 2, {"east": "up", "west": "down"}
    )
    add_mutes(migrated, ["api"], NOW - HOUR, NOW + HOUR, "moving", "admin")
    window = Window(start=NOW - HOUR, end=NOW + HOUR, reason="upgrade")
    return {
        "shop": Site(name="shop", url="https://shop.example/", degraded_ms=500,
                     slo=Slo(99.0, timedelta(days=1))),
        "blog": Site(name="blog", url="https://blog.example/"),
        "docs": Site(name="docs", url="https://docs.example/", maintenance=(window,)),
        "api": Site(name="api", url="https://api.example/"),
        "global": Site(name="global", url="https://global.example/",
                       locations=("east", "west"), quorum=2),
        "new": Site(name="new", url="https://new.example/"),
    }  # fmt: skip


def test_a_scrape_shows_each_configured_site_and_the_pipeline(pg_connect, sites):
    found = scrape(TestClient(app(pg_connect, sites, problems=lambda: 2)))
    states = {
        dict(labels)["site"]: dict(labels)["state"]
        for (name, labels), v in found.items()
        if name == "sitewatch_site_state" and v == 1
    }
    assert states == {
        "shop": "degraded", "blog": "down", "docs": "maintenance", "api": "maintenance",
        "global": "partial", "new": "no_data",
    }  # fmt: skip
    assert [value(found, "sitewatch_site_up", site=s) for s in ("shop", "blog", "global")] == [
        1,
        0,
        1,
    ]
    assert value(found, "sitewatch_site_up", site="new") is None
    assert not any(dict(labels).get("site") == "gone" for _, labels in found)  # not configured
    shop = {"site": "shop", "location": "local"}
    assert value(found, "sitewatch_check_duration_seconds", **shop) == 0.9
    assert value(found, "sitewatch_check_phase_seconds", phase="ttfb", **shop) == 0.89
    assert value(found, "sitewatch_check_phase_seconds", phase="dns", **shop) == 0.001
    assert value(found, "sitewatch_check_status_code", site="blog", location="local") == 503
    assert value(found, "sitewatch_tls_cert_expiry_timestamp_seconds", **shop) == (
        datetime(2026, 8, 1, tzinfo=UTC).timestamp()
    )
    assert value(found, "sitewatch_check_timestamp_seconds", **shop) == (
        (NOW - 5 * MINUTE + MINUTE / 6).timestamp()
    )
    assert value(found, "sitewatch_check_up", site="global", location="west") == 0
    assert value(found, "sitewatch_uptime_ratio", site="shop", window="24h") == 0.5
    assert value(found, "sitewatch_site_checks_total", **shop) == 2
    assert value(found, "sitewatch_site_checks_up_total", **shop) == 1
    # one of two checks down against a 1% budget: 50 times the budget spent
    assert value(found, "sitewatch_slo_objective_ratio", site="shop") == 0.99
    assert value(found, "sitewatch_slo_error_budget_remaining_ratio", site="shop") == pytest.approx(
        -49
    )
    assert value(found, "sitewatch_sites_configured") == 6
    assert value(found, "sitewatch_sites_file_problems") == 2
    assert value(found, "sitewatch_checks_stored_total") == 9  # every attempt, gone's too
    assert value(found, "sitewatch_rejected_messages_total") == 1
    assert value(found, "sitewatch_drain_lag_seconds") == (4 * MINUTE - MINUTE / 6).seconds
    assert value(found, "sitewatch_kafka_up") == 1
    lag = {"topic": "sitewatch.checks", "group": "sitewatch-drain"}
    assert value(found, "sitewatch_kafka_consumer_lag_messages", partition="0", **lag) == 3
    assert value(found, "sitewatch_metrics_duration_seconds") > 0


def test_a_silent_location_of_the_latest_verdict_is_exposed(pg_connect, migrated):
    # issue 29: west stored nothing for the latest run; the verdict kept its last word
    kept = {"east": "up", "west": "missing, last down"}
    record_verdict(migrated, "split", NOW - 5 * MINUTE, "down", 1, kept)
    split = Site(name="split", url="https://split.example/", locations=("east", "west"), quorum=1)
    found = scrape(TestClient(app(pg_connect, {"split": split})))
    assert value(found, "sitewatch_site_location_silent", site="split", location="west") == 1
    assert value(found, "sitewatch_site_location_silent", site="split", location="east") == 0
    assert value(found, "sitewatch_site_up", site="split") == 0  # still down: not a recovery


def test_openmetrics_when_prometheus_asks_for_it(pg_connect, sites):
    answer = TestClient(app(pg_connect, sites)).get(
        "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"}
    )
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")
    assert "sitewatch_checks_stored_total 9" in answer.text


def test_every_family_is_declared_even_before_any_check(pg_connect, migrated):
    answer = TestClient(app(pg_connect, {})).get("/metrics")
    declared = {line.split()[2] for line in answer.text.splitlines() if line.startswith("# TYPE")}
    assert declared == {family.name for family in FAMILIES}


def test_the_sites_file_problems_are_counted_from_the_file(
    pg_connect, migrated, tmp_path, monkeypatch
):
    sites_file = tmp_path / "sites.yaml"
    sites_file.write_text(
        "sites:\n  - name: shop\n    url: https://shop.example/\n"
        "  - name: Bad Name\n    url: https://bad.example/\n"
        "  - name: blog\n    url: ftp://blog.example/\n"
    )
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(sites_file))
    client = TestClient(
        app(pg_connect, sites_app.configured_sites(), problems=sites_app.sites_file_problems)
    )
    found = scrape(client)
    assert value(found, "sitewatch_sites_configured") == 1
    assert value(found, "sitewatch_sites_file_problems") == 2
    sites_file.write_text("sites: [unclosed\n")  # a file that cannot be parsed: every site goes
    found = scrape(TestClient(app(pg_connect, {}, problems=sites_app.sites_file_problems)))
    assert value(found, "sitewatch_sites_file_problems") >= 1


def test_kafka_trouble_is_kafka_up_0_not_a_failed_scrape(pg_connect, sites):
    broken = KafkaLag("sitewatch.checks", "sitewatch-drain", {}, error="broker down")
    found = scrape(TestClient(app(pg_connect, sites, lag=lambda: broken)))
    assert value(found, "sitewatch_kafka_up") == 0
    assert not any(name == "sitewatch_kafka_consumer_lag_messages" for name, _ in found)


def test_results_unavailable_is_a_503(pg_connect):
    answer = TestClient(app(pg_connect, {})).get("/metrics")  # not migrated
    assert answer.status_code == 503


def test_the_pages_role_can_serve_the_metrics(pg_dsn, owned_schema, monkeypatch):
    with roles.as_role(pg_dsn, roles.OWNER_ROLE, owned_schema) as owner:
        store_batch(owner, [check("shop", 5 * MINUTE)])
    monkeypatch.setattr(sites_app._Schema, "current", False)
    configured = {"shop": Site(name="shop", url="https://shop.example/", slo=Slo(99.0))}
    client = TestClient(app(lambda: roles.as_role(pg_dsn, READER_ROLE, owned_schema), configured))
    assert value(scrape(client), "sitewatch_site_up", site="shop") == 1


owned_schema = roles.owned_schema


# --- who may scrape ------------------------------------------------------------------------------

SCRAPE_TOKEN = "s3cret-scrape"


@pytest.fixture
def airflow_tokens(tmp_path, monkeypatch):
    """Airflow's auth manager as the API server sets it up (its own users file here), and a
    token maker: ``token(role)`` is what ``POST /auth/token`` would give a user of that role."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    passwords = tmp_path / "passwords.json"
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    manager = init_auth_manager()
    return lambda role: manager.generate_jwt(SimpleAuthManagerUser(username="u", role=role))


@pytest.fixture
def guarded(pg_connect, migrated, airflow_tokens):
    return TestClient(app(pg_connect, {}, scrape_auth=metrics_page.scrape_auth(AIRFLOW_HOST)))


@pytest.mark.parametrize(
    ("environ", "token", "expected"),
    [
        ({}, None, 401),
        ({}, "nonsense", 401),
        ({}, "airflow:admin", 200),
        ({}, "airflow:viewer", 200),
        ({}, "airflow:None", 403),  # a user who may not read DAGs
        ({"SITEWATCH_METRICS_TOKEN": SCRAPE_TOKEN}, "s3cret", 401),
        ({"SITEWATCH_METRICS_TOKEN": SCRAPE_TOKEN}, SCRAPE_TOKEN, 200),
        ({"SITEWATCH_METRICS_TOKEN": SCRAPE_TOKEN}, "airflow:viewer", 200),
        ({"SITEWATCH_METRICS_TOKEN": ""}, "", 401),
        ({"SITEWATCH_METRICS_ANONYMOUS": "true"}, None, 200),
        ({"SITEWATCH_METRICS_ANONYMOUS": "false"}, None, 401),
        ({"SITEWATCH_METRICS_ANONYMOUS": "maybe"}, SCRAPE_TOKEN, 500),
    ],
)
def test_scrapes_need_a_token_unless_the_operator_opts_in(
    guarded, airflow_tokens, monkeypatch, environ, token, expected
):
    for name in (metrics_page.TOKEN_VAR, metrics_page.ANONYMOUS_VAR):
        monkeypatch.delenv(name, raising=False)
    for name, setting in environ.items():
        monkeypatch.setenv(name, setting)
    if token is not None and token.startswith("airflow:"):
        role = token.removeprefix("airflow:")
        token = airflow_tokens(None if role == "None" else role)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    answer = guarded.get("/metrics", headers=headers)
    assert answer.status_code == expected, answer.text
    if expected == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    if expected != 200:
        assert "sitewatch_" not in answer.text
    if expected == 500:
        assert "SITEWATCH_METRICS_ANONYMOUS='maybe'" in answer.json()["detail"]


# --- the drain group's lag, read from the real Kafka ---------------------------------------------


def test_the_default_lag_reads_the_drain_group_and_logs_kafka_trouble_once(
    pg_connect, migrated, new_topic, monkeypatch, caplog
):
    topic = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", topic)
    kafka_lag.produce(topic, {0: 2, 2: 1})
    client = TestClient(app(pg_connect, {}, lag=None))  # the app's own DrainLag
    found = scrape(client)
    lag = {"topic": topic, "group": DRAIN_GROUP}
    assert value(found, "sitewatch_kafka_up") == 1
    assert [
        value(found, "sitewatch_kafka_consumer_lag_messages", partition=str(p), **lag)
        for p in range(3)
    ] == [2, 0, 1]

    (port,) = free_ports(1)  # the broker gone: nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_KAFKA", kafka_lag.kafka_conn(f"127.0.0.1:{port}"))
    client = TestClient(app(pg_connect, {}, lag=None))
    with caplog.at_level("WARNING", logger="sitewatch.web.metrics_page"):
        for _ in range(2):
            assert value(scrape(client), "sitewatch_kafka_up") == 0
    warned = [r for r in caplog.records if "Kafka lag" in r.getMessage()]
    assert len(warned) == 1 and f"127.0.0.1:{port}" in warned[0].getMessage()


def test_a_flows_latest_final_check_gives_each_step_its_duration(pg_connect, migrated):
    def step(name, took=None, **fields):
        record = {"name": name, "method": "GET", "url": f"https://api.example/{name}"}
        timed = {"passed": True, "status": 200, "response_ms": took} if took else {}
        return {**record, "always": False, **timed, **fields}

    older = [step("login", 500.0), step("read", 500.0)]
    final = [step("login", 40.0), step("read", 60.0), step("cleanup", error_detail="not run")]
    store_batch(migrated, [
        check("flow", HOUR, steps=older),
        check("flow", 5 * MINUTE, steps=final, final=False, attempt=1),
        check("flow", 4 * MINUTE, steps=final, attempt=2),
        check("east", 5 * MINUTE, steps=older, location="east"),
        check("plain", 5 * MINUTE),
    ])  # fmt: skip
    steps = (Step("login", "https://api.example/login"), Step("read", "https://api.example/r"))
    configured = {
        "flow": Site(name="flow", url="https://api.example/login", steps=steps),
        "plain": Site(name="plain", url="https://plain.example/"),
    }
    found = scrape(TestClient(app(pg_connect, configured)))
    durations = {
        dict(labels)["step"]: v
        for (name, labels), v in found.items()
        if name == "sitewatch_check_step_duration_seconds"
    }
    # the newest run's final attempt; cleanup sent no request; east's site is not configured
    assert durations == {"login": 0.04, "read": 0.06}
