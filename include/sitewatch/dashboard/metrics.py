"""What ``/sitewatch/metrics`` says, in Prometheus's and OpenMetrics' text formats (issue 18).

``FAMILIES`` is the one list of metric names, types, labels and help: docs/metrics.md, the
Grafana dashboard and the tests read it, and every family rendered here is declared from its
entry. ``families`` turns a ``Snapshot`` (figures gathered by the Airflow layer) into
prometheus_client metric families; ``exposition`` encodes them for one scrape. Nothing here
reads the database or imports Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from sitewatch.dashboard import status
from sitewatch.dashboard.budget import Budget
from sitewatch.pipeline.lag import KafkaLag
from sitewatch.storage.metrics import Latest, Pipeline
from sitewatch.storage.slo import Tally


@dataclass(frozen=True)
class Family:
    """One metric: its exposed name (a counter's ends in ``_total``), type, labels and help."""

    name: str
    kind: str  # "gauge" or "counter"
    labels: tuple[str, ...]
    help: str


def _label(state: str) -> str:
    """A ``dashboard.status`` state as a label value (``no data``: ``no_data``)."""
    return state.replace(" ", "_")


STATES = tuple(
    _label(state)
    for state in (
        status.UP, status.DEGRADED, status.PARTIAL, status.DOWN, status.MAINTENANCE,
        status.STALE, status.NO_DATA,
    )
)  # fmt: skip
"""A site's states (``sitewatch_site_state``), exactly one 1 at a time: ``dashboard.status``'s
(``site_state``), with ``no data`` spelled ``no_data``."""

PHASES = ("dns", "connect", "tls", "ttfb")
"""The phases of ``sitewatch_check_phase_seconds``; each is ``Latest``'s ``<phase>_ms``."""

TLS_FRESH = timedelta(hours=24)
"""How recent the check that saw a certificate must be for its expiry to be exposed: an older
one may describe a certificate replaced since."""

FAMILIES: tuple[Family, ...] = (
    # per site
    Family("sitewatch_site_up", "gauge", ("site",),
           "1 when the site's latest final verdict was up (a run checked from several locations "
           "that reached no quorum of downs counts as up), 0 when it was down"),
    Family("sitewatch_site_location_silent", "gauge", ("site", "location"),
           "For a site checked from several locations: 1 when the location stored nothing final "
           "for the site's latest verdict (it counted as its last word, or not at all), else 0"),
    Family("sitewatch_site_state", "gauge", ("site", "state"),
           "1 for the site's state now, 0 for the others: " + ", ".join(STATES)),
    Family("sitewatch_uptime_ratio", "gauge", ("site", "window"),
           "Final checks that were up, of those outside maintenance, over the window "
           "(24h: the newest 24 hours; 7d, 30d: the newest UTC days, today included)"),
    Family("sitewatch_slo_objective_ratio", "gauge", ("site",),
           "The availability target of the site's SLO (0.999 for 99.9%)"),
    Family("sitewatch_slo_error_budget_remaining_ratio", "gauge", ("site",),
           "The fraction of the SLO's error budget left over its window (below 0: overspent)"),
    # per site and location: counters of final checks, as uptime and SLOs count them, whose
    # rate() gives any window's availability and burn rate in PromQL
    Family("sitewatch_site_checks_total", "counter", ("site", "location"),
           "Final checks from the location outside maintenance windows"),
    Family("sitewatch_site_checks_up_total", "counter", ("site", "location"),
           "Final checks from the location outside maintenance windows that were up"),
    # per site and location: the latest final check
    Family("sitewatch_check_up", "gauge", ("site", "location"),
           "1 when the latest final check from the location was up, 0 when down"),
    Family("sitewatch_check_timestamp_seconds", "gauge", ("site", "location"),
           "When the latest final check from the location was made (Unix time)"),
    Family("sitewatch_check_duration_seconds", "gauge", ("site", "location"),
           "Response time of the latest final check from the location"),
    Family("sitewatch_check_phase_seconds", "gauge", ("site", "location", "phase"),
           "Time of each phase of the latest final check from the location: "
           + ", ".join(PHASES)),
    Family("sitewatch_check_step_duration_seconds", "gauge", ("site", "location", "step"),
           "For a flow: time of each step of the latest final check from the location, from "
           "its request to its last body byte (a step that sent no request has no sample)"),
    Family("sitewatch_check_status_code", "gauge", ("site", "location"),
           "HTTP status code of the latest final check from the location"),
    Family("sitewatch_tls_cert_expiry_timestamp_seconds", "gauge", ("site", "location"),
           "When the site's TLS certificate expires (Unix time), as the newest check that saw "
           "it within 24 hours found"),
    # the pipeline
    Family("sitewatch_sites_configured", "gauge", (),
           "Enabled sites in the sites file"),
    Family("sitewatch_sites_file_problems", "gauge", (),
           "Problems in the sites file, each dropping its own entry, or every site when the "
           "file cannot be read or parsed (0: none)"),
    Family("sitewatch_drain_lag_seconds", "gauge", (),
           "Age of the newest stored check (now less its check time)"),
    Family("sitewatch_drain_last_stored_timestamp_seconds", "gauge", (),
           "When the drain last stored a check (Unix time)"),
    Family("sitewatch_checks_stored_total", "counter", (),
           "Check attempts the drain stored"),
    Family("sitewatch_rejected_messages_total", "counter", (),
           "Messages the drain rejected as not valid observations"),
    Family("sitewatch_kafka_consumer_lag_messages", "gauge", ("topic", "partition", "group"),
           "Messages on the topic's partition that the drain's consumer group has not committed"),
    Family("sitewatch_kafka_up", "gauge", (),
           "1 when this scrape could read the drain group's consumer lag from Kafka, 0 when not"),
    Family("sitewatch_metrics_duration_seconds", "gauge", (),
           "Time this scrape took to gather its figures"),
)  # fmt: skip


@dataclass(frozen=True)
class SiteFigures:
    """One site's figures for a scrape.

    name: the site. state: a ``dashboard.status`` state (``site_state``). up: its latest final
    verdict (None before the first). uptime: ``{window: Tally}`` (``storage.metrics.WINDOWS``; a
    window without checks is absent). budget: its SLO's figures (None: no ``slo``). checks: its
    ``site_latest`` rows, one per location with stored attempts. locations: for a site checked
    from several, each location of its latest verdict -> whether it was silent there. steps: for
    a flow, each location's latest final check's step records (``observation.STEP_FIELDS``).
    """

    name: str
    state: str
    up: bool | None
    uptime: Mapping[str, Tally]
    budget: Budget | None
    checks: Sequence[Latest]
    locations: Mapping[str, bool] = field(default_factory=dict)
    steps: Mapping[str, Sequence[Mapping]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape shows. configured: enabled sites in the sites file. kafka: the
    drain group's lag (None: not read, say no Kafka connection). duration: seconds the figures
    took to gather. problems: the sites file's problems (``SitesFile.issues``)."""

    now: datetime
    configured: int
    sites: Sequence[SiteFigures]
    pipeline: Pipeline
    kafka: KafkaLag | None
    duration: float
    problems: int = 0


def exposition(snapshot: Snapshot, accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type for the request's ``Accept`` header: OpenMetrics
    when asked for it, else Prometheus's text format 0.0.4 (prometheus_client's
    ``choose_encoder`` decides, so the negotiation is the library's).

    A fresh registry per call, never the global ``REGISTRY``: a scrape shows this snapshot and
    nothing the process happens to have registered. Raises ValueError for a site whose state is
    not one of ``STATES``.
    """
    encode, content_type = choose_encoder(accept or "")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(families(snapshot)))
    return encode(registry), content_type


def families(snapshot: Snapshot) -> list[Metric]:
    """Every family of ``FAMILIES``, in its order, with ``snapshot``'s samples; a family without
    samples is still there, so the format declares it. Raises ValueError for a site whose
    state is not one of ``STATES``."""
    out = _Families()
    for site in snapshot.sites:
        _site(out, site)
        for latest in site.checks:
            _check(out, site.name, latest, snapshot.now)
            for step in site.steps.get(latest.location, ()):
                took = _seconds(step.get("response_ms"))
                out.add("sitewatch_check_step_duration_seconds", took, site=site.name,
                        location=latest.location, step=step["name"])  # fmt: skip
    _pipeline(out, snapshot)
    _kafka(out, snapshot.kafka)
    out.add("sitewatch_metrics_duration_seconds", snapshot.duration)
    return out.metrics()


class _Collector:
    """Hands prometheus_client families built beforehand: building them first means a bad
    snapshot raises before any byte is encoded, not halfway through a body."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


class _Families:
    """The families of ``FAMILIES`` by name, each declared from its entry (a counter without
    ``_total``: prometheus_client appends it to the sample, and OpenMetrics names the family
    without it)."""

    def __init__(self) -> None:
        self._by_name = {f.name: (f, _declare(f)) for f in FAMILIES}

    def add(self, name: str, value: float | None, **labels: str) -> None:
        """One sample of ``name`` (skipped when ``value`` is None); ``labels`` must be exactly
        the family's, in any order. Raises KeyError for a name not in ``FAMILIES``."""
        if value is None:
            return
        family, metric = self._by_name[name]
        if labels.keys() != set(family.labels):
            raise ValueError(f"{name} takes labels {family.labels}, got {tuple(labels)}")
        metric.add_metric([labels[key] for key in family.labels], float(value))

    def metrics(self) -> list[Metric]:
        return [metric for _, metric in self._by_name.values()]


def _declare(family: Family) -> Metric:
    """An empty prometheus_client family for ``family``; ValueError for a kind other than
    gauge or counter (the only two ``FAMILIES`` uses)."""
    if family.kind == "counter":
        name = family.name.removesuffix("_total")
        return CounterMetricFamily(name, family.help, labels=family.labels)
    if family.kind == "gauge":
        return GaugeMetricFamily(family.name, family.help, labels=family.labels)
    raise ValueError(f"{family.name}: kind {family.kind!r} is neither gauge nor counter")


def _site(out: _Families, site: SiteFigures) -> None:
    now = _label(site.state)
    if now not in STATES:
        raise ValueError(f"site {site.name!r}: state {site.state!r} is not one of {STATES}")
    name = site.name
    out.add("sitewatch_site_up", site.up, site=name)
    for location, silent in site.locations.items():
        out.add("sitewatch_site_location_silent", silent, site=name, location=location)
    for state in STATES:
        out.add("sitewatch_site_state", state == now, site=name, state=state)
    for window, tally in site.uptime.items():
        ratio = tally.ups / tally.checks if tally.checks else None
        out.add("sitewatch_uptime_ratio", ratio, site=name, window=window)
    if site.budget is not None:
        _budget(out, name, site.budget)


def _budget(out: _Families, site: str, budget: Budget) -> None:
    # Slo.target is a percentage (99.9); the family is a 0-1 ratio like the others.
    out.add("sitewatch_slo_objective_ratio", budget.slo.target / 100, site=site)
    out.add("sitewatch_slo_error_budget_remaining_ratio", budget.left, site=site)


def _check(out: _Families, site: str, latest: Latest, now: datetime) -> None:
    """The latest final check from one location; nothing before the location's first final
    attempt (its columns are all None then), except the counters."""
    where = {"site": site, "location": latest.location}
    out.add("sitewatch_site_checks_total", latest.checks, **where)
    out.add("sitewatch_site_checks_up_total", latest.ups, **where)
    if latest.up is None:
        return
    out.add("sitewatch_check_up", latest.up, **where)
    out.add("sitewatch_check_timestamp_seconds", _unix(latest.checked_at), **where)
    out.add("sitewatch_check_duration_seconds", _seconds(latest.response_time_ms), **where)
    for phase in PHASES:
        # Latest names each phase's column after PHASES: a phase added there without its
        # column fails here at once (AttributeError), not by a silently missing series.
        value = _seconds(getattr(latest, f"{phase}_ms"))
        out.add("sitewatch_check_phase_seconds", value, phase=phase, **where)
    out.add("sitewatch_check_status_code", latest.status_code, **where)
    seen = latest.tls_seen_at
    if seen is not None and now - seen <= TLS_FRESH:
        expiry = _unix(latest.tls_expires_at)
        out.add("sitewatch_tls_cert_expiry_timestamp_seconds", expiry, **where)


def _pipeline(out: _Families, snapshot: Snapshot) -> None:
    pipeline, now = snapshot.pipeline, snapshot.now
    out.add("sitewatch_sites_configured", snapshot.configured)
    out.add("sitewatch_sites_file_problems", snapshot.problems)
    if pipeline.newest_checked_at is not None:
        # A check stamped ahead of this clock (skew between workers) is no lag, not a negative one.
        lag = max(0.0, (now - pipeline.newest_checked_at).total_seconds())
        out.add("sitewatch_drain_lag_seconds", lag)
    out.add("sitewatch_drain_last_stored_timestamp_seconds", _unix(pipeline.newest_stored_at))
    out.add("sitewatch_checks_stored_total", pipeline.stored_total)
    out.add("sitewatch_rejected_messages_total", pipeline.rejected_total)


def _kafka(out: _Families, kafka: KafkaLag | None) -> None:
    """Nothing when the lag was not read; kafka_up 0 and no lag when reading it failed (a stale
    lag would look like a healthy one)."""
    if kafka is None:
        return
    out.add("sitewatch_kafka_up", kafka.error is None)
    if kafka.error is not None:
        return
    for partition, lag in sorted(kafka.partitions.items()):
        labels = {"topic": kafka.topic, "partition": str(partition), "group": kafka.group}
        out.add("sitewatch_kafka_consumer_lag_messages", lag, **labels)


def _unix(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _seconds(milliseconds: float | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000
