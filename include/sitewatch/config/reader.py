"""Reading one composed sites document: top level, ``defaults`` and each entry, issues collected.

``sitewatch.config.loader`` owns the file handling and the public API; this module owns the walk:
which key goes where, which line an issue names, and how defaults merge into entries: a default
applies to each site whose kind of check takes its key (``keys.KIND_LIMITED``), while a site
setting a key its kind does not take is an error on that key's line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sitewatch.config.dependencies import Hints, cycles, self_problem
from sitewatch.config.dns_check import answers_problem
from sitewatch.config.key_checks import FLOW, KINDS, TCP, TLS, entry_kind, timeout_problem
from sitewatch.config.keys import (
    BUILTIN_DEFAULTS,
    FIELDS,
    KIND_LIMITED,
    KIND_NAMES,
    NO_DEFAULT,
    REQUIRED,
    kinds_text,
    takes,
)
from sitewatch.config.locations import quorum_problem
from sitewatch.config.objectives import degraded_problem
from sitewatch.config.offset import offset_problem
from sitewatch.config.site import ConfigIssue, Site
from sitewatch.config.status_pages import StatusPage, check_page, duplicate_id, unknown_sites
from sitewatch.config.values import describe, unknown_key
from sitewatch.config.yamltree import Invalid, TooComplex, Walker, line_of, scalar

_SEQUENCE = "sequence"
TOP_KEYS = ("defaults", "sites", "status_pages")


def _shown(field_name: str) -> str:
    """``field_name`` fit for one ``file:line: field: message`` line.

    Fields are built from the file's own keys, which can be empty or hold line breaks, bidi
    controls that reorder the line on screen, or lone surrogates that cannot be printed at all;
    each unprintable character is shown as its escape, as ``repr`` would.
    """
    if not field_name:
        return "''"
    if field_name.isprintable():
        return field_name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in field_name)


def subfield(field_name: str, item: int | str | tuple | None) -> str:
    """The field an issue names: ``tags`` + 1 -> ``tags[1]``, ``headers`` + ``Accept`` ->
    ``headers.Accept``, ``notify`` + ``(0, "webhook")`` -> ``notify[0].webhook``."""
    for part in item if isinstance(item, tuple) else () if item is None else (item,):
        field_name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return field_name


def _item_line(node: Node, item: int | str | tuple | None) -> int:
    """Line of list item / mapping key ``item`` (or a path of them) inside ``node``, else of the
    deepest node found."""
    line = line_of(node)
    for part in item if isinstance(item, tuple) else (item,):
        if isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = line_of(node)
        elif isinstance(node, MappingNode) and isinstance(part, str):
            found = [(k, v) for k, v in node.value if k.value == part]
            if not found:
                break
            line, node = line_of(found[0][0]), found[0][1]
        else:
            break
    return line


def _describe_node(node: Node) -> str:
    """``a list``, ``string 'x'``: what was found where something else belongs."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    try:
        return describe(scalar(node))
    except Invalid as exc:
        return f"an unreadable value ({exc.message})"


def _is_null(node: Node) -> bool:
    """True for an empty or ``null`` scalar (``defaults:`` with nothing under it)."""
    try:
        return isinstance(node, ScalarNode) and scalar(node) is None
    except Invalid:
        return False


def _memo_key(key: str, node: Node) -> tuple | None:
    """A key for values that repeat across entries (``5m``, ``[200, 301]``), None for others.

    Thousands of sites tend to share schedules, timeouts and patterns; checking each distinct text
    once keeps a 10,000-site file well under a second. Names and URLs are unique, so never memoised.
    """
    if key in REQUIRED:
        return None
    if isinstance(node, ScalarNode):
        return key, node.tag, (node.value,)
    if isinstance(node, SequenceNode) and all(isinstance(i, ScalarNode) for i in node.value):
        return key, _SEQUENCE, tuple(text for i in node.value for text in (i.tag, i.value))
    return None


