"""Watch the watcher: whether the judge can run at all, decided one look at a time.

Every verdict is reached in the drain (``sitewatch.judge.session``) or in Airflow's callbacks, on
the results database. When the drain stalls, Kafka cannot be read or that database does not answer,
no verdict is reached and no site's alert can go out, so nobody would hear of it. An independent
path (the ``sitewatch_watch`` DAG: its own task every ``EVERY``, its state in an Airflow Variable)
takes a ``Look`` (``look``) and hands it, with the ``WatchState`` the looks before it left, to
``decide``, which says when to send one PIPELINE PROBLEM and one PIPELINE PROBLEM OVER about the
pipeline as a whole (``Alert.concern`` ``pipeline``).

A problem is reported once it is sure, never on one bad look:

- the drain is stalled: on some partition messages wait while the drain group's committed offset
  there has not moved for ``STALL`` (``WatchSettings.stall``);
- Kafka (the drain group's lag cannot be read) or the results database (no answer to
  ``SELECT 1`` on alerting's connection) failed at two looks in a row.

The all-clear follows two healthy looks in a row. A problem that comes back within ``REOPEN`` of
the last all-clear must stay healthy for ``SETTLE`` before its own, so a pipeline that keeps
failing and recovering sends a few messages an hour, not a pair per flap. A look more than
``STALE`` after the one before starts the counting again (the watcher itself did not run, so its
old looks say nothing about the time between), but an open problem stays open: its all-clear
still comes, once. Nothing here imports Airflow; what reads Kafka and opens the database
connection is handed in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sitewatch.alerting.rules import Alert, Kind
from sitewatch.config.schedule import format_duration
from sitewatch.errors import SettingError
from sitewatch.pipeline.lag import LagReader

STALL = timedelta(minutes=3)
"""A drain whose committed offset stays put this long while messages wait there is stalled
(the default of ``SITEWATCH_WATCH_STALL_SECONDS``)."""
EVERY = timedelta(minutes=1)
"""How often the watcher looks (the default of ``SITEWATCH_WATCH_EVERY_SECONDS``)."""
REOPEN = timedelta(hours=1)
SETTLE = timedelta(minutes=15)
"""A problem back within REOPEN of the last all-clear is over only after SETTLE of health."""
STALE = timedelta(minutes=5)
"""A look this long after the previous one does not continue its row of looks."""
JITTER = timedelta(seconds=10)
"""Looks are EVERY apart as the scheduler starts them, give or take a few seconds: a span short
of the stall threshold or SETTLE by less than this (at most a sixth of it) counts as reaching it,
else a look that starts a second early would put the message off by a whole EVERY."""
LOOK_SECONDS = 15.0
"""How long a look may wait for Kafka and for the database (both at once)."""
SUBJECT = "sitewatch pipeline"
"""What the messages are about, as they name it (``Alert.site``)."""
CONCERN = "pipeline"

STALL_VAR = "SITEWATCH_WATCH_STALL_SECONDS"
EVERY_VAR = "SITEWATCH_WATCH_EVERY_SECONDS"
# Below 30 s a drain that is only slow would pass for stalled: a drain that waited in the triggerer
# resumes in a new task process, which on a busy machine takes tens of seconds to start.
MIN_STALL, MAX_STALL = timedelta(seconds=30), timedelta(hours=1)
# Every look starts a task process that imports Airflow (a few CPU-seconds), so looks much more
# often would mostly be start-up; looks further apart than a minute would let STALE (5 minutes)
# come within a few looks and let Kafka or database trouble go unsaid for longer.
MIN_EVERY, MAX_EVERY = timedelta(seconds=10), timedelta(minutes=1)


@dataclass(frozen=True)
class WatchSettings:
    """The watcher's tuning values, read from environment variables (README, "Settings").

    stall: how long the drain's committed offset may stay put while messages wait before the
    drain counts as stalled (``SITEWATCH_WATCH_STALL_SECONDS``, whole seconds, 30 to 3600,
    default 180); read by the worker that runs the watch task, at every look. every: how often
    the watcher looks, its DAG's schedule (``SITEWATCH_WATCH_EVERY_SECONDS``, whole seconds, 10
    to 60, default 60); read where the DAG is parsed. Shorter values make the messages come
    sooner, and take less to set them off: the message for a stall comes at the first look
    ``stall`` after a look saw messages wait, Kafka or database trouble is said at its second
    look, so ``every`` to twice that after it began.
    """

    stall: timedelta = STALL
    every: timedelta = EVERY

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WatchSettings:
        """Read the settings; an unset or empty variable takes its default.

        Raises SettingError naming the first variable whose value is not whole seconds in its
        range (the message gives the range and the default).
        """
        return cls(
            stall=_seconds(environ, STALL_VAR, STALL, MIN_STALL, MAX_STALL),
            every=_seconds(environ, EVERY_VAR, EVERY, MIN_EVERY, MAX_EVERY),
        )


def _seconds(environ, name: str, default: timedelta, low: timedelta, high: timedelta):
    text = environ.get(name, "").strip()
    if not text:
        return default
    # isascii: str.isdigit() and int() also take other scripts' digits ('٣' is 3); len: int()
    # refuses thousands of digits with its own error
    digits = text.isascii() and text.isdigit() and len(text) < 10
    if not digits or not low <= timedelta(seconds=int(text)) <= high:
        raise SettingError(
            f"{name}={text!r}: expected whole seconds from {low.total_seconds():g} to"
            f" {high.total_seconds():g} (default {default.total_seconds():g})"
        )
    return timedelta(seconds=int(text))


@dataclass(frozen=True)
class Look:
    """What one look found. at: when it was taken (UTC). lag, committed: per partition of the
    observations topic, the messages the drain has not stored and the drain group's committed
    offset (-1: none), as ``sitewatch.pipeline.lag.KafkaLag`` has them. kafka_error: why they
    could not be read (None: they were). database_error: why the results database did not
    answer ``SELECT 1`` (None: it did)."""

    at: datetime
    lag: Mapping[int, int] = field(default_factory=dict)
    committed: Mapping[int, int] = field(default_factory=dict)
    kafka_error: str | None = None
    database_error: str | None = None


@dataclass(frozen=True)
class WatchState:
    """What the looks so far left behind; ``to_json``/``from_json`` keep it between looks.

    looked_at: the last look. waiting: ``{partition: (committed offset, since)}`` for each
    partition where messages waited at the last look that read Kafka, since the first look that
    saw them wait at that same offset. failing_since, healthy_since: the first look of the
    current row of failing (Kafka or the database) or healthy looks (None: the last look was not
    one). problem_since: when the open problem began (None: none is open); error, detail: what
    it is. announced: its PIPELINE PROBLEM was sent (False: none of the targets accepted it, so
    the next look that is sure of it sends it again). settle: it came back within REOPEN of the
    last all-clear. over_at: when the last PIPELINE PROBLEM OVER was sent.
    """

    looked_at: datetime | None = None
    waiting: Mapping[int, tuple[int, datetime]] = field(default_factory=dict)
    failing_since: datetime | None = None
    healthy_since: datetime | None = None
    problem_since: datetime | None = None
    error: str | None = None
    detail: str | None = None
    announced: bool = False
    settle: bool = False
    over_at: datetime | None = None

    def to_json(self) -> str:
        document = {name: _dump(getattr(self, name)) for name in _FIELDS}
        document["waiting"] = {str(p): [o, _dump(s)] for p, (o, s) in self.waiting.items()}
        return json.dumps(document, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> WatchState:
        """The state ``to_json`` wrote; a fresh one for None or "". Raises ValueError for text
        that is not such a state."""
        if not text:
            return cls()
        try:
            document = json.loads(text)
            waiting = {int(p): (int(o), _load(s)) for p, (o, s) in document["waiting"].items()}
            values = {name: document[name] for name in _FIELDS}
            for name in _TIMES:
                values[name] = _load(values[name])
            return cls(waiting=waiting, **values)
        except (TypeError, KeyError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a watch state: {exc}") from exc


_TIMES = ("looked_at", "failing_since", "healthy_since", "problem_since", "over_at")
_FIELDS = (*_TIMES, "error", "detail", "announced", "settle")


def decide(
    state: WatchState, look: Look, stall: timedelta = STALL
) -> tuple[WatchState, Alert | None]:
    """The state after ``look`` and the message it calls for (None: stay silent); ``stall`` is
    how long messages may wait at an unmoved committed offset (``WatchSettings.stall``).

    PIPELINE PROBLEM when a problem is sure and none is open, or one is open that no target
    accepted yet (``undelivered``); PIPELINE PROBLEM OVER when an announced problem has cleared
    (one that was never announced closes silently). A look no later than the last one changes
    nothing.
    """
    if state.looked_at is not None and look.at <= state.looked_at:
        return state, None
    if state.looked_at is None or look.at - state.looked_at > STALE:
        state = dataclasses.replace(state, waiting={}, failing_since=None, healthy_since=None)
    if look.kafka_error is None:
        waiting = _waiting(state.waiting, look)
        stalled = {p: w for p, w in waiting.items() if _reached(look.at - w[1], stall)}
    else:  # offsets unseen: what waited is kept, but whether it moved is not known
        waiting, stalled = state.waiting, {}
    failing = look.kafka_error is not None or look.database_error is not None
    healthy = not failing and not stalled
    new = dataclasses.replace(
        state,
        looked_at=look.at,
        waiting=waiting,
        failing_since=(state.failing_since or look.at) if failing else None,
        healthy_since=(state.healthy_since or look.at) if healthy else None,
    )
    sure = bool(stalled) or (failing and new.failing_since < look.at)
    if sure:
        since, error, detail = _cause(new, look, stalled)
        if new.problem_since is None:
            settle = state.over_at is not None and look.at - state.over_at < REOPEN
            new = dataclasses.replace(new, problem_since=since, announced=False, settle=settle)
        new = dataclasses.replace(new, error=error, detail=detail)
        if new.announced:
            return new, None
        new = dataclasses.replace(new, announced=True)  # recorded before it is sent
        return new, _alert(new, Kind.PIPELINE, look.at, detail)
    if new.problem_since is None or not _cleared(new, look.at):
        return new, None
    closed = dataclasses.replace(
        new, problem_since=None, error=None, detail=None, announced=False, settle=False
    )
    if not new.announced:
        return closed, None
    over = "the drain stores again, and Kafka and the results database answer"
    alert = _alert(new, Kind.PIPELINE_OVER, look.at, f"{over}; it was: {new.error}")
    return dataclasses.replace(closed, over_at=look.at), alert


def undelivered(state: WatchState) -> WatchState:
    """``state`` after its PIPELINE PROBLEM reached no target: the next sure look sends it
    again. (A PIPELINE PROBLEM OVER that reached no target is not sent again.)"""
    return dataclasses.replace(state, announced=False)


def _waiting(before: Mapping[int, tuple[int, datetime]], look: Look):
    """Each partition with messages waiting now, with its committed offset and since when
    messages have waited there at that offset."""
    waiting = {}
    for partition, lag in look.lag.items():
        if lag <= 0:
            continue
        offset = look.committed.get(partition, -1)
        previous = before.get(partition)
        moved = previous is None or previous[0] != offset
        waiting[partition] = (offset, look.at if moved else previous[1])
    return waiting


def _cause(state: WatchState, look: Look, stalled) -> tuple[datetime, str, str]:
    """(since when, error, detail) of the problem ``look`` is sure of: Kafka first (without
    it nothing else can be seen), then the database, then the drain."""
    if look.kafka_error is not None and state.failing_since < look.at:
        return state.failing_since, "Kafka", look.kafka_error
    if look.database_error is not None and state.failing_since < look.at:
        return state.failing_since, "results database", look.database_error
    since = min(s for _, s in stalled.values())
    count = sum(look.lag.get(p, 0) for p in stalled)
    partitions = ", ".join(str(p) for p in sorted(stalled))
    still = format_duration(timedelta(seconds=int((look.at - since).total_seconds())))
    detail = (
        f"the drain's committed offsets have not moved for {still} while {count} messages wait"
        f" (partitions {partitions})"
    )
    return since, "drain stalled", detail


def _cleared(state: WatchState, at: datetime) -> bool:
    """Healthy at two looks in a row, and for SETTLE when the problem came back soon."""
    if state.healthy_since is None or not state.healthy_since < at:
        return False
    return not state.settle or _reached(at - state.healthy_since, SETTLE)


def _reached(span: timedelta, threshold: timedelta) -> bool:
    # a sixth: a short threshold (30 s, looks 10 s apart) is not cut by a third
    return span >= threshold - min(JITTER, threshold / 6)


def _alert(state: WatchState, kind: Kind, at: datetime, detail: str | None) -> Alert:
    return Alert(
        SUBJECT,
        "",
        kind,
        at,
        since=state.problem_since,
        error=state.error,
        detail=detail,
        concern=CONCERN,
    )


def pipeline_targets(sites: Iterable) -> list:
    """Where the pipeline's messages go: the ``notify`` targets of every enabled site (``Site``),
    each once, in file order. ``degraded`` only picks DEGRADED messages, so it is left out of
    what makes two targets the same."""
    targets = (
        dataclasses.replace(target, degraded=False)
        for site in sites
        if site.enabled
        for target in site.notify
    )
    return list(dict.fromkeys(targets))


def look(
    lag: LagReader,
    connect: Callable[[], object],
    timeout: float = LOOK_SECONDS,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Look:
    """Look at the pipeline now: the drain group's lag and committed offsets through ``lag``,
    and ``SELECT 1`` on a connection from ``connect`` (closed after), both within ``timeout``
    seconds. Never raises for Kafka or database trouble: it is what the look found.

    The database is asked in a daemon thread while Kafka is read, so a server that accepts the
    connection and never answers costs ``timeout``, not the driver's minutes; a thread still
    waiting then is left behind (it holds nothing the caller needs, and ends with the process).
    """
    at = now()
    deadline = time.monotonic() + timeout
    ping = _Ping(connect)
    thread = threading.Thread(target=ping.run, name="sitewatch-watch-ping", daemon=True)
    thread.start()
    read = lag.read(timeout)
    thread.join(max(0.0, deadline - time.monotonic()))
    database_error = ping.error
    if thread.is_alive():
        database_error = f"no answer to SELECT 1 within {timeout:g}s"
    return Look(at, read.partitions, read.committed, read.error, database_error)


class _Ping:
    """``SELECT 1`` on a new connection; ``error`` says why it failed (None: it answered)."""

    def __init__(self, connect: Callable[[], object]) -> None:
        self._connect = connect
        self.error: str | None = None

    def run(self) -> None:
        try:
            conn = self._connect()
            try:
                conn.execute("SELECT 1").fetchone()
            finally:
                conn.close()
        except Exception as exc:  # whatever it is, the database did not answer
            self.error = " ".join(str(exc).split())[:500] or type(exc).__name__


def _dump(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _load(value) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {value!r}")
    return moment
