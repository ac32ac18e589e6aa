"""The DNS check against a real local DNS server (dnspython in a thread): right and wrong answers,
all or any of a list, NXDOMAIN, SERVFAIL, no record, and a server that never answers."""

from __future__ import annotations

import pytest
from probing import fails, make_site, run

from sitewatch.config.dns_check import check_answers
from tests.dns_server import dns_server

RECORDS = {
    ("shop.test", "A"): ["192.0.2.10", "192.0.2.11"],
    ("shop.test", "MX"): ["10 Mail.Shop.Test."],
    ("shop.test", "TXT"): ['"v=spf1 -all"'],
    ("www.shop.test", "CNAME"): ["shop.test."],
    ("big.test", "TXT"): [f'"{"x" * 200} {i}"' for i in range(10)],
}


@pytest.fixture(scope="module")
def port():
    with dns_server(
        RECORDS,
        servfail=frozenset({"broken.test"}),
        silent=frozenset({"slow.test"}),
        truncated=frozenset({"big.test"}),
    ) as p:
        yield p


def _dns(port: int, name: str, kind: str = "A", answers=None, **fields):
    url = f"dns://127.0.0.1:{port}/{name}?type={kind}"
    return make_site(url, answers=check_answers(answers), **{"timeout": 2.0, **fields})


@pytest.mark.parametrize(
    ("name", "kind", "answers"),
    [
        ("shop.test", "A", None),  # some answer
        ("shop.test", "A", ["192.0.2.11", "192.0.2.10"]),  # all of them, in any order
        ("shop.test", "A", {"any": ["192.0.2.99", "192.0.2.10"]}),
        ("shop.test", "MX", ["10 mail.shop.test."]),  # names without case or final dot
        ("shop.test", "TXT", ["v=spf1 -all"]),
        ("www.shop.test", "CNAME", ["shop.test"]),
    ],
)
def test_right_answers_are_up(port, name, kind, answers):
    obs = run(_dns(port, name, kind, answers))
    assert (obs.up, obs.error, obs.status_code) == (True, None, None), obs
    assert obs.url == f"dns://127.0.0.1:{port}/{name}?type={kind}"
    assert obs.dns_ms is not None and obs.response_time_ms == obs.dns_ms
    assert obs.connect_ms is None and obs.tls_ms is None


def test_a_wrong_answer_names_what_was_expected_and_what_came(port):
    obs = run(_dns(port, "shop.test", "A", ["192.0.2.10", "192.0.2.99"]))
    fails(obs, "answer", "shop.test A: expected all of [192.0.2.10, 192.0.2.99]")
    assert "missing [192.0.2.99]" in obs.error_detail
    fails(run(_dns(port, "shop.test", "A", {"any": ["192.0.2.99"]})), "answer", "one of")


def test_no_record_of_the_type_is_answer(port):
    fails(run(_dns(port, "shop.test", "AAAA")), "answer", "no AAAA record for shop.test")


def test_nxdomain_servfail_and_silence_are_each_named(port):
    fails(run(_dns(port, "nowhere.test")), "nxdomain", "nowhere.test does not exist")
    fails(run(_dns(port, "broken.test")), "servfail", "answered SERVFAIL")
    fails(run(_dns(port, "slow.test", timeout=0.5)), "timeout", "timed out after 0.5 s")


def test_a_truncated_answer_is_asked_again_over_tcp(port):
    obs = run(_dns(port, "big.test", "TXT", [f"{'x' * 200} 9"]))
    assert obs.up, obs
