"""The probe against real local HTTP(S) servers: every error kind, the deadline, timings, TLS.

Every probe goes through ``run``, which also asserts the call returned within the site's timeout
plus ``MARGIN``: the deadline is a property of every case, not only of the slow ones.
"""

from __future__ import annotations

import gc
import logging
import socket
import ssl
import threading
import tracemalloc
import warnings
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import trustme
from cryptography import x509
from probing import fails, make_site, run

from sitewatch import __version__
from sitewatch.probe.http import ERROR_KINDS, probe
from tests import hostile, servers
from tests.servers import url


@pytest.fixture(scope="module")
def raw():
    with hostile.raw_servers(
        drip_headers=hostile.drip_header_line,
        bad_status=hostile.not_http,
        drip_tls=hostile.tls_drip_handshake,
        truncated=hostile.truncated_body,
    ) as urls:
        yield urls


def _context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


def _leaf_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


def _not_after(pem: bytes) -> datetime:
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """HTTPS servers with a good, an expired, a wrong-host, an untrusted and a self-signed cert."""
    folder = tmp_path_factory.mktemp("pki")
    ca, stranger = trustme.CA(), trustme.CA()
    ca_path = str(folder / "ca.pem")
    ca.cert_pem.write_to_path(ca_path)
    now = datetime.now(UTC).replace(microsecond=0)
    good = ca.issue_cert("localhost", "127.0.0.1", not_after=now + timedelta(days=20))
    contexts = {
        "good": _leaf_context(good),
        "expired": _leaf_context(
            ca.issue_cert(
                "localhost", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
            )
        ),
        "wrong_host": _leaf_context(ca.issue_cert("wrong.example")),
        "untrusted": _leaf_context(stranger.issue_cert("localhost")),
    }
    # A CA certificate is self-signed: serving one as the leaf is the classic self-signed site.
    stranger.cert_pem.write_to_path(str(folder / "self.pem"))
    stranger.private_key_pem.write_to_path(str(folder / "self.key"))
    contexts["self_signed"] = _context(str(folder / "self.pem"), str(folder / "self.key"))
    started = {name: servers.start_http(context) for name, context in contexts.items()}
    yield SimpleNamespace(
        ca=ca_path,
        url={name: url(s, "/ok", host="localhost") for name, s in started.items()},
        good_not_after=_not_after(good.cert_chain_pems[0].bytes()),
        self_signed_not_after=_not_after(stranger.cert_pem.bytes()),
    )
    for server in started.values():
        servers.stop(server)


def test_error_kinds_are_the_documented_set():
    assert ERROR_KINDS == (
        "dns",
        "connect",
        "timeout",
        "tls",
        "hostname_mismatch",
        "protocol",
        "redirects",
        "body_too_large",
        "status",
        "regex",
        "slow",
        "cert_expiring",
        "assertion",
        "reply",
        "nxdomain",
        "servfail",
        "answer",
    )


def test_200_with_matching_regex_is_up(routes):
    obs = run(make_site(url(routes, "/ok"), regex=r"sitewatch\s+ok"))
    assert (obs.up, obs.error, obs.status_code, obs.regex_matched) == (True, None, 200, True)
    assert obs.regex == r"sitewatch\s+ok"
    assert obs.final_url == url(routes, "/ok")
    assert obs.body_bytes == len(b"<h1>sitewatch ok</h1><p>status: healthy</p>")
    assert (obs.scheduled_at, obs.attempt, obs.final) == (None, 1, True)
    assert obs.checked_at.tzinfo is UTC
    assert obs.tls_ms is None and obs.tls_expires_at is None


def test_regex_mismatch(routes):
    obs = run(make_site(url(routes, "/ok"), regex="maintenance"))
    fails(obs, "regex", "pattern 'maintenance' not found in body")
    assert (obs.regex_matched, obs.status_code) == (False, 200)


def test_forbidden_pattern(routes):
    obs = run(make_site(url(routes, "/ok"), regex="sitewatch", forbid_regex="heal+thy"))
    fails(obs, "regex", "forbidden pattern matched at 32: 'healthy'")
    assert obs.regex_matched is True


