"""The ``sitewatch_incident`` DAG: operators write status page incidents from the Airflow UI.

It runs only when triggered. Its params are Airflow ``Param``s, so the trigger form asks for the
page, an incident's id (empty: a new incident, which then needs a title), the state, the Markdown
text of the update and, optionally, the components it affects. The triggering user is the
update's author, as a mute records who muted. An update of an automatic incident (one a DOWN
opened) takes it over: its RECOVERED no longer resolves it. Every value is checked before the
database is touched, so a bad request fails the run with a message naming what is wrong and
stores nothing. Once stored, the update goes to the notify targets that ask for status updates
(``sitewatch.judge.status_updates``). It writes with the alerting connection
(``POSTGRES_ALERTING_CONN_ID``), as the mute DAG does, and never migrates. Who may trigger it
is Airflow's to say (the DAG's run permission). The page shows the change within seconds
(``sitewatch.airflow.incident_watch``). ``sitewatch_incident_update`` updates an open incident
picked from a list instead (``sitewatch.airflow.incident_update_dag``), through ``store``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from airflow.sdk import DAG, Param, get_current_context, task

from sitewatch.airflow.hooks import results_connection
from sitewatch.config.loader import cached_sites
from sitewatch.config.values import unsafe_character
from sitewatch.names import DAG_DEFAULTS, DAG_TAG, INCIDENT_DAG_ID, POSTGRES_ALERTING_CONN_ID
from sitewatch.storage.incidents import STATES

log = logging.getLogger(__name__)

MAX_TITLE = 200
MAX_TEXT = 5000
"""Characters of an update's Markdown: a status note, not a post-mortem."""
UNKNOWN_AUTHOR = "unknown"
"""The author when Airflow names no triggering user (a run started outside the UI)."""

DOC = f"""### Write a status page incident

Trigger with the form: the **page**, an **incident** id to update (leave it empty to open a new
incident, which needs a **title**), its **state** ({", ".join(STATES)}), the update's **text**
(Markdown: emphasis, lists, links; no HTML) and, optionally, the **components** it affects
(their display names on the page). You are recorded as the update's author. Updating an incident
that a DOWN opened takes it over: its recovery no longer resolves it. The page shows the change
within seconds. To pick an open incident from a list instead of giving its id, trigger
`sitewatch_incident_update`. See docs/status-page.md, "Incidents".
"""


def pages() -> dict[str, list[str]]:
    """The sites file's status pages: id -> component names."""
    return {p.id: [c.name for c in p.components] for p in cached_sites().status_pages}


def check_request(params: dict, known: dict[str, list[str]]) -> dict:
    """The form's values, checked: ``page``, ``incident`` (int or None), ``title`` (str or
    None), ``state``, ``text``, ``components`` (list or None). Raises ValueError naming the first
    problem."""
    page = str(params.get("page") or "").strip()
    if page not in known:
        raise ValueError(f"page {page!r} is not in the sites file (pages: {', '.join(known)})")
    incident = params.get("incident")
    if incident in ("", None):
        incident = None
    else:
        try:
            incident = int(incident)
        except (TypeError, ValueError):
            raise ValueError(f"incident {incident!r} is not an incident id") from None
    title = _free(params.get("title"), MAX_TITLE, "title", lines=False) or None
    if incident is None and title is None:
        raise ValueError("a new incident needs a title (or give the id of one to update)")
    state = params.get("state")
    if state not in STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
    text = _free(params.get("text"), MAX_TEXT, "text", lines=True)
    if not text:
        raise ValueError("an update needs a text (say what happens, for the readers)")
    components = params.get("components") or None
    if components is not None:
        components = list(dict.fromkeys(str(c) for c in components))
        unknown = [c for c in components if c not in known[page]]
        if unknown:
            raise ValueError(
                f"not components of page {page}: {', '.join(map(repr, unknown))} "
                f"(components: {', '.join(known[page])})"
            )
    return {
        "page": page,
        "incident": incident,
        "title": title,
        "state": state,
        "text": text,
        "components": components,
    }


def _free(value, limit: int, what: str, *, lines: bool) -> str:
    text = str(value or "").replace("\r\n", "\n").strip()
    if len(text) > limit:
        raise ValueError(f"{what} is {len(text)} characters long (at most {limit})")
    checked = text.replace("\n", " ").replace("\t", " ") if lines else text
    if problem := unsafe_character(checked):
        raise ValueError(f"{what} {problem}")
    return text


