"""Flows (``steps``) against a real local JSON API (tests/flow_api.py): log in for a token, create,
read and delete an item; a step that fails and the cleanup that still runs; a token and a secret
that never reach another origin; an answer that is not JSON; what is stored and logged, masked;
``sitewatch probe --site`` printing each step. Flows against hostile servers (10 MiB values,
a token redirected to another origin, values that double at every step, answers that are not
JSON) are in the hostile catalogue (tests/hostile.py, tests/faults/test_hostile_targets.py)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from sitewatch import cli
from sitewatch.attempt import summarize
from sitewatch.config.loader import load_text
from sitewatch.config.secrets import expand_headers
from sitewatch.errors import ConfigError
from sitewatch.observation import Observation
from sitewatch.probe.http import probe_in_detail
from tests import flow_api
from tests.flow_api import ITEM, PASSWORD, TOKEN

SECRET_ENV = {"SITEWATCH_SECRET_API_PASSWORD": PASSWORD, "SITEWATCH_SECRET_KEY": "key-0042-secret"}


@pytest.fixture(scope="module")
def servers():
    api, other = flow_api.start(), flow_api.start()
    api.other = other.base
    yield api, other
    flow_api.stop(api)
    flow_api.stop(other)


@pytest.fixture
def api(servers):
    servers[0].seen.clear()
    servers[1].seen.clear()
    return servers[0]


def login(base: str, **extra: str) -> str:
    lines = [
        "      - name: login",
        "        method: POST",
        f"        url: {base}/login",
        '        body: {user: monitor, password: "${SITEWATCH_SECRET_API_PASSWORD}"}',
        "        extract:",
        "          token: {json: $.token}",
    ]
    return "\n".join(lines + [f"        {key}: {value}" for key, value in extra.items()]) + "\n"


def crud(base: str, read_expect: str = "1") -> str:
    """The sites file of one flow: log in, create an item, read it, delete it (always)."""
    auth = '{Authorization: "Bearer ${login.token}"}'
    return f"""\
sites:
  - name: api
    timeout: 5s
    steps:
{login(base)}\
      - name: create
        method: POST
        url: {base}/items
        headers: {auth}
        body: {{name: probe}}
        expect_status: 201
        extract:
          id: {{json: $.id}}
      - name: read
        url: {base}/items/${{create.id}}
        headers: {auth}
        expect:
          - json: $.id
            equals: {ITEM if read_expect == "1" else read_expect}
      - name: audit
        url: {base}/items/${{create.id}}
        headers: {auth}
      - name: cleanup
        method: DELETE
        url: {base}/items/${{create.id}}
        headers: {auth}
        expect_status: 204
        always: true
