"""Turning librdkafka's and libpq's TLS failures into one named cause (real local TLS servers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError

from sitewatch.config.connection_errors import (
    EXPIRED,
    HOSTNAME,
    REFUSED,
    SASL,
    UNTRUSTED,
    ClientErrors,
    check_files,
    diagnose,
    explain_postgres,
)
from sitewatch.errors import ConnectionConfigError
from tests.servers import start_handshake_only

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("tls_certs", ROOT / "scripts" / "tls_certs.py")
certs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(certs)

# texts as librdkafka 2.x reports them (from runs against the local TLS broker)
VERIFY_FAILED = (
    "ssl://127.0.0.1:{port}/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
    "certificate verify failed: broker certificate could not be verified, verify that "
    "ssl.ca.location is correctly configured or root CA certificates are installed "
    "(install ca-certificates package) (after 19ms in state SSL_HANDSHAKE)"
)
BAD_CERT_ALERT = (
    "ssl://127.0.0.1:9094/bootstrap: Receive failed: error:0A000412:SSL routines::ssl/tls alert "
    "bad certificate: SSL alert number 42 (after 0ms in state APIVERSION_QUERY)"
)
UNKNOWN_CERT_ALERT = BAD_CERT_ALERT.replace("bad certificate", "certificate unknown")
ALL_DOWN = "1/1 brokers are down"


def recorded(texts, **config) -> ClientErrors:
    errors = ClientErrors(config)
    for text in texts:
        errors(KafkaError(KafkaError._TRANSPORT, text))
    return errors


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA on disk, plus a factory for TLS servers presenting certificates it signs."""
    base = tmp_path_factory.mktemp("pki")
    ca = certs.make_ca()
    certs.write(base / "ca.pem", certs.cert_pem(ca[0]))
    servers = []

    def server(*names, expired=False):
        cert, key = certs.issue(ca, names[0], names, expired=expired)
        pem = base / f"{names[0]}-{expired}.pem"
        certs.write(pem, certs.key_pem(key) + certs.cert_pem(cert))
        listener = start_handshake_only(pem)
        servers.append(listener)
        return listener.getsockname()[1]

    yield SimpleNamespace(ca=ca, ca_file=str(base / "ca.pem"), server=server, dir=base)
    for listener in servers:
        listener.close()


def test_verify_failure_is_explained_by_our_own_handshake(pki):
    good = pki.server("localhost", "127.0.0.1")
    expired = pki.server("localhost", "127.0.0.1", expired=True)
    elsewhere = pki.server("elsewhere.example")
    other_ca = pki.dir / "other.pem"
    certs.write(other_ca, certs.cert_pem(certs.make_ca("other")[0]))

    def cause(port, ca):
        return recorded([VERIFY_FAILED.format(port=port), ALL_DOWN], **ca).cause()

    assert cause(good, {"ssl.ca.location": str(other_ca)}).startswith(f"{UNTRUSTED} (")
    assert cause(expired, {"ssl.ca.location": pki.ca_file}) == (
        f"{EXPIRED} (the server's: certificate has expired)"
    )
    assert cause(elsewhere, {"ssl.ca.location": pki.ca_file}).startswith(
        f"{HOSTNAME} (IP address mismatch"
    )
    # verification switched off for names: the same server is then only untrusted if the CA is
    assert diagnose("127.0.0.1", elsewhere, pki.ca_file, check_hostname=False) == UNTRUSTED


def test_refusal_alerts_mean_our_certificate_was_refused(pki):
    assert recorded([BAD_CERT_ALERT, ALL_DOWN]).cause() == REFUSED
    assert recorded([UNKNOWN_CERT_ALERT]).cause() == REFUSED


def test_a_refusal_with_an_expired_client_certificate_says_expired(pki):
    cert, _ = certs.issue(pki.ca, "old", client=True, expired=True)
    path = pki.dir / "old.cert"
    certs.write(path, certs.cert_pem(cert))
    cause = recorded([UNKNOWN_CERT_ALERT], **{"ssl.certificate.location": str(path)}).cause()
    assert cause.startswith(f"{EXPIRED} (ours: {path} expired ")


def test_sasl_and_unknown_errors():
    assert recorded(["SASL authentication error: Authentication failed"]).cause() == SASL
    unknown = recorded(["127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed", ALL_DOWN])
    assert unknown.cause() is None
    assert unknown.explain(recognised_only=True) == ""
    assert unknown.explain() == "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed"
    assert recorded([]).explain() == ""


def test_explain_puts_the_cause_before_the_client_error():
    errors = recorded([BAD_CERT_ALERT, ALL_DOWN])
    untimed = BAD_CERT_ALERT.removesuffix(" (after 0ms in state APIVERSION_QUERY)")
    assert errors.explain() == f"{REFUSED} (client error: {untimed})"
    errors.clear()
    assert errors.cause() is None


def test_one_failure_reads_the_same_each_time_it_is_reported():
    """librdkafka's timing suffix differs between two reports of one failure; the metrics page
    logs a reason once until it changes, and a suffix made it log each scrape."""
    refused = "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused"
    first = recorded([f"{refused} (after 1ms in state CONNECT)"]).explain()
    again = recorded([f"{refused} (after 0ms in state CONNECT, 2 identical error(s) suppressed)"])
    assert first == again.explain() == refused
    kept = "broker said (after all) no"  # a parenthesis of another kind stays
    assert recorded([kept]).explain() == kept


def test_a_configured_error_cb_still_sees_every_error():
    seen = []
    errors = ClientErrors({}, seen.append)
    errors(KafkaError(KafkaError._TRANSPORT, "boom"))
    assert [e.str() for e in seen] == ["boom"]


def test_missing_files_are_named(tmp_path):
    present = tmp_path / "ca.pem"
    present.write_text("x")
    check_files({"ssl.ca.location": str(present), "ssl.key.location": None}, "c")
    check_files({"ssl.ca.location": "probe"}, "c")
    with pytest.raises(ConnectionConfigError) as failure:
        check_files({"ssl.certificate.location": str(tmp_path / "service.cert")}, "sitewatch_kafka")
    assert str(failure.value) == (
        f"sitewatch_kafka: ssl.certificate.location {tmp_path / 'service.cert'} does not exist"
    )


def test_postgres_verify_failure_gets_a_cause_other_texts_stay_as_they_are(pki):
    expired = pki.server("localhost", "127.0.0.1", expired=True)
    conn = SimpleNamespace(
        host="127.0.0.1", port=expired, extra_dejson={"sslrootcert": pki.ca_file}
    )
    # a plain TLS server, not PostgreSQL: it does not answer the SSLRequest, so no diagnosis
    text = 'connection to server at "127.0.0.1" failed: SSL error: certificate verify failed'
    assert (
        explain_postgres(conn, Exception(text))
        == f"{UNTRUSTED.replace('broker', 'server')}: {text}"
    )
    mismatch = 'server certificate for "localhost" does not match host name "x"'
    assert explain_postgres(conn, Exception(mismatch)) == mismatch
