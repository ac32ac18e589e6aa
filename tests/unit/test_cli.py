"""The ``sitewatch`` command, run as a real subprocess (``python -m sitewatch.cli``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sitewatch import cli

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
    result = sitewatch("validate", env={"SITEWATCH_STATUS_PAGE_URL": "s3://conn@bucket/pages/"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == (
        "include/sites.yaml: 3 sites OK (2 enabled, 1 disabled)\n"
        "status page examples: 2 components, published to s3://conn@bucket/pages/examples/\n"
    )


def test_validate_reference_file(tmp_path):
    env = {"SITEWATCH_STATUS_PAGE_URL": "", "SITEWATCH_STATE_DIR": str(tmp_path)}
    result = sitewatch("validate", "include/sites.reference.yaml", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == (
        "include/sites.reference.yaml: 5 sites OK (0 enabled, 5 disabled)\n"
        f"status page status: 2 components, published to {tmp_path.as_uri()}/status-pages/status/\n"
    )


STATUS_PAGES = """\
sites:
  - name: shop
    url: https://shop.test/
status_pages:
  - id: public
    title: Public
    components:
      - {site: shop, name: Shop}
      - {group: [shop], name: Everything}
  - id: Bad Id
    title: Broken
    components:
      - {site: shop, name: Shop}
  - id: other
    title: Other
    components:
      - {site: shpo, name: Shop}
"""


def test_validate_lists_status_pages_and_keeps_their_file_line_errors(tmp_path):
    path = tmp_path / "pages.yaml"
    path.write_text(STATUS_PAGES, encoding="utf-8")
    result = sitewatch("validate", "pages.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert [line.split(": ")[:2] for line in result.stdout.splitlines()] == [
        ["pages.yaml:10", "status_pages[1].id"],
        ["pages.yaml:17", "status_pages[2].components[0].site"],
    ]
    assert "status page" not in result.stdout
    path.write_text(STATUS_PAGES.split("  - id: Bad Id")[0], encoding="utf-8")
    env = {"SITEWATCH_STATUS_PAGE_URL": "memory://pages"}
    result = sitewatch("validate", "pages.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[1:] == [
        "status page public: 2 components, published to memory://pages/public/"
    ]
    result = sitewatch(
        "validate", "pages.yaml", cwd=tmp_path, env={"SITEWATCH_STATUS_PAGE_URL": "x"}
    )
    assert result.returncode == 2
    assert "SITEWATCH_STATUS_PAGE_URL='x'" in result.stderr


def test_validate_uses_the_environment_variable(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("sites:\n  - name: one\n    url: https://one.test/\n", encoding="utf-8")
    result = sitewatch("validate", env={"SITEWATCH_SITES_FILE": str(path)})
    assert result.returncode == 0
    assert result.stdout == f"{path}: 1 site OK (1 enabled, 0 disabled)\n"


def test_validate_warns_of_a_default_no_site_takes_and_still_passes(tmp_path):
    text = (
        "defaults:\n  headers: {X-Probe: '1'}\n  send: PING\n"
        "sites:\n  - name: cache\n    url: tcp://cache.test:6379\n"
    )
    (tmp_path / "tcp.yaml").write_text(text, encoding="utf-8")
    result = sitewatch("validate", "tcp.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == (
        "tcp.yaml:2: warning: defaults.headers: applies to no site: it is for an http(s) check,"
        " and no site is one\n"
        "tcp.yaml: 1 site OK (1 enabled, 0 disabled)\n"
    )


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
        "sitewatch probe: url: invalid URL 'ftp://example.com/': "
        "scheme must be http, https, tcp, tls or dns",
        "sitewatch probe: timeout: invalid duration '10': missing unit, e.g. '10s'",
        "sitewatch probe: method: method must be one of GET, HEAD, POST, got 'get' "
        "(did you mean 'GET'?)",
    ]


class _Page(BaseHTTPRequestHandler):
    """A page that shows the request's headers, so a regex can tell which ones arrived."""

    def do_GET(self):
        body = b"<p>Last updated at 14:43</p>\n" + bytes(self.headers)
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


def test_probe_from_a_location_names_it(page_url):
    result = sitewatch("probe", page_url, "--location", "eu-west")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "location: eu-west" in result.stdout.splitlines()
    bad = sitewatch("probe", page_url, "--location", "EU West")
    assert bad.returncode == 2
    assert "--location 'EU West': use at most 31 of a-z" in bad.stderr