def body_problem(values: Mapping[str, Any]) -> str | None:
    """The message when a complete set of site values has a body without method POST."""
    # A body on GET/HEAD is almost always a forgotten `method: POST`; say so instead of sending it.
    if values["body"] is not None and values["method"] != "POST":
        return f"a body needs method POST (method is {values['method']})"
    return None


_HINTS = {
    **{(FLOW, key): ", which searches a body with a body assertion in a step's expect"
       for key in ("regex", "forbid_regex")},
    **{(FLOW, key): f", which sets {key} on each step"
       for key in ("expect", "method", "headers", "body")},
    **{(kind, "regex"): ", which searches its reply with reply_regex" for kind in (TCP, TLS)},
    **{(TCP, key): ", which makes no TLS handshake (tls:// does)"
       for key in ("verify_tls", "tls_min_version", "min_cert_days")},
}  # fmt: skip
"""What the message of a key its kind does not take adds, by (kind, key)."""


def kind_problem(key: str, kind: str) -> str | None:
    """The message when a site of ``kind`` (``key_checks.entry_kind``) sets ``key`` itself and
    its kind does not take it (``keys.KIND_LIMITED``), else None."""
    if takes(kind, key):
        return None
    accepted = kinds_text(KIND_LIMITED[key])
    return f"{key} is for {accepted}; this is {KIND_NAMES[kind]}{_HINTS.get((kind, key), '')}"


def kind_defaults(defaults: Mapping[str, Any]) -> dict[str | None, dict[str, Any]]:
    """The defaults of a site of each kind: the built-in ones, and those of ``defaults`` (the
    file's) that its kind takes. None, a site whose kind is unknown (its url missing or
    invalid, which is reported), gets all of them, as every site did before kinds."""
    by_kind: dict[str | None, dict[str, Any]] = {
        kind: BUILTIN_DEFAULTS | {k: v for k, v in defaults.items() if takes(kind, k)}
        for kind in KINDS
    }
    by_kind[None] = BUILTIN_DEFAULTS | defaults
    return by_kind


class Rule(NamedTuple):
    """A check of one key against others, on a complete set of site values: ``problem`` returns
    the message for ``key``, or None. It is skipped when one of ``reads`` was given a value that
    failed its own check (that was reported already, and a default in its place would only
    mislead); the issue names the line of the first of ``key`` and ``reads`` the entry has."""

    key: str
    reads: tuple[str, ...]
    problem: Callable[[Mapping[str, Any]], str | None]


CROSS_KEY_RULES = (
    Rule("body", ("method",), body_problem),
    Rule("offset", ("schedule",), offset_problem),
    Rule("quorum", ("locations",), quorum_problem),
    Rule("degraded_ms", ("max_response_ms",), degraded_problem),
    Rule("timeout", ("schedule",), timeout_problem),
    Rule("answers", ("url",), answers_problem),
)
"""Every rule between keys of one entry; the sites file and ``site_for_url`` both apply them.
(Which keys a kind of check takes is not a rule here but ``kind_problem``: it asks whether the
entry set the key itself, which the values alone cannot tell.)"""


def unexpected(exc: Exception) -> str:
    """The message for a check that failed in a way nobody wrote a message for: it costs one
    entry, never the file, and the operator learns that it is sitewatch's fault."""
    detail = " ".join(str(exc).split())[:200]
    return f"could not be checked ({type(exc).__name__}: {detail}); please report this bug"


class _Parents(NamedTuple):
    """What the cross-site checks need of one entry's ``depends_on``."""

    where: str  # sites[3]
    parents: tuple[str, ...]
    node: Node | None  # the entry's own value, None when it comes from ``defaults``
    line: int  # the entry's


