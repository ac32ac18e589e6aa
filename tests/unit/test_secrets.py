"""Header values from the environment: substituted at check time, never stored, errors named, and
reported as ``Secrets`` (which headers, which values) for the probe to protect."""

import dataclasses
import html
import json
import re
from urllib.parse import quote, quote_plus

import pytest

from sitewatch.config.loader import load_text
from sitewatch.config.secrets import NO_SECRETS, Secrets, expand_headers
from sitewatch.errors import ConfigError

SITES = """\
sites:
  - name: shop
    url: https://shop.example.com/
    headers:
      Authorization: "Bearer ${SITEWATCH_SECRET_SHOP_TOKEN}"
      X-Team: "${SITEWATCH_SECRET_TEAM}-${SITEWATCH_SECRET_REGION}"
      X-Literal: "costs $${AMOUNT}"
      Accept: text/html
"""


def site():
    loaded = load_text(SITES, "sites.yaml")
    assert loaded.issues == []
    return loaded.sites[0]


def test_variables_are_substituted_and_reported_as_secrets():
    seen = []
    env = {
        "SITEWATCH_SECRET_SHOP_TOKEN": "s3cr3t",
        "SITEWATCH_SECRET_TEAM": "ops",
        "SITEWATCH_SECRET_REGION": "eu",
    }
    expanded, secrets = expand_headers(site(), env, on_secret=seen.append)
    assert dict(expanded.headers) == {
        "Authorization": "Bearer s3cr3t",
        "X-Team": "ops-eu",
        "X-Literal": "costs ${AMOUNT}",
        "Accept": "text/html",
    }
    assert sorted(seen) == ["eu", "ops", "s3cr3t"]
    # X-Literal only unescaped "$${": it holds no variable, so it is no secret
    assert secrets.headers == {"authorization", "x-team"}
    assert secrets.values == ("s3cr3t",)  # "ops" and "eu" are too short to mask, as in Airflow


def test_secret_values_are_masked_whole_or_truncated():
    secrets = Secrets(frozenset({"x-key"}), ("tok-3f9a1c7e5b", "s3cr3t"))
    assert secrets.redact("a tok-3f9a1c7e5b b s3cr3t c") == "a *** b *** c"
    assert secrets.redact("cut at tok-3f9…") == "cut at ***…"  # a truncated copy is masked too
    assert secrets.redact("tok-3 s3cr") == "*** s3cr"  # 5 characters are masked, 4 are not
    assert NO_SECRETS.redact("s3cr3t") == "s3cr3t"


LIVE = "sk/LIVE+9f8e7d6c5b4a3210=="


@pytest.mark.parametrize(
    "written",
    [
        pytest.param(quote(LIVE), id="quote"),  # sk/LIVE%2B…%3D%3D
        pytest.param(quote(LIVE, safe=""), id="quote-safe-none"),
        pytest.param(quote_plus(LIVE), id="quote_plus"),
        pytest.param(re.sub("%..", lambda m: m[0].lower(), quote(LIVE, safe="")), id="lower-hex"),
        pytest.param(quote(quote(LIVE, safe=""), safe=""), id="quoted-twice"),
        pytest.param(LIVE.replace("+", " "), id="form-decoded"),
        pytest.param(json.dumps(LIVE).replace("/", "\\/"), id="json-escaped-slash"),
        pytest.param(repr(json.dumps(LIVE).replace("/", "\\/")), id="repr-of-json"),
        pytest.param(json.dumps(LIVE, ensure_ascii=False).replace("s", "\\u0073"), id="json-u"),
        pytest.param(html.escape(LIVE).replace("/", "&#x2F;"), id="html-reference"),
        pytest.param(quote(LIVE)[:12], id="truncated-encoded"),
    ],
)
def test_a_secret_is_masked_in_any_form_it_is_written(written):
    secrets = Secrets(frozenset({"x-key"}), (LIVE,))
    masked = secrets.redact(f"next={written}&x=1")
    # the whole copy is masked, and only it: the quotes of the JSON and repr() forms stay
    assert masked.replace('"', "").replace("'", "") == "next=***&x=1", masked


def test_the_loaded_site_keeps_the_reference_not_the_value():
    original = site()
    expand_headers(
        original,
        {
            "SITEWATCH_SECRET_SHOP_TOKEN": "s3cr3t",
            "SITEWATCH_SECRET_TEAM": "a",
            "SITEWATCH_SECRET_REGION": "b",
        },
    )
    assert original.headers["Authorization"] == "Bearer ${SITEWATCH_SECRET_SHOP_TOKEN}"


def test_every_unset_variable_is_named():
    with pytest.raises(ConfigError) as error:
        expand_headers(site(), {"SITEWATCH_SECRET_TEAM": "ops"})
    assert [str(i) for i in error.value.issues] == [
        "<environment>:2: shop.headers.Authorization: "
        "environment variable SITEWATCH_SECRET_SHOP_TOKEN is not set",
        "<environment>:2: shop.headers.X-Team: "
        "environment variable SITEWATCH_SECRET_REGION is not set",
    ]


def test_a_site_built_in_code_cannot_read_other_variables():
    # Validation refuses these names; a Site built in code skips validation, the expansion not.
    loaded = load_text("sites:\n  - name: a\n    url: http://a.example/\n", "s.yaml")
    leak = dataclasses.replace(
        loaded.sites[0], headers={"X-Leak": "${AIRFLOW__CORE__FERNET_KEY}", "X-Old": "${TOKEN}"}
    )
    env = {"AIRFLOW__CORE__FERNET_KEY": "fernet-key-value", "TOKEN": "old-token"}
    with pytest.raises(ConfigError) as error:
        expand_headers(leak, env)
    messages = [i.message for i in error.value.issues]
    assert messages[0].startswith("header values may not name AIRFLOW__CORE__FERNET_KEY")
    assert "rename TOKEN to SITEWATCH_SECRET_TOKEN" in messages[1]
    assert "fernet-key-value" not in str(error.value) and "old-token" not in str(error.value)


def test_a_site_without_references_is_returned_as_is():
    loaded = load_text("sites:\n  - name: a\n    url: http://a.example/\n", "s.yaml")
    assert expand_headers(loaded.sites[0], {}) == (loaded.sites[0], NO_SECRETS)
    assert expand_headers(loaded.sites[0], {})[0] is loaded.sites[0]
