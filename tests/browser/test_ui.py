"""The Airflow UI end to end in headless Chromium: log in, see the site DAGs, trigger one, read
its log, find the result on the Sites dashboard (which only logged-in users may open), see a
slow site degraded and a down site in maintenance as both, watch the Sites page refresh itself,
mute a site from the ``sitewatch_mute`` trigger form, and update an open status page incident
picked from the list that ``sitewatch_incident_update``'s Required Actions form offers.

The tests share one logged-in page and run in file order: each builds on what the one before did.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from playwright.sync_api import expect

from sitewatch.airflow.incident_update_dag import label
from sitewatch.names import INCIDENT_UPDATE_DAG_ID, MUTE_DAG_ID, STATUS_PAGE_DAG_ID
from sitewatch.storage.checks import store_batch
from sitewatch.storage.incidents import page_incidents, write_update
from sitewatch.storage.schema import SCHEMA_VERSION
from sitewatch.storage.schema import version as schema_version
from tests.browser.conftest import (
    COMPONENT,
    LOCATIONS,
    MAINT_REASON,
    MAINT_SITE,
    MULTI_SITE,
    QUORUM,
    REFUSED,
    ROOT,
    SITE,
    SITE_TAG,
    SLOW_PATH,
    SLOW_SECONDS,
    SLOW_SITE,
    STATUS_PAGE,
    failed_logs,
    shot,
    wait_for,
)
from tests.builders import observation

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]

DAG_ID = f"site_{SITE}"
DOCS_IMG = ROOT / "docs" / "img"


def publish(path, name: str) -> None:
    """Copy a screenshot into docs/img for the README when SITEWATCH_UPDATE_SCREENSHOTS=1.

    A plain test run leaves the repository as it was; screenshots stay in tests/artifacts.
    """
    if os.environ.get("SITEWATCH_UPDATE_SCREENSHOTS") != "1":
        return
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS_IMG / name)


def test_dashboard_refuses_anonymous_requests(airflow):
    url = f"{airflow.url}/sitewatch/"
    assert requests.get(url, timeout=60).status_code == 401
    page_request = requests.get(
        url, headers={"Accept": "text/html"}, allow_redirects=False, timeout=60
    )
    assert page_request.status_code == 303
    assert page_request.headers["location"].startswith("/auth/login")
    forged = requests.get(url, cookies={"_token": "not-a-jwt"}, timeout=60)
    assert forged.status_code == 401
    assert requests.get(f"{airflow.url}/sitewatch/sites/{SITE}", timeout=60).status_code == 401

    # The page never migrates: until the drain's create_tables ran it says so, then it answers.
    def with_token():
        return requests.get(url, headers={"Authorization": f"Bearer {airflow.token()}"}, timeout=60)

    first = with_token()
    assert first.status_code == 200 or (
        first.status_code == 503 and "create_tables" in first.text
    ), first.text
    ready = wait_for("the drain to create the tables", lambda: with_token().status_code == 200, 180)
    assert ready and "<h1>Sites</h1>" in with_token().text


def test_dag_list_shows_site_dags_with_tags(page, airflow, dags_parsed):
    page.goto(f"{airflow.url}/dags")
    row = page.get_by_text(DAG_ID, exact=True).first
    row.wait_for()
    assert page.get_by_text(SITE_TAG).first.is_visible()
    assert page.get_by_text("sitewatch_drain", exact=True).first.is_visible()
    publish(shot(page, "dag-list"), "dag-list.png")


def test_trigger_site_dag_and_read_its_log(page, airflow, dags_parsed):
    page.goto(f"{airflow.url}/dags/{DAG_ID}")
    page.get_by_role("button", name=re.compile("^Trigger")).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name=re.compile("^Trigger")).last.click()

    def manual_run_done():
        runs = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns", params={"run_type": "manual"})
        done = [r for r in runs["dag_runs"] if r["state"] in ("success", "failed")]
        return done[0] if done else None

    run = wait_for("the triggered run to finish", manual_run_done, 120)
    assert run["state"] == "success"
    page.goto(f"{airflow.url}/dags/{DAG_ID}/runs/{run['dag_run_id']}/tasks/probe")
    summary = page.get_by_text(re.compile(rf"site={SITE} attempt=1 .*up=True status=200"))
    summary.first.wait_for(timeout=60_000)
    publish(shot(page, "run-log"), "run-log.png")


def test_sites_page_shows_the_checked_site(page, airflow, several_locations, slo_history):
    # The drain DAG (unpaused by dags_parsed) stores the observation; then the page shows it.
    def site_up():
        page.goto(f"{airflow.url}/sitewatch/")
        row = page.locator(f'tr[data-site="{SITE}"] [data-state]')
        return row.count() and row.first.get_attribute("data-state") == "up"

    try:
        wait_for("the drain DAG to store the check", site_up, 45, every=3)
    except pytest.fail.Exception:
        # The drain's sensor defers to the triggerer; when that is slow or down, run the drain
        # task itself, which is what the DAG would run next.
        airflow.cli("tasks", "test", "sitewatch_drain", "drain")
        wait_for("the Sites page to show the site up", site_up, 60, every=3)
    row = page.locator(f'tr[data-site="{SITE}"]')
    assert "100.00%" in row.inner_text()
    assert row.locator("[data-location]").count() == 0  # one location: as before locations
    # 1 of slo_history's 288 checks down, 99% over 30 days: 65.2% of the budget left (a little
    # more once the stack's own checks are rolled up); everything up in the last hour
    single = float(row.locator("[data-budget]").get_attribute("data-budget"))
    assert 0.6 < single < 0.7
    assert row.locator("[data-burn]").inner_text() == "0.0x"
    # One location of three always down: far less left, how much less depends on which of the
    # older runs fall in whole hours (the rollup's), which depends on the time of day.
    multi = page.locator(f'tr[data-site="{MULTI_SITE}"] [data-budget]')
    assert float(multi.get_attribute("data-budget")) < single - 0.2
    maint = page.locator(f'tr[data-site="{MAINT_SITE}"]')
    assert maint.locator("[data-state]").first.get_attribute("data-state") == "maintenance"
    assert MAINT_REASON in maint.inner_text()
    # The same page inside the UI, from its navigation.
    page.goto(f"{airflow.url}/plugin/sites")
    frame = page.frame_locator("iframe").first
    frame.locator(f'tr[data-site="{SITE}"] [data-state="up"]').wait_for()
    publish(shot(page, "sites-page"), "sites-page.png")
    # The month's SLA report, downloaded from inside the UI's frame.
    with page.expect_download() as download:
        frame.locator('#reports [data-report$=".csv"]').last.click()
    month = datetime.now(UTC).strftime("%Y-%m")
    assert download.value.suggested_filename == f"sitewatch-report-{month}.csv"
    # one table, each line's kind in its first cell, as Python's csv module reads it
    with open(download.value.path(), newline="", encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    assert {line["section"] for line in lines} <= {"site", "incident", "note"}
    assert any(line["section"] == "site" and line["site"] == SITE for line in lines)
    frame.get_by_role("link", name=SITE, exact=True).click()
    frame.locator("svg#chart").wait_for()
    assert frame.locator("table#attempts tbody tr").count() >= 1
    shot(page, "site-detail")
    assert "≤ 200 ms met" in frame.locator('[data-card="p95 latency"]').inner_text()
    # from the first day slo_history stored (49 hours ago), not 30 days of 100% before it
    first_day = (datetime.now(UTC) - timedelta(hours=49)).date()
    days = (datetime.now(UTC).date() - first_day).days + 1
    assert frame.locator("svg#budget-chart circle").count() == days
    assert frame.get_by_text(f"Error budget left since the first check, {first_day}").count() == 1
    objective = frame.get_by_role("heading", name="Objective", exact=True)
    objective.evaluate("heading => heading.scrollIntoView()")  # to the top of the frame
    publish(shot(page, "site-budget"), "site-budget.png")


def test_a_slow_site_is_degraded_on_both_pages(page, airflow, slo_history):
    page.goto(f"{airflow.url}/sitewatch/")
    badge = page.locator(f'tr[data-site="{SLOW_SITE}"] [data-state]').first
    assert badge.get_attribute("data-state") == "degraded"
    up = page.locator(f'tr[data-site="{SITE}"] [data-state="up"]').first
    colour = "element => getComputedStyle(element).backgroundColor"
    assert badge.evaluate(colour) != up.evaluate(colour)  # a colour of its own
    page.get_by_role("link", name=SLOW_SITE, exact=True).click()
    status_card = page.locator(".card", has_text="Status")
    assert status_card.locator("[data-state]").get_attribute("data-state") == "degraded"


def test_a_down_site_in_maintenance_shows_both_and_its_attempts_in_it(page, airflow, slo_history):
    page.goto(f"{airflow.url}/sitewatch/")
    row = page.locator(f'tr[data-site="{MAINT_SITE}"]')
    states = [b.get_attribute("data-state") for b in row.locator("[data-state]").all()]
    assert states == ["maintenance", "down"] and "maintenance · down" in row.inner_text()
    page.get_by_role("link", name=MAINT_SITE, exact=True).click()
    # all() does not wait: read the badges once the site's page is the one shown
    page.wait_for_url(f"**/sitewatch/sites/{MAINT_SITE}")
    badges = page.locator(".card", has_text="Status").locator("[data-state]")
    expect(badges).to_have_count(2)
    assert [b.get_attribute("data-state") for b in badges.all()] == ["maintenance", "down"]

    # recent_states' check before the window (answered in 90 ms) is not marked; the two in it
    # (60 and 40 ms) are, in the table and as one shaded stretch of the chart
    def attempt(ms: int):
        cell = page.locator("td", has_text=re.compile(rf"^{ms} ms$"))
        return page.locator("table#attempts tbody tr", has=cell)

    assert [attempt(ms).get_attribute("data-in-maintenance") for ms in (90, 60, 40)] == [
        None,
        "",
        "",
    ]
    assert "maintenance" in attempt(40).locator("td").nth(3).inner_text()
    assert page.locator("svg#chart rect[data-maintenance-band]").count() == 1
    publish(shot(page, "site-maintenance"), "site-maintenance.png")


def test_the_sites_page_refreshes_its_figures_on_its_own(page, airflow, watched_site, slo_history):
    # A page of its own whose timers run on Playwright's clock: its 30 s pass at once.
    fresh = page.context.new_page()
    try:
        fresh.clock.install()
        fresh.goto(f"{airflow.url}/sitewatch/?sort=status")
        fresh.evaluate("window.notReloaded = true")
        read = fresh.locator("#read")
        before, row = read.inner_text(), fresh.locator(f'tr[data-site="{SLOW_SITE}"]')
        last_check = row.locator("td").nth(2).inner_text()
        assert before.startswith("read ") and last_check.endswith(" ago")

        def order():
            return [r.get_attribute("data-site") for r in fresh.locator("tr[data-site]").all()]

        sorted_by_status = order()
        now = datetime.now(UTC).replace(microsecond=0)
        check = observation(SLOW_SITE, now, url=watched_site.rstrip("/") + SLOW_PATH,
                            response_time_ms=1000 * SLOW_SECONDS)  # fmt: skip
        with airflow.results() as conn:
            store_batch(conn, [check])
        time.sleep(1)  # the read time below moves on by at least a second
        fresh.clock.run_for(31_000)
        wait_for("the page to read its rows again", lambda: read.inner_text() != before, 15, 0.2)
        assert read.inner_text().startswith("read ") and "not refreshed" not in read.inner_text()
        after = row.locator("td").nth(2).inner_text()
        assert after.endswith(" s ago") and after != last_check  # the new check
        assert row.locator("[data-state]").first.get_attribute("data-state") == "degraded"
        assert fresh.evaluate("window.notReloaded") is True and order() == sorted_by_status
    finally:
        fresh.close()


def test_a_new_sites_chart_starts_at_its_first_check_and_an_unknown_site_is_a_404_page(
    page, airflow, slo_history
):
    # SLOW_SITE's first check is recent_states' 40 minutes ago, or its DAG's first run if that
    # was due earlier (its hourly tick: up to an hour ago): the chart starts there, its first
    # point at the left edge, instead of a sliver at the right of 24 hours.
    page.goto(f"{airflow.url}/sitewatch/sites/{SLOW_SITE}")
    chart = page.locator("svg#chart")
    start = datetime.fromisoformat(chart.get_attribute("data-start"))
    with airflow.results() as conn:
        (first,) = conn.execute(
            "SELECT min(scheduled_at) FROM site_checks WHERE site = %s AND final", (SLOW_SITE,)
        ).fetchone()
    assert start == first and timedelta(minutes=35) < datetime.now(UTC) - start < timedelta(hours=2)
    assert chart.locator("polyline").get_attribute("points").startswith("56.0,")
    assert chart.locator("[data-axis=start]").text_content() == f"{start:%Y-%m-%d %H:%M}"
    heading = page.get_by_role("heading", name=re.compile("^Response time since the first check"))
    assert heading.count() == 1
    # An unknown site: a page in the dashboard's style, not JSON, and a way back.
    answer = page.goto(f"{airflow.url}/sitewatch/sites/nope")
    assert answer.status == 404 and answer.headers["content-type"].startswith("text/html")
    assert page.locator("h1").inner_text() == "404 Not Found"
    assert page.locator("#error").inner_text() == "no site named 'nope'"
    page.get_by_role("link", name="← Sites").click()
    page.locator("table#sites").wait_for()


def test_a_site_checked_from_several_locations_shows_each_and_its_verdict(
    page, airflow, several_locations
):
    # Each run of the site's DAG ends partial: the watched site refuses REFUSED, one location
    # short of the quorum. The drain stores the locations' checks and judges the run.
    def partial():
        page.goto(f"{airflow.url}/sitewatch/")
        shown = page.locator(f'tr[data-site="{MULTI_SITE}"] [data-state]')
        return shown.count() and shown.first.get_attribute("data-state") == "partial"

    try:
        wait_for("the drain to judge a run of the site", partial, 60, every=3)
    except pytest.fail.Exception:  # the drain's sensor is slow to resume: run the drain itself
        airflow.cli("tasks", "test", "sitewatch_drain", "drain")
        wait_for("the Sites page to show the site partial", partial, 90, every=3)
    row = page.locator(f'tr[data-site="{MULTI_SITE}"]')
    cells = [(c.get_attribute("data-location"), c.get_attribute("data-location-state"))
             for c in row.locator("[data-location]").all()]  # fmt: skip
    assert cells == [(loc, "down" if loc == REFUSED else "up") for loc in LOCATIONS]
    assert f"quorum {QUORUM} of {len(LOCATIONS)}" in row.inner_text()
    # The site's page inside the UI: the matrix of runs by location, the older ones included.
    page.goto(f"{airflow.url}/plugin/sites")
    frame = page.frame_locator("iframe").first
    frame.get_by_role("link", name=MULTI_SITE, exact=True).click()
    runs = frame.locator("table#runs tbody tr")
    runs.first.wait_for()
    assert runs.first.locator("[data-state]").get_attribute("data-state") == "partial"
    assert runs.count() > len(several_locations)

    def run(at):
        return frame.locator(f'table#runs tr[data-run="{at.isoformat()}"]')

    assert run(several_locations[1]).locator("[data-state]").get_attribute("data-state") == "down"
    assert run(several_locations[4]).locator('[data-location="ap-south"]').inner_text() == "missing"
    assert frame.locator("table#attempts th", has_text="Location").count() == 1
    publish(shot(page, "site-locations"), "site-locations.png")


# --- one-click maintenance: sitewatch_mute's trigger form ----------------------------------------


@pytest.fixture(scope="module")
def mute_ready(airflow):
    """The mute DAG is parsed, and the drain's create_tables made the tables it writes to."""
    dag_ids = lambda: {d["dag_id"] for d in airflow.api("GET", "/dags")["dags"]}  # noqa: E731
    wait_for("the mute DAG to be parsed", lambda: MUTE_DAG_ID in dag_ids(), 120)
    with airflow.results() as conn:
        current = lambda: schema_version(conn) >= SCHEMA_VERSION  # noqa: E731
        wait_for("the drain to create the tables", current, 180, every=2)


