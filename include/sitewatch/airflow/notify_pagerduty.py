"""Alerts as PagerDuty incidents (Events API v2) through the Airflow PagerDuty provider.

Each alert triggers or resolves the incident that ``sitewatch.alerting.incident_keys`` names (one
dedup key per site and concern). The provider's notifier carries the event, its hook reads the
routing key from the connection (type pagerduty_events, the key as password) and its
``prepare_event_data`` builds the event. Two things the provider's own ``notify`` cannot do are
added here, with the same client library it uses:

- the API's base URL from the connection's host (PagerDuty's EU service region
  ``https://events.eu.pagerduty.com``, or a local receiver in the tests); the provider always
  sends to the US one;
- bounded time: by default the client retries a 429 without limit and a 503 six times with
  growing waits, and a callback must not hold a worker slot that long. One retry, ``timeout``
  seconds per request.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pagerduty
from airflow.providers.pagerduty.hooks.pagerduty_events import prepare_event_data
from airflow.providers.pagerduty.notifications.pagerduty import PagerdutyNotifier

from sitewatch.alerting.incident_keys import incident_for
from sitewatch.alerting.rules import Alert
from sitewatch.errors import NotificationError

RETRIED_STATUSES = (429, 500, 502, 503, 504)


class PagerdutyAlertNotifier(PagerdutyNotifier):
    """Trigger or resolve the alert's incident through connection ``pagerduty_events_conn_id``.

    The event's payload: ``summary`` the alert's title, ``severity`` from the kind, ``source`` the
    site's host, ``component`` the site, ``group`` "sitewatch", ``class`` the kind, and
    ``custom_details`` the same document the json webhook posts; a link to the run's log when
    known. Raises NotificationError when the API refuses the event or cannot be reached.
    """

    def __init__(self, alert: Alert, pagerduty_events_conn_id: str, timeout: float):
        incident = incident_for(alert)
        super().__init__(
            summary=alert.title,
            severity=incident.severity,
            source=urlsplit(alert.url).hostname or alert.site,
            action=incident.action.value,
            dedup_key=incident.key,
            custom_details=alert.document(),
            component=alert.site,
            group="sitewatch",
            class_type=alert.kind.value,
            links=[{"href": alert.run_url, "text": "Airflow log"}] if alert.run_url else None,
            pagerduty_events_conn_id=pagerduty_events_conn_id,
        )
        self.timeout = timeout

    def notify(self, context) -> None:
        event = prepare_event_data(
            summary=self.summary,
            severity=self.severity,
            source=self.source,
            custom_details=self.custom_details,
            component=self.component,
            group=self.group,
            class_type=self.class_type,
            action=self.action,
            dedup_key=self.dedup_key,
            links=self.links,
        )
        name = f"pagerduty {self.pagerduty_events_conn_id}"
        try:
            with self._client() as client:
                client.send_event(**event)
        except (pagerduty.Error, pagerduty.UrlError) as exc:  # they name URL and status, not key
            raise NotificationError(f"{name}: {exc}") from exc

    def _client(self) -> pagerduty.EventsApiV2Client:
        conn = self.hook.get_connection(self.pagerduty_events_conn_id)
        host = conn.host or None
        base_url = host if host is None or "://" in host else f"https://{host}"
        # the hook has read the routing key from the connection (or raised naming it)
        client = pagerduty.EventsApiV2Client(self.hook.integration_key, base_url=base_url)
        client.timeout = self.timeout
        client.retry = dict.fromkeys(RETRIED_STATUSES, 1)
        client.max_network_attempts = 1
        return client