"""


def flow(text: str, environ=None, on_secret=None):
    loaded = load_text(text, "sites.yaml")
    assert loaded.issues == []
    site, secrets = expand_headers(loaded.sites[0], environ or SECRET_ENV, on_secret=on_secret)
    started = time.monotonic()
    observation, results = probe_in_detail(site, secrets=secrets)
    assert time.monotonic() - started < site.timeout + 0.5
    return observation, results


def requests_seen(server) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _, _ in server.seen]


def test_a_flow_logs_in_creates_reads_and_cleans_up(api):
    observation, results = flow(crud(api.base))
    assert (observation.up, observation.error) == (True, None), observation
    assert requests_seen(api) == [
        ("POST", "/login"),
        ("POST", "/items"),
        ("GET", f"/items/{ITEM}"),
        ("GET", f"/items/{ITEM}"),
        ("DELETE", f"/items/{ITEM}"),
    ]
    assert [step["name"] for step in observation.steps] == [
        "login",
        "create",
        "read",
        "audit",
        "cleanup",
    ]
    assert all(step["passed"] for step in observation.steps)
    assert [step["status"] for step in observation.steps] == [200, 201, 200, 200, 204]
    # the stored URL is the file's, the value taken from a response is not in it
    assert observation.steps[2]["url"] == f"{api.base}/items/${{create.id}}"
    assert observation.url == f"{api.base}/login"
    assert observation.status_code == 204  # the last step's
    total = sum(step["response_ms"] for step in observation.steps)
    assert observation.response_time_ms >= total
    assert observation.steps[0]["ttfb_ms"] <= observation.ttfb_ms <= observation.response_time_ms
    # each step starts where the one before ended, within the flow: the waterfall's bars
    # (each figure is rounded to the microsecond: their sums may be over by that much)
    ends = [0.0] + [step["start_ms"] + step["response_ms"] - 0.002 for step in observation.steps]
    starts = [step["start_ms"] for step in observation.steps]
    assert all(end <= start for end, start in zip(ends, starts, strict=False)), starts
    assert ends[-1] <= observation.response_time_ms
    # the first step opened the connection the others reuse: its phases are the check's
    first = observation.steps[0]
    assert (first["dns_ms"], first["connect_ms"]) == (observation.dns_ms, observation.connect_ms)
    assert not any("connect_ms" in step for step in observation.steps[1:])
    assert [r.detail for r in results] == ["step read: json $.id"]
    # one attempt is one message, steps included, and the strict decoder takes it back
    observation.scheduled_at = observation.checked_at
    assert Observation.from_message(observation.to_message()).steps == observation.steps
    sent = [headers.get("Authorization") for _, _, headers, _ in api.seen]
    assert sent == [None] + [f"Bearer {TOKEN}"] * 4


def test_a_failing_step_fails_the_flow_by_name_and_the_cleanup_still_runs(api):
    observation, _ = flow(crud(api.base, read_expect="2"))
    assert (observation.up, observation.error) == (False, "assertion")
    assert observation.error_detail == "step read: json $.id: expected 2, got 7"
    passed = {step["name"]: step.get("passed") for step in observation.steps}
    assert passed == {"login": True, "create": True, "read": False, "audit": None, "cleanup": True}
    assert observation.steps[3]["error_detail"] == "not run: step read failed"
    assert ("DELETE", f"/items/{ITEM}") in requests_seen(api)
    assert ("GET", f"/items/{ITEM}") in requests_seen(api)
    assert requests_seen(api).count(("GET", f"/items/{ITEM}")) == 1  # audit did not run


def test_a_failed_login_skips_a_cleanup_whose_value_was_never_extracted(api):
    text = crud(api.base)
    observation, _ = flow(text, {**SECRET_ENV, "SITEWATCH_SECRET_API_PASSWORD": "wrong-guess"})
    assert (observation.error, observation.error_detail) == (
        "status",
        "step login: status 401 not in 200-399",
    )
    assert observation.steps[-1] == {
        "name": "cleanup",
        "method": "DELETE",
        "url": f"{api.base}/items/${{create.id}}",
        "always": True,
        "error_detail": "not run: ${create.id} was not extracted",
    }
    assert requests_seen(api) == [("POST", "/login")]


def test_extracted_values_and_secrets_are_masked_where_stored_and_logged(api, caplog):
    text = crud(api.base).replace("- json: $.id\n            equals: 7", "- json: $.owner\n"
                                  "            equals: nobody")  # fmt: skip
    masked = []
    observation, results = flow(text, on_secret=masked.append)
    assert observation.error_detail == 'step read: json $.owner: expected "nobody", got "***"'
    assert {PASSWORD, TOKEN} <= set(masked)  # Airflow's mask_secret hides them in task logs
    observation.scheduled_at = observation.checked_at
    message = observation.to_message().decode()
    assert TOKEN not in message and PASSWORD not in message
    assert all(TOKEN not in result.detail for result in results)
    with caplog.at_level(logging.INFO, logger="sitewatch.attempt"):
        summarize(observation)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 + len(observation.steps)  # the summary, then one line per step
    assert lines[3] == (
        "site=api step=read passed=False status=200 response_ms="
        f"{observation.steps[2]['response_ms']:.1f} error=assertion"
        ' detail=json $.owner: expected "nobody", got "***"'
    )
    assert all(TOKEN not in line for line in lines)


def test_a_token_redirected_to_another_origin_does_not_go_with_it(servers, api):
    other = servers[1]
    # the login sets the token as a cookie too: cookies go to every port of a host, not this one
    api.route = lambda handler, body: (
        (*flow_api._api(handler, body), {"Set-Cookie": f"sid={TOKEN}; Path=/"})
        if handler.path == "/login"
        else flow_api._api(handler, body)
    )
    text = f"""\
sites:
  - name: api
    timeout: 5s
    steps:
{login(api.base)}\
      - name: leak
        url: {api.base}/away
        headers:
          Authorization: "Bearer ${{login.token}}"
          X-Token: "${{login.token}}"
          X-Key: "${{SITEWATCH_SECRET_KEY}}"
        expect_status: 401
"""
    try:
        observation, _ = flow(text)
    finally:
        api.route = flow_api._api
    assert observation.up, observation  # the other origin saw no token, so it said 401
    assert requests_seen(other) == [("GET", "/collect")]
    sent = other.seen[0][2]
    assert not {"Authorization", "X-Token", "X-Key", "Cookie"} & set(sent), sent
    assert api.seen[1][2]["Cookie"] == f"sid={TOKEN}"  # its own origin got it back
    # its redirect opened a connection to the other origin: the step has phases of its own
    assert "connect_ms" in observation.steps[1] and "connect_ms" in observation.steps[0]


def test_a_body_with_a_secret_is_not_sent_on_to_another_origin(servers, api):
    other = servers[1]
    text = f"""\
sites:
  - name: api
    timeout: 5s
    steps:
      - name: login
        method: POST
        url: {api.base}/away
        body: {{password: "${{SITEWATCH_SECRET_API_PASSWORD}}"}}
