"""The top-level ``status_pages`` key: public status pages and their components (issue 27).

Each page and each component key is declared once (``PAGE_KEYS``, ``COMPONENT_KEYS``, the same
``keys.Key`` records as the site keys): its check, its documentation and its reference example.
A page names what it publishes and nothing else: its title, and per component a display name, an
optional description and the sites whose verdicts it shows (one ``site``, or a ``group`` shown as
one). A site's URL, errors, headers and locations never reach a page.

One page is checked alone (``check_page``); what needs the whole file is here too, for the reader
to call once every site is read: ids are unique (``duplicate_id``) and every site named is a site
of the file (``unknown_sites``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sitewatch.config.dependencies import Hints
from sitewatch.config.key_checks import check_bool, check_name, check_url
from sitewatch.config.keys import Key
from sitewatch.config.values import checked, describe, distinct, entries, free_text, only_keys
from sitewatch.config.yamltree import Invalid

MAX_PAGES = 20
MAX_COMPONENTS = 1000
MAX_GROUP = 100
MAX_TITLE, MAX_NAME, MAX_DESCRIPTION = 200, 100, 500
PAGE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
"""A page id: the folder the page is published to, so a slug safe in any URL and file system."""


@dataclass(frozen=True, slots=True)
class Component:
    """One line of a page: its display ``name``, optional ``description``, the ``sites`` whose
    verdicts it shows (one, or a group's), ``group``: whether it was given as a group, and
    ``response_time``: whether its response time over 24 h is published."""

    name: str
    sites: tuple[str, ...]
    description: str | None = None
    group: bool = False
    response_time: bool = False

    @property
    def slug(self) -> str:
        """The component's id in the published files (``badges/<slug>.svg``): its name in lower
        case, each run of other characters a ``-``."""
        return slug(self.name)


@dataclass(frozen=True, slots=True)
class StatusPage:
    """One validated page: ``id`` (its folder), ``title``, ``components`` in file order,
    ``line``, where it starts in its file, and ``url``, its public address (None: not given)."""

    id: str
    title: str
    components: tuple[Component, ...]
    line: int = 0
    url: str | None = None

    def link(self, incident: int) -> str | None:
        """Where readers see incident ``incident``: its anchor on the page at ``url``."""
        return None if self.url is None else f"{self.url}#i-{incident}"


def slug(name: str) -> str:
    """``Shop API`` -> ``shop-api``; ``component`` when nothing of it is a letter or digit."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "component"


def check_page_id(value: Any) -> str:
    if not isinstance(value, str) or not PAGE_ID.fullmatch(value):
        raise Invalid(
            f"expected a page id like 'status' ({PAGE_ID.pattern}), got {describe(value)}"
        )
    return value


def _title(value: Any) -> str:
    return _named(value, MAX_TITLE)


def _public_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
        raise Invalid(f"expected an http or https URL, got {describe(value)}")
    return check_url(value)


def _display_name(value: Any) -> str:
    return _named(value, MAX_NAME)


def _named(value: Any, limit: int) -> str:
    found = free_text(value, limit)
    if not found.strip():
        raise Invalid("must not be empty")
    return found


def _description(value: Any) -> str | None:
    return None if value is None else free_text(value, MAX_DESCRIPTION)


def _group(value: Any) -> tuple[str, ...]:
    sites = distinct(entries(value, check_name, MAX_GROUP, "site names"))
    if not sites:
        raise Invalid("a group needs at least one site")
    return sites


def _components(value: Any) -> tuple[Component, ...]:
    found = entries(value, _component, MAX_COMPONENTS, "components")
    if not found:
        raise Invalid("a page needs at least one component")
    seen: dict[str, int] = {}
    for index, component in enumerate(found):
        first = seen.setdefault(component.slug, index)
        if first != index:
            raise Invalid(
                f"{component.name!r} would be published as {component.slug!r}, as"
                f" components[{first}] is: give it another name",
                item=(index, "name"),
            )
    return found


_PAGE_EXAMPLE = "status"
_COMPONENTS_EXAMPLE = """\
- site: reference-minimal
  name: Website
  description: The public website
- group: [reference-minimal, reference-all-keys]
  name: Shop
  response_time: true
"""

PAGE_KEYS: Mapping[str, Key] = MappingProxyType({key.name: key for key in (
    Key("id", str, check_page_id, example=_PAGE_EXAMPLE,
        doc="Unique among the pages; [a-z0-9][a-z0-9-]{0,62}. The page is published to"
        " <SITEWATCH_STATUS_PAGE_URL>/<id>/ (docs/status-page.md)."),
    Key("title", str, _title, example='"Example status"',
        doc=f"The page's heading and title, at most {MAX_TITLE} characters."),
    Key("url", str | None, _public_url, default=None, example="https://status.example.com/status/",
        doc="Where readers open the page (http or https). Status updates sent to notify targets"
        " (`status_updates: true`) link to an incident there, as <url>#i-<id>; none: no link."),
    Key("components", tuple[Component, ...], _components, example=_COMPONENTS_EXAMPLE,
        doc=f"1..{MAX_COMPONENTS} lines of the page, each one `site` or a `group` of sites shown as"
        " one (worst of them; some down is a partial outage), with its display `name` (unique on"
        " the page) and optional `description`. Only these texts and the sites' verdicts, uptimes,"
        " maintenance times and (where `response_time` asks) hourly response times are published:"
        " never a URL, an error, a header, a location or a maintenance reason."),
)})  # fmt: skip
"""Every key of a page."""

COMPONENT_KEYS: Mapping[str, Key] = MappingProxyType({key.name: key for key in (
    Key("site", str, check_name, default=None, example="shop",
        doc="The site whose verdicts the component shows; or `group`."),
    Key("group", tuple[str, ...], _group, default=None, example="[shop-eu, shop-us]",
        doc=f"1..{MAX_GROUP} sites shown as one; or `site`."),
    Key("name", str, _display_name, example="Shop",
        doc=f"Display name, at most {MAX_NAME} characters."),
    Key("description", str | None, _description, default=None, example="Orders and payments",
        doc=f"Shown under the name, at most {MAX_DESCRIPTION} characters."),
    Key("response_time", bool, check_bool, default=False, example="true",
        doc="Publish a chart of the response time over the last 24 h (each hour's median, the"
        " slowest of the sites and their locations). Off: response times stay private."),
)})  # fmt: skip
"""Every key of a component."""


def _component(entry: Any) -> Component:
    if not isinstance(entry, dict):
        raise Invalid(
            f"expected a mapping with 'site' or 'group' and 'name', got {describe(entry)}"
        )
    only_keys(entry, tuple(COMPONENT_KEYS))
    if ("site" in entry) == ("group" in entry):
        raise Invalid("a component has 'site' or 'group', one of them")
    if "name" not in entry:
        raise Invalid("a component needs 'name'")
    values = {
        name: checked(key.check, entry, name, key.default) for name, key in COMPONENT_KEYS.items()
    }
    group = "group" in entry
    sites = values["group"] if group else (values["site"],)
    return Component(values["name"], sites, values["description"], group, values["response_time"])


def check_page(entry: Any) -> StatusPage:
    """One page of ``status_pages``. Raises Invalid with ``item`` a path such as
    ``("components", 2, "group")``."""
    if not isinstance(entry, dict):
        raise Invalid(f"expected a mapping with id, title and components, got {describe(entry)}")
    only_keys(entry, tuple(PAGE_KEYS))
    for name, key in PAGE_KEYS.items():
        if key.required and name not in entry:
            raise Invalid(f"missing required key {name!r}")
    values = {name: checked(key.check, entry, name) for name, key in PAGE_KEYS.items()}
    return StatusPage(**values)


def duplicate_id(page_id: str, first_line: int) -> str:
    return f"duplicate page id {page_id!r} (first at line {first_line})"


def unknown_sites(page: StatusPage, hints: Hints) -> Iterator[tuple[tuple, str]]:
    """(item path inside the page, message) for each site a component names that is no site of
    the file, with a close-match hint."""
    for index, component in enumerate(page.components):
        for position, message in hints.unknown(component.sites):
            item = ("group", position) if component.group else ("site",)
            yield ("components", index, *item), message
