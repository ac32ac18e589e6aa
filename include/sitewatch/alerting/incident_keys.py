"""What each alert does to an incident in an incident tool (PagerDuty, Opsgenie): the one mapping.

An incident tool keeps one incident open per key and deduplicates on it, so each message kind is
an action (trigger or resolve) on the incident of one concern of a site, with a severity: the
site's own availability under ``sitewatch/<site>`` (DOWN and STILL DOWN trigger it as critical,
FLAPPING as error, RECOVERED resolves it), and ``sitewatch/<site>/pipeline``,
``/degraded`` and ``/slo/<severity>`` for the other concerns (``_RULES`` below; docs/alerts.md
has the table): a page and a warning of one site's budget are two incidents.

STILL DOWN re-triggers the open incident (the tool counts it; it opens nothing new). FLAPPING
shares the site's key: when the site settles, the DOWN or RECOVERED that follows updates or
resolves the same incident. SLO BURN OVER resolves its SLO BURN's incident. A message about no
single site (``Alert.concern``: a location that stopped reporting, the pipeline) has an incident
of its own, ``sitewatch/location/<name>`` or ``sitewatch/pipeline``, which its PIPELINE PROBLEM
OVER resolves. A STATUS UPDATE (a status page incident changed, sent to targets that opt in) is
an incident of its own too, ``sitewatch/status/<page>/<incident id>``, triggered as info and
resolved by the update that resolves the status incident. A site's own pipeline and degraded
incidents are never resolved by sitewatch: no message says that they ended (a site's pipeline
problem closes silently at its next verdict), so they are resolved by hand, or by the tool's own
auto-resolve. Nothing here touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from sitewatch.alerting.rules import Alert, Kind

KEY_PREFIX = "sitewatch"


class Action(StrEnum):
    TRIGGER = "trigger"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class Incident:
    """action: trigger or resolve. key: the incident's dedup key (PagerDuty) or alias (Opsgenie).
    severity: PagerDuty's word (critical, error, warning, info); ``priority`` is Opsgenie's."""

    action: Action
    key: str
    severity: str

    @property
    def priority(self) -> str:
        return PRIORITIES[self.severity]


# kind -> (action, the key's concern suffix, severity); SLO BURN's severity comes from its rule.
_RULES = MappingProxyType(
    {
        Kind.DOWN: (Action.TRIGGER, "", "critical"),
        Kind.STILL_DOWN: (Action.TRIGGER, "", "critical"),
        Kind.FLAPPING: (Action.TRIGGER, "", "error"),
        Kind.RECOVERED: (Action.RESOLVE, "", "info"),
        Kind.PIPELINE: (Action.TRIGGER, "/pipeline", "warning"),
        Kind.DEGRADED: (Action.TRIGGER, "/degraded", "warning"),
        Kind.SLO_BURN: (Action.TRIGGER, "/slo", None),
        Kind.SLO_BURN_OVER: (Action.RESOLVE, "/slo", "info"),
        Kind.PIPELINE_OVER: (Action.RESOLVE, "/pipeline", "info"),
        # a status page incident's update: its own incident (the concern), resolved with it
        Kind.STATUS_UPDATE: (Action.TRIGGER, "", "info"),
    }
)
# A burn alert without a known severity pages: missing a page costs more than an extra one.
SLO_SEVERITIES = MappingProxyType({"page": "critical", "warn": "warning"})
PRIORITIES = MappingProxyType({"critical": "P1", "error": "P2", "warning": "P3", "info": "P5"})


def incident_for(alert: Alert) -> Incident:
    """The incident action ``alert`` asks for. Raises KeyError for a kind with no rule (a new
    ``Kind`` must be given one here)."""
    action, concern, severity = _RULES[alert.kind]
    if concern == "/slo":
        rule = alert.severity if alert.severity in SLO_SEVERITIES else "page"
        concern = f"/slo/{rule}"
        severity = severity or SLO_SEVERITIES[rule]
    if alert.note is not None and alert.note.state == "resolved":
        action = Action.RESOLVE
    if alert.concern:  # a location, the pipeline or a status incident: one incident of its own
        return Incident(action, f"{KEY_PREFIX}/{alert.concern}", severity)
    return Incident(action, f"{KEY_PREFIX}/{alert.site}{concern}", severity)
