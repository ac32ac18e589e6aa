"""The DAG factory: one scheduled DAG per enabled, valid site of the sites file.

``dags/sites.py`` calls ``site_dags()`` and puts the result in its module globals. When Airflow
runs a task it parses the file again only to find that task's DAG, so the factory builds just
that one (Airflow's parsing context) instead of every site's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, get_current_context, get_parsing_context, task

from sitewatch.config import Site, SitesFile, load_sites
from sitewatch.kafka import KAFKA_CONN_ID

DAG_PREFIX = "site_"
START = datetime(2026, 1, 1, tzinfo=UTC)


def site_dags(sites_file: SitesFile | None = None) -> dict[str, DAG]:
    """Build ``{dag_id: DAG}`` for every enabled valid site (only the one being run, in a task).

    Invalid entries are skipped here; ``dags/sites_config_errors.py`` surfaces them in the UI.
    """
    sites_file = sites_file or load_sites()
    wanted = get_parsing_context().dag_id
    dags = {}
    for site in sites_file.sites:
        dag_id = DAG_PREFIX + site.name
        if site.enabled and (wanted is None or wanted == dag_id):
            dags[dag_id] = site_dag(site)
    return dags


def site_dag(site: Site) -> DAG:
    """The DAG of one site: task ``probe`` on the site's schedule, retries and tags."""
    with DAG(
        dag_id=DAG_PREFIX + site.name,
        schedule=site.schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["sitewatch", *site.tags],
        doc_md=describe(site),
        default_args={
            "owner": site.owner,
            "retries": site.retries,
            "retry_delay": site.retry_delay,
            # the probe bounds itself; this only guards against a wedged worker
            "execution_timeout": timedelta(seconds=site.timeout + 120),
        },
    ) as dag:
        _probe_task(site)()
    return dag


def _probe_task(site: Site):
    @task(task_id="probe")
    def probe() -> None:
        from sitewatch.checking import check_site
        from sitewatch.kafka import ObservationProducerHook

        context = get_current_context()
        ti, run = context["ti"], context["dag_run"]
        producer = ObservationProducerHook(kafka_config_id=KAFKA_CONN_ID).get_producer()
        check_site(
            site,
            scheduled_at=run.logical_date or run.run_after,
            attempt=ti.try_number,
            final=ti.try_number > ti.max_tries,
            producer=producer,
        )

    return probe


def describe(site: Site) -> str:
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
    ]
    lines = [f"### Site `{site.name}`", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {key} | `{value}` |" for key, value in rows if value is not None]
    return "\n".join(lines)


def _schedule_text(schedule: timedelta | str) -> str:
    return f"every {schedule}" if isinstance(schedule, timedelta) else f"cron {schedule}"
