"""Every site key, declared once: its type, its check, its default, the kinds of check it is for
and its documentation.

``KEYS`` is the single owner of these facts. ``Site`` (``site``) takes its fields and defaults from
it, the loader its checks, defaults and kinds (``FIELDS``, ``BUILTIN_DEFAULTS``, ``REQUIRED``,
``KIND_LIMITED``), and the reference file ``include/sites.reference.yaml`` its text
(``reference``). Adding a key here adds it everywhere; the order here is the order of ``Site``'s
fields and of the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from sitewatch.config.dependencies import MAX_PARENTS, check_depends_on
from sitewatch.config.dns_check import Answers, check_answers
from sitewatch.config.expect import MAX_ASSERTIONS, Assertion, check_expect
from sitewatch.config.key_checks import (
    DNS,
    FLOW,
    HTTP,
    KINDS,
    TCP,
    TLS,
    check_body,
    check_bool,
    check_expect_status,
    check_headers,
    check_method,
    check_name,
    check_owner,
    check_regex,
    check_schedule,
    check_tags,
    check_timeout,
    check_tls_min_version,
    check_url,
)
from sitewatch.config.locations import check_locations, check_quorum, check_silent_location
from sitewatch.config.maintenance import MAX_WINDOWS, Window, check_maintenance
from sitewatch.config.notify import check_notify, check_remind_every
from sitewatch.config.objectives import (
    DEFAULT_BURN_RULES,
    DEFAULT_SLO_WINDOW,
    MAX_RESPONSE_MS,
    Flapping,
    Slo,
    check_flapping,
    check_milliseconds,
    check_slo,
    flapping_default,
)
from sitewatch.config.offset import check_offset
from sitewatch.config.schedule import format_duration
from sitewatch.config.steps import MAX_USES, Step, check_steps
from sitewatch.config.values import duration, integer, optional
from sitewatch.names import LOCAL_LOCATION
from sitewatch.observation import MAX_STEPS

_REQUIRED = object()  # the default of a key that has none


@dataclass(frozen=True, slots=True)
class Key:
    """One site key.

    ``type`` is the type of the ``Site`` attribute that ``check`` returns. ``default`` is written as
    in the sites file (``"5m"``, not a timedelta) and goes through ``check`` like any value, so the
    reference shows it verbatim and it cannot be invalid; a key declared without one is required.
    ``doc`` is the one-paragraph documentation and ``example`` the YAML value the reference entry
    shows (several lines for a block value). ``kinds`` are the kinds of check (``KINDS``) the key
    means something to: a site of another kind setting it is an error, and a ``defaults`` value
    of it is not applied to such a site.
    """

    name: str
    type: Any
    check: Callable[[Any], Any]
    doc: str
    example: str
    default: Any = _REQUIRED
    kinds: tuple[str, ...] = KINDS

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


_HEADERS_EXAMPLE = """\
Accept: text/html
X-Probe: "1"
Authorization: "Bearer ${SITEWATCH_SECRET_API_TOKEN}"
"""
_EXPECT_EXAMPLE = """\
- status: [200, "201-204"]
- header: Content-Type
  matches: '^application/json'
- response_time_ms: {lt: 800}
- body: '"status":\\s*"ok"'
- json: $.data.id
  equals: 1
- json: $.items[*].state
  equals: ready
  quantifier: all
- json: $.items
  length: {ge: 1}
- json: $.errors
  exists: false
- json_schema:
    type: object
    required: [data]
    properties:
      data: {type: object, required: [id]}
"""
_STEPS_EXAMPLE = """\
- name: login
  method: POST
  url: https://api.example.com/login
  body: {user: monitor, password: "${SITEWATCH_SECRET_API_PASSWORD}"}
  extract:
    token: {json: $.token}
- name: create
  method: POST
  url: https://api.example.com/items
  headers: {Authorization: "Bearer ${login.token}"}
  body: {name: sitewatch-probe}
  expect_status: 201
  extract:
    id: {json: $.id}
