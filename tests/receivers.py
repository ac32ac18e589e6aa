"""Local servers that receive alerts: a webhook endpoint (http.server) and a minimal SMTP server.

Both run in a thread on 127.0.0.1 and keep what they received, so tests assert on real requests
and real mail, not on mocks. ``conn()`` gives the Airflow connection JSON pointing at one.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import socketserver
import threading

import pytest


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
