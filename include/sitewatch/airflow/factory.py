"""The DAG factory: one scheduled DAG per enabled, valid site of the sites file.

The sites are spread over ``SHARDS`` DAG files by a hash of their names (``site_shard``):
``dags/sites.py`` holds shard 0 and ``dags/sites_<n>.py`` shard n, each calling
``site_dags(shard=n)`` and putting the result in its module globals. Airflow writes every parse
of a DAG file back in one transaction that holds each of its DAGs' rows of the ``dag`` table,
and the schedulers wait on those rows: at 10,000 sites in one file that was a minute each time
(docs/scaling.md); in eight, an eighth. When Airflow runs a task it parses the task's file again
only to find that task's DAG, so the factory builds just that one (Airflow's parsing context)
instead of every site's. The same holds when the DAG processor parses a file only to run
callbacks (``_callback_dag_ids``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import re
import sys
from datetime import timedelta

from airflow.sdk import DAG, TaskGroup, get_parsing_context

from sitewatch.airflow.callbacks import dag_callbacks, task_callbacks
from sitewatch.airflow.operators import ProbeOperator, attempt_timeout, probe_in
from sitewatch.airflow.timetables import SiteTimetable
from sitewatch.config.key_checks import entry_kind
from sitewatch.config.keys import takes
from sitewatch.config.loader import Site, SitesFile, cached_sites, default_sites_path
from sitewatch.config.locations import run_deadline, verdict_grace
from sitewatch.config.notify import label
from sitewatch.config.offset import auto_offset, schedule_period
from sitewatch.config.schedule import format_duration
from sitewatch.names import DAG_DEFAULTS, DAG_TAG, LOCAL_LOCATION, PROBE_TASK_ID, site_dag_id

log = logging.getLogger(__name__)

SHARDS = 8
"""DAG files the sites are spread over: ``dags/sites.py`` and ``dags/sites_1.py`` to
``dags/sites_7.py`` (tests/dags/test_dagbag.py checks that they are all there)."""

_SHARD_FILE = re.compile(r"sites(?:_([1-9][0-9]*))?\.py")

START_RATE_VAR = "SITEWATCH_START_RATE"
START_RATE = 500
"""Site runs a minute that a cold start may make due (and a scheduler back after missing ticks):
up to this many sites start at once, more are spread (``start_spread``). Two cores store about
1,000 checks a minute (bench/results.md), so this leaves room for the sites already going."""
MAX_SPREAD = timedelta(minutes=10)
"""The longest a site waits for its first check however many sites start with it."""
# Where Airflow's DAG processor parses a file (see _callback_dag_ids).
_PROCESSOR = "airflow.dag_processing.processor"
# Runs of a multi-location site that may be open at once while a location is down (_concurrency).
MAX_OVERLAPPING_RUNS = 16


def site_dags(sites_file: SitesFile | None = None, shard: int | None = None) -> dict[str, DAG]:
    """Build ``{dag_id: DAG}`` for every enabled valid site of ``shard`` (None: of all), only the
    one being run in a task.

    Invalid entries are skipped here; ``dags/sites_config_errors.py`` surfaces them in the UI.
    The file is read with ``cached_sites``: a parse of unchanged content does not validate it again.
    """
    sites_file = sites_file or cached_sites()
    task_dag = get_parsing_context().dag_id
    wanted = {task_dag} if task_dag is not None else _callback_dag_ids()
    in_triggerer = probe_in() == "triggerer"
    enabled = [site for site in sites_file.sites if site.enabled]
    spread = start_spread(len(enabled), start_rate())
    dags = {}
    for site in enabled:
        dag_id = site_dag_id(site.name)
        if (wanted is None or dag_id in wanted) and shard in (None, site_shard(site.name)):
            dags[dag_id] = site_dag(site, sites_file.path, in_triggerer=in_triggerer, spread=spread)
    return dags


def site_shard(name: str) -> int:
    """The shard (DAG file) of site ``name``, in ``range(SHARDS)``: from a digest of the name, the
    same in every process, so that a site stays in its file whatever else changes."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"sitewatch-shard").digest()
    return int.from_bytes(digest, "big") % SHARDS


def shard_file(name: str) -> int | None:
    """The shard whose DAGs the DAG file called ``name`` holds (``sites.py``: 0, ``sites_<n>.py``:
    n), None for any other file."""
    match = _SHARD_FILE.fullmatch(name)
    shard = int(match.group(1) or 0) if match else SHARDS
    return shard if shard < SHARDS else None


