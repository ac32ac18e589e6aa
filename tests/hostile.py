"""Hostile targets: raw-socket servers on 127.0.0.1 that misbehave on purpose, and their catalog.

Each behaviour is a function ``(sock, stopping)`` run in its own thread for each connection the
probe opens (``HostileServer``, or ``raw_servers`` for several at once). ``TARGETS`` lists every
hostile target with the error the probe must classify it as: the faults suite probes all of them in
one worker process to measure its peak memory; the unit suite probes some of these behaviours one
at a time (tests/unit/test_probe.py, test_probe_hostile.py). A flow target runs a site's steps
against its server instead of one request; the other origin its server redirects a token to is
the one ``Recorder``, which keeps every request it receives.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import socket
import socketserver
import ssl
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote

DRIP_SECONDS = 0.2  # between bytes: every read succeeds, only the deadline can end the probe
BOMB_DECODED = 10 * 2**30  # what the gzip bomb decodes to: 10 GiB of zeros
_UNIT = bytes(4 * 2**20)  # the bomb repeats the compressed form of these 4 MiB
_SEND_TIMEOUT = 10.0

Behaviour = Callable[[socket.socket, threading.Event], None]


# --- the gzip bombs -----------------------------------------------------------------------------


def gzip_repeated(head: bytes, unit: bytes, count: int, tail: bytes = b"") -> Iterator[bytes]:
    """Stream gzip of ``head + unit * count + tail`` while compressing ``unit`` only once.

    A full flush resets the compressor, so every later ``unit`` compresses to the same bytes: the
    stream costs one compression and a memcpy per unit, whatever the decoded size. The trailer's
    CRC is computed only if a reader ever gets that far.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: header and trailer are ours
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    yield deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    if count:
        block = deflate.compress(unit) + deflate.flush(zlib.Z_FULL_FLUSH)
        for _ in range(count):
            yield block
    yield deflate.compress(tail) + deflate.flush(zlib.Z_FINISH)
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(unit, crc)
    crc = zlib.crc32(tail, crc)
    yield struct.pack("<II", crc, (len(head) + len(unit) * count + len(tail)) & 0xFFFFFFFF)


