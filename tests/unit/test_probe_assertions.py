"""The ``expect`` assertions against a real local HTTP server serving JSON: each comparison and
quantifier, JSON Schema, a body that is not JSON, bounds on size and depth, secrets kept out."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
from probing import make_site, run

from sitewatch import cli
from sitewatch.config.expect import check_expect
from sitewatch.config.secrets import expand_headers
from sitewatch.probe.http import probe_in_detail

SECRET = "s3cret-token-value"
DOC = {
    "data": {"id": 1, "name": "shop", "tags": ["a", "b"]},
    "items": [{"state": "ready", "n": 3}, {"state": "ready", "n": 7}, {"state": "late", "n": 9}],
    "empty": [],
    "flag": True,
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0]
        if path == "/echo":  # sends back what it was sent, as APIs that echo a request do
            token = self.headers.get("X-Api-Key", "")
            status, headers, body = 200, {"X-Echo": token}, json.dumps({"key": token}).encode()
        else:
            status, headers, body = self.server.routes[path]
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    big = b"[" + b",".join([b'{"a":1,"b":"xxxxxxxxxx"}'] * 420_000) + b"]"  # about 10 MB
    server.routes = {
        "/doc": (200, {"X-Request-Id": "abc-123"}, json.dumps(DOC).encode()),
        "/html": (200, {"Content-Type": "text/html"}, b"<html><body>not json</body></html>"),
        "/empty": (204, {}, b""),
        "/big": (200, {}, big),
        "/deep": (200, {}, b"[" * 1_000_000 + b"]" * 1_000_000),
        "/long": (200, {}, json.dumps({"name": "x" * 1_000_000}).encode()),
        "/strings": (200, {}, json.dumps(["a" * 40 + "!"] * 2000).encode()),
    }
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def check(api: str, path: str, *assertions: dict, **fields):
    """Probe ``api + path`` with ``assertions`` as the site's expect (validated as the sites file
    is); the observation."""
    site = make_site(api + path, expect=check_expect(list(assertions)), **fields)
    return run(site)


def down(obs, detail: str) -> None:
    assert (obs.up, obs.error, obs.error_detail) == (False, "assertion", detail), obs


def test_equals_and_not_equals(api):
    assert check(api, "/doc", {"json": "$.data.id", "equals": 1}).up
    down(
        check(api, "/doc", {"json": "$.data.id", "equals": 2}), "json $.data.id: expected 2, got 1"
    )
    assert check(api, "/doc", {"json": "$.data.name", "not_equals": "other"}).up
    down(
        check(api, "/doc", {"json": "$.data.name", "not_equals": "shop"}),
        'json $.data.name: expected not "shop", got "shop"',
    )
    # JSON equality: true is not 1, 1 is 1.0, lists compare by content
    assert not check(api, "/doc", {"json": "$.flag", "equals": 1}).up
    assert check(api, "/doc", {"json": "$.data.id", "equals": 1.0}).up
    assert check(api, "/doc", {"json": "$.data.tags", "equals": ["a", "b"]}).up


def test_quantifiers_over_the_selected_nodes(api):
    path = "$.items[*].state"
    down(
        check(api, "/doc", {"json": path, "equals": "ready"}),  # all, the default
        "json $.items[*].state: expected \"ready\", got \"late\" at $['items'][2]['state']",
    )
    assert check(api, "/doc", {"json": path, "equals": "ready", "quantifier": "any"}).up
    down(
        check(api, "/doc", {"json": path, "equals": "gone", "quantifier": "any"}),
        'json $.items[*].state: expected any node == "gone", got ["ready", "ready", "late"]',
    )
    assert check(api, "/doc", {"json": path, "equals": "gone", "quantifier": "none"}).up
    down(
        check(api, "/doc", {"json": path, "equals": "late", "quantifier": "none"}),
        'json $.items[*].state: expected no node == "late", got "late"'
        " at $['items'][2]['state']",
    )
    # No node at all: all and any fail (a path that no longer exists), none holds.
    down(
        check(api, "/doc", {"json": "$.missing[*]", "equals": 1}),
        "json $.missing[*]: expected 1, got no node",
    )
    assert check(api, "/doc", {"json": "$.missing[*]", "equals": 1, "quantifier": "none"}).up


def test_exists_length_order_contains_matches(api):
    assert check(api, "/doc", {"json": "$.data.id", "exists": True}).up
    down(
        check(api, "/doc", {"json": "$.errors", "exists": True}),
        "json $.errors: expected a node, got none",
    )
    assert check(api, "/doc", {"json": "$.errors", "exists": False}).up
    down(
        check(api, "/doc", {"json": "$.data", "exists": False}),
        "json $.data: expected no node, got 1 node"
        ' ({"id": 1, "name": "shop", "tags": ["a", "b"]} at $[\'data\'])',
    )
    assert check(api, "/doc", {"json": "$.items", "length": 3}).up
    assert check(api, "/doc", {"json": "$.items", "length": {"ge": 1}}).up
    down(
        check(api, "/doc", {"json": "$.empty", "length": {"gt": 0}}),
        "json $.empty: expected length > 0, got length 0",
    )
    assert check(api, "/doc", {"json": "$.items[*].n", "lt": 10}).up
    down(
        check(api, "/doc", {"json": "$.items[*].n", "le": 7}),
        "json $.items[*].n: expected <= 7, got 9 at $['items'][2]['n']",
    )
    assert check(api, "/doc", {"json": "$.data.tags", "contains": "b"}).up
    assert check(api, "/doc", {"json": "$.data.name", "contains": "ho"}).up
    assert check(api, "/doc", {"json": "$.data.name", "matches": "^s.o"}).up
    down(
        check(api, "/doc", {"json": "$.data.name", "matches": "^x"}),
        'json $.data.name: expected to match "^x", got "shop"',
    )
    # A filter selects the nodes, with RFC 9535 functions
    assert check(
        api, "/doc", {"json": "$.items[?@.n > 5].state", "equals": "ready", "quantifier": "any"}
    ).up
    assert check(api, "/doc", {"json": "$.items[?match(@.state, 'r.*')].n", "lt": 8}).up


def test_json_schema_pass_and_fail(api):
    schema = {"type": "object", "required": ["data"], "properties": {"data": {"required": ["id"]}}}
    assert check(api, "/doc", {"json_schema": schema}).up
    wrong = {"type": "object", "properties": {"data": {"properties": {"id": {"type": "string"}}}}}
    down(
        check(api, "/doc", {"json_schema": wrong}),
        "json_schema: at $.data.id: 1 is not of type 'string'",
    )


def test_a_body_that_is_not_json_fails_the_json_assertion_by_name(api):
    down(
        check(api, "/html", {"json": "$.items", "exists": True}),
        "json $.items: response is not JSON (Expecting value: line 1 column 1 (char 0))",
    )
    down(
        check(api, "/html", {"json_schema": {"type": "object"}}),
        "json_schema: response is not JSON (Expecting value: line 1 column 1 (char 0))",
    )
    down(
        check(api, "/empty", {"json": "$.items", "exists": False}),
        "json $.items: response has no body",
    )


def test_status_header_time_and_body_assertions(api):
    assert check(
        api, "/doc", {"status": [200, "201-204"]}, {"header": "x-request-id", "equals": "abc-123"}
    ).up
    down(check(api, "/empty", {"status": 200}), "status: expected 200, got 204")
    down(
        check(api, "/doc", {"header": "X-Request-Id", "matches": "^z"}),
        'header X-Request-Id: expected to match "^z", got "abc-123"',
    )
    down(
        check(api, "/doc", {"header": "X-Missing", "exists": True}),
        "header X-Missing: expected present, got absent",
    )
    assert check(api, "/doc", {"header": "X-Missing", "exists": False}).up
    assert check(api, "/doc", {"response_time_ms": {"lt": 4000}}).up
    assert check(api, "/doc", {"body": r'"state":\s*"late"'}).up
    down(check(api, "/doc", {"body": "maintenance"}), 'body: pattern "maintenance" not found')


def test_the_first_failure_is_reported_and_the_rest_not_evaluated(api):
    site = make_site(
        api + "/doc",
        expect=check_expect(
            [
                {"status": 200},
                {"json": "$.data.id", "equals": 5},
                {"json": "$.data.name", "equals": "also wrong"},
            ]
        ),
    )
    obs, results = probe_in_detail(site)
    assert obs.error_detail == "json $.data.id: expected 5, got 1"
    assert [(r.passed, r.detail) for r in results] == [
        (True, "status"),
        (False, "json $.data.id: expected 5, got 1"),
        (None, "json $.data.name"),
    ]


@pytest.mark.parametrize("path", ["/big", "/deep"])
def test_a_large_or_deeply_nested_document_is_bounded(api, path):
    started = time.monotonic()
    obs = check(
        api, path, {"json": "$..a", "equals": 1}, max_body_bytes=20_000_000, timeout=5.0
    )  # run() holds the probe to its timeout
    assert time.monotonic() - started < 5.5
    assert (obs.up, obs.error) == (False, "assertion")
    assert obs.error_detail in (
        "json $..a: more than 10000 nodes selected; narrow the path",
        "json $..a: response is not JSON (nested too deeply)",
    )


def test_a_big_document_with_a_narrow_path_passes(api):
    obs = check(api, "/big", {"json": "$[0].a", "equals": 1}, max_body_bytes=20_000_000)
    assert obs.up, obs


def test_a_slow_filter_regex_ends_at_the_deadline(api):
    catastrophic = "$[?match(@, '(a|aa)+(a|aa)+(a|aa)+(a|aa)+b')]"
    obs = check(api, "/strings", {"json": catastrophic, "exists": True}, timeout=1.0)
    assert (obs.up, obs.error) == (False, "assertion"), obs
    assert obs.error_detail.startswith("json $[?match(")


def test_a_secret_header_value_never_reaches_the_detail(api):
    site = make_site(
        api + "/echo",
        headers={"X-Api-Key": "${SITEWATCH_SECRET_API}"},
        expect=check_expect(
            [{"header": "X-Echo", "equals": "something else"}, {"json": "$.key", "equals": 1}]
        ),
    )
    site, secrets = expand_headers(site, {"SITEWATCH_SECRET_API": SECRET})
    obs, results = probe_in_detail(site, secrets=secrets)
    assert (obs.up, obs.error) == (False, "assertion")
    assert obs.error_detail == 'header X-Echo: expected "something else", got "***"'
    assert all(SECRET not in r.detail for r in results)
    site = make_site(
        site.url, headers=site.headers, expect=check_expect([{"json": "$.key", "equals": 1}])
    )
    obs = run(site, secrets=secrets)
    assert obs.error_detail == 'json $.key: expected 1, got "***"'


def test_probe_site_prints_each_assertion(api, tmp_path, capsys):
    sites = tmp_path / "sites.yaml"
    sites.write_text(
        f"""\
