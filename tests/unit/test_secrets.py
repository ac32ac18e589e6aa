"""Header values from the environment: substituted at check time, never stored, errors named."""

import pytest

from sitewatch.config.loader import load_text
from sitewatch.config.secrets import expand_headers
from sitewatch.errors import ConfigError

SITES = """\
sites:
  - name: shop
    url: https://shop.example.com/
    headers:
      Authorization: "Bearer ${SHOP_TOKEN}"
      X-Team: "${TEAM}-${REGION}"
      X-Literal: "costs $${AMOUNT}"
      Accept: text/html
"""


def site():
    loaded = load_text(SITES, "sites.yaml")
    assert loaded.issues == []
    return loaded.sites[0]


def test_variables_are_substituted_and_reported_as_secrets():
    seen = []
    env = {"SHOP_TOKEN": "s3cr3t", "TEAM": "ops", "REGION": "eu"}
    expanded = expand_headers(site(), env, on_secret=seen.append)
    assert dict(expanded.headers) == {
        "Authorization": "Bearer s3cr3t",
        "X-Team": "ops-eu",
        "X-Literal": "costs ${AMOUNT}",
        "Accept": "text/html",
    }
    assert sorted(seen) == ["eu", "ops", "s3cr3t"]


def test_the_loaded_site_keeps_the_reference_not_the_value():
    original = site()
    expand_headers(original, {"SHOP_TOKEN": "s3cr3t", "TEAM": "a", "REGION": "b"})
    assert original.headers["Authorization"] == "Bearer ${SHOP_TOKEN}"


def test_every_unset_variable_is_named():
    with pytest.raises(ConfigError) as error:
        expand_headers(site(), {"TEAM": "ops"})
    assert [str(i) for i in error.value.issues] == [
        "<environment>:2: shop.headers.Authorization: environment variable SHOP_TOKEN is not set",
        "<environment>:2: shop.headers.X-Team: environment variable REGION is not set",
    ]


def test_a_site_without_references_is_returned_as_is():
    loaded = load_text("sites:\n  - name: a\n    url: http://a.example/\n", "s.yaml")
    assert expand_headers(loaded.sites[0], {}) is loaded.sites[0]
