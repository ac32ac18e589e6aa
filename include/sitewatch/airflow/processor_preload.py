"""What Airflow's DAG processor imports once, so that no callback-only parse pays for it.

Airflow 3.3 sends the DAG processor a success callback for every task that ends in the
triggerer, and the processor runs each batch of callbacks (up to 20) in a child it forks to
parse ``dags/sites.py`` again (``DagFileProcessorProcess.start``). The factory builds only the
DAGs the callbacks name (``sitewatch.airflow.factory._callback_dag_ids``), but before this
module the child still imported sitewatch and its dependencies and read the sites file from the
disk cache: Airflow pre-imports only the ``airflow.*`` modules a DAG file names
(``_pre_import_airflow_modules``). ``preload_dag_processor`` does the rest once, in the
``airflow dag-processor`` process before its parsing loop: it imports the factory and reads the
sites file (``cached_sites``), then freezes the garbage collector's view of it (``gc.freeze``,
as in ``sitewatch.airflow.preload``), and every child inherits both. Measured with
``bench/parse.py --parts callbacks`` (a forked child running Airflow's ``_parse_file`` on 20
success callbacks; bench/notes.md, section 3): 0.031 instead of 0.125 CPU-s per parse child at
1,000 sites, 0.045 instead of 0.200 at 10,000; the child imports no sitewatch module.

``plugins/sitewatch_dag_processor.py`` calls it: Airflow loads the plugins folder in every
process (in the DAG processor when ``Job()`` builds its listener manager, before the parsing
loop), and the command line tells the DAG processor from the others (``in_dag_processor``);
``airflow standalone`` runs it as an ``airflow dag-processor`` process of its own too. Nothing
happens in any other process: a task process or the API server has no use for the factory.

A warm sites cache does not go stale: ``cached_sites`` compares the file's stat with the cached
one at every call, so a child reads a changed file again (from the disk cache, as before this
module). After such a change the parent's copy is of no use until the processor restarts, since
the parent never reads the file again: its children pay the disk-cache read again (53 ms at
10,000 sites), but still not the imports. The cost, once per DAG processor start: 0.19 s of CPU
and 16 MB of memory at 10,000 sites.

It also keeps the DAG processor from parsing ``dags/sites.py`` over and over
(``keep_parse_time_after_callbacks``). Airflow 3.3 records a callback-only run of a file with no
finish time (so that it does not count as a parse for stale-DAG detection), and the next
``prepare_file_queue`` then takes the file for never parsed and parses it in full at once,
whatever ``[dag_processor] min_file_process_interval`` says (apache/airflow#73432, open). Under
a steady stream of checks ending in the triggerer there is always a callback-only run, so the
whole sites file was built, serialized and written back every few seconds: measured at 1,000
sites a minute, a full parse every 8 s instead of every 30 s, 0.06 CPU-s per check, the largest
share of the machine. After a callback-only run the file keeps the finish time of its last real
parse, which is what stale-DAG detection compares too.

With that, a file is parsed in full once per ``[dag_processor] min_file_process_interval``, and
at 10,000 sites even that is too often: Airflow writes a parse back in one transaction that holds
the file's DAGs' rows of the ``dag`` table. With every site in one file that lasted about a
minute, during which both schedulers waited on those rows (their heartbeats "recovered after
55-58 s", every other minute); spread over eight files (``sitewatch.airflow.factory``), a
parse of all eight every 10 minutes still held the triggerer's event loop for up to 35 s.
``reparse_when_sites_change`` lets the interval be a day (scripts/dev.sh and compose set it
while this module is on) without a change of the sites file waiting for it: a file whose last
full parse began before the sites file's last change counts as changed, and Airflow parses a
changed file at once (``[dag_processor] file_parsing_sort_mode = modified_time``, its default).
A parse also recounts each DAG's active runs, which Airflow's scheduler needs after a run ended
out of its sight: ``held_back`` parses such a DAG's file again (at most 30 s later).

Nothing here may stop the DAG processor: any failure is logged and the processor runs as it
would without this module (each child imports what it needs, and reports what fails to import
as the DAG file's import error).
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
import time
from collections.abc import MutableMapping, Sequence

log = logging.getLogger(__name__)

# The Airflow CLI command of the DAG processor (``airflow dag-processor``).
COMMAND = "dag-processor"
# Set to 0 in the DAG processor's environment to leave Airflow as it is (both of the above off).
SWITCH_VAR = "SITEWATCH_DAG_PROCESSOR_PRELOAD"


def in_dag_processor(argv: Sequence[str] | None = None) -> bool:
    """Whether ``argv`` (default ``sys.argv``) runs Airflow's DAG processor: ``airflow
    dag-processor [options]`` or ``python -m airflow dag-processor [options]``. The command is
    the first argument, since the Airflow CLI takes no option before it."""
    argv = sys.argv if argv is None else argv
    return len(argv) > 1 and argv[1] == COMMAND


def preload_dag_processor(argv: Sequence[str] | None = None) -> bool:
    """In the DAG processor only, import what a parse of ``dags/sites.py`` imports and read the
    sites file, then freeze it all for the forked parse children. True when it did.

    argv: the command line to judge (default ``sys.argv``). Never raises: a failure is logged
    with its traceback and gives False. ``SITEWATCH_DAG_PROCESSOR_PRELOAD=0`` turns it off.
    """
    if not in_dag_processor(argv):
        return False
    switch = os.environ.get(SWITCH_VAR, "").strip().lower()
    if switch in ("0", "false"):
        log.info("preload_dag_processor: off (%s=%s)", SWITCH_VAR, switch)
        return False
    if switch not in ("", "1", "true"):
        log.warning("preload_dag_processor: %s=%r is not 0 or 1; taken as 1", SWITCH_VAR, switch)
    start = time.process_time()
    try:
        keep_parse_time_after_callbacks()
        reparse_when_sites_change()
    except Exception:  # noqa: BLE001 - Airflow's own behaviour stays
        log.exception("preload_dag_processor: could not change when files are parsed")
    try:
        sites = _preload()
    except Exception:  # noqa: BLE001 - without the preload each parse imports for itself
        log.exception("preload_dag_processor: failed, each parse imports sitewatch itself")
        return False
    log.info(
        "preload_dag_processor: sites=%d file=%s cpu_s=%.3f",
        len(sites.sites),
        sites.path,
        time.process_time() - start,
    )
    return True


def _preload():
    """The factory imported (what ``dags/sites.py`` imports, and with it sitewatch's config and
    its dependencies), the sites file read; the result of the read."""
    from sitewatch.airflow import factory

    sites = factory.cached_sites()
    gc.freeze()  # shared by every parse child: never collect it
    return sites


def keep_parse_time_after_callbacks() -> None:
    """Make Airflow's DAG processor keep a file's last parse time across callback-only runs.

    Wraps ``DagFileProcessorManager.handle_parsing_result`` (once): after a run of a file that
    had callbacks and parsed nothing, the file's stat is its stat before that run (its DAG count
    and last finish time) with the run's duration; and every stat of the same file (Airflow keeps
    one per bundle version a callback named) carries the file's latest finish time, since
    ``prepare_file_queue`` reads whichever comes last. tests/unit/test_processor_preload.py pins
    the Airflow behaviour this corrects, so an Airflow that fixes it shows up there.
    """
    from airflow.dag_processing.manager import DagFileProcessorManager

    original = DagFileProcessorManager.handle_parsing_result
    if getattr(original, "keeps_parse_time", False):
        return

    @functools.wraps(original)
    def handle_parsing_result(self, file, proc, *args, **kwargs):
        before = self._file_stats.get(file)
        original(self, file, proc, *args, **kwargs)
        last_parse_stands(self._file_stats, file, before)
        after = self._file_stats.get(file)
        finished = after.last_finish_time if after is not None else None
        if finished is not None and finished != getattr(before, "last_finish_time", None):
            # a full parse (a callback-only run keeps the earlier finish time): when it began
            started = time.time() - (time.monotonic() - proc.start_time)
            parse_starts(self)[file.presence_key] = started
            try:
                note_shard_print(parse_prints(self), file, started)
            except Exception:  # noqa: BLE001 - without its print the file is parsed at a change
                parse_prints(self).pop(file.presence_key, None)
                log.exception("keep_parse_time_after_callbacks: no print of %s", file.rel_path)

    handle_parsing_result.keeps_parse_time = True
    DagFileProcessorManager.handle_parsing_result = handle_parsing_result


def last_parse_stands(stats: MutableMapping, file, before) -> None:
    """Correct ``stats`` (the manager's ``{DagFileInfo: DagFileStat}``) after a run of ``file``
    whose stat was ``before``: a run without a finish time (callback-only) keeps ``before`` but
    for its duration, and every stat of the file gets its latest finish time."""
    import attrs

    after = stats.get(file)
    ran_callbacks_only = after is not None and after.last_finish_time is None
    if ran_callbacks_only and before is not None and before.last_finish_time is not None:
        stats[file] = attrs.evolve(before, last_duration=after.last_duration)
    same = [other for other in stats if other.presence_key == file.presence_key]
    latest = max((t for other in same if (t := stats[other].last_finish_time)), default=None)
    for other in same if latest is not None else ():
        if stats[other].last_finish_time != latest:
            stats[other] = attrs.evolve(stats[other], last_finish_time=latest)


_STARTS = "_sitewatch_parse_starts"
_PRINTS = "_sitewatch_parse_prints"


def parse_starts(manager) -> dict:
    """``{presence_key: wall-clock start}`` of each file's last full parse, kept on ``manager``."""
    return manager.__dict__.setdefault(_STARTS, {})


def parse_prints(manager) -> dict:
    """``{presence_key: shard print}`` of what each shard file's last full parse built (see
    ``note_shard_print``), kept on ``manager``."""
    return manager.__dict__.setdefault(_PRINTS, {})


def reparse_when_sites_change() -> None:
    """Make Airflow's DAG processor parse again, at once, every file whose last full parse began
    before the sites file last changed (``cached_sites``'s path, its modification time).

    Wraps ``DagFileProcessorManager._sort_by_mtime`` (once), which ``prepare_file_queue`` asks
    which files changed since their last parse: those it queues although they were parsed within
    ``min_file_process_interval``. The start of each full parse is recorded by
    ``keep_parse_time_after_callbacks``'s wrapper, so a change made while a parse ran (which may
    have read the file before it) is parsed again too. The files ``held_back`` names are queued
    the same way, with or without a sites file.
    """
    from airflow.dag_processing.manager import DagFileProcessorManager

    from sitewatch.config.loader import default_sites_path

    original = DagFileProcessorManager._sort_by_mtime
    if getattr(original, "follows_sites", False):
        return

    @functools.wraps(original)
    def _sort_by_mtime(self, files):
        files = list(files)
        ordered, changed = original(self, files)
        changed = changed | held_back(self, files, time.time())
        try:
            changed_at = os.path.getmtime(default_sites_path())
        except OSError:  # no sites file: the factory reports it at the next parse
            return ordered, changed
        stale = parsed_before(files, parse_starts(self), changed_at)
        try:
            if stale:  # the sites file's prints, once for every file it may have left alone
                prints, now = parse_prints(self), current_prints()
                stale = {f for f in stale if not same_shard(prints, now, f)}
        except Exception:  # noqa: BLE001 - parse them all, as without the prints
            log.exception("reparse_when_sites_change: could not tell the shards apart")
        return ordered, changed | stale

    _sort_by_mtime.follows_sites = True
    DagFileProcessorManager._sort_by_mtime = _sort_by_mtime


LOOK_INTERVAL = 30.0
"""Seconds between two looks of ``held_back`` at the metadata database: Airflow's own default
interval between parses of a file, which the look stands in for."""


_HELD = "_sitewatch_held"


def held_back(manager, files, now: float) -> set:
    """The ``files`` that hold a DAG Airflow would start no run of until its next parse, and
    were not parsed since that was seen; looked up at most once per ``LOOK_INTERVAL``
    (``now``: seconds since the epoch). Never raises.

    Airflow starts a DAG's runs only while its ``exceeds_max_non_backfill`` is false. The scheduler
    sets it again when it ends a run, and a parse does; a run at the DAG's limit ended anywhere
    else (paused: the scheduler does not look at a paused DAG's runs; "mark as failed" in the
    UI) leaves it true, as does a parse that counted a run which ended before the parse was
    written; with a day between parses the DAG (a site, the drain) would start no run for up to
    a day. A parse of the DAG's file recounts its active runs."""
    seen = manager.__dict__.setdefault(_HELD, [0.0, set()])  # when looked, what was found
    if now - seen[0] >= LOOK_INTERVAL:
        try:
            held = held_dag_files()
        except Exception:  # noqa: BLE001 - the day's parse is left, as without this look
            log.exception("held_back: could not read the DAGs' run limits")
            held = set()
        seen[:] = [now, held]
        if held:
            log.info("held_back: parsing again %s", ", ".join(sorted(p for _, p in held)))
    looked, held = seen
    starts = parse_starts(manager)
    return {
        f
        for f in files
        if (f.bundle_name, str(f.rel_path)) in held and starts.get(f.presence_key, 0.0) < looked
    }


def held_dag_files() -> set[tuple[str, str]]:
    """``(bundle, relative file)`` of each active, unpaused DAG marked at its run limit with
    fewer runs active (queued or running, backfills aside, as Airflow counts them)."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType
    from sqlalchemy import func, select

    active = (
        select(func.count())
        .where(
            DagRun.dag_id == DagModel.dag_id,
            DagRun.state.in_((DagRunState.RUNNING, DagRunState.QUEUED)),
            DagRun.run_type != DagRunType.BACKFILL_JOB,
        )
        .scalar_subquery()
    )
    query = select(DagModel.bundle_name, DagModel.relative_fileloc).where(
        DagModel.exceeds_max_non_backfill,
        ~DagModel.is_paused,
        ~DagModel.is_stale,
        DagModel.relative_fileloc.is_not(None),
        DagModel.max_active_runs.is_not(None),
        active < DagModel.max_active_runs,
    )
    with create_session() as session:
        return {tuple(row) for row in session.execute(query)}


MTIME_MARGIN = 1.0
"""Seconds after a change in which a parse that began still counts as before it: a file's
modification time may trail the write by the file system's clock granularity, and a parse that
began in between may have read the old content. At worst one parse too many."""


def parsed_before(files, starts: dict, changed_at: float) -> set:
    """The ``files`` whose last full parse (``starts``, by presence key) began before
    ``changed_at`` (seconds since the epoch) plus ``MTIME_MARGIN``; a file not parsed since the
    processor started is not among them, as Airflow parses it anyway."""
    until = changed_at + MTIME_MARGIN
    return {f for f in files if f.presence_key in starts and starts[f.presence_key] < until}


def note_shard_print(prints: dict, file, started: float) -> None:
    """After a full parse of ``file`` that began at ``started`` (seconds since the epoch), keep
    in ``prints`` the print of the shard it built (``factory.shard_prints``) when the sites file
    has not changed since before the parse began, so the parse read what the print describes;
    else forget the file's print, and the next change parses it again whatever the print."""
    from sitewatch.airflow.factory import shard_file
    from sitewatch.config.loader import default_sites_path

    shard = shard_file(file.rel_path.name)
    if shard is None:
        return
    prints.pop(file.presence_key, None)
    try:
        changed_at = os.path.getmtime(default_sites_path())
    except OSError:
        return
    if changed_at + MTIME_MARGIN <= started:
        prints[file.presence_key] = current_prints()[shard]


def same_shard(prints: dict, now: tuple[str, ...], file) -> bool:
    """Whether ``file`` is a shard file whose last full parse built from what its shard holds in
    the sites file now (``now``: ``current_prints()``): then the change of the file left its DAGs
    as they are."""
    from sitewatch.airflow.factory import shard_file

    shard = shard_file(file.rel_path.name)
    known = prints.get(file.presence_key)
    return shard is not None and known is not None and known == now[shard]


_last_prints: list = [None, ()]  # the SitesFile the prints are of, and its prints


def current_prints() -> tuple[str, ...]:
    """``factory.shard_prints`` of the sites file as it is now, computed once per content
    (``cached_sites`` hands out the same ``SitesFile`` while the file is unchanged)."""
    from sitewatch.airflow.factory import shard_prints
    from sitewatch.config.loader import cached_sites

    sites = cached_sites()
    if _last_prints[0] is not sites:
        _last_prints[:] = [sites, shard_prints(sites)]
    return _last_prints[1]
