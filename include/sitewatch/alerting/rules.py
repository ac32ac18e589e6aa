"""When to alert: the per-site alert state machine, as a pure function, and the alert message.

Each finished run of a site's DAG is one ``Event``: the site was up, was down (``SiteDown`` on the
final attempt), or the run failed for a reason that is not the site (``PIPELINE``: Kafka
unreachable, task never started, worker lost). ``decide`` turns the stored ``AlertState`` and the
event into the next state and at most one ``Kind`` of message:

=================  ===================  =======================================================
stored state       event                message
=================  ===================  =======================================================
none (new site)    UP / DOWN            none / DOWN
up                 UP / DOWN            none / DOWN
down               DOWN                 none, or STILL DOWN once ``remind_every`` has passed
down               UP                   RECOVERED
any                PIPELINE             PIPELINE PROBLEM, unless one is already open
=================  ===================  =======================================================

A pipeline problem never changes whether the site is up or down; the next UP or DOWN verdict closes
it silently. An event of a run already judged (the DAG-level callback after the task's own) or of
a run older than the last one judged (a late callback) changes nothing. Nothing here touches
Airflow, the database or the network; ``sitewatch.alerting.store`` applies ``decide`` atomically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sitewatch.config.objectives import Flapping


class Verdict(StrEnum):
    UP = "up"
    DOWN = "down"
    PIPELINE = "pipeline"


class Kind(StrEnum):
    """The message kinds; the value is what the message calls it."""

    DOWN = "DOWN"
    STILL_DOWN = "STILL DOWN"
    RECOVERED = "RECOVERED"
    PIPELINE = "PIPELINE PROBLEM"
    DEGRADED = "DEGRADED"  # up, but slower than degraded_ms; sent only to targets that opt in
    FLAPPING = "FLAPPING"  # too many state changes; silence until stable
    SLO_BURN = "SLO BURN"  # the error budget burns too fast (severity page or warn)
    SLO_BURN_OVER = "SLO BURN OVER"  # it no longer does (sent only after its SLO BURN)
    PIPELINE_OVER = "PIPELINE PROBLEM OVER"  # a location or the pipeline works again
    STATUS_UPDATE = "STATUS UPDATE"  # a status page incident changed; to targets that opt in


@dataclass(frozen=True)
class AlertState:
    """What is stored per site (table ``site_alert_state``).

    state: "up", "down", or None before the first verdict. since: when ``state`` began.
    error, detail: the down verdict's error kind and detail (None when up).
    last_notified_at: when the last DOWN / STILL DOWN / RECOVERED / FLAPPING went out for
    ``state``; None while down means the DOWN message was not delivered yet. pipeline_since: when
    the open pipeline problem began (None: none open). last_run_id, last_run_after: the last run
    judged. held: why the DOWN of the current down state was held (a maintenance window, a parent
    that is down), None when it was not. changes: when the state last changed between up and
    down, within the flapping window. flapping_since: when the site was found flapping (None:
    it is not). degraded: up but slower than ``degraded_ms``, and DEGRADED was decided.
    """

    state: str | None = None
    since: datetime | None = None
    error: str | None = None
    detail: str | None = None
    last_notified_at: datetime | None = None
    pipeline_since: datetime | None = None
    last_run_id: str | None = None
    last_run_after: datetime | None = None
    held: str | None = None
    changes: tuple[datetime, ...] = ()
    flapping_since: datetime | None = None
    degraded: bool = False


@dataclass(frozen=True)
class Event:
    """One finished run. at: when it was judged (UTC). run_id, run_after: the Airflow run, when
    known. error, detail: why it was down or failed. locations: for a site checked from several
    places, what each saw (location -> up, down or missing; ``sitewatch.alerting.quorum``).
    hold: why messages about the site are held now (``sitewatch.alerting.store`` works it out:
    a maintenance window, a parent that is down), None when they are not. degraded: the UP
    verdict's check was slower than the site's ``degraded_ms``. partial: the UP verdict of a run
    that some locations saw down, fewer than the quorum (a partial outage)."""

    verdict: Verdict
    at: datetime
    run_id: str | None = None
    run_after: datetime | None = None
    error: str | None = None
    detail: str | None = None
    locations: Mapping[str, str] | None = None
    hold: str | None = None
    degraded: bool = False
    partial: bool = False


def decide(
    previous: AlertState,
    event: Event,
    remind_every: timedelta | None = None,
    flapping: Flapping | None = None,
) -> tuple[AlertState, Kind | None]:
    """Return the state after ``event`` and the message to send (None: stay silent).

    ``flapping`` (None: never) turns more than ``changes`` state changes within its ``window``
    into one FLAPPING message and silence until the state held for ``stable``; then the current
    state is sent (DOWN, or RECOVERED). While ``event.hold`` is set, DOWN, STILL DOWN, DEGRADED
    and FLAPPING are held: the state still changes, and a down site whose DOWN was held sends it
    at its first down run after the hold, while one that came back up says nothing. RECOVERED is
    not held when its DOWN went out: what was opened gets closed.
    """
    if event.run_id is not None and event.run_id == previous.last_run_id:
        return previous, None
    if event.run_after and previous.last_run_after and event.run_after < previous.last_run_after:
        return previous, None
    judged = dataclasses.replace(previous, last_run_id=event.run_id, last_run_after=event.run_after)
    if event.verdict is Verdict.PIPELINE:
        if previous.pipeline_since is not None:
            return judged, None
        return dataclasses.replace(judged, pipeline_since=event.at), Kind.PIPELINE
    judged = dataclasses.replace(judged, pipeline_since=None)
    new, kind = _transition(previous, judged, event, remind_every)
    if flapping is not None:
        new, kind = _flapping(previous, new, kind, event, flapping)
    if event.hold is not None:
        new, kind = _hold(previous, new, kind, event.hold)
    return new, kind


def _transition(previous, judged, event, remind_every) -> tuple[AlertState, Kind | None]:
    """The up/down/degraded state machine, before flapping and holds."""
    if event.verdict is Verdict.UP:
        if previous.state == "up":
            if event.degraded == previous.degraded:
                return judged, None
            new = dataclasses.replace(judged, degraded=event.degraded)
            return new, Kind.DEGRADED if event.degraded else None
        new = dataclasses.replace(
            judged,
            state="up",
            since=event.at,
            error=None,
            detail=None,
            last_notified_at=None,
            held=None,
            degraded=event.degraded,
        )
        if previous.state is None:  # a new site that is up is not news
            return new, Kind.DEGRADED if event.degraded else None
        if previous.held is not None and previous.last_notified_at is None:
            return new, None  # its DOWN was held and never sent: nothing to close
        return dataclasses.replace(new, last_notified_at=event.at), Kind.RECOVERED
    if previous.state != "down":
        down = dataclasses.replace(
            judged,
            state="down",
            since=event.at,
            error=event.error,
            detail=event.detail,
            held=None,
            degraded=False,
        )
        return dataclasses.replace(down, last_notified_at=event.at), Kind.DOWN
    still = dataclasses.replace(judged, error=event.error, detail=event.detail)
    if previous.last_notified_at is None:  # the DOWN message never got out (or was held)
        return dataclasses.replace(still, last_notified_at=event.at, held=None), Kind.DOWN
    if remind_every is not None and event.at - previous.last_notified_at >= remind_every:
        return dataclasses.replace(still, last_notified_at=event.at), Kind.STILL_DOWN
    return still, None


def _flapping(previous, new, kind, event, rule: Flapping) -> tuple[AlertState, Kind | None]:
    """Count state changes; turn a burst of them into one FLAPPING, and its end into the state."""
    changes = previous.changes
    if previous.state is not None and new.state != previous.state:
        changes = (*(t for t in changes if event.at - t < rule.window), event.at)
    new = dataclasses.replace(new, changes=changes)
    if previous.flapping_since is None:
        if len(changes) <= rule.changes:
            return new, kind
        flapping = dataclasses.replace(new, flapping_since=event.at, held=None)
        return dataclasses.replace(flapping, last_notified_at=event.at), Kind.FLAPPING
    last_change = changes[-1] if changes else previous.flapping_since
    if event.at - last_change < rule.stable:  # still unsettled: silent, nothing to resend later
        return dataclasses.replace(new, last_notified_at=event.at, degraded=False), None
    settled = dataclasses.replace(new, flapping_since=None, changes=(), last_notified_at=event.at)
    return settled, Kind.DOWN if new.state == "down" else Kind.RECOVERED


def _hold(previous, new, kind, reason: str) -> tuple[AlertState, Kind | None]:
    """Keep ``kind`` from being sent while messages about the site are held for ``reason``."""
    if kind is Kind.DOWN:
        return dataclasses.replace(new, last_notified_at=None, held=reason), None
    if kind is Kind.STILL_DOWN:
        return dataclasses.replace(new, last_notified_at=previous.last_notified_at), None
    if kind is Kind.DEGRADED:  # not entered: a site still slow after the hold says so then
        return dataclasses.replace(new, degraded=previous.degraded), None
    if kind is Kind.FLAPPING:  # not entered either; the changes stay counted
        restored = (previous.last_notified_at, previous.held)
        return dataclasses.replace(
            new, flapping_since=None, last_notified_at=restored[0], held=restored[1]
        ), None
    return new, kind


@dataclass(frozen=True)
class StatusNote:
    """What a STATUS UPDATE says: an update of a status page's incident. page: the page's
    title; incident: the incident's title; state: its state from this update on; text: the
    update's Markdown, sent as it was written; author: who wrote it (``sitewatch`` for the
    judge); link: the incident on the public page (None: the page has no ``url``)."""

    page: str
    incident: str
    state: str
    text: str
    author: str
    link: str | None = None


@dataclass(frozen=True)
class Alert:
    """One message to send: what happened to which site, and where to look.

    since: when the state the message is about began (down since, pipeline failing since; for
    RECOVERED, when the site went down). at: when this was judged. run_url: the Airflow log of the
    run, when known. locations: what each location saw, for a site checked from several.
    severity: for SLO BURN, the burn rule's severity (``page`` or ``warn``); None otherwise.
    concern: for a message about no single site, what it is about: ``location/<name>`` (a
    location that stopped reporting) or ``pipeline`` (the judge cannot run); ``site`` then holds
    its readable name (``location west``) and ``url`` is empty. note: for STATUS UPDATE, the
    update (``concern`` is then ``status/<page id>/<incident id>``, ``site`` the page's title).
    """

    site: str
    url: str
    kind: Kind
    at: datetime
    since: datetime | None = None
    error: str | None = None
    detail: str | None = None
    run_url: str | None = None
    locations: Mapping[str, str] | None = None
    severity: str | None = None
    concern: str | None = None
    note: StatusNote | None = None

    @property
    def title(self) -> str:
        """``[sitewatch] DOWN: shop (status: status 500 not in 200-399)``; for a STATUS UPDATE
        ``[sitewatch] STATUS UPDATE: Example status: Shop is down (investigating)``"""
        if self.note is not None:
            note = self.note
            text = f"[sitewatch] {self.kind.value}: {note.page}: {note.incident} ({note.state})"
            return _one_line(text, 300)
        cause = f" ({self.cause})" if self.cause else ""
        return _one_line(f"[sitewatch] {self.kind.value}: {self.site}{cause}", 300)

    @property
    def cause(self) -> str | None:
        """``status: status 500 not in 200-399``: the error and its detail, which hold what the
        site sent (a redirect target, a status line); None when there is none to give."""
        if not self.error or self.kind in (Kind.RECOVERED, Kind.PIPELINE_OVER):
            return None
        return _one_line(f"{self.error}: {self.detail}" if self.detail else self.error, 250)

    def lines(self) -> list[tuple[str, str]]:
        """The message body as (label, value) rows; absent values are left out."""
        if self.note is not None:
            return _note_lines(self.note, self.at)
        subject = "about" if self.concern else "site"
        rows = [(subject, self.site), ("state", self.kind.value), ("url", self.url)]
        if self.kind == Kind.RECOVERED:
            rows += [("down since", _time(self.since)), ("recovered at", _time(self.at))]
            if self.since is not None:
                rows.append(("downtime", _span(self.at - self.since)))
        elif self.kind == Kind.PIPELINE_OVER:
            rows += [("problem since", _time(self.since)), ("over at", _time(self.at))]
            rows.append(("detail", self.detail))
        else:
            rows.append(("since", _time(self.since or self.at)))
            rows += [("error", self.error), ("detail", self.detail)]
        if self.locations:
            seen = ", ".join(f"{loc} {outcome}" for loc, outcome in self.locations.items())
            rows.append(("locations", seen))
        if self.kind == Kind.PIPELINE:
            about = "any site" if self.concern else "the site"
            rows.append(("note", f"sitewatch itself failed; this says nothing about {about}"))
        rows.append(("run", self.run_url))
        return [(label, _one_line(value, 2000)) for label, value in rows if value]

    @property
    def text(self) -> str:
        return "\n".join([self.title, *(f"{label}: {value}" for label, value in self.lines())])

    def document(self) -> dict:
        """The ``json`` webhook payload: a flat, versioned object."""
        return {
            "v": 1,
            "site": None if self.concern else self.site,
            "concern": self.concern,
            "state": self.kind.value,
            "url": self.url,
            "since": _time(self.since),
            "at": _time(self.at),
            "error": self.error,
            "detail": self.detail,
            "run_url": self.run_url,
            "locations": dict(self.locations) if self.locations else None,
            "incident": None if self.note is None else _note_document(self.note),
            "text": self.text,
        }

    def slack(self) -> dict:
        """The ``slack`` webhook payload (incoming-webhook format): ``text`` plus one block.

        Slack reads ``text`` and the section as mrkdwn (``<url|label>`` links, ``<!channel>``);
        Mattermost shows only ``text``, as Markdown that also links ``[label](url)`` and
        ``@channel``. So what a site wrote (the error and its detail) goes into code spans,
        escaped for Slack: neither reads it as a link, a mention or formatting. The header block
        is plain text, which nothing parses.
        """
        rows = [
            (label, _code(value) if label in _SITE_WRITTEN else _mrkdwn(value))
            for label, value in self.lines()
        ]
        body = "\n".join(f"*{label}:* {value}" for label, value in rows)
        cause = f" {_code(self.cause)}" if self.cause else ""
        text = f"[sitewatch] {self.kind.value}: {self.site}{cause}"
        return {
            "text": text if self.note is None else _mrkdwn(self.title),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
            ],
        }


def alert_for(
    site, kind: Kind, previous: AlertState, new: AlertState, event: Event, run_url=None
) -> Alert:
    """The message ``decide`` asked for: ``site`` is a ``Site`` (name and url are used)."""
    if kind == Kind.RECOVERED and previous.state == "up":  # the end of flapping: unstable since
        since, error, detail = previous.flapping_since, None, None
    elif kind == Kind.RECOVERED:
        since, error, detail = previous.since, previous.error, previous.detail
    elif kind == Kind.PIPELINE:
        since, error, detail = new.pipeline_since, event.error, event.detail
    else:
        since, error, detail = new.since, new.error, new.detail
    return Alert(
        site.name, site.url, kind, event.at, since, error, detail, run_url, event.locations
    )


# What a status note's text may take of a message: a status note, not a post-mortem.
NOTE_TEXT_LIMIT = 2000


def _note_lines(note: StatusNote, at: datetime) -> list[tuple[str, str]]:
    rows = [
        ("page", note.page),
        ("incident", note.incident),
        ("state", note.state),
        ("update", note.text),
        ("by", note.author),
        ("at", _time(at)),
        ("link", note.link),
    ]
    return [(label, _one_line(value, NOTE_TEXT_LIMIT)) for label, value in rows if value]


def _note_document(note: StatusNote) -> dict:
    return {
        "page": note.page,
        "title": note.incident,
        "state": note.state,
        "text": _bounded(note.text, NOTE_TEXT_LIMIT),
        "author": note.author,
        "link": note.link,
    }


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def _span(value: timedelta) -> str:
    seconds = max(0, int(value.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return "".join(parts) + (f"{seconds}s" if seconds or not parts else "")


def _one_line(value: str, limit: int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mrkdwn(value: str) -> str:
    # Slack's only escapes; without them a detail containing "<" could become a link.
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# The rows of ``Alert.lines`` whose values hold what a site sent.
_SITE_WRITTEN = frozenset({"error", "detail"})


def _code(value: str) -> str:
    """``value`` as a code span for chat: no backtick inside can close it early."""
    return "`" + _mrkdwn(value.replace("`", "'")) + "`"
