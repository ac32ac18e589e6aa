"""One attempt at checking one site: probe, publish, then judge.

The order is the contract. The observation is published before the attempt is judged, so every
attempt is on record even when it fails; a down site then raises ``SiteDown`` so Airflow's retries
re-check it, and a run turns red only when every attempt failed. A failure to publish raises
``DeliveryError`` instead: that is sitewatch failing, not the site.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sitewatch.config.maintenance import maintenance_at
from sitewatch.config.secrets import NO_SECRETS, Secrets
from sitewatch.errors import SiteDown
from sitewatch.names import LOCAL_LOCATION
from sitewatch.observation import Observation
from sitewatch.probe.http import probe

log = logging.getLogger(__name__)


def check_site(
    site,
    *,
    scheduled_at: datetime,
    attempt: int,
    final: bool,
    deliver: Callable[[Observation], None],
    secrets: Secrets = NO_SECRETS,
    location: str = LOCAL_LOCATION,
    run_id: str | None = None,
) -> Observation:
    """Probe ``site``, publish the observation, and raise SiteDown when the site is down.

    scheduled_at: the run's scheduled (logical) time, UTC. attempt: the try number, from 1.
    final: no retry remains after this attempt if it fails (an up attempt is final whatever this
    says). deliver: publishes the observation and returns once Kafka confirmed it
    (``sitewatch.pipeline.publish``: ``publish`` with a task's own producer,
    ``SharedPublisher.publish`` in a process that checks many sites at once).
    secrets: what ``expand_headers`` substituted into ``site``'s headers; the probe keeps those
    headers from other origins and masks the values in the observation before it is published.
    location: where this attempt runs (``sitewatch.names.location_queue``), recorded and sent.
    run_id: the Airflow run, recorded for the alerts' links.
    Raises DeliveryError when Kafka did not confirm the observation, SiteDown when it did and the
    site failed its assertions. Returns the observation when the site is up.
    """
    observation = probe(site, secrets=secrets, location=location)
    place(observation, site, scheduled_at, attempt, run_id)
    observation.final = final or observation.up  # an up attempt ends the run: nothing follows
    return record(observation, deliver)


def place(
    observation: Observation, site, scheduled_at: datetime, attempt: int, run_id: str | None = None
) -> None:
    """Set what the probe cannot know: the run (its time, id and try), and whether the run fell
    in one of the site's maintenance windows (the sites file's; the drain adds ad-hoc ones)."""
    observation.scheduled_at, observation.attempt = scheduled_at, attempt
    observation.run_id = run_id
    observation.maintenance = maintenance_at(site.maintenance, (), scheduled_at) is not None


def record(observation: Observation, deliver: Callable[[Observation], None]) -> Observation:
    """The second half of ``check_site``: publish ``observation``, log the attempt's summary line
    (``summarize``), then raise SiteDown if it is down. For an attempt probed in one place and
    judged in another (the triggerer probes; a down attempt is failed on a worker)."""
    deliver(observation)
    summarize(observation)
    if not observation.up:
        raise SiteDown(observation)
    return observation


def summarize(observation: Observation) -> None:
    """Log the attempt's summary line, the one line a reader of the run's log needs:
    ``site=… attempt=… final=… up=… status=… response_ms=… location=…``, then ``error=…
    detail=…`` when the attempt failed (an up attempt has neither); then, for a flow, one line
    per step (``site=… step=… passed=… status=… response_ms=… error=… detail=…``, passed None
    for a step not run). It says what is stored: log it with ``final`` as published."""
    line = "site=%s attempt=%s final=%s up=%s status=%s response_ms=%s location=%s"
    args = [
        observation.site,
        observation.attempt,
        observation.final,
        observation.up,
        observation.status_code,
        _ms(observation.response_time_ms),
        observation.location,
    ]
    if observation.error is not None:
        line += " error=%s detail=%s"
        args += [observation.error, observation.error_detail]
    log.info(line, *args)
    for step in observation.steps or ():  # a flow's: one line per step, as stored (masked)
        log.info(
            "site=%s step=%s passed=%s status=%s response_ms=%s error=%s detail=%s",
            observation.site,
            step["name"],
            step.get("passed"),
            step.get("status"),
            _ms(step.get("response_ms")),
            step.get("error"),
            step.get("error_detail"),
        )


def _ms(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}"
