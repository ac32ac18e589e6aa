"""Local TCP servers for the TCP check's tests: ``serve`` runs a handler per connection, in TLS
when given a server context."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from contextlib import contextmanager


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def serve(handle: Callable[[socket.socket], None], context: ssl.SSLContext | None = None):
    """A TCP server on 127.0.0.1 that runs ``handle`` on each connection (wrapped in TLS with
    ``context``); yields its port."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            sock = self.request
            try:
                if context is not None:
                    sock = context.wrap_socket(sock, server_side=True)
                handle(sock)
            except OSError:
                pass  # a client that hung up, or refused our certificate

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def banner(sock: socket.socket) -> None:
    sock.sendall(b"220 mail.example ESMTP ready\r\n")
