"""Builders of the records that tests store and send, one for each record, shared by every suite."""

from __future__ import annotations

from datetime import UTC, datetime

from sitewatch.observation import Observation

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def observation(site: str = "shop", at: datetime = T0, *, up: bool = True, **fields) -> Observation:
    """One attempt at ``site`` for the run scheduled at ``at``, as the probe task sends it.

    By default the run's first and final attempt, from the local location, started at ``at``
    (``checked_at``) at https://<site>.example/ and answered in 100 ms: with status 200 when
    ``up``, else with status 503 (error ``http_status``, detail ``status 503``). Any other field
    of ``Observation``, or any of these, is set by keyword (``location="east"``,
    ``response_time_ms=None``, ``maintenance=True``).
    """
    defaults = {
        "url": f"https://{site}.example/",
        "checked_at": at,
        "scheduled_at": at,
        "status_code": 200 if up else 503,
        "response_time_ms": 100.0,
        "error": None if up else "http_status",
        "error_detail": None if up else "status 503",
    }
    return Observation(site=site, up=up, **{**defaults, **fields})
