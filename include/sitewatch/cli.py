"""The ``sitewatch`` command: ``validate`` a sites file, ``probe`` a URL or a site now, list the
``locations`` a sites file checks from (with the queue each one's workers must listen on), or
print a month's SLA ``report`` from the results database.

Exit codes: 0 success (file valid / site up), 1 failure (issues found / site down), 2 usage or
configuration error. Nothing given on the command line makes it print a traceback: every bad
argument is a usage error. The probe module is imported only by ``probe``, so ``validate`` stays
fast and works where the probe's dependencies are missing; the report's modules (and psycopg)
only by ``report``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from sitewatch.config.keys import KEYS
from sitewatch.config.loader import default_sites_path, load_sites, site_for_url
from sitewatch.config.secrets import expand_headers
from sitewatch.config.site import ConfigIssue, Site
from sitewatch.errors import ConfigError, SettingError, StorageError
from sitewatch.names import DEFAULT_QUEUE, LOCAL_LOCATION, location_queue
from sitewatch.observation import LOCATION_NAME
from sitewatch.status import settings as status_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_WAIT = {"connect_timeout": 10}  # seconds, for the report's connection
_SITES_FILE_HELP = "sites file (default: $SITEWATCH_SITES_FILE or include/sites.yaml)"


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    for stream in (sys.stdout, sys.stderr):
        # A file name or sites-file key may hold bytes that are not UTF-8 (lone surrogates in
        # Python): print them escaped rather than fail on them.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sitewatch", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a sites file; print every problem")
    validate.add_argument("file", nargs="?", help=_SITES_FILE_HELP)
    validate.set_defaults(run=_validate)

    locations = commands.add_parser(
        "locations",
        help="print each location the sites file checks from and its queue",
        description="One line per location of an enabled, valid site ('local' always), tab"
        " separated: location, then the queue its Celery workers listen on.",
    )
    locations.add_argument("file", nargs="?", help=_SITES_FILE_HELP)
    locations.set_defaults(run=_locations)

    probe = commands.add_parser(
        "probe",
        help="probe one URL or configured site now and print what was seen",
        usage="%(prog)s URL [options] | %(prog)s --site NAME [--sites-file FILE]",
        description="Probe once and print the observation. Exit 0 up, 1 down, 2 usage error.",
    )
    probe.add_argument("url", nargs="?", help="http or https URL")
    adhoc = probe.add_argument_group("probing a URL")
    adhoc.add_argument("--regex", help="the page must match this pattern (Python syntax)")
    adhoc.add_argument("--forbid-regex", help="the page must not match this pattern")
    adhoc.add_argument("--timeout", help=f"like 10s or 500ms (default {KEYS['timeout'].default})")
    adhoc.add_argument("--method", help=f"GET, HEAD or POST (default {KEYS['method'].default})")
    adhoc.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    adhoc.add_argument(
        "-H",
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="send this header (repeatable); ${SITEWATCH_SECRET_...} is read from the environment",
    )
    configured = probe.add_argument_group("probing a configured site, exactly as its DAG does")
    configured.add_argument("--site", metavar="NAME", help="the site of this name")
    configured.add_argument("--sites-file", metavar="FILE", help=_SITES_FILE_HELP)
    probe.add_argument(
        "--location",
        help="name this location in the User-Agent and the observation (default: local)",
    )
    probe.set_defaults(run=_probe, usage_error=probe.error)

    report = commands.add_parser(
        "report",
        help="print a month's SLA report: uptime, downtime, incidents, SLO met",
        description="Per site: uptime, downtime minutes, incidents, maintenance minutes left out,"
        " SLO target and whether it was met, then the incidents. Reads the results database"
        " through libpq's PG* environment variables (PGHOST, PGDATABASE, PGUSER, PGPASSWORD or"
        " ~/.pgpass, PGSERVICE) or --dsn. Each query stops after"
        " $SITEWATCH_REPORT_TIMEOUT_SECONDS (default 120). Exit 0 printed, 1 database error or"
        " timeout, 2 usage error.",
    )
    report.add_argument("--month", required=True, metavar="YYYY-MM", help="the month, in UTC")
    report.add_argument("--format", default="csv", help="csv (default), md or html")
    report.add_argument(
        "--sites", metavar="FILE", help=f"{_SITES_FILE_HELP}; the SLO targets come from it"
    )
    report.add_argument(
        "--dsn",
        help="libpq connection string or URI of the results database (a password here shows"
        " in the process list: prefer PGPASSWORD or ~/.pgpass)",
    )
    report.set_defaults(run=_report, usage_error=report.error)
    return parser


def _validate(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else _relative(default_sites_path())
    result = load_sites(path)
    # In line order; a warning (a default that no site's kind of check takes) fails nothing.
    shown = [(issue.line, str(issue)) for issue in result.issues]
    shown += [(warning.line, _warning_text(warning)) for warning in result.warnings]
    for _, text in sorted(shown, key=lambda pair: pair[0]):
        print(text)
    if result.issues:
        count = len(result.issues)
        print(f"{path}: {count} problem{'s' * (count != 1)}", file=sys.stderr)
        return EXIT_FAILED
    enabled = sum(site.enabled for site in result.sites)
    total = len(result.sites)
    print(
        f"{path}: {total} site{'s' * (total != 1)} OK "
        f"({enabled} enabled, {total - enabled} disabled)"
    )
    return _list_status_pages(result.status_pages)


def _warning_text(warning: ConfigIssue) -> str:
    """``sites.yaml:3: warning: defaults.send: applies to no site: ...``"""
    return f"{warning.file}:{warning.line}: warning: {warning.field}: {warning.message}"


def _list_status_pages(pages) -> int:
    """One line per status page: its id, components and the folder the DAG publishes it to
    (``SITEWATCH_STATUS_PAGE_URL`` as the worker would read it, if it has the same
    environment). A bad URL is a configuration error."""
    if not pages:
        return EXIT_OK
    try:
        target = status_settings.target_url()
    except SettingError as exc:
        print(f"sitewatch validate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for page in pages:
        count = len(page.components)
        print(
            f"status page {page.id}: {count} component{'s' * (count != 1)},"
            f" published to {target}/{page.id}/"
        )
    return EXIT_OK


def _locations(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else _relative(default_sites_path())
    result = load_sites(path)
    used = {LOCAL_LOCATION} | {
        loc for site in result.sites if site.enabled for loc in site.locations
    }
    for location in sorted(used):
        print(f"{location}\t{location_queue(location) or DEFAULT_QUEUE}")
    if result.issues:
        print(f"{path}: {len(result.issues)} problem(s); run: sitewatch validate", file=sys.stderr)
    return EXIT_OK


def _probe(args: argparse.Namespace) -> int:
    site = _configured_site(args) if args.site is not None else _adhoc_site(args)
    if site is None:
        return EXIT_USAGE
    try:
        site, secrets = expand_headers(site)  # as the DAG's task does, from this environment
    except ConfigError as exc:
        _print_issues(exc)
        return EXIT_USAGE
    from sitewatch.probe.http import probe_in_detail  # lazy: requests and the transport

    if args.location is not None and not LOCATION_NAME.fullmatch(args.location):
        args.usage_error(f"--location {args.location!r}: use at most 31 of a-z, 0-9, '_', '-'")
    location = args.location or LOCAL_LOCATION
    observation, results = probe_in_detail(site, secrets=secrets, location=location)
    for f in dataclasses.fields(observation):
        value = getattr(observation, f.name)
        if value is not None and f.name != "steps":
            print(f"{f.name}: {_show(value)}")
    if observation.steps:
        _print_steps(observation.steps, results)
    elif site.expect:
        # One line per assertion of `expect`, in order: what passed, what failed and why, and
        # what was not evaluated after the first failure (or because the exchange failed).
        print("assertions:")
        for index, assertion in enumerate(site.expect):
            result = results[index] if index < len(results) else None
            mark = {True: "pass", False: "FAIL"}.get(result and result.passed, "skip")
            print(f"  {mark}  {result.detail if result else assertion.describe()}")
    return EXIT_OK if observation.up else EXIT_FAILED


def _print_steps(steps: list[dict], results: list) -> None:
    """One line per step of a flow, in order (passed, failed, or skipped after a failure), each
    followed by its ``expect`` assertions, as ``probe_in_detail`` returned them."""
    print("steps:")
    width = max(len(step["name"]) for step in steps)
    for step in steps:
        mark = {True: "pass", False: "FAIL"}.get(step.get("passed"), "skip")
        shown = [step["name"].ljust(width), step["method"], step["url"]]
        shown += [str(step["status"])] if "status" in step else []
        shown += [f"{step['response_ms']:.1f} ms"] if "response_ms" in step else []
        print(f"  {mark}  {'  '.join(shown)}")
        prefix = f"step {step['name']}: "
        own = [r for r in results if r.detail.startswith(prefix)]
        for result in own:
            mark = {True: "pass", False: "FAIL"}.get(result.passed, "skip")
            print(f"          {mark}  {result.detail.removeprefix(prefix)}")
        if step.get("error_detail") and not any(r.passed is False for r in own):
            error = f"{step['error']}: " if step.get("error") else ""
            print(f"          {error}{step['error_detail']}")


def _report(args: argparse.Namespace) -> int:
    from sitewatch.dashboard import report  # lazy: the storage layer and psycopg

    try:
        first, after = report.month_days(args.month)
    except ValueError as exc:
        args.usage_error(f"--month: {exc}")
    if args.format not in report.FORMATS:
        args.usage_error(f"--format {args.format!r}: use one of {', '.join(report.FORMATS)}")
    path = Path(args.sites) if args.sites else _relative(default_sites_path())
    objectives = report.objectives(_valid_sites(path))
    try:
        period = _read_period(args, first, after)
    except StorageError as exc:
        print(f"sitewatch report: {exc}", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.write(report.render(period, objectives, args.format))
    if args.format == "csv":  # the other formats carry their notes
        for note in report.notes(period):
            print(f"sitewatch report: note: {note}", file=sys.stderr)
    return EXIT_OK


def _valid_sites(path: Path) -> list:
    """The valid sites of the sites file, for their SLOs; its problems go to stderr, and the
    sites it could read still count (a bad entry never hides the others' targets)."""
    loaded = load_sites(path)
    for issue in loaded.issues:
        print(f"sitewatch report: {issue}", file=sys.stderr)
    return loaded.sites


def _read_period(args: argparse.Namespace, first: date, after: date):
    """The month's ``storage.sla.Period``, as of now. Raises StorageError (SchemaError
    for tables missing or too old) when PostgreSQL cannot answer."""
    import psycopg

    from sitewatch.storage.schema import require_current
    from sitewatch.storage.sla import period, report_timeout

    try:
        timeout = report_timeout()
    except SettingError as exc:
        args.usage_error(str(exc))
    dsn = args.dsn or ""
    try:
        given = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        args.usage_error(f"--dsn: {exc}")
    # libpq waits for an unreachable server as long as TCP does (minutes) unless told otherwise
    wait = {} if "connect_timeout" in given or "PGCONNECT_TIMEOUT" in os.environ else _WAIT
    try:
        conn = psycopg.connect(dsn, **wait)
    except psycopg.Error as exc:
        cause = " ".join(str(exc).split()) or type(exc).__name__
        raise StorageError(f"PostgreSQL could not be reached: {cause}") from exc
    with conn:
        require_current(conn)
        return period(conn, first, after, datetime.now(UTC), timeout=timeout)


def _adhoc_site(args: argparse.Namespace) -> Site | None:
    """The Site the URL options describe; None after printing why there is none.

    Options not given are left to the sites-file defaults, so ``probe URL`` checks what a site
    entry with only ``url`` would. Exits 2 through ``usage_error`` for a missing URL, a
    ``--sites-file`` without ``--site`` or a header that is not ``NAME: VALUE``.
    """
    if args.url is None:
        args.usage_error("give a URL or --site NAME")
    if args.sites_file is not None:
        args.usage_error("--sites-file needs --site NAME")
    given = {
        "regex": args.regex,
        "forbid_regex": args.forbid_regex,
        "timeout": args.timeout,
        "method": args.method,
        "verify_tls": False if args.insecure else None,
        "headers": _headers(args.header, args.usage_error) if args.header else None,
    }
    try:
        return site_for_url(args.url, **{k: v for k, v in given.items() if v is not None})
    except ConfigError as exc:
        _print_issues(exc)
        return None


def _headers(given: list[str], usage_error: Callable[[str], None]) -> dict[str, str]:
    """``-H`` options as a mapping; the value is trimmed as curl trims it. A name given twice is
    a usage error, as a duplicate key is in the sites file."""
    headers: dict[str, str] = {}
    for header in given:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            usage_error(f"-H expects 'NAME: VALUE', got {header!r}")
        if name.strip() in headers:
            usage_error(f"-H {name.strip()!r} given twice")
        headers[name.strip()] = value.strip()
    return headers


def _configured_site(args: argparse.Namespace) -> Site | None:
    """The valid site named ``--site`` in the sites file, the same Site its DAG is built from.

    A disabled site is probed too (with a note): checking it before enabling is the point.
    Returns None after printing the file's issues and the nearest name when there is no such
    valid site; exits 2 through ``usage_error`` when URL options are given as well.
    """
    url_options = (args.url, args.regex, args.forbid_regex, args.timeout, args.method, args.header)
    if args.insecure or any(option is not None for option in url_options):
        args.usage_error("--site probes the site as configured: give no URL or URL options")
    path = Path(args.sites_file) if args.sites_file else _relative(default_sites_path())
    loaded = load_sites(path)
    sites = loaded.by_name
    if args.site in sites:
        site = sites[args.site]
        if not site.enabled:
            print(
                f"sitewatch probe: note: {args.site} is disabled (no DAG runs it)", file=sys.stderr
            )
        return site
    for issue in loaded.issues:
        print(issue, file=sys.stderr)
    nearest = difflib.get_close_matches(args.site, sites, n=1, cutoff=0.0)
    hint = f"; nearest: {nearest[0]!r}" if nearest else "; it has no valid sites"
    print(f"sitewatch probe: no valid site {args.site!r} in {path}{hint}", file=sys.stderr)
    return None


def _print_issues(exc: ConfigError) -> None:
    for issue in exc.issues:
        print(f"sitewatch probe: {issue.field}: {issue.message}", file=sys.stderr)


def _show(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _relative(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (shorter messages)."""
    try:
        return Path(os.path.relpath(path)) if path.is_relative_to(Path.cwd()) else path
    except (OSError, ValueError):
        return path


if __name__ == "__main__":
    sys.exit(main())