@task
def write() -> int:
    """Store the form's update (a new incident, or an update of one); returns the incident's id.

    Raises ValueError for a bad request or an incident not on the page (nothing stored),
    SchemaError when the tables are not migrated, StorageError when PostgreSQL fails.
    """
    context = get_current_context()
    request = check_request(context["params"], pages())
    author = getattr(context["dag_run"], "triggering_user_name", None) or UNKNOWN_AUTHOR
    return store(request, author)


def store(request: dict, author: str) -> int:
    """Write ``request`` (``check_request``'s) as ``author`` on the alerting connection; returns
    the incident's id. Raises ValueError for an incident not on the page (nothing stored),
    SchemaError when the tables are not migrated, StorageError when PostgreSQL fails."""
    from sitewatch.airflow.notifiers import send
    from sitewatch.judge.status_updates import announce
    from sitewatch.storage.incidents import write_update
    from sitewatch.storage.schema import require_current

    conn = results_connection(POSTGRES_ALERTING_CONN_ID)
    try:
        require_current(conn)
        incident = write_update(
            conn,
            request["page"],
            incident=request["incident"],
            state=request["state"],
            body=request["text"],
            author=author,
            at=datetime.now(UTC),
            title=request["title"],
            components=request["components"],
        )
        sites = cached_sites()  # stored first: a notifier's failure never fails the update
        announce(conn, [incident], sites.status_pages, sites.by_name, send)
    finally:
        conn.close()
    log.info(
        "incident: page=%s incident=%s state=%s by=%s",
        request["page"],
        incident,
        request["state"],
        author,
    )
    return incident


def update_params(components: list[str], title: str, *, required_action: bool = False) -> dict:
    """An update's Params as this DAG's trigger form asks for them: title, state (investigating
    at first), text (required) and components, offering ``components`` (every page's) as
    examples. title: the title's description, saying what an empty one does.

    required_action: as ``sitewatch_incident_update``'s Required Action asks for them instead:
    what every update needs first (state, text), then what only changes the incident. Airflow
    checks a task's params against their schemas before that form is shown, so state and text
    default to None there and ``check_request`` names what is missing; no state is chosen in
    advance either, as a forgotten one must not quietly move the incident back.
    """
    if required_action:
        state = {"default": None, "type": ["null", "string"], "enum": [None, *STATES]}
        text = {"default": None, "type": ["null", "string"]}
    else:
        state = {"default": "investigating", "type": "string", "enum": list(STATES)}
        text = {"type": "string", "minLength": 1}
    component_schema: dict = {"items": {"type": "string"}, "title": "Components"}
    if components:
        component_schema["examples"] = components
    params = {
        "title": Param(
            None, type=["null", "string"], maxLength=MAX_TITLE, title="Title", description=title
        ),
        "state": Param(**state, title="State"),
        "text": Param(
            **text,
            maxLength=MAX_TEXT,
            title="Text",
            description="The update, in Markdown (no HTML). Shown on the page and in its feed.",
            format="multiline",
        ),
        "components": Param(
            None,
            type=["null", "array"],
            description="The components it affects (names on its page); empty: keep them.",
            **component_schema,
        ),
    }
    if required_action:
        return {name: params[name] for name in ("state", "text", "title", "components")}
    return params


def incident_dag(known: dict[str, list[str]] | None = None) -> DAG:
    """``sitewatch_incident``. known: the pages and components the form offers (default: the
    sites file's)."""
    known = pages() if known is None else known
    components = sorted({c for names in known.values() for c in names})
    page_schema: dict = {"title": "Page", "description": "The status page's id."}
    if known:
        page_schema["enum"] = list(known)
    params = {
        "page": Param(next(iter(known), ""), type="string", minLength=1, **page_schema),
        "incident": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Incident",
            description="The id of the incident to update; empty: open a new one.",
        ),
        **update_params(components, "A new incident's title (or a new title for the incident)."),
    }
    with DAG(
        dag_id=INCIDENT_DAG_ID,
        schedule=None,
        tags=[DAG_TAG],
        doc_md=DOC,
        params=params,
        # a bad request or a database down: the person who pressed Trigger sees it at once
        default_args={"owner": "sitewatch", "retries": 0},
        **DAG_DEFAULTS,
    ) as dag:
        write()
    return dag
