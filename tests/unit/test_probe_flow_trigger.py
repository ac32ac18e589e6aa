"""A flow through the triggerer's entry point (``probe_trigger.check``, what ``ProbeTrigger`` runs
in a pool thread), against the local JSON API, with Kafka replaced by a list: an up flow ends the
task there, a down one resumes on a worker carrying its steps, masked."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from airflow.triggers.base import TaskSuccessEvent

from sitewatch.airflow import probe_trigger
from sitewatch.observation import Observation
from tests import flow_api
from tests.flow_api import ITEM, PASSWORD, TOKEN

SCHEDULED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class _Publisher:
    def __init__(self):
        self.published: list[Observation] = []

    def publish(self, observation: Observation) -> None:
        self.published.append(observation)


@pytest.fixture
def api():
    server = flow_api.start()
    yield server
    flow_api.stop(server)


@pytest.fixture
def publisher(monkeypatch):
    fake = _Publisher()
    monkeypatch.setattr(probe_trigger, "_publisher", lambda conn_id: fake)
    monkeypatch.setenv("SITEWATCH_SECRET_API_PASSWORD", PASSWORD)
    return fake


def sites_file(tmp_path, base: str, item: int, owner: str = "nobody") -> str:
    path = tmp_path / "sites.yaml"
    path.write_text(f"""\
sites:
  - name: api-flow
    timeout: 5s
    steps:
      - name: login
        method: POST
        url: {base}/login
        body: {{password: "${{SITEWATCH_SECRET_API_PASSWORD}}"}}
        extract:
          token: {{json: $.token}}
      - name: read
        url: {base}/items/{item}
        headers: {{Authorization: "Bearer ${{login.token}}"}}
        expect:
          - json: $.owner
            equals: {owner}
""")
    return str(path)


def check(path: str, last: bool = False):
    return probe_trigger.check(
        "api-flow", path, "kafka", SCHEDULED, 1, cancelled=None, run_id="r", last=last
    )


def test_a_flow_that_passes_ends_in_the_triggerer_with_its_steps_published(
    api, publisher, tmp_path
):
    event = check(sites_file(tmp_path, api.base, ITEM, owner=TOKEN))
    assert isinstance(event, TaskSuccessEvent)
    (published,) = publisher.published
    assert published.up and published.final
    assert [step["name"] for step in published.steps] == ["login", "read"]
    assert TOKEN not in published.to_message().decode()


def test_a_flow_that_fails_resumes_on_a_worker_with_its_steps(api, publisher, tmp_path):
    event = check(sites_file(tmp_path, api.base, 999))
    down = Observation.from_message(event.payload["down"].encode())
    assert (down.up, down.final, down.error) == (False, False, "status")
    assert down.error_detail == "step read: status 404 not in 200-399"
    assert [step.get("passed") for step in down.steps] == [True, False]
    assert publisher.published == []  # the worker publishes a down attempt that may be retried
    assert TOKEN not in event.payload["down"] and PASSWORD not in event.payload["down"]
    assert json.loads(event.payload["down"])["steps"][1]["status"] == 404
