"""The TCP check (tcp:// and tls://) against real local servers: a banner matched and not matched,
a request and its reply, a refused connection, a silent server and TLS, verified or not."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import trustme
from probing import fails, make_site, run

from sitewatch.observation import Observation
from tests.tcp_servers import banner, serve


def pong(sock: socket.socket) -> None:
    if sock.recv(100).startswith(b"PING"):
        sock.sendall(b"+PONG\r\n")


def silent(sock: socket.socket) -> None:
    sock.recv(100)  # until the client hangs up


def _tcp(port: int, scheme: str = "tcp", **fields):
    return make_site(f"{scheme}://localhost:{port}", **{"timeout": 2.0, **fields})


def test_a_banner_that_matches_is_up_with_its_phases_timed():
    with serve(banner) as port:
        obs: Observation = run(_tcp(port, reply_regex=r"^220 .*ESMTP"))
    assert (obs.up, obs.error, obs.status_code, obs.regex_matched) == (True, None, None, True)
    assert obs.url == f"tcp://localhost:{port}"
    assert obs.dns_ms is not None and obs.connect_ms is not None and obs.tls_ms is None
    assert obs.response_time_ms >= obs.connect_ms
    assert obs.tls_expires_at is None and obs.regex == r"^220 .*ESMTP"


def test_a_banner_that_does_not_match_is_down_as_reply():
    with serve(banner) as port:
        obs = run(_tcp(port, reply_regex=r"^\+OK"))
    fails(obs, "reply", "pattern '^\\\\+OK' not found")
    assert obs.regex_matched is False


def test_send_then_the_reply_is_searched():
    with serve(pong) as port:
        obs = run(_tcp(port, send="PING\r\n", reply_regex=r"^\+PONG"))
    assert obs.up, obs


def test_connecting_alone_is_the_check_without_a_pattern():
    with serve(silent) as port:
        obs = run(_tcp(port))
    assert (obs.up, obs.regex_matched) == (True, None)


def test_a_refused_connection_is_connect():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        obs = run(_tcp(port))
    fails(obs, "connect")


def test_a_server_that_never_answers_times_out_within_the_deadline():
    with serve(silent) as port:
        obs = run(_tcp(port, timeout=0.5, reply_regex="hello"))
    fails(obs, "timeout", "while reading the reply")


def test_an_unknown_host_is_dns():
    fails(run(make_site("tcp://no-such-host.invalid:25", timeout=2.0)), "dns")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Iterator:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("tcp-pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    yield ca, str(path)


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return context


def test_tls_is_verified_with_sni_and_records_the_certificate_expiry(pki):
    ca, ca_path = pki
    not_after = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    context = _server_context(ca.issue_cert("localhost", not_after=not_after))
    with serve(banner, context) as port:
        obs = run(_tcp(port, "tls", reply_regex="^220"), ca_bundle=ca_path)
    assert (obs.up, obs.error) == (True, None), obs
    assert obs.tls_ms is not None and obs.tls_expires_at == not_after
    assert obs.url == f"tls://localhost:{port}"


def test_tls_with_another_host_name_is_hostname_mismatch_and_an_unknown_ca_tls(pki):
    ca, ca_path = pki
    with serve(banner, _server_context(ca.issue_cert("other.example"))) as port:
        obs = run(_tcp(port, "tls"), ca_bundle=ca_path)
        fails(obs, "hostname_mismatch", "not valid for 'localhost'; it is for other.example")
        obs = run(_tcp(port, "tls", verify_tls=False, reply_regex="^220"), ca_bundle=ca_path)
    assert obs.up, obs
    with serve(banner, _server_context(trustme.CA().issue_cert("localhost"))) as port:
        fails(run(_tcp(port, "tls"), ca_bundle=ca_path), "tls")


def test_min_cert_days_applies_to_tls(pki):
    ca, ca_path = pki
    soon = datetime.now(UTC) + timedelta(days=3)
    with serve(banner, _server_context(ca.issue_cert("localhost", not_after=soon))) as port:
        obs = run(_tcp(port, "tls", min_cert_days=7), ca_bundle=ca_path)
    fails(obs, "cert_expiring", "minimum 7")