@pytest.mark.parametrize("code", [404, 500])
def test_unexpected_status(routes, code):
    obs = run(make_site(url(routes, f"/status/{code}"), regex="status"))
    fails(obs, "status", f"status {code} not in 200-399")
    assert obs.status_code == code
    assert obs.regex_matched is True  # evaluated even though status already failed


def test_status_detail_lists_every_range(routes):
    obs = run(make_site(url(routes, "/status/404"), expect_status=((200, 200), (300, 399))))
    fails(obs, "status", "status 404 not in 200,300-399")


def test_redirect_chain_is_followed(routes):
    obs = run(make_site(url(routes, "/redirect/10"), regex="sitewatch ok"))
    assert (obs.up, obs.status_code, obs.final_url) == (True, 200, url(routes, "/ok"))


def test_more_than_ten_redirects(routes):
    obs = run(make_site(url(routes, "/redirect/11")))
    fails(obs, "redirects", "more than 10 redirects")
    assert obs.status_code == 302


def test_redirect_loop(routes):
    obs = run(make_site(url(routes, "/loop")))
    fails(obs, "redirects", f"redirect loop: {url(routes, '/loop')} visited again")


def test_redirect_to_other_scheme(routes):
    fails(run(make_site(url(routes, "/ftp"))), "redirects", "unsupported scheme 'ftp'")


def test_unfollowed_redirect_is_judged_by_status(routes):
    site = make_site(url(routes, "/redirect/1"), follow_redirects=False)
    obs = run(site)
    assert (obs.up, obs.status_code, obs.final_url) == (True, 302, site.url)
    obs = run(make_site(site.url, follow_redirects=False, expect_status=((200, 299),)))
    fails(obs, "status", "status 302 not in 200-299")


def test_server_slower_than_timeout(routes):
    obs = run(make_site(url(routes, "/delay/3000"), timeout=1.0))
    fails(obs, "timeout", "timed out after 1 s while waiting for the response headers")


def test_body_dripping_forever_hits_the_deadline(routes):
    obs = run(make_site(url(routes, "/drip"), timeout=1.5))
    fails(obs, "timeout", "while reading the body")
    assert obs.status_code == 200 and obs.ttfb_ms is not None


def test_headers_dripping_forever_hit_the_deadline(raw):
    obs = run(make_site(raw["drip_headers"], timeout=1.5))
    fails(obs, "timeout", "while waiting for the response headers")
    assert obs.status_code is None


def test_tls_handshake_dripping_forever_hits_the_deadline(raw):
    site = make_site(raw["drip_tls"].replace("http:", "https:"), timeout=1.5)
    fails(run(site), "timeout", "while doing the TLS handshake")


def test_body_over_the_cap(routes):
    obs = run(make_site(url(routes, "/big/300000"), max_body_bytes=100_000, regex="x"))
    fails(obs, "body_too_large", "body exceeds the cap of 100000 bytes")
    assert (obs.body_bytes, obs.status_code, obs.regex_matched) == (100_000, 200, None)


def test_gzip_bomb_is_refused_with_bounded_memory(routes):
    cap = 1 << 20
    tracemalloc.start()
    try:
        obs = run(make_site(url(routes, "/gzip-bomb"), max_body_bytes=cap))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    fails(obs, "body_too_large")
    assert obs.body_bytes == cap
    assert peak < 16 * cap, f"peak {peak} bytes"  # the bomb decodes to 10 GiB


def test_latin1_body_with_charset(routes):
    obs = run(make_site(url(routes, "/latin1"), regex="café señor"))
    assert (obs.up, obs.regex_matched, obs.body_bytes) == (True, True, 10)


def test_invalid_utf8_is_replaced_and_searchable(routes):
    obs = run(make_site(url(routes, "/bad-utf8"), regex="10\ufffd\ufffd euro ok"))
    assert (obs.up, obs.regex_matched) == (True, True)


def test_connection_refused():
    sock = servers.refused_port()
    with sock:
        port = sock.getsockname()[1]
        obs = run(make_site(f"http://127.0.0.1:{port}/"))
    fails(obs, "connect", f"connection refused by 127.0.0.1:{port}")
    assert obs.status_code is None and obs.response_time_ms is None


