"""SLO arithmetic and burn-rate alerting (issue 17): pure functions, no I/O.

A site's objective (``sitewatch.config.objectives.Slo``) allows ``budget = 1 - target/100`` of
its final checks outside maintenance to be down over its window. From the counts that
``sitewatch.storage.slo`` reads:

- attainment: the percentage of checks up;
- budget left: the fraction of the budget not spent (1 untouched, 0 spent, below 0 overspent),
  and the same as minutes of downtime left in the window, where the whole budget is
  ``window x budget`` minutes (43.2 minutes for 99.9% over 30 days);
- burn rate: how many times faster than sustainable the budget is spent,
  ``(bad / total) / budget``; 1 spends exactly the budget over the window;
- a ``BurnRule`` fires when the burn rate over both its long and its short window reaches its
  factor (Google SRE workbook, multiwindow, multi-burn-rate alerts): the long window makes it
  significant, the short one makes it stop soon after the burning does. A window without checks
  never fires.

``step`` is the state of one rule's alert for one site (a row of ``site_slo_alerts`` while it
fires): it notifies once when the alert starts, stays silent while it keeps firing, and when it
stops the row goes and a RESOLVED note is sent, if the start was notified. The note is sent
because a page opens an incident somewhere (PagerDuty, a person's attention) that someone must
know is over; the short window makes a stop follow the end of the burning within minutes, so a
resolved alert that fires again is a new burn worth a new message.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from sitewatch.config.objectives import BurnRule, Slo
from sitewatch.storage.slo import SloAlert, Tally


def attainment(tally: Tally) -> float | None:
    """The percentage of checks up (99.95), None without checks."""
    return 100 * tally.ups / tally.checks if tally.checks else None


def budget_left(tally: Tally, slo: Slo) -> float | None:
    """The fraction of the error budget not spent: 1 - burn rate (the window's burn rate is
    the fraction spent). Below 0 when overspent; None without checks."""
    rate = burn_rate(tally.bad, tally.checks, slo)
    return None if rate is None else 1 - rate


def minutes_left(tally: Tally, slo: Slo) -> float | None:
    """Minutes of downtime left in the window: ``window x (budget - bad/checks)``, the budget's
    minutes (``window x budget``) less the minutes the down checks stand for. Negative when
    overspent; None without checks."""
    if not tally.checks:
        return None
    return slo.window / timedelta(minutes=1) * (slo.budget - tally.bad / tally.checks)


def burn_rate(bad: int, total: int, slo: Slo) -> float | None:
    """``(bad / total) / budget``; None when ``total`` is 0 (no data). A target of 100 has no
    budget: any bad check burns it infinitely fast (``math.inf``), none does not (0)."""
    if not total:
        return None
    if slo.budget <= 0:
        return math.inf if bad else 0.0
    return bad / total / slo.budget


def latency_met(p95_ms: float | None, slo: Slo) -> bool | None:
    """Whether the window's p95 is within ``slo.p95_ms``; None without a latency objective or
    without up checks to measure."""
    return None if slo.p95_ms is None or p95_ms is None else p95_ms <= slo.p95_ms


def burn_lengths(slo: Slo) -> set[timedelta]:
    """Every window length ``slo``'s rules need counted (``storage.slo.burn_counts``)."""
    return {length for rule in slo.burn for length in (rule.long, rule.short)}


def firing(rule: BurnRule, long: float | None, short: float | None) -> bool:
    """True when the burn rates over both the rule's windows reach its factor; a window
    without data (None) never fires."""
    return long is not None and short is not None and min(long, short) >= rule.factor


@dataclass(frozen=True)
class Burn:
    """One rule evaluated: its burn rates over the long and short windows (None: no data)."""

    rule: BurnRule
    long: float | None
    short: float | None

    @property
    def firing(self) -> bool:
        return firing(self.rule, self.long, self.short)


def evaluate(slo: Slo, counts: Mapping[timedelta, Tally]) -> list[Burn]:
    """Each of ``slo``'s rules with its burn rates, from a site's counts per window length
    (``storage.slo.burn_counts``; a missing length counts as no data)."""
    empty = Tally(0, 0)

    def rate(length: timedelta) -> float | None:
        tally = counts.get(length, empty)
        return burn_rate(tally.bad, tally.checks, slo)

    return [Burn(rule, rate(rule.long), rate(rule.short)) for rule in slo.burn]


class Notice(StrEnum):
    """What to send about a burn-rate alert."""

    FIRING = "firing"
    RESOLVED = "resolved"


def step(
    current: SloAlert | None, site: str, burn: Burn, now: datetime
) -> tuple[SloAlert | None, Notice | None]:
    """The alert of ``burn.rule`` for ``site`` after an evaluation at ``now``.

    current: its ``site_slo_alerts`` row (None: not firing). Returns (the row to store, None to
    delete it; the notice to send, None to stay silent):

    ==========  ========================  ==========================================
    current     burn                      result
    ==========  ========================  ==========================================
    none        not firing                none, silent
    none        firing                    new row claimed at ``now``, FIRING
    row         firing                    row with the new rates, silent (FIRING
                                          again if its message was released unsent)
    row         not firing                none, RESOLVED if its FIRING was claimed
    ==========  ========================  ==========================================

    A notice is claimed in the row (``last_notified_at = now``) before it is sent; a failed send
    is undone with ``storage.slo.release_slo_alert`` so the next evaluation sends it again.
    """
    if not burn.firing:
        if current is None or current.last_notified_at is None:
            return None, None  # nothing went out, so there is nothing to resolve
        return None, Notice.RESOLVED
    rates = {"burn_long": burn.long, "burn_short": burn.short}
    if current is None:
        started = SloAlert(site, burn.rule.severity, now, last_notified_at=now, **rates)
        return started, Notice.FIRING
    if current.last_notified_at is None:
        return dataclasses.replace(current, last_notified_at=now, **rates), Notice.FIRING
    return dataclasses.replace(current, **rates), None


def window_days(slo: Slo, now: datetime) -> tuple[date, date]:
    """The UTC days (first, last) of the window ending at ``now``, for ``budget_series``."""
    now = now.astimezone(UTC)
    return (now - slo.window).date(), now.date()


def budget_series(days: Sequence[tuple[date, Tally]], slo: Slo) -> list[tuple[date, float | None]]:
    """The error budget left after each day (``storage.slo.daily_tallies`` over
    ``window_days``) from the first day with checks: 1 - the bad checks so far / the bad
    checks the whole series allows (``budget x`` its checks), so the last point is the
    series' ``budget_left``. The days before the first check are left out, so a site checked
    for minutes has one point, not a window of 100%; empty without checks.

    Trade-off: days are whole UTC days of the daily rollup, so the series covers up to a day
    more than the window, and its last point can differ a little from ``budget_left`` over the
    window's hours.
    """
    total = sum(tally.checks for _, tally in days)
    series: list[tuple[date, float | None]] = []
    bad = 0
    for day, tally in days:
        if not series and not tally.checks:
            continue
        bad += tally.bad
        rate = burn_rate(bad, total, slo)
        series.append((day, None if rate is None else 1 - rate))
    return series
