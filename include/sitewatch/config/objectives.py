"""The noise and objective keys: ``degraded_ms``, ``flapping`` and ``slo`` (issue 17).

Each record type here owns its defaults (``Flapping()``, ``DEFAULT_BURN_RULES``, ``Slo``'s
window); the checks turn a sites-file value into one, and a problem inside a mapping is raised
with a path item, so it is reported as ``sites[2].slo.burn[0].factor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sitewatch.config.schedule import format_duration
from sitewatch.config.values import (
    checked,
    describe,
    duration,
    entries,
    integer,
    only_keys,
)
from sitewatch.config.yamltree import Invalid


@dataclass(frozen=True, slots=True)
class Flapping:
    """More than ``changes`` state changes within ``window`` is flapping: one FLAPPING alert, then
    silence until the state has held for ``stable``, then the current state is sent."""

    changes: int = 4
    window: timedelta = timedelta(hours=1)
    stable: timedelta = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class BurnRule:
    """Alert ``severity`` (``page`` or ``warn``) when the error budget burns at ``factor`` times
    the sustainable rate over both ``long`` and ``short`` (Google SRE workbook, multiwindow)."""

    severity: str
    factor: float
    long: timedelta
    short: timedelta


DEFAULT_BURN_RULES = (
    BurnRule("page", 14.4, timedelta(hours=1), timedelta(minutes=5)),
    BurnRule("warn", 6.0, timedelta(hours=6), timedelta(minutes=30)),
)


DEFAULT_SLO_WINDOW = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Slo:
    """An availability objective: ``target`` percent (e.g. 99.9) of final checks up over a rolling
    ``window``, maintenance excluded; optionally ``p95_ms``, a latency objective on final up
    checks; ``burn`` the burn-rate alert rules."""

    target: float
    window: timedelta = DEFAULT_SLO_WINDOW
    p95_ms: int | None = None
    burn: tuple[BurnRule, ...] = DEFAULT_BURN_RULES

    @property
    def budget(self) -> float:
        """The error budget as a fraction of checks (0.001 for 99.9)."""
        return 1 - self.target / 100

    @property
    def label(self) -> str:
        """The objective as people read it everywhere it is shown: ``99.9% over 30d``."""
        return f"{self.target:g}% over {format_duration(self.window)}"


FLAPPING_KEYS = ("changes", "window", "stable")
SLO_KEYS = ("target", "window", "p95_ms", "burn")
BURN_KEYS = ("severity", "factor", "long", "short")
SEVERITIES = ("page", "warn")
MAX_RESPONSE_MS = 300_000
"""The most any response-time threshold (``max_response_ms``, ``degraded_ms``, ``p95_ms``) may
be: five minutes, the longest ``timeout``."""
MAX_BURN_RULES, MAX_FACTOR = 10, 1000
MIN_SLO_WINDOW, MAX_SLO_WINDOW = timedelta(days=1), timedelta(days=90)
_MINUTE, _DAY = timedelta(minutes=1), timedelta(days=1)


def check_milliseconds(value: Any) -> int | None:
    """``null`` or a response time in whole milliseconds, 1..``MAX_RESPONSE_MS``."""
    return None if value is None else integer(value, 1, MAX_RESPONSE_MS)


def degraded_problem(values: Mapping[str, Any]) -> str | None:
    """The message when a complete set of site values could never be degraded: a check slower
    than ``max_response_ms`` is down, so ``degraded_ms`` must be below it."""
    degraded, limit = values["degraded_ms"], values["max_response_ms"]
    if degraded is None or limit is None or degraded < limit:
        return None
    return (
        f"degraded_ms {degraded} must be below max_response_ms {limit}"
        " (a check slower than max_response_ms is down, not degraded)"
    )


def flapping_default() -> dict[str, Any]:
    """``Flapping()`` as a sites file writes it, for the key's declared default: ``Flapping``
    stays the one owner of the numbers."""
    rule = Flapping()
    window, stable = format_duration(rule.window), format_duration(rule.stable)
    return {"changes": rule.changes, "window": window, "stable": stable}


def check_flapping(value: Any) -> Flapping | None:
    """``false`` or ``null``: off; ``true`` or a mapping of some of ``changes`` (2..100),
    ``window`` and ``stable`` (1m..1d each), the others taking ``Flapping``'s defaults. Raises
    Invalid, ``item`` naming the key."""
    if value is None or value is False:
        return None
    if value is True:
        return Flapping()
    if not isinstance(value, dict):
        raise Invalid(
            "expected a mapping of changes, window and stable, or false to turn flapping"
            f" detection off, got {describe(value)}"
        )
    only_keys(value, FLAPPING_KEYS)
    given = {
        "changes": checked(lambda v: integer(v, 2, 100), value, "changes"),
        "window": checked(_flapping_span, value, "window"),
        "stable": checked(_flapping_span, value, "stable"),
    }
    return Flapping(**{key: v for key, v in given.items() if v is not None})


def _flapping_span(value: Any) -> timedelta:
    return duration(value, _MINUTE, _DAY)


def check_slo(value: Any) -> Slo | None:
    """``null`` (no objective) or a mapping with ``target`` and optionally ``window`` (1d..90d),
    ``p95_ms`` and ``burn`` (``null`` or ``[]``: no burn-rate alerts; absent: the defaults).
    Raises Invalid, ``item`` a path like ``("burn", 0, "factor")``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid(
            f"expected a mapping like {{target: 99.9, window: 30d}}, got {describe(value)}"
        )
    only_keys(value, SLO_KEYS)
    if "target" not in value:
        raise Invalid("an slo needs 'target', the percentage of checks up (e.g. 99.9)")
    given = {
        "target": checked(_target, value, "target"),
        "window": checked(lambda v: duration(v, MIN_SLO_WINDOW, MAX_SLO_WINDOW), value, "window"),
        "p95_ms": checked(check_milliseconds, value, "p95_ms"),
    }
    slo = Slo(**{key: v for key, v in given.items() if v is not None})
    if "burn" in value:
        burn = checked(lambda v: _burn_rules(v, slo.window), value, "burn")
        slo = Slo(slo.target, slo.window, slo.p95_ms, burn)
    for index, rule in enumerate(slo.burn):
        _check_reachable(slo, rule, index if "burn" in value else None)
    return slo