class Reader:
    """Walks one document, collecting issues; ``read`` returns the valid sites."""

    def __init__(self, path: str):
        self.path = path
        self.issues: list[ConfigIssue] = []
        self.walker = Walker()
        self.first_of_name: dict[str, tuple[str, int]] = {}  # name -> (field, line) of first use
        self.memo: dict[tuple, Any] = {}  # checked values by source text; all are immutable
        self.parents: dict[str, _Parents] = {}  # by name, for the first entry of each name
        self.default_parents: tuple[Node, tuple[str, ...]] | None = None  # when valid
        self.status_pages: list[StatusPage] = []  # the valid pages, once ``read`` is done
        self.warnings: list[ConfigIssue] = []  # what is valid but most likely not meant
        self.default_lines: dict[str, int] = {}  # line of each valid key of ``defaults``
        self.kinds_seen: set[str] = set()  # the kinds of the entries whose url is valid

    def report(self, line: int, field_name: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.path, line, _shown(field_name), message))

    def warn(self, line: int, field_name: str, message: str) -> None:
        self.warnings.append(ConfigIssue(self.path, line, _shown(field_name), message))

    def read(self, root: Node) -> list[Site]:
        if not isinstance(root, MappingNode):
            got = _describe_node(root)
            self.report(line_of(root), "<file>", f"expected a mapping with 'sites', got {got}")
            return []
        top = self.pairs(root, "")
        for key, key_node, _ in top:
            if key not in TOP_KEYS:
                self.report(line_of(key_node), key, unknown_key(key, TOP_KEYS))
        top_values = {key: value_node for key, _, value_node in top}
        sites = self.read_sites(root, top_values)
        if top_values.get("status_pages") is not None:  # pages name sites: read after them
            self.read_status_pages(top_values["status_pages"])
        return sites

    def read_sites(self, root: Node, top_values: dict[str, Node]) -> list[Site]:
        own_defaults = self.read_defaults(top_values.get("defaults"))
        defaults = kind_defaults(own_defaults)
        sites_node = top_values.get("sites")
        if sites_node is None:
            self.report(line_of(root), "sites", "required key 'sites' is missing")
            return []
        if not isinstance(sites_node, SequenceNode):
            got = _describe_node(sites_node)
            self.report(line_of(sites_node), "sites", f"expected a list of sites, got {got}")
            return []
        sites = []
        for index, entry in enumerate(sites_node.value):
            try:
                site = self.read_entry(f"sites[{index}]", entry, defaults)
            except TooComplex:
                raise
            except Exception as exc:  # whatever one entry holds, the others keep their sites
                self.report(line_of(entry), f"sites[{index}]", unexpected(exc))
                site = None
            if site is not None:
                sites.append(site)
        self.warn_unused_defaults(own_defaults)
        if not self.parents:
            return sites
        try:
            return self.check_dependencies(sites)
        except Exception as exc:  # refuse only the sites whose parents could not be checked
            for entry in self.parents.values():
                self.report(entry.line, f"{entry.where}.depends_on", unexpected(exc))
            return [site for site in sites if site.name not in self.parents]

    def read_status_pages(self, node: Node) -> None:
        """Check each page of ``status_pages`` alone (a bad one never hides the others), then
        that ids are unique and every site named is an entry of the file."""
        if _is_null(node):
            return
        if not isinstance(node, SequenceNode):
            got = _describe_node(node)
            self.report(line_of(node), "status_pages", f"expected a list of pages, got {got}")
            return
        hints, first_of_id = Hints(self.first_of_name), {}
        for index, entry in enumerate(node.value):
            where = f"status_pages[{index}]"
            try:
                page = check_page(self.walker.value(entry))
            except Invalid as exc:
                for problem in exc.all():
                    line = problem.line or _item_line(entry, problem.item)
                    self.report(line, subfield(where, problem.item), problem.message)
                continue
            except TooComplex:
                raise
            except Exception as exc:  # whatever one page holds, the others keep theirs
                self.report(line_of(entry), where, unexpected(exc))
                continue
            problems = list(unknown_sites(page, hints))
            for item, message in problems:
                self.report(_item_line(entry, item), subfield(where, item), message)
            first = first_of_id.setdefault(page.id, line_of(entry))
            if first != line_of(entry):
                line = _item_line(entry, "id")
                self.report(line, f"{where}.id", duplicate_id(page.id, first))
            elif not problems:
                self.status_pages.append(dataclasses.replace(page, line=line_of(entry)))

    def pairs(self, node: MappingNode, prefix: str) -> list[tuple[str, Node, Node]]:
        """Mapping pairs; a duplicate key is reported as ``<prefix><key>``."""

        def problem(key: str | None, message: str, line: int) -> None:
            field_name = prefix + key if key and key != "<<" else prefix.rstrip(".")
            self.report(line, field_name or "<file>", message)

        return self.walker.pairs(node, problem)

    def check(self, field_name: str, key: str, node: Node) -> tuple[bool, Any]:
        """Convert and check one value; report a problem and return (False, None) if any."""
        memo_key = _memo_key(key, node)
        if memo_key is not None and memo_key in self.memo:
            self.walker.count(1 + len(node.value) if isinstance(node, SequenceNode) else 1)
            return True, self.memo[memo_key]
        try:
            value = FIELDS[key](self.walker.value(node))
        except Invalid as exc:
            for problem in exc.all():
                line = problem.line or _item_line(node, problem.item)
                self.report(line, subfield(field_name, problem.item), problem.message)
            return False, None
        except TooComplex:
            raise
        except Exception as exc:  # a value no check foresaw: one problem, like any other
            self.report(line_of(node), field_name, unexpected(exc))
            return False, None
        if memo_key is not None:
            self.memo[memo_key] = value
        return True, value

    def read_defaults(self, node: Node | None) -> dict[str, Any]:
        if node is None or _is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            got = _describe_node(node)
            self.report(line_of(node), "defaults", f"expected a mapping of site keys, got {got}")
            return {}
        defaults = {}
        for key, key_node, value_node in self.pairs(node, "defaults."):
            if key in NO_DEFAULT:
                self.report(line_of(key_node), f"defaults.{key}", f"{key!r} cannot have a default")
            elif key not in FIELDS:
                self.report(line_of(key_node), f"defaults.{key}", unknown_key(key, FIELDS))
            else:
                ok, value = self.check(f"defaults.{key}", key, value_node)
                if ok:  # a bad default is reported here once and otherwise ignored
                    defaults[key] = value
                    self.default_lines[key] = line_of(key_node)
                    if key == "depends_on" and value:  # names are checked once all are read
                        self.default_parents = value_node, value
        return defaults

    def warn_unused_defaults(self, defaults: Mapping[str, Any]) -> None:
        """Warn of each key of ``defaults`` that no entry's kind takes: valid, but applied to no
        site (an HTTP-only default in a file of TCP checks). Nothing when no entry has a valid
        url: the file's errors say more."""
        if not self.kinds_seen:
            return
        for key in defaults:
            kinds = KIND_LIMITED.get(key)
            if kinds is not None and self.kinds_seen.isdisjoint(kinds):
                message = f"applies to no site: it is for {kinds_text(kinds)}, and no site is one"
                self.warn(self.default_lines[key], f"defaults.{key}", message)

    def read_entry(
        self, where: str, node: Node, defaults: Mapping[str | None, Mapping[str, Any]]
    ) -> Site | None:
        """Check one entry; ``defaults`` holds a value for every optional key, by the kind of
        check the entry makes (``kind_defaults``)."""
        if not isinstance(node, MappingNode):
            got = _describe_node(node)
            self.report(line_of(node), where, f"expected a mapping with name and url, got {got}")
            return None
        issues_before = len(self.issues)
        values: dict[str, Any] = {}
        nodes: dict[str, Node] = {}
        pairs = self.pairs(node, where + ".")
        for key, key_node, value_node in pairs:
            if key not in FIELDS:
                self.report(line_of(key_node), f"{where}.{key}", unknown_key(key, FIELDS))
                continue
            ok, value = self.check(f"{where}.{key}", key, value_node)
            if ok:
                values[key], nodes[key] = value, value_node
        lines = {key: line_of(value_node) for key, value_node in nodes.items()}
        present = {key for key, _, _ in pairs}
        for key in REQUIRED:
            flow = values.get("steps") or ("steps" in present and "steps" not in values)
            if key not in present and not (key == "url" and flow):
                self.report(line_of(node), where, f"missing required key {key!r}")
        if values.get("steps"):  # a flow: its check's url is its first step's
            if "url" in present:
                message = "a site has either url or steps, not both"
                self.report(lines["steps"], f"{where}.steps", message)
            values["url"] = values["steps"][0].url
        if "name" in values:
            self.check_unique(where, values["name"], lines["name"])
        kind = entry_kind(values["url"], bool(values.get("steps"))) if "url" in values else None
        failed = present - values.keys()  # reported already: bad values, then wrong kinds
        if kind is not None:
            self.kinds_seen.add(kind)
            for key, key_node, _ in pairs:  # the keys the entry sets itself, not its defaults
                if key in values and (problem := kind_problem(key, kind)):
                    self.report(line_of(key_node), f"{where}.{key}", problem)
                    failed.add(key)
        merged = defaults[kind] | values
        for rule in CROSS_KEY_RULES:
            keys = (rule.key, *rule.reads)
            if failed.isdisjoint(keys) and (problem := rule.problem(merged)):
                line = next((lines[key] for key in keys if key in lines), line_of(node))
                self.report(line, f"{where}.{rule.key}", problem)
        if "name" in values and not ("depends_on" in present and "depends_on" not in values):
            self.note_parents(where, values["name"], merged["depends_on"], nodes, line_of(node))
        if len(self.issues) > issues_before:
            return None
        return Site(**merged, line=line_of(node))

    def note_parents(
        self, where: str, name: str, parents: tuple[str, ...], nodes: dict[str, Node], line: int
    ) -> None:
        """Refuse a site that depends on itself; keep its parents for ``check_dependencies``."""
        node = nodes.get("depends_on")
        entry = _Parents(where, parents, node, line)
        if found := self_problem(name, parents):
            self.report_parent(entry, *found)
        if parents and self.first_of_name[name][0] == where:  # a repeated name is refused
            self.parents[name] = entry

    def check_dependencies(self, sites: list[Site]) -> list[Site]:
        """The cross-site checks of ``depends_on``: every parent is a site of the file, and no
        site is on a cycle. Returns ``sites`` without the refused ones.

        A parent ``defaults`` names that is no site is reported once and the default ignored, as
        any bad default: the sites that took it depend on nothing.
        """
        hints, refused = Hints(self.first_of_name), set()
        if self.default_parents is not None:
            node, parents = self.default_parents
            if self.report_unknown(hints, "defaults", node, parents):
                inherited = {name for name, entry in self.parents.items() if entry.node is None}
                self.parents = {n: e for n, e in self.parents.items() if n not in inherited}
                sites = [
                    dataclasses.replace(site, depends_on=()) if site.name in inherited else site
                    for site in sites
                ]
        for name, entry in self.parents.items():
            if entry.node is not None and self.report_unknown(
                hints, entry.where, entry.node, entry.parents
            ):
                refused.add(name)
        graph = {name: tuple(p for p in e.parents if p != name) for name, e in self.parents.items()}
        for name, (index, message) in cycles(graph).items():
            self.report_parent(self.parents[name], index, message)
            refused.add(name)
        return [site for site in sites if site.name not in refused]

    def report_unknown(self, hints: Hints, where: str, node: Node, parents: tuple) -> bool:
        """Report each of ``parents`` (the value ``node`` at ``where``) that is no site."""
        reported = False
        for index, message in hints.unknown(parents):
            self.report(_item_line(node, index), f"{where}.depends_on[{index}]", message)
            reported = True
        return reported

    def report_parent(self, entry: _Parents, index: int | None, message: str) -> None:
        """Report ``message`` on item ``index`` of the entry's ``depends_on``, or on the key when
        the entry took it from ``defaults``."""
        if entry.node is None or index is None:
            line = entry.line if entry.node is None else line_of(entry.node)
            self.report(line, f"{entry.where}.depends_on", message)
        else:
            self.report(
                _item_line(entry.node, index), f"{entry.where}.depends_on[{index}]", message
            )

    def check_unique(self, where: str, name: str, line: int) -> None:
        first_where, first_line = self.first_of_name.setdefault(name, (where, line))
        if first_where != where:
            message = f"duplicate name {name!r} (first at line {first_line})"
            self.report(line, f"{where}.name", message)