sites:
  - name: api
    url: {api}/doc
    expect:
      - status: 200
      - json: $.data.id
        equals: 2
      - json_schema: {{type: object}}
""",
        encoding="utf-8",
    )
    assert cli.main(["probe", "--site", "api", "--sites-file", str(sites)]) == 1
    out = capsys.readouterr().out
    assert "error: assertion\nerror_detail: json $.data.id: expected 2, got 1\n" in out
    assert out.endswith(
        "assertions:\n  pass  status\n  FAIL  json $.data.id: expected 2, got 1\n"
        "  skip  json_schema\n"
    )


def test_a_detail_is_bounded_whatever_the_value(api):
    obs = check(api, "/long", {"json": "$.name", "equals": "short"})
    assert obs.error_detail.startswith('json $.name: expected "short", got "xxxx')
    assert obs.error_detail.endswith("…") and len(obs.error_detail) < 120


def test_a_schema_pattern_is_searched_within_the_deadline(api):
    schema = {"type": "array", "items": {"type": "string", "pattern": "^(a|aa)+(a|aa)+(a|aa)+b$"}}
    started = time.monotonic()
    obs = check(api, "/strings", {"json_schema": schema}, timeout=1.0)
    assert time.monotonic() - started < 3
    assert (obs.up, obs.error) == (False, "assertion")
    assert obs.error_detail.startswith(  # the search or the wait for it gives up first
        ("json_schema: ran out of time", "json_schema: not finished within the deadline")
    )
    letters = {"type": "array", "items": {"pattern": "^a+!$"}}
    assert check(api, "/strings", {"json_schema": letters}).up
    down(
        check(
            api,
            "/doc",
            {"json_schema": {"properties": {"data": {"properties": {"name": {"pattern": "^x"}}}}}},
        ),
        "json_schema: at $.data.name: \"shop\" does not match '^x'",
    )
