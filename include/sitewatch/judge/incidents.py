"""Status page incidents that follow the verdicts: an outage opens one, recovery resolves it.

``judge`` (``sitewatch.judge.alerts``) calls ``follow`` with each verdict it judged and the alert
kind it decided. For each status page with a component the site is (or is in the group of), the
component's outage is the one its page shows, from the same verdicts (``status.model.fold``):

- ``major`` when all its sites are down (a DOWN sent, not held),
- ``partial`` when some are down, or partly down (a run across locations that some saw down,
  fewer than the quorum),
- none when none is.

An outage opens one incident on the component in state investigating, titled ``<component> is
down`` or ``<component> is partly down``; while it lasts, a change between partial and major is
an update of the same incident, which takes the new title; when none is left, it is resolved.
Once per outage: a second site of a group, a reminder or the next partial run opens nothing
new. A DOWN that a hold (maintenance, a mute, a parent down, flapping) kept back has no kind and
changes nothing, and a partial run held so opens nothing. An incident an operator took over with an
update is theirs: the judge no longer changes it.

A site on a status page is judged whether or not it has ``notify`` targets (``judged``): its
page needs its incidents even when nobody is paged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

from sitewatch.alerting import store as alert_store
from sitewatch.alerting.rules import Event, Kind, Verdict
from sitewatch.storage import incidents as store
from sitewatch.storage import verdicts as verdict_store

log = logging.getLogger(__name__)

MAJOR, PARTIAL = "major", "partial"
"""A component's outage: all its sites down, or some down or partly down."""
OPENED_BODY = {
    MAJOR: "{component} is down. We are investigating.",
    PARTIAL: "{component} is partly down. We are investigating.",
}
"""The first update of an automatic incident (Markdown), by the outage that opened it."""
CHANGED_BODY = {MAJOR: "{component} is down now.", PARTIAL: "{component} works again in part."}
"""The update of an open automatic incident whose outage grew (major) or shrank (partial)."""
RESOLVED_BODY = "It works again."
"""The update that resolves an automatic incident."""


def title(component: str, outage: str = MAJOR) -> str:
    """An automatic incident's title for the component named ``component`` in ``outage``."""
    return f"{component} is partly down" if outage == PARTIAL else f"{component} is down"


def components_of(site: str, pages: Iterable) -> Iterator[tuple[str, object]]:
    """``(page id, Component)`` of every component of ``pages`` (``StatusPage``) that is
    ``site`` or has it in its group."""
    for page in pages:
        for component in page.components:
            if site in component.sites:
                yield page.id, component


def judged(site, pages: Iterable) -> bool:
    """Whether the judge follows ``site``'s verdicts: it has ``notify`` targets, or is on one
    of ``pages`` (whose incidents follow its verdicts)."""
    return bool(site.notify) or next(components_of(site.name, pages), None) is not None


def follow(conn, site, kind: Kind | None, event: Event, pages: Sequence) -> list[int]:
    """Open, retitle or resolve the incidents of ``site``'s components on ``pages`` on
    ``conn`` after ``event`` was judged ``kind`` (the site's alert state is stored already).
    Returns the ids of the incidents that got an update, oldest change first. Never raises: a
    status page's failure must not cost an alert."""
    try:
        own = _own_outage(kind, event)
        found = [] if own is False else list(components_of(site.name, pages))
        if not found:
            return []
        if own is None and not _open_on(conn, found):  # up, and nothing open to resolve
            return []
        if own == PARTIAL and kind is None and _held(conn, site, event):
            return []
        changed: list[int] = []
        for page, component in found:
            outage = _outage(conn, site.name, own, component)
            changed += _apply(conn, site.name, page, component, outage, event.at)
        return changed
    except Exception:
        log.exception("incidents: could not follow site=%s verdict=%s", site.name, event.verdict)
        return []


def _own_outage(kind: Kind | None, event: Event) -> str | None | bool:
    """The judged site's outage after ``event`` (MAJOR, PARTIAL or None), or False when the
    event changes no incident (a held or repeated DOWN, a reminder, a pipeline problem)."""
    if event.verdict is Verdict.DOWN:
        return MAJOR if kind is Kind.DOWN else False
    if event.verdict is Verdict.UP:
        return PARTIAL if event.partial else None
    return False


def _open_on(conn, found: list[tuple[str, object]]) -> bool:
    opened = store.open_automatic_on(conn, sorted({page for page, _ in found}))
    return any((page, component.name) in opened for page, component in found)


def _held(conn, site, event: Event) -> bool:
    """Whether a partial run's messages would be held, as a DOWN's are (maintenance, a mute, a
    parent down): then it opens nothing."""
    at = event.run_after or event.at
    reason = alert_store.hold_reason(conn, site.name, at, site.maintenance, site.depends_on)
    return reason is not None


def _outage(conn, name: str, own: str | None, component) -> str | None:
    """The component's outage: its sites' as the page folds them (``status.model.fold``), the
    judged site's from its verdict, the others' from their alert state and latest verdict."""
    others = [s for s in component.sites if s != name]
    down = set(alert_store.down(conn, others)) if others else set()
    rest = [s for s in others if s not in down]
    latest = verdict_store.latest_verdicts(conn, rest) if rest else {}
    partial = {s for s, (_, verdict, _) in latest.items() if verdict == verdict_store.PARTIAL}
    outages = [own, *(MAJOR if s in down else PARTIAL if s in partial else None for s in others)]
    if all(o == MAJOR for o in outages):
        return MAJOR
    return PARTIAL if any(outages) else None


def _apply(conn, site: str, page: str, component, outage: str | None, at) -> list[int]:
    """Bring the component's automatic incident in line with ``outage``; the ids changed."""
    name = component.name
    if outage is None:
        changed = store.resolve_automatic(conn, page, name, RESOLVED_BODY, at)
    else:
        body = OPENED_BODY[outage].format(component=name)
        opened = store.open_automatic(conn, page, name, site, title(name, outage), body, at)
        if opened is not None:
            changed = [opened]
        else:
            body = CHANGED_BODY[outage].format(component=name)
            changed = store.retitle_automatic(conn, page, name, title(name, outage), body, at)
    if changed:
        log.info(
            "incidents: site=%s page=%s component=%r outage=%s changed=%s",
            site,
            page,
            name,
            outage,
            changed,
        )
    return changed