def gzip_bomb() -> Iterator[bytes]:
    """10 GiB of zeros, gzip-compressed: about 10 MB on the wire."""
    return gzip_repeated(b"", _UNIT, BOMB_DECODED // len(_UNIT))


def nested_gzip_bomb() -> Iterator[bytes]:
    """The 10 GiB bomb gzip-compressed again (``Content-Encoding: gzip, gzip``): a few KB."""
    inner = list(itertools.islice(gzip_bomb(), 3))  # header, empty head block, first unit block
    header, block = inner[0] + inner[1], inner[2]
    per_unit = 256
    units = BOMB_DECODED // len(_UNIT)
    # The inner trailer and final block are left out: the outer stream never gets that far.
    return gzip_repeated(header, block * per_unit, units // per_unit)


# --- behaviours -----------------------------------------------------------------------------------


def _read_request(sock: socket.socket) -> bytes:
    """Read until the end of the request headers (or 64 KiB, or the client hangs up)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _forever(sock: socket.socket, stopping: threading.Event, data: bytes, pause: float = 0):
    """Send ``data`` again and again until the client hangs up or the server stops."""
    while not stopping.is_set():
        sock.sendall(data)
        if pause:
            stopping.wait(pause)


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def never_answers(sock, stopping):
    """Accept, read the request, say nothing."""
    _read_request(sock)
    stopping.wait()


def silent_from_the_start(sock, stopping):
    """Accept and never read or write (an HTTPS client waits for the ServerHello forever)."""
    stopping.wait()


def _endless(head: bytes, again: bytes, pause: float = 0) -> Behaviour:
    """Read the request, send ``head``, then ``again`` over and over (``pause`` seconds apart)
    until the client hangs up: a response that never ends, wherever in it."""

    def serve(sock, stopping):
        _read_request(sock)
        sock.sendall(head)
        _forever(sock, stopping, again, pause)

    return serve


_OK = b"HTTP/1.1 200 OK\r\n"
_CHUNKED = _OK + b"Transfer-Encoding: chunked\r\n\r\n"

drip_body = _endless(
    _OK + b"Content-Type: text/plain\r\nConnection: close\r\n\r\n", b"x", DRIP_SECONDS
)
drip_headers = _endless(_OK, b"X-Drip: y\r\n", DRIP_SECONDS)
# a valid status line, then a header line that never ends, one byte at a time
drip_header_line = _endless(_OK + b"X-Drip: ", b"x", DRIP_SECONDS)
# header lines as fast as the socket takes them, never the blank line that ends them
endless_headers = _endless(_OK, b"X-Hostile: " + b"y" * 100 + b"\r\n")
endless_header_line = _endless(_OK + b"X-Endless: ", b"y" * 65536)
endless_status_line = _endless(b"HTTP/1.1 200 ", b"O" * 65536)
# ``100 Continue`` after ``100 Continue``: the final response never comes
endless_interim_responses = _endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 256)
# a chunked body that ends properly, then trailer fields forever
endless_trailers = _endless(_CHUNKED + b"2\r\nok\r\n0\r\n", b"X-Trailer: y\r\n" * 1000)
endless_chunk_size = _endless(_CHUNKED + b"1", b"0" * 65536)
# a chunked body of one-byte chunks that never ends (hits the body cap)
endless_tiny_chunks = _endless(_CHUNKED, b"1\r\nx\r\n" * 10000)


def truncated_body(sock, _stopping):
    """Announce 100 body bytes, send 5, hang up."""
    _read_request(sock)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")


def bad_chunk_length(sock, _stopping):
    _read_request(sock)
    sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")


def _bomb(encoding: str, stream: Callable[[], Iterator[bytes]]) -> Behaviour:
    def serve(sock, stopping):
        _read_request(sock)
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Encoding: {encoding}\r\n".encode()
            + b"Connection: close\r\n\r\n"
        )
        for piece in stream():
            if stopping.is_set():
                return
            sock.sendall(piece)

    return serve


gzip_bomb_10g = _bomb("gzip", gzip_bomb)
nested_gzip_bomb_10g = _bomb("gzip, gzip", nested_gzip_bomb)


def corrupt_gzip(sock, _stopping):
    _read_request(sock)
    body = b"\x1f\x8b\x08\x00" + b"\xde\xad\xbe\xef" * 64
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def redirect_forever(sock, stopping):
    """Every hop redirects to a new URL: no loop to detect, only the hop limit."""
    request = _read_request(sock)
    path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/0"
    hop = int(path.rsplit(b"/", 1)[-1] or 0) if path.rsplit(b"/", 1)[-1].isdigit() else 0
    sock.sendall(
        f"HTTP/1.1 302 Found\r\nLocation: /{hop + 1}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )


def redirect_to_itself(sock, _stopping):
    request = _read_request(sock)
    path = request.split(b" ", 2)[1].decode() if request.count(b" ") >= 2 else "/"
    sock.sendall(
        f"HTTP/1.1 301 Moved\r\nLocation: {path}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )


# --- secrets: a site that wants the headers it was not meant to get ---------------------------

# What the worker expands ${SITEWATCH_SECRET_HOSTILE} to; "/", "+" and "=" stay encoded in a URL.
SECRET = "hostile/secret+4f1c9a7e=="
SECRET_ENV = {"SITEWATCH_SECRET_HOSTILE": SECRET}
SECRET_HEADERS = {
    "headers": {
        "Authorization": "Bearer ${SITEWATCH_SECRET_HOSTILE}",
        "X-Api-Key": "${SITEWATCH_SECRET_HOSTILE}",
    }
}


def harvest_secrets(sock, _stopping):
    """``/`` redirects to another origin (``localhost`` instead of ``127.0.0.1``, same port); there
    ``/landed`` answers 418 when any secret header came along, 503 when none did."""
    request = _read_request(sock)
    port = sock.getsockname()[1]
    if request.startswith(b"GET /landed "):
        status = "418 Leaked" if SECRET.encode() in request else "503 Clean"
        head = f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    else:
        head = (
            f"HTTP/1.1 302 Found\r\nLocation: http://localhost:{port}/landed\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    sock.sendall(head.encode())


def echo_headers(sock, _stopping):
    """Answers 200 with the request's own head as the body: every header the probe sent."""
    request = _read_request(sock)
    sock.sendall(
        f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(request)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + request
    )


def echo_secret_encoded(sock, _stopping):
    """``/`` redirects to ``/login/`` and the secret key it was sent, every byte percent-encoded;
    there it answers 200 with the key again in JSON, every character ``\\u``-escaped."""
    request = _read_request(sock)
    head = request.decode("latin-1").split("\r\n")
    key = next(
        (line.split(":", 1)[1].strip() for line in head if line.lower().startswith("x-api")), ""
    )
    if request.startswith(b"GET /login/"):
        body = ('{"key": "' + "".join(f"\\u{ord(c):04x}" for c in key) + '"}').encode()
        sock.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        return
    path = "/login/" + "".join(f"%{byte:02X}" for byte in key.encode())
    sock.sendall(
        f"HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )


def _redirect_with(
    head: bytes, body: Callable[[], Iterator[bytes]], landed: str = "503 Unavailable"
) -> Behaviour:
    """``/landed`` answers ``landed``; any other path a 302 to it with ``head`` and a hostile
    ``body``.

    Followed, the redirect's body must not be read at all (the probe reports what ``/landed``
    answered); unfollowed, it must stop at the body cap.
    """

    def serve(sock, stopping):
        request = _read_request(sock)
        if request.startswith(b"GET /landed "):
            sock.sendall(
                f"HTTP/1.1 {landed}\r\nContent-Length: 6\r\nConnection: close\r\n\r\n".encode()
                + b"landed"
            )
            return
        sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: /landed\r\n" + head + b"\r\n")
        for piece in body():
            if stopping.is_set():
                return
            sock.sendall(piece)

    return serve


def _zeros_forever() -> Iterator[bytes]:
    return itertools.repeat(_UNIT[: 2**20])


_GZIPPED = b"Content-Encoding: gzip\r\nConnection: close\r\n"
_HUGE = b"Content-Length: 5000000000\r\n"
redirect_gzip_bomb = _redirect_with(_GZIPPED, gzip_bomb)
redirect_huge_content_length = _redirect_with(_HUGE, _zeros_forever)
# the same, to a page that is fine: a followed redirect is up
redirect_gzip_bomb_to_ok = _redirect_with(_GZIPPED, gzip_bomb, "200 OK")
redirect_huge_content_length_to_ok = _redirect_with(_HUGE, _zeros_forever, "200 OK")


def _reply(data: bytes) -> Behaviour:
    def serve(sock, _stopping):
        _read_request(sock)
        sock.sendall(data)

    return serve


not_http = _reply(b"HELLO I AM NOT HTTP\r\n\r\n")
binary_status_line = _reply(bytes(range(256)) * 4 + b"\r\n\r\n")
status_out_of_range = _reply(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n")
negative_status = _reply(b"HTTP/1.1 -200 OK\r\nContent-Length: 0\r\n\r\n")
unknown_http_version = _reply(b"HTTP/9.9 200 OK\r\nContent-Length: 0\r\n\r\n")
status_with_nul = _reply(b"HTTP/1.1 200\x00 OK\r\nContent-Length: 2\r\n\r\nok")
huge_content_length = _reply(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nok")


malformed_location = _reply(
    b"HTTP/1.1 302 Found\r\nLocation: http://[::1/x\r\nContent-Length: 5\r\n\r\nmoved"
)


def _charset(name: str) -> Behaviour:
    """A page whose Content-Type names ``name``, a Python codec that is no charset."""
    return _reply(
        f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset={name}\r\n".encode()
        + b"Content-Length: 12\r\n\r\nsitewatch ok"
    )


well_behaved = _reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def closes_at_once(sock, _stopping):
    _read_request(sock)


def resets_at_once(sock, _stopping):
    _read_request(sock)
    _reset(sock)


# --- flows: a site's steps against hostile servers ----------------------------------------------

# What token_api's login hands out: "/", "+" and "=" stay encoded in a URL, "\/" may escape it in
# JSON. Its first characters ("flowtok") must appear nowhere else in a record or a request.
TOKEN = "flowtok/9e2b+7c1d=="
HUGE_VALUE = 10 * 2**20  # characters of the value in a 10 MiB answer
# a body cap above the 10 MiB answers: the body is read whole, the value's own limit refuses it
ROOM_FOR_HUGE = {"max_body_bytes": 20 * 2**20}
RECORDER = "recorder"  # start_all's name for the one recording server (``Recorder``)
_JSON = "Content-Type: application/json\r\n"


def _read_whole_request(sock: socket.socket) -> tuple[bytes, bytes]:
    """The request's head and its body (as much as Content-Length announces, at most 1 MiB)."""
    head, _, body = _read_request(sock).partition(b"\r\n\r\n")
    announced = re.search(rb"(?im)^content-length:[ \t]*(\d{1,9})[ \t]*\r?$", head)
    wanted = min(int(announced[1]), 2**20) if announced else 0
    while len(body) < wanted:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def _send(sock: socket.socket, status: str, body: bytes = b"", headers: str = "") -> None:
    sock.sendall(
        f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )


def _target_of(head: bytes) -> str:
    return head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else "/"


def _huge(content_type: str, before: bytes, after: bytes) -> Behaviour:
    """Answer any request with ``before``, ``HUGE_VALUE`` times ``x``, then ``after``: a value
    of 10 MiB, announced by Content-Length and sent in 1 MiB writes."""

    def serve(sock, stopping):
        _read_whole_request(sock)
        length = len(before) + HUGE_VALUE + len(after)
        sock.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n".encode()
            + before
        )
        for _ in range(HUGE_VALUE // 2**20):
            if stopping.is_set():
                return
            sock.sendall(b"x" * 2**20)
        sock.sendall(after)

    return serve


huge_json_value = _huge("application/json", b'{"token": "', b'"}')
huge_text_value = _huge("text/plain", b"token=", b"\n")


def token_api(sock, _stopping):
    """A login, and what a flow does with its token, by path:

    - ``POST /login``: ``{"token": TOKEN}``, and the token as a cookie too (``sid``), which
      cookie rules would send to every port of the host;
    - ``/away?to=ORIGIN``: a 302 (307 for a POST, which keeps the method and body) to
      ``/hop?to=ORIGIN`` on this origin, which redirects the same way to ``ORIGIN/collect``: a
      token sent here is sent on to another origin unless the probe holds it back;
    - ``/echo``: 200, the request as it arrived: ``{"target", "headers", "body"}``.
    """
    head, body = _read_whole_request(sock)
    target = _target_of(head)
    path, _, query = target.partition("?")
    if path == "/login":
        cookie = f"Set-Cookie: sid={TOKEN}; Path=/\r\n"
        _send(sock, "200 OK", json.dumps({"token": TOKEN}).encode(), _JSON + cookie)
    elif path in ("/away", "/hop"):
        to = parse_qs(query).get("to", [""])[0]
        code = "307 Temporary Redirect" if head.startswith(b"POST ") else "302 Found"
        location = f"/hop?to={quote(to, safe='')}" if path == "/away" else f"{to}/collect"
        _send(sock, code, headers=f"Location: {location}\r\n")
    elif path == "/echo":
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = dict(line.split(": ", 1) for line in lines if ": " in line)
        answer = {"target": target, "headers": headers, "body": body.decode("latin-1")}
        _send(sock, "200 OK", json.dumps(answer).encode(), _JSON)
    else:
        _send(sock, "404 Not Found")


DOUBLING_START = 1024  # characters of the first value doubling_echo hands out


def doubling_echo(sock, _stopping):
    """``{"v": V + V}`` for the ``X-V`` header ``V`` it was sent (``DOUBLING_START`` characters
    without one): a value that each step of a flow extracts and sends on doubles at every step."""
    head, _ = _read_whole_request(sock)
    sent = re.search(rb"(?im)^x-v:[ \t]*([^\r\n]*)", head)
    value = sent[1].decode("latin-1") * 2 if sent else "ab" * (DOUBLING_START // 2)
    _send(sock, "200 OK", json.dumps({"v": value}).encode(), _JSON)


def _not_json(body: bytes) -> Behaviour:
    """Answer any request 200 with ``body`` under a JSON content type (which it is not)."""
    head = f"HTTP/1.1 200 OK\r\n{_JSON}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return _reply(head.encode() + body)


DEEP = 100_000  # levels of the nested JSON answers
html_not_json = _not_json(b"<!doctype html><html><body><h1>Maintenance</h1></body></html>")
invalid_utf8_json = _not_json(b'{"status": "ok\xff\xfe\xc3("}')
truncated_json = _not_json(b'{"status": "ok", "items": [1, 2, 3')
deeply_nested_json = _not_json(b'{"status": ' + b"[" * DEEP + b"]" * DEEP + b"}")


def written_forms(text: str) -> str:
    """``text`` with every way a request or record may write a value undone, appended: percent-
    encoding and JSON escapes (however often escaped again), and base64 of each word that is."""
    plain = re.sub(r"\\+u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), unquote(text))
    plain = re.sub(r"\\+/", "/", plain)
    decoded = []
    for word in re.findall(r"[A-Za-z0-9+/_-]{12,}={0,2}", text):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            with suppress(ValueError):
                decoded.append(decode(word + "=" * (-len(word) % 4)).decode("latin-1"))
    return "\n".join([text, plain, *decoded])


class Recorder:
    """A behaviour keeping every request it receives, whole, in ``requests``; it answers 418 when
    one holds ``TOKEN`` or ``SECRET`` in any written form (``written_forms``), else 503. Every
    flow target that sends a token toward another origin sends it here."""

    def __init__(self):
        self.requests: list[bytes] = []

    def __call__(self, sock, _stopping):
        head, body = _read_whole_request(sock)
        self.requests.append(head + b"\r\n\r\n" + body)
        seen = written_forms(self.requests[-1].decode("latin-1"))
        leaked = TOKEN[:7] in seen or SECRET[:7] in seen
        _send(sock, "418 Leaked" if leaked else "503 Clean")


# --- broken TLS -----------------------------------------------------------------------------------


def tls_garbage_after_client_hello(sock, _stopping):
    """Read the ClientHello, answer with bytes that are not a TLS record: a record header whose
    version byte is not 3 (random bytes had one about once in 256 runs, and another error)."""
    sock.recv(65536)
    sock.sendall(b"\x00" * 128)


def tls_reset_mid_handshake(sock, _stopping):
    """Read the ClientHello, send half a ServerHello record, then reset the connection."""
    sock.recv(65536)
    sock.sendall(b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03" + os.urandom(16))
    _reset(sock)


def tls_closes_mid_handshake(sock, _stopping):
    """Read the ClientHello, send half a ServerHello record, then close cleanly (FIN)."""
    sock.recv(65536)
    sock.sendall(b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03" + os.urandom(16))


def tls_alert(sock, _stopping):
    """Refuse the handshake with a fatal handshake_failure alert."""
    sock.recv(65536)
    sock.sendall(b"\x15\x03\x03\x00\x02\x02\x28")


def tls_drip_handshake(sock, stopping):
    """Announce a 16 KiB handshake record, then send it one byte at a time."""
    sock.recv(65536)
    sock.sendall(b"\x16\x03\x03\x40\x00")
    _forever(sock, stopping, b"\x00", DRIP_SECONDS)


def tls_then_garbage(context: ssl.SSLContext) -> Behaviour:
    """A correct TLS handshake, then random bytes where the HTTP response belongs."""

    def serve(sock, _stopping):
        with context.wrap_socket(sock, server_side=True) as tls:
            _read_request(tls)
            tls.sendall(os.urandom(4096))

    return serve


def tls_then_reset(context: ssl.SSLContext) -> Behaviour:
    """A correct TLS handshake, the request read, then an RST."""

    def serve(sock, _stopping):
        tls = context.wrap_socket(sock, server_side=True)
        _read_request(tls)
        _reset(tls)

    return serve


# --- servers --------------------------------------------------------------------------------------


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(_SEND_TIMEOUT)
        with suppress(OSError):  # the probe hangs up mid-attack, on purpose
            self.server.behaviour(self.request, self.server.stopping)


class HostileServer(socketserver.ThreadingTCPServer):
    """A TCP server on 127.0.0.1 running ``behaviour`` for each connection; ``stop`` ends it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Behaviour):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request, client_address):
        pass  # a handler dying on a hung-up client is the expected end of an attack

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.thread.join(5)


@dataclass(frozen=True)
class Target:
    """One hostile target: its behaviour, the scheme to reach it and what the probe must say."""

    name: str
    behaviour: Behaviour | str  # a str names a behaviour that needs the TLS context
    kind: str
    detail: str
    scheme: str = "http"
    path: str = "/"
    overrides: dict = field(default_factory=dict)
    # A flow: its steps as a sites file writes them, instead of one request to the server's URL;
    # in their strings "{origin}" is the server's origin, "{recorder}" the recording server's.
    steps: tuple[dict, ...] = ()


UNFOLLOWED = {"follow_redirects": False}
FORBID_OK = {"forbid_regex": "sitewatch ok"}  # decoded and searched: the probe says it matched
CHARSETS = ("idna", "undefined", "punycode")

TIMEOUT = "2s"
TIMEOUT_SECONDS = 2.0


def _extracting(extract: dict) -> tuple[dict, ...]:
    """One step ``big`` reading the server's answer to extract ``token`` with ``extract``."""
    return ({"name": "big", "url": "{origin}/", "extract": {"token": extract}},)


def _expecting_json() -> tuple[dict, ...]:
    """One step ``read`` with a JSON assertion."""
    expect = {"json": "$.status", "equals": "ok"}
    return ({"name": "read", "url": "{origin}/status", "expect": [expect]},)


_LOGIN = {
    "name": "login",
    "method": "POST",
    "url": "{origin}/login",
    "body": {"user": "monitor", "key": "${SITEWATCH_SECRET_HOSTILE}"},
    "extract": {"token": {"json": "$.token"}},
}
# the headers that carry the token or the secret (a step whose URL took a value from a response
# may send no secret: the token stays out of this URL)
_CARRYING = {
    "url": "{origin}/away?to={recorder}",
    "headers": {
        "Authorization": "Bearer ${login.token}",
        "X-Token": "${login.token}",
        "Cookie": "session=${login.token}",
        "X-Api-Key": "${SITEWATCH_SECRET_HOSTILE}",
    },
}
TOO_LONG = f"step big: extract token: value of {HUGE_VALUE} characters exceeds 8192"
CAPPED = "step big: body exceeds the cap of 5242880 bytes"
NOT_JSON = "step read: json $.status: response is not JSON"
DOUBLING_STEPS = 20  # observation.MAX_STEPS: each sends the value the one before extracted
FLOW_TARGETS: tuple[Target, ...] = (
    # 1. a 10 MiB answer: the value is refused by its length, or the body by the cap
    Target(
        "flow_extract_json_10mib",
        huge_json_value,
        "assertion",
        TOO_LONG,
        overrides=ROOM_FOR_HUGE,
        steps=_extracting({"json": "$.token"}),
    ),
    Target(
        "flow_extract_regex_10mib",
        huge_text_value,
        "assertion",
        TOO_LONG,
        overrides=ROOM_FOR_HUGE,
        steps=_extracting({"regex": "token=(\\w+)"}),
    ),
    Target(
        "flow_extract_json_10mib_capped",
        huge_json_value,
        "body_too_large",
        CAPPED,
        steps=_extracting({"json": "$.token"}),
    ),
    Target(
        "flow_extract_regex_10mib_capped",
        huge_text_value,
        "body_too_large",
        CAPPED,
        steps=_extracting({"regex": "token=(\\w+)"}),
    ),
    # 2. a token (and a secret) sent to a server that redirects to another origin, the recorder
    # (503 = nothing arrived there; 418 would be a leak): never carried there, never stored
    Target(
        "flow_token_redirected_to_another_origin",
        token_api,
        "status",
        "step send: status 503 not in 200-399",
        steps=(_LOGIN, {"name": "send", **_CARRYING}),
    ),
    Target(
        "flow_token_in_a_body_redirected_to_another_origin",
        token_api,
        "redirects",
        "step send: not followed to http://127.0.0.1:",  # the recorder's origin
        steps=(
            _LOGIN,
            {"name": "send", "method": "POST", **_CARRYING, "body": {"token": "${login.token}"}},
        ),
    ),
    # the token echoed back: the failed assertion is recorded with it masked
    Target(
        "flow_echo_of_token",
        token_api,
        "assertion",
        'step echo: json $.headers.Authorization: expected "nothing", got "Bearer ***"',
        steps=(
            _LOGIN,
            {
                "name": "echo",
                "url": "{origin}/echo",
                "headers": _CARRYING["headers"],
                "expect": [{"json": "$.headers.Authorization", "equals": "nothing"}],
            },
        ),
    ),
    # 3. each step sends the value the step before extracted; the server answers it doubled:
    # the flow fails when a value outgrows the limit of one, bounded whatever the server does
    Target(
        "flow_values_doubling_each_step",
        doubling_echo,
        "assertion",
        f"step s4: extract v: value of {DOUBLING_START * 16} characters exceeds 8192",
        steps=tuple(
            {
                "name": f"s{index}",
                "url": "{origin}/",
                "headers": {"X-V": f"${{s{index - 1}.v}}"} if index else {},
                "extract": {"v": {"json": "$.v"}},
            }
            for index in range(DOUBLING_STEPS)
        ),
    ),
    # 4. a JSON assertion on an answer that is not JSON fails it by name
    Target("flow_json_html", html_not_json, "assertion", NOT_JSON, steps=_expecting_json()),
    Target(
        "flow_json_invalid_utf8",
        invalid_utf8_json,
        "assertion",
        NOT_JSON + " ('utf-8' codec can't decode byte 0xff",
        steps=_expecting_json(),
    ),
    Target(
        "flow_json_truncated",
        truncated_json,
        "assertion",
        NOT_JSON + " (Expecting ',' delimiter",
        steps=_expecting_json(),
    ),
    Target(
        "flow_json_nested_100000_deep",
        deeply_nested_json,
        "assertion",
        NOT_JSON + " (nested too deeply)",
        steps=_expecting_json(),
    ),
    Target(
        "flow_extract_json_nested_100000_deep",
        deeply_nested_json,
        "assertion",
        "step big: extract token: response is not JSON (nested too deeply)",
        steps=_extracting({"json": "$.token"}),
    ),
)

TARGETS: tuple[Target, ...] = (
    Target("never_answers", never_answers, "timeout", "while waiting for the response headers"),
    Target("drip_body", drip_body, "timeout", "while reading the body"),
    Target("drip_headers", drip_headers, "timeout", "while waiting for the response headers"),
    Target("endless_headers", endless_headers, "protocol", "response has more than 100 headers"),
    Target(
        "endless_header_line",
        endless_header_line,
        "protocol",
        "response header line longer than 65536 bytes",
    ),
    Target(
        "endless_status_line",
        endless_status_line,
        "protocol",
        "response status line longer than 65536 bytes",
    ),
    Target(
        "endless_interim_responses",
        endless_interim_responses,
        "timeout",
        "while waiting for the response headers",
    ),
    Target("endless_trailers", endless_trailers, "timeout", "while reading the body"),
    Target(
        "endless_chunk_size",
        endless_chunk_size,
        "protocol",
        "response chunk size longer than 65536 bytes",
    ),
    # one-byte chunks cost more to parse than the deadline allows before the 5 MiB cap
    Target("endless_tiny_chunks", endless_tiny_chunks, "timeout", "while reading the body"),
    Target("bad_chunk_length", bad_chunk_length, "protocol", "closed before the end of the body"),
    Target("gzip_bomb_10gib", gzip_bomb_10g, "body_too_large", "cap of 5242880 bytes"),
    Target(
        "nested_gzip_bomb_10gib", nested_gzip_bomb_10g, "body_too_large", "cap of 5242880 bytes"
    ),
    Target("corrupt_gzip", corrupt_gzip, "protocol", "cannot decode the compressed body"),
    Target("redirect_forever", redirect_forever, "redirects", "more than 10 redirects"),
    # secret headers never reach another origin (503 = none arrived; 418 would be a leak)
    Target(
        "redirect_harvesting_secrets",
        harvest_secrets,
        "status",
        "status 503 not in 200-399",
        overrides=SECRET_HEADERS,
    ),
    # a site that echoes the secret back: the match is recorded with the secret masked
    Target(
        "echo_of_secret_headers",
        echo_headers,
        "regex",
        "Bearer ***",
        overrides={**SECRET_HEADERS, "forbid_regex": "Bearer [^\\r\\n]+"},
    ),
    # the same, encoded: percent-encoded into a redirect, then JSON-escaped in the body
    Target(
        "echo_of_secret_encoded",
        echo_secret_encoded,
        "regex",
        """'"key": "***""",
        overrides={**SECRET_HEADERS, "forbid_regex": '"key": "[^"]+'},
    ),
    Target("redirect_to_itself", redirect_to_itself, "redirects", "redirect loop"),
    Target("redirect_gzip_bomb_10gib", redirect_gzip_bomb, "status", "status 503 not in 200-399"),
    Target(
        "redirect_gzip_bomb_10gib_unfollowed",
        redirect_gzip_bomb,
        "body_too_large",
        "cap of 5242880 bytes",
        overrides=UNFOLLOWED,
    ),
    Target(
        "redirect_huge_content_length",
        redirect_huge_content_length,
        "status",
        "status 503 not in 200-399",
    ),
    Target(
        "redirect_huge_content_length_unfollowed",
        redirect_huge_content_length,
        "body_too_large",
        "cap of 5242880 bytes",
        overrides=UNFOLLOWED,
    ),
    Target(
        "malformed_location",
        malformed_location,
        "redirects",
        "invalid redirect target 'http://[::1/x'",
    ),
    Target(
        "malformed_location_unfollowed",
        malformed_location,
        "status",
        "status 302 not in 200-299",
        overrides={**UNFOLLOWED, "expect_status": "200-299"},
    ),
    *(
        Target(
            f"charset_{name}",
            _charset(name),
            "regex",
            "forbidden pattern matched at 0: 'sitewatch ok'",
            overrides=FORBID_OK,
        )
        for name in CHARSETS
    ),
    Target("not_http", not_http, "protocol", "invalid status line 'HELLO I AM NOT HTTP'"),
    Target("binary_status_line", binary_status_line, "protocol", "invalid status line"),
    Target("status_out_of_range", status_out_of_range, "protocol", "invalid status line"),
    Target("negative_status", negative_status, "protocol", "invalid status line"),
    Target(
        "unknown_http_version", unknown_http_version, "protocol", "unknown HTTP version 'HTTP/9.9'"
    ),
    Target("status_with_nul", status_with_nul, "protocol", "invalid status line"),
    Target(
        "huge_content_length", huge_content_length, "protocol", "closed before the end of the body"
    ),
    Target(
        "closes_at_once", closes_at_once, "protocol", "closed the connection without a response"
    ),
    Target("resets_at_once", resets_at_once, "protocol", "connection reset by the server"),
    Target(
        "tls_silent", silent_from_the_start, "timeout", "while doing the TLS handshake", "https"
    ),
    Target(
        "tls_drip_handshake",
        tls_drip_handshake,
        "timeout",
        "while doing the TLS handshake",
        "https",
    ),
    Target(
        "tls_garbage_after_client_hello",
        tls_garbage_after_client_hello,
        "tls",
        "TLS handshake failed: wrong version number",
        "https",
    ),
    Target(
        "tls_reset_mid_handshake",
        tls_reset_mid_handshake,
        "tls",
        "TLS handshake failed: connection reset by the server",
        "https",
    ),
    Target(
        "tls_closes_mid_handshake",
        tls_closes_mid_handshake,
        "tls",
        "TLS handshake failed: unexpected eof while reading",
        "https",
    ),
    Target(
        "tls_alert",
        tls_alert,
        "tls",
        "TLS handshake failed: sslv3 alert handshake failure",
        "https",
    ),
    Target("tls_then_garbage", "tls_then_garbage", "protocol", "invalid status line", "https"),
    Target(
        "tls_then_reset",
        "tls_then_reset",
        "protocol",
        "server closed the connection without a response",
        "https",
    ),
    *FLOW_TARGETS,
)


@contextmanager
def raw_servers(**behaviours: Behaviour) -> Iterator[dict[str, str]]:
    """Start a ``HostileServer`` for each named behaviour; yield ``{name: its http URL}``; stop
    them."""
    started = {name: HostileServer(behaviour) for name, behaviour in behaviours.items()}
    try:
        yield {name: f"http://127.0.0.1:{server.port}/" for name, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


def start_all(context: ssl.SSLContext) -> dict[str, HostileServer]:
    """Start one server per target, and the recording server (``RECORDER``) that flows
    redirect to; ``context`` serves the targets that complete a handshake."""
    needs_tls = {"tls_then_garbage": tls_then_garbage, "tls_then_reset": tls_then_reset}
    started = {}
    for target in TARGETS:
        behaviour = target.behaviour
        if isinstance(behaviour, str):
            behaviour = needs_tls[behaviour](context)
        started[target.name] = HostileServer(behaviour)
    started[RECORDER] = HostileServer(Recorder())
    return started


def url_of(target: Target, server: HostileServer) -> str:
    return f"{target.scheme}://127.0.0.1:{server.port}{target.path}"


def steps_of(target: Target, servers: dict[str, HostileServer]) -> list[dict]:
    """``target.steps`` with ``{origin}`` its server's origin and ``{recorder}`` the recording
    server's (``servers`` as ``start_all`` returns them)."""
    text = json.dumps(target.steps)
    text = text.replace("{origin}", f"{target.scheme}://127.0.0.1:{servers[target.name].port}")
    return json.loads(text.replace("{recorder}", f"http://127.0.0.1:{servers[RECORDER].port}"))
