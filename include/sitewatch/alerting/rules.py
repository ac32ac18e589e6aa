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


@dataclass(frozen=True)
class AlertState:
    """What is stored per site (table ``site_alert_state``).

    state: "up", "down", or None before the first verdict. since: when ``state`` began.
    error, detail: the down verdict's error kind and detail (None when up).
    last_notified_at: when the last DOWN / STILL DOWN / RECOVERED went out for ``state``; None while
    down means the DOWN message was not delivered yet. pipeline_since: when the open pipeline
    problem began (None: none open). last_run_id, last_run_after: the last run judged.
    """

    state: str | None = None
    since: datetime | None = None
    error: str | None = None
    detail: str | None = None
    last_notified_at: datetime | None = None
    pipeline_since: datetime | None = None
    last_run_id: str | None = None
    last_run_after: datetime | None = None


@dataclass(frozen=True)
class Event:
    """One finished run. at: when it was judged (UTC). run_id, run_after: the Airflow run, when
    known. error, detail: why it was down or failed. locations: for a site checked from several
    places, what each saw (location -> up, down or missing; ``sitewatch.alerting.quorum``)."""

    verdict: Verdict
    at: datetime
    run_id: str | None = None
    run_after: datetime | None = None
    error: str | None = None
    detail: str | None = None
    locations: Mapping[str, str] | None = None


def decide(
    previous: AlertState, event: Event, remind_every: timedelta | None = None
) -> tuple[AlertState, Kind | None]:
    """Return the state after ``event`` and the message to send (None: stay silent)."""
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
    if event.verdict is Verdict.UP:
        if previous.state == "up":
            return judged, None
        new = dataclasses.replace(
            judged, state="up", since=event.at, error=None, detail=None, last_notified_at=None
        )
        if previous.state is None:  # a new site that is up is not news
            return new, None
        return dataclasses.replace(new, last_notified_at=event.at), Kind.RECOVERED
    if previous.state != "down":
        down = dataclasses.replace(
            judged, state="down", since=event.at, error=event.error, detail=event.detail
        )
        return dataclasses.replace(down, last_notified_at=event.at), Kind.DOWN
    still = dataclasses.replace(judged, error=event.error, detail=event.detail)
    if previous.last_notified_at is None:  # the DOWN message never got out: try again
        return dataclasses.replace(still, last_notified_at=event.at), Kind.DOWN
    if remind_every is not None and event.at - previous.last_notified_at >= remind_every:
        return dataclasses.replace(still, last_notified_at=event.at), Kind.STILL_DOWN
    return still, None


@dataclass(frozen=True)
class Alert:
    """One message to send: what happened to which site, and where to look.

    since: when the state the message is about began (down since, pipeline failing since; for
    RECOVERED, when the site went down). at: when this was judged. run_url: the Airflow log of the
    run, when known. locations: what each location saw, for a site checked from several.
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

    @property
    def title(self) -> str:
        """``[sitewatch] DOWN: shop (status: status 500 not in 200-399)``"""
        cause = ""
        if self.error and self.kind != Kind.RECOVERED:
            cause = f" ({self.error}: {self.detail})" if self.detail else f" ({self.error})"
        return _one_line(f"[sitewatch] {self.kind.value}: {self.site}{cause}", 300)

    def lines(self) -> list[tuple[str, str]]:
        """The message body as (label, value) rows; absent values are left out."""
        rows = [("site", self.site), ("state", self.kind.value), ("url", self.url)]
        if self.kind == Kind.RECOVERED:
            rows += [("down since", _time(self.since)), ("recovered at", _time(self.at))]
            if self.since is not None:
                rows.append(("downtime", _span(self.at - self.since)))
        else:
            rows.append(("since", _time(self.since or self.at)))
            rows += [("error", self.error), ("detail", self.detail)]
        if self.locations:
            seen = ", ".join(f"{loc} {outcome}" for loc, outcome in self.locations.items())
            rows.append(("locations", seen))
        if self.kind == Kind.PIPELINE:
            rows.append(("note", "sitewatch itself failed; this says nothing about the site"))
        rows.append(("run", self.run_url))
        return [(label, _one_line(value, 2000)) for label, value in rows if value]

    @property
    def text(self) -> str:
        return "\n".join([self.title, *(f"{label}: {value}" for label, value in self.lines())])

    def document(self) -> dict:
        """The ``json`` webhook payload: a flat, versioned object."""
        return {
            "v": 1,
            "site": self.site,
            "state": self.kind.value,
            "url": self.url,
            "since": _time(self.since),
            "at": _time(self.at),
            "error": self.error,
            "detail": self.detail,
            "run_url": self.run_url,
            "locations": dict(self.locations) if self.locations else None,
            "text": self.text,
        }

    def slack(self) -> dict:
        """The ``slack`` webhook payload (incoming-webhook format): ``text`` plus one block."""
        body = "\n".join(f"*{label}:* {_mrkdwn(value)}" for label, value in self.lines())
        return {
            "text": self.title,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
            ],
        }


def alert_for(
    site, kind: Kind, previous: AlertState, new: AlertState, event: Event, run_url=None
) -> Alert:
    """The message ``decide`` asked for: ``site`` is a ``Site`` (name and url are used)."""
    if kind == Kind.RECOVERED:
        since, error, detail = previous.since, previous.error, previous.detail
    elif kind == Kind.PIPELINE:
        since, error, detail = new.pipeline_since, event.error, event.detail
    else:
        since, error, detail = new.since, new.error, new.detail
    return Alert(
        site.name, site.url, kind, event.at, since, error, detail, run_url, event.locations
    )


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