def test_mute_a_site_from_the_trigger_form(page, airflow, mute_ready):
    page.goto(f"{airflow.url}/dags/{MUTE_DAG_ID}")
    page.get_by_role("button", name=re.compile("^Trigger")).first.click()
    dialog = page.get_by_role("dialog")
    # sites is a multi-select of the sites file's names (the param's ``examples``); this one is
    # already in maintenance, so the mute changes nothing the other browser tests look at
    dialog.get_by_role("combobox", name="Select one or multiple values").click()
    page.get_by_role("option", name=MAINT_SITE, exact=True).click()
    dialog.locator("#element_duration").fill("2h")
    dialog.locator("#element_reason").fill("database upgrade")
    shot(page, "mute-form")
    dialog.get_by_role("button", name=re.compile("^Trigger")).last.click()

    def run_done():
        runs = airflow.api("GET", f"/dags/{MUTE_DAG_ID}/dagRuns")["dag_runs"]
        return next((r for r in runs if r["state"] in ("success", "failed")), None)

    run = wait_for("the mute run to finish", run_done, 120)
    assert run["state"] == "success"
    with airflow.results() as conn:
        stored = conn.execute(
            "SELECT site, ends_at - starts_at, reason, created_by FROM site_mutes"
        ).fetchall()
    assert stored == [(MAINT_SITE, timedelta(hours=2), "database upgrade", "admin")]