- name: read
  url: https://api.example.com/items/${create.id}
  headers: {Authorization: "Bearer ${login.token}"}
  expect:
    - json: $.name
      equals: sitewatch-probe
- name: cleanup
  method: DELETE
  url: https://api.example.com/items/${create.id}
  headers: {Authorization: "Bearer ${login.token}"}
  expect_status: [200, 204, 404]
  always: true
"""
_ANSWERS_EXAMPLE = """\
any: [192.0.2.10, 192.0.2.11]
"""
_NOTIFY_EXAMPLE = """\
# Airflow connection (type http): extra "url", or host/port/schema (+ extra "path");
# auth from its login/password or extra "headers". format: json (default) or slack.
- webhook: ops_webhook
  format: slack
# Any target: `status_updates: true` adds the updates of the status page incidents of the
# components showing the site (opened, grown, shrunk, resolved, and each operator's update).
- webhook: status_channel
  status_updates: true
# An address or a list of them, sent through Airflow connection `smtp_conn` (type smtp,
# default smtp_default); `from` defaults to the connection's from_email.
- email: [oncall@example.com]
  smtp_conn: smtp_default
  from: sitewatch@example.com
# Apprise URLs (Telegram, Discord, Teams, ntfy, ...) in Airflow connection `chat` (type
# apprise); `tag` picks the URLs so tagged. Any target: `degraded: true` adds DEGRADED alerts.
- apprise: chat
  tag: oncall
  degraded: true
# PagerDuty Events v2 (type pagerduty_events, routing key as password) and Opsgenie (type
# opsgenie): incidents opened on DOWN and resolved on RECOVERED, one per site.
- pagerduty: pd_ops
- opsgenie: og_ops
"""
_MAINTENANCE_EXAMPLE = """\
# Recurring: every Sunday at 02:00 on Berlin's clocks, for two hours.
- cron: "0 2 * * 0"
  duration: 2h
  timezone: Europe/Berlin
  reason: weekly database upgrade
# One-off: from one instant to another (ISO 8601 with an offset or Z).
- start: 2026-12-24T22:00:00+01:00
  end: 2026-12-25T06:00:00+01:00
  reason: data centre move
