"""The ``expect`` key: a list of assertions on one response, checked when the sites file is read.

Each entry names its kind by one key, whose value is the subject, with its comparison beside it::

    - status: [200, "201-204"]                       # codes or ranges, as expect_status
    - header: Content-Type                           # with one of equals, matches, exists
      matches: '^application/json'
    - response_time_ms: {lt: 500}                    # or {le: 500}
    - body: '"status":\\s*"ok"'                      # a regex searched in the body, as `regex`
    - json: $.items[*].state                         # an RFC 9535 JSONPath, one comparison
      equals: ready
      quantifier: all                                # all (default), any or none of the nodes
    - json_schema: {type: object, required: [id]}    # a JSON Schema, checked here

The probe (``sitewatch.probe.assertions``) evaluates them in order. Values to compare with are
kept as JSON text, so an ``Assertion`` (and the ``Site`` holding it) stays hashable and frozen.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from sitewatch.config.jsonpaths import compile_path
from sitewatch.config.key_checks import check_expect_status, check_regex
from sitewatch.config.objectives import MAX_RESPONSE_MS
from sitewatch.config.values import (
    checked,
    describe,
    entries,
    integer,
    item_path,
    text,
    unknown_key,
)
from sitewatch.config.yamltree import Invalid

MAX_ASSERTIONS = 50
MAX_EXPECTED = 10_000  # characters of a value to compare with, as JSON text
KINDS = ("status", "header", "response_time_ms", "body", "json", "json_schema")
ORDER = ("lt", "le", "gt", "ge")
JSON_COMPARISONS = ("equals", "not_equals", *ORDER, "contains", "matches", "exists", "length")
HEADER_COMPARISONS = ("equals", "matches", "exists")
LENGTH_COMPARISONS = ("equals", "not_equals", *ORDER)
QUANTIFIERS = ("all", "any", "none")
DEFAULT_QUANTIFIER = "all"
"""``all``: a check should fail when any item of a list is wrong, and with no node at all (a path
that no longer exists) it fails too rather than passing vacuously."""


@dataclass(frozen=True, slots=True)
class Assertion:
    """One checked entry of ``expect``.

    kind: one of ``KINDS``. subject: the status ranges (a tuple of (low, high)), the header name,
    the body pattern, the JSONPath text, or the schema as JSON text; None for response_time_ms.
    op: the comparison (``equals``, ``lt``, ``length``, ...); None for status, body and
    json_schema. expected: what to compare with, as JSON text (``value`` decodes it); for
    ``length``, a JSON pair ``["ge", 1]``. quantifier: over a JSONPath's nodes.
    """

    kind: str
    subject: Any = None
    op: str | None = None
    expected: str | None = None
    quantifier: str = DEFAULT_QUANTIFIER

    @property
    def value(self) -> Any:
        return None if self.expected is None else _loads(self.expected)

    def describe(self) -> str:
        """How the assertion reads in a detail: ``json $.data.id``, ``header Content-Type``."""
        if self.kind == "status":
            return "status"
        if self.kind in ("header", "json"):
            return f"{self.kind} {self.subject}"
        return self.kind


@functools.lru_cache(maxsize=1024)
def _loads(text: str) -> Any:
    return json.loads(text)


def _json_text(value: Any) -> str:
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:  # .inf, .nan: YAML has them, JSON has not
        raise Invalid("not a JSON value: infinity and NaN have no JSON form") from None
    if len(encoded) > MAX_EXPECTED:
        raise Invalid(f"value too long: {len(encoded)} characters as JSON (at most {MAX_EXPECTED})")
    return encoded


def check_expect(value: Any) -> tuple[Assertion, ...]:
    """The ``expect`` key: ``null`` or a list of at most ``MAX_ASSERTIONS`` assertions.

    Raises Invalid for the first bad entry, with every other bad entry's problem in ``also``.
    """
    problems: list[Invalid] = []

    def collect(entry: Any) -> Assertion | None:
        try:
            return _assertion(entry)
        except Invalid as exc:
            problems.append(exc)
            return None

    found = entries(value, collect, MAX_ASSERTIONS, "assertions", " (" + ", ".join(KINDS) + ")")
    if problems:
        indexes = [index for index, assertion in enumerate(found) if assertion is None]
        for index, problem in zip(indexes, problems, strict=True):
            problem.item = (index, *item_path(problem.item))
        raise Invalid(problems[0].message, problems[0].line, problems[0].item, tuple(problems[1:]))
    return found


def _assertion(entry: Any) -> Assertion:
    if not isinstance(entry, dict):
        raise Invalid(f"expected a mapping with one of {', '.join(KINDS)}, got {describe(entry)}")
    kinds = [key for key in entry if key in KINDS]
    if len(kinds) != 1:
        if kinds:
            raise Invalid(f"one assertion per entry; this one has {' and '.join(kinds)}")
        if not entry:
            raise Invalid(f"empty assertion: give one of {', '.join(KINDS)}")
        first = next(iter(entry))
        raise Invalid(unknown_key(first, KINDS), item=first)
    return _CHECKS[kinds[0]](entry)


def _only(entry: dict, allowed: tuple[str, ...], comparisons: tuple[str, ...] = ()) -> None:
    """Refuse a key not in ``allowed``; name it an unknown comparison when the entry takes
    ``comparisons``, with the nearest one or the list of them."""
    for key in entry:
        if key not in allowed:
            if not comparisons:
                raise Invalid(unknown_key(key, allowed), item=key)
            message = unknown_key(key, comparisons).replace("unknown key", "unknown comparison", 1)
            raise Invalid(message.replace("valid keys:", "valid:", 1), item=key)


def _one_comparison(entry: dict, choices: tuple[str, ...], what: str) -> str:
    given = [key for key in entry if key in choices]
    if len(given) != 1:
        problem = "none" if not given else " and ".join(given)
        raise Invalid(f"{what} needs exactly one of {', '.join(choices)} (got {problem})")
    return given[0]


def _status(entry: dict) -> Assertion:
    _only(entry, ("status",))
    return Assertion("status", checked(check_expect_status, entry, "status"))


def _header(entry: dict) -> Assertion:
    _only(entry, ("header", *HEADER_COMPARISONS), HEADER_COMPARISONS)
    name = checked(lambda v: _header_name(v), entry, "header")
    op = _one_comparison(entry, HEADER_COMPARISONS, "a header assertion")
    check = {"equals": lambda v: text(v, MAX_EXPECTED), "matches": check_regex, "exists": _bool}
    return Assertion("header", name, op, _json_text(checked(check[op], entry, op)))


def _header_name(value: Any) -> str:
    name = text(value, 200)
    if not name or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+.^_`|~-") for c in name):
        raise Invalid(f"invalid header name {name!r}")
    return name


def _response_time(entry: dict) -> Assertion:
    _only(entry, ("response_time_ms",))
    limit = entry["response_time_ms"]
    if not isinstance(limit, dict) or len(limit) != 1 or next(iter(limit)) not in ("lt", "le"):
        raise Invalid(
            f"expected {{lt: N}} or {{le: N}} in milliseconds, got {describe(limit)}",
            item="response_time_ms",
        )
    op = next(iter(limit))
    ms = checked(lambda v: integer(v, 1, MAX_RESPONSE_MS), limit, op)
    return Assertion("response_time_ms", None, op, _json_text(ms))


def _body(entry: dict) -> Assertion:
    _only(entry, ("body",))
    return Assertion("body", checked(check_regex, entry, "body"))


def _json(entry: dict) -> Assertion:
    _only(entry, ("json", "quantifier", *JSON_COMPARISONS), JSON_COMPARISONS)
    path = checked(check_path, entry, "json")
    quantifier = checked(_quantifier, entry, "quantifier", DEFAULT_QUANTIFIER)
    op = _one_comparison(entry, JSON_COMPARISONS, "a json assertion")
    expected = checked(_EXPECTED[op], entry, op)
    if op == "exists" and "quantifier" in entry:
        raise Invalid("exists says whether any node matched; a quantifier does not apply",
                      item="quantifier")  # fmt: skip
    return Assertion("json", path, op, _json_text(expected), quantifier)


def check_path(value: Any) -> str:
    """An RFC 9535 JSONPath query (compiled, so the probe finds it cached); raises Invalid."""
    path = text(value, 1000)
    if not path.startswith("$"):
        raise Invalid(
            f"invalid JSONPath {path[:60]!r}: a query starts with $ (as in $.{path[:20]})"
        )
    try:
        compile_path(path)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return path


def _quantifier(value: Any) -> str:
    if value not in QUANTIFIERS:
        raise Invalid(f"quantifier must be one of {', '.join(QUANTIFIERS)}, got {describe(value)}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {describe(value)}")
    return value


def _any_json(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        raise Invalid("NaN equals nothing, not even itself")
    return value


def _ordered(value: Any) -> int | float | str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(f"expected a number or a string to compare with, got {describe(value)}")
    return _any_json(value)


def _length(value: Any) -> list:
    if isinstance(value, int) and not isinstance(value, bool):
        return ["equals", integer(value, 0, 10**9)]
    if (
        not isinstance(value, dict)
        or len(value) != 1
        or next(iter(value)) not in LENGTH_COMPARISONS
    ):
        raise Invalid(
            f"expected a length or one of {{{': N}, {'.join(LENGTH_COMPARISONS)}: N}},"
            f" got {describe(value)}"
        )
    op = next(iter(value))
    return [op, checked(lambda v: integer(v, 0, 10**9), value, op)]


_EXPECTED = {
    "equals": _any_json,
    "not_equals": _any_json,
    **dict.fromkeys(ORDER, _ordered),
    "contains": _any_json,
    "matches": check_regex,
    "exists": _bool,
    "length": _length,
}


def _schema(entry: dict) -> Assertion:
    _only(entry, ("json_schema",))
    schema = entry["json_schema"]
    try:
        check_schema(schema)
    except Invalid as exc:
        exc.item = "json_schema" if exc.item is None else exc.item
        raise
    return Assertion("json_schema", _json_text(schema))


def check_schema(schema: Any) -> None:
    """Raise Invalid unless ``schema`` is a valid JSON Schema (its ``$schema`` draft, else
    2020-12), naming where it is wrong: ``json_schema.properties.id.type: 'integr' is not ...``.

    References resolve only inside the schema: nothing is fetched.
    """
    if not isinstance(schema, dict | bool):
        raise Invalid(f"expected a JSON Schema (a mapping), got {describe(schema)}")
    from jsonschema import exceptions, validators  # about 60 ms: only for files that use it

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        detail = " ".join(exc.message.split())[:200]
        raise Invalid(f"invalid JSON Schema at json_schema{where}: {detail}") from None
    if problem := _unsafe(schema):
        raise Invalid(problem)


_INSTANCES = ("const", "enum", "default", "examples")  # values, not schemas


def _unsafe(node: Any) -> str | None:
    """Why the probe could not evaluate ``node`` safely, or None: a ``$ref`` outside it (nothing
    is fetched), ``patternProperties`` (the library runs those regexes with no time bound, so a
    response's keys could hold a probe)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return (
                f"$ref {ref[:100]!r} points outside the schema; only references inside it"
                " (starting with #) are resolved, nothing is fetched"
            )
        if "patternProperties" in node:
            return (
                "patternProperties is not supported: its regexes run with no time bound;"
                " use propertyNames with a pattern"
            )
        children = [v for k, v in node.items() if k not in _INSTANCES]
    elif isinstance(node, list):
        children = node
    else:
        return None
    return next((found for child in children if (found := _unsafe(child))), None)


_CHECKS = {
    "status": _status,
    "header": _header,
    "response_time_ms": _response_time,
    "body": _body,
    "json": _json,
    "json_schema": _schema,
}