def test_connect_timeout():
    listener, filler = servers.full_backlog()
    with listener, filler:
        site = make_site(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=0.5)
        fails(run(site), "timeout", "timed out after 0.5 s while connecting")


def test_hung_resolver_is_bounded_by_the_deadline(monkeypatch):
    """A resolver that never answers cannot be run here, so getaddrinfo alone is replaced."""
    release = threading.Event()

    def hung_getaddrinfo(*args, **kwargs):
        release.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hung_getaddrinfo)
    try:
        obs = run(make_site("http://hung-resolver.invalid/", timeout=0.5))
    finally:
        release.set()
    fails(obs, "timeout", "timed out after 0.5 s while resolving the host")


def test_unresolvable_host():
    fails(run(make_site("http://sitewatch-probe-test.invalid/")), "dns", "cannot resolve")


def test_credentials_never_reach_the_detail_or_final_url():
    sock = servers.refused_port()
    with sock:
        site = make_site(f"http://alice:s3cret@127.0.0.1:{sock.getsockname()[1]}/?token=t0k")
        obs = run(site)
    fails(obs, "connect")
    assert "s3cret" not in obs.error_detail and "s3cret" not in obs.final_url


def test_invalid_header_value_is_not_echoed(routes):
    obs = run(make_site(url(routes, "/ok"), headers={"Authorization": "Bearer s3cret\r\nX: y"}))
    fails(obs, "protocol", "request header is not valid")
    assert "s3cret" not in obs.error_detail


@pytest.mark.parametrize(
    ("server", "kind", "detail"),
    [
        ("expired", "tls", "certificate has expired: leaf 'localhost' (notAfter "),
        ("self_signed", "tls", "self-signed certificate"),
        ("wrong_host", "hostname_mismatch", "not valid for 'localhost'; it is for wrong.example"),
        ("untrusted", "tls", "unable to get local issuer certificate"),
    ],
)
def test_bad_certificates(tls, server, kind, detail):
    obs = run(make_site(tls.url[server]), ca_bundle=tls.ca)
    fails(obs, kind, detail)


def test_unverified_self_signed_is_up_with_its_expiry(tls):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obs = run(make_site(tls.url["self_signed"], verify_tls=False, regex="sitewatch ok"))
    assert caught == []  # the site opted out; no InsecureRequestWarning on every attempt
    assert (obs.up, obs.status_code) == (True, 200)
    assert obs.tls_expires_at == tls.self_signed_not_after


def test_tls_expiry_and_phase_timings(tls):
    obs = run(make_site(tls.url["good"]), ca_bundle=tls.ca)
    assert obs.up, obs
    assert obs.tls_expires_at == tls.good_not_after
    phases = (obs.dns_ms, obs.connect_ms, obs.tls_ms)
    assert all(ms is not None and ms >= 0 for ms in phases), obs
    assert sum(phases) <= obs.ttfb_ms <= obs.response_time_ms


def test_requests_ca_bundle_is_honoured(tls, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls.ca)
    assert run(make_site(tls.url["good"])).up


@pytest.mark.parametrize(("min_days", "up"), [(30, False), (10, True)])
def test_min_cert_days(tls, min_days, up):
    obs = run(make_site(tls.url["good"], min_cert_days=min_days), ca_bundle=tls.ca)
    assert obs.up is up
    if not up:
        fails(obs, "cert_expiring", "certificate chain expires in 20.0 days")


def test_slow_response(routes):
    obs = run(make_site(url(routes, "/delay/300"), max_response_ms=100))
    fails(obs, "slow", "limit 100 ms")
    assert obs.response_time_ms >= 300


def test_response_time_includes_server_delay(routes):
    obs = run(make_site(url(routes, "/delay/250")))
    assert obs.up
    assert 250 <= obs.ttfb_ms <= obs.response_time_ms


