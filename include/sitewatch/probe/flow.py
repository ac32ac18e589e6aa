"""A flow: a site's ``steps`` run in order on the attempt's session, under its one deadline.

Each step is expanded as it starts: ``${SITEWATCH_SECRET_*}`` from the ``Secrets``' variables,
``${step.value}`` from what earlier steps extracted (percent-encoded in the URL, JSON-escaped in a
JSON body). A header or body that received either is private: the exchange (``fetch``) drops such
a header on a redirect to another origin and will not carry such a body there, so neither ever
reaches an origin the sites file did not name for the step. Extracted values are masked like
secrets from the moment they exist (``Secrets.adding``).

A step passes when its exchange succeeded, its status is in its ``expect_status`` and its
``expect`` held; then its values are extracted, in a helper thread bounded by the deadline (the
JSON body parsed once, shared with ``expect``; each value at most ``MAX_VALUE`` characters). After
the first failure only ``always`` steps run, and one that needs a value never extracted is
skipped. Phases are the first step's (its connection's, which later steps to the same origin
reuse), ``response_time_ms`` runs from the first request to the last step's last body byte.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from time import perf_counter
from urllib.parse import quote

from sitewatch.config.jsonpaths import PathTimeout, compile_path, regex_deadline
from sitewatch.config.key_checks import compile_pattern
from sitewatch.config.secrets import Secrets
from sitewatch.config.steps import MAX_VALUE, REFERENCE, Extract, Step
from sitewatch.observation import Observation
from sitewatch.probe import offload
from sitewatch.probe.assertions import (
    Document,
    Response,
    Result,
    check_status,
    evaluate,
    first_failure,
)
from sitewatch.probe.failures import Failure, clean, timed_out
from sitewatch.probe.fetch import Fetched, fetch
from sitewatch.probe.limits import check_cert, check_speed
from sitewatch.probe.patterns import decode
from sitewatch.probe.timing import Deadline, Trace

_EXTRACT = "assertion"  # the error kind of a value that could not be extracted or sent
_MIN_SECONDS = 0.01


@dataclass
class Flowed(Fetched):
    """A flow's exchange as the single check's observation reads it (``status`` and
    ``final_url`` of the failing step, else the last that ran; ``body_done_at`` the end of the
    last step; ``body_bytes`` all steps'), with what only a flow has."""

    steps: list[dict] = field(default_factory=list)  # one record per step (STEP_FIELDS)
    failed: str | None = None  # the first failing step's name
    results: list[Result] = field(default_factory=list)  # every step's expect, in order
    secrets: Secrets = field(default_factory=Secrets)  # the site's, and every extracted value
    first_headers_at: float | None = None  # the first step's response headers


class _NotExtracted(Exception):
    """A step names a value that does not exist: the step that extracts it did not run."""


class _Request:
    """What ``fetch`` reads of a site, for one step."""

    def __init__(self, site, step: Step, url: str, headers: dict, body: str | None):
        self.method, self.url, self.headers, self.body = step.method, url, headers, body
        self.follow_redirects, self.max_body_bytes = site.follow_redirects, site.max_body_bytes


def run_flow(session, site, trace: Trace, verify, secrets: Secrets) -> Flowed:
    """Run ``site.steps`` on ``session`` within ``trace.deadline``; never raises for what a
    site does."""
    flowed = Flowed(secrets=secrets)
    values: dict[str, str] = {}
    for step in site.steps:
        if flowed.failed is not None and not step.always:
            flowed.steps.append(_record(step, None, f"not run: step {flowed.failed} failed"))
            continue
        _run_step(session, site, step, trace, verify, flowed, values)
    return flowed


def _run_step(session, site, step: Step, trace, verify, flowed: Flowed, values: dict) -> None:
    try:
        request, private_headers, private_body = _expand(site, step, flowed.secrets, values)
    except _NotExtracted as missing:
        if step.always:  # the cleanup of what was never made
            flowed.steps.append(_record(step, None, f"not run: {missing} was not extracted"))
        else:
            failure = Failure(_EXTRACT, f"{missing} has no value")
            _fail(flowed, step, _record(step, False), failure)
        return
    except Failure as failure:
        _fail(flowed, step, _record(step, False), failure)
        return
    if trace.deadline.expired():
        left = Failure("timeout", f"no time left of the flow's {trace.deadline.seconds:g} s")
        _fail(flowed, step, _record(step, False), left)
        return
    trace.phases = {}  # the step's own connection phases, if it opens one
    started = perf_counter()
    fetched = fetch(session, request, trace, verify, private_headers, private_body)
    record = _measured(site, step, trace, started, fetched, flowed)
    failure = _judged(site, step, fetched, record, trace.deadline, flowed, values)
    if failure is not None:
        _fail(flowed, step, record, failure)
    else:
        flowed.steps.append(record)


def _measured(site, step: Step, trace: Trace, started: float, fetched: Fetched, flowed) -> dict:
    """The step's record with what its exchange measured, added to the flow's figures."""
    ended = fetched.body_done_at or perf_counter()
    if step is site.steps[0]:
        flowed.first_headers_at = trace.headers_at
    record = _record(step, True)
    record.update(
        status=fetched.status,
        start_ms=trace.deadline.ms_since_start(started),  # where its bar starts on the waterfall
        response_ms=round((ended - started) * 1000, 3),
        **trace.phases,
    )
    if trace.headers_at is not None and trace.headers_at >= started:
        record["ttfb_ms"] = round((trace.headers_at - started) * 1000, 3)
    if fetched.body_bytes is not None:
        record["body_bytes"] = fetched.body_bytes
        flowed.body_bytes = (flowed.body_bytes or 0) + fetched.body_bytes
    flowed.body_done_at = ended
    if flowed.failed is None:
        flowed.status, flowed.final_url = fetched.status, fetched.final_url
    return record


def _judged(site, step: Step, fetched: Fetched, record: dict, deadline, flowed, values: dict):
    """The step's failure, or None: its exchange, its status, its ``expect``, then (when all
    passed) its ``extract``, whose values go to ``values`` and to the secrets to mask."""
    failure = fetched.failure or check_status(
        step.expect_status or site.expect_status, fetched.status
    )
    if fetched.failure is not None or not (step.expect or step.extract):
        return failure
    searched = any(a.kind == "body" for a in step.expect) or any(
        e.source == "regex" for e in step.extract
    )  # only a regex reads the decoded text: a JSON or header step keeps one copy of the body
    text = (
        None if not searched or fetched.body is None else decode(fetched.body, fetched.content_type)
    )
    response = Response(fetched.status, fetched.headers, record["response_ms"], fetched.body, text)
    document = Document(fetched.body)  # parsed once, for both
    results = evaluate(step.expect, response, deadline, document) if step.expect else []
    flowed.results += [_named(step, result) for result in results]
    failure = failure or first_failure(results)
    if failure is None and step.extract:
        found, failure = _extract_all(step.extract, response, document, deadline)
        values.update({f"{step.name}.{name}": value for name, value in found.items()})
        flowed.secrets = flowed.secrets.adding(found.values())
    return failure


def _fail(flowed: Flowed, step: Step, record: dict, failure: Failure) -> None:
    record.update(passed=False, error=failure.kind, error_detail=failure.detail)
    flowed.steps.append(record)
    if flowed.failed is None:
        flowed.failed = step.name
        flowed.failure = Failure(failure.kind, f"step {step.name}: {failure.detail}")


def _record(step: Step, passed: bool | None, detail: str | None = None) -> dict:
    """The stored record of ``step`` (``observation.STEP_FIELDS``); its URL as the file wrote it,
    so no value taken from a response or the environment is in it."""
    record = {"name": step.name, "method": step.method, "url": step.url, "always": step.always}
    if passed is not None:  # left out for a step not run, as the stored message leaves out null
        record["passed"] = passed
    if detail is not None:
        record["error_detail"] = detail
    return record


def _named(step: Step, result: Result) -> Result:
    return dataclasses.replace(result, detail=clean(f"step {step.name}: {result.detail}"))


def _expand(site, step: Step, secrets: Secrets, values: dict[str, str]):
    """The step's request with every reference replaced, and which of its headers (lower-case
    names) and whether its body carry a secret or an extracted value. Raises _NotExtracted, or
    Failure for a value a header cannot carry."""
    url, _ = _substitute(step.url, secrets, values, lambda v: quote(v, safe=""))
    headers, private = {}, set()
    for name, template in step.headers:
        value, used = _substitute(template, secrets, values, str)
        if used:
            private.add(name.lower())
        if any(char in value for char in "\r\n\0") or not value.isascii() and not _latin1(value):
            raise Failure(_EXTRACT, f"header {name}: a value in it cannot be sent in a header")
        headers[name] = value
    body, private_body = None, False
    if step.body is not None:
        escape = (lambda v: json.dumps(v)[1:-1]) if step.json_body else str
        body, private_body = _substitute(step.body, secrets, values, escape)
        if step.json_body and not any(n.lower() == "content-type" for n in headers):
            headers["Content-Type"] = "application/json"
    return _Request(site, step, url, headers, body), frozenset(private), private_body


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _substitute(text: str, secrets: Secrets, values: dict[str, str], escape) -> tuple[str, bool]:
    used = False

    def replace(match) -> str:
        nonlocal used
        if match[1] is None:
            return "${"
        key = match[1] if match[2] is None else f"{match[1]}.{match[2]}"
        value = secrets.variables.get(key) if match[2] is None else values.get(key)
        if value is None:
            raise _NotExtracted(f"${{{key}}}")
        used = True
        return escape(value)

    return REFERENCE.sub(replace, text), used


class _NoValue(Exception):
    """Why a value could not be extracted (the message)."""


def _problem(exc: Exception) -> str:
    if isinstance(exc, _NoValue):
        return str(exc)
    if isinstance(exc, TimeoutError | PathTimeout):
        return "ran out of time"
    if isinstance(exc, RecursionError):
        return "response nested too deeply to evaluate"
    return f"could not be evaluated ({type(exc).__name__})"


def _extract_all(
    extracts: tuple[Extract, ...], response: Response, document: Document, deadline: Deadline
) -> tuple[dict[str, str], Failure | None]:
    """The values of ``extracts``, or those before the first that failed and its failure; in a
    helper thread the caller waits for at most what is left of ``deadline``."""
    found: dict[str, str] = {}
    outcome: list[Failure] = []
    budget = max(deadline.remaining(), _MIN_SECONDS)

    def run() -> None:
        with regex_deadline(budget):
            for extract in extracts:
                try:
                    found[extract.name] = _value(extract, response, document, deadline)
                except Exception as exc:  # whatever the body holds, the step fails by name
                    detail = f"extract {extract.name}: {_problem(exc)}"
                    outcome.append(Failure(_EXTRACT, detail))
                    return

    if not offload.run(run, budget):
        return {}, timed_out(deadline.seconds, "extracting values")
    return dict(found), outcome[0] if outcome else None


def _value(extract: Extract, response: Response, document: Document, deadline) -> str:
    if extract.source == "json":
        value, problem = document.get()
        if problem is not None:
            raise _NoValue(problem)
        node = next(iter(compile_path(extract.subject).finditer(value)), None)
        if node is None:
            raise _NoValue(f"{extract.subject} selected nothing")
        found = node.obj if isinstance(node.obj, str) else None
        if found is None:
            found = json.dumps(node.obj, ensure_ascii=False, separators=(",", ":"))
    elif extract.source == "header":
        found = (response.headers or {}).get(extract.subject)
        if found is None:
            raise _NoValue(f"no header {extract.subject}")
    else:
        if response.text is None:
            raise _NoValue("response has no body")
        budget = max(deadline.remaining(), _MIN_SECONDS)
        match = compile_pattern(extract.subject).search(
            response.text, timeout=budget, concurrent=True
        )
        if match is None:
            raise _NoValue(f"pattern {extract.subject!r:.60} not found")
        found = match.group(extract.group)
        if found is None:
            raise _NoValue(f"group {extract.group!r} took no part in the match")
    if len(found) > MAX_VALUE:
        raise _NoValue(f"value of {len(found)} characters exceeds {MAX_VALUE}")
    return found


def judge(
    site, obs: Observation, flowed: Flowed, deadline: Deadline
) -> tuple[Observation, list[Result], Secrets]:
    """Finish the observation of a flow from its measured fields (``obs``, built from
    ``flowed`` as a single check's is): its steps with every secret and extracted value masked,
    the first step's time to first byte, and the verdict: the first failing step's, else the
    whole flow's response time against ``max_response_ms``, then the certificate. Returns it,
    every step's ``expect`` results and the secrets to mask, extracted values included."""
    secrets = flowed.secrets
    for record in flowed.steps:
        if "error_detail" in record:
            record["error_detail"] = secrets.redact(record["error_detail"])
    obs.steps = flowed.steps
    obs.ttfb_ms = deadline.ms_since_start(flowed.first_headers_at)
    failure = flowed.failure or check_speed(site.max_response_ms, obs.response_time_ms)
    failure = failure or check_cert(site.min_cert_days, obs.tls_expires_at)
    if failure is not None:
        obs.error, obs.error_detail = failure.kind, failure.detail
    obs.up = failure is None
    return obs, flowed.results, secrets
