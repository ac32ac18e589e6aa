"""A flow's steps on a site's page: a waterfall, one row per step with its bar on the flow's time.

A table, so every fact is text (the step, its result in words, status, time, bytes, the failed
assertion) and the bar only shows when each step ran; the failing step's row is marked in words
too (``failed``), never by colour alone. A step record may lack ``start_ms`` (rows stored before
steps kept it): its bar then starts where the step before it ended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from sitewatch.dashboard import status
from sitewatch.dashboard.html import timestamp
from sitewatch.storage.queries import Attempt

_WIDTH, _HEIGHT = 320, 14
_FILL = {"passed": "#38a169", "failed": "#e53e3e", "not run": "#cbd5e0"}


def sections(attempts: Sequence[Attempt]) -> str:
    """The waterfall of the newest attempt when it is a flow's, and of the newest failed flow
    attempt when that is an older one ("" when no recent attempt is a flow's)."""
    flows = [a for a in attempts if a.steps]
    if not flows:
        return ""
    out = ""
    if attempts[0].steps:
        out += f"<h2>Latest flow</h2>{waterfall(attempts[0])}"
    failed = next((a for a in flows if not a.up), None)
    if failed is not None and failed is not attempts[0]:
        out += f"<h2>Latest failed flow</h2>{waterfall(failed)}"
    return out


def _result(step: Mapping) -> str:
    passed = step.get("passed")
    return "not run" if passed is None else "passed" if passed else "failed"


def _bars(steps: Sequence[Mapping]) -> list[tuple[float | None, float | None]]:
    """(start, end) in ms of each step's request; (None, None) for a step that sent none."""
    out, previous_end = [], 0.0
    for step in steps:
        took = step.get("response_ms")
        if took is None:
            out.append((None, None))
            continue
        start = step.get("start_ms")
        start = previous_end if start is None else start
        previous_end = start + took
        out.append((start, previous_end))
    return out


def waterfall(attempt: Attempt) -> str:
    """The table of ``attempt.steps``: each step's name and method, result, status, start and
    duration as text and as a bar on the flow's time axis, bytes, and what failed."""
    bars = _bars(attempt.steps)
    span = max([end for _, end in bars if end is not None] + [attempt.response_time_ms or 0.0])
    span = span or 1.0
    rows = []
    for step, (start, end) in zip(attempt.steps, bars, strict=True):
        result = _result(step)
        mark = " data-failed" if result == "failed" else ""
        detail = step.get("error_detail")  # a step not run has one (why) and no error kind
        failure = status.error_text(step.get("error"), detail) or detail or ""
        bytes_ = step.get("body_bytes")
        rows.append(
            f'<tr data-step="{escape(step["name"])}"{mark}>'
            f'<td><b>{escape(step["name"])}</b> <span class="muted">'
            f"{escape(step.get('method', ''))}</span></td>"
            f'<td class="{"err" if result == "failed" else ""}">'
            f"{'✗ ' if result == 'failed' else ''}{result}</td>"
            f"<td class=num>{step.get('status') or '—'}</td>"
            f"<td>{_bar(start, end, span, result, _phases(step))}</td>"
            f"<td class=num>{status.milliseconds(start)}</td>"
            f"<td class=num>{status.milliseconds(step.get('response_ms'))}</td>"
            f"<td class=num>{'—' if bytes_ is None else f'{bytes_:,} B'}</td>"
            f"<td>{escape(failure)}</td></tr>"
        )
    head = (
        "<tr><th>Step</th><th>Result</th><th class=num>Status</th>"
        f"<th>Timeline (0 to {status.milliseconds(span)})</th><th class=num>Start</th>"
        "<th class=num>Took</th><th class=num>Bytes</th><th>Failed assertion</th></tr>"
    )
    caption = (
        f"<caption class=muted>{timestamp(attempt.scheduled_at)}, attempt {attempt.attempt}"
        f"{'' if attempt.up else ', down'}</caption>"
    )
    return (
        f'<table class=waterfall data-scheduled="{attempt.scheduled_at.isoformat()}" '
        f'data-attempt="{attempt.attempt}">{caption}<thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _phases(step: Mapping) -> str:
    """ " (dns 1 ms, connect 2 ms, tls 9 ms)" of a step that opened a connection, else ""."""
    timed = [
        f"{phase} {step[f'{phase}_ms']:,.0f} ms"
        for phase in ("dns", "connect", "tls")
        if step.get(f"{phase}_ms") is not None
    ]
    return f" ({', '.join(timed)})" if timed else ""


def _bar(start: float | None, end: float | None, span: float, result: str, phases: str) -> str:
    if start is None or end is None:
        return '<span class="muted">no request</span>'
    x = _WIDTH * min(start / span, 1.0)
    width = max(_WIDTH * min((end - start) / span, 1.0), 1.0)
    label = f"{result}: from {start:,.0f} ms to {end:,.0f} ms{phases}"
    return (
        f'<svg role="img" aria-label="{label}" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="0" y="{_HEIGHT // 2}" width="{_WIDTH}" height="1" fill="#e2e8f0"/>'
        f'<rect data-bar x="{x:.1f}" y="2" width="{width:.1f}" height="{_HEIGHT - 4}" '
        f'fill="{_FILL[result]}"><title>{label}</title></rect></svg>'
    )
