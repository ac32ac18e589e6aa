"""A small authoritative DNS server for the DNS check's tests: dnspython answers queries from a
dict of records on a UDP socket of 127.0.0.1, in a thread. A name in ``servfail`` gets SERVFAIL,
one in ``silent`` no reply at all, any other unknown name NXDOMAIN. A name in ``truncated`` is
answered over UDP with the TC flag and no records, and in full over TCP on the same port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset


def _one_port(tries: int = 20) -> tuple[socket.socket, socket.socket]:
    """A UDP socket and a TCP one bound to one port of 127.0.0.1. The kernel picks a free TCP
    port (the local ends of the suite's many connections are taken TCP ports); UDP ports are
    rarely taken, and another is picked when this one is."""
    for _ in range(tries):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", tcp.getsockname()[1]))
        except OSError:
            tcp.close()
            udp.close()
            continue
        return udp, tcp
    raise RuntimeError(f"no port of 127.0.0.1 free for both UDP and TCP in {tries} tries")


@contextmanager
def dns_server(
    records: dict[tuple[str, str], list[str]],
    servfail: frozenset[str] = frozenset(),
    silent: frozenset[str] = frozenset(),
    truncated: frozenset[str] = frozenset(),
) -> Iterator[int]:
    """Serve ``records`` ({(name, type): [rdata text]}); yields the UDP port."""
    sock, listener = _one_port()
    sock.settimeout(0.05)
    listener.listen()
    listener.settimeout(0.05)
    stop = threading.Event()
    names = {name for name, _ in records}

    def answer(wire: bytes, over_tcp: bool = False) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().rstrip(".")
        kind = dns.rdatatype.to_text(question.rdtype)
        if name in silent:
            return None
        response = dns.message.make_response(query)
        if name in truncated and not over_tcp:
            response.flags |= dns.flags.TC
        elif name in servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, kind) in records:
            rrset = dns.rrset.from_text_list(question.name, 60, "IN", kind, records[name, kind])
            response.answer.append(rrset)
        return response.to_wire()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            reply = answer(wire)
            if reply is not None:
                sock.sendto(reply, peer)

    def serve_tcp() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                length = int.from_bytes(conn.recv(2), "big")
                wire = b""
                while len(wire) < length:
                    wire += conn.recv(length - len(wire))
                reply = answer(wire, over_tcp=True)
                if reply is not None:
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)

    threads = [
        threading.Thread(target=target, name="test-dns", daemon=True)
        for target in (serve, serve_tcp)
    ]
    for thread in threads:
        thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sock.close()
        listener.close()
