"""Real local servers for the probe tests: a well-behaved HTTP(S) server with test routes (two of
them hostile: ``/drip`` and ``/gzip-bomb``), a server that records the headers it was sent, and
listeners that refuse or never accept. Everything listens on 127.0.0.1 with an ephemeral port.
Servers that misbehave at the socket level are tests/hostile.py's.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, quote_plus, unquote, urlsplit

from tests.hostile import DRIP_SECONDS, gzip_bomb


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stopping: threading.Event
    seen: list  # (method, path, body) of each request, for the tests to inspect

    def handle_error(self, request, client_address):
        pass  # clients hang up mid-drip and fail handshakes on purpose; not worth a traceback


class Handler(BaseHTTPRequestHandler):
    """Routes by path; see ``_ROUTES``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes; no 40 ms ACK waits
    server: _Server

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_GET

    def _dispatch(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.seen.append((self.command, self.path, body))
        name, _, arg = self.path.lstrip("/").partition("/")
        route = _ROUTES.get(name)
        if route is None:
            self.reply(404, b"no such route")
        else:
            route(self, arg, body)

    def reply(self, status, body=b"", content_type="text/html; charset=utf-8", **headers):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def redirect(self, status, location):
        self.reply(status, b"moved", Location=location)

    def stream(self, chunks, content_encoding=None):
        """Send a body of unknown length, ending by closing the connection."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if content_encoding:
            self.send_header("Content-Encoding", content_encoding)
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in chunks:
                if self.server.stopping.is_set():
                    return
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass  # the probe hung up, as it should


def _drip():
    while True:
        yield b"x"
        time.sleep(DRIP_SECONDS)


def _delay(handler: Handler, arg: str, _body: str) -> None:
    time.sleep(int(arg) / 1000)
    handler.reply(200, b"late but fine")


def _chain(handler: Handler, arg: str, _body: str) -> None:
    hops = int(arg)  # /redirect/N takes N redirects to reach /ok
    handler.redirect(302, f"/redirect/{hops - 1}" if hops > 1 else "/ok")


_ROUTES: dict[str, Callable[[Handler, str, str], None]] = {
    "ok": lambda h, a, b: h.reply(200, b"<h1>sitewatch ok</h1><p>status: healthy</p>"),
    "status": lambda h, a, b: h.reply(int(a), f"status {a}".encode()),
    "redirect": _chain,
    "loop": lambda h, a, b: h.redirect(302, "/loop"),
    "ftp": lambda h, a, b: h.redirect(301, "ftp://127.0.0.1/file"),
    "see-other": lambda h, a, b: h.redirect(303, "/echo"),
    "delay": _delay,
    "big": lambda h, a, b: h.reply(200, b"x" * int(a), content_type="text/plain"),
    "drip": lambda h, a, b: h.stream(_drip()),
    "gzip-bomb": lambda h, a, b: h.stream(gzip_bomb(), content_encoding="gzip"),
    "latin1": lambda h, a, b: h.reply(
        200, "café señor".encode("latin-1"), content_type="text/plain; charset=ISO-8859-1"
    ),
    "bad-utf8": lambda h, a, b: h.reply(200, b"price: 10\xff\xfe euro ok"),
    "echo": lambda h, a, b: h.reply(200, f"method={h.command} body={b}".encode()),
    "aaaa": lambda h, a, b: h.reply(200, b"a" * 5000 + b"b", content_type="text/plain"),
    "to": lambda h, a, b: h.redirect(302, unquote(a)),
    "charset": lambda h, a, b: h.reply(
        200, b"sitewatch ok", content_type=f"text/html; charset={a}"
    ),
}


def start_http(context: ssl.SSLContext | None = None) -> _Server:
    """Start the routed server (TLS when ``context`` is given); stop it with ``stop``."""
    return _start(Handler, context)


def _start(handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None) -> _Server:
    server = _Server(("127.0.0.1", 0), handler)
    if context is not None:
        # Handshakes happen lazily in each handler thread, so a failing client cannot stall accept.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    server.stopping = threading.Event()
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    server.thread = thread
    return server


def start_handshake_only(pem) -> socket.socket:
    """A TLS listener on 127.0.0.1 that completes each handshake with the key and chain in ``pem``
    and hangs up: enough to test what a client says about a certificate. Close it to stop."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with suppress(OSError, ssl.SSLError), context.wrap_socket(conn, server_side=True):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return listener


def stop(server) -> None:
    server.stopping.set()
    server.shutdown()
    server.server_close()
    server.thread.join(5)


def url(server, path: str = "/", host: str = "127.0.0.1") -> str:
    scheme = "https" if isinstance(server.socket, ssl.SSLSocket) else "http"
    return f"{scheme}://{host}:{server.server_address[1]}{path}"


def refused_port() -> socket.socket:
    """A socket bound but not listening: connecting to its port is refused. Keep it open."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def full_backlog() -> tuple[socket.socket, socket.socket]:
    """A listener whose accept queue is full, so a new connect hangs: (listener, the filler).

    The listener never accepts; its single backlog slot is taken by the filler connection. Close
    both when done.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=2)
    return listener, filler


# --- a header recorder (issue 14) -----------------------------------------------------------------


class _RecordingHandler(BaseHTTPRequestHandler):
    """Records each request as ``(path, headers)`` in ``server.seen``.

    ``?to=URL`` answers a 302 to URL; ``?login=quote`` (or ``quote_plus``) a 302 to
    ``/login?next=`` and the request's ``X-Api-Key`` URL-encoded that way, ``?login=path`` a 302 to
    ``/login/`` and the key percent-encoded as one path segment. Any other request gets 200 with the
    request's headers as the body: ``Name: value`` lines, or with ``?json=1`` a JSON object with
    ``/`` escaped as PHP's ``json_encode`` does. So a site that echoes what it was sent can be
    imitated. ``?cookie=VALUE`` sets the cookie ``sid=VALUE`` on the answer, whichever it is.
    """

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.server.seen.append((self.path, dict(self.headers)))
        query = parse_qs(urlsplit(self.path).query)
        target = query.get("to", [None])[0] or self._login(query.get("login", [""])[0])
        if "json" in query:
            body = json.dumps(dict(self.headers)).replace("/", "\\/").encode()
        else:
            body = "".join(f"{name}: {value}\n" for name, value in self.headers.items()).encode()
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target)
        if cookie := query.get("cookie", [""])[0]:
            self.send_header("Set-Cookie", f"sid={cookie}; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _login(self, how: str) -> str | None:
        key = self.headers.get("X-Api-Key", "")
        if how == "path":
            return "/login/" + quote(key, safe="")
        encode = {"quote": quote, "quote_plus": quote_plus}.get(how)
        return f"/login?next={encode(key)}" if encode else None


def start_recorder(context: ssl.SSLContext | None = None) -> _Server:
    """Start a header-recording server (TLS when ``context`` is given); stop it with ``stop``."""
    return _start(_RecordingHandler, context)
