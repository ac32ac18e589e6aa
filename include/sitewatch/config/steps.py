"""The ``steps`` key: a flow of HTTP requests run in order, instead of one ``url``.

Each step names itself and its request; what it ``extract``s from its response later steps write
as ``${step.value}`` in their URL (path and query only: the origin is always the file's), headers
and body. ``${SITEWATCH_SECRET_*}`` comes from the environment, in headers and bodies only, as for
a site's headers (``variables``). Everything a reference can get wrong is found here, with the
line of the step that wrote it: an unknown step or value, a value used before (or by) the step
that extracts it, which is also how a cycle shows, a step using values more than ``MAX_USES``
times, and secrets on a step whose URL a response decides. The probe (``sitewatch.probe.flow``)
runs the steps; ``Step`` and ``Extract`` are frozen and hashable, like the ``Site`` that holds
them.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sitewatch.config.expect import Assertion, check_expect, check_path
from sitewatch.config.key_checks import (
    MAX_BODY,
    MAX_URL,
    check_bool,
    check_expect_status,
    check_headers,
    check_regex,
    check_url,
    compile_pattern,
)
from sitewatch.config.values import checked, describe, item_path, only_keys, text
from sitewatch.config.variables import refusal
from sitewatch.config.yamltree import Invalid
from sitewatch.observation import MAX_STEPS, STEP_NAME

STEP_KEYS = (
    "name", "method", "url", "headers", "body", "expect_status", "expect", "extract", "always",
)  # fmt: skip
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
WITH_BODY = ("POST", "PUT", "PATCH", "DELETE")
SOURCES = ("json", "header", "regex")
MAX_EXTRACTS = 20
MAX_VALUE = 8192  # characters of one extracted value: a token, an id, a CSRF field
MAX_USES = 64
"""``${step.value}`` references in one step: expanding them adds at most 64 times ``MAX_VALUE``
(512 KiB) to its request, however often a template repeats one (a 1 MiB body of ``${a.v}``
would otherwise grow to 1.4 GB)."""
REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")
"""``$${`` (a literal ``${``), ``${NAME}`` (an environment variable: group 2 None) or
``${step.value}`` (a value a step extracted)."""
_PLACEHOLDER = "x"  # what a reference stands for when a templated URL is checked


@dataclass(frozen=True, slots=True)
class Extract:
    """One named value a step takes from its response: ``source`` json (``subject`` a JSONPath,
    its first node), header (a header name) or regex (a pattern and its ``group``)."""

    name: str
    source: str
    subject: str
    group: int | str = 0


@dataclass(frozen=True, slots=True)
class Step:
    """One checked step. ``url`` is as written (``${step.value}`` unreplaced); ``headers`` are
    (name, value) pairs; ``body`` is text, JSON text when ``json_body``; ``expect_status`` None
    takes the site's."""

    name: str
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    json_body: bool = False
    expect_status: tuple[tuple[int, int], ...] | None = None
    expect: tuple[Assertion, ...] = ()
    extract: tuple[Extract, ...] = ()
    always: bool = False

    def texts(self) -> Iterator[tuple[tuple, str]]:
        """Each text that may hold references, with its place in the step (``("url",)``,
        ``("headers", "Authorization")``, ``("body",)``)."""
        yield ("url",), self.url
        for name, value in self.headers:
            yield ("headers", name), value
        if self.body is not None:
            yield ("body",), self.body


def references(value: str) -> list[tuple[str, str | None]]:
    """The ``(step, value)`` pairs ``value`` refers to, ``(variable, None)`` for a variable."""
    return [(m[1], m[2]) for m in REFERENCE.finditer(value) if m[1] is not None]


def check_steps(value: Any) -> tuple[Step, ...]:
    """``steps``: null or a list of at most ``MAX_STEPS`` steps whose references all resolve.

    Raises Invalid for the first problem, with every other one in ``also``; ``item`` is the path
    inside the list (``(2, "headers", "Authorization")``), so the issue names the line.
    """
    problems: list[Invalid] = []

    def collect(entry: Any) -> Step | None:
        try:
            return _step(entry)
        except Invalid as exc:
            problems.append(exc)
            return None

    found = _entries(value, collect)
    indexes = [index for index, step in enumerate(found) if step is None]
    for index, problem in zip(indexes, problems, strict=True):
        problem.item = (index, *item_path(problem.item))
    if not problems:
        problems = list(_reference_problems(found))
    if problems:
        first = problems[0]
        raise Invalid(first.message, first.line, first.item, tuple(problems[1:]))
    return found


def _entries(value: Any, collect) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Invalid(f"expected a list of steps, got {describe(value)}")
    if len(value) > MAX_STEPS:
        raise Invalid(f"too many steps: {len(value)} (at most {MAX_STEPS})")
    return tuple(collect(entry) for entry in value)


def _step(entry: Any) -> Step:
    if not isinstance(entry, dict):
        raise Invalid(f"expected a mapping with name and url, got {describe(entry)}")
    only_keys(entry, STEP_KEYS)
    for key in ("name", "url"):
        if key not in entry:
            raise Invalid(f"missing required key {key!r}")
    method = checked(_method, entry, "method", "GET")
    body, json_body = checked(_body, entry, "body", (None, False))
    if body is not None and method not in WITH_BODY:
        raise Invalid(
            f"a body needs method POST, PUT, PATCH or DELETE (method is {method})", item="body"
        )
    headers = checked(check_headers, entry, "headers", {})
    return Step(
        name=checked(_name, entry, "name"),
        url=checked(_url, entry, "url"),
        method=method,
        headers=tuple(headers.items()),
        body=body,
        json_body=json_body,
        expect_status=checked(check_expect_status, entry, "expect_status"),
        expect=checked(check_expect, entry, "expect", ()),
        extract=checked(_extracts, entry, "extract", ()),
        always=checked(check_bool, entry, "always", False),
    )


def _name(value: Any) -> str:
    name = text(value, 32)
    if not STEP_NAME.fullmatch(name):
        raise Invalid(f"invalid name {name!r}: use a-z, 0-9, '_'; start with a letter")
    return name


def _method(value: Any) -> str:
    method = text(value, 10)
    if method not in METHODS:
        raise Invalid(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _url(value: Any) -> str:
    """An http(s) URL whose origin is written out; ``${step.value}`` only after it."""
    url = text(value, MAX_URL)
    scheme, _, rest = url.partition("://")
    origin = scheme + "://" + re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "${" in origin:
        raise Invalid(
            f"invalid URL {url!r}: the scheme and host are written here, never taken from a"
            " response or the environment; ${...} may stand only in the path and query"
        )
    for step, name in references(url):
        if name is None:
            raise Invalid(
                f"invalid URL {url!r}: ${{{step}}} in a URL would be stored with every check;"
                " send secrets in a header or the body"
            )
    check_url(REFERENCE.sub(_PLACEHOLDER, url))
    if scheme not in ("http", "https"):
        raise Invalid(f"invalid URL {url!r}: a step's URL is http or https")
    return url


def _body(value: Any) -> tuple[str, bool]:
    """Text as it is, or a mapping or list as JSON text; each variable must be allowed."""
    if isinstance(value, dict | list):
        try:
            body, json_body = json.dumps(value, ensure_ascii=False, allow_nan=False), True
        except ValueError:  # .inf, .nan: YAML has them, JSON has not
            raise Invalid("not JSON: infinity and NaN have no JSON form") from None
        if len(body) > MAX_BODY:
            raise Invalid(f"too long: {len(body)} characters as JSON (at most {MAX_BODY})")
    else:
        body, json_body = text(value, MAX_BODY, "text, or a mapping or list sent as JSON"), False
    for name, value_name in references(body):
        if value_name is None and (problem := refusal(name)):
            raise Invalid(problem.replace("header values", "bodies", 1))
    return body, json_body


def _extracts(value: Any) -> tuple[Extract, ...]:
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of value names to sources, got {describe(value)}")
    if len(value) > MAX_EXTRACTS:
        raise Invalid(f"too many values: {len(value)} (at most {MAX_EXTRACTS})")
    return tuple(checked(lambda v, n=name: _extract(n, v), value, name) for name in value)


def _extract(name: str, spec: Any) -> Extract:
    """One value of ``extract``: ``{json: PATH}``, ``{header: NAME}`` or ``{regex: PATTERN}``
    with an optional ``group`` (a number or a name; default the first group, else the match)."""
    if not STEP_NAME.fullmatch(name):
        raise Invalid(f"invalid value name {name!r}: use a-z, 0-9, '_'; start with a letter")
    if not isinstance(spec, dict) or not any(key in spec for key in SOURCES):
        raise Invalid(f"expected one of {{json: PATH}}, {{header: NAME}} or {{regex: PATTERN}},"
                      f" got {describe(spec)}")  # fmt: skip
    sources = [key for key in spec if key in SOURCES]
    if len(sources) > 1:
        raise Invalid(f"one source per value; this one has {' and '.join(sources)}")
    source = sources[0]
    only_keys(spec, (source, "group") if source == "regex" else (source,))
    if source == "json":
        return Extract(name, source, checked(check_path, spec, "json"))
    if source == "header":
        return Extract(name, source, checked(lambda v: text(v, 200), spec, "header"))
    pattern = checked(check_regex, spec, "regex")
    compiled = compile_pattern(pattern)
    group = checked(lambda v: _group(v, compiled), spec, "group", 1 if compiled.groups else 0)
    return Extract(name, source, pattern, group)


def _group(value: Any, pattern) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= pattern.groups:
        return value
    if isinstance(value, str) and value in pattern.groupindex:
        return value
    raise Invalid(
        f"no group {value!r} in the pattern (it has {pattern.groups} numbered"
        f"{', named ' + ', '.join(pattern.groupindex) if pattern.groupindex else ''})"
    )


def _reference_problems(steps: tuple[Step, ...]) -> Iterator[Invalid]:
    """Each reference that does not resolve, each repeated name, and each secret sent by a step
    whose URL a response decides."""
    position = {}
    for index, step in enumerate(steps):
        if step.name in position:
            first = position[step.name]
            message = f"duplicate step name {step.name!r} (first at steps[{first}])"
            yield Invalid(message, item=(index, "name"))
        position.setdefault(step.name, index)
    extracts = {name: [e.name for e in steps[index].extract] for name, index in position.items()}
    for index, step in enumerate(steps):
        uses = 0
        for where, value in step.texts():
            for name, value_name in references(value):
                if value_name is not None:
                    uses += 1
                    problem = _unresolved(steps, index, name, value_name, position, extracts)
                    if problem:
                        yield Invalid(problem, item=(index, *where))
            if uses > MAX_USES:
                yield Invalid(
                    f"step {step.name} uses extracted values more than {MAX_USES} times"
                    f" (each may be {MAX_VALUE} characters long)",
                    item=(index, *where),
                )
                break
        if any(v is not None for _, v in references(step.url)):
            for where, value in list(step.texts())[1:]:
                secret = next((n for n, v in references(value) if v is None), None)
                if secret is not None:
                    yield Invalid(
                        f"step {step.name}: its URL takes a value from a response, so it may not"
                        f" send secrets (${{{secret}}}); send values extracted earlier instead",
                        item=(index, *where),
                    )


def _unresolved(
    steps: tuple[Step, ...],
    index: int,
    name: str,
    value_name: str,
    position: dict[str, int],
    extracts: dict[str, list[str]],
) -> str | None:
    """Why ``${name.value_name}`` in step ``index`` does not resolve, or None."""
    written = f"${{{name}.{value_name}}}"
    user = steps[index].name
    if name not in position:
        close = difflib.get_close_matches(name, position, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "steps: " + ", ".join(position)
        return f"{written}: unknown step {name!r} ({hint})"
    if value_name not in extracts[name]:
        close = difflib.get_close_matches(value_name, extracts[name], n=1, cutoff=0.6)
        shown = (
            f"did you mean {close[0]!r}?"
            if close
            else "it extracts " + (", ".join(extracts[name]) or "nothing")
        )
        return f"{written}: step {name} extracts no {value_name!r} ({shown})"
    if name == user:
        return f"{written}: step {name} uses its own value, which exists only after its request"
    if position[name] > index:
        later = steps[position[name]]
        if any(n == user for _, text_ in later.texts() for n, v in references(text_) if v):
            return (
                f"{written}: cycle: step {user} uses step {name}'s value and step {name} uses"
                f" step {user}'s; steps run in the order listed"
            )
        return f"{written}: used before step {name} extracts it (steps run in the order listed)"
    return None
