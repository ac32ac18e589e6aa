"""Status page incidents: the SQL of tables ``status_incidents`` and ``status_incident_updates``
(migration 11).

An incident belongs to one status page and names the components it affects by their display
names. The judge opens one when a page's component goes down or partly down (``open_automatic``,
author ``AUTOMATIC_AUTHOR``), retitles it when the outage grows or shrinks (``retitle_automatic``)
and resolves it once the component has recovered (``resolve_automatic``) unless an operator took
it over: any update written from the ``sitewatch_incident`` DAG (``write_update``) does. The
status page reads a page's open incidents and recent history with their updates
(``page_incidents``), a status update one incident (``incident``). Updates are only ever added,
never changed.

Every function takes a psycopg 3 connection, runs in its own transaction
(``schema.transaction``) and refuses naive datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sitewatch.storage.schema import transaction

STATES = ("investigating", "identified", "monitoring", "resolved")
"""An incident's states, as Statuspage names them; ``resolved`` closes it."""
AUTOMATIC_AUTHOR = "sitewatch"
"""The author of the updates the judge writes."""


@dataclass(frozen=True, slots=True)
class Update:
    """One update of an incident: its state from ``at`` on, Markdown ``body``, who wrote it."""

    at: datetime
    state: str
    body: str
    author: str


@dataclass(frozen=True, slots=True)
class Incident:
    """One row of ``status_incidents`` with its updates, oldest first.

    opened_by_site: the site whose DOWN opened it (None: an operator opened it). taken_over: an
    operator wrote an update, so RECOVERED no longer resolves it."""

    id: int
    page: str
    components: tuple[str, ...]
    title: str
    state: str
    opened_at: datetime
    resolved_at: datetime | None
    opened_by_site: str | None
    taken_over: bool
    updates: tuple[Update, ...] = ()

    @property
    def automatic(self) -> bool:
        return self.opened_by_site is not None and not self.taken_over


_COLUMNS = "id, page, components, title, state, opened_at, resolved_at, opened_by_site, taken_over"

# One transaction at a time opens incidents on a page, so two sites of one group going down in
# the same second open one incident, not two.
_LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_LOCK_CLASS = 0x696E6364  # "incd"

_OPEN_ON = """
    SELECT id FROM status_incidents
    WHERE page = %(page)s AND resolved_at IS NULL AND %(component)s = ANY(components)
    LIMIT 1
"""
_INSERT = """
    INSERT INTO status_incidents
        (page, components, title, state, opened_at, resolved_at, opened_by_site)
    VALUES (%(page)s, %(components)s, %(title)s, %(state)s, %(at)s,
            CASE WHEN %(state)s = 'resolved' THEN %(at)s END, %(site)s)
    RETURNING id
"""
_ADD_UPDATE = """
    INSERT INTO status_incident_updates (incident, at, state, body, author)
    VALUES (%(incident)s, %(at)s, %(state)s, %(body)s, %(author)s)
"""
_RETITLE = """
    UPDATE status_incidents SET title = %(title)s
    WHERE page = %(page)s AND %(component)s = ANY(components) AND resolved_at IS NULL
      AND opened_by_site IS NOT NULL AND NOT taken_over AND title <> %(title)s
    RETURNING id, state
"""
_OPEN_AUTOMATIC = """
    SELECT page, components FROM status_incidents
    WHERE page = ANY(%s) AND resolved_at IS NULL AND opened_by_site IS NOT NULL AND NOT taken_over
"""
_RESOLVE = """
    UPDATE status_incidents SET state = 'resolved', resolved_at = %(at)s
    WHERE page = %(page)s AND %(component)s = ANY(components) AND resolved_at IS NULL
      AND opened_by_site IS NOT NULL AND NOT taken_over
    RETURNING id
"""
_CHANGE = """
    UPDATE status_incidents
    SET state = %(state)s, taken_over = true,
        title = coalesce(%(title)s, title),
        components = coalesce(%(components)s, components),
        resolved_at = CASE WHEN %(state)s = 'resolved' THEN coalesce(resolved_at, %(at)s) END
    WHERE id = %(id)s AND page = %(page)s
    RETURNING id
"""
_ONE = f"SELECT {_COLUMNS} FROM status_incidents WHERE id = %s"
# A page's open incidents and those opened or resolved since `since`.
_PAGE = f"""
    SELECT {_COLUMNS} FROM status_incidents
    WHERE page = %(page)s
      AND (resolved_at IS NULL OR resolved_at >= %(since)s OR opened_at >= %(since)s)
    ORDER BY opened_at DESC, id DESC
"""
_UPDATES = """
    SELECT incident, at, state, body, author FROM status_incident_updates
    WHERE incident = ANY(%s) ORDER BY incident, at, id
"""


