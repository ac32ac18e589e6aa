"""``ProbeOperator``: the ``probe`` task of a site DAG.

A plain BaseOperator rather than ``@task``: the factory builds one per site at every parse, and the
decorator machinery roughly doubles what each costs.
"""

from __future__ import annotations

from airflow.sdk import BaseOperator

from sitewatch.config.site import Site
from sitewatch.names import KAFKA_CONN_ID


class ProbeOperator(BaseOperator):
    """Probe one site, publish the observation to Kafka, fail the attempt when the site is down.

    Raises ``SiteDown`` (the site failed its assertions; retries re-check it), ``DeliveryError``
    (Kafka did not confirm the observation) or ``ConfigError`` (a ``${VAR}`` in a header is not
    set on the worker): the last two are pipeline failures, not the site.
    """

    ui_color = "#e8f4ea"

    def __init__(self, *, site: Site, kafka_config_id: str = KAFKA_CONN_ID, **kwargs) -> None:
        super().__init__(**kwargs)
        self.site = site
        self.kafka_config_id = kafka_config_id

    def execute(self, context) -> None:
        from airflow.sdk.log import mask_secret

        from sitewatch.airflow.hooks import ObservationProducerHook
        from sitewatch.attempt import check_site
        from sitewatch.config.secrets import expand_headers

        ti, run = context["ti"], context["dag_run"]
        producer = ObservationProducerHook(kafka_config_id=self.kafka_config_id).get_producer()
        site, secrets = expand_headers(self.site, on_secret=mask_secret)
        check_site(
            site,
            secrets=secrets,
            scheduled_at=run.logical_date or run.run_after,
            attempt=ti.try_number,
            final=ti.try_number > ti.max_tries,
            producer=producer,
        )
