"""A run's verdict across the locations of a site, as a pure function.

Each location of a run ends ``up`` (an attempt was up), ``down`` (its final attempt was down) or,
when nothing final from it was stored by the run's deadline, ``missing``. The run is

- ``down`` when at least ``quorum`` locations saw it down,
- ``partial`` when some did but fewer than ``quorum``,
- ``up`` otherwise.

A missing location counts neither way: it is sitewatch failing in that place (a dead worker, a
network between the worker and Kafka), which is a pipeline problem of that location, never a
statement about the site. Nothing here touches the database or Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sitewatch.storage.verdicts import DOWN, MISSING, PARTIAL, UP

__all__ = ["DOWN", "MISSING", "UP", "Decision", "RunVerdict", "decide_run"]


class RunVerdict(StrEnum):
    """A run's verdict, as ``site_verdicts.verdict`` stores it."""

    UP = UP
    DOWN = DOWN
    PARTIAL = PARTIAL


@dataclass(frozen=True)
class Decision:
    """The verdict of one run and what each location saw (``UP``, ``DOWN`` or ``MISSING``)."""

    verdict: RunVerdict
    quorum: int
    locations: Mapping[str, str]

    def where(self, outcome: str) -> list[str]:
        """The locations that ended ``outcome``, in the site's order."""
        return [loc for loc, seen in self.locations.items() if seen == outcome]

    @property
    def summary(self) -> str:
        """``down from 2 of 3 locations (quorum 2): eu, us; up: ap`` (the verdict aside)."""
        down, up, missing = self.where(DOWN), self.where(UP), self.where(MISSING)
        parts = [
            f"down from {len(down)} of {len(self.locations)} locations"
            f" (quorum {self.quorum})" + (f": {', '.join(down)}" if down else "")
        ]
        if up:
            parts.append(f"up: {', '.join(up)}")
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        return "; ".join(parts)


def decide_run(
    locations: Sequence[str], quorum: int, seen: Mapping[str, str], *, deadline_passed: bool
) -> Decision | None:
    """The run's decision, or None while a location may still report.

    locations: the site's locations; quorum: its quorum (1..len(locations)). seen: location ->
    ``UP`` or ``DOWN`` for the locations that ended (others are still retrying or never reported;
    a location the site no longer has is ignored). deadline_passed: the run's deadline is over,
    so every location not in ``seen`` is ``MISSING``. Returns None when a location may still
    report, and when none reported at all (nothing to judge: no verdict is stored for such a run).
    """
    outcomes = {loc: seen.get(loc, MISSING) for loc in locations}
    reported = [loc for loc, outcome in outcomes.items() if outcome != MISSING]
    if not reported or (len(reported) < len(locations) and not deadline_passed):
        return None
    down = sum(outcome == DOWN for outcome in outcomes.values())
    if down >= quorum:
        verdict = RunVerdict.DOWN
    elif down:
        verdict = RunVerdict.PARTIAL
    else:
        verdict = RunVerdict.UP
    return Decision(verdict, quorum, outcomes)
