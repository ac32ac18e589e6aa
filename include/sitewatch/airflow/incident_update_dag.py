"""The ``sitewatch_incident_update`` DAG: update an open status page incident picked from a list.

Triggered without a form. ``open_incidents`` reads the open incidents of the sites file's pages;
``pick`` is a human-in-the-loop task (Airflow's ``HITLOperator``) that offers them under the run's
**Required Actions**, with the update's fields: state, Markdown text and, optionally, a new title
or components. Whoever responds is the update's author (Airflow records the responding user).
``write`` then stores it as ``sitewatch_incident``'s trigger form does: the same checks, and an
automatic incident is taken over. With no incident open, the run ends at once, ``pick`` and
``write`` skipped. A form nobody answers within ``RESPONSE_TIMEOUT`` fails the run, storing
nothing. New incidents are opened from ``sitewatch_incident``'s trigger form.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowSkipException

from sitewatch.airflow.hooks import results_connection
from sitewatch.airflow.incident_dag import (
    UNKNOWN_AUTHOR,
    check_request,
    pages,
    store,
    update_params,
)
from sitewatch.names import DAG_DEFAULTS, DAG_TAG, INCIDENT_UPDATE_DAG_ID, POSTGRES_ALERTING_CONN_ID
from sitewatch.storage.incidents import STATES

RESPONSE_TIMEOUT = timedelta(hours=1)
"""How long ``pick`` waits for an answer before the run fails."""
MAX_RUNS = 8
"""Runs open at once: each is one person's form, and one left unanswered must not block the
next person for an hour."""
LABEL_TITLE = 80
"""Characters of an incident's title in its option's label."""

DOC = f"""### Update an open status page incident

Trigger it (no form), then open the run's **Required Actions**: pick the incident among the open
ones, and give its **state** ({", ".join(STATES)}), the update's **text** (Markdown: emphasis,
lists, links; no HTML) and, optionally, a new **title** or **components** (their display names on
the page). You are recorded as the update's author. Updating an incident that a DOWN opened takes
it over: its recovery no longer resolves it. With no incident open the run ends at once. New
incidents: trigger `sitewatch_incident`. See docs/status-page.md, "Incidents".
"""

BODY = """Fill in the update below (a new title or components only to change them), then choose
the incident it is for. The status page shows it within seconds."""


def label(incident) -> str:
    """How an open incident (``storage.incidents.Incident``) is offered:
    ``#12 Shop is down (investigating, page status)``; the id keeps labels apart."""
    title = incident.title
    if len(title) > LABEL_TITLE:
        title = title[: LABEL_TITLE - 1] + "…"
    return f"#{incident.id} {title} ({incident.state}, page {incident.page})"


@task(multiple_outputs=True)
def open_incidents() -> dict:
    """The open incidents of the sites file's pages, newest first: ``options`` (their labels)
    and ``choices`` (label -> [page, id]). Raises AirflowSkipException when none is open (the
    form would offer nothing), SchemaError when the tables are not migrated, StorageError when
    PostgreSQL fails."""
    from sitewatch.storage.incidents import page_incidents
    from sitewatch.storage.schema import require_current

    now = datetime.now(UTC)
    conn = results_connection(POSTGRES_ALERTING_CONN_ID)
    try:
        require_current(conn)
        # since now: the open ones (and any opened or resolved in the same instant)
        found = [i for page in pages() for i in page_incidents(conn, page, now)]
    finally:
        conn.close()
    found = sorted((i for i in found if i.resolved_at is None), key=lambda i: i.opened_at)
    if not found:
        raise AirflowSkipException("no incident is open; open one with sitewatch_incident")
    choices = {label(i): [i.page, i.id] for i in reversed(found)}
    return {"options": list(choices), "choices": choices}


class PickIncident(HITLOperator):
    """A ``HITLOperator`` whose ``options`` are a template field, so that they can be what an
    upstream task returns (here ``open_incidents``'s labels): they are resolved each time the
    task runs, before the form is written and again when the answer resumes it."""

    template_fields = (*HITLOperator.template_fields, "options")


@task
def write(choices: dict, response: dict) -> int:
    """Store the answer to ``pick`` (``response``: its chosen option, params and responding
    user) as an update of the chosen incident; returns its id. Raises ValueError for a bad
    answer or an incident no longer on its page (nothing stored), SchemaError, StorageError."""
    (chosen,) = response["chosen_options"]
    page, incident = choices[chosen]
    answer = response.get("params_input") or {}
    request = check_request({**answer, "page": page, "incident": incident}, pages())
    author = (response.get("responded_by_user") or {}).get("name") or UNKNOWN_AUTHOR
    return store(request, author)


def incident_update_dag(known: dict[str, list[str]] | None = None) -> DAG:
    """``sitewatch_incident_update``. known: the pages and components (default: the sites
    file's), for the components the form offers."""
    known = pages() if known is None else known
    components = sorted({c for names in known.values() for c in names})
    with DAG(
        dag_id=INCIDENT_UPDATE_DAG_ID,
        schedule=None,
        tags=[DAG_TAG],
        doc_md=DOC,
        # a bad answer or a database down: the person who answered sees it at once
        default_args={"owner": "sitewatch", "retries": 0},
        **{**DAG_DEFAULTS, "max_active_runs": MAX_RUNS},
    ) as dag:
        listed = open_incidents()
        pick = PickIncident(
            task_id="pick",
            subject="Update a status page incident",
            body=BODY,
            options=listed["options"],
            params=update_params(
                components, "A new title for the incident; empty: keep it.", required_action=True
            ),
            response_timeout=RESPONSE_TIMEOUT,
        )
        write(listed["choices"], pick.output)
    return dag
