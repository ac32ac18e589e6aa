"""``/sitewatch/metrics`` (issue 18): who may scrape it, and one scrape's figures.

Prometheus cannot log in, so the route has an auth of its own: an Airflow API token (the JWT of
``POST /auth/token``, as a Bearer header: Prometheus's ``authorization`` or
``bearer_token_file``) of a user who may read DAGs, or the static scrape token of
``$SITEWATCH_METRICS_TOKEN`` when the operator set one (Airflow's tokens expire, 24 h by
default). Anonymous scrapes are refused unless ``$SITEWATCH_METRICS_ANONYMOUS`` is true, for a
private network.

A scrape reads small tables only (``storage.metrics``: one ``site_latest`` row per site and
location, the rollups, ``sitewatch_counters``; the SLO budgets from the hourly rollup), seven
queries whatever the number of sites or checks (eight with a flow: its latest checks' steps, by
key), plus one read of the drain group's lag from Kafka, bounded by ``KAFKA_TIMEOUT``.
Measurements: bench/results.md.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sitewatch.dashboard import maintenance
from sitewatch.dashboard.metrics import SiteFigures, Snapshot
from sitewatch.dashboard.status import site_state
from sitewatch.errors import SettingError
from sitewatch.pipeline.lag import KafkaLag, LagReader
from sitewatch.storage import metrics
from sitewatch.storage.mutes import mutes_in_force
from sitewatch.storage.verdicts import DOWN, UP, latest_verdicts
from sitewatch.web import slo_figures
from sitewatch.web.host import Host

log = logging.getLogger(__name__)

TOKEN_VAR = "SITEWATCH_METRICS_TOKEN"
ANONYMOUS_VAR = "SITEWATCH_METRICS_ANONYMOUS"
KAFKA_TIMEOUT = 3.0
"""Seconds one scrape waits for Kafka at most: Prometheus's scrape_timeout is 10 s by default."""

_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off", "")
_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class ScrapeSettings:
    """token: the static scrape token (None: only Airflow's tokens); anonymous: serve anyone."""

    token: str | None = None
    anonymous: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ScrapeSettings:
        """Read ``$SITEWATCH_METRICS_TOKEN`` (empty: none) and ``$SITEWATCH_METRICS_ANONYMOUS``.
        Raises SettingError naming the variable when the latter is not a yes or a no."""
        word = environ.get(ANONYMOUS_VAR, "").strip().lower()
        if word not in _TRUE + _FALSE:
            value = environ[ANONYMOUS_VAR]
            raise SettingError(f"{ANONYMOUS_VAR}={value!r}: expected true or false (default false)")
        return cls(token=environ.get(TOKEN_VAR, "").strip() or None, anonymous=word in _TRUE)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def scrape_auth(host: Host) -> Callable:
    """The dependency of ``/metrics``: let a scrape through, or answer 401 (no or a wrong token)
    or 403 (a user who may not read DAGs), asking ``host`` who the caller is and what they may
    read. A malformed ``$SITEWATCH_METRICS_ANONYMOUS`` refuses every scrape with a 500 naming
    it, rather than guessing which way the operator meant."""

    async def scrape_authorized(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        try:
            settings = ScrapeSettings.from_env()
        except SettingError as exc:
            raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from exc
        if settings.anonymous:
            return
        if _static_token(bearer, settings.token):
            return
        try:
            user = await host.user(request, bearer)
        except HTTPException as exc:
            raise _unauthorized(
                "a Bearer token is required: an Airflow API token or $SITEWATCH_METRICS_TOKEN"
            ) from exc
        if not host.may_read(user, None):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")

    return scrape_authorized


def _static_token(bearer: HTTPAuthorizationCredentials | None, token: str | None) -> bool:
    """Whether the request's Bearer token is the static scrape token (in constant time)."""
    if bearer is None or token is None:
        return False
    return hmac.compare_digest(bearer.credentials.encode(), token.encode())


class DrainLag:
    """The drain group's lag reader of this process (``pipeline.lag.LagReader``, from ``make``:
    one Kafka consumer kept between scrapes), made at the first scrape. A failed read is a
    scrape with ``sitewatch_kafka_up 0``, logged when its reason changes (not at every scrape)."""

    def __init__(self, make: Callable[[], LagReader]) -> None:
        self._make = make
        self._reader: LagReader | None = None
        self._lock = threading.Lock()
        self._error: str | None = None

    def read(self) -> KafkaLag:
        with self._lock:
            if self._reader is None:
                self._reader = self._make()
            reader = self._reader
        lag = reader.read(KAFKA_TIMEOUT)
        if lag.error != self._error:
            self._error = lag.error
            if lag.error is not None:
                log.warning("metrics: cannot read the drain group's Kafka lag: %s", lag.error)
        return lag


def gather(
    conn,
    configured: Mapping,
    now: datetime,
    kafka: KafkaLag | None,
    started: float,
    problems: int = 0,
) -> Snapshot:
    """One scrape's ``Snapshot`` of the ``configured`` sites (name -> ``Site``: the enabled ones
    of the sites file; a site removed from it drops out of the metrics, as its DAG does).

    kafka: the lag already read (None: not read). started: ``time.perf_counter()`` when the
    scrape began, for ``sitewatch_metrics_duration_seconds``. problems: how many the sites file
    has (a file that cannot be parsed has no sites: this says why). Raises StorageError.
    """
    names = sorted(configured)
    several = [name for name, site in configured.items() if site.several_locations]
    checks = metrics.latest_by_site(conn, names)
    verdicts = latest_verdicts(conn, several)
    uptimes = metrics.uptimes(conn, names, now)
    mutes = mutes_in_force(conn, names, now)
    budgets = slo_figures.budgets(conn, configured, now, burn=False)
    pipeline = metrics.pipeline(conn)
    in_window = maintenance.in_maintenance(configured, names, mutes, now)
    flows = [row for name in names if configured[name].steps for row in checks.get(name, [])]
    steps = metrics.latest_steps(conn, flows)
    sites = []
    for name in names:
        latest = checks.get(name, [])
        state, up = site_state(configured[name], latest, verdicts.get(name), name in in_window, now)
        outcomes = verdicts[name][2] if name in verdicts else {}
        silent = {loc: outcome not in (UP, DOWN) for loc, outcome in outcomes.items()}
        figures = (uptimes.get(name, {}), budgets.get(name), latest, silent)
        by_location = {loc: found for (site, loc), found in steps.items() if site == name}
        sites.append(SiteFigures(name, state, up, *figures, steps=by_location))
    duration = time.perf_counter() - started
    return Snapshot(now, len(configured), sites, pipeline, kafka, duration, problems)