def shard_prints(sites_file: SitesFile) -> tuple[str, ...]:
    """A digest per shard of what ``site_dags`` builds its DAGs from in the sites file: the
    shard's enabled sites (every key but ``line``, which reaches no DAG) and the start spread,
    which follows the number of all enabled sites. Equal prints, equal DAGs, for one process:
    what else a DAG depends on (the environment, sitewatch's code) does not change while it runs.
    The DAG processor compares them to parse again only the shards a change of the file touched
    (``sitewatch.airflow.processor_preload``)."""
    enabled = sorted((site for site in sites_file.sites if site.enabled), key=lambda s: s.name)
    spread = repr(start_spread(len(enabled), start_rate())).encode()
    digests = [hashlib.sha256(spread) for _ in range(SHARDS)]
    for site in enabled:
        digests[site_shard(site.name)].update(repr(dataclasses.replace(site, line=0)).encode())
    return tuple(d.hexdigest() for d in digests)


def start_spread(sites: int, rate: int = START_RATE) -> timedelta:
    """How long a cold start of ``sites`` sites takes to make them all due, at ``rate`` a
    minute: 0 (all at once) up to ``rate`` sites, else whole minutes, at most ``MAX_SPREAD``.
    Whole minutes, so that adding a site changes every DAG's timetable only at a step."""
    if sites <= rate:
        return timedelta(0)
    return min(MAX_SPREAD, timedelta(minutes=math.ceil(sites / rate)))


def start_rate() -> int:
    """``SITEWATCH_START_RATE`` (default ``START_RATE``); a value that is not a whole number
    above 0 is logged and the default used, as every site's DAG depends on it."""
    value = os.environ.get(START_RATE_VAR, "").strip()
    if not value:
        return START_RATE
    try:
        rate = int(value)
    except ValueError:
        rate = 0
    if rate < 1:
        problem = "is not a whole number above 0"
        log.error("%s=%r %s; using %d", START_RATE_VAR, value, problem, START_RATE)
        return START_RATE
    return rate


def _callback_dag_ids() -> frozenset[str] | None:
    """The DAGs that a callback-only parse by Airflow's DAG processor needs; None for any other.

    Airflow 3.3's DAG processor parses a DAG file again to run a batch of its callbacks, and every
    check that ends in the triggerer sends one (a success callback, which Airflow then ignores).
    Building every site's DAG for each batch would make the DAG processor parse the whole sites
    file again and again under a steady stream of healthy checks. Airflow does not hand the parse
    request to the DAG file, so it is read from the stack: ``msg`` of
    ``airflow.dag_processing.processor._parse_file``. Anything unexpected gives None, a full parse
    (tests/unit/test_callback_parse.py pins what this relies on).
    """
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_parse_file" and frame.f_globals.get("__name__") == _PROCESSOR:
            requests = getattr(frame.f_locals.get("msg"), "callback_requests", None)
            if not requests:
                return None
            ids = {_request_dag_id(request) for request in requests}
            return None if None in ids else frozenset(ids)
        frame = frame.f_back
    return None


def _request_dag_id(request) -> str | None:
    """The DAG of a callback request: its own ``dag_id`` or its task instance's."""
    dag_id = getattr(request, "dag_id", None) or getattr(
        getattr(request, "ti", None), "dag_id", None
    )
    return dag_id if isinstance(dag_id, str) else None


def site_dag(
    site: Site,
    sites_file: str | None = None,
    *,
    in_triggerer: bool = True,
    spread: timedelta = timedelta(0),
) -> DAG:
    """The DAG of one site: task ``probe`` on the site's schedule, retries and tags; with several
    locations, task group ``probe`` with one task per location (``probe.<location>``).

    sites_file: where ``site`` was read (default: ``default_sites_path()``); in_triggerer: see
    ``sitewatch.airflow.operators`` (only the default location's probe starts there); spread:
    ``start_spread``'s, the site's place in it from its name as ``auto`` offsets are.
    """
    sites_file = str(sites_file or default_sites_path())
    place = auto_offset(site.name, spread) if spread else timedelta(0)
    with DAG(
        dag_id=site_dag_id(site.name),
        schedule=SiteTimetable(site.schedule, site.offset, spread, place),
        **(DAG_DEFAULTS | _concurrency(site)),
        # explicit values spare Airflow a config lookup each, per DAG, at every parse
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
            "execution_timeout": attempt_timeout(site),
            **task_callbacks(site),
        },
    ) as dag:
        if site.several_locations:
            with TaskGroup(PROBE_TASK_ID, tooltip="one probe per location"):
                for location in site.locations:
                    _probe(location, site, location, sites_file, in_triggerer)
        else:
            _probe(PROBE_TASK_ID, site, site.locations[0], sites_file, in_triggerer)
    return dag


