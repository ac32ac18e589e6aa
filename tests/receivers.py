"""Local servers that receive alerts: a webhook endpoint (http.server), a minimal SMTP server, and
the two incident tools' APIs (PagerDuty Events v2, Opsgenie alerts).

Each runs in a thread on 127.0.0.1 and keeps what it received, so tests assert on real requests
and real mail, not on mocks. ``conn()`` gives the Airflow connection JSON pointing at one.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import os
import shutil
import socketserver
import ssl
import tempfile
import threading
from urllib.parse import unquote, urlsplit

import pytest
import trustme


class _WebhookHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.path, dict(self.headers), body))
        status = self.server.status
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok" if status < 300 else b"no")

    def log_message(self, *args):
        pass


class WebhookReceiver:
    """Records every POST as (path, headers, body); answers ``status`` (200 unless changed)."""

    def __init__(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler)
        self.server.requests = []
        self.server.status = 200
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T000/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def requests(self) -> list[tuple[str, dict, bytes]]:
        return self.server.requests

    @property
    def payloads(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.requests]

    def set_status(self, status: int) -> None:
        self.server.status = status

    def conn(self, **extra) -> str:
        return json.dumps({"conn_type": "http", "extra": {"url": self.url, **extra}})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Enough of RFC 5321 for smtplib: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 localhost sitewatch test SMTP")
        sender, recipients = None, []
        while line := self.rfile.readline():
            command = line.decode("utf-8", "replace").strip()
            verb = command[:4].upper()
            if verb == "EHLO":
                self.reply("250-localhost")
                self.reply("250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 localhost")
            elif verb == "MAIL":
                sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip(" <>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                self.server.messages.append((sender, recipients, self.read_data()))
                self.reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def read_data(self) -> email.message.EmailMessage:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)  # undo dot-stuffing
        return email.message_from_bytes(b"".join(lines), policy=email.policy.default)


class SmtpReceiver:
    """Records every mail as (envelope sender, envelope recipients, parsed message)."""

    def __init__(self):
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
        self.server.daemon_threads = True
        self.server.messages = []
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def messages(self) -> list:
        return self.server.messages

    def conn(self) -> str:
        extra = {
            "disable_ssl": True,
            "disable_tls": True,
            "from_email": "sitewatch@example.com",
            "retry_limit": 0,
            "timeout": 10,
        }
        return json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra}
        )

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch):
    """A WebhookReceiver that Airflow connection ``ops_webhook`` (the tests' notify target) points
    at."""
    server = WebhookReceiver()
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", server.conn())
    yield server
    server.close()


# --- incident tools: PagerDuty Events API v2 and the Opsgenie alert API --------------------------


class _ApiHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        self.server.requests.append((self.path, dict(self.headers), body))
        if self.server.outage:
            status, answer = self.server.outage, {"message": "unavailable"}
        else:
            status, answer = self.server.answer(self.path, dict(self.headers), body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class _ApiReceiver:
    """A JSON API in a thread on 127.0.0.1 (HTTPS with a trustme CA when ``tls``): records every
    POST as (path with query, headers, parsed body) and answers what ``answer`` returns, or the
    status ``set_outage`` gave to every request."""

    def __init__(self, tls: bool = False):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ApiHandler)
        self.server.daemon_threads = True
        self.server.requests = []
        self.server.answer = self.answer
        self.server.outage = None
        self.ca_file = None
        scheme = "http"
        if tls:
            scheme = "https"
            self._ca_dir = tempfile.mkdtemp(prefix="sitewatch-ca-")
            ca = trustme.CA()
            self.ca_file = os.path.join(self._ca_dir, "ca.pem")
            ca.cert_pem.write_to_path(self.ca_file)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ca.issue_cert("127.0.0.1").configure_cert(context)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base_url = f"{scheme}://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def requests(self) -> list[tuple[str, dict, object]]:
        return self.server.requests

    def answer(self, path: str, headers: dict, body) -> tuple[int, dict]:
        raise NotImplementedError

    def set_outage(self, status: int | None) -> None:
        self.server.outage = status

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        if self.ca_file:
            shutil.rmtree(self._ca_dir, ignore_errors=True)


class PagerdutyReceiver(_ApiReceiver):
    """PagerDuty's Events API v2 as far as sitewatch uses it: ``POST /v2/enqueue`` with
    ``routing_key``, ``event_action`` and ``dedup_key``, and for a trigger a ``payload`` with
    ``summary``, ``source`` and ``severity``. Answers 202 with the dedup key, or 400 ``invalid
    event`` as the real API does; ``incidents`` maps each open dedup key to its last severity.
    HTTPS only (the client refuses anything else): point ``SSL_CERT_FILE`` at ``ca_file``."""

    SEVERITIES = ("critical", "error", "warning", "info")

    def __init__(self, routing_key: str = "R0UT1NGKEY0123456789abcdef012345"):
        self.routing_key, self.incidents = routing_key, {}
        super().__init__(tls=True)

    def conn(self) -> str:
        return json.dumps(
            {"conn_type": "pagerduty_events", "host": self.base_url, "password": self.routing_key}
        )

    def answer(self, path, headers, body):
        problem = self._problem(path, body)
        if problem:
            return 400, {"status": "invalid event", "message": problem, "errors": [problem]}
        key = body["dedup_key"]
        if body["event_action"] == "trigger":
            self.incidents[key] = body["payload"]["severity"]
        elif body["event_action"] == "resolve":
            self.incidents.pop(key, None)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}

    def _problem(self, path, body) -> str | None:
        if path != "/v2/enqueue" or not isinstance(body, dict):
            return "not an Events API v2 event"
        if body.get("routing_key") != self.routing_key:
            return "unknown routing_key"
        if body.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            return "event_action must be trigger, acknowledge or resolve"
        if not body.get("dedup_key"):
            return "dedup_key is required (sitewatch always sends one)"
        payload = body.get("payload") or {}
        if body["event_action"] == "trigger" and not (
            payload.get("summary")
            and payload.get("source")
            and payload.get("severity") in self.SEVERITIES
        ):
            return "payload needs summary, source and a valid severity"
        return None


class OpsgenieReceiver(_ApiReceiver):
    """Opsgenie's alert API as far as sitewatch uses it: ``POST /v2/alerts`` (create, ``message``
    required) and ``POST /v2/alerts/{alias}/close?identifierType=alias``, authorised by
    ``Authorization: GenieKey <key>``. Answers 202 "Request will be processed" (401 or 422 as
    the real API does); ``alerts`` maps each open alias to its create payload."""

    def __init__(self, api_key: str = "0pen-5e5ame-0123-4567-89ab"):
        self.api_key, self.alerts = api_key, {}
        super().__init__()

    def conn(self) -> str:
        return json.dumps(
            {"conn_type": "opsgenie", "host": self.base_url, "password": self.api_key}
        )

    def answer(self, path, headers, body):
        if headers.get("Authorization") != f"GenieKey {self.api_key}":
            return 401, {"message": "Could not authenticate", "took": 0.0, "requestId": "r"}
        url = urlsplit(path)
        parts = url.path.split("/")  # ['', 'v2', 'alerts', <identifier>, 'close']
        if url.path == "/v2/alerts" and isinstance(body, dict) and body.get("message"):
            self.alerts[body.get("alias")] = body
        elif len(parts) == 5 and parts[-1] == "close" and url.query == "identifierType=alias":
            self.alerts.pop(unquote(parts[3]), None)
        else:
            return 422, {
                "message": "Request body is not processable",
                "took": 0.0,
                "requestId": "r",
            }
        request_id = f"req-{len(self.requests)}"
        return 202, {"result": "Request will be processed", "took": 0.01, "requestId": request_id}