# --- an open incident's update, picked in sitewatch_incident_update's Required Actions form -------


def test_update_an_open_incident_picked_from_the_list(page, airflow, mute_ready):
    dag_ids = lambda: {d["dag_id"] for d in airflow.api("GET", "/dags")["dags"]}  # noqa: E731
    parsed = lambda: INCIDENT_UPDATE_DAG_ID in dag_ids()  # noqa: E731
    wait_for("the incident update DAG to be parsed", parsed, 120)
    with airflow.results() as conn:  # as an operator's trigger form would have opened it
        opened = write_update(
            conn, STATUS_PAGE, incident=None, state="investigating", body="Looking into it.",
            author="bob", at=datetime.now(UTC), title="Slow pages", components=[COMPONENT],
        )  # fmt: skip
        found = page_incidents(conn, STATUS_PAGE, datetime.now(UTC))
    # "#<id> Slow pages (investigating, page status)": the button that answers for it
    option = label(next(i for i in found if i.id == opened))
    page.goto(f"{airflow.url}/dags/{INCIDENT_UPDATE_DAG_ID}")
    page.get_by_role("button", name=re.compile("^Trigger")).first.click()
    page.get_by_role("dialog").get_by_role("button", name=re.compile("^Trigger")).last.click()

    def waiting_run():
        runs = airflow.api("GET", f"/dags/{INCIDENT_UPDATE_DAG_ID}/dagRuns")["dag_runs"]
        for run in runs:
            path = f"/dags/{INCIDENT_UPDATE_DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/pick"
            if airflow.api("GET", path)["state"] == "awaiting_input":
                return run["dag_run_id"]
        return None

    run_id = wait_for("the form to wait for an answer", waiting_run, 120, every=2)
    form = f"/dags/{INCIDENT_UPDATE_DAG_ID}/runs/{run_id}/tasks/pick/required_actions"
    page.goto(f"{airflow.url}{form}")
    # four open incidents or fewer: one button each, which answers with it; it is there once
    # the form has its fields, so nothing typed before is replaced by their defaults
    answer = page.get_by_test_id(f"hitl-option-{option}")
    expect(answer).to_be_enabled(timeout=30_000)
    text = page.locator("#element_text")
    text.fill("A fix is **out**.")
    page.locator("#element_state").click()  # a select of the states
    page.get_by_role("option", name="monitoring", exact=True).click()
    expect(text).to_have_value("A fix is **out**.")
    expect(page.locator("#element_state")).to_contain_text("monitoring")
    shot(page, "incident-update-form")
    answered_at = datetime.now(UTC)
    answer.click()

    def run_done():
        run = airflow.api("GET", f"/dags/{INCIDENT_UPDATE_DAG_ID}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    run = wait_for("the update to be written", run_done, 120)
    assert run["state"] == "success", failed_logs(airflow, INCIDENT_UPDATE_DAG_ID, run_id)
    with airflow.results() as conn:
        found = page_incidents(conn, STATUS_PAGE, answered_at - timedelta(hours=1))
    incident = next(i for i in found if i.id == opened)
    assert (incident.state, incident.taken_over) == ("monitoring", True)
    last = incident.updates[-1]
    assert (last.author, last.state, last.body) == ("admin", "monitoring", "A fix is **out**.")

    # The change re-publishes the page at once: a run of the status page DAG on the incidents'
    # asset (the triggerer's watcher saw the new update), not only its every-minute one.
    def republished():
        runs = airflow.api(
            "GET", f"/dags/{STATUS_PAGE_DAG_ID}/dagRuns", params={"run_type": "asset_triggered"}
        )["dag_runs"]
        queued = [datetime.fromisoformat(r["queued_at"]) for r in runs if r["queued_at"]]
        return any(at >= answered_at for at in queued)

    wait_for("a status page run on the incidents' asset", republished, 90, every=2)
    index = airflow.stack.state / "status-pages" / STATUS_PAGE / "index.html"
    shown = lambda: index.exists() and "A fix is <strong>out</strong>." in index.read_text()  # noqa: E731
    wait_for("the page to show the update", shown, 90, every=2)
