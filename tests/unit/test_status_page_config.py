"""The ``status_pages`` key: pages and components as validated records; the invalid cases are
fixtures in fixtures/invalid/status_page_*.yaml, checked by test_config."""

import json
import textwrap

from sitewatch.config.loader import load_text
from sitewatch.config.status_pages import Component, StatusPage, slug

SITES = """\
sites:
  - name: shop
    url: https://shop.example.com/
  - name: api
    url: https://api.example.com/
    enabled: false
"""


def load(pages: str):
    return load_text(SITES + textwrap.dedent(pages), "sites.yaml")


def test_a_page_keeps_its_components_in_file_order():
    result = load("""\
        status_pages:
          - id: public
            title: Example status
            components:
              - site: shop
                name: Shop
                description: Orders and payments
              - group: [shop, api]
                name: Everything
                response_time: true
        """)
    assert result.issues == []
    assert result.status_pages == (
        StatusPage(
            "public",
            "Example status",
            (
                Component("Shop", ("shop",), "Orders and payments"),
                Component("Everything", ("shop", "api"), None, group=True, response_time=True),
            ),
            line=8,
        ),
    )
    assert [c.slug for c in result.status_pages[0].components] == ["shop", "everything"]


def test_configured_text_is_kept_verbatim_for_the_renderer_to_escape():
    hostile = '<script>alert("x")</script> & \u00e9'
    page = {"id": "public", "title": hostile, "components": [
        {"site": "shop", "name": hostile, "description": "</title><b>"}
    ]}  # fmt: skip
    result = load_text(SITES + "status_pages: " + json.dumps([page]) + "\n", "sites.yaml")
    assert result.issues == []
    (found,) = result.status_pages
    assert found.title == found.components[0].name == hostile
    assert found.components[0].description == "</title><b>"


def test_a_bad_page_never_hides_the_good_ones_nor_the_sites():
    result = load("""\
        status_pages:
          - id: bad
            title: Bad
            components: [{site: nowhere, name: X}]
          - id: good
            title: Good
            components: [{site: shop, name: Shop}]
        """)
    assert [str(i) for i in result.issues] == [
        "sites.yaml:10: status_pages[0].components[0].site: no site named 'nowhere' in this file"
    ]
    assert [p.id for p in result.status_pages] == ["good"]
    assert [s.name for s in result.sites] == ["shop", "api"]


def test_no_pages_and_null_pages_are_none():
    assert load("").status_pages == ()
    assert load("status_pages:\n").status_pages == ()


def test_unknown_top_level_key_names_status_pages():
    result = load("status_page: []\n")
    assert [i.message for i in result.issues] == [
        "unknown key 'status_page' (did you mean 'status_pages'?)"
    ]


def test_slug():
    assert slug("Shop API") == "shop-api"
    assert slug("  Über--Shop! ") == "ber-shop"
    assert slug("<>") == "component"


def test_a_page_with_a_public_url_links_its_incidents_there():
    result = load("""\
        status_pages:
          - id: public
            title: Example status
            url: https://status.example.com/public/
            components:
              - site: shop
                name: Shop
          - id: private
            title: Internal
            components:
              - site: shop
                name: Shop
        """)
    assert result.issues == []
    public, private = result.status_pages
    assert public.url == "https://status.example.com/public/"
    assert public.link(42) == "https://status.example.com/public/#i-42"
    assert private.url is None and private.link(42) is None