def test_catastrophic_regex_stops_at_the_deadline(routes):
    obs = run(make_site(url(routes, "/aaaa"), regex=r"(a+)+$", timeout=1.0))
    fails(obs, "regex", "regex search timed out after")
    assert (obs.status_code, obs.regex_matched) == (200, None)
    # On a starved CPU the search thread may outlive the probe, but only by its CPU budget.
    for thread in threading.enumerate():
        if thread.name == "sitewatch-regex":
            thread.join(10)
            assert not thread.is_alive()


def test_invalid_status_line(raw):
    fails(
        run(make_site(raw["bad_status"])), "protocol", "invalid status line 'HELLO I AM NOT HTTP'"
    )


def test_truncated_body(raw):
    obs = run(make_site(raw["truncated"]))
    fails(obs, "protocol", "connection closed before the end of the body")
    assert obs.status_code == 200


def test_head_request(routes):
    obs = run(make_site(url(routes, "/echo"), method="HEAD"))
    assert (obs.up, obs.status_code, obs.body_bytes) == (True, 200, 0)
    assert routes.seen[-1] == ("HEAD", "/echo", "")


def test_post_sends_body_and_headers(routes):
    site = make_site(
        url(routes, "/echo"), method="POST", body="ping=1", regex="method=POST body=ping=1"
    )
    obs = run(site)
    assert (obs.up, obs.regex_matched) == (True, True)


def test_post_redirected_by_303_becomes_get(routes):
    site = make_site(url(routes, "/see-other"), method="POST", body="x", regex="method=GET body=$")
    obs = run(site)
    assert (obs.up, obs.final_url) == (True, url(routes, "/echo"))


def test_one_summary_line_is_logged(routes, caplog):
    with caplog.at_level(logging.DEBUG, logger="sitewatch.probe.http"):
        obs = run(make_site(url(routes, "/ok"), name="home"))
    lines = [r.getMessage() for r in caplog.records if r.name == "sitewatch.probe.http"]
    assert lines == [
        f"site=home location=local status=200 up=True response_ms={obs.response_time_ms} error=None"
    ]


def test_nothing_leaks(routes, raw, tls):
    """No helper thread survives a probe and no socket is left for the garbage collector."""
    sites = [
        make_site(url(routes, "/ok")),
        make_site(url(routes, "/gzip-bomb"), max_body_bytes=1000),
        make_site(url(routes, "/loop")),
        make_site(url(routes, "/drip"), timeout=0.5),
        make_site(raw["drip_headers"], timeout=0.5),
        make_site(raw["bad_status"]),
        make_site(tls.url["good"]),
        make_site(tls.url["expired"]),
    ]
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for site in sites:
            run(site, ca_bundle=tls.ca)
        gc.collect()
    new = set(threading.enumerate()) - before
    assert [t.name for t in new if t.name.startswith("sitewatch")] == []
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


# --- locations (issue 16): the observation says where, and so does the User-Agent --------------


@pytest.fixture(scope="module")
def recorder():
    """A server that records each request's headers (``servers.start_recorder``)."""
    server = servers.start_recorder()
    yield server
    servers.stop(server)


def _user_agent(recorder) -> str:
    _path, headers = recorder.seen[-1]
    return {name.lower(): value for name, value in headers.items()}["user-agent"]


def test_the_location_is_on_the_observation_and_in_the_user_agent(recorder):
    obs = probe(make_site(url(recorder, "/")), location="eu-west_2")
    assert (obs.up, obs.location) == (True, "eu-west_2")
    assert _user_agent(recorder) == f"sitewatch/{__version__} (location eu-west_2)"


def test_a_probe_without_a_location_is_local(recorder):
    obs = run(make_site(url(recorder, "/")))
    assert obs.location == "local"
    assert _user_agent(recorder) == f"sitewatch/{__version__} (location local)"


@pytest.mark.parametrize("name", ["User-Agent", "user-agent"])
def test_a_sites_own_user_agent_wins(recorder, name):
    site = make_site(url(recorder, "/"), headers={name: "acme-uptime/2"})
    obs = probe(site, location="east")
    assert (obs.up, obs.location) == (True, "east")
    assert _user_agent(recorder) == "acme-uptime/2"
