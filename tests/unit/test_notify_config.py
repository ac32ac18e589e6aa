"""The ``notify`` and ``remind_every`` keys: valid values, defaults and how a site overrides them.
(Invalid cases are fixtures: tests/unit/fixtures/invalid/notify_wrong.yaml and friends.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from sitewatch.config.loader import load_text, site_for_url
from sitewatch.config.notify import (
    AppriseTarget,
    EmailTarget,
    OpsgenieTarget,
    PagerdutyTarget,
    WebhookTarget,
)
from sitewatch.errors import ConfigError

TEXT = """\
defaults:
  notify:
    - webhook: ops_webhook
      format: slack
    - email: [oncall@example.com, oncall@example.com, web@example.org]
      smtp_conn: smtp_ops
      from: sitewatch@example.com
  remind_every: 1h
sites:
  - name: inherits
    url: https://example.com/
  - name: own-targets
    url: https://example.org/
    notify:
      - webhook: team.hook
      - email: me@example.net
    remind_every: ~
  - name: silenced
    url: https://example.net/
    notify: []
"""


def test_targets_and_reminders_from_defaults_and_overrides():
    result = load_text(TEXT, "sites.yaml")
    assert result.issues == []
    sites = {site.name: site for site in result.sites}
    assert sites["inherits"].notify == (
        WebhookTarget("ops_webhook", "slack"),
        EmailTarget(("oncall@example.com", "web@example.org"), "smtp_ops", "sitewatch@example.com"),
    )
    assert sites["inherits"].remind_every == timedelta(hours=1)
    # a site's own list replaces the default one; defaults of a target apply
    assert sites["own-targets"].notify == (
        WebhookTarget("team.hook", "json"),
        EmailTarget(("me@example.net",), "smtp_default", None),
    )
    assert sites["own-targets"].remind_every is None
    assert sites["silenced"].notify == ()


def test_no_alerts_unless_configured():
    site = site_for_url("https://example.com/")
    assert (site.notify, site.remind_every) == ((), None)


def test_ad_hoc_site_reports_nested_field_paths():
    with pytest.raises(ConfigError) as info:
        site_for_url("https://example.com/", notify=[{"email": ["a@b.co", 5]}])
    assert [str(i) for i in info.value.issues] == [
        "<command line>:0: notify[0].email[1]: "
        "expected an e-mail address like ops@example.com, got integer 5"
    ]


PROVIDERS = """\
defaults:
  notify:
    - apprise: chat
    - pagerduty: pd_ops
    - opsgenie: og_ops
sites:
  - name: inherits
    url: https://example.com/
  - name: opts-in
    url: https://example.org/
    notify:
      - apprise: chat
        tag: ops-team
        degraded: true
      - pagerduty: pd_ops
        degraded: false
      - opsgenie: og_ops
        degraded: true
      - webhook: ops_webhook
        degraded: true
      - email: me@example.net
        degraded: true
"""


def test_provider_targets_with_tag_and_degraded_opt_in():
    result = load_text(PROVIDERS, "sites.yaml")
    assert result.issues == []
    sites = {site.name: site for site in result.sites}
    # without the keys: every Apprise URL of the connection, and no DEGRADED alerts
    assert sites["inherits"].notify == (
        AppriseTarget("chat", None, False),
        PagerdutyTarget("pd_ops", False),
        OpsgenieTarget("og_ops", False),
    )
    assert sites["opts-in"].notify == (
        AppriseTarget("chat", "ops-team", True),
        PagerdutyTarget("pd_ops", False),
        OpsgenieTarget("og_ops", True),
        WebhookTarget("ops_webhook", "json", True),
        EmailTarget(("me@example.net",), "smtp_default", None, True),
    )


def test_status_updates_is_an_opt_in_of_every_target_type():
    text = """\
sites:
  - name: shop
    url: https://shop.example.com/
    notify:
      - webhook: status_channel
        status_updates: true
      - email: team@example.com
        status_updates: false
      - pagerduty: pd_ops
        status_updates: true
        degraded: true
"""
    result = load_text(text, "sites.yaml")
    assert result.issues == []
    (site,) = result.sites
    assert site.notify == (
        WebhookTarget("status_channel", status_updates=True),
        EmailTarget(("team@example.com",)),
        PagerdutyTarget("pd_ops", degraded=True, status_updates=True),
    )