def open_automatic(
    conn, page: str, component: str, site: str, title: str, body: str, at: datetime
) -> int | None:
    """Open an incident on ``page`` for ``component`` (state investigating, one update by
    ``AUTOMATIC_AUTHOR``) unless one is open on it already; return its id, None when one was.

    site: the site whose DOWN opens it (for the record: any site of the component's recovery
    may resolve it, ``resolve_automatic``).
    Raises ValueError for a naive ``at``, StorageError when PostgreSQL fails (nothing stored).
    """
    _aware(at)
    params = {
        "page": page,
        "component": component,
        "components": [component],
        "title": title,
        "state": "investigating",
        "at": at,
        "site": site,
    }
    with transaction(conn, f"could not open an incident on page {page}") as cur:
        cur.execute(_LOCK, (_LOCK_CLASS, page))
        cur.execute(_OPEN_ON, params)
        if cur.fetchone() is not None:
            return None
        cur.execute(_INSERT, params)
        incident = cur.fetchone()[0]
        cur.execute(_ADD_UPDATE, _update(incident, at, "investigating", body, AUTOMATIC_AUTHOR))
    return incident


def retitle_automatic(
    conn, page: str, component: str, title: str, body: str, at: datetime
) -> list[int]:
    """Give the open automatic incidents of ``page`` naming ``component`` that no operator took
    over the title ``title``, with an update ``body`` by ``AUTOMATIC_AUTHOR`` in their state;
    those with that title already are left alone. Returns the ids changed. Raises ValueError
    for a naive ``at``, StorageError when PostgreSQL fails (nothing changed)."""
    _aware(at)
    params = {"page": page, "component": component, "title": title}
    with transaction(conn, f"could not retitle the incidents of {component} on {page}") as cur:
        cur.execute(_LOCK, (_LOCK_CLASS, page))
        cur.execute(_RETITLE, params)
        changed = cur.fetchall()
        for incident, state in changed:
            cur.execute(_ADD_UPDATE, _update(incident, at, state, body, AUTOMATIC_AUTHOR))
    return [incident for incident, _ in changed]


def open_automatic_on(conn, pages: Sequence[str]) -> set[tuple[str, str]]:
    """(page, component) of each component that an open automatic incident no operator took
    over names, on ``pages``. Read-only, on the few open incidents; raises StorageError."""
    with transaction(conn, "could not read the open incidents") as cur:
        cur.execute(_OPEN_AUTOMATIC, (list(pages),))
        return {(page, c) for page, components in cur.fetchall() for c in components}


def resolve_automatic(conn, page: str, component: str, body: str, at: datetime) -> list[int]:
    """Resolve the open automatic incidents of ``page`` naming ``component`` that no operator
    took over, each with an update ``body`` by ``AUTOMATIC_AUTHOR``; return their ids. Raises
    ValueError for a naive ``at``, StorageError when PostgreSQL fails (nothing changed)."""
    _aware(at)
    with transaction(conn, f"could not resolve the incidents of {component} on {page}") as cur:
        cur.execute(_RESOLVE, {"page": page, "component": component, "at": at})
        ids = [row[0] for row in cur.fetchall()]
        for incident in ids:
            cur.execute(_ADD_UPDATE, _update(incident, at, "resolved", body, AUTOMATIC_AUTHOR))
    return ids


