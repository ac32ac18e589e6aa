"""The probe against hostile sites (issue 14): bodies of redirects, secrets across origins, charsets
that break decoders, secrets the site echoes back, a Location that is not a URL.

Same style as ``test_probe.py``: real local servers, and every probe bounded by its timeout.
"""

from __future__ import annotations

import dataclasses
import encodings
import pkgutil
import ssl
import tracemalloc
from urllib.parse import unquote

import pytest
import trustme
from probing import fails, make_site, run

from sitewatch.config.secrets import Secrets, expand_headers
from sitewatch.config.site import Site
from sitewatch.probe.fetch import origin
from sitewatch.probe.patterns import decode
from tests import hostile, servers
from tests.servers import url

CAP = 1 << 20
MEMORY_BOUND = 16 * CAP  # the hostile bodies below decode to 64 MiB or more
TOKEN = "tok-3f9a1c7e5b"  # an environment variable's value: a secret
HEADERS = {
    "Authorization": "Bearer ${SITEWATCH_SECRET_API_TOKEN}",
    "Cookie": "session=abc",
    "Proxy-Authorization": "Basic cHJveHk=",
    "X-Api-Key": "${SITEWATCH_SECRET_API_TOKEN}",
    "Accept": "text/html",
}
SECRET_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-api-key"}


def run_measured(site: Site):
    """``run`` and the peak of Python allocations during it, in bytes."""
    tracemalloc.start()
    try:
        obs = run(site)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return obs, peak


