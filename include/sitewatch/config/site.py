"""The validated site record and the loader's result types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Site:
    """One validated site. Field meanings and defaults are those of the sites file (YAML v1).

    ``schedule`` is a timedelta for an interval or a normalised 5-field cron string. ``timeout`` is
    seconds. ``expect_status`` holds inclusive (low, high) ranges. ``max_body_bytes`` caps how much
    of the body is read and searched. ``line`` is where the entry starts in its file (0 when built
    in code). Constructing a Site directly does not validate: use ``load_sites`` or
    ``site_for_url``.
    """

    name: str
    url: str
    schedule: timedelta | str = timedelta(minutes=5)
    regex: str | None = None
    forbid_regex: str | None = None
    expect_status: tuple[tuple[int, int], ...] = ((200, 399),)
    max_response_ms: int | None = None
    min_cert_days: int | None = None
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    body: str | None = None
    timeout: float = 10.0
    follow_redirects: bool = True
    verify_tls: bool = True
    max_body_bytes: int = 5 * 1024 * 1024
    retries: int = 2
    retry_delay: timedelta = timedelta(seconds=30)
    tags: tuple[str, ...] = ()
    owner: str = "sitewatch"
    enabled: bool = True
    # alert targets (sitewatch.config.notify) and the STILL DOWN interval; see docs/alerts.md
    notify: tuple = ()
    remind_every: timedelta | None = None
    line: int = 0

    def __post_init__(self) -> None:
        # Callers building a Site in code may pass a dict or list; freeze them so a Site stays
        # safe to share between threads and DAGs.
        if not isinstance(self.headers, MappingProxyType):
            object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        if not isinstance(self.tags, tuple):
            object.__setattr__(self, "tags", tuple(self.tags))
        if not isinstance(self.expect_status, tuple):
            object.__setattr__(self, "expect_status", tuple(map(tuple, self.expect_status)))


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a sites file. ``field`` is like ``sites[3].regex``, ``defaults.timeout``,
    ``sites[0]`` (the whole entry), ``sites`` or ``<file>``; ``line`` is 1-based (0: no line)."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


@dataclass
class SitesFile:
    """The result of loading: every valid site (enabled or not) and every issue, in file order."""

    path: str
    sites: list[Site]
    issues: list[ConfigIssue]