"""
_SLO_EXAMPLE = "target: 99.9\nwindow: 30d\np95_ms: 800\nburn:\n" + "".join(
    f"  - {{severity: {rule.severity}, factor: {rule.factor:g}, long: {format_duration(rule.long)},"
    f" short: {format_duration(rule.short)}}}\n"
    for rule in DEFAULT_BURN_RULES
)

# The kinds of check that take a key, when not all of them do (``Key.kinds``).
_ONE_REQUEST = (HTTP,)  # a flow sets these on each step
_HTTP = (HTTP, FLOW)
_TCP = (TCP, TLS)
_OVER_TLS = (HTTP, FLOW, TLS)  # http:// too: it may be redirected to https

_DECLARED = (
    Key("name", str, check_name, example="reference-all-keys",
        doc="Unique among the sites; [a-z0-9][a-z0-9_-]{0,62}. The DAG is site_<name>."),
    Key("url", str, check_url, example="https://example.com/health?full=1",
        doc="(Not with steps: a flow's check takes its first step's url.) http or https with a"
        " host, at most 2048 characters; or tcp://host:port (connect),"
        " tls://host:port (connect and a TLS handshake, verified with SNI unless verify_tls is"
        " false): a TCP check; or dns://[resolver-ip[:port]]/name?type=A: a DNS check. A key"
        " that is not for every kind of check says which it is for (send: for a tcp:// or"
        " tls:// check only); a site setting a key its kind does not take is an error, and"
        " such a key in defaults is not applied to it. No user:password@ part (the URL"
        " is stored with every check); send credentials in a header from the environment. An"
        " internationalised host (bücher.example) is requested in its IDNA form; invisible"
        " characters (bidi controls such as U+202E, zero-width spaces) are refused."),
    Key("schedule", timedelta | str, check_schedule, default="5m", example="5m",
        doc="An interval (at least 10s) or a 5-field cron expression \"minute hour day-of-month"
        " month day-of-week\" (numbers, names, *, ranges, steps, lists) that can fire: 0 0 30 2 *"
        " (30 February) is refused, 0 0 29 2 * (leap days) is fine."),
    Key("offset", timedelta, check_offset, default="auto", example="17s",
        doc="How long after each tick of the schedule the check runs, so sites that share a"
        " schedule do not all start in the same second. Ticks are multiples of the interval since"
        " 1970-01-01 00:00 UTC, or the cron's times in UTC. auto derives a stable offset in whole"
        " seconds from the name, spread over the interval (over one minute for a cron). An"
        " explicit duration must be shorter than the interval, or than 1m for a cron. The run's"
        " logical date (scheduled_at) is the tick plus the offset."),
    Key("regex", str | None, optional(check_regex), default=None,
        example=r"'Last updated[^0-9]{0,40}\d{1,2}:\d{2}'", kinds=_ONE_REQUEST,
        doc="Python regular expression (the `regex` module, at most 1000 characters) searched in"
        " the decoded body; the site is up only if it matches. (?i) for ignore-case."),
    Key("forbid_regex", str | None, optional(check_regex), default=None,
        example='"(?i)maintenance"', kinds=_ONE_REQUEST,
        doc="The site is up only if this pattern does NOT match."),
    Key("expect_status", tuple[tuple[int, int], ...], check_expect_status, default="200-399",
        example='[200, "301-302"]', kinds=_HTTP,
        doc='A code, a "low-high" range, or a list of both. Codes 100..599. In a flow, the'
        " expect_status of each step that sets none."),
    Key("max_response_ms", int | None, check_milliseconds, default=None, example="2000",
        doc=f"The check fails when the response takes longer (1..{MAX_RESPONSE_MS} ms)."),
    Key("min_cert_days", int | None, optional(lambda v: integer(v, 0, 3650)), default=None,
        example="14", kinds=_OVER_TLS,
        doc="Fail (error cert_expiring) when the certificate chain expires in fewer days"
        " (0..3650): the first to expire of the leaf, its intermediates and the root the check"
        " verified them against (tls_expires_at). On http:// it applies to a redirect to"
        " https."),
    Key("expect", tuple[Assertion, ...], check_expect, default=[], example=_EXPECT_EXAMPLE,
        kinds=_ONE_REQUEST,
        doc=f"Assertions on the response, evaluated in order after the body is read (at most"
        f" {MAX_ASSERTIONS}); the first that fails makes the check down with error assertion and"
        " a detail naming it, expected against actual (json $.data.id: expected 1, got 2). Each"
        " entry is one of: status (codes or ranges, as expect_status); header (a name with"
        " equals, matches or exists); response_time_ms ({lt: N} or {le: N}); body (a regex"
        " searched in the body, as regex); json (an RFC 9535 JSONPath with one of equals,"
        " not_equals, lt, le, gt, ge, contains, matches, exists, length (a number or"
        " {ge: N}, ...), and a quantifier over the nodes it selects: all (the default, so one"
        " wrong item fails the check, and no node at all fails it too), any or none); json_schema"
        " (a JSON Schema, its $schema draft or 2020-12; references only inside it; no"
        " patternProperties). A body that"
        " is not JSON fails a json assertion by name. Paths, patterns and schemas are checked"
        " when the file is read; evaluation is bounded by the body cap, the deadline and 10000"
        " nodes per path."),
    Key("steps", tuple[Step, ...], check_steps, default=[], example=_STEPS_EXAMPLE,
        doc=f"A flow instead of url: at most {MAX_STEPS} HTTP requests run in order on one"
        " connection pool, within one timeout; the site is up only when every step passed."
        " Each step: name (a-z, 0-9, _; unique), url (http or https), method (GET, HEAD, POST,"
        " PUT, PATCH, DELETE; default GET), headers, body (text, or a mapping or list sent as"
        " JSON), expect_status (default the site's), expect (as the site key), extract (value"
        " name -> {json: PATH} (its first node), {header: NAME} or {regex: PATTERN, group: N}"
        " (default the first group)) and always: true for a cleanup step that runs even after"
        " a failure. A later step writes ${step.value} in its URL's path or query (percent-"
        "encoded), headers and body (JSON-escaped in a JSON body); ${SITEWATCH_SECRET_...} in"
        " headers and bodies only. Unknown steps or values, a value used before (or by) the step"
        f" that extracts it, cycles, and a step using values more than {MAX_USES} times are"
        " errors. Extracted values are masked like secrets in"
        " every stored or logged text, at most 8192 characters each, and are, like secrets,"
        " never sent to an origin the step's url does not name (a redirect elsewhere drops"
        " those headers; a body with them is not sent there); a step whose URL takes a value"
        " may not send secrets. A failed flow stores the failing step's error, its detail"
        " prefixed by the step's name (step read: json $.id: expected 1, got 2); the check's"
        " url, phases and ttfb_ms are its first step's, status_code the failing (else the last)"
        " step's, response_time_ms the whole flow, body_bytes the sum;"
        " each step's status, time, bytes and failure are stored in the check's steps. A flow"
        " takes no regex, forbid_regex, expect, method, headers or body of its own."),
    Key("send", str | None, optional(check_body), default=None, example='"PING\\r\\n"',
        kinds=_TCP,
        doc="Text sent (UTF-8) once connected, at most 1 MiB; in double quotes YAML writes a"
        " line break as \\r\\n."),
    Key("reply_regex", str | None, optional(check_regex), default=None, example="'^\\+PONG'",
        kinds=_TCP,
        doc="A regex (as regex) searched in the first 64 KiB the server"
        " sends, decoded as UTF-8; the check is up only if it matches before the deadline or"
        " the server closing (error reply). Without it, connecting (and the handshake) is the"
        " check."),
    Key("answers", Answers | None, check_answers, default=None, example=_ANSWERS_EXAMPLE,
        kinds=(DNS,),
        doc="The answers expected, each as dig prints it (an address, a name, 10"
        " mail.example.com for MX, the text of a TXT record): a list (all of them must be"
        " among the resolver's answers), {any: [...]} (one of them is enough) or none (some"
        " answer of the type). The resolver answering NXDOMAIN is error nxdomain, SERVFAIL or"
        " another refusal servfail, no such record or a wrong one answer, no reply in time"
        " timeout. Names compare without case or final dot."),
    Key("method", str, check_method, default="GET", example="POST", kinds=_ONE_REQUEST,
        doc="One of GET, HEAD, POST (upper case)."),
    Key("headers", Mapping[str, str], check_headers, default={}, example=_HEADERS_EXAMPLE,
        kinds=_ONE_REQUEST,
        doc="Header name -> string value; values at most 8 KiB, Latin-1, no line breaks, no"
        " leading or trailing spaces. ${NAME} is replaced from the worker's environment when the"
        " check runs, so secrets stay out of this file and out of the DAG (masked in task logs);"
        " NAME must start with SITEWATCH_SECRET_, so no other variable of the worker can be"
        " sent. An unset variable fails the attempt as a pipeline error, not as the site being"
        " down. $${ writes a literal ${."),
    Key("body", str | None, optional(check_body), default=None, example="'{\"ping\": true}'",
        kinds=_ONE_REQUEST,
        doc="Request body (at most 1 MiB). Only with method POST: a body on GET or HEAD is almost"
        " always a forgotten `method: POST`, so it is an error."),
    Key("timeout", float, check_timeout, default="10s", example="10s",
        doc="The whole attempt's deadline, more than 0 and at most 5m."),
    Key("follow_redirects", bool, check_bool, default=True, example="true", kinds=_HTTP,
        doc="Follow redirects (at most 10); false reports the redirect itself."),
    Key("verify_tls", bool, check_bool, default=True, example="true", kinds=_OVER_TLS,
        doc="Verify the TLS certificate chain and that it is for the URL's host. A certificate"
        " for another host is error hostname_mismatch, naming the hosts it is for; an expired"
        " (or not yet valid) certificate of the chain is error tls, naming it (leaf,"
        " intermediate or root) and its notAfter. false accepts any certificate."),
    Key("tls_min_version", str | None, optional(check_tls_min_version), default=None,
        example='"1.3"', kinds=_OVER_TLS,
        doc='The oldest TLS version a TLS connection of the check (https, also after a'
        ' redirect, or tls://) may agree on: "1.2" or "1.3" (quoted or not). A server that'
        " negotiates an older one is down with error tls, naming the version it chose; nothing"
        " is sent on that connection. TLS 1.0 and 1.1 are refused anyway. Every check stores the"
        " version it agreed on (tls_version)."),
    Key("max_body_bytes", int, lambda v: integer(v, 1024, 100 * 1024 * 1024),
        default=5 * 1024 * 1024, example="1048576", kinds=_HTTP,
        doc="At most this many body bytes are read and searched, 1024..104857600."),
    Key("retries", int, lambda v: integer(v, 0, 20), default=2, example="2",
        doc="Airflow retries of a failed check, 0..20."),
    Key("retry_delay", timedelta, lambda v: duration(v, timedelta(seconds=1), timedelta(days=1)),
        default="30s", example="30s", doc="Wait between retries, 1s..1d."),
    Key("locations", tuple[str, ...], check_locations, default=[LOCAL_LOCATION],
        example="[eu, us, ap]",
        doc="Where the site is checked from: 1..16 location names ([a-z0-9][a-z0-9_-]{0,30}). Each"
        " location is an executor queue, sitewatch-<location>, served by Celery workers in that"
        " place; local (the default) is Airflow's default queue. With several, the DAG has one"
        " task per location (probe.<location>) and each run gets one verdict across them."),
    Key("quorum", int, check_quorum, default="majority", example="2",
        doc="How many locations must see the site down (after their retries) for the run to"
        " count as down: 1..the number of locations, or majority (more than half: 1 of 1, 2 of 2,"
        " 2 of 3). Fewer is a partial verdict, which sends no DOWN."),
    Key("silent_location", str, check_silent_location, default="keep", example="keep",
        doc="What a location that stored nothing final by a run's deadline counts as in the"
        " run's verdict. keep: what it last decided, shown as stale (missing, last down), so"
        " a site neither recovers nor goes down because a place lost sight of it; ignore: it"
        " counts neither way (a site down from that place only reads as up while it is"
        " silent). Either way the silent location is one PIPELINE PROBLEM of its own."),
    Key("tags", tuple[str, ...], check_tags, default=[], example="[reference]",
        doc="Extra DAG tags (the tag `sitewatch` is always added); each at most 100 chars."),
    Key("owner", str, check_owner, default="sitewatch", example="sitewatch",
        doc="The DAG owner shown in Airflow."),
    Key("enabled", bool, check_bool, default=True, example="false",
        doc="false keeps the entry validated but creates no DAG."),
    # The types of alert targets live in sitewatch.config.notify; see docs/alerts.md.
    Key("notify", tuple, check_notify, default=[], example=_NOTIFY_EXAMPLE,
        doc="Where DOWN / STILL DOWN / RECOVERED / PIPELINE PROBLEM messages go (docs/alerts.md)."
        " Each target names an Airflow connection; no secret belongs here."
        " A site's own list replaces the one in `defaults`; [] or null turns alerts off (a status"
        " page showing the site still opens and resolves its incidents)."),
    Key("remind_every", timedelta | None, check_remind_every, default=None, example="1h",
        doc="While the site stays down, send STILL DOWN this often (checked at each down run),"
        " 1m..30d; none sends no reminders."),
    Key("maintenance", tuple[Window, ...], check_maintenance, default=[],
        example=_MAINTENANCE_EXAMPLE,
        doc="Windows in which checks still run and are stored (marked as maintenance) but alerts"
        " are held; uptime and SLO figures leave them out. After a window a site still down"
        " alerts once. Recurring: cron (5 fields, as schedule) fires on the clocks of timezone"
        " (an IANA name, default UTC) and the window lasts duration (1m..7d); on a spring-forward"
        " day a time in the skipped hour starts the window when the clocks resume, on a"
        " fall-back day a repeated time starts it once, the first time. One-off: start and end,"
        " at most 366d apart. reason (optional, at most 200 characters) is shown with alerts held."
        f" At most {MAX_WINDOWS} windows; a site's own list replaces the one in `defaults`."),
    Key("depends_on", tuple[str, ...], check_depends_on, default=[], example="[reference-minimal]",
        doc=f"Up to {MAX_PARENTS} other sites of this file this one needs: while one of them is"
        " down, this site's DOWN is recorded as held (naming the parent) and not sent; if it is"
        " still down when the parent recovers, it alerts then. A name that is no site, the site"
        " itself or a cycle (a -> b -> a) is an error."),
    Key("degraded_ms", int | None, check_milliseconds, default=None, example="1000",
        doc="A check that passes but takes longer than this is up but DEGRADED (1.."
        f"{MAX_RESPONSE_MS} ms, below max_response_ms when that is set); targets opt in to"
        " DEGRADED alerts (docs/alerts.md)."),
    Key("flapping", Flapping | None, check_flapping, default=flapping_default(),
        example="{changes: 6, window: 2h, stable: 1h}",
        doc="More than `changes` (2..100) changes between up and down within `window` (1m..1d)"
        " sends one FLAPPING alert, then nothing until the state has held for `stable`"
        " (1m..1d), then the current state. A mapping may give some of the keys; false turns"
        " it off."),
    Key("slo", Slo | None, check_slo, default=None, example=_SLO_EXAMPLE,
        doc="An availability objective: `target` percent of final checks up (more than 50, less"
        " than 100) over a rolling `window` (1d..90d, default"
        f" {format_duration(DEFAULT_SLO_WINDOW)}), maintenance left out;"
        " `p95_ms` optionally a latency objective. `burn`: multiwindow burn-rate alerts, each"
        " sent when the error budget burns `factor` times (more than 1, at most 1000) faster"
        " than it lasts the window over both `long` (at most the window) and `short` (shorter),"
        " `severity` page or warn; by default those shown here, null or [] for none. A rule"
        " that needs more than all checks failing (factor 14.4 with target 90) is an error."),
)  # fmt: skip

KEYS: Mapping[str, Key] = MappingProxyType({key.name: key for key in _DECLARED})
KIND_LIMITED: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: key.kinds for name, key in KEYS.items() if key.kinds != KINDS}
)
"""The keys not every kind of check takes, and the kinds that do: the one table of which key
means something to which kind (``Key.kinds``)."""
KIND_NAMES: Mapping[str, str] = MappingProxyType({
    HTTP: "an http(s) check", FLOW: "a flow (steps)", TCP: "a tcp:// check",
    TLS: "a tls:// check", DNS: "a dns:// check",
})  # fmt: skip


def takes(kind: str, key: str) -> bool:
    """Whether a check of ``kind`` (``key_checks.entry_kind``) takes site key ``key``."""
    return kind in KIND_LIMITED.get(key, KINDS)


def kinds_text(kinds: tuple[str, ...]) -> str:
    """``an http(s) check, a flow (steps) or a tls:// check``: ``kinds`` for a message."""
    names = [KIND_NAMES[kind] for kind in KINDS if kind in kinds]
    if TCP in kinds and TLS in kinds:  # one phrase for the two TCP checks
        names[names.index(KIND_NAMES[TCP]) : names.index(KIND_NAMES[TLS]) + 1] = [
            "a tcp:// or tls:// check"
        ]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


FIELDS: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {name: key.check for name, key in KEYS.items()}
)
"""Every valid site key and its check."""
REQUIRED = tuple(name for name, key in KEYS.items() if key.required)
NO_DEFAULT = (*REQUIRED, "steps")
"""The keys ``defaults`` may not set: what makes one entry what it is."""
BUILTIN_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {name: key.check(key.default) for name, key in KEYS.items() if not key.required}
)
"""Every optional key's default, checked: the value a site gets when neither it nor ``defaults``
sets the key."""
