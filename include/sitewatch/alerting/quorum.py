"""A run's verdict across the locations of a site, as a pure function.

Each location of a run ends ``up`` (an attempt was up), ``down`` (its final attempt was down) or,
when nothing final from it was stored by the run's deadline, ``missing``. The run is

- ``down`` when at least ``quorum`` locations saw it down,
- ``partial`` when some did but fewer than ``quorum``,
- ``up`` otherwise.

A missing location is sitewatch failing in that place (a dead worker, a network between the
worker and Kafka): a pipeline problem of that location, never a statement about the site. With
``silent_location: keep`` (the default) it counts as what it last decided, recorded as stale
(``missing, last down``), so a site neither recovers nor goes down because the place that saw it
lost sight of it; with ``ignore``, or when it never decided anything, it counts neither way.
Nothing here touches the database or Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sitewatch.storage.verdicts import DOWN, MISSING, PARTIAL, STALE, UP

__all__ = ["DOWN", "MISSING", "UP", "Decision", "RunVerdict", "decide_run", "last_word"]


class RunVerdict(StrEnum):
    """A run's verdict, as ``site_verdicts.verdict`` stores it."""

    UP = UP
    DOWN = DOWN
    PARTIAL = PARTIAL


@dataclass(frozen=True)
class Decision:
    """The verdict of one run and what each location saw: ``UP``, ``DOWN``, ``MISSING``, or a
    silent location's last word (``missing, last down``)."""

    verdict: RunVerdict
    quorum: int
    locations: Mapping[str, str]

    def where(self, outcome: str) -> list[str]:
        """The locations that ended ``outcome`` in this run, in the site's order."""
        return [loc for loc, seen in self.locations.items() if seen == outcome]

    @property
    def silent(self) -> list[str]:
        """The locations that stored nothing final by the deadline, stale or not."""
        return [loc for loc, seen in self.locations.items() if seen not in (UP, DOWN)]

    @property
    def summary(self) -> str:
        """``down from 2 of 3 locations (quorum 2): eu, us; up: ap`` (the verdict aside); a
        silent location that counted reads ``us (silent, last down)``."""
        named: dict[str | None, list[str]] = {DOWN: [], UP: [], None: []}
        for loc, seen in self.locations.items():
            word = last_word(seen)
            named[word].append(
                loc if seen in (UP, DOWN, MISSING) else f"{loc} (silent, last {word})"
            )
        down, up, missing = named[DOWN], named[UP], named[None]
        parts = [
            f"down from {len(down)} of {len(self.locations)} locations"
            f" (quorum {self.quorum})" + (f": {', '.join(down)}" if down else "")
        ]
        if up:
            parts.append(f"up: {', '.join(up)}")
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        return "; ".join(parts)


def last_word(outcome: str) -> str | None:
    """What a stored location outcome counts as: ``UP`` or ``DOWN`` (a stale one's last word
    too), None for ``MISSING``."""
    word = outcome.removeprefix(STALE)
    return word if word in (UP, DOWN) else None


def decide_run(
    locations: Sequence[str],
    quorum: int,
    seen: Mapping[str, str],
    *,
    deadline_passed: bool,
    previous: Mapping[str, str] | None = None,
) -> Decision | None:
    """The run's decision, or None while a location may still report.

    locations: the site's locations; quorum: its quorum (1..len(locations)). seen: location ->
    ``UP`` or ``DOWN`` for the locations that ended (others are still retrying or never reported;
    a location the site no longer has is ignored). deadline_passed: the run's deadline is over,
    so every location not in ``seen`` is silent. previous: the outcomes of the site's verdict
    before this run (``silent_location: keep``; None for ``ignore``): a silent location counts
    as its last word there (``missing, last down``), else it is ``MISSING``. Returns None when a
    location may still report, and when none reported at all (nothing to judge: no verdict is
    stored for such a run).
    """
    outcomes = {loc: seen.get(loc) or _silent(loc, previous) for loc in locations}
    reported = [loc for loc in locations if loc in seen]
    if not reported or (len(reported) < len(locations) and not deadline_passed):
        return None
    down = sum(last_word(outcome) == DOWN for outcome in outcomes.values())
    if down >= quorum:
        verdict = RunVerdict.DOWN
    elif down:
        verdict = RunVerdict.PARTIAL
    else:
        verdict = RunVerdict.UP
    return Decision(verdict, quorum, outcomes)


def _silent(location: str, previous: Mapping[str, str] | None) -> str:
    """A silent location's outcome: its last word before, as stale, when kept and known."""
    word = last_word(previous.get(location, MISSING)) if previous is not None else None
    return MISSING if word is None else STALE + word
