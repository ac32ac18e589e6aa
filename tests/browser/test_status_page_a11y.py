"""The public status page is accessible (issue 27): axe-core, run in Debian's Chromium on the page
of tests/browser/status_sample.py (every status, an open incident in Markdown, the history, the
bars, a chart and maintenance, rendered from real PostgreSQL rows), finds no violation of impact
serious or critical, in the light and the dark colour scheme, on a desktop and a phone.

axe-core is the npm package scripts/dev.sh installs for make test (``axe_install``) and names in
``SITEWATCH_AXE_JS``. No Airflow: the page is a static file opened from a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.browser.status_sample import NOW, sample_files

VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
BACKGROUNDS = {"light": "rgb(255, 255, 255)", "dark": "rgb(13, 17, 23)"}
"""The page's background in each scheme: which one Chromium applied."""
BLOCKING = ("serious", "critical")
# axe-core's default rules (WCAG 2.x A and AA, and best practices); every violation is returned
RUN_AXE = """async () => {
    const result = await axe.run(document, {resultTypes: ["violations"]});
    return {
        passes: result.passes.length,
        violations: result.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
        })),
    };
}"""


@pytest.fixture(scope="module")
def axe_js() -> Path:
    path = os.environ.get("SITEWATCH_AXE_JS", "")
    if not Path(path).is_file():
        pytest.fail(f"SITEWATCH_AXE_JS={path!r} is no file: make test installs axe-core", False)
    return Path(path)


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    """The sample page's files in a temporary folder; its index.html."""
    dsn = os.environ.get("SITEWATCH_PG_DSN") or pytest.fail("SITEWATCH_PG_DSN is not set", False)
    folder = tmp_path_factory.mktemp("status-page")
    for name, data in sample_files(dsn).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder / "index.html"


@pytest.mark.parametrize("device", VIEWPORTS)
@pytest.mark.parametrize("scheme", BACKGROUNDS)
def test_axe_finds_no_serious_or_critical_violation(browser, axe_js, page_file, scheme, device):
    context = browser.new_context(viewport=VIEWPORTS[device], color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto(page_file.as_uri())
        # the page under test is the sample, in the scheme asked for
        statuses = page.locator("[data-status]").evaluate_all("l => l.map(e => e.dataset.status)")
        assert statuses == [
            "operational",
            "major_outage",
            "degraded_performance",
            "partial_outage",
            "under_maintenance",
        ]
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == BACKGROUNDS[scheme]
        page.add_script_tag(path=str(axe_js))
        result = page.evaluate(RUN_AXE)
    finally:
        context.close()
    assert result["passes"] > 20  # axe ran its rules
    blocking = [v for v in result["violations"] if v["impact"] in BLOCKING]
    assert not blocking, f"{scheme} {device}: " + json.dumps(result["violations"], indent=1)


def test_the_script_gives_every_day_cell_its_tooltip_in_the_browser(browser, page_file):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(page_file.as_uri())
        titles = page.locator(".bar i").evaluate_all("l => l.map(e => e.title)")
        label = page.locator(".bar").first.get_attribute("aria-label")
    finally:
        context.close()
    assert len(titles) == 5 * 90
    day = re.compile(r"\d{4}-\d\d-\d\d: (\d+\.\d\d% up|maintenance|no data)")
    assert all(day.fullmatch(t) for t in titles), titles
    assert titles[89][:10] == NOW.date().isoformat()  # the last cell is the sample's today
    assert label.startswith("Uptime per day, last 90 days: ")
