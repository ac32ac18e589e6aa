"""Fixtures shared by the suites that talk to the real local Kafka (started by scripts/dev.sh)."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import threading
import time
import uuid

import pytest
from _pytest.nodeid import NodeId

# the webhook fixture ``receiver`` (a module may still define a ``receiver`` of its own)
pytest_plugins = ["tests.receivers"]

# --- Groups --------------------------------------------------------------------------------------
# make test runs the suites in four pytest processes (pytest-xdist, ``--dist loadgroup``; see
# scripts/dev.sh): they mostly wait. A group's tests run in one process, one after another in
# file order; a process takes the next group when it is done with one. Every test that starts an
# Airflow is in one of the two stack groups, which come first, in a process each: at most two
# Airflow stacks run at once. A test's group:
# - "stack-1": the faults suite's tests on its private stack (tests/faults/stack.py), which the
#   process starts once and stops after the group's last test that uses it. The tests that load
#   Airflow hardest (hundreds of sites at once) are here, so none shares the cores with another
#   private stack's start or the Celery stack;
# - "stack-2": the suites with an Airflow of their own (OWN_AIRFLOW: the browser's, the Celery
#   stack of the location outage), then the tests that wait minutes for Airflow to act on a few
#   sites (WAITING), on a private stack of their own in another process;
# - "kafka": tests on the shared broker (``new_topic``). Their topics are their own, but not the
#   drain's consumer group (names.DRAIN_GROUP): a drain joining it in one process would make the
#   group rebalance under a drain in another, whose offset commit then fails;
# - any other test file is a group of its own, so its module fixtures start once; the other two
#   processes take them, then the stack processes when their groups are done.
OWN_AIRFLOW = ("tests/browser/test_ui.py", "tests/faults/test_location_outage.py")
WAITING = (
    *OWN_AIRFLOW,
    "tests/faults/test_noise_on_airflow.py",
    "tests/faults/test_recovery_latency.py",
    "tests/faults/test_watcher.py",
)
FIRST = ("stack-1", "stack-2", "kafka")


def group(item: pytest.Item) -> str:
    """The group ``item`` runs in (see above)."""
    path = item.nodeid.split("::")[0]
    if path in WAITING:
        return "stack-2"
    if "private_stack" in item.fixturenames:
        return "stack-1"
    if "new_topic" in item.fixturenames:
        return "kafka"
    return path.rsplit("/", 1)[-1].removesuffix(".py")


def _order(item: pytest.Item) -> tuple[int, bool]:
    """The long groups first; in a stack group, an Airflow of its own before the private stack."""
    name = group(item)
    first = FIRST.index(name) if name in FIRST else len(FIRST)
    return first, item.nodeid.split("::")[0] not in OWN_AIRFLOW


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):
        return  # one process: nothing to group
    for item in items:
        # --dist loadgroup schedules by a "@group" suffix of each test's id, which pytest-xdist
        # 3.8 writes to item._nodeid, an attribute pytest 9 no longer reads: set it on the id.
        item._id = NodeId.parse(f"{item.nodeid}@{group(item)}")
    items.sort(key=_order)


# Airflow's timeouts that run in a test's process (a DAG file's import in a DagBag or dag.test(),
# each task's execution_timeout in dag.test()) set SIGALRM's timer and clear it at their end, and
# pytest-timeout's alarm for the test is gone with it: a test that then hung would wait for ever.
# (Its thread method is no way out: pytest-xdist runs the test that ended a worker again in the
# next one.) The test's alarm comes back each time a timer of another handler is cleared.
@pytest.fixture(autouse=True)
def _test_timeout_outlives_airflows(monkeypatch):
    handler, left = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)[0]
    if not left:
        return  # no alarm: pytest-timeout is off, or times by a thread
    deadline, set_timer = time.monotonic() + left, signal.setitimer

    def setitimer(which, seconds, interval=0.0):
        if which != signal.ITIMER_REAL or seconds or signal.getsignal(signal.SIGALRM) is handler:
            return set_timer(which, seconds, interval)  # not the end of another timeout
        signal.signal(signal.SIGALRM, handler)
        return set_timer(which, max(deadline - time.monotonic(), 0.01))

    monkeypatch.setattr(signal, "setitimer", setitimer)


@pytest.fixture
def new_topic():
    """Factory: create a fresh topic (3 partitions) on the ``sitewatch_kafka`` connection.

    Each test gets topics of its own, so tests never read each other's messages. Topics are
    deleted afterwards.
    """
    if "AIRFLOW_CONN_SITEWATCH_KAFKA" not in os.environ:
        pytest.fail("AIRFLOW_CONN_SITEWATCH_KAFKA is not set: run the tests with `make test`")
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook
    from confluent_kafka.admin import NewTopic

    admin = KafkaBaseHook(kafka_config_id="sitewatch_kafka").get_conn
    created = []

    def make(partitions: int = 3) -> str:
        name = f"test.{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
        created.append(name)
        # created is not yet known: the broker's metadata may lag the controller's a moment
        deadline = time.monotonic() + 30
        while (topic := admin.list_topics(name, timeout=10).topics.get(name)) is None or (
            topic.error is not None or len(topic.partitions) < partitions
        ):
            assert time.monotonic() < deadline, f"topic {name} created but not in metadata"
            time.sleep(0.1)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.result(timeout=30)


class _Handler(http.server.BaseHTTPRequestHandler):  # of LocalSite
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.seen_headers.append(dict(self.headers))
        agent = self.headers.get("User-Agent", "")
        by_agent = [r for part, r in self.server.reply_by_agent.items() if part in agent]
        status, body = by_agent[0] if by_agent else self.server.reply
        path = self.path.split("?")[0]
        status, body = self.server.reply_by_path.get(path, (status, body))
        time.sleep(self.server.delay_by_path.get(path, 0.0))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class LocalSite(http.server.ThreadingHTTPServer):
    """A local HTTP site in a thread: ``reply = (status, body)``; ``url``; ``seen_headers`` (one
    dict per request). ``reply_by_agent[text] = (status, body)`` answers so a request whose
    User-Agent contains ``text``: a location, since the probe names its location there
    (``sitewatch.probe.transport.user_agent``). ``reply_by_path["/down"] = (status, body)``
    answers so a request for that path, and ``delay_by_path["/slow"] = seconds`` answers it
    that much later: several sites on one server. Use it as a context manager."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = (200, "<html>ok</html>")
        self.reply_by_agent: dict[str, tuple[int, str]] = {}
        self.reply_by_path: dict[str, tuple[int, str]] = {}
        self.delay_by_path: dict[str, float] = {}
        self.seen_headers: list[dict] = []
        self.url = f"http://127.0.0.1:{self.server_port}/"

    def __enter__(self) -> LocalSite:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def web():
    """A ``LocalSite`` for one test."""
    with LocalSite() as server:
        yield server


