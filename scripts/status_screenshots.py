"""The README's screenshots of a public status page: the sample page of
tests/browser/status_sample.py, light and dark, on a desktop and a phone, as PNG files in
docs/img/ (``status-<scheme>-<device>.png``).

Debian's Chromium takes them headless, driven by Playwright (as tests/browser does), with the
colour scheme forced each way; each is the top of the page, as the reader first sees it. The page
is read from rows stored in a throwaway schema of the results database, so PostgreSQL must run:

    make services && source .state/env.sh && .venv/bin/python scripts/status_screenshots.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests package, for the sample and Chromium's settings

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.status_sample import sample_files  # noqa: E402

OUT = ROOT / "docs" / "img"
# the CSS viewport, and device pixels per CSS pixel (a phone's screen is denser)
DEVICES = {
    "desktop": ({"width": 1024, "height": 1280}, 1),
    "phone": ({"width": 390, "height": 1000}, 1.5),
}
SCHEMES = ("light", "dark")


def main() -> int:
    dsn = os.environ.get("SITEWATCH_PG_DSN")
    if not dsn:
        print("SITEWATCH_PG_DSN is not set: source .state/env.sh first", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        for name, data in sample_files(dsn).items():
            (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_bytes(data)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for device, (viewport, scale) in DEVICES.items():
            for scheme in SCHEMES:
                context = browser.new_context(
                    viewport=viewport, device_scale_factor=scale, color_scheme=scheme,
                    locale="en-GB", timezone_id="Europe/Berlin",
                )  # fmt: skip
                page = context.new_page()
                page.goto((Path(folder) / "index.html").as_uri())
                path = OUT / f"status-{scheme}-{device}.png"
                page.screenshot(path=str(path))
                print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB")
                context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
