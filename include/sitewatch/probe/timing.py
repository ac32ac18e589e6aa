"""One deadline per attempt, the trace of what the transport saw, and the watchdog that enforces it.

The watchdog (``offload.after``: one timer thread for every attempt) shuts down, at the deadline,
every socket the attempt opened: a read blocked on a server that drips one byte a second returns
EOF at once, and the trace's ``aborted`` flag tells the caller that EOF was ours, not the
server's.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from time import perf_counter

from sitewatch.probe import offload
from sitewatch.probe.chain import Handshake


class Deadline:
    """One monotonic deadline for a whole attempt, ``seconds`` from now."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = perf_counter()
        self.at = self.start + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(self.at - perf_counter(), 0.0)

    def expired(self) -> bool:
        return perf_counter() >= self.at

    def ms_since_start(self, moment: float | None) -> float | None:
        """Milliseconds from the attempt's start to ``moment`` (a perf_counter value)."""
        return None if moment is None else round((moment - self.start) * 1000, 3)


class DNSTimeout(TimeoutError):
    """The resolver did not answer before the deadline."""


class Trace:
    """What the transport saw during one attempt, and the handle the watchdog pulls.

    ``stage`` names what the attempt was doing, for timeout messages. ``headers_at`` is the
    perf_counter time the last response's headers were parsed. ``tls`` is what the first TLS
    connection showed (a ``sitewatch.probe.chain.Handshake``: its chain, also when its handshake
    failed, and its version); ``tls_min_version`` the oldest TLS version every TLS connection of
    the attempt must agree on (the site's ``tls_min_version``, like ``1.3``; None: any).
    """

    def __init__(self, deadline: Deadline, tls_min_version: str | None = None):
        self.deadline = deadline
        self.tls_min_version = tls_min_version
        self.stage = "sending the request"
        self.connections = 0
        self.dns_ms: float | None = None
        self.connect_ms: float | None = None
        self.tls_ms: float | None = None
        self.phases: dict[str, float] = {}  # dns_ms, connect_ms, tls_ms (transport's docstring)
        self.tls: Handshake | None = None
        self.headers_at: float | None = None
        self.aborted = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def track(self, sock: socket.socket) -> None:
        """Register a connected socket so the watchdog can cut it."""
        with self._lock:
            self._sockets.append(sock)
            if self.aborted:  # connected just as the watchdog fired
                _shutdown(sock)

    def abort(self) -> None:
        """Shut down every tracked socket; blocked reads return EOF at once."""
        with self._lock:
            self.aborted = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The base-class call works on the descriptor: SSLSocket.shutdown would also drop its SSL
    # object under the feet of the thread reading from it.
    with suppress(OSError):  # already closed: nothing left to cut
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextmanager
def watchdog(trace: Trace) -> Iterator[None]:
    """Abort ``trace`` when its deadline passes, unless the block ended first."""
    cancel = offload.after(trace.deadline.remaining(), trace.abort)
    try:
        yield
    finally:
        cancel()