def expanded(site: Site) -> tuple[Site, Secrets]:
    return expand_headers(site, {"SITEWATCH_SECRET_API_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def raw():
    with hostile.raw_servers(
        bomb=hostile.redirect_gzip_bomb_to_ok,
        flood=hostile.redirect_huge_content_length_to_ok,
        bad_location=hostile.malformed_location,
    ) as urls:
        yield urls


@pytest.fixture(scope="module")
def recorders():
    """Two plain header recorders (two origins on 127.0.0.1) and one over TLS, with its CA."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    started = [servers.start_recorder(), servers.start_recorder(), servers.start_recorder(context)]
    with ca.cert_pem.tempfile() as ca_path:
        yield (*started, ca_path)
    for server in started:
        servers.stop(server)


# --- item 1: every body is bounded, redirects included ------------------------------------------


@pytest.mark.parametrize("server", ["bomb", "flood"])
def test_a_followed_redirect_body_is_never_read(raw, server):
    obs, peak = run_measured(make_site(raw[server], max_body_bytes=CAP, timeout=3.0))
    assert (obs.up, obs.status_code, obs.final_url) == (True, 200, raw[server] + "landed")
    assert peak < MEMORY_BOUND, f"peak {peak >> 20} MiB"


@pytest.mark.parametrize("server", ["bomb", "flood"])
def test_an_unfollowed_redirect_body_stops_at_the_cap(raw, server):
    site = make_site(raw[server], max_body_bytes=CAP, follow_redirects=False, timeout=3.0)
    obs, peak = run_measured(site)
    fails(obs, "body_too_large", f"cap of {CAP} bytes")
    assert (obs.status_code, obs.body_bytes) == (302, CAP)
    assert peak < MEMORY_BOUND, f"peak {peak >> 20} MiB"


# --- item 2: secrets never follow a redirect to another origin ----------------------------------


def _hop_headers(recorders, start: str, target: str) -> tuple[set[str], set[str]]:
    """Probe ``start?to=target`` with the secret headers; the header names each hop received."""
    *started, ca_path = recorders
    for server in started:
        server.seen.clear()
    site, secrets = expanded(make_site(f"{start}?to={target}", headers=HEADERS))
    obs = run(site, secrets, ca_bundle=ca_path)
    assert (obs.up, obs.final_url) == (True, target), obs
    seen = [(path, {name.lower() for name in headers}) for s in started for path, headers in s.seen]
    assert len(seen) == 2, seen
    (_, before), (_, after) = sorted(seen, key=lambda hop: "?to=" not in hop[0])
    return before, after


@pytest.mark.parametrize("change", ["port", "host", "scheme"])
def test_secret_headers_are_dropped_on_any_change_of_origin(recorders, change):
    first, second, tls, _ = recorders
    start, target = {
        "port": (url(first, "/"), url(second, "/next")),
        "host": (url(first, "/"), url(first, "/next", host="localhost")),
        "scheme": (url(tls, "/"), url(first, "/next")),
    }[change]
    before, after = _hop_headers(recorders, start, target)
    assert before >= SECRET_HEADERS
    assert after & SECRET_HEADERS == set()
    assert "accept" in after  # only the secrets are dropped


def test_secret_headers_follow_a_redirect_within_the_origin(recorders):
    first = recorders[0]
    before, after = _hop_headers(recorders, url(first, "/"), url(first, "/next"))
    assert before >= SECRET_HEADERS and after >= SECRET_HEADERS


@pytest.mark.parametrize("change", ["port", "scheme", None])
def test_a_cookie_the_site_sets_goes_back_only_to_its_port_and_scheme(recorders, change):
    """Cookies go to every port of a host (RFC 6265), and to http when set over https without
    ``Secure``: another service on the host would get a session (or a flow's token)."""
    first, second, tls, ca_path = recorders
    start, target = {
        "port": (url(first, "/"), url(second, "/next")),
        "scheme": (url(tls, "/"), url(first, "/next")),
        None: (url(first, "/"), url(first, "/next")),
    }[change]
    for server in (first, second, tls):
        server.seen.clear()
    obs = run(make_site(f"{start}?cookie=s-1&to={target}"), ca_bundle=ca_path)
    assert (obs.up, obs.final_url) == (True, target), obs
    landed = [headers for s in (first, second, tls) for path, headers in s.seen if path == "/next"]
    assert [headers.get("Cookie") for headers in landed] == [None if change else "sid=s-1"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://h/", "http://h:80/x", True),
        ("https://h/", "https://H:443/", True),
        ("https://h/", "http://h:443/", False),
        ("http://h/", "http://h:8080/", False),
        ("http://h/", "http://g/", False),
    ],
)
def test_origins_compare_scheme_host_and_effective_port(a, b, same):
    assert (origin(a) == origin(b)) is same


# --- item 6: no charset makes the probe raise ---------------------------------------------------


@pytest.mark.parametrize("charset", ["idna", "undefined", "punycode", "base64", "no-such"])
def test_a_charset_that_cannot_decode_falls_back_to_utf8(routes, charset):
    obs = run(make_site(url(routes, f"/charset/{charset}"), regex="sitewatch ok"))
    assert (obs.up, obs.status_code, obs.regex_matched) == (True, 200, True)


def test_no_codec_name_makes_decoding_raise():
    names = {module.name for module in pkgutil.iter_modules(encodings.__path__)}
    names |= set(encodings.aliases.aliases)
    bodies = [b"", "café ok".encode(), bytes(range(256)), b"\\u12", b"xn--"]
    for name in sorted(names):
        for body in bodies:
            assert isinstance(decode(body, f"text/html; charset={name}"), str), name


# --- item 12a: secrets the site echoes never reach the observation ------------------------------


def test_a_secret_echoed_in_the_body_is_redacted_from_the_detail(recorders):
    site, secrets = expanded(
        make_site(url(recorders[0], "/"), headers=HEADERS, forbid_regex=r"X-Api-Key: \S+")
    )
    obs = run(site, secrets)
    fails(obs, "regex", "forbidden pattern matched")
    assert TOKEN not in obs.error_detail and "'X-Api-Key: ***'" in obs.error_detail


def test_a_truncated_echo_of_a_secret_is_redacted_too(recorders):
    # the excerpt is cut at 40 characters: 35 of padding leave the secret's first 5 in it
    site, secrets = expanded(
        make_site(
            url(recorders[0], "/"),
            headers={"X-Api-Key": "x" * 24 + "${SITEWATCH_SECRET_API_TOKEN}"},
            forbid_regex=r"X-Api-Key: \S+",
        )
    )
    obs = run(site, secrets)
    fails(obs, "regex")
    assert TOKEN[:5] not in obs.error_detail, obs.error_detail


def test_a_secret_echoed_in_a_redirect_is_redacted_from_the_final_url(recorders):
    first = recorders[0]
    target = url(first, f"/next?token={TOKEN}")
    site, secrets = expanded(
        make_site(f"{url(first, '/')}?to={target}", headers=HEADERS, regex="nothing-like-this")
    )
    obs = run(site, secrets)
    fails(obs, "regex")
    assert obs.final_url == url(first, "/next?…")  # after a redirect, no query is kept


# --- issue 24 item 7: a secret echoed URL-encoded or JSON-escaped is masked too ------------------

LIVE = "sk/LIVE+9f8e7d6c5b4a3210=="  # "/", "+" and "=" all change when URL-encoded


def live_site(path: str, **fields) -> tuple[Site, Secrets]:
    site = make_site(path, headers={"X-Api-Key": "${SITEWATCH_SECRET_API_TOKEN}"}, **fields)
    return expand_headers(site, {"SITEWATCH_SECRET_API_TOKEN": LIVE})


def assert_no_trace_of(secret: str, obs) -> None:
    """No text field holds ``secret``'s first 5 characters, decoded from any of its forms."""
    for name, value in dataclasses.asdict(obs).items():
        if isinstance(value, str):
            decoded = unquote(unquote(value)).replace("\\\\", "\\").replace("\\/", "/")
            assert secret[:5] not in decoded, f"{name}: {value}"


@pytest.mark.parametrize("encoding", ["quote", "quote_plus"])
def test_a_secret_url_encoded_into_a_redirect_query_leaves_no_trace(recorders, encoding):
    site, secrets = live_site(url(recorders[0], f"/?login={encoding}"))
    obs = run(site, secrets)
    assert (obs.up, obs.status_code) == (True, 200)
    assert obs.final_url == url(recorders[0], "/login?…")  # a redirect's query is not kept
    assert_no_trace_of(LIVE, obs)


def test_a_secret_url_encoded_into_a_redirect_path_is_masked(recorders):
    site, secrets = live_site(url(recorders[0], "/?login=path"))
    obs = run(site, secrets)
    assert obs.final_url == url(recorders[0], "/login/***")
    assert_no_trace_of(LIVE, obs)


def test_a_secret_echoed_json_escaped_is_masked_in_the_detail(recorders):
    site, secrets = live_site(url(recorders[0], "/?json=1"), forbid_regex=r'"X-Api-Key": "[^"]+')
    obs = run(site, secrets)
    fails(obs, "regex", """forbidden pattern matched""")
    assert obs.error_detail.endswith("""'"X-Api-Key": "***'"""), obs.error_detail
    assert_no_trace_of(LIVE, obs)


# --- item 12b: a Location that is not a URL -----------------------------------------------------


def test_an_unfollowed_malformed_location_is_recorded_normally(raw):
    obs = run(make_site(raw["bad_location"], follow_redirects=False))
    assert (obs.up, obs.error, obs.status_code, obs.body_bytes) == (True, None, 302, 5)


def test_a_followed_malformed_location_is_a_redirect_error_that_keeps_the_status(raw):
    obs = run(make_site(raw["bad_location"]))
    fails(obs, "redirects", "invalid redirect target 'http://[::1/x'")
    assert obs.status_code == 302


def test_a_redirect_to_a_host_name_idna_refuses_is_a_dns_error(routes):
    # "a..b" has an empty label: the resolver's IDNA step raises UnicodeError, not OSError
    obs = run(make_site(url(routes, "/to/http%3A%2F%2Fa..b%2F")))
    fails(obs, "dns", "cannot resolve a..b: invalid host name (label empty or too long)")
    assert obs.status_code == 302
