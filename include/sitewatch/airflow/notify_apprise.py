"""Alerts through the Airflow Apprise provider: one connection reaches Telegram, Discord, Teams,
Matrix, ntfy, Pushover and the other services Apprise knows.

The connection (type apprise) holds the Apprise URLs in its extra ``config``
(``{"path": URL, "tag": TAG}`` or a list of them); a target's ``tag`` picks the URLs so tagged.
The provider's notifier carries the message and its hook loads the connection into an Apprise
object, but the provider's ``notify`` drops Apprise's result, so a service that refused the
message would pass for delivered. ``AppriseAlertNotifier.notify`` sends through the same hook and
reads the result: nothing delivered is a NotificationError; some services failing is logged.
"""

from __future__ import annotations

import logging

import apprise
from airflow.providers.apprise.notifications.apprise import AppriseNotifier
from apprise import AppriseResultStatus, NotifyFormat, NotifyType

from sitewatch.alerting.incident_keys import incident_for
from sitewatch.alerting.rules import Alert
from sitewatch.errors import NotificationError

log = logging.getLogger(__name__)

# The incident severity of the alert's kind (sitewatch.alerting.incident_keys) as Apprise's message
# type, which services show as a colour or an icon.
_NOTIFY_TYPES = {
    "critical": NotifyType.FAILURE,
    "error": NotifyType.WARNING,
    "warning": NotifyType.WARNING,
    "info": NotifyType.SUCCESS,
}


class AppriseAlertNotifier(AppriseNotifier):
    """Send an alert to the Apprise URLs of connection ``apprise_conn_id`` (those tagged ``tag``,
    or all when None), giving up on a service after ``timeout`` seconds.

    The title is ``Alert.title``, the body the alert's rows as plain text. Raises
    NotificationError when the connection has no usable ``config``, no URL matches ``tag``, or no
    service accepted the message.
    """

    def __init__(self, alert: Alert, apprise_conn_id: str, tag: str | None, timeout: float):
        super().__init__(
            body=alert.text.partition("\n")[2],  # Alert.text is the title, then the rows
            title=alert.title,
            notify_type=_NOTIFY_TYPES[incident_for(alert).severity],
            body_format=NotifyFormat.TEXT,
            tag=tag or apprise.common.MATCH_ALL_TAG,
            apprise_conn_id=apprise_conn_id,
        )
        self.timeout = timeout

    def notify(self, context) -> None:
        with self._client().notify(
            body=self.body,
            title=self.title,
            notify_type=self.notify_type,
            body_format=self.body_format,
            tag=self.tag,
            timeout=self.timeout,
        ) as result:
            self._check(result)

    def _client(self) -> apprise.Apprise:
        client = apprise.Apprise()
        conn = self.hook.get_connection(self.apprise_conn_id)
        try:
            self.hook.set_config_from_conn(conn=conn, apprise_obj=client)
        except (KeyError, TypeError, ValueError) as exc:
            # The message could quote the config, whose URLs hold tokens: name the type only.
            raise NotificationError(
                f"apprise {self.apprise_conn_id}: connection extra 'config' must be "
                f'{{"path": URL, "tag": TAG}} or a list of them ({type(exc).__name__})'
            ) from None
        return client

    def _check(self, result) -> None:
        name = f"apprise {self.apprise_conn_id}"
        if result.status is AppriseResultStatus.NOMATCH:
            which = "" if self.tag == apprise.common.MATCH_ALL_TAG else f" tagged {self.tag!r}"
            raise NotificationError(f"{name}: the connection has no Apprise URL{which}")
        if result.status is AppriseResultStatus.PARTIAL:
            log.warning(
                "notify: apprise delivered to some services only target=%s failed=%d of %d",
                name,
                result.failed_count,
                len(result),
            )
        elif not result:
            raise NotificationError(
                f"{name}: {result.status.name.lower()}: {result.failed_count} of {len(result)} "
                "services did not accept the message (Apprise's log above names them)"
            )
