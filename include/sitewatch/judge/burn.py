"""Burn-rate alerts, evaluated where every check is stored: the drain (its ``on_caught_up`` hook).

Each site with an ``slo`` has its rules (``slo.burn``: by default page at 14.4x over 1 h and
5 min, warn at 6x over 6 h and 30 min) evaluated at most every ``EVERY`` seconds, while the drain
has read everything there is, so a lagging drain never judges a budget from checks that wait in
Kafka. One query counts every site's checks over its own rules' window lengths
(``storage.slo``: a site's rows are read over its own longest window, so one site with a 90-day
rule costs its own 90 days, not everyone's), each statement limited to
``SITEWATCH_QUERY_TIMEOUT_SECONDS`` (``storage.timeouts``: past it the evaluation fails with
StorageError, logged while the drain goes on; the next one runs a minute later); the
state of each alert is a ``site_slo_alerts`` row (``alerting.slo.step``): SLO BURN goes out once
when a rule starts firing, SLO BURN OVER once when it stops, through the same notifiers as every
alert. A send that failed is released and tried again at the next evaluation that finds it firing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sitewatch.alerting.rules import Alert, Kind
from sitewatch.alerting.slo import Burn, Notice, burn_lengths, evaluate, step
from sitewatch.config.schedule import format_duration
from sitewatch.storage import slo as slo_store
from sitewatch.storage.timeouts import query_timeout

log = logging.getLogger(__name__)

EVERY = 60.0


class BurnAlerts:
    """``drain``'s ``on_caught_up`` hook for burn-rate alerts; see the module doc.

    session: the drain run's alerting session (``sitewatch.judge.session.Session``), whose
    connection is opened at the first evaluation with a site that has an ``slo`` and whose
    ``send`` delivers the messages. clock: the time of an evaluation. timeout: seconds each
    statement may run (None: ``query_timeout()``, read at each evaluation). Raises what the
    connection or the queries raise (StorageError; SettingError for an unusable timeout
    setting); the caller logs it and goes on.
    """

    def __init__(
        self,
        session,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        every: float = EVERY,
        timeout: float | None = None,
    ) -> None:
        self._session, self._clock, self._every = session, clock, every
        self._timeout = timeout
        self._last = float("-inf")

    def __call__(self) -> None:
        if time.monotonic() - self._last < self._every:
            return
        self._last = time.monotonic()
        sites = self._session.sites().values()
        sites = [s for s in sites if s.enabled and s.slo is not None and s.slo.burn]
        if sites:
            self.evaluate(sites, self._clock())

    def evaluate(self, sites, now: datetime) -> list[Alert]:
        """Evaluate every rule of ``sites`` at ``now``; return the alerts sent or tried."""
        timeout = self._timeout if self._timeout is not None else query_timeout()
        conn = self._session.connection()
        lengths = {site.name: burn_lengths(site.slo) for site in sites}
        counts = slo_store.burn_counts(conn, lengths, now, timeout=timeout)
        firing = slo_store.slo_alerts(conn, list(lengths), timeout=timeout)
        alerts = []
        for site in sites:
            for burn in evaluate(site.slo, counts.get(site.name, {})):
                current = firing.get((site.name, burn.rule.severity))
                alert = self._step(conn, site, burn, current, now)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _step(self, conn, site, burn: Burn, current, now: datetime) -> Alert | None:
        row, notice = step(current, site.name, burn, now)
        if row is None:
            if current is None or slo_store.delete_slo_alert(conn, *_key(current)) is None:
                return None  # not firing, or another evaluator ended it and says so
        else:
            inserted = slo_store.save_slo_alert(conn, row)
            if notice is Notice.FIRING and current is None and not inserted:
                return None  # another evaluator started it and sends the message
        if notice is None:
            return None
        alert = _alert(site, burn, notice, current.firing_since if current else now, now)
        delivered = self._session.send(alert, site.notify, {})
        log.info(
            "burn: site=%s rule=%s long=%s short=%s notice=%s delivered=%s",
            site.name,
            burn.rule.severity,
            _rate(burn.long),
            _rate(burn.short),
            notice.value,
            delivered,
        )
        if not delivered and notice is Notice.FIRING and site.notify:
            slo_store.release_slo_alert(conn, site.name, burn.rule.severity, now)
        return alert


def _key(alert) -> tuple[str, str]:
    return alert.site, alert.severity


def _alert(site, burn: Burn, notice: Notice, since: datetime, now: datetime) -> Alert:
    rule = burn.rule
    detail = (
        f"{_rate(burn.long)} over {format_duration(rule.long)} and {_rate(burn.short)} over"
        f" {format_duration(rule.short)} (alert at {rule.factor:g}x); objective"
        f" {site.slo.label}"
    )
    kind = Kind.SLO_BURN if notice is Notice.FIRING else Kind.SLO_BURN_OVER
    error = f"{rule.severity} burn rate" if kind is Kind.SLO_BURN else None
    return Alert(site.name, site.url, kind, now, since, error, detail, severity=rule.severity)


def _rate(value: float | None) -> str:
    return "no data" if value is None else f"{value:.1f}x"
