"""The named errors of sitewatch.

A site being down is not a pipeline failure, and the two must never be confused: ``SiteDown`` means
the site failed its own assertions (Airflow retries re-check it); every other error here means
sitewatch itself could not do its job.
"""

from __future__ import annotations


class SitewatchError(Exception):
    """Base class of every error sitewatch raises on purpose."""


class ConfigError(SitewatchError):
    """The sites file is invalid; ``issues`` holds every problem found, each with file and line."""

    def __init__(self, issues):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid sites file")


class SiteDown(SitewatchError):
    """The site failed its assertions on this attempt; the observation was published first."""

    def __init__(self, observation):
        self.observation = observation
        super().__init__(
            f"site {observation.site} is down: {observation.error}: {observation.error_detail}"
        )


class DeliveryError(SitewatchError):
    """Kafka did not confirm delivery of an observation, so the attempt cannot count."""


class TriggerTimeout(SitewatchError):
    """An attempt started in the triggerer did not end within its trigger timeout (it waited
    behind an earlier probe of the same site, or no triggerer ran it); nothing was published."""


class StorageError(SitewatchError):
    """PostgreSQL failed (unreachable, or a statement failed); nothing of the transaction stayed."""


class SchemaError(StorageError):
    """The results database's tables are missing or older than this code expects.

    Only the drain's ``create_tables`` task and the maintenance DAG migrate; every other reader
    (the Sites page, alerting) raises this instead, naming what to run.
    """


class MessageError(SitewatchError):
    """A message on the topic is not a valid observation; ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class ConnectionConfigError(SitewatchError):
    """A connection names something unusable (a TLS file that is missing or unreadable)."""


class ConsumeError(SitewatchError):
    """Reading the topic failed (broker unreachable, topic missing, authentication refused)."""


class NotificationError(SitewatchError):
    """An alert could not be sent to one target; the message names the target, never its secret."""


class SettingError(SitewatchError):
    """An environment variable holds an unusable value; the message names it and what is valid."""


class Busy(SitewatchError):
    """As much of one kind of work as is allowed at once is running already; ``retry_after``
    is how many seconds to wait before asking again."""

    def __init__(self, message: str, retry_after: int):
        self.retry_after = retry_after
        super().__init__(message)
