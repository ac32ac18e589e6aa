"""Helpers shared by the benchmarks: statistics, machine facts, PostgreSQL plans, a local HTTP
server, sites files.

Benchmarks are measurements, not tests: nothing here asserts on speed.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def median(values) -> float:
    return statistics.median(values)


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def spread(values) -> str:
    """``min-max`` of the runs, the spread reported next to each median."""
    return f"{min(values):,.0f}-{max(values):,.0f}"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict:
    """Cores, memory, OS, Python and the versions that matter, for the results header."""
    with open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    cpu = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("apache-airflow", "confluent-kafka", "psycopg", "requests"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is just not reported
            pass
    try:
        pg = subprocess.run(
            ["psql", "-XtAc", "show server_version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pg = ""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg,
        **versions,
    }


def save(name: str, data: dict) -> Path:
    """Write one benchmark's results to bench/out/<name>.json (read by bench/report.py)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat; diff two samples for a busy %."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def find_pid(*needles: str) -> int | None:
    """The first process whose command line contains every needle (a server we did not start)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            return int(entry)
    return None


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of ``pid`` and its children, including children already reaped.

    For the PostgreSQL postmaster this is every backend and helper, so a before/after difference
    is the server's CPU for the interval, whatever connection did the work.
    """
    if pid is None:
        return 0.0
    fields = _stat(pid)
    total = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                child = _stat(int(entry))
            except OSError:
                continue
            if int(child[1]) == pid:
                total += int(child[11]) + int(child[12])
    return total / _TICK


# --- a local HTTP server with an injected delay ---------------------------------------------------

BODY = b"<html><body><h1>sitewatch bench</h1><p>status: OK</p></body></html>\n" * 8

# --- a JSON API for flows: log in for a token, read an item, delete it ----------------------------

API = "/api"  # the API's prefix on both servers; every other path is the plain page
API_PASSWORD = "bench-password-31"  # the flow sites read it from SITEWATCH_SECRET_BENCH_PASSWORD
API_TOKEN = "bench-token-5d1e08"
API_ITEM = 7
KINDS = {"single": "s", "flow": "f"}  # the first letter of each kind's site names (write_sites)
_REASONS = {200: "OK", 204: "No Content", 401: "Unauthorized", 404: "Not Found"}


def api_answer(method: str, path: str, authorization: str | None, body: bytes) -> tuple[int, bytes]:
    """The status and JSON body the API answers: ``POST /api/login`` with the password in a JSON
    body gives a token; ``GET`` and ``DELETE /api/items/7`` need it as a bearer token."""
    if (method, path) == ("POST", f"{API}/login"):
        if json.loads(body or b"{}").get("password") != API_PASSWORD:
            return 401, b'{"error": "bad password"}'
        return 200, json.dumps({"token": API_TOKEN, "expires_in": 3600}).encode()
    if authorization != f"Bearer {API_TOKEN}":
        return 401, b'{"error": "no token"}'
    if path == f"{API}/items/{API_ITEM}" and method == "GET":
        return 200, json.dumps({"id": API_ITEM, "name": "bench", "tags": ["a", "b"]}).encode()
    if path == f"{API}/items/{API_ITEM}" and method == "DELETE":
        return 204, b""
    return 404, b'{"error": "no such route"}'


