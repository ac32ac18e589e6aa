"""The ``sitewatch`` command, run as a real subprocess (``python -m sitewatch.cli``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


def sitewatch(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "SITEWATCH_SITES_FILE"}
    return subprocess.run(
        [sys.executable, "-m", "sitewatch.cli", *args],
        cwd=cwd,
        env=environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_shipped_file_by_default():
    result = sitewatch("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "include/sites.yaml: 3 sites OK (2 enabled, 1 disabled)\n"


def test_validate_reference_file():
    result = sitewatch("validate", "include/sites.reference.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "include/sites.reference.yaml: 2 sites OK (0 enabled, 2 disabled)\n"


def test_validate_uses_the_environment_variable(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("sites:\n  - name: one\n    url: https://one.test/\n", encoding="utf-8")
    result = sitewatch("validate", env={"SITEWATCH_SITES_FILE": str(path)})
    assert result.returncode == 0
    assert result.stdout == f"{path}: 1 site OK (1 enabled, 0 disabled)\n"


def test_validate_bad_file_prints_every_issue_and_exits_1():
    path = FIXTURES / "invalid" / "wrong_types.yaml"
    result = sitewatch("validate", "wrong_types.yaml", cwd=path.parent)
    assert result.returncode == 1
    expected = path.with_suffix(".expected").read_text(encoding="utf-8")
    assert result.stdout == expected
    assert result.stderr == "wrong_types.yaml: 8 problems\n"


def test_validate_missing_file_exits_1(tmp_path):
    result = sitewatch("validate", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == "nope.yaml:0: <file>: cannot read file: No such file or directory\n"


def test_usage_errors_exit_2():
    assert sitewatch().returncode == 2
    assert sitewatch("frobnicate").returncode == 2
    assert sitewatch("probe").returncode == 2


def test_probe_with_bad_options_exits_2_naming_each_problem():
    result = sitewatch("probe", "ftp://example.com/", "--timeout", "10", "--method", "get")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "sitewatch probe: url: invalid URL 'ftp://example.com/': scheme must be http or https",
        "sitewatch probe: timeout: invalid duration '10': missing unit, e.g. '10s'",
        "sitewatch probe: method: method must be one of GET, HEAD, POST, got 'get' "
        "(did you mean 'GET'?)",
    ]


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<p>Last updated at 14:43</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_probe_up_prints_the_observation_and_exits_0(page_url):
    result = sitewatch("probe", page_url, "--regex", r"Last updated[^0-9]{0,40}\d{1,2}:\d{2}")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["site"] == "127-0-0-1"
    assert (lines["up"], lines["status_code"], lines["regex_matched"]) == ("true", "200", "true")
    assert "error" not in lines  # None values are skipped


def test_probe_down_exits_1(page_url):
    result = sitewatch("probe", page_url, "--forbid-regex", "Last updated", "--timeout", "5s")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "up: false" in result.stdout.splitlines()
