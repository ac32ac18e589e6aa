"""Airflow notifiers that send one ``sitewatch.alerting.rules.Alert``: webhook and e-mail (SMTP)
here; Apprise, PagerDuty and Opsgenie through their providers in ``notify_apprise``,
``notify_pagerduty`` and ``notify_opsgenie``.

Each takes its address and credentials from an Airflow connection, so the sites file holds only
connection ids. ``send`` delivers an alert to every target of a site and never raises: a target
that fails is logged (naming the connection, never its URL or password) and the others still get it.
A DEGRADED alert goes only to the targets that opt in (``degraded: true``), a STATUS UPDATE only to
those with ``status_updates: true``.

The notifiers' text is built from probe data (a site's error detail can contain anything), so it
is never run through Jinja: ``send`` calls ``notify`` directly, not the templating ``__call__``.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import urlsplit

import requests
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import BaseHook, BaseNotifier

from sitewatch.airflow.notify_apprise import AppriseAlertNotifier
from sitewatch.airflow.notify_opsgenie import OpsgenieAlertNotifier
from sitewatch.airflow.notify_pagerduty import PagerdutyAlertNotifier
from sitewatch.alerting.rules import Alert, Kind
from sitewatch.config.notify import (
    AppriseTarget,
    EmailTarget,
    OpsgenieTarget,
    PagerdutyTarget,
    Target,
    WebhookTarget,
    label,
)
from sitewatch.errors import NotificationError

log = logging.getLogger(__name__)

# Seconds per request of every target (the providers' clients retry once): a callback must not
# hold a worker slot for long.
SEND_TIMEOUT = 10.0


def webhook_request(conn) -> tuple[str, dict[str, str], tuple[str, str] | None]:
    """(url, headers, basic auth) for an Airflow connection of type http.

    The URL is the extra ``url`` when set; otherwise it is built from host, port and path the way
    Airflow's HTTP hook does: ``schema`` is the protocol when it is http or https (else the
    connection type, else https), a host may carry its own ``https://``, and the path is the extra
    ``path`` (or ``schema`` when a URI-style connection put the path there). Headers come from the
    extra ``headers`` mapping; login and password become basic auth, a password alone a bearer
    token. Raises NotificationError when no URL can be made.
    """
    extra = conn.extra_dejson
    headers = {str(k): str(v) for k, v in (extra.get("headers") or {}).items()}
    auth = None
    if conn.password and conn.login:
        auth = (conn.login, conn.password)
    elif conn.password:
        headers.setdefault("Authorization", f"Bearer {conn.password}")
    url = extra.get("url")
    if not url:
        if not conn.host:
            raise NotificationError(f"webhook {conn.conn_id}: connection has no host or extra url")
        schema = conn.schema or ""
        protocols = ("http", "https")
        protocol = schema if schema in protocols else conn.conn_type
        base = (
            conn.host
            if "://" in conn.host
            else f"{protocol if protocol in protocols else 'https'}://{conn.host}"
        )
        if conn.port:
            base += f":{conn.port}"
        path = extra.get("path") or ("" if schema in protocols else schema)
        url = f"{base.rstrip('/')}/{path.lstrip('/')}" if path else base
    if urlsplit(url).scheme not in ("http", "https"):
        raise NotificationError(f"webhook {conn.conn_id}: URL is not http or https")
    return url, headers, auth


class WebhookNotifier(BaseNotifier):
    """POST an alert as JSON to the URL of an http connection.

    format ``json`` sends ``Alert.document()``; ``slack`` sends ``Alert.slack()`` (Slack incoming
    webhooks, Mattermost and others that read ``text``). Raises NotificationError when the
    request fails or the answer is not 2xx.
    """

    def __init__(self, alert: Alert, webhook_conn_id: str, format: str = "json", **kwargs):
        super().__init__(**kwargs)
        self.alert, self.webhook_conn_id, self.format = alert, webhook_conn_id, format

    def notify(self, context) -> None:
        url, headers, auth = webhook_request(BaseHook.get_connection(self.webhook_conn_id))
        payload = self.alert.slack() if self.format == "slack" else self.alert.document()
        try:
            response = requests.post(
                url, json=payload, headers=headers, auth=auth, timeout=SEND_TIMEOUT
            )
        except requests.RequestException as exc:
            # The exception text holds the URL, which for Slack is the secret: name the type only.
            host = urlsplit(url).hostname
            raise NotificationError(
                f"webhook {self.webhook_conn_id}: request to {host} failed: {type(exc).__name__}"
            ) from None
        if not 200 <= response.status_code < 300:
            raise NotificationError(
                f"webhook {self.webhook_conn_id}: answered HTTP {response.status_code}: "
                f"{' '.join(response.text.split())[:200]}"
            )


def email_notifier(alert: Alert, target: EmailTarget) -> SmtpNotifier:
    """The SMTP provider's notifier with sitewatch's subject and a small HTML body."""
    rows = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in alert.lines()
    )
    return SmtpNotifier(
        to=list(target.to),
        from_email=target.sender,
        subject=alert.title,
        html_content=f"<p>{html.escape(alert.title)}</p><table>{rows}</table>",
        smtp_conn_id=target.conn_id,
    )


# Target type -> its notifier, given the alert and the target.
_NOTIFIERS = {
    WebhookTarget: lambda alert, t: WebhookNotifier(alert, t.conn_id, t.format),
    EmailTarget: lambda alert, t: email_notifier(alert, t),
    AppriseTarget: lambda alert, t: AppriseAlertNotifier(alert, t.conn_id, t.tag, SEND_TIMEOUT),
    PagerdutyTarget: lambda alert, t: PagerdutyAlertNotifier(alert, t.conn_id, SEND_TIMEOUT),
    OpsgenieTarget: lambda alert, t: OpsgenieAlertNotifier(alert, t.conn_id, SEND_TIMEOUT),
}


def notifier_for(alert: Alert, target: Target) -> BaseNotifier:
    """The Airflow notifier that sends ``alert`` to ``target``."""
    return _NOTIFIERS[type(target)](alert, target)


def wants(target: Target, alert: Alert) -> bool:
    """Whether ``target`` receives ``alert``: every kind, but DEGRADED and STATUS UPDATE only
    when it opted in (``degraded``, ``status_updates``)."""
    if alert.kind is Kind.DEGRADED:
        return target.degraded
    if alert.kind is Kind.STATUS_UPDATE:
        return target.status_updates
    return True


def send(alert: Alert, targets, context) -> int:
    """Send ``alert`` to every target that wants it (``wants``); return how many accepted it.
    Never raises."""
    delivered = 0
    for target in (t for t in targets if wants(t, alert)):
        try:
            notifier_for(alert, target).notify(context)
        except Exception as exc:  # any target's failure must not stop the others
            log.error(
                "send: alert NOT delivered site=%s kind=%s target=%s error=%s: %s",
                alert.site,
                alert.kind.value,
                label(target),
                type(exc).__name__,
                " ".join(str(exc).split())[:500],  # one log line, however long the reason
            )
        else:
            delivered += 1
            log.info(
                "send: alert delivered site=%s kind=%s target=%s",
                alert.site,
                alert.kind.value,
                label(target),
            )
    return delivered
