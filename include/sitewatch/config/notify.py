"""The ``notify`` and ``remind_every`` site keys: where alerts go, checked like every other key.

A target names an Airflow connection, never a secret: ``webhook: <conn id>`` (type http) with an
optional ``format`` (``json`` or ``slack``), ``email: <address or list>`` sent through
``smtp_conn`` (type smtp, default ``smtp_default``) with an optional ``from``, ``apprise: <conn
id>`` (type apprise: its Apprise URLs) with an optional ``tag``, ``pagerduty: <conn id>`` (type
pagerduty_events) or ``opsgenie: <conn id>`` (type opsgenie). Every target takes ``degraded``
(default false): only a target that sets it receives DEGRADED alerts; and ``status_updates``
(default false): only a target that sets it also receives the updates of the status page
incidents of the site's components (``sitewatch.judge.status_updates``). A problem inside a
target is raised with a path item, so it is reported as ``sites[2].notify[0].webhook``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from sitewatch.config.key_checks import check_bool
from sitewatch.config.values import describe, duration, entries, unknown_key, unsafe_character
from sitewatch.config.yamltree import Invalid

FORMATS = ("json", "slack")
DEFAULT_SMTP_CONN = "smtp_default"
MAX_TARGETS, MAX_RECIPIENTS = 20, 50
# What Airflow accepts as a connection id, minus characters no one uses in one.
_CONN_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}")
# A plain Apprise tag: Apprise reads ':' (priority, retries) and ',' (and) in a tag filter.
_TAG = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Deliberately loose: the SMTP server is the judge of an address. Commas and semicolons are out
# because the SMTP hook splits recipient strings on them.
_ADDRESS = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+")


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """POST each alert as JSON to the URL of Airflow connection ``conn_id``; ``format`` is
    ``json`` (sitewatch's own document) or ``slack`` (``{"text", "blocks"}``). ``degraded``: also
    send DEGRADED alerts; ``status_updates``: also send status page incident updates (both the
    same on every target type)."""

    KIND: ClassVar[str] = "webhook"
    conn_id: str
    format: str = "json"
    degraded: bool = False
    status_updates: bool = False


@dataclass(frozen=True, slots=True)
class EmailTarget:
    """E-mail each alert to ``to`` through Airflow SMTP connection ``conn_id``; ``sender`` None
    means the connection's ``from_email``."""

    KIND: ClassVar[str] = "email"
    to: tuple[str, ...]
    conn_id: str = DEFAULT_SMTP_CONN
    sender: str | None = None
    degraded: bool = False
    status_updates: bool = False


@dataclass(frozen=True, slots=True)
class AppriseTarget:
    """Send each alert to the Apprise URLs of Airflow connection ``conn_id`` (type apprise);
    ``tag`` None means all of them, else only those the connection tags so."""

    KIND: ClassVar[str] = "apprise"
    conn_id: str
    tag: str | None = None
    degraded: bool = False
    status_updates: bool = False


@dataclass(frozen=True, slots=True)
class PagerdutyTarget:
    """Trigger and resolve PagerDuty incidents (Events API v2) through Airflow connection
    ``conn_id`` (type pagerduty_events; its password is the integration's routing key)."""

    KIND: ClassVar[str] = "pagerduty"
    conn_id: str
    degraded: bool = False
    status_updates: bool = False


@dataclass(frozen=True, slots=True)
class OpsgenieTarget:
    """Create and close Opsgenie alerts through Airflow connection ``conn_id`` (type opsgenie;
    its password is the API integration's key)."""

    KIND: ClassVar[str] = "opsgenie"
    conn_id: str
    degraded: bool = False
    status_updates: bool = False


Target = WebhookTarget | EmailTarget | AppriseTarget | PagerdutyTarget | OpsgenieTarget


def label(target: Target) -> str:
    """``webhook ops_webhook`` / ``email smtp_default``: a target in logs and the UI, without
    addresses."""
    return f"{target.KIND} {target.conn_id}"


def check_notify(value: Any) -> tuple[Target, ...]:
    """A list of targets (``null`` or ``[]``: none). Raises Invalid with ``item`` a path tuple
    like ``(0, "webhook")``."""
    return entries(value, _target, MAX_TARGETS, "alert targets", f" ({_or(TYPES)})")


def check_remind_every(value: Any) -> timedelta | None:
    """``null`` (no reminders) or a duration from 1m to 30d."""
    return None if value is None else duration(value, timedelta(minutes=1), timedelta(days=30))


def _target(entry: Any) -> Target:
    if not isinstance(entry, dict):
        raise Invalid(f"expected a mapping with {_or(TYPES, quote=True)}, got {describe(entry)}")
    kinds = [kind for kind in TYPES if kind in entry]
    if len(kinds) > 1:
        raise Invalid(f"a target has one type, not {kinds[0]!r} and {kinds[1]!r}; make two targets")
    if not kinds:
        _only(entry, _ALL_KEYS)  # a typo of 'webhook' is named as such
        raise Invalid(
            f"a target needs {_or(_BY_CONN_ID, quote=True)} (a connection id) "
            "or 'email' (addresses)"
        )
    keys, build = _TYPES[kinds[0]]
    _only(entry, (*keys, *_OPT_INS))
    opt_ins = {key: _flag(entry, key) for key in _OPT_INS}
    return dataclasses.replace(build(entry), **opt_ins)


def _flag(entry: dict, key: str) -> bool:
    value = entry.get(key, False)
    try:
        return check_bool(value)
    except Invalid as exc:
        exc.item = key
        raise


def _webhook(entry: dict) -> WebhookTarget:
    fmt = entry.get("format", "json")
    if fmt not in FORMATS:
        raise Invalid(f"format must be json or slack, got {describe(fmt)}", item="format")
    return WebhookTarget(_conn_id(entry["webhook"], "webhook"), fmt)


def _email(entry: dict) -> EmailTarget:
    sender = entry.get("from")
    if sender is not None:
        _address(sender, "from")
    return EmailTarget(
        _recipients(entry["email"]),
        _conn_id(entry.get("smtp_conn", DEFAULT_SMTP_CONN), "smtp_conn"),
        sender,
    )


def _apprise(entry: dict) -> AppriseTarget:
    tag = entry.get("tag")
    if tag is not None and (not isinstance(tag, str) or not _TAG.fullmatch(tag)):
        raise Invalid(
            f"expected an Apprise tag (at most 64 letters, digits, '_', '-'), got {describe(tag)}",
            item="tag",
        )
    return AppriseTarget(_conn_id(entry["apprise"], "apprise"), tag)


def _pagerduty(entry: dict) -> PagerdutyTarget:
    return PagerdutyTarget(_conn_id(entry["pagerduty"], "pagerduty"))


def _opsgenie(entry: dict) -> OpsgenieTarget:
    return OpsgenieTarget(_conn_id(entry["opsgenie"], "opsgenie"))


# Each target type: its own keys (the first names the type and holds the connection id, or the
# addresses) and the function that builds it from a checked mapping; every type also takes the
# opt-ins (_OPT_INS, both default false).
_TYPES = {
    "webhook": (("webhook", "format"), _webhook),
    "email": (("email", "smtp_conn", "from"), _email),
    "apprise": (("apprise", "tag"), _apprise),
    "pagerduty": (("pagerduty",), _pagerduty),
    "opsgenie": (("opsgenie",), _opsgenie),
}
_OPT_INS = ("degraded", "status_updates")
TYPES = tuple(_TYPES)
_ALL_KEYS = (*dict.fromkeys(key for keys, _ in _TYPES.values() for key in keys), *_OPT_INS)
_BY_CONN_ID = tuple(kind for kind in TYPES if kind != "email")


def _or(words: tuple[str, ...], quote: bool = False) -> str:
    """``a, b or c``; quoted as ``'a', 'b' or 'c'`` when ``quote``."""
    shown = [repr(word) if quote else word for word in words]
    return f"{', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else shown[0]


def _only(entry: dict, keys: tuple[str, ...]) -> None:
    for key in entry:
        if key not in keys:
            raise Invalid(unknown_key(key, keys), item=key)


def _conn_id(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _CONN_ID.fullmatch(value):
        raise Invalid(
            f"expected an Airflow connection id (letters, digits, '_', '.', '-'), "
            f"got {describe(value)}",
            item=key,
        )
    return value


def _address(value: Any, key: str | tuple) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value) or len(value) > 254:
        raise Invalid(
            f"expected an e-mail address like ops@example.com, got {describe(value)}", item=key
        )
    if problem := unsafe_character(value):  # an address is shown in every mail's header
        raise Invalid(problem, item=key)
    return value


def _recipients(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (_address(value, "email"),)
    if not isinstance(value, list) or not value:
        raise Invalid(
            f"expected an address or a non-empty list of addresses, got {describe(value)}",
            item="email",
        )
    if len(value) > MAX_RECIPIENTS:
        raise Invalid(f"too many addresses: {len(value)} (at most {MAX_RECIPIENTS})", item="email")
    return tuple(dict.fromkeys(_address(a, ("email", i)) for i, a in enumerate(value)))
