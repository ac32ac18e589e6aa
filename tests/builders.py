"""Builders of the records that tests store and send, one for each record, shared by every suite;
and of the sites files that tests write."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sitewatch.observation import Observation

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DAILY = "'0 0 * * *'"  # a schedule whose last tick is due at once, and the next out of the test


def observation(site: str = "shop", at: datetime = T0, *, up: bool = True, **fields) -> Observation:
    """One attempt at ``site`` for the run scheduled at ``at``, as the probe task sends it.

    By default the run's first and final attempt, from the local location, started at ``at``
    (``checked_at``) at https://<site>.example/ and answered in 100 ms: with status 200 when
    ``up``, else with status 503 (error ``status``, detail ``status 503 not in 200-399``, as
    the probe reports it). Any other field of ``Observation``, or any of these, is set by
    keyword (``location="east"``, ``response_time_ms=None``, ``maintenance=True``).
    """
    defaults = {
        "url": f"https://{site}.example/",
        "checked_at": at,
        "scheduled_at": at,
        "status_code": 200 if up else 503,
        "response_time_ms": 100.0,
        "error": None if up else "status",
        "error_detail": None if up else "status 503 not in 200-399",
    }
    return Observation(site=site, up=up, **{**defaults, **fields})


def sites_file(names: Iterable[str], url: str, **keys) -> str:
    """A sites file with a site of each of ``names``, all at ``url`` with the same ``keys``, each
    written as given (``schedule="'0 0 * * *'"``, ``retries=0``)."""
    settings = "".join(f"    {key}: {value}\n" for key, value in keys.items())
    return "sites:\n" + "".join(f"  - name: {name}\n    url: {url}\n{settings}" for name in names)


def one_site_dag(text: str, tmp_path, monkeypatch):
    """The DAG of the first site of sites-file ``text``, written to ``tmp_path``/sites.yaml and
    made the sites file (``SITEWATCH_SITES_FILE``), as an operator would; the file must be
    valid."""
    from sitewatch.airflow.factory import site_dag as build
    from sitewatch.config.loader import load_sites

    path = tmp_path / "sites.yaml"
    path.write_text(text)
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(path))
    sites = load_sites(path)
    assert sites.issues == []
    return build(sites.sites[0])
