"""Maintenance on the dashboard: the badge of a site in a window now, until when and why, and its
windows in force or to come.

Two sources, as for the alerts: the sites file's windows (``site.maintenance``, each a
``config.maintenance.Window``) and ad-hoc mutes (``storage.mutes.Mute``, from the
``sitewatch_mute`` DAG). Whether one covers now, and which, is decided by
``config.maintenance.maintenance_at``, as for the alerts, so the badge and an alert's hold name
the same end. A site in maintenance shows the ``maintenance`` badge beside the state its checks
give ("maintenance · down"), with the end and the reason on hover and in a small line; its checks
still run, stored marked ``maintenance``, which its page marks (``ATTEMPT_MARK``), and its page
lists every window. Pure functions of the windows, the mutes and ``now``: nothing here reads the
database. Reasons and user names are escaped here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from sitewatch.config.maintenance import (
    SITES_FILE,
    InMaintenance,
    Window,
    maintenance_at,
    muted_by,
)
from sitewatch.config.schedule import format_duration
from sitewatch.dashboard.html import badge, timestamp
from sitewatch.dashboard.status import MAINTENANCE
from sitewatch.storage.mutes import Mute

_SHORT_REASON = 60  # characters of the reason in the listing's line; all of it on hover
ATTEMPT_MARK = (
    ' <span class="tag maintenance" title="scheduled in a maintenance window: not counted in '
    'uptime, its alerts held">maintenance</span>'
)
"""What a site's page adds to an attempt stored in maintenance, in its table."""


def in_maintenance(
    configured: Mapping, names: Iterable[str], mutes: Mapping[str, Sequence[Mute]], now: datetime
) -> dict[str, InMaintenance]:
    """``{name: InMaintenance}`` of the sites of ``names`` in a window now: their sites-file
    windows (``configured``: name -> ``Site``; a site no longer configured has none) and their
    ``mutes`` in force (name -> mutes)."""
    found = {}
    for name in names:
        windows = configured[name].maintenance if name in configured else ()
        now_in = maintenance_at(windows, mutes.get(name, ()), now)
        if now_in is not None:
            found[name] = now_in
    return found


def status_badge(
    maintenance: InMaintenance, state: str, now: datetime, shown: str | None = None
) -> str:
    """The Status of a site in maintenance: the ``maintenance`` badge (the end, the reason and
    the source on hover), then the state its checks give (``shown``, its badge by default:
    "maintenance · down"), and a small line under them ("until 14:00 UTC · database
    upgrade")."""
    m = maintenance
    tip = f"maintenance until {timestamp(m.until)} ({m.source})"
    tip += f" · {m.reason}" if m.reason else ""
    line = f"until {_when(m.until, now)}"
    if m.reason:
        short = m.reason if len(m.reason) <= _SHORT_REASON else m.reason[: _SHORT_REASON - 1] + "…"
        line += f" · {short}"
    # one line for both badges, however narrow the column
    return (
        f'<span style="white-space:nowrap">{badge(MAINTENANCE, tip)} · {shown or badge(state)}'
        f'</span><div class="muted small maint">{escape(line)}</div>'
    )


def windows_table(windows: Sequence[Window], mutes: Sequence[Mute], now: datetime) -> str:
    """A site's page: every window of the sites file (a one-off one only until it ends) and
    every mute not over yet, each with what it means now: in force until when, or next when."""
    rows = [_window_row(w, now) for w in windows if w.cron is not None or w.end > now]
    rows += [_mute_row(m, now) for m in mutes if m.ends_at > now]
    head = "<tr><th>Source</th><th>When</th><th>Reason</th><th>Now</th></tr>"
    empty = (
        '<tr><td colspan="4" class="muted">No maintenance windows: add <code>maintenance</code>'
        " to the site in the sites file, or mute it with the <code>sitewatch_mute</code> DAG."
        "</td></tr>"
    )
    body = "".join(rows) or empty
    return f"<table id=maintenance><thead>{head}</thead><tbody>{body}</tbody></table>"


def _window_row(window: Window, now: datetime) -> str:
    span = window.covering(now)
    if window.cron is not None:
        when = (
            f"<code>{escape(window.cron)}</code> ({escape(window.timezone)}) for "
            f"{format_duration(window.duration)}"
        )
    else:
        when = f"{timestamp(window.start)} to {timestamp(window.end)}"
    later = None if span else window.next_start(now)
    return _row("window", SITES_FILE, when, window.reason, _now(span, later))


def _mute_row(mute: Mute, now: datetime) -> str:
    when = f"{timestamp(mute.starts_at)} to {timestamp(mute.ends_at)}"
    span = (mute.starts_at, mute.ends_at) if mute.covers(now) else None
    return _row("mute", muted_by(mute), when, mute.reason, _now(span, mute.starts_at))


def _row(kind: str, source: str, when: str, reason: str | None, now_cell: str) -> str:
    return (
        f'<tr data-maintenance="{kind}"><td>{escape(source)}</td><td>{when}</td>'
        f"<td>{escape(reason or '')}</td><td>{now_cell}</td></tr>"
    )


def _now(span: tuple[datetime, datetime] | None, later: datetime | None) -> str:
    if span is not None:
        return f"{badge(MAINTENANCE)} until {timestamp(span[1])}"
    return "—" if later is None else f'<span class="muted">next from {timestamp(later)}</span>'


def _when(at: datetime, now: datetime) -> str:
    """``14:00 UTC`` today (UTC), else ``2026-06-02 14:00 UTC``."""
    at = at.astimezone(UTC)
    if at.date() == now.astimezone(UTC).date():
        return f"{at:%H:%M} UTC"
    return f"{at:%Y-%m-%d %H:%M} UTC"