def _probe(task_id: str, site: Site, location: str, sites_file: str, in_triggerer: bool):
    return ProbeOperator(
        task_id=task_id,
        site=site,
        sites_file=sites_file,
        location=location,
        in_triggerer=in_triggerer and location == LOCAL_LOCATION,
    )


def _concurrency(site: Site) -> dict:
    """Run limits: one run at a time for a site with one location. With several, a run waits for
    every location, and a location whose workers are down would hold it until Airflow times it
    out (``dagrun_timeout``, the verdict's deadline); enough runs may overlap meanwhile that the
    other locations keep every tick."""
    if not site.several_locations:
        return {"max_active_tasks": 1}
    deadline = run_deadline(site, verdict_grace())
    period = schedule_period(site.schedule)
    runs = min(MAX_OVERLAPPING_RUNS, math.ceil(deadline / period) + 1)
    return {
        "max_active_runs": runs,
        "max_active_tasks": runs * len(site.locations),
        "dagrun_timeout": deadline,
    }


def site_doc(site: Site) -> str:
    """Markdown shown on the DAG's page: what is checked and how (header values hidden)."""
    rows = [
        ("url", site.url),
        ("steps", _steps_text(site.steps)),
        ("schedule", _schedule_text(site.schedule)),
        ("offset", f"+{format_duration(site.offset)}"),
        ("method", site.method),
        (
            "expect_status",
            ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in site.expect_status),
        ),
        ("regex", site.regex),
        ("forbid_regex", site.forbid_regex),
        ("send", f"{len(site.send)} characters" if site.send is not None else None),
        ("reply_regex", site.reply_regex),
        ("answers", _answers_text(site.answers)),
        ("max_response_ms", site.max_response_ms),
        ("min_cert_days", site.min_cert_days),
        ("timeout", f"{site.timeout:g}s"),
        ("follow_redirects", site.follow_redirects),
        ("verify_tls", site.verify_tls),
        ("tls_min_version", site.tls_min_version),
        ("headers", ", ".join(sorted(site.headers)) or None),
        ("retries", f"{site.retries} (every {site.retry_delay})"),
        ("locations", ", ".join(site.locations)),
        ("quorum", f"{site.quorum} of {len(site.locations)}" if site.several_locations else None),
        ("owner", site.owner),
        ("notify", ", ".join(label(t) for t in site.notify) or None),  # no addresses
        ("remind_every", site.remind_every),
        ("degraded_ms", site.degraded_ms),
        ("depends_on", ", ".join(site.depends_on) or None),
        ("maintenance", "; ".join(_window_text(w) for w in site.maintenance) or None),
        ("slo", site.slo.label if site.slo else None),
    ]
    lines = [f"### Site `{site.name}`", "", "| setting | value |", "| --- | --- |"]
    # Only the keys of the site's kind of check (an HTTP check's method means nothing to DNS).
    kind = entry_kind(site.url, bool(site.steps))
    lines += [
        f"| {key} | `{value}` |" for key, value in rows if value is not None and takes(kind, key)
    ]
    return "\n".join(lines)


def _steps_text(steps) -> str | None:
    """``POST login → GET read → DELETE cleanup (always)``: names and methods only, since a
    step's URL, headers and body may name values taken from responses."""
    parts = [f"{s.method} {s.name}{' (always)' if s.always else ''}" for s in steps]
    return " → ".join(parts) or None


def _answers_text(answers) -> str | None:
    if answers is None:
        return None
    return f"{answers.match} of {', '.join(answers.values)}"


def _window_text(window) -> str:
    if window.cron is not None:
        return f"{window.cron} ({window.timezone}) for {format_duration(window.duration)}"
    return f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC"


def _schedule_text(schedule: timedelta | str) -> str:
    return f"every {schedule}" if isinstance(schedule, timedelta) else f"cron {schedule}"
