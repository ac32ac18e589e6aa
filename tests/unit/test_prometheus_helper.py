"""tests/prometheus.py against a tiny local exporter that wants a Bearer token: the real
Prometheus sends the token from its credentials file and is refused without it. The end-to-end
test of ``/sitewatch/metrics`` (tests/faults/test_prometheus.py) relies on exactly this."""

from __future__ import annotations

import http.server
import threading

import pytest

from tests.prometheus import Job, Prometheus, PrometheusError

TOKEN = "s3cret-scrape-token"
EXPOSITION = b"# TYPE x gauge\nx 1\n"


class _Exporter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        body = EXPOSITION if ok else b"unauthorized\n"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def exporter():
    """The exporter's metrics URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def prometheus(exporter, tmp_path_factory):
    token, wrong = (tmp_path_factory.mktemp("tokens") / name for name in ("token", "wrong"))
    token.write_text(TOKEN + "\n")  # Prometheus trims the file's trailing newline
    wrong.write_text("not-the-token")
    jobs = [
        Job("with_token", exporter, token),
        Job("anonymous", exporter),
        Job("wrong", exporter, wrong),
    ]
    with Prometheus(jobs, interval=1) as prom:
        for job in jobs:
            prom.wait_scraped(job.name)
        yield prom


def test_a_job_with_the_token_from_its_credentials_file_is_scraped(prometheus):
    assert prometheus.one('up{job="with_token"}') == 1
    assert prometheus.one('x{job="with_token"}') == 1
    assert prometheus.targets()["with_token"]["health"] == "up"


@pytest.mark.parametrize("job", ["anonymous", "wrong"])
def test_a_job_without_the_token_is_refused_with_401(prometheus, job):
    assert prometheus.one(f'up{{job="{job}"}}') == 0
    assert prometheus.query(f'x{{job="{job}"}}') == []
    target = prometheus.targets()[job]
    assert target["health"] == "down"
    assert "401" in target["lastError"]


def test_a_query_prometheus_refuses_raises_with_its_message(prometheus):
    with pytest.raises(PrometheusError, match="parse error"):
        prometheus.query("rate(x[")


def test_the_server_is_stopped_and_its_files_deleted_on_exit(exporter):
    with Prometheus([Job("alone", exporter)]) as prom:
        process, files = prom.process, prom.dir
        assert process.poll() is None
    assert process.returncode is not None
    assert not files.exists()
