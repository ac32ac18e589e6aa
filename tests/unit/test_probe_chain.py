"""The whole TLS chain, for https and tls:// checks, against real local servers: the earliest
expiry on the verified path, an expired intermediate named, a host name the certificate is not
for as its own error, and the negotiated TLS version against the site's minimum."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from probing import fails, make_site, run

from sitewatch.probe import chain
from tests import servers
from tests.chains import certificate, make_chain
from tests.tcp_servers import banner, serve


def _https(server, **fields):
    return make_site(servers.url(server, "/ok", host="localhost"), **fields)


def _tls(port: int, **fields):
    return make_site(f"tls://localhost:{port}", **{"reply_regex": "^220", **fields})


def _minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@pytest.fixture
def https_server():
    """Start a routed HTTPS server for a context; each is stopped after the test."""
    started = []

    def start(context: ssl.SSLContext):
        started.append(servers.start_recorder(context))
        return started[-1]

    yield start
    for server in started:
        servers.stop(server)


def test_an_intermediate_that_expires_before_the_leaf_is_the_chains_expiry(tmp_path, https_server):
    pki = make_chain(tmp_path, intermediate_days=10, leaf_days=80)
    server = https_server(pki.context())
    obs = run(_https(server), ca_bundle=pki.ca)
    assert (obs.up, obs.error) == (True, None), obs
    assert obs.tls_expires_at == pki.intermediate_not_after < pki.leaf_not_after
    # min_cert_days reads the same expiry: 10 days left on the intermediate, 80 on the leaf
    obs = run(_https(server, min_cert_days=14), ca_bundle=pki.ca)
    fails(obs, "cert_expiring", "certificate chain expires in 10.0 days")
    with serve(banner, pki.context()) as port:
        obs = run(_tls(port), ca_bundle=pki.ca)
    assert obs.up and obs.tls_expires_at == pki.intermediate_not_after, obs


def test_an_expired_certificate_served_beside_the_verified_path_is_not_the_expiry(
    tmp_path, https_server
):
    # Servers long sent Let's Encrypt's expired cross-signed root after a valid path: the path
    # the probe verified is what stops working, not every certificate the server sent.
    key = ec.generate_private_key(ec.SECP256R1())
    stale = certificate("Old Cross-signed Root", key, "Old Cross-signed Root", key, -30)
    pki = make_chain(tmp_path, leaf_days=80, extra=(stale,))
    obs = run(_https(https_server(pki.context())), ca_bundle=pki.ca)
    assert obs.up, obs
    assert obs.tls_expires_at == pki.leaf_not_after


def test_unverified_the_presented_chain_counts(tmp_path, https_server):
    pki = make_chain(tmp_path, intermediate_days=-2, leaf_days=80)
    obs = run(_https(https_server(pki.context()), verify_tls=False))
    assert obs.up, obs
    assert obs.tls_expires_at == pki.intermediate_not_after


def test_an_expired_intermediate_is_named_with_its_notafter(tmp_path, https_server):
    pki = make_chain(tmp_path, intermediate_days=-3, leaf_days=80)
    named = (
        "certificate has expired: intermediate 'Sitewatch Test Intermediate'"
        f" (notAfter {_minute(pki.intermediate_not_after)})"
    )
    obs = run(_https(https_server(pki.context())), ca_bundle=pki.ca)
    fails(obs, "tls", named)
    assert "leaf" not in obs.error_detail
    # The failed handshake still reports when the chain expired (the alerting reads it).
    assert obs.tls_expires_at == pki.intermediate_not_after
    with serve(banner, pki.context()) as port:
        obs = run(_tls(port), ca_bundle=pki.ca)
    fails(obs, "tls", named)


def test_a_certificate_for_another_host_is_hostname_mismatch(tmp_path, https_server):
    hosts = ("shop.example", *(f"www{i}.shop.example" for i in range(8)))
    pki = make_chain(tmp_path, hosts=hosts)
    obs = run(_https(https_server(pki.context())), ca_bundle=pki.ca)
    fails(
        obs,
        "hostname_mismatch",
        "certificate is not valid for 'localhost'; it is for shop.example, www0.shop.example,"
        " www1.shop.example, www2.shop.example, www3.shop.example and 4 more",
    )
    with serve(banner, pki.context()) as port:
        fails(run(_tls(port), ca_bundle=pki.ca), "hostname_mismatch", "it is for shop.example")


def test_an_ip_address_the_certificate_does_not_name_is_hostname_mismatch(tmp_path, https_server):
    pki = make_chain(tmp_path, hosts=("localhost",))
    server = https_server(pki.context())
    obs = run(make_site(servers.url(server, "/ok")), ca_bundle=pki.ca)  # https://127.0.0.1:…
    fails(obs, "hostname_mismatch", "certificate is not valid for '127.0.0.1'; it is for localhost")


def test_a_server_capped_at_tls_1_2_fails_a_site_requiring_1_3(tmp_path, https_server):
    pki = make_chain(tmp_path)
    server = https_server(pki.context(maximum=ssl.TLSVersion.TLSv1_2))
    below = "the server negotiated TLS 1.2, below the site's tls_min_version 1.3"
    obs = run(_https(server, tls_min_version="1.3"), ca_bundle=pki.ca)
    fails(obs, "tls", below)
    assert server.seen == []  # nothing was sent on that connection
    assert obs.tls_version == "TLSv1.2"  # what it agreed on is stored, down or up
    obs = run(_https(server, tls_min_version="1.2"), ca_bundle=pki.ca)
    assert (obs.up, obs.tls_version, len(server.seen)) == (True, "TLSv1.2", 1)
    with serve(banner, pki.context(maximum=ssl.TLSVersion.TLSv1_2)) as port:
        obs = run(_tls(port, tls_min_version="1.3"), ca_bundle=pki.ca)
        fails(obs, "tls", below)
        assert obs.tls_version == "TLSv1.2"
        assert run(_tls(port, tls_min_version="1.2"), ca_bundle=pki.ca).up
    with serve(banner, pki.context()) as port:
        obs = run(_tls(port, tls_min_version="1.3"), ca_bundle=pki.ca)
    assert (obs.up, obs.tls_version) == (True, "TLSv1.3"), obs


def test_a_redirect_to_a_server_below_the_minimum_fails_too(tmp_path, https_server):
    pki = make_chain(tmp_path)
    old = https_server(pki.context(maximum=ssl.TLSVersion.TLSv1_2))
    new = https_server(pki.context())
    target = servers.url(old, "/ok", host="localhost")
    site = make_site(servers.url(new, f"/?to={target}", host="localhost"), tls_min_version="1.3")
    fails(run(site, ca_bundle=pki.ca), "tls", "negotiated TLS 1.2")
    assert len(new.seen) == 1 and old.seen == []


def test_versions_compare_as_numbers():
    assert chain.below_minimum("TLSv1.3", "1.2") is None
    assert chain.below_minimum("TLSv1.2", "1.2") is None
    assert chain.below_minimum("TLSv1", "1.2") is not None
    assert chain.below_minimum("SSLv3", "1.2") is not None
    assert chain.below_minimum(None, "1.3") is None  # no handshake: its own error says why
    assert chain.below_minimum("TLSv1.2", None) is None


def test_an_unreadable_certificate_is_left_out():
    assert chain.certificates([b"not a certificate"]) == ()
    assert chain.presented(ValueError("no chain here")) is None


def test_details_name_certificates_outside_their_validity():
    now = datetime(2027, 1, 1, tzinfo=UTC)
    day = timedelta(days=1)
    shown = chain.Handshake(
        None,
        (
            chain.Certificate("shop.example", "leaf", now - day, now - day, ("shop.example",)),
            chain.Certificate("CA 2", "intermediate", now + day, now + 99 * day),
            chain.Certificate("CA 3", "intermediate", now - 9 * day, now + 9 * day),
        ),
    )
    assert chain.expired("certificate has expired", shown, now) == (
        "certificate has expired: leaf 'shop.example' (notAfter 2026-12-31 00:00 UTC),"
        " intermediate 'CA 2' (notBefore 2027-01-02 00:00 UTC)"
    )
    assert chain.expired("certificate has expired", None, now) == "certificate has expired"
    assert shown.first_to_expire().name == "shop.example"
