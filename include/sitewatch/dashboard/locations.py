"""HTML of a site checked from several locations: its listing cell and its page's run matrix.

In the listing, the badge of such a site is its latest verdict (``status.verdict_state``), with
one small cell per location under it (the location's latest decided check, details on hover) and
"quorum k of n". On its page, a matrix of the recent runs: a row per run, a column per location,
the verdict last. Location names, errors and verdict texts come from the database: every one
passes through ``escape``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from sitewatch.config.maintenance import InMaintenance
from sitewatch.dashboard import maintenance as maint
from sitewatch.dashboard import status
from sitewatch.dashboard.html import badge, timestamp
from sitewatch.storage.queries import LocationCheck, Run, RunLocation
from sitewatch.storage.verdicts import STALE


def status_cell(
    view: status.LocationsView, state: str, now: datetime, window: InMaintenance | None = None
) -> str:
    """The listing's Status cell of a site with several locations: the verdict's badge (its run
    and each location's outcome on hover), after the maintenance badge of a site in a
    ``window`` (``maintenance.status_badge``), the location cells, and "quorum k of n"."""
    cells = "".join(
        _cell(loc, cell_state, _check_tip(loc, cell_state, check, now))
        for loc, cell_state, check in view.cells
    )
    head = badge(state, _verdict_tip(view.verdict))
    if window is not None:
        head = maint.status_badge(window, state, now, head)
    return (
        f"{head}<div class=locs>{cells}</div>"
        f'<div class="muted quorum">{quorum(view.quorum, len(view.cells))}</div>'
    )


def quorum(needed: int, locations: int) -> str:
    """``quorum 2 of 3``: how many locations must see the site down for the run to be down."""
    return f"quorum {needed} of {locations}"


def runs_table(where: status.SiteLocations) -> str:
    """A site's matrix of recent runs: rows are runs (newest first), columns its locations (then
    any other location its runs hold, such as one removed from the sites file), and last the
    run's verdict (``undecided`` until every location reported or the run's deadline passed)."""
    seen = {loc for run in where.runs for loc in run.locations}
    columns = [*where.locations, *sorted(seen - set(where.locations))]
    head = (
        "<tr><th>Run (scheduled)</th>"
        + "".join(f"<th>{escape(loc)}</th>" for loc in columns)
        + "<th>Verdict</th></tr>"
    )
    rows = [
        f'<tr data-run="{run.scheduled_at.astimezone(UTC).isoformat()}">'
        f"<td>{timestamp(run.scheduled_at)}</td>"
        + "".join(_run_cell(loc, run.locations.get(loc), run.outcomes) for loc in columns)
        + f"<td>{_run_verdict(run)}</td></tr>"
        for run in where.runs
    ]
    empty = f'<tr><td colspan="{len(columns) + 2}" class="muted">No runs stored.</td></tr>'
    return f"<table id=runs><thead>{head}</thead><tbody>{''.join(rows) or empty}</tbody></table>"


def show_location(where: status.SiteLocations | None, attempts: Sequence) -> bool:
    """Whether a site's attempts table needs a location column: the site has several
    locations, or its attempts come from more than one."""
    if where is not None:
        return True
    return len({a.location for a in attempts}) > 1


def _cell(location: str, state: str, tip: str, label: str | None = None) -> str:
    return (
        f'<span class="loc {escape(state)}" data-location="{escape(location)}" '
        f'data-location-state="{escape(state)}" title="{escape(tip)}">'
        f"{escape(location if label is None else label)}</span>"
    )


def _check_tip(location: str, state: str, check: LocationCheck | None, now: datetime) -> str:
    if check is None:
        return f"{location}: {state}, no decided check in 30 days"
    text = (
        f"{location}: {state} · run {timestamp(check.scheduled_at)} · checked "
        f"{status.age(check.checked_at, now)}"
    )
    return text + _error(check.error, check.error_detail)


def _verdict_tip(verdict: status.LatestVerdict | None) -> str:
    if verdict is None:
        return "no verdict yet: it waits for every location, or the run's deadline"
    scheduled_at, decided, outcomes = verdict
    return f"{decided} · run {timestamp(scheduled_at)} · {_outcomes(outcomes)}"


def _outcomes(outcomes: Mapping[str, str]) -> str:
    return ", ".join(f"{loc} {outcome}" for loc, outcome in sorted(outcomes.items()))


def _run_cell(location: str, part: RunLocation | None, outcomes: Mapping[str, str] | None) -> str:
    state = status.run_state(part)
    kept = (outcomes or {}).get(location, "")
    if part is None and kept.startswith(STALE):  # silent; the verdict counted its last word
        tip = f"{location}: nothing stored for this run; the verdict counted its last word"
        return f"<td class=cell>{_cell(location, state, tip, label=kept)}</td>"
    if part is None:
        tip = f"{location}: no attempt stored for this run"
    else:
        tries = "attempt" if part.attempts == 1 else "attempts"
        tip = f"{location}: {state} · {part.attempts} {tries}, the latest checked "
        tip += timestamp(part.checked_at) + _error(part.error, part.error_detail)
    return f"<td class=cell>{_cell(location, state, tip, label=state)}</td>"


def _run_verdict(run: Run) -> str:
    if run.verdict is None:
        return '<span class="muted">undecided</span>'
    return badge(status.verdict_badge(run.verdict), f"quorum {run.quorum}")


def _error(error: str | None, detail: str | None) -> str:
    return f" · {status.error_text(error, detail)}" if error else ""
