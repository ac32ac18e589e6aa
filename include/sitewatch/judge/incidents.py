"""Status page incidents that follow the alerts: a DOWN opens one, its RECOVERED resolves it.

``judge`` (``sitewatch.judge.alerts``) calls ``follow`` with the alert kind it decided, so an
incident opens exactly when a DOWN is sent: once per outage, and never for a DOWN that a hold
(maintenance, a mute, a parent down, flapping) kept back, since such a DOWN has no kind. For each
status page with a component the site is (or is in the group of), an incident titled
``<component name> is down`` opens in state investigating, unless one is open on that component
already (a group's second site down opens no second incident). The site's RECOVERED resolves
the incidents its DOWN opened, unless an operator took them over with an update.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

from sitewatch.alerting.rules import Kind
from sitewatch.storage import incidents as store

log = logging.getLogger(__name__)

OPENED_BODY = "{component} is down. We are investigating."
"""The first update of an automatic incident (Markdown)."""
RESOLVED_BODY = "It works again."
"""The update that resolves an automatic incident."""


def title(component: str) -> str:
    """An automatic incident's title for the component named ``component``."""
    return f"{component} is down"


def components_of(site: str, pages: Iterable) -> Iterator[tuple[str, str]]:
    """``(page id, component name)`` of every component of ``pages`` (``StatusPage``) that is
    ``site`` or has it in its group."""
    for page in pages:
        for component in page.components:
            if site in component.sites:
                yield page.id, component.name


def follow(conn, site: str, kind: Kind | None, at: datetime, pages: Iterable) -> None:
    """Open (DOWN) or resolve (RECOVERED) ``site``'s incidents on ``pages`` on ``conn``; other
    kinds change nothing. Never raises: a status page's failure must not cost an alert."""
    if kind not in (Kind.DOWN, Kind.RECOVERED):
        return
    try:
        if kind is Kind.DOWN:
            for page, component in components_of(site, pages):
                body = OPENED_BODY.format(component=component)
                opened = store.open_automatic(
                    conn, page, component, site, title(component), body, at
                )
                log.info(
                    "incidents: site=%s page=%s component=%r opened=%s",
                    site,
                    page,
                    component,
                    opened,
                )
        else:
            resolved = store.resolve_automatic(conn, site, RESOLVED_BODY, at)
            if resolved:
                log.info("incidents: site=%s resolved=%s", site, resolved)
    except Exception:
        log.exception("incidents: could not follow site=%s kind=%s", site, kind.value)
