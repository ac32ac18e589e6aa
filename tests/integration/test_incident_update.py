"""Operators' updates picked from the open incidents (the ``sitewatch_incident_update`` DAG through
``dag.test()``, answered through Airflow's own Required Actions handler as a named user), and the
asset watcher that sees every incident change (``IncidentChangeTrigger`` on the reader's role);
real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

# Imported here, before any thread: imported in the responder's thread while dag.test() configured
# SQLAlchemy's mappers in the main one, airflow.models.pool deadlocked on its import lock (the
# responder held it and waited for the mapper registry, the main thread held that and waited for
# the module) until the test's timeout, which is the hang a fresh-clone run once saw. Every model
# is imported now too, so that neither thread imports one later.
from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
from airflow.models import import_all_models
from airflow.models.hitl import HITLDetail
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
from sqlalchemy import select

from sitewatch.airflow.incident_update_dag import incident_update_dag, label, write
from sitewatch.airflow.incident_watch import INCIDENTS, IncidentChangeTrigger
from sitewatch.names import INCIDENT_UPDATE_DAG_ID, INCIDENTS_ASSET_URI, READER_ROLE
from sitewatch.storage.incidents import open_automatic, page_incidents, write_update
from tests.integration import test_incidents, test_mutes

import_all_models()
db, dag_env, run = test_mutes.db, test_mutes.dag_env, test_mutes.run
# dag.test() waits for an answer as long as it takes: a responder that failed must not hang the run
pytestmark = pytest.mark.timeout(120)
PARKED = (TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED)
LONG_AGO = datetime.now(UTC) - timedelta(days=1)


@pytest.fixture
def pages_env(dag_env, tmp_path, monkeypatch):
    """``dag_env`` with ``test_incidents.SITES`` (page ``status``: Shop, Public API, Blog)."""
    path = tmp_path / "pages.yaml"
    path.write_text(test_incidents.SITES)
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))


class Responder(threading.Thread):
    """Answers the first Required Action of ``sitewatch_incident_update`` asked for after it was
    made (the metadata database may hold older ones of other runs), once its task has parked, as
    user ``name``, through the handler behind the UI's form (``update_hitl_detail``), with the
    option that ``choose(options)`` returns and ``params``. ``offered`` is what the form offered."""

    def __init__(self, name: str, choose, params: dict) -> None:
        super().__init__(daemon=True)
        self.user, self.choose, self.params = name, choose, params
        self.offered: list[str] | None = None
        self.error: BaseException | None = None
        self.since = datetime.now(UTC)

    def run(self) -> None:
        try:
            self._answer()
        except BaseException as exc:  # reported by the test, which the dag.test() thread runs
            self.error = exc

    def _answer(self) -> None:
        user = type("User", (), {"get_id": lambda _: self.user, "get_name": lambda _: self.user})()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with create_session() as session:
                found = session.execute(
                    select(TaskInstance.run_id, HITLDetail.options)
                    .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
                    .where(
                        TaskInstance.dag_id == INCIDENT_UPDATE_DAG_ID,
                        HITLDetail.responded_at.is_(None),
                        HITLDetail.created_at >= self.since,
                        # parked, as the UI's user finds it: an answer that comes before the
                        # task has parked is stored, but Airflow resumes no task then, and
                        # dag.test() would wait for ever (a fresh-clone run once answered 52 ms
                        # after the form was made, and hung)
                        TaskInstance.state.in_(PARKED),
                    )
                ).first()
                if found is not None:
                    run_id, self.offered = found
                    payload = UpdateHITLDetailPayload(
                        chosen_options=[self.choose(self.offered)], params_input=self.params
                    )
                    update_hitl_detail(
                        dag_id=INCIDENT_UPDATE_DAG_ID,
                        dag_run_id=run_id,
                        task_id="pick",
                        update_hitl_detail_payload=payload,
                        user=user,
                        session=session,
                    )
                    return
            time.sleep(0.3)
        raise TimeoutError("no Required Action of sitewatch_incident_update came")


def run_answered(run, responder: Responder) -> tuple[str, str]:
    """Run the DAG once while ``responder`` answers its form; its state and logs."""
    responder.start()
    state, logs = run(incident_update_dag(), {})
    responder.join(10)
    assert responder.error is None, responder.error
    return state, logs


def test_an_open_incident_picked_from_the_list_gets_the_update_by_whoever_answered(
    pages_env, run, migrated_conn
):
    at = datetime.now(UTC) - timedelta(minutes=30)
    auto = open_automatic(migrated_conn, "status", "Shop", "shop", "Shop is down", "Down.", at)
    typed = write_update(
        migrated_conn, "status", incident=None, state="identified", body="Slow.", author="bob",
        at=at + timedelta(minutes=5), title="Slow checkout", components=["Public API"],
    )  # fmt: skip
    closed = write_update(
        migrated_conn, "status", incident=None, state="resolved", body="Done.", author="bob",
        at=at, title="Old trouble",
    )  # fmt: skip
    shown = {i.id: label(i) for i in page_incidents(migrated_conn, "status", LONG_AGO)}
    answer = {"state": "monitoring", "text": "A fix is **out**.", "title": None,
              "components": ["Shop", "Blog"]}  # fmt: skip
    responder = Responder("alice", lambda options: shown[auto], answer)

    state, logs = run_answered(run, responder)

    assert state == "success", logs
    assert responder.offered == [shown[typed], shown[auto]]  # open ones only, newest first
    assert shown[closed] not in responder.offered
    assert shown[auto] == f"#{auto} Shop is down (investigating, page status)"
    incidents = {i.id: i for i in page_incidents(migrated_conn, "status", LONG_AGO)}
    picked = incidents[auto]
    assert (picked.state, picked.title, picked.components) == (
        "monitoring",
        "Shop is down",
        ("Shop", "Blog"),
    )
    assert picked.taken_over and not picked.automatic  # its recovery no longer resolves it
    assert [(u.author, u.state, u.body) for u in picked.updates][-1] == (
        "alice",
        "monitoring",
        "A fix is **out**.",
    )
    assert len(incidents[typed].updates) == 1  # the other open one is untouched
    assert f"incident: page=status incident={auto} state=monitoring by=alice" in logs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text": "bad \x1b text"}, "text contains U+001B (a control character)"),
        ({"state": None}, "state None is not one of investigating"),  # the form's empty choice
        ({"text": None}, "an update needs a text"),
        ({"components": ["Shop", "Docs"]}, "not components of page status: 'Docs'"),
    ],
)
def test_a_bad_answer_is_refused_and_stores_nothing(pages_env, migrated_conn, change, message):
    """The answer as the Required Actions form hands it to ``write`` (its chosen option, params
    and responder), checked and stored by the task itself. The form's round trip is the test
    above's: through dag.test(), these cases once hung a CI run (a form left unanswered waits an
    hour)."""
    at = datetime.now(UTC)
    opened = open_automatic(migrated_conn, "status", "Blog", "blog", "Blog is down", "Down.", at)
    answer = {"state": "identified", "text": "Found it.", "title": None, "components": None}
    response = {
        "chosen_options": ["#1 Blog is down"],
        "params_input": answer | change,
        "responded_by_user": {"name": "alice"},
    }
    with pytest.raises(ValueError, match=re.escape(message)):
        write.function({"#1 Blog is down": ["status", opened]}, response)
    (incident,) = page_incidents(migrated_conn, "status", LONG_AGO)
    assert incident.id == opened and len(incident.updates) == 1 and incident.automatic


def test_with_no_incident_open_the_run_ends_without_a_form(pages_env, run, migrated_conn):
    state, logs = run(incident_update_dag(), {})
    assert state == "success", logs
    assert "no incident is open; open one with sitewatch_incident" in logs
    assert page_incidents(migrated_conn, "status", LONG_AGO) == []


# --- the asset: an event whenever an incident changed -------------------------------------------


def test_the_status_page_asset_is_watched_for_incident_changes():
    assert INCIDENTS.uri == INCIDENTS_ASSET_URI
    (watcher,) = INCIDENTS.watchers
    assert isinstance(watcher.trigger, IncidentChangeTrigger)
    # what the DAG processor stores and the triggerer rebuilds it from
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath == "sitewatch.airflow.incident_watch.IncidentChangeTrigger"
    assert IncidentChangeTrigger(**kwargs).poll_seconds == watcher.trigger.poll_seconds


def test_the_watcher_fires_on_each_incident_change_and_on_nothing_else(
    dag_env, pg_schema, migrated_conn, monkeypatch
):
    # on the reader's role, as deployed: it may read the incidents' updates
    reader = json.loads(os.environ["AIRFLOW_CONN_SITEWATCH_POSTGRES"])
    reader["extra"]["options"] = f"-c role={READER_ROLE} -c search_path={pg_schema}"
    monkeypatch.setenv("AIRFLOW_CONN_SITEWATCH_POSTGRES_READER", json.dumps(reader))

    async def watch():
        events = IncidentChangeTrigger(poll_seconds=0.1).run()
        next_event = asyncio.ensure_future(events.__anext__())
        try:
            await asyncio.sleep(1)  # the baseline, then ten looks at an unchanged table
            assert not next_event.done()
            at = datetime.now(UTC)
            opened = await asyncio.to_thread(
                open_automatic, migrated_conn, "status", "Shop", "shop", "Shop is down", "x", at
            )
            first = (await asyncio.wait_for(next_event, 10)).payload
            # an update of it is a change too; nothing in between fired
            await asyncio.to_thread(
                write_update, migrated_conn, "status", incident=opened, state="resolved",
                body="Fixed.", author="alice", at=at,
            )  # fmt: skip
            second = (await asyncio.wait_for(events.__anext__(), 10)).payload
            return first, second
        finally:
            next_event.cancel()
            with contextlib.suppress(BaseException):
                await next_event
            await events.aclose()

    first, second = asyncio.run(watch())
    assert first == {"updates": 1, "newest": first["newest"]}
    assert second["updates"] == 2 and second["newest"] > first["newest"]
