"""The ``expect`` assertions, evaluated on one response in order, bounded in time, size and depth.

Evaluation stops at the first assertion that fails: it makes the check down with error kind
``assertion`` and a detail naming it, expected against actual
(``json $.data.id: expected 1, got 2``). The bounds: the body was read up to ``max_body_bytes``
and is parsed as JSON once, whatever the number of json assertions; a JSONPath may select at most
``MAX_NODES`` nodes; everything runs in a helper thread that the probe waits for at most until
the attempt's deadline, and regexes (``body``, ``matches``, a path's ``match()``/``search()``)
run with the ``regex`` module's time budget. A document nested deeper than Python's recursion
limit is "not JSON". Trade-off, as for ``patterns``: when the deadline passes first, the helper
thread finishes its current step (bounded by the body cap) after the attempt has returned.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sitewatch.config.expect import Assertion
from sitewatch.config.jsonpaths import PathTimeout, bounded_search, compile_path, regex_deadline
from sitewatch.config.key_checks import compile_pattern
from sitewatch.probe import offload
from sitewatch.probe.failures import Failure, clean
from sitewatch.probe.timing import Deadline

KIND = "assertion"
MAX_NODES = 10_000  # nodes one JSONPath may select
_SHOWN = 60  # characters of a value in a detail
_ORDER = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}
_SIGN = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "equals": "==", "not_equals": "!="}
_VERB = {"contains": "to contain", "matches": "to match"}
_MIN_SECONDS = 0.01


@dataclass(frozen=True)
class Result:
    """One assertion's outcome: ``passed`` True, False, or None when it was not evaluated (an
    earlier one failed). ``detail`` names the assertion and, when it failed, expected against
    actual, at most ``failures.MAX_DETAIL`` characters without control characters."""

    assertion: Assertion
    passed: bool | None
    detail: str


@dataclass
class Response:
    """What the assertions read of one response: status, headers, time, the raw and decoded body
    (``text`` None for no body)."""

    status: int | None
    headers: Mapping[str, str] | None
    response_ms: float | None
    body: bytes | None
    text: str | None


def evaluate(
    assertions: tuple[Assertion, ...],
    response: Response,
    deadline: Deadline,
    document: Document | None = None,
) -> list[Result]:
    """Evaluate ``assertions`` in order on ``response`` within what is left of ``deadline``.

    Returns one Result per assertion: those before the first failure passed, the failed one, then
    the rest not evaluated. Never raises for what the response holds. ``document``: the body's
    ``Document``, when another reader of it (a flow's extraction) is to share its parse.
    """
    results: list[Result] = []
    budget = max(deadline.remaining(), _MIN_SECONDS)

    def run() -> None:
        with regex_deadline(budget):
            _evaluate(assertions, response, deadline, results, document)

    offload.run(run, budget)
    seen = list(results)
    if len(seen) < len(assertions) and (not seen or seen[-1].passed):
        stuck = assertions[len(seen)]
        detail = f"{stuck.describe()}: not finished within the deadline ({budget:.2g} s left)"
        seen.append(Result(stuck, False, detail))
    return seen + [Result(a, None, a.describe()) for a in assertions[len(seen) :]]


def check_status(expect: tuple[tuple[int, int], ...], status: int | None) -> Failure | None:
    """The ``status`` failure of a response whose status is not in ``expect`` (a single
    check's ``expect_status``, a flow step's), or None; no status (no response) is not one."""
    if status is None or any(lo <= status <= hi for lo, hi in expect):
        return None
    ranges = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in expect)
    return Failure("status", f"status {status} not in {ranges}")


def first_failure(results: list[Result]) -> Failure | None:
    """The ``assertion`` failure of the first failed result, or None."""
    failed = next((r for r in results if r.passed is False), None)
    return None if failed is None else Failure(KIND, failed.detail)


def _evaluate(
    assertions: tuple[Assertion, ...],
    response: Response,
    deadline: Deadline,
    out: list,
    document: Document | None,
) -> None:
    document = Document(response.body) if document is None else document
    for assertion in assertions:
        try:
            problem = _CHECKS[assertion.kind](assertion, response, document, deadline)
        except (Failure, PathTimeout, TimeoutError):
            problem = "ran out of time"
        except RecursionError:
            problem = "response nested too deeply to evaluate"
        except Exception as exc:  # e.g. a schema's $ref that cannot be resolved: fail by name
            problem = f"could not be evaluated ({type(exc).__name__}: {_first_line(exc)})"
        passed = problem is None
        detail = assertion.describe() if passed else clean(f"{assertion.describe()}: {problem}")
        out.append(Result(assertion, passed, detail))
        if not passed:
            return


class Document:
    """The body parsed as JSON once, on first use; ``problem`` says why it is not JSON."""

    def __init__(self, body: bytes | None):
        self.body = body
        self.parsed = False
        self.value: Any = None
        self.problem: str | None = None

    def get(self) -> tuple[Any, str | None]:
        if not self.parsed:
            self.parsed = True
            if not self.body:
                self.problem = "response has no body"
            else:
                try:
                    self.value = json.loads(self.body)
                except RecursionError:
                    self.problem = "response is not JSON (nested too deeply)"
                except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                    self.problem = f"response is not JSON ({_first_line(exc)})"
        return self.value, self.problem


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:100]


def _show(value: Any) -> str:
    """``value`` as JSON, cut to ``_SHOWN`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _status(assertion: Assertion, response: Response, _doc, _deadline) -> str | None:
    ranges = assertion.subject
    if response.status is not None and any(lo <= response.status <= hi for lo, hi in ranges):
        return None
    expected = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)
    return f"expected {expected}, got {response.status}"


def _header(assertion: Assertion, response: Response, _doc, deadline) -> str | None:
    actual = (response.headers or {}).get(assertion.subject)
    expected = assertion.value
    if assertion.op == "exists":
        if (actual is not None) == expected:
            return None
        return f"expected {'present' if expected else 'absent'}, got {_present(actual)}"
    if actual is None:
        return f"expected {_describe_op(assertion.op, expected)}, got absent"
    if assertion.op == "equals":
        ok = actual == expected
    else:
        ok = _search(expected, actual, deadline) is not None
    return None if ok else f"expected {_describe_op(assertion.op, expected)}, got {_show(actual)}"


def _present(actual: str | None) -> str:
    return "absent" if actual is None else f"present ({_show(actual)})"


def _response_time(assertion: Assertion, response: Response, _doc, _deadline) -> str | None:
    limit, actual = assertion.value, response.response_ms
    if actual is not None and _ORDER[assertion.op](actual, limit):
        return None
    shown = "no response time" if actual is None else f"{actual:.0f}"
    return f"expected {_SIGN[assertion.op]} {limit}, got {shown}"


def _body(assertion: Assertion, response: Response, _doc, deadline) -> str | None:
    if response.text is None:
        return "response has no body"
    if _search(assertion.subject, response.text, deadline) is not None:
        return None
    return f"pattern {_show(assertion.subject)} not found"


def _json(assertion: Assertion, _response, document: Document, deadline) -> str | None:
    value, problem = document.get()
    if problem is not None:
        return problem
    nodes = list(itertools.islice(compile_path(assertion.subject).finditer(value), MAX_NODES + 1))
    if len(nodes) > MAX_NODES:
        return f"more than {MAX_NODES} nodes selected; narrow the path"
    if assertion.op == "exists":
        if bool(nodes) == assertion.value:
            return None
        return f"expected {'a node' if assertion.value else 'no node'}, got {_count(nodes)}"
    return _quantified(assertion, nodes, deadline)


def _count(nodes: list) -> str:
    if not nodes:
        return "none"
    return f"{len(nodes)} node{'s' * (len(nodes) != 1)} ({_show(nodes[0].obj)} at {nodes[0].path})"


def _quantified(assertion: Assertion, nodes: list, deadline: Deadline) -> str | None:
    """Apply the comparison to each node as the quantifier says; the problem, or None."""
    quantifier = assertion.quantifier
    expected = _describe_op(assertion.op, assertion.value, signed=quantifier != "all")
    several = len(nodes) > 1
    if not nodes:
        return None if quantifier == "none" else f"expected {expected}, got no node"
    for node in nodes:
        if deadline.expired():
            raise PathTimeout("deadline")
        ok = _compare(assertion.op, node.obj, assertion.value, deadline)
        if quantifier == "all" and not ok:
            return f"expected {expected}, got {_shown_node(assertion, node, several)}"
        if quantifier == "any" and ok:
            return None
        if quantifier == "none" and ok:
            return f"expected no node {expected}, got {_shown_node(assertion, node, several)}"
    if quantifier == "any":
        got = ", ".join(_show(node.obj) for node in nodes[:3]) + (", …" if len(nodes) > 3 else "")
        return f"expected any node {expected}, got [{got}]"
    return None


def _shown_node(assertion: Assertion, node, several: bool) -> str:
    """A node's value (or length) for a detail, with its location when the path selected more."""
    value = f"length {_length(node.obj)}" if assertion.op == "length" else _show(node.obj)
    return f"{value} at {node.path}" if several else value


def _describe_op(op: str, expected: Any, signed: bool = False) -> str:
    """``1``, ``not 1``, ``< 5``, ``length >= 1``, ``to contain "x"``; ``signed`` writes
    ``== 1`` and ``!= 1``, which read better after "any node" and "no node"."""
    if op == "equals":
        return f"== {_show(expected)}" if signed else _show(expected)
    if op == "not_equals":
        return f"!= {_show(expected)}" if signed else f"not {_show(expected)}"
    if op in _ORDER:
        return f"{_SIGN[op]} {_show(expected)}"
    if op == "length":
        length_op, number = expected
        return f"length {'' if length_op == 'equals' else _SIGN[length_op] + ' '}{number}"
    return f"{_VERB[op]} {_show(expected)}"


def _compare(op: str, actual: Any, expected: Any, deadline: Deadline) -> bool:
    if op == "equals":
        return _same(actual, expected)
    if op == "not_equals":
        return not _same(actual, expected)
    if op in _ORDER:
        if (
            _number(actual)
            and _number(expected)
            or (isinstance(actual, str) and isinstance(expected, str))
        ):
            return _ORDER[op](actual, expected)
        return False
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list):
            return any(_same(item, expected) for item in actual)
        return isinstance(actual, dict) and isinstance(expected, str) and expected in actual
    if op == "matches":
        return isinstance(actual, str) and _search(expected, actual, deadline) is not None
    if op == "length":
        length = _length(actual)
        length_op, number = expected
        compare = {"equals": operator.eq, "not_equals": operator.ne, **_ORDER}[length_op]
        return length is not None and compare(length, number)
    raise ValueError(f"unknown comparison {op!r}")  # config refuses it; a Site built in code


def _search(pattern: str, text: str, deadline: Deadline):
    """``pattern.search(text)`` with what is left of ``deadline`` as its budget; raises
    PathTimeout when it runs out. Already in the helper thread the probe waits for on the wall
    clock, so no thread of its own (``patterns.search`` starts one per call); ``concurrent``
    releases the GIL so that the probe can stop waiting on time."""
    budget = deadline.remaining()
    if budget <= 0:
        raise PathTimeout("deadline")
    try:
        return compile_pattern(pattern).search(text, timeout=budget, concurrent=True)
    except TimeoutError as exc:
        raise PathTimeout("regex ran out of time") from exc


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | dict) else None


def _same(actual: Any, expected: Any) -> bool:
    """JSON equality: ``true`` is not ``1``, ``1`` is ``1.0``, containers compare by content."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if _number(actual) and _number(expected):
        return actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(map(_same, actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            _same(actual[key], expected[key]) for key in actual
        )
    return type(actual) is type(expected) and actual == expected


def _schema(assertion: Assertion, _response, document: Document, _deadline) -> str | None:
    value, problem = document.get()
    if problem is not None:
        return problem
    error = next(_validator(assertion.subject).iter_errors(value), None)
    if error is None:
        return None
    return f"at {error.json_path}: {' '.join(error.message.split())}"


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str):
    """A validator for the schema (JSON text), of the draft its ``$schema`` names (else 2020-12).

    Its registry is empty, so a ``$ref`` outside the schema fails instead of being fetched. Its
    ``pattern`` searches run on the deadline (validation refused ``patternProperties``, whose
    regexes the library runs unbounded).
    """
    from jsonschema import validators

    schema = json.loads(schema_text)
    bounded = validators.extend(validators.validator_for(schema), {"pattern": _pattern})
    return bounded(schema)


def _pattern(validator, pattern: str, instance: Any, _schema):
    """The ``pattern`` keyword, searched with the ``regex`` module within the deadline."""
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not bounded_search(
        compile_pattern(pattern), instance
    ):
        yield ValidationError(f"{_show(instance)} does not match {pattern!r:.60}")


_CHECKS = {
    "status": _status,
    "header": _header,
    "response_time_ms": _response_time,
    "body": _body,
    "json": _json,
    "json_schema": _schema,
}
