"""The ``locations`` and ``quorum`` site keys: where a site is checked from, and how many of those
places must see it down before it counts as down.

A location is a place that runs probes: an executor queue (``sitewatch.names.location_queue``) with
Celery workers listening on it there. A site checked from several locations is judged per run: down
when at least ``quorum`` locations saw it down after their retries, "partial" when some did but
fewer, up otherwise (``sitewatch.alerting.verdicts``). ``majority`` (the default) is more than half
of the locations, so one place with a bad network path never pages on its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sitewatch.config.values import describe, distinct, entries
from sitewatch.config.yamltree import Invalid
from sitewatch.errors import SettingError
from sitewatch.observation import LOCATION_NAME

MAJORITY = "majority"
MAX_LOCATIONS = 16
KEEP, IGNORE = "keep", "ignore"
"""The ``silent_location`` choices: what a location that stored nothing by a run's deadline
counts as in the run's verdict (docs/alerts.md, "Sites checked from several locations")."""


def check_locations(value: Any) -> tuple[str, ...]:
    """A list of 1..16 distinct names (``LOCATION_NAME``). Raises Invalid naming the item."""
    names = distinct(entries(value, _location, MAX_LOCATIONS, "location names"), "location ")
    if not names:
        raise Invalid("no location: name at least one (leave the key out for [local])")
    return names


def _location(value: Any) -> str:
    if not isinstance(value, str) or not LOCATION_NAME.fullmatch(value):
        raise Invalid(
            f"invalid location {describe(value)}: use at most 31 of a-z, 0-9, '_', '-';"
            " start with a letter or digit"
        )
    return value


def check_quorum(value: Any) -> int | None:
    """``majority`` (returned as None, which ``Site`` resolves) or a whole number from 1.

    Whether it fits the locations needs the whole entry: ``quorum_problem``. Raises Invalid.
    """
    if value == MAJORITY:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LOCATIONS:
        expected = f"expected 'majority' or a whole number from 1 to {MAX_LOCATIONS}"
        raise Invalid(f"{expected}, got {describe(value)}")
    return value


def check_silent_location(value: Any) -> str:
    """``keep`` (a silent location counts as what it last decided, so a site neither recovers
    nor goes down because a location went silent) or ``ignore`` (it counts neither way). Raises
    Invalid."""
    if value not in (KEEP, IGNORE):
        raise Invalid(f"expected {KEEP!r} or {IGNORE!r}, got {describe(value)}")
    return value


def majority(locations: tuple[str, ...]) -> int:
    """More than half of ``locations``: 1 of 1, 2 of 2, 2 of 3, 3 of 4."""
    return len(locations) // 2 + 1


def quorum_problem(values: Mapping[str, Any]) -> str | None:
    """The message when a complete set of site values asks for more locations than it has."""
    quorum, locations = values["quorum"], values["locations"]
    if quorum is None or quorum <= len(locations):
        return None
    have = f"{len(locations)} location" + ("s" if len(locations) != 1 else "")
    return f"quorum {quorum} is more than the site's {have} ({', '.join(locations)})"


GRACE_VAR = "SITEWATCH_VERDICT_GRACE_SECONDS"
DEFAULT_GRACE = timedelta(minutes=2)
MAX_GRACE = timedelta(hours=1)


def verdict_grace(environ: Mapping[str, str] = os.environ) -> timedelta:
    """``SITEWATCH_VERDICT_GRACE_SECONDS``: what a run of a multi-location site may take beyond its
    attempts (a queue's wait, a worker's start, Kafka's delivery, the drain's lag); default 120,
    0..3600. Read where a DAG is built (its run timeout) and by the drain (its verdict deadline):
    set it alike for both. Raises SettingError."""
    text = environ.get(GRACE_VAR, "").strip()
    if not text:
        return DEFAULT_GRACE
    if not text.isdigit() or int(text) > MAX_GRACE.total_seconds():
        raise SettingError(
            f"{GRACE_VAR}={text!r}: expected whole seconds from 0 to"
            f" {int(MAX_GRACE.total_seconds())} (default {int(DEFAULT_GRACE.total_seconds())})"
        )
    return timedelta(seconds=int(text))


def run_deadline(site, grace: timedelta) -> timedelta:
    """How long after its scheduled time a run of ``site`` may still be checking: every attempt's
    timeout and every wait between retries, plus ``grace``. A location with nothing final by then
    is missing from the run's verdict, and Airflow times the run out (``dagrun_timeout``)."""
    attempts = (site.retries + 1) * timedelta(seconds=site.timeout)
    return attempts + site.retries * site.retry_delay + grace