def test_probe_down_exits_1(page_url):
    result = sitewatch("probe", page_url, "--forbid-regex", "Last updated", "--timeout", "5s")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "up: false" in result.stdout.splitlines()


def test_usage_errors_of_probe_exit_2_with_a_message(tmp_path):
    cases = {
        ("probe", "--sites-file", "x.yaml", "https://a.test/"): "--sites-file needs --site NAME",
        ("probe", "--site", "a", "https://a.test/"): "--site probes the site as configured",
        ("probe", "--site", "a", "--insecure"): "--site probes the site as configured",
        ("probe", "--regex", "x"): "give a URL or --site NAME",
        ("probe", "https://a.test/", "-H", "X-No-Colon"): "-H expects 'NAME: VALUE'",
        ("probe", "https://a.test/", "-H", "X: 1", "-H", "X: 2"): "-H 'X' given twice",
    }
    for argv, message in cases.items():
        result = sitewatch(*argv, cwd=tmp_path)
        assert result.returncode == 2, (argv, result)
        assert message in result.stderr and "Traceback" not in result.stderr, (argv, result)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::1", "url: invalid URL 'http://[::1': invalid IPv6 URL"),
        ("http://\udcff/", "url: invalid URL 'http://\\udcff/': contains '\\udcff', which is not"),
        ("https://☃.example/", "is not a valid internationalised domain name"),
        ("https://*.example/", "host '*.example' cannot start with '*' or '.'"),
        ("https://a.test/\u202e", "contains invisible format character U+202E"),
    ],
)
def test_a_bad_url_is_a_usage_error_never_a_traceback(url, message):
    result = sitewatch("probe", url)
    assert result.returncode == 2, result
    assert result.stderr.startswith("sitewatch probe: ") and message in result.stderr, result
    assert "Traceback" not in result.stderr