def api_response(status: int, body: bytes) -> bytes:
    """``api_answer``'s answer as HTTP/1.1 bytes (a 204 has no Content-Length, as RFC 9110 says)."""
    head = [f"HTTP/1.1 {status} {_REASONS[status]}", "Content-Type: application/json"]
    head += [] if status == 204 else [f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def flow_site(name: str, api_base: str) -> list[str]:
    """The sites-file lines of one flow site: log in (the password from the secret
    ``SITEWATCH_SECRET_BENCH_PASSWORD``), read the item, delete it (always), against the API at
    ``api_base`` (``http://host:port``)."""
    auth = '{Authorization: "Bearer ${login.token}"}'
    return [
        f"  - name: {name}",
        "    steps:",
        "      - name: login",
        "        method: POST",
        f"        url: {api_base}{API}/login",
        '        body: {password: "${SITEWATCH_SECRET_BENCH_PASSWORD}"}',
        "        extract:",
        "          token: {json: $.token}",
        "      - name: read",
        f"        url: {api_base}{API}/items/{API_ITEM}",
        f"        headers: {auth}",
        "        expect:",
        "          - json: $.id",
        f"            equals: {API_ITEM}",
        "      - name: delete",
        "        method: DELETE",
        f"        url: {api_base}{API}/items/{API_ITEM}",
        f"        headers: {auth}",
        "        expect_status: 204",
        "        always: true",
    ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.startswith(API):
            self.do_POST()
            return
        query = parse_qs(urlsplit(self.path).query)
        delay_ms = float(query.get("delay", ["0"])[0])
        if delay_ms:
            time.sleep(delay_ms / 1000)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def do_POST(self):  # noqa: N802 - the API's routes (api_answer), whatever the method
        length = int(self.headers.get("Content-Length") or 0)
        path, auth = urlsplit(self.path).path, self.headers.get("Authorization")
        answer = api_answer(self.command, path, auth, self.rfile.read(length))
        self.wfile.write(api_response(*answer))

    do_DELETE = do_POST

    def log_message(self, *args):
        pass


def serve(port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start the server on 127.0.0.1 in a daemon thread; return it and its base URL.

    ``?delay=<ms>`` sleeps that long before the response headers are sent. Under ``/api`` it
    is the flows' JSON API (``api_answer``).
    """
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def serve_plain(port: int = 0) -> tuple[socket.socket, str]:
    """A minimal HTTP/1.1 responder for the probe benchmark; return its socket and base URL.

    Same contract as ``serve`` (``?delay=<ms>``, the same body), but it answers from a socket
    loop instead of ``http.server``, whose request parsing costs about a millisecond of its own
    per request: that would be counted as probe overhead.
    """
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BODY)
    )

    def respond(_method: str, target: str, _headers: dict, _body: bytes) -> bytes:
        delay_ms = float(parse_qs(urlsplit(target).query).get("delay", ["0"])[0])
        if delay_ms:
            time.sleep(delay_ms / 1000)
        return head + BODY

    return _serve_socket(port, respond)


def serve_api(port: int = 0) -> tuple[socket.socket, str]:
    """The flow benchmark's server: ``api_answer`` from the socket loop of ``serve_plain`` (for
    the same reason); return its socket and base URL (``http://127.0.0.1:PORT``, no slash)."""

    def respond(method: str, target: str, headers: dict, body: bytes) -> bytes:
        answer = api_answer(method, urlsplit(target).path, headers.get("authorization"), body)
        return api_response(*answer)

    listener, base = _serve_socket(port, respond)
    return listener, base.rstrip("/")


def start_server(mode: str) -> tuple[subprocess.Popen, str]:
    """``python bench/common.py <mode> 0`` in a process of its own (``serve-plain``,
    ``serve-api``): the process and the base URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), mode, "0"], stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip()


def _serve_socket(port: int, respond) -> tuple[socket.socket, str]:
    """Answer each request on 127.0.0.1 with ``respond(method, target, headers, body)`` (header
    names lower-case), a thread per connection, keep-alive."""
    listener = socket.create_server(("127.0.0.1", port))

    def answer(conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                request, buffer = buffer.split(b"\r\n\r\n", 1)
                first, *lines = request.decode("latin-1").split("\r\n")
                method, target, _ = first.split(" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                while len(buffer) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                conn.sendall(respond(method, target, headers, body))

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/"


def all_sites_dag_file() -> Path:
    """A DAG file that builds every site of the sites file in one parse, as ``dags/sites.py`` did
    before the sites were spread over shard files (each of those holds an eighth): the unit the
    parse benchmarks measure. Written under ``OUT``."""
    path = OUT / "dags" / "all_sites.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "from sitewatch.airflow.factory import site_dags\n\nglobals().update(site_dags())\n"
    )
    return path


def write_sites(
    path: Path,
    count: int,
    url: str,
    schedule: str = "1m",
    location: str | None = None,
    flows: int = 0,
) -> Path:
    """A valid sites file of ``count`` sites ``s00000``... on ``schedule``, all probing ``url``;
    with ``location``, each site has ``locations: [<location>]``. With ``flows``, that many flow
    sites ``f00000``... beside them (``flow_site``, on the API of ``url``'s server)."""
    lines = [
        "defaults:",
        f"  schedule: '{schedule}'",
        "  timeout: 10s",
        "  retries: 0",
        "  tags: [bench]",
        "sites:",
    ]
    where = [f"    locations: [{location}]"] if location else []
    single, flow = KINDS["single"], KINDS["flow"]
    for i in range(count):
        lines += [f"  - name: {single}{i:05d}", f"    url: {url}?site={i}"]
        lines += ["    regex: 'status: OK'"]
        lines += where
    api_base = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    for i in range(flows):
        lines += flow_site(f"{flow}{i:05d}", api_base) + where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    # python bench/common.py serve PORT: run the HTTP server in the foreground
    if sys.argv[1:2] == ["serve"]:
        srv, base = serve(int(sys.argv[2]))
        print(base, flush=True)
        srv.serve_forever()
    elif sys.argv[1:2] in (["serve-plain"], ["serve-api"]):
        _, base = (serve_plain if sys.argv[1] == "serve-plain" else serve_api)(int(sys.argv[2]))
        print(base, flush=True)
        threading.Event().wait()
