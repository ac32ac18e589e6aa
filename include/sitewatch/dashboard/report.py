"""The SLA report of a calendar month (UTC): per site, uptime, downtime, incidents, maintenance
left out and whether its SLO was met; as CSV, Markdown or one self-contained HTML page.

Built from ``storage.sla.Period`` and each site's objective (site -> ``Slo`` or None, from
the sites file), so the ``sitewatch report`` command and the Sites page render the same
document. Uptime counts final checks outside maintenance (the rollup's); downtime is the
incidents' time within the month less maintenance (``storage.sla``). A site met its SLO
when its uptime reaches the target; a site without an SLO, or without checks, shows ``-``.
Nothing here reads the database or imports Airflow.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from html import escape

from sitewatch.config.objectives import Slo
from sitewatch.config.site import Site
from sitewatch.dashboard.html import page, timestamp
from sitewatch.dashboard.status import error_text, uptime
from sitewatch.storage.retention import RETENTION_VAR
from sitewatch.storage.sla import Incident, Period, SitePeriod

FORMATS = ("csv", "md", "html")
"""What ``render`` writes: CSV, Markdown (GitHub tables) or HTML."""
COLUMNS = (
    "site",
    "uptime %",
    "downtime minutes",
    "incidents",
    "maintenance minutes excluded",
    "SLO target",
    "met",
)
INCIDENT_COLUMNS = ("site", "start", "end", "duration minutes", "first error")
CSV_COLUMNS = ("section", *COLUMNS, *INCIDENT_COLUMNS[1:], "note")
"""The CSV's one table: ``section`` says what a line is (``SECTIONS``) and which cells it
fills: a ``site`` line the ``COLUMNS``, an ``incident`` line ``site`` and the other
``INCIDENT_COLUMNS``, a ``note`` line only ``note``; the other cells are empty."""
SECTIONS = ("site", "incident", "note")
NONE = "-"
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def month_days(month: str) -> tuple[date, date]:
    """``YYYY-MM`` as its first UTC day and the first day after it.

    Raises ValueError naming the expected form for anything else (``2026-13``, ``2026-1``).
    """
    match = _MONTH.fullmatch(month)
    if not match or not 1 <= int(match[2]) <= 12 or not 1 <= int(match[1]) <= 9998:
        raise ValueError(f"month {month!r}: expected YYYY-MM, like 2026-11")
    year, number = int(match[1]), int(match[2])
    first = date(year, number, 1)
    return first, date(year + number // 12, number % 12 + 1, 1)


@dataclass(frozen=True)
class Row:
    """One site's line, as text (the same in every format)."""

    site: str
    uptime: str
    downtime: str
    incidents: str
    maintenance: str
    target: str
    met: str


def met(site: SitePeriod, slo: Slo | None) -> bool | None:
    """Whether the site's uptime reached ``slo.target``; None without an SLO or checks. Exact:
    the target is read as the decimal it was written as, so 999 of 1,000 meets 99.9."""
    if slo is None or not site.checks:
        return None
    return Fraction(100 * site.ups, site.checks) >= Fraction(str(slo.target))


def objectives(sites: Iterable[Site]) -> dict[str, Slo | None]:
    """Each site's SLO by name (None: it has none), for ``render``: pass every valid site of the
    sites file, disabled ones too, since a month's report covers what they did while enabled."""
    return {site.name: site.slo for site in sites}


def rows(period: Period, objectives: Mapping[str, Slo | None]) -> list[Row]:
    """The table's lines, one per site of ``period``, by name."""
    lines = []
    for site in period.sites:
        slo = objectives.get(site.site)
        verdict = met(site, slo)
        lines.append(
            Row(
                site=site.site,
                uptime=uptime(site.ups, site.checks).removesuffix("%").replace("—", NONE),
                downtime=_minutes(site.downtime),
                incidents=str(len(site.incidents)),
                maintenance=_minutes(site.maintenance),
                target=NONE if slo is None else f"{slo.target:g}",
                met=NONE if verdict is None else ("yes" if verdict else "no"),
            )
        )
    return lines


def notes(period: Period) -> list[str]:
    """What a reader must know about the figures: no checks at all, a month not over yet, raw
    checks that start after the month does (a new install, or days past the retention)."""
    found = []
    if not period.sites:
        found.append(f"No checks are stored for {_month(period)}.")
    if period.now < period.end:
        found.append(f"The month is not over: figures up to {timestamp(period.now)}.")
    if period.sites and period.raw_since is None:
        found.append(
            f"No raw checks are stored ({RETENTION_VAR}): incidents, downtime and maintenance "
            "minutes are missing."
        )
    elif period.sites and period.raw_since > period.first:
        # On a new install the first day stored is simply the first day: say where raw checks
        # start, not that some were dropped, which is true only past the retention.
        found.append(
            f"Raw checks start on {period.raw_since} (the first day stored, or the oldest that "
            f"{RETENTION_VAR} keeps): incidents, downtime and maintenance minutes cover the "
            "month from then on."
        )
    return found


