"""The probe's transport: a requests session whose connections time their phases and can be cut.

requests' timeouts bound each socket operation, not the attempt, so a server sending one byte a
second could hold a worker forever. Every connection made here registers its socket with a
``Trace``; a watchdog timer shuts those sockets down at the attempt's deadline, which turns any
blocked read into an immediate EOF. What the watchdog cannot reach is bounded another way: the DNS
lookup runs in a helper thread we stop waiting for, TCP connect and the TLS handshake get the
remaining time as their socket timeout (CPython enforces it as a deadline across the whole
handshake).

Phases (``dns_ms``, ``connect_ms``, ``tls_ms``) are those of the FIRST connection of the attempt:
it is the one every attempt makes to the site's own URL, so the numbers compare across runs; later
redirect hops may reuse a pooled connection and have no phases at all. When the first hop is plain
http (say, redirected to https), ``tls_ms`` stays None; the TLS facts (``Trace.tls``: the chain
and its version) are then those of the first TLS connection on any hop. Every TLS connection must
agree on at least the site's ``tls_min_version``; one that does not is closed before a byte of the
request is sent on it. ``Trace.phases`` holds the same three for the first connection made since
it was last emptied: a flow empties it before each step, so a step that opened a connection has
its own phases.
"""

from __future__ import annotations

import socket
import ssl
from http.cookiejar import DefaultCookiePolicy, request_port
from time import perf_counter

import requests
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.ssl_ import create_urllib3_context, resolve_cert_reqs, resolve_ssl_version

from sitewatch import __version__
from sitewatch.names import LOCAL_LOCATION
from sitewatch.probe import chain, offload
from sitewatch.probe.failures import HANDSHAKE, Failure
from sitewatch.probe.timing import DNSTimeout, Trace

_MIN_TIMEOUT = 0.001  # a socket timeout of 0 would mean non-blocking, not "no time left"


def resolve(host: str, port: int, timeout: float | None) -> tuple[list, float]:
    """getaddrinfo bounded by ``timeout``; returns the addresses and the lookup's duration (s).

    getaddrinfo cannot be interrupted, so it runs on a helper thread that we stop waiting for at
    the deadline. Trade-off: a hung resolver leaves that thread alive until the system resolver's
    own timeout; it holds no socket of ours.
    """
    box: dict = {}

    def lookup() -> None:
        started = perf_counter()
        try:
            box["infos"] = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
        except OSError as exc:
            box["error"] = exc
        except UnicodeError as exc:  # IDNA refuses the name (an empty or 64+ character label)
            reason = exc.__cause__ or exc
            box["error"] = socket.gaierror(socket.EAI_NONAME, f"invalid host name ({reason})")
        box["seconds"] = perf_counter() - started

    if not offload.run(lookup, timeout):
        raise DNSTimeout(f"no DNS answer for {host} within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["infos"], box["seconds"]


def _connect_any(infos: list, timeout: float | None, conn: HTTPConnection) -> socket.socket:
    """Connect to the first address that accepts, like urllib3's create_connection."""
    error: OSError | None = None
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError(f"no address found for {conn.host}")


class _TimedConnection:
    """Mixin for urllib3 connections: time DNS, TCP and TLS, and report sockets to the trace."""

    def __init__(self, *args, trace: Trace, **kwargs):
        self._trace = trace
        self._tcp_done = 0.0
        self._phases: dict[str, float] = {}
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        trace = self._trace
        first = trace.connections == 0
        trace.connections += 1
        # this connection's phases: the first since the flow's step began (Trace.phases)
        self._phases = {} if trace.phases else trace.phases
        try:
            trace.stage = "resolving the host"
            infos, dns_seconds = resolve(self._dns_host, self.port, self.timeout)
            self._phases["dns_ms"] = round(dns_seconds * 1000, 3)
            if first:
                trace.dns_ms = self._phases["dns_ms"]
            trace.stage = "connecting"
            started = perf_counter()
            sock = _connect_any(infos, self.timeout, self)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"timed out {trace.stage}") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"cannot connect: {exc}") from exc
        self._tcp_done = perf_counter()
        self._phases["connect_ms"] = round((self._tcp_done - started) * 1000, 3)
        if first:
            trace.connect_ms = self._phases["connect_ms"]
        # The TLS handshake that follows uses this timeout as one deadline for the whole handshake.
        sock.settimeout(max(trace.deadline.remaining(), _MIN_TIMEOUT))
        if isinstance(self, HTTPSConnection):
            trace.stage = HANDSHAKE
        return sock

    def connect(self) -> None:
        trace = self._trace
        first = trace.connections == 0
        try:
            super().connect()
        except ssl.SSLError as exc:  # the chain the server presented says which certificate failed
            trace.tls = trace.tls or chain.presented(exc)
            raise
        trace.track(self.sock)
        trace.stage = "waiting for the response headers"
        if isinstance(self, HTTPSConnection):
            self._phases["tls_ms"] = round((perf_counter() - self._tcp_done) * 1000, 3)
            if first:
                trace.tls_ms = self._phases["tls_ms"]
            shake = chain.handshake(self.sock, verified=self.is_verified)
            trace.tls = trace.tls or shake
            if problem := chain.below_minimum(shake.version, trace.tls_min_version):
                raise Failure("tls", problem)  # urllib3 closes the connection, unused

    def getresponse(self):
        response = super().getresponse()
        if self._trace.aborted:
            # The watchdog's EOF also ends a header block that was still dripping in; what
            # arrived is not a response. urllib3 reports this as the read timeout it is.
            response.close()  # else its socket file keeps the descriptor open
            raise TimeoutError("response headers incomplete at the deadline")
        self._trace.headers_at = perf_counter()
        return response


