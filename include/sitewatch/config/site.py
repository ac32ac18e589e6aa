"""The validated site record and the loader's result types.

``Site`` is built from the key declarations in ``keys``: one field per key, in declaration order,
with the key's type and checked default, then ``line``. Nothing about a key is written here but
what construction does: freeze the collections and resolve ``offset: auto``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from types import MappingProxyType

from sitewatch.config.keys import BUILTIN_DEFAULTS, KEYS
from sitewatch.config.locations import majority
from sitewatch.config.offset import auto_offset


def _post_init(self) -> None:
    _freeze(self)
    if self.offset is None:  # `auto`: resolved here, so no code past the loader ever sees it
        object.__setattr__(self, "offset", auto_offset(self.name, self.schedule))
    if self.quorum is None:  # `majority`, resolved the same way
        object.__setattr__(self, "quorum", majority(self.locations))


def _freeze(self) -> None:
    # Callers building a Site in code may pass a dict or list; freeze them so a Site stays
    # safe to share between threads and DAGs.
    if not isinstance(self.headers, MappingProxyType):
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
    if not isinstance(self.locations, tuple):
        object.__setattr__(self, "locations", tuple(self.locations))
    for name in ("tags", "depends_on", "maintenance"):
        if not isinstance(getattr(self, name), tuple):
            object.__setattr__(self, name, tuple(getattr(self, name)))
    if not isinstance(self.expect_status, tuple):
        object.__setattr__(self, "expect_status", tuple(map(tuple, self.expect_status)))


def _several_locations(self) -> bool:
    """Whether the site is checked from more than one location: then a run's verdict is decided
    across them (``quorum``, ``sitewatch.judge.runs``), never by one location's check."""
    return len(self.locations) > 1


def _field(name: str) -> dataclasses.Field:
    """The Site field of key ``name``: no default for a required key, else its checked default."""
    if name not in BUILTIN_DEFAULTS:
        return dataclasses.field()
    default = BUILTIN_DEFAULTS[name]
    if type(default).__hash__ is None:
        # A mapping default (``headers``) is immutable but unhashable: dataclasses accept it only
        # from a factory, and hashing a Site must skip it.
        return dataclasses.field(default_factory=lambda: default, hash=False)
    return dataclasses.field(default=default)


_SITE_DOC = """One validated site. Field meanings and defaults are those of the sites file (YAML
v1), declared in ``sitewatch.config.keys``.

``schedule`` is a timedelta for an interval or a normalised 5-field cron string. ``offset`` is
always a timedelta: ``auto`` (None when given) becomes the name's offset on construction, and
``quorum`` always a number: ``majority`` (None) becomes more than half of ``locations``;
``several_locations`` says whether there is more than one.
``timeout`` is seconds. ``expect_status`` holds inclusive (low, high) ranges. ``max_body_bytes``
caps how much of the body is read and searched. ``notify`` holds alert targets
(``sitewatch.config.notify``). ``line`` is where the entry starts in its file (0 when built in
code). Constructing a Site directly does not validate: use ``load_sites`` or ``site_for_url``.
"""

Site = dataclasses.make_dataclass(
    "Site",
    [
        *((name, key.type, _field(name)) for name, key in KEYS.items()),
        ("line", int, dataclasses.field(default=0)),
    ],
    frozen=True,
    slots=True,
    namespace={
        "__module__": __name__,
        "__doc__": _SITE_DOC,
        "__post_init__": _post_init,
        "several_locations": property(_several_locations),
    },
)


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
    """The result of loading: every valid site (enabled or not), every issue and every warning, in
    file order.

    ``by_name`` and ``enabled_by_name`` index the sites by name, built at first use and kept with
    the file (``cached_sites`` hands out the same ``SitesFile`` while the file is unchanged, so
    an index lives as long as its file). Treat them as read-only, like the lists.
    """

    path: str
    sites: list[Site]
    issues: list[ConfigIssue]
    status_pages: tuple = ()
    """The valid public status pages (``config.status_pages.StatusPage``), in file order."""
    warnings: list[ConfigIssue] = dataclasses.field(default_factory=list)
    """What is valid but most likely not meant (a default no site's kind takes), in file order;
    ``sitewatch validate`` prints them, nothing refuses a site for them."""

    @functools.cached_property
    def by_name(self) -> dict[str, Site]:
        """Every valid site, enabled or not, by name (names are unique in a file)."""
        return {site.name: site for site in self.sites}

    @functools.cached_property
    def enabled_by_name(self) -> dict[str, Site]:
        """The enabled sites by name: those with a DAG, on the Sites page and in the metrics."""
        return {name: site for name, site in self.by_name.items() if site.enabled}