def test_validate_prints_keys_that_hold_lone_surrogates_escaped(tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text('sites:\n  - name: a\n    url: https://a.test/\n    "\\ud800": 1\n')
    result = sitewatch("validate", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    assert result.stdout.startswith(f"{path}:4: sites[0].\\ud800: unknown key '\\ud800'")


def test_probe_sends_headers_and_reads_secret_variables_from_the_environment(page_url):
    token = {"SITEWATCH_SECRET_TOKEN": "tok-3f9a1c7e5b"}
    argv = ("probe", page_url, "-H", "X-Token:  ${SITEWATCH_SECRET_TOKEN}", "-H", "X-Plain: 1")
    result = sitewatch(*argv, "--regex", "X-Token: tok-3f9a1c7e5b\nX-Plain: 1", env=token)
    assert result.returncode == 0, result.stdout + result.stderr
    unset = sitewatch(*argv)
    assert unset.returncode == 2
    assert unset.stderr == (
        "sitewatch probe: 127-0-0-1.headers.X-Token: "
        "environment variable SITEWATCH_SECRET_TOKEN is not set\n"
    )


def test_probe_refuses_header_variables_without_the_secret_prefix(page_url):
    result = sitewatch("probe", page_url, "-H", "X-Leak: ${AIRFLOW__CORE__FERNET_KEY}")
    assert result.returncode == 2
    assert result.stderr == (
        "sitewatch probe: headers.X-Leak: header values may not name AIRFLOW__CORE__FERNET_KEY:"
        " Airflow's own settings hold its database password and keys; use a variable that starts"
        " with SITEWATCH_SECRET_\n"
    )


def _sites_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(
        f"""\
sites:
  - name: shop
    url: {url}
    regex: "Authorization: Bearer tok-3f9a1c7e5b"
    headers:
      Authorization: "Bearer ${{SITEWATCH_SECRET_SHOP_TOKEN}}"
  - name: shop-down
    url: {url}
    forbid_regex: Last updated
    enabled: false
  - name: broken
    url: ftp://nowhere/
""",
        encoding="utf-8",
    )
    return path


def test_probe_site_probes_a_configured_site_as_its_dag_does(page_url, tmp_path):
    path = _sites_file(tmp_path, page_url)
    env = {"SITEWATCH_SECRET_SHOP_TOKEN": "tok-3f9a1c7e5b"}
    result = sitewatch("probe", "--site", "shop", "--sites-file", str(path), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert (lines["site"], lines["up"], lines["regex_matched"]) == ("shop", "true", "true")
    # the valid sites stay usable although the file has a broken entry
    down = sitewatch("probe", "--site", "shop-down", env={"SITEWATCH_SITES_FILE": str(path)})
    assert down.returncode == 1, down.stdout + down.stderr
    assert down.stderr == "sitewatch probe: note: shop-down is disabled (no DAG runs it)\n"
    unset = sitewatch("probe", "--site", "shop", "--sites-file", str(path))
    assert unset.returncode == 2
    assert "environment variable SITEWATCH_SECRET_SHOP_TOKEN is not set" in unset.stderr


def test_probe_unknown_site_exits_2_naming_the_nearest(page_url, tmp_path):
    path = _sites_file(tmp_path, page_url)
    result = sitewatch("probe", "--site", "shpo", "--sites-file", "sites.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "sites.yaml:12: sites[2].url: invalid URL 'ftp://nowhere/': "
        "scheme must be http, https, tcp, tls or dns",
        "sitewatch probe: no valid site 'shpo' in sites.yaml; nearest: 'shop'",
    ]
    empty = sitewatch("probe", "--site", "shop", "--sites-file", str(tmp_path / "none.yaml"))
    assert empty.returncode == 2
    assert empty.stderr.endswith("in " + str(tmp_path / "none.yaml") + "; it has no valid sites\n")
    assert path.exists()


def test_probe_requests_an_internationalised_host_in_its_idna_form(page_url, monkeypatch, capsys):
    """No resolver here knows bücher.example: only the name lookup is redirected to the page."""
    port = page_url.rsplit(":", 1)[1].strip("/")
    real = socket.getaddrinfo
    asked = []

    def getaddrinfo(host, *args, **kwargs):
        asked.append(host)
        return real("127.0.0.1" if host == "xn--bcher-kva.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = f"http://bücher.example:{port}/"
    code = cli.main(["probe", url, "--regex", f"Host: xn--bcher-kva.example:{port}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "site: xn--bcher-kva-example" in out.splitlines()
    assert asked == ["xn--bcher-kva.example"]


def test_locations_lists_each_location_of_enabled_sites_with_its_queue(tmp_path):
    sites = tmp_path / "sites.yaml"
    sites.write_text(
        "sites:\n"
        "  - {name: a, url: 'https://a.example/', locations: [eu, us]}\n"
        "  - {name: b, url: 'https://b.example/', locations: [ap], enabled: false}\n"
        "  - {name: c, url: 'https://c.example/', locations: [eu, local]}\n"
    )
    result = sitewatch("locations", str(sites))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "eu\tsitewatch-eu\nlocal\tdefault\nus\tsitewatch-us\n"
    assert result.stderr == ""


def test_locations_of_a_file_with_problems_lists_the_valid_sites_and_says_so(tmp_path):
    sites = tmp_path / "sites.yaml"
    sites.write_text(
        "sites:\n"
        "  - {name: a, url: 'https://a.example/', locations: [eu]}\n"
        "  - {name: b, url: 'https://b.example/', locations: [us, us]}\n"
    )
    result = sitewatch("locations", str(sites))
    assert result.returncode == 0
    assert result.stdout == "eu\tsitewatch-eu\nlocal\tdefault\n"
    assert "1 problem(s); run: sitewatch validate" in result.stderr


def test_report_usage_errors_exit_2_before_reaching_the_database():
    # --dsn points nowhere: a usage error must be found before any connection is tried
    nowhere = ("--dsn", "postgresql://nobody@127.0.0.1:1/none")
    assert sitewatch("report").returncode == 2  # --month is required
    result = sitewatch("report", "--month", "2026-13", *nowhere)
    assert result.returncode == 2
    assert "--month: month '2026-13': expected YYYY-MM, like 2026-11" in result.stderr
    result = sitewatch("report", "--month", "2026-11", "--format", "pdf", *nowhere)
    assert result.returncode == 2
    assert "--format 'pdf': use one of csv, md, html" in result.stderr
    result = sitewatch("report", "--month", "2026-11", "--dsn", "host='unterminated")
    assert result.returncode == 2
    assert "--dsn:" in result.stderr