def write_update(
    conn,
    page: str,
    *,
    incident: int | None,
    state: str,
    body: str,
    author: str,
    at: datetime,
    title: str | None = None,
    components: Sequence[str] | None = None,
) -> int:
    """An operator's update: a new incident on ``page`` when ``incident`` is None (``title``
    required), else an update of incident ``incident`` of ``page``, which it takes over (the
    judge no longer resolves it); ``title`` and ``components``, when given, replace the
    incident's. Returns the incident's id.

    Raises ValueError for an unknown state, a naive ``at``, a new incident without a title or an
    incident that is not on ``page`` (nothing stored); StorageError when PostgreSQL fails.
    """
    _aware(at)
    if state not in STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
    comps = None if components is None else list(components)
    with transaction(conn, f"could not write an incident update on page {page}") as cur:
        if incident is None:
            if not title:
                raise ValueError("a new incident needs a title")
            cur.execute(
                _INSERT,
                {
                    "page": page,
                    "components": comps or [],
                    "title": title,
                    "state": state,
                    "at": at,
                    "site": None,
                },
            )
            incident = cur.fetchone()[0]
        else:
            cur.execute(_CHANGE, _change(incident, page, state, at, title or None, comps))
            if cur.fetchone() is None:
                raise ValueError(f"incident {incident} is not on page {page}")
        cur.execute(_ADD_UPDATE, _update(incident, at, state, body, author))
    return incident


def page_incidents(conn, page: str, since: datetime) -> list[Incident]:
    """``page``'s open incidents and those opened or resolved since ``since``, newest first,
    each with its updates. Raises ValueError for a naive ``since``, StorageError when PostgreSQL
    fails."""
    _aware(since)
    with transaction(conn, f"could not read the incidents of page {page}") as cur:
        cur.execute(_PAGE, {"page": page, "since": since})
        return _with_updates(cur, cur.fetchall())


def incident(conn, incident_id: int) -> Incident | None:
    """Incident ``incident_id`` with its updates (None: there is none). Raises StorageError."""
    with transaction(conn, f"could not read incident {incident_id}") as cur:
        cur.execute(_ONE, (incident_id,))
        found = _with_updates(cur, cur.fetchall())
    return found[0] if found else None


def _with_updates(cur, rows: list[tuple]) -> list[Incident]:
    cur.execute(_UPDATES, ([row[0] for row in rows],))
    updates: dict[int, list[Update]] = {}
    for incident_id, *update in cur.fetchall():
        updates.setdefault(incident_id, []).append(Update(*update))
    return [
        Incident(row[0], row[1], tuple(row[2]), *row[3:], updates=tuple(updates.get(row[0], ())))
        for row in rows
    ]


def _update(incident: int, at: datetime, state: str, body: str, author: str) -> dict:
    return {"incident": incident, "at": at, "state": state, "body": body, "author": author}


def _change(incident, page, state, at, title, components) -> dict:
    return {
        "id": incident,
        "page": page,
        "state": state,
        "at": at,
        "title": title,
        "components": components,
    }


def _aware(at: datetime) -> None:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: give a time zone")


_MARK = "SELECT count(*), coalesce(max(id), 0) FROM status_incident_updates"


def change_mark(conn) -> tuple[int, int]:
    """A mark of every incident change so far: how many updates there are and the newest's id.
    Every change (opened, retitled, updated, resolved) adds an update, and updates are never
    changed, so a different mark means a change; counting too catches an update whose id was
    drawn before a newer one's but committed after it. Raises StorageError."""
    with transaction(conn, "could not read the incident updates") as cur:
        cur.execute(_MARK)
        count, newest = cur.fetchone()
    return count, newest
