"""Settings for the DAGs run through ``dag.test()`` here."""

import pytest


@pytest.fixture(autouse=True)
def drain_runs_end_when_caught_up(monkeypatch):
    """A drain run lasts a day and waits in the triggerer between bursts
    (``SITEWATCH_DRAIN_MAX_SECONDS``); here each test's drain must end once it has stored what
    there is (``SITEWATCH_DRAIN_IDLE_SECONDS=0`` in the test environment)."""
    monkeypatch.setenv("SITEWATCH_DRAIN_MAX_SECONDS", "1")
