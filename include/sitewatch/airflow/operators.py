"""``ProbeOperator``: the ``probe`` task of a site DAG.

A plain BaseOperator rather than ``@task``: the factory builds one per site at every parse, and the
decorator machinery roughly doubles what each costs.

By default the task starts in the triggerer (``sitewatch.airflow.probe_trigger``): a healthy check
ends there and never occupies a worker; a down or failed attempt resumes on a worker in
``resume``, which raises what ``execute`` would have raised. ``SITEWATCH_PROBE_IN=worker`` (read
when the DAGs are parsed) runs every attempt on a worker in ``execute`` instead.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import BaseOperator

# Airflow's own marks for a trigger that timed out (the scheduler's check_trigger_timeouts); the
# task runner hands them to resume_execution. tests/integration/test_probe_trigger.py pins them.
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.triggers.base import StartTriggerArgs

from sitewatch.config.site import Site
from sitewatch.errors import (
    ConfigError,
    ConnectionConfigError,
    DeliveryError,
    SettingError,
    SiteDown,
    SitewatchError,
    TriggerTimeout,
)
from sitewatch.names import KAFKA_CONN_ID, LOCAL_LOCATION, location_queue

PROBE_IN_VAR = "SITEWATCH_PROBE_IN"
PLACES = ("triggerer", "worker")
# The errors a trigger's attempt reports by name and the worker raises again as such.
_RAISED_AGAIN = {cls.__name__: cls for cls in (DeliveryError, ConnectionConfigError, SettingError)}
# What one attempt may take beyond the site's ``timeout``: Kafka's delivery wait (35 s by default),
# the sites-file lookup and, in the triggerer, the wait for a triggerer and for the site's turn.
ATTEMPT_MARGIN = timedelta(minutes=2)


def attempt_timeout(site: Site) -> timedelta:
    """The longest one attempt may take: the site's ``timeout`` plus ``ATTEMPT_MARGIN``. On a
    worker it is the task's ``execution_timeout``; in the triggerer the trigger's timeout, after
    which the attempt fails with ``TriggerTimeout`` and Airflow's retries apply."""
    return timedelta(seconds=site.timeout) + ATTEMPT_MARGIN


def probe_in(environ=os.environ) -> str:
    """Where attempts start: ``SITEWATCH_PROBE_IN``, ``triggerer`` (default) or ``worker``."""
    place = environ.get(PROBE_IN_VAR, "").strip() or PLACES[0]
    if place not in PLACES:
        raise SettingError(f"{PROBE_IN_VAR}={place!r}: expected triggerer or worker")
    return place


class ProbeOperator(BaseOperator):
    """Probe one site, publish the observation to Kafka, fail the attempt when the site is down.

    Raises ``SiteDown`` (the site failed its assertions; retries re-check it), ``DeliveryError``
    (Kafka did not confirm the observation) or ``ConfigError`` (a ``${VAR}`` in a header is not
    set where the attempt runs): the last two are pipeline failures, not the site.
    sites_file: the file the site was read from, where the triggerer looks it up again.
    in_triggerer: start each attempt in the triggerer (see the module's docstring).
    location: where the attempt runs: its executor queue (``sitewatch.names.location_queue``) and
    the ``location`` of its observations. Airflow 3.3 gives a trigger that a task starts from no
    queue, so any triggerer may run it: start in the triggerer only for the default location.
    """

    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        site: Site,
        sites_file: str,
        in_triggerer: bool = True,
        location: str = LOCAL_LOCATION,
        kafka_config_id: str = KAFKA_CONN_ID,
        **kwargs,
    ) -> None:
        queue = location_queue(location)
        super().__init__(**({"queue": queue} if queue else {}), **kwargs)
        self.site = site
        self.location = location
        self.kafka_config_id = kafka_config_id
        if in_triggerer:
            self.start_from_trigger = True
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls="sitewatch.airflow.probe_trigger.ProbeTrigger",
                trigger_kwargs={
                    "site": site.name,
                    "sites_file": sites_file,
                    "kafka_config_id": kafka_config_id,
                    "location": location,
                },
                next_method="resume",
                timeout=attempt_timeout(site),
            )

    def execute(self, context) -> None:
        from airflow.sdk.log import mask_secret

        from sitewatch.airflow.hooks import observation_producer
        from sitewatch.attempt import check_site
        from sitewatch.config.secrets import expand_headers
        from sitewatch.pipeline.publish import publish

        ti, run = context["ti"], context["dag_run"]
        producer = observation_producer(self.kafka_config_id)
        site, secrets = expand_headers(self.site, on_secret=mask_secret)
        check_site(
            site,
            secrets=secrets,
            scheduled_at=run.logical_date or run.run_after,
            attempt=ti.try_number,
            final=ti.try_number > ti.max_tries,
            deliver=lambda observation: publish(producer, observation),
            location=self.location,
            run_id=run.run_id,
        )

    def resume_execution(self, next_method: str, next_kwargs: dict | None, context):
        """Airflow's entry on a worker after a deferral: a trigger that timed out fails the attempt
        as ``TriggerTimeout``, naming the site and the likely cause, instead of Airflow's bare
        ``TaskDeferralTimeout``; anything else goes on as Airflow does it (to ``resume``)."""
        error = (next_kwargs or {}).get("error")
        if next_method == TRIGGER_FAIL_REPR and error == TriggerFailureReason.TRIGGER_TIMEOUT:
            raise TriggerTimeout(
                f"site {self.site.name}: the attempt did not end in the triggerer within "
                f"{attempt_timeout(self.site)} (its timeout {self.site.timeout:g}s plus "
                f"{ATTEMPT_MARGIN}): it waited behind an earlier probe of the site at location "
                f"{self.location}, or no triggerer ran it. Nothing was published; a retry checks "
                "the site again."
            )
        return super().resume_execution(next_method, next_kwargs, context)

    def resume(self, context, event: dict) -> None:
        """On a worker, after the triggerer's attempt did not end the task: a down attempt is
        published (unless the triggerer did: the run's last try) and failed with SiteDown here
        (where ``final`` is known); an attempt that could not count fails with its error.

        The triggerer logged the down attempt's summary line already, as it would be stored; it
        is logged again only when ``final`` turns out otherwise (a cleared run has more tries)."""
        from sitewatch.observation import Observation

        if "down" in event:
            ti = context["ti"]
            observation = Observation.from_message(event["down"].encode())
            if event.get("published"):
                if ti.try_number <= ti.max_tries:  # only if cleared without its run: rare
                    self.log.warning(
                        "attempt %s was stored as the run's last, but Airflow gives it a retry",
                        ti.try_number,
                    )
            else:
                self._publish_down(observation, final=ti.try_number > ti.max_tries)
            raise SiteDown(observation)
        name, detail = event.get("error"), event.get("detail", "")
        if name == ConfigError.__name__:
            raise ConfigError([detail])
        if name in _RAISED_AGAIN:
            raise _RAISED_AGAIN[name](detail)
        raise SitewatchError(f"the attempt failed in the triggerer: {name}: {detail}")

    def _publish_down(self, observation, *, final: bool) -> None:
        from sitewatch.airflow.hooks import observation_producer
        from sitewatch.attempt import summarize
        from sitewatch.pipeline.publish import publish

        logged, observation.final = observation.final, final
        publish(observation_producer(self.kafka_config_id), observation)
        if final != logged:
            summarize(observation)
