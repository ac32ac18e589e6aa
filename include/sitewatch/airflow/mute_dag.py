"""The ``sitewatch_mute`` and ``sitewatch_unmute`` DAGs: ad-hoc maintenance from the Airflow UI.

Both run only when triggered. Their params are Airflow ``Param``s, so the trigger form is the
one-click form: pick sites, give a duration and a reason, press Trigger. Only a user who may edit
a site's DAG may mute or unmute it (``mute_access``), and a site stays muted at most MAX_MUTE at
a stretch however often it is muted again (``storage.mutes.add_capped_mutes``). A mute is a row of
``site_mutes`` (sitewatch.storage.mutes): the sites' checks keep running and are stored marked
as maintenance, and their alerts are held until it ends. Both tasks check every value before
touching the database, so a bad request fails the run with a message naming what is wrong and
stores nothing. They write with the alerting connection (``POSTGRES_ALERTING_CONN_ID``), whose
role may add and end mutes, and never migrate: tables that are missing or older than this code
fail the run with the ``SchemaError`` that names the DAG that creates them.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, Param, get_current_context, task

from sitewatch.airflow.hooks import results_connection
from sitewatch.config.loader import cached_sites
from sitewatch.config.schedule import format_duration, parse_duration
from sitewatch.config.values import unsafe_character
from sitewatch.names import (
    DAG_DEFAULTS,
    DAG_TAG,
    MUTE_DAG_ID,
    POSTGRES_ALERTING_CONN_ID,
    UNMUTE_DAG_ID,
)

log = logging.getLogger(__name__)

MIN_MUTE = timedelta(minutes=1)
MAX_MUTE = timedelta(days=7)
"""A mute's shortest and longest duration (MAX_MUTE also caps a site's stretch of muted time, mutes
added while it is muted included); a longer pause belongs in the sites file (``maintenance``) or
``enabled: false``, where it is reviewed like any other change."""
MAX_REASON = 500
"""Characters of a reason: a sentence for the record, not a document."""

MUTE_DOC = f"""### Mute sites for a while (ad-hoc maintenance)

Trigger with the form: the **sites** to mute, a **duration** from now (`30m`, `2h`, `1d12h`;
{format_duration(MIN_MUTE)} to {format_duration(MAX_MUTE)}) and a **reason**. You need permission
to edit each site's DAG. A site stays muted at most {format_duration(MAX_MUTE)} at a stretch:
muting it again ends no later than that. Checks keep running
and are stored marked as maintenance; alerts are held until the mute ends (then a site still
down alerts once). `sitewatch_unmute` ends it early. See docs/alerts.md, "Maintenance from the
UI".
"""

UNMUTE_DOC = """### End mutes now

Trigger with the **sites** whose mutes end now; leave it empty to end every mute (that takes
permission to edit every site's DAG, as naming a site takes its DAG's). The record of
each mute stays (its end moves to now). See docs/alerts.md, "Maintenance from the UI".
"""


def known_sites() -> list[str]:
    """The names of the sites file's valid entries (enabled or not), in file order."""
    return [site.name for site in cached_sites().sites]


def check_sites(requested: Iterable[str], known: Collection[str]) -> list[str]:
    """``requested`` without repeats, in the order given; raises ValueError naming every name
    that is not a valid entry of the sites file (with the nearest valid one), so that a typo
    stores nothing."""
    wanted, valid = list(dict.fromkeys(requested)), set(known)
    unknown = [name for name in wanted if name not in valid]
    if unknown:
        raise ValueError(
            "not in the sites file: " + ", ".join(_unknown_site(name, known) for name in unknown)
        )
    return wanted


