"""The ``notify`` and ``remind_every`` site keys: where alerts go, checked like every other key.

A target names an Airflow connection, never a secret: ``webhook: <conn id>`` (type http) with an
optional ``format`` (``json`` or ``slack``), or ``email: <address or list>`` sent through
``smtp_conn`` (type smtp, default ``smtp_default``) with an optional ``from``. A problem inside a
target is raised with a path item, so it is reported as ``sites[2].notify[0].webhook``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sitewatch.config.values import describe, duration, unknown_key
from sitewatch.config.yamltree import Invalid

FORMATS = ("json", "slack")
WEBHOOK_KEYS = ("webhook", "format")
EMAIL_KEYS = ("email", "smtp_conn", "from")
DEFAULT_SMTP_CONN = "smtp_default"
MAX_TARGETS, MAX_RECIPIENTS = 20, 50
# What Airflow accepts as a connection id, minus characters no one uses in one.
_CONN_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}")
# Deliberately loose: the SMTP server is the judge of an address. Commas and semicolons are out
# because the SMTP hook splits recipient strings on them.
_ADDRESS = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+")


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """POST each alert as JSON to the URL of Airflow connection ``conn_id``; ``format`` is
    ``json`` (sitewatch's own document) or ``slack`` (``{"text", "blocks"}``)."""

    conn_id: str
    format: str = "json"


@dataclass(frozen=True, slots=True)
class EmailTarget:
    """E-mail each alert to ``to`` through Airflow SMTP connection ``conn_id``; ``sender`` None
    means the connection's ``from_email``."""

    to: tuple[str, ...]
    conn_id: str = DEFAULT_SMTP_CONN
    sender: str | None = None


def check_notify(value: Any) -> tuple[WebhookTarget | EmailTarget, ...]:
    """A list of targets (``null`` or ``[]``: none). Raises Invalid with ``item`` a path tuple
    like ``(0, "webhook")``."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Invalid(f"expected a list of alert targets (webhook or email), got {describe(value)}")
    if len(value) > MAX_TARGETS:
        raise Invalid(f"too many alert targets: {len(value)} (at most {MAX_TARGETS})")
    targets = []
    for index, entry in enumerate(value):
        try:
            targets.append(_target(entry))
        except Invalid as exc:
            exc.item = (index, *_path(exc.item))
            raise
    return tuple(targets)


def check_remind_every(value: Any) -> timedelta | None:
    """``null`` (no reminders) or a duration from 1m to 30d."""
    return None if value is None else duration(value, timedelta(minutes=1), timedelta(days=30))


def _path(item: Any) -> tuple:
    return () if item is None else item if isinstance(item, tuple) else (item,)


def _target(entry: Any) -> WebhookTarget | EmailTarget:
    if not isinstance(entry, dict):
        raise Invalid(f"expected a mapping with 'webhook' or 'email', got {describe(entry)}")
    if "webhook" in entry and "email" in entry:
        raise Invalid("a target has 'webhook' or 'email', not both; make two targets")
    if "webhook" in entry:
        _only(entry, WEBHOOK_KEYS)
        fmt = entry.get("format", "json")
        if fmt not in FORMATS:
            raise Invalid(f"format must be json or slack, got {describe(fmt)}", item="format")
        return WebhookTarget(_conn_id(entry["webhook"], "webhook"), fmt)
    if "email" in entry:
        _only(entry, EMAIL_KEYS)
        sender = entry.get("from")
        if sender is not None:
            _address(sender, "from")
        return EmailTarget(
            _recipients(entry["email"]),
            _conn_id(entry.get("smtp_conn", DEFAULT_SMTP_CONN), "smtp_conn"),
            sender,
        )
    _only(entry, WEBHOOK_KEYS + EMAIL_KEYS)  # a typo of 'webhook' is named as such
    raise Invalid("a target needs 'webhook' (a connection id) or 'email' (addresses)")


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
