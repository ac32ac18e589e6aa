"""A flow in the triggerer (issue 26, item 6): ``ProbeTrigger`` runs a site's steps against the
local JSON API and publishes to the real Kafka broker, as for a single check; the message on the
topic carries the steps, and the run's log one line per step, masked."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from airflow.triggers.base import TaskSuccessEvent

from sitewatch.airflow.probe_trigger import ProbeTrigger
from sitewatch.observation import Observation
from tests import flow_api
from tests.conftest import read_topic
from tests.flow_api import ITEM, PASSWORD, TOKEN

pytestmark = pytest.mark.services

SCHEDULED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def topic(new_topic, monkeypatch):
    name = new_topic()
    monkeypatch.setenv("SITEWATCH_TOPIC", name)
    monkeypatch.setenv("SITEWATCH_SECRET_API_PASSWORD", PASSWORD)
    return name


@pytest.fixture
def api():
    server = flow_api.start()
    yield server
    flow_api.stop(server)


def first_event(trigger: ProbeTrigger, try_number: int = 1, retries: int = 2):
    run = SimpleNamespace(
        logical_date=SCHEDULED, run_after=SCHEDULED, run_id="scheduled__flow", clear_number=0
    )
    context = {"ti": SimpleNamespace(try_number=try_number, max_tries=retries), "dag_run": run}
    task = SimpleNamespace(retries=retries, template_ext=(), start_trigger_args=None)
    trigger.task_instance = SimpleNamespace(
        task_id="probe", task=task, get_template_context=lambda: context
    )

    async def first():
        async for event in trigger.run():
            return event

    return asyncio.run(first())


def test_a_flow_starts_and_ends_in_the_triggerer_and_its_steps_are_on_the_topic(
    api, topic, tmp_path, caplog
):
    path = tmp_path / "sites.yaml"
    path.write_text(f"""\
sites:
  - name: tr-flow
    steps:
      - name: login
        method: POST
        url: {api.base}/login
        body: {{password: "${{SITEWATCH_SECRET_API_PASSWORD}}"}}
        extract:
          token: {{json: $.token}}
      - name: read
        url: {api.base}/items/{ITEM}
        headers: {{Authorization: "Bearer ${{login.token}}"}}
""")
    caplog.set_level(logging.INFO, logger="sitewatch.attempt")
    event = first_event(ProbeTrigger("tr-flow", str(path)))
    assert isinstance(event, TaskSuccessEvent)
    (message,) = read_topic(topic, 1)
    stored = Observation.from_message(message.value())
    assert (stored.site, stored.up, stored.final) == ("tr-flow", True, True)
    assert [(s["name"], s["status"]) for s in stored.steps] == [("login", 200), ("read", 200)]
    lines = [r.getMessage() for r in caplog.records if r.name == "sitewatch.attempt"]
    assert [line.split()[1] for line in lines[1:]] == ["step=login", "step=read"]
    assert all(TOKEN not in line and PASSWORD not in line for line in lines)