def _unknown_site(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


def check_duration(text: str) -> timedelta:
    """A mute's duration from the form (``2h``); raises ValueError when ``parse_duration``
    cannot read it or it lies outside MIN_MUTE..MAX_MUTE."""
    duration = parse_duration(str(text).strip())
    if not MIN_MUTE <= duration <= MAX_MUTE:
        raise ValueError(
            f"duration {text!r} is out of range {format_duration(MIN_MUTE)} to "
            f"{format_duration(MAX_MUTE)}"
        )
    return duration


def check_reason(text: str | None) -> str:
    """The reason, stripped; raises ValueError when blank, longer than MAX_REASON, or holding a
    character free text may not (``config.values.unsafe_character``, as in the sites file)."""
    reason = (text or "").strip()
    if not reason:
        raise ValueError("a mute needs a reason (say why, for the record)")
    if len(reason) > MAX_REASON:
        raise ValueError(f"reason is {len(reason)} characters long (at most {MAX_REASON})")
    if problem := unsafe_character(reason):
        raise ValueError(f"reason {problem}")
    return reason


def _sites_param(names: list[str], *, optional: bool, description: str) -> Param:
    """An array of site names. With ``examples`` Airflow's form shows a multi-select of them
    (``items.enum`` would not: the form only reads ``examples``/``enum`` of the array itself,
    and ``enum`` there would list whole arrays). Without names the form falls back to a text
    box, one name a line. ``examples`` is not a constraint: ``check_sites`` is."""
    schema: dict = {"items": {"type": "string"}, "title": "Sites", "description": description}
    if names:
        schema["examples"] = names
    if optional:  # null: the form's multi-select sets null when cleared
        return Param(None, type=["null", "array"], **schema)
    return Param(type="array", minItems=1, **schema)


@task
def mute() -> dict:
    """Mute the form's sites from now for its duration; returns ``{"ids": {site: id}, "until":
    {site: end}}``.

    The triggering user must be allowed to edit each site's DAG (``mute_access``). A site already
    muted gets a mute that ends at most MAX_MUTE after its stretch of muted time began, so that
    triggering again never keeps it muted longer (a warning says when the end was brought
    forward). Raises ValueError for no or unknown sites, a bad duration or a blank reason,
    AccessRefused when the user may not mute a site, CapReached when a site has been muted for
    MAX_MUTE already (nothing stored in any of these cases), SchemaError when the tables are not
    migrated, StorageError when PostgreSQL fails.
    """
    from sitewatch.airflow.mute_access import check_access
    from sitewatch.storage.mutes import add_capped_mutes

    context = get_current_context()
    params = context["params"]
    sites = check_sites(params["sites"] or [], known_sites())
    if not sites:
        raise ValueError("name at least one site to mute")
    duration, reason = check_duration(params["duration"]), check_reason(params["reason"])
    by = getattr(context["dag_run"], "triggering_user_name", None)
    check_access(by, sites)
    starts_at = datetime.now(UTC)
    asked = starts_at + duration
    with _alerting_db() as conn:
        stored = add_capped_mutes(conn, sites, starts_at, asked, reason, by, MAX_MUTE)
    for site, row in stored.items():
        shown = row.ends_at.isoformat(timespec="seconds")
        log.info("mute: site=%s until=%s reason=%r by=%s", site, shown, reason, by)
        if row.ends_at < asked:
            log.warning(
                "mute: site=%s until=%s instead of %s: muted for at most %s at a stretch",
                site,
                shown,
                asked.isoformat(timespec="seconds"),
                format_duration(MAX_MUTE),
            )
    return {
        "ids": {site: row.id for site, row in stored.items()},
        "until": {site: row.ends_at.isoformat() for site, row in stored.items()},
    }


@task
def unmute() -> int:
    """End now the mutes of the form's sites (none named: of every site); returns how many.

    The triggering user must be allowed to edit each site's DAG (every site's, when none is
    named). Raises ValueError for an unknown site, AccessRefused when the user may not unmute a
    site, SchemaError when the tables are not migrated, StorageError when PostgreSQL fails.
    """
    from sitewatch.airflow.mute_access import check_access
    from sitewatch.storage.mutes import end_mutes

    context = get_current_context()
    requested = context["params"]["sites"] or []
    known = known_sites()
    sites = check_sites(requested, known) or None
    check_access(getattr(context["dag_run"], "triggering_user_name", None), sites or known)
    now = datetime.now(UTC)
    with _alerting_db() as conn:
        ended = end_mutes(conn, sites, now)
    shown = now.isoformat(timespec="seconds")
    log.info("unmute: sites=%s ended=%s at=%s", ",".join(sites or ["all"]), ended, shown)
    return ended


@contextmanager
def _alerting_db() -> Iterator:
    """The alerting connection, once the schema is known to be current; closed after."""
    from sitewatch.storage.schema import require_current

    conn = results_connection(POSTGRES_ALERTING_CONN_ID)
    try:
        require_current(conn)
        yield conn
    finally:
        conn.close()


def _manual_dag(dag_id: str, doc: str, params: dict) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        tags=[DAG_TAG],
        doc_md=doc,
        params=params,
        # A failure is a bad request or a database down: the person who pressed Trigger sees it
        # at once and triggers again; a retry would only repeat the message later.
        default_args={"owner": "sitewatch", "retries": 0},
        **DAG_DEFAULTS,
    )


def mute_dag(names: list[str] | None = None) -> DAG:
    """``sitewatch_mute``. names: the sites the form offers (default: the sites file's)."""
    names = known_sites() if names is None else names
    params = {
        "sites": _sites_param(names, optional=False, description="The sites to mute."),
        "duration": Param(
            "1h",
            type="string",
            minLength=1,
            title="Duration",
            description=(
                f"How long from now: 30m, 2h, 1d12h ({format_duration(MIN_MUTE)} to "
                f"{format_duration(MAX_MUTE)})."
            ),
        ),
        "reason": Param(
            type="string",
            minLength=1,
            maxLength=MAX_REASON,
            title="Reason",
            description="Why: stored with the mute, for the record.",
        ),
    }
    with _manual_dag(MUTE_DAG_ID, MUTE_DOC, params) as dag:
        mute()
    return dag


def unmute_dag(names: list[str] | None = None) -> DAG:
    """``sitewatch_unmute``. names: the sites the form offers (default: the sites file's)."""
    names = known_sites() if names is None else names
    description = "The sites whose mutes end now; empty: every site."
    params = {"sites": _sites_param(names, optional=True, description=description)}
    with _manual_dag(UNMUTE_DAG_ID, UNMUTE_DOC, params) as dag:
        unmute()
    return dag