def _target(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Invalid(f"expected a percentage like 99.9, got {describe(value)}")
    if not 50 < value < 100:
        raise Invalid(f"must be more than 50 and less than 100 (percent), got {value}")
    return float(value)


def _burn_rules(value: Any, window: timedelta) -> tuple[BurnRule, ...]:
    return entries(value, partial(_burn_rule, window=window), MAX_BURN_RULES, "burn-rate rules")


def _burn_rule(entry: Any, window: timedelta) -> BurnRule:
    if not isinstance(entry, dict):
        raise Invalid(
            "expected a mapping like {severity: page, factor: 14.4, long: 1h, short: 5m},"
            f" got {describe(entry)}"
        )
    only_keys(entry, BURN_KEYS)
    for key in BURN_KEYS:
        if key not in entry:
            raise Invalid(f"a burn-rate rule needs {key!r}")
    long = checked(_burn_span, entry, "long")
    short = checked(_burn_span, entry, "short")
    if short >= long:
        message = f"short {entry['short']} must be shorter than long {entry['long']}"
        raise Invalid(message, item=("short",))
    if long > window:
        message = f"long {entry['long']} is longer than the slo's window {format_duration(window)}"
        raise Invalid(message, item=("long",))
    severity = checked(_severity, entry, "severity")
    return BurnRule(severity, checked(_factor, entry, "factor"), long, short)


def _burn_span(value: Any) -> timedelta:
    return duration(value, _MINUTE, MAX_SLO_WINDOW)


def _severity(value: Any) -> str:
    if value not in SEVERITIES:
        raise Invalid(f"severity must be page or warn, got {describe(value)}")
    return value


def _factor(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Invalid(f"expected a number like 14.4, got {describe(value)}")
    if not 1 < value <= MAX_FACTOR:
        raise Invalid(f"must be more than 1 and at most {MAX_FACTOR}, got {value}")
    return float(value)


def _check_reachable(slo: Slo, rule: BurnRule, index: int | None) -> None:
    """Refuse a rule that can never fire. Burning at ``factor`` means ``factor`` times the
    budget of checks failing, and no more than all of them can: 14.4x of 99's 1% budget is
    14.4%, of 90's 10% it would be 144%. ``index`` None: a default rule."""
    needed = rule.factor * slo.budget
    if needed <= 1 + 1e-9:  # the budget is a float: 14.4 * 0.001 must not round past 100%
        return
    failing = f"{needed * 100:.4g}% of checks failing"
    if index is not None:
        message = (
            f"factor {rule.factor:g} can never fire with target {slo.target:g}: it needs {failing}"
        )
        raise Invalid(message, item=("burn", index, "factor"))
    raise Invalid(
        f"with target {slo.target:g} the default {rule.severity} rule ({rule.factor:g}x) can"
        f" never fire: it needs {failing}; write burn rules that fit the target",
        item=("target",),
    )


def slow(degraded_ms: float | None, response_ms: float | None) -> bool:
    """Whether an up check that took ``response_ms`` is degraded for a site whose
    ``degraded_ms`` is this (None: never degraded)."""
    return degraded_ms is not None and response_ms is not None and response_ms > degraded_ms
