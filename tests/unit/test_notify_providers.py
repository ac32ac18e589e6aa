"""The incident mapping every incident tool shares, which target gets which alert, and what each
provider notifier is built with. Delivery to local receivers:
tests/integration/test_provider_delivery.py; invalid targets:
tests/unit/fixtures/invalid/notify_providers_wrong.yaml.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.apprise.notifications.apprise import AppriseNotifier
from airflow.providers.opsgenie.notifications.opsgenie import OpsgenieNotifier
from airflow.providers.pagerduty.notifications.pagerduty import PagerdutyNotifier
from apprise import NotifyType

from sitewatch.airflow.notifiers import notifier_for, wants
from sitewatch.alerting.incident_keys import Action, Incident, incident_for
from sitewatch.alerting.rules import Alert, Kind, StatusNote
from sitewatch.config.notify import (
    AppriseTarget,
    EmailTarget,
    OpsgenieTarget,
    PagerdutyTarget,
    WebhookTarget,
    label,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TARGETS = (
    WebhookTarget("ops_webhook"),
    EmailTarget(("oncall@example.com",)),
    AppriseTarget("chat", tag="ops"),
    PagerdutyTarget("pd_ops"),
    OpsgenieTarget("og_ops"),
)


def alert(kind: Kind, severity: str | None = None) -> Alert:
    return Alert(
        "shop", "https://shop.example.com/", kind, T0, T0, "status", "500", severity=severity
    )


@pytest.mark.parametrize(
    ("kind", "severity", "expected"),
    [
        (Kind.DOWN, None, Incident(Action.TRIGGER, "sitewatch/shop", "critical")),
        (Kind.STILL_DOWN, None, Incident(Action.TRIGGER, "sitewatch/shop", "critical")),
        (Kind.FLAPPING, None, Incident(Action.TRIGGER, "sitewatch/shop", "error")),
        (Kind.RECOVERED, None, Incident(Action.RESOLVE, "sitewatch/shop", "info")),
        (Kind.PIPELINE, None, Incident(Action.TRIGGER, "sitewatch/shop/pipeline", "warning")),
        (Kind.DEGRADED, None, Incident(Action.TRIGGER, "sitewatch/shop/degraded", "warning")),
        (Kind.SLO_BURN, "page", Incident(Action.TRIGGER, "sitewatch/shop/slo/page", "critical")),
        (Kind.SLO_BURN, "warn", Incident(Action.TRIGGER, "sitewatch/shop/slo/warn", "warning")),
        (Kind.SLO_BURN, None, Incident(Action.TRIGGER, "sitewatch/shop/slo/page", "critical")),
        (Kind.SLO_BURN_OVER, "warn", Incident(Action.RESOLVE, "sitewatch/shop/slo/warn", "info")),
    ],
)
def test_each_kind_is_one_action_on_one_incident(kind, severity, expected):
    assert incident_for(alert(kind, severity)) == expected


def test_every_kind_has_an_incident_rule():
    for kind in Kind:
        assert incident_for(alert(kind)).key.startswith("sitewatch/shop")


def test_opsgenie_priority_follows_the_severity():
    priorities = {kind: incident_for(alert(kind, "warn")).priority for kind in Kind}
    assert priorities == {
        Kind.DOWN: "P1",
        Kind.STILL_DOWN: "P1",
        Kind.FLAPPING: "P2",
        Kind.RECOVERED: "P5",
        Kind.PIPELINE: "P3",
        Kind.DEGRADED: "P3",
        Kind.SLO_BURN: "P3",
        Kind.SLO_BURN_OVER: "P5",
        Kind.PIPELINE_OVER: "P5",
        Kind.STATUS_UPDATE: "P5",
    }


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.KIND)
def test_degraded_goes_only_to_targets_that_opt_in(target):
    opted_in = dataclasses.replace(target, degraded=True)
    assert not wants(target, alert(Kind.DEGRADED))
    assert wants(opted_in, alert(Kind.DEGRADED))
    for kind in (Kind.DOWN, Kind.FLAPPING, Kind.SLO_BURN, Kind.PIPELINE):
        assert wants(target, alert(kind))


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.KIND)
def test_status_updates_go_only_to_targets_that_opt_in(target):
    opted_in = dataclasses.replace(target, status_updates=True)
    assert not wants(target, alert(Kind.STATUS_UPDATE))
    assert wants(opted_in, alert(Kind.STATUS_UPDATE))
    assert wants(opted_in, alert(Kind.DOWN)) and not wants(opted_in, alert(Kind.DEGRADED))


def test_a_status_update_is_its_incidents_own_incident_resolved_with_it():
    note = StatusNote("Example status", "Shop is down", "investigating", "Looking.", "alice")
    update = Alert("Example status", "", Kind.STATUS_UPDATE, T0, T0,
                   concern="status/status/42", note=note)  # fmt: skip
    resolved = dataclasses.replace(update, note=dataclasses.replace(note, state="resolved"))
    assert incident_for(update) == Incident(Action.TRIGGER, "sitewatch/status/status/42", "info")
    assert incident_for(resolved) == Incident(Action.RESOLVE, "sitewatch/status/status/42", "info")


def test_targets_are_labelled_by_type_and_connection_only():
    assert [label(t) for t in TARGETS] == [
        "webhook ops_webhook",
        "email smtp_default",
        "apprise chat",
        "pagerduty pd_ops",
        "opsgenie og_ops",
    ]


def test_pagerduty_notifier_is_the_providers_with_the_incident():
    notifier = notifier_for(alert(Kind.RECOVERED), PagerdutyTarget("pd_ops"))
    assert isinstance(notifier, PagerdutyNotifier)
    assert (notifier.action, notifier.dedup_key, notifier.severity) == (
        "resolve",
        "sitewatch/shop",
        "info",
    )
    assert (notifier.pagerduty_events_conn_id, notifier.source) == ("pd_ops", "shop.example.com")


def test_opsgenie_notifier_is_the_providers_with_alias_and_priority():
    notifier = notifier_for(alert(Kind.SLO_BURN, "page"), OpsgenieTarget("og_ops"))
    assert isinstance(notifier, OpsgenieNotifier)
    assert notifier.opsgenie_conn_id == "og_ops"
    assert (notifier.payload["alias"], notifier.payload["priority"]) == (
        "sitewatch/shop/slo/page",
        "P1",
    )
    assert notifier.payload["tags"] == ["sitewatch", "SLO BURN"]


@pytest.mark.parametrize(
    ("kind", "notify_type"),
    [
        (Kind.DOWN, NotifyType.FAILURE),
        (Kind.RECOVERED, NotifyType.SUCCESS),
        (Kind.PIPELINE, NotifyType.WARNING),
        (Kind.FLAPPING, NotifyType.WARNING),
    ],
)
def test_apprise_notifier_is_the_providers_with_title_body_and_tag(kind, notify_type):
    message = alert(kind)
    notifier = notifier_for(message, AppriseTarget("chat", tag="ops"))
    assert isinstance(notifier, AppriseNotifier)
    assert (notifier.apprise_conn_id, notifier.tag, notifier.notify_type) == (
        "chat",
        "ops",
        notify_type,
    )
    assert notifier.title == message.title
    assert notifier.body.splitlines()[0] == "site: shop"  # the title is not repeated
    assert notifier_for(message, AppriseTarget("chat")).tag == "all"


def test_an_alert_about_a_location_has_an_incident_of_its_own_that_its_over_resolves():
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    problem = Alert("location west", "", Kind.PIPELINE, at, at, "no checks from location west",
                    "3 of 3 sites", concern="location/west")  # fmt: skip
    over = dataclasses.replace(problem, kind=Kind.PIPELINE_OVER, at=at + timedelta(minutes=7))
    assert incident_for(problem) == Incident(Action.TRIGGER, "sitewatch/location/west", "warning")
    assert incident_for(over) == Incident(Action.RESOLVE, "sitewatch/location/west", "info")
    assert problem.title == (
        "[sitewatch] PIPELINE PROBLEM: location west (no checks from location west: 3 of 3 sites)"
    )
    assert over.title == "[sitewatch] PIPELINE PROBLEM OVER: location west"
    doc = over.document()
    assert doc["site"] is None and doc["concern"] == "location/west"
    assert doc["since"] == "2026-06-01T12:00:00+00:00" and doc["at"] == "2026-06-01T12:07:00+00:00"
    assert ("about", "location west") in problem.lines()
    assert ("note", "sitewatch itself failed; this says nothing about any site") in problem.lines()
    # a site's own alert is unchanged: its name under "site", no concern
    site = dataclasses.replace(problem, site="shop", url="https://shop.example/", concern=None)
    assert site.document()["site"] == "shop" and site.document()["concern"] is None
    assert incident_for(site).key == "sitewatch/shop/pipeline"
