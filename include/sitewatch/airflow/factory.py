"""The DAG factory: one scheduled DAG per enabled, valid site of the sites file.

``dags/sites.py`` calls ``site_dags()`` and puts the result in its module globals. When Airflow
runs a task it parses the file again only to find that task's DAG, so the factory builds just
that one (Airflow's parsing context) instead of every site's.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable, DeltaTriggerTimetable, get_parsing_context

from sitewatch.airflow.callbacks import dag_callbacks, task_callbacks
from sitewatch.airflow.operators import ProbeOperator
from sitewatch.config.loader import Site, SitesFile, load_sites
from sitewatch.config.notify import WebhookTarget
from sitewatch.names import DAG_DEFAULTS, DAG_TAG, PROBE_TASK_ID, site_dag_id


def site_dags(sites_file: SitesFile | None = None) -> dict[str, DAG]:
    """Build ``{dag_id: DAG}`` for every enabled valid site (only the one being run, in a task).

    Invalid entries are skipped here; ``dags/sites_config_errors.py`` surfaces them in the UI.
    """
    sites_file = sites_file or load_sites()
    wanted = get_parsing_context().dag_id
    dags = {}
    for site in sites_file.sites:
        dag_id = site_dag_id(site.name)
        if site.enabled and (wanted is None or wanted == dag_id):
            dags[dag_id] = site_dag(site)
    return dags


def site_dag(site: Site) -> DAG:
    """The DAG of one site: task ``probe`` on the site's schedule, retries and tags."""
    with DAG(
        dag_id=site_dag_id(site.name),
        schedule=_timetable(site.schedule),
        **DAG_DEFAULTS,
        # explicit values spare Airflow a config lookup each, per DAG, at every parse
        max_active_tasks=1,
        max_consecutive_failed_dag_runs=0,
        disable_bundle_versioning=False,
        tags=[DAG_TAG, *site.tags],
        doc_md=site_doc(site),
        **dag_callbacks(site),  # alerts: sitewatch.airflow.callbacks says where each one runs
        default_args={
            "owner": site.owner,
            "retries": site.retries,
            "retry_delay": site.retry_delay,
            # the probe bounds itself; this only guards against a wedged worker
            "execution_timeout": timedelta(seconds=site.timeout + 120),
            **task_callbacks(site),
        },
    ) as dag:
        ProbeOperator(task_id=PROBE_TASK_ID, site=site)
    return dag


def site_doc(site: Site) -> str:
    """Markdown shown on the DAG's page: what is checked and how (header values hidden)."""
    rows = [
        ("url", site.url),
        ("schedule", _schedule_text(site.schedule)),
        ("method", site.method),
        (
            "expect_status",
            ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in site.expect_status),
        ),
        ("regex", site.regex),
        ("forbid_regex", site.forbid_regex),
        ("max_response_ms", site.max_response_ms),
        ("min_cert_days", site.min_cert_days),
        ("timeout", f"{site.timeout:g}s"),
        ("follow_redirects", site.follow_redirects),
        ("verify_tls", site.verify_tls),
        ("headers", ", ".join(sorted(site.headers)) or None),
        ("retries", f"{site.retries} (every {site.retry_delay})"),
        ("owner", site.owner),
        ("notify", ", ".join(_target_text(t) for t in site.notify) or None),
        ("remind_every", site.remind_every),
    ]
    lines = [f"### Site `{site.name}`", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {key} | `{value}` |" for key, value in rows if value is not None]
    return "\n".join(lines)


def _timetable(schedule: timedelta | str):
    """The trigger timetable Airflow 3 would pick for this schedule, built without config lookups:
    a run at each interval or cron tick, its logical date the tick itself."""
    if isinstance(schedule, timedelta):
        return DeltaTriggerTimetable(schedule)
    return CronTriggerTimetable(schedule, timezone="UTC")


def _target_text(target) -> str:
    # connection ids only: addresses stay out of the UI
    kind = "webhook" if isinstance(target, WebhookTarget) else "email"
    return f"{kind} {target.conn_id}"


def _schedule_text(schedule: timedelta | str) -> str:
    return f"every {schedule}" if isinstance(schedule, timedelta) else f"cron {schedule}"