class TimedHTTPConnection(_TimedConnection, HTTPConnection):
    """An HTTP connection that records its phases in a Trace."""


class TimedHTTPSConnection(_TimedConnection, HTTPSConnection):
    """An HTTPS connection that records its phases, chain and TLS version in a Trace."""

    def connect(self) -> None:
        if self.ssl_context is None:
            # The context urllib3 would make for this connection, its sockets also keeping the
            # chain of a failed handshake (chain.RecordingSocket). urllib3 loads the default CAs
            # only into a context of its own; requests always passes its CAs (verify) instead.
            context = create_urllib3_context(
                ssl_version=resolve_ssl_version(self.ssl_version),
                ssl_minimum_version=self.ssl_minimum_version,
                ssl_maximum_version=self.ssl_maximum_version,
                cert_reqs=resolve_cert_reqs(self.cert_reqs),
            )
            if not (self.ca_certs or self.ca_cert_dir or self.ca_cert_data):
                context.load_default_certs()
            self.ssl_context = chain.recording(context)
        super().connect()


class _TracingPoolManager(PoolManager):
    def __init__(self, trace: Trace, **kwargs):
        self._trace = trace
        super().__init__(**kwargs)

    def _new_pool(self, scheme, host, port, request_context=None):
        # urllib3's documented hook for customising pools: swap in our connections, give them the
        # trace.
        pool = super()._new_pool(scheme, host, port, request_context)
        https = scheme == "https"
        pool.ConnectionCls = TimedHTTPSConnection if https else TimedHTTPConnection
        pool.conn_kw["trace"] = self._trace
        return pool


class _TracingAdapter(HTTPAdapter):
    def __init__(self, trace: Trace):
        self._trace = trace  # set first: HTTPAdapter.__init__ calls init_poolmanager
        super().__init__(pool_connections=2, pool_maxsize=1, max_retries=0)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        self.poolmanager = _TracingPoolManager(
            self._trace, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )


class _Session(requests.Session):
    """A session that leaves redirects alone: ``fetch`` follows them itself.

    Even with ``allow_redirects=False``, requests runs ``resolve_redirects`` once per redirect to
    prepare ``Response.next``, and that reads the redirect's whole body into memory (past the body
    cap: a gzip bomb in a 302 inflates in full) and parses its Location (a malformed one raises
    ValueError before the caller sees the status). Nothing here uses ``Response.next``.
    """

    def resolve_redirects(self, *args, **kwargs):
        return iter(())


class _OriginCookies(DefaultCookiePolicy):
    """Cookies go back only to the port that set them, and one set over https only over https.

    RFC 6265 sends a host's cookies to every port of it, and a cookie set over https without
    ``Secure`` to plain http too: a redirect to another service on the same host (or to http)
    would carry a session cookie that ``fetch`` holds back when it is written as a ``Cookie``
    header, and with it a flow's token when the login also set it as a cookie. Both are marked
    on the cookie as it is stored (as if it had said ``Port`` and ``Secure``), so the standard
    checks refuse it elsewhere, in the copy of the jar requests makes for every request too.
    """

    def set_ok(self, cookie, request) -> bool:
        if not super().set_ok(cookie, request):
            return False
        cookie.port, cookie.port_specified = request_port(request), True
        cookie.secure = cookie.secure or request.type == "https"
        return True


def user_agent(location: str) -> str:
    """``sitewatch/<version> (location <location>)``: a site's operator can tell the monitor's
    requests apart from the rest, and each location's from the others' (to allow-list them, or to
    see which one a firewall drops)."""
    return f"sitewatch/{__version__} (location {location})"


def open_session(trace: Trace, location: str = LOCAL_LOCATION) -> requests.Session:
    """A requests session for one attempt; close it (``with``) to close every socket.

    ``trust_env`` is off: a monitor must not pick up the worker's proxies or ``.netrc`` credentials.
    A cookie goes back only to the port and scheme that set it (``_OriginCookies``).
    The probe applies ``REQUESTS_CA_BUNDLE`` itself. The session's User-Agent is ``user_agent``'s
    for ``location``; a header the request sets itself (a site's own User-Agent) replaces it.
    """
    session = _Session()
    session.trust_env = False
    session.cookies.set_policy(_OriginCookies())
    session.headers["User-Agent"] = user_agent(location)
    adapter = _TracingAdapter(trace)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
