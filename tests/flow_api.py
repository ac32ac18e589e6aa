"""A local JSON API for the flow tests: log in for a token, create, read and delete an item, and a
few hostile routes (a token sent on to another origin, an answer that is not JSON).
Every request is recorded (method, path, headers, body), so tests see what reached the server.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PASSWORD = "correct-horse-battery"
TOKEN = "tok-4f9a1c2e7b"
ITEM = 7


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a flow's steps share one connection
    disable_nagle_algorithm = True  # headers and body go in separate writes; no 40 ms ACK waits
    server: _Server

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_GET

    def _dispatch(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        with self.server.lock:
            answer = self.server.route(self, body)
        status, payload, headers = answer if len(answer) == 3 else (*answer, {})
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        headers.setdefault("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _api(handler: _Handler, body: str):
    """The routes of the API (``handler.server.other`` is the other origin's base URL)."""
    method, path = handler.command, handler.path.split("?")[0]
    authorized = handler.headers.get("Authorization") == f"Bearer {TOKEN}"
    if (method, path) == ("POST", "/login"):
        sent = json.loads(body or "{}")
        if sent.get("password") != PASSWORD:
            return 401, {"error": "bad password"}
        return 200, {"token": TOKEN, "owner": TOKEN}
    if path == "/html":
        return 200, b"<html><body>maintenance</body></html>", {"Content-Type": "text/html"}
    if path == "/away":  # sends whoever follows to the other origin, keeping the method
        return 307, b"", {"Location": handler.server.other + "/collect"}
    if path.startswith("/echo"):  # what a value became on the way: the path it was sent in
        return 200, {"path": handler.path}
    if not authorized:
        return 401, {"error": "no token"}
    if (method, path) == ("POST", "/items"):
        return 201, {"id": ITEM, "name": json.loads(body)["name"]}
    if path.startswith("/items/"):
        item = path.removeprefix("/items/")
        if method == "DELETE":
            return 204, b""
        return (200, {"id": int(item), "owner": TOKEN}) if item == str(ITEM) else (404, {})
    return 404, {"error": "no such route"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str, dict, str]] = []
        self.lock = threading.Lock()
        self.route = _api
        self.other = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def start() -> _Server:
    server = _Server()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def stop(server: _Server) -> None:
    server.shutdown()
    server.server_close()
