"""A flow's steps in ``site_checks`` (migration 12): one jsonb array beside the check, the same
through ``store_batch`` and the drain's fast path, null for single checks and older rows."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from sitewatch.observation import Observation, fast_row
from sitewatch.storage.checks import StoreResult, store_batch, store_rows
from tests.builders import T0, observation
from tests.schemas import store_as_old_drain

pytestmark = pytest.mark.services

STEPS = [
    {
        "name": "login",
        "method": "POST",
        "url": "https://api.example.com/login",
        "always": False,
        "passed": True,
        "status": 200,
        "response_ms": 12.5,
        "ttfb_ms": 11.0,
        "body_bytes": 40,
    },
    {
        "name": "read",
        "method": "GET",
        "url": "https://api.example.com/items/${create.id}",
        "always": False,
        "passed": False,
        "status": 200,
        "response_ms": 3.25,
        "body_bytes": 12,
        "error": "assertion",
        "error_detail": 'json $.id: expected 1, got 2 — "ünïcødé" \\ \x01',
    },
    {
        "name": "cleanup",
        "method": "DELETE",
        "url": "https://api.example.com/items/${create.id}",
        "always": True,
        "error_detail": "not run: ${create.id} was not extracted",
    },
]


@pytest.fixture
def db(migrated_conn):
    return migrated_conn


def steps_of(conn) -> dict[str, list | None]:
    with conn.cursor() as cur:
        cur.execute("SELECT site, steps FROM site_checks ORDER BY site")
        found = dict(cur.fetchall())
    conn.commit()
    return found


def test_a_flows_steps_are_stored_with_its_check_and_a_single_check_has_none(db):
    flow = observation("api", up=False, error="assertion", steps=STEPS)
    single = observation("shop")
    assert store_batch(db, [flow, single]) == StoreResult(inserted=2, duplicates=0, rejected=0)
    assert steps_of(db) == {"api": STEPS, "shop": None}


def test_the_drains_fast_path_stores_the_steps_as_the_strict_decoder_reads_them(db):
    # no control character: its \u escape would send the message the strict way
    plain = [{**step, "error_detail": "ünïcødé"} for step in STEPS]
    message = observation("api", steps=plain).to_message()
    row = fast_row(message)
    assert row is not None
    assert store_rows(db, [row]) == StoreResult(inserted=1, duplicates=0, rejected=0)
    assert steps_of(db) == {"api": Observation.from_message(message).steps}


def test_a_message_from_before_flows_stores_null(db):
    doc = json.loads(observation("old", T0 + timedelta(minutes=1)).to_message())
    del doc["steps"]  # a producer before migration 12 sends no such field
    row = fast_row(json.dumps(doc).encode())
    assert store_rows(db, [row]) == StoreResult(inserted=1, duplicates=0, rejected=0)
    assert steps_of(db) == {"old": None}


def test_a_row_written_by_a_drain_before_migration_12_has_no_steps(db):
    store_as_old_drain(db, T0)
    store_batch(db, [observation("api", steps=STEPS)])
    assert steps_of(db) == {"api": STEPS, "old": None}