def read_topic(topic: str, count: int, timeout: float = 30.0) -> list:
    """Read ``count`` messages from the start of ``topic`` (fresh group); fail if fewer arrive."""
    from sitewatch.airflow.hooks import GroupConsumerHook

    consumer = GroupConsumerHook([topic], group_id=f"reader-{uuid.uuid4().hex}").get_consumer()
    messages, deadline = [], time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                messages.append(msg)
    finally:
        consumer.close()
    assert len(messages) == count, f"expected {count} messages on {topic}, got {len(messages)}"
    return messages


# Private stacks take ports below the kernel's ephemeral range (32768 and up on Linux), so that
# no outgoing connection of the machine (Kafka and PostgreSQL clients make many) can take one
# between this check and the server's bind; each pytest process starts at its own offset. The
# offsets of processes started together (make test's, whose pids follow each other) lie STRIDE
# ports apart: a process hands out a few dozen, so none takes another's before that one binds.
_PORTS = range(20000, 32000)
STRIDE = 397  # prime to len(_PORTS): pids up to 30 apart start at least 90 ports apart
_handed_out: set[int] = set()


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports on 127.0.0.1 that nothing uses now (a bind succeeds), below the
    ephemeral range, and never handed out before by this process (for private stacks)."""
    ports: list[int] = []
    start = os.getpid() * STRIDE % len(_PORTS)
    for i in range(len(_PORTS)):
        port = _PORTS[(start + i) % len(_PORTS)]
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"fewer than {count} free ports in {_PORTS.start}-{_PORTS.stop - 1}")