"""
    observation, _ = flow(text)
    assert observation.error == "redirects"
    assert observation.error_detail == (
        f"step login: not followed to {other.base}/collect: the body holds secrets"
    )
    assert other.seen == []


def test_a_value_goes_into_a_url_percent_encoded_and_into_json_escaped(api):
    api.route = lambda handler, body: (
        (200, {"id": 'a/../b?c=1&"d"'}) if handler.path == "/id" else flow_api._api(handler, body)
    )
    try:
        text = f"""\
sites:
  - name: api
    steps:
      - name: first
        url: {api.base}/id
        extract:
          id: {{json: $.id}}
      - name: echo
        method: POST
        url: {api.base}/echo/${{first.id}}?q=${{first.id}}
        body: {{id: "${{first.id}}"}}
"""
        observation, _ = flow(text)
    finally:
        api.route = flow_api._api
    assert observation.up, observation
    method, path, headers, body = api.seen[-1]
    assert path == "/echo/a%2F..%2Fb%3Fc%3D1%26%22d%22?q=a%2F..%2Fb%3Fc%3D1%26%22d%22"
    assert json.loads(body) == {"id": 'a/../b?c=1&"d"'}
    assert headers["Content-Type"] == "application/json"


def test_an_answer_that_is_not_json_fails_the_extraction_by_name(api):
    text = f"""\
sites:
  - name: api
    steps:
      - name: login
        url: {api.base}/html
        extract:
          token: {{json: $.token}}
"""
    observation, _ = flow(text)
    assert observation.error == "assertion"
    assert observation.error_detail.startswith(
        "step login: extract token: response is not JSON (Expecting value"
    )


def test_header_and_regex_extraction(api):
    api.route = lambda handler, body: (200, b"<input name=csrf value='c-123'>", {"X-Id": "h-9"})
    try:
        text = f"""\
sites:
  - name: api
    steps:
      - name: form
        url: {api.base}/form
        extract:
          csrf: {{regex: "name=csrf value='([^']+)'"}}
          id: {{header: X-Id}}
          nothing: {{regex: "(missing)?value", group: 1}}
"""
        observation, _ = flow(text)
    finally:
        api.route = flow_api._api
    assert (
        observation.error_detail == "step form: extract nothing: group 1 took no part in the match"
    )


def test_a_missing_secret_fails_before_any_request(api):
    loaded = load_text(crud(api.base), "sites.yaml")
    with pytest.raises(ConfigError) as failure:
        expand_headers(loaded.sites[0], {})
    assert [str(issue) for issue in failure.value.issues] == [
        "<environment>:2: api.steps.login.body: environment variable"
        " SITEWATCH_SECRET_API_PASSWORD is not set"
    ]


def test_sitewatch_probe_site_prints_each_step(api, tmp_path, monkeypatch, capsys):
    (tmp_path / "sites.yaml").write_text(crud(api.base, read_expect="2"), encoding="utf-8")
    monkeypatch.setenv("SITEWATCH_SECRET_API_PASSWORD", PASSWORD)
    code = cli.main(["probe", "--site", "api", "--sites-file", str(tmp_path / "sites.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    steps = out[out.index("steps:") :].splitlines()
    assert steps[1].split()[:5] == ["pass", "login", "POST", f"{api.base}/login", "200"]
    assert steps[3].split()[:2] == ["FAIL", "read"]
    assert steps[4].strip() == "FAIL  json $.id: expected 2, got 7"
    assert steps[5].split()[:2] == ["skip", "audit"]
    assert steps[6].strip() == "not run: step read failed"
    assert steps[7].split()[:2] == ["pass", "cleanup"]
    assert TOKEN not in out and PASSWORD not in out


def test_a_value_that_would_inject_a_header_is_not_sent(api):
    api.route = lambda handler, body: (200, {"token": "abc\r\nX-Injected: 1"})
    try:
        text = f"""\
sites:
  - name: api
    steps:
      - name: login
        url: {api.base}/login
        extract:
          token: {{json: $.token}}
      - name: read
        url: {api.base}/read
        headers: {{Authorization: "Bearer ${{login.token}}"}}
"""
        observation, _ = flow(text)
    finally:
        api.route = flow_api._api
    assert (observation.error, observation.error_detail) == (
        "assertion",
        "step read: header Authorization: a value in it cannot be sent in a header",
    )
    assert requests_seen(api) == [("GET", "/login")]


def test_cookies_a_step_receives_go_to_the_next_step_of_the_same_site_and_dollar_brace_escapes(
    api,
):
    api.route = lambda handler, body: (200, {"ok": True}, {"Set-Cookie": "session=s-1; Path=/"})
    try:
        text = f"""\
sites:
  - name: api
    steps:
      - name: login
        url: {api.base}/login
      - name: read
        url: {api.base}/read
        headers: {{X-Template: "$${{login.token}}"}}
"""
        observation, _ = flow(text)
    finally:
        api.route = flow_api._api
    assert observation.up, observation
    sent = api.seen[-1][2]
    assert sent["Cookie"] == "session=s-1"
    assert sent["X-Template"] == "${login.token}"  # $${ writes a literal ${