def render(period: Period, objectives: Mapping[str, Slo | None], fmt: str) -> str:
    """The report in ``fmt`` (one of ``FORMATS``). Raises ValueError for another format."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return _WRITERS[fmt](period, objectives)


def _csv(period: Period, objectives: Mapping[str, Slo | None]) -> str:
    """One table (``CSV_COLUMNS``) that a spreadsheet or ``csv.reader`` imports whole: a line
    per site, then a line per incident, then a line per note (a month not over, no checks)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    blank_incident = ("",) * (len(INCIDENT_COLUMNS) - 1)
    writer.writerow(CSV_COLUMNS)
    for row in rows(period, objectives):
        writer.writerow(("site", *_cells(row), *blank_incident, ""))
    blank_site = ("",) * (len(COLUMNS) - 1)
    for incident in _incidents(period):
        writer.writerow(
            (
                "incident",
                incident.site,
                *blank_site,
                _iso(incident.start),
                "" if incident.end is None else _iso(incident.end),
                _minutes(_duration(incident, period)),
                _spreadsheet_safe(_error(incident)),
                "",
            )
        )
    for note in notes(period):
        writer.writerow(("note", *("",) * (len(CSV_COLUMNS) - 2), note))
    return out.getvalue()


def _markdown(period: Period, objectives: Mapping[str, Slo | None]) -> str:
    lines = [f"# SLA report {_month(period)} (UTC)", ""]
    for note in notes(period):
        lines += [f"_{_md(note)}_", ""]
    if not period.sites:  # the note says so: no table of nothing
        return "\n".join(lines[:-1]) + "\n"
    lines += _md_table(COLUMNS, [_cells(row) for row in rows(period, objectives)])
    lines += ["", "## Incidents", ""]
    incidents = _incident_cells(period)
    lines += _md_table(INCIDENT_COLUMNS, incidents) if incidents else ["None."]
    return "\n".join(lines) + "\n"


def _md_table(header: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
    def line(cells) -> str:
        return "| " + " | ".join(_md(cell) for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(cells) for cells in body)]


def _html(period: Period, objectives: Mapping[str, Slo | None]) -> str:
    title = f"SLA report {_month(period)} (UTC)"
    body = [f"<h1>{escape(title)}</h1>"]
    body += [f'<p class="muted">{escape(note)}</p>' for note in notes(period)]
    if not period.sites:  # the note says so: no table of nothing
        return page(title, "".join(body))
    numeric = {1, 2, 3, 4, 5}
    body.append(_html_table(COLUMNS, [_cells(r) for r in rows(period, objectives)], numeric))
    body.append("<h2>Incidents</h2>")
    incidents = _incident_cells(period)
    body.append(_html_table(INCIDENT_COLUMNS, incidents, {3}) if incidents else "<p>None.</p>")
    return page(title, "".join(body))


def _html_table(header: tuple[str, ...], body: list[tuple[str, ...]], numeric: set[int]) -> str:
    def cells(tag: str, values) -> str:
        return "".join(
            f"<{tag}{' class=num' * (i in numeric)}>{escape(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    head = f"<thead><tr>{cells('th', header)}</tr></thead>"
    lines = "".join(f"<tr>{cells('td', values)}</tr>" for values in body)
    return f"<table>{head}<tbody>{lines}</tbody></table>"


def _cells(row: Row) -> tuple[str, ...]:
    return (row.site, row.uptime, row.downtime, row.incidents, row.maintenance, row.target, row.met)


def _incidents(period: Period) -> list[Incident]:
    return sorted((i for s in period.sites for i in s.incidents), key=lambda i: (i.start, i.site))


def _incident_cells(period: Period) -> list[tuple[str, ...]]:
    """The incidents' lines for people (Markdown, HTML): times in UTC, "open" for no end."""
    return [
        (i.site, timestamp(i.start), _end(i), _minutes(_duration(i, period)), _error(i))
        for i in _incidents(period)
    ]


def _duration(incident: Incident, period: Period) -> timedelta:
    """The whole incident's length (an open one's until ``now``), maintenance included."""
    return (incident.end or period.now) - incident.start


def _error(incident: Incident) -> str:
    return error_text(incident.error, incident.detail)


def _end(incident: Incident) -> str:
    return "open" if incident.end is None else timestamp(incident.end)


def _minutes(value: timedelta) -> str:
    return f"{value / timedelta(minutes=1):.1f}"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _month(period: Period) -> str:
    return f"{period.first:%Y-%m}"


# Text a spreadsheet would run as a formula (CSV injection): error details quote what a site
# answered, so anyone who controls a site could plant one.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def _md(text: str) -> str:
    """``text`` as literal Markdown in a table cell: one line, its markup characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


_WRITERS: dict[str, Callable[[Period, Mapping[str, Slo | None]], str]] = dict(
    zip(FORMATS, (_csv, _markdown, _html), strict=True)
)
