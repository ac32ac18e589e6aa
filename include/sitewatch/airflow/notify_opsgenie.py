"""Alerts as Opsgenie alerts through the Airflow Opsgenie provider.

The same mapping as PagerDuty (``sitewatch.alerting.incident_keys``): a trigger creates an alert
whose alias is the incident key, so Opsgenie deduplicates a repeated DOWN onto the open alert; a
resolve closes the alert by that alias. The provider's hook builds the SDK client from the
connection (type opsgenie: the API integration's key as password; host, with scheme, for another
region such as ``https://api.eu.opsgenie.com``). Its notifier only creates alerts and its
``create_alert`` takes no timeout, so this notifier calls the hook's client itself, with a
timeout per request and at most one retry (the SDK's default retries for up to a minute).
"""

from __future__ import annotations

from airflow.providers.opsgenie.notifications.opsgenie import OpsgenieNotifier
from opsgenie_sdk import CloseAlertPayload, CreateAlertPayload

from sitewatch.alerting.incident_keys import Action, incident_for
from sitewatch.alerting.rules import Alert
from sitewatch.errors import NotificationError

MESSAGE_LIMIT = 130  # Opsgenie cuts an alert's message there
SOURCE = "sitewatch"


class OpsgenieAlertNotifier(OpsgenieNotifier):
    """Create or close the alert's Opsgenie alert through connection ``opsgenie_conn_id``.

    Created alerts carry ``message`` (the title), ``alias`` (the incident key), ``description``
    (the whole text), ``priority`` (P1 for DOWN; ``Incident.priority``), ``entity`` (the site),
    ``source`` "sitewatch", ``tags`` ["sitewatch", the kind] and ``details`` (the alert's rows).
    Raises NotificationError when the API refuses the request or cannot be reached.
    """

    def __init__(self, alert: Alert, opsgenie_conn_id: str, timeout: float):
        self.incident = incident_for(alert)
        super().__init__(
            payload=_create_payload(alert, self.incident), opsgenie_conn_id=opsgenie_conn_id
        )
        self.alert, self.timeout = alert, timeout

    def notify(self, context) -> None:
        client = self.hook.get_conn()
        settings = client.api_client.configuration
        settings.retry_count, settings.retry_max_delay = 1, self.timeout
        try:
            if self.incident.action is Action.RESOLVE:
                client.close_alert(
                    identifier=self.incident.key,
                    identifier_type="alias",
                    close_alert_payload=CloseAlertPayload(source=SOURCE, note=self.alert.title),
                    _request_timeout=self.timeout,
                )
            else:
                client.create_alert(
                    create_alert_payload=CreateAlertPayload(**self.payload),
                    _request_timeout=self.timeout,
                )
        except Exception as exc:  # the SDK raises its own, urllib3's and tenacity's errors
            raise NotificationError(f"opsgenie {self.opsgenie_conn_id}: {_reason(exc)}") from exc


def _create_payload(alert: Alert, incident) -> dict:
    message = alert.title
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 3] + "..."
    return {
        "message": message,
        "alias": incident.key,
        "description": alert.text,
        "priority": incident.priority,
        "entity": alert.site,
        "source": SOURCE,
        "tags": [SOURCE, alert.kind.value],
        "details": dict(alert.lines()),
    }


def _reason(exc: BaseException) -> str:
    """The SDK's error in one line: its HTTP status and body, or the network error under a retry."""
    last = getattr(exc, "last_attempt", None)  # tenacity.RetryError: the last try's error
    if last is not None and last.exception() is not None:
        exc = last.exception()
    status = getattr(exc, "status", None)
    if status is not None:
        body = " ".join(str(getattr(exc, "body", "") or "").split())[:200]
        return f"answered HTTP {status}: {body}"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
