"""End to end through ``dag.test()``: a TCP check (``tcp://``) runs through the triggerer like an
HTTP one, and its observation is what reaches Kafka."""

import json

import pytest

from tests.builders import one_site_dag, sites_file
from tests.conftest import read_topic
from tests.tcp_servers import banner, serve


@pytest.fixture
def topic(new_topic, monkeypatch):
    name = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", name)
    return name


def _dag(port: int, pattern: str, tmp_path, monkeypatch):
    keys = {"reply_regex": f"'{pattern}'", "retries": "0"}
    text = sites_file(["e2e-tcp"], f"tcp://127.0.0.1:{port}", **keys)
    return one_site_dag(text, tmp_path, monkeypatch)


def test_a_matching_banner_keeps_the_site_up(topic, tmp_path, monkeypatch):
    with serve(banner) as port:
        run = _dag(port, "^220 ", tmp_path, monkeypatch).test()
    assert run.state == "success"
    (msg,) = read_topic(topic, 1)
    doc = json.loads(msg.value())
    assert (doc["url"], doc["up"], doc["error"], doc["status_code"]) == (
        f"tcp://127.0.0.1:{port}",
        True,
        None,
        None,
    )
    assert doc["regex_matched"] is True and doc["connect_ms"] is not None


def test_a_banner_that_does_not_match_fails_the_run_as_reply(topic, tmp_path, monkeypatch):
    with serve(banner) as port:
        run = _dag(port, "^\\+OK", tmp_path, monkeypatch).test()
    assert run.state == "failed"
    (msg,) = read_topic(topic, 1)
    doc = json.loads(msg.value())
    assert (doc["up"], doc["error"]) == (False, "reply")


def test_the_dag_page_shows_the_tcp_settings_only(tmp_path, monkeypatch):
    doc = _dag(25, "^220 ", tmp_path, monkeypatch).doc_md
    assert "| reply_regex | `^220 ` |" in doc
    assert "| method |" not in doc and "| follow_redirects |" not in doc
    assert "| verify_tls |" not in doc  # tcp:// makes no TLS handshake; tls:// would show it
