"""The ``sitewatch`` command: ``validate`` a sites file, or ``probe`` one URL now.

Exit codes: 0 success (file valid / site up), 1 failure (issues found / site down), 2 usage or
configuration error. The probe module is imported only by ``probe``, so ``validate`` stays fast and
works where the probe's dependencies are missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import datetime
from pathlib import Path

from sitewatch.config.loader import default_sites_path, load_sites, site_for_url
from sitewatch.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(argv)
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sitewatch", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a sites file; print every problem")
    validate.add_argument(
        "file", nargs="?", help="sites file (default: $SITEWATCH_SITES_FILE or include/sites.yaml)"
    )
    validate.set_defaults(run=_validate)

    probe = commands.add_parser("probe", help="probe one URL now and print what was seen")
    probe.add_argument("url", help="http or https URL")
    probe.add_argument("--regex", help="the page must match this pattern (Python syntax)")
    probe.add_argument("--forbid-regex", help="the page must not match this pattern")
    probe.add_argument("--timeout", default="10s", help="duration like 10s or 500ms (default 10s)")
    probe.add_argument("--method", default="GET", help="GET, HEAD or POST (default GET)")
    probe.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    probe.set_defaults(run=_probe)
    return parser


def _validate(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else _relative(default_sites_path())
    result = load_sites(path)
    for issue in result.issues:
        print(issue)
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
    return EXIT_OK


def _probe(args: argparse.Namespace) -> int:
    try:
        site = site_for_url(
            args.url,
            regex=args.regex,
            forbid_regex=args.forbid_regex,
            timeout=args.timeout,
            method=args.method,
            verify_tls=not args.insecure,
        )
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"sitewatch probe: {issue.field}: {issue.message}", file=sys.stderr)
        return EXIT_USAGE
    from sitewatch.probe.http import probe  # lazy: pulls in requests and the transport

    observation = probe(site)
    for f in dataclasses.fields(observation):
        value = getattr(observation, f.name)
        if value is not None:
            print(f"{f.name}: {_show(value)}")
    return EXIT_OK if observation.up else EXIT_FAILED


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
