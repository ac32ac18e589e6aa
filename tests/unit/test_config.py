"""The sites-file loader: every invalid fixture yields exactly its expected issues, and valid files
give exactly the right Site values."""

from __future__ import annotations

import itertools
import textwrap
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.config.key_checks import KINDS
from sitewatch.config.keys import BUILTIN_DEFAULTS, KEYS, KIND_LIMITED
from sitewatch.config.loader import (
    ConfigIssue,
    Site,
    SitesFile,
    compile_pattern,
    default_sites_path,
    load_sites,
    load_text,
    site_for_url,
)
from sitewatch.config.offset import auto_offset
from sitewatch.config.reference import DNS_KEYS, TCP_KEYS, render
from sitewatch.config.schedule import check_cron, format_duration, parse_duration
from sitewatch.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
REPO = Path(__file__).resolve().parents[2]


def issue_lines(result: SitesFile, path: Path) -> list[str]:
    """Issues with the file shown by base name, as the .expected files write them."""
    assert all(issue.file == str(path) for issue in result.issues)
    return [f"{path.name}:{i.line}: {i.field}: {i.message}" for i in result.issues]


def by_name(result: SitesFile) -> dict[str, Site]:
    return {site.name: site for site in result.sites}


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture_gives_exactly_its_expected_issues(path):
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    assert issue_lines(load_sites(path), path) == expected


def test_every_invalid_fixture_has_an_expectation_and_there_are_enough():
    expectations = sorted((FIXTURES / "invalid").glob("*.expected"))
    assert [p.stem for p in expectations] == [p.stem for p in INVALID]
    assert len(INVALID) >= 25


def test_a_broken_entry_keeps_the_valid_ones_around_it():
    text = """\
sites:
  - name: first
    url: https://example.com/
  - name: broken
    url: ftp://example.com/
    regx: x
  - name: last
    url: https://example.org/
"""
    result = load_text(text, "sites.yaml")
    assert [site.name for site in result.sites] == ["first", "last"]
    assert [str(issue) for issue in result.issues] == [
        "sites.yaml:5: sites[1].url: invalid URL 'ftp://example.com/': "
        "scheme must be http, https, tcp, tls or dns",
        "sites.yaml:6: sites[1].regx: unknown key 'regx' (did you mean 'regex'?)",
    ]


def test_a_check_that_fails_unforeseen_costs_one_entry(monkeypatch):
    """Whatever a check or a rule between keys raises becomes a problem of that entry alone."""
    from sitewatch.config import reader

    def owner(value):
        raise OverflowError("date value out of range")

    def rule(values):
        if values["tags"] == ("boom",):
            raise KeyError("boom")

    monkeypatch.setattr(reader, "FIELDS", {**reader.FIELDS, "owner": owner})
    rules = (*reader.CROSS_KEY_RULES, reader.Rule("tags", (), rule))
    monkeypatch.setattr(reader, "CROSS_KEY_RULES", rules)
    text = """\
sites:
  - name: first
    url: https://example.com/
  - name: owned
    url: https://example.com/
    owner: ops
  - name: tagged
    url: https://example.com/
    tags: [boom]
  - name: last
    url: https://example.org/
"""
    result = load_text(text, "sites.yaml")
    assert [site.name for site in result.sites] == ["first", "last"]
    assert [str(issue) for issue in result.issues] == [
        "sites.yaml:6: sites[1].owner: could not be checked (OverflowError: date value out of "
        "range); please report this bug",
        "sites.yaml:7: sites[2]: could not be checked (KeyError: 'boom'); please report this bug",
    ]


def test_a_bad_default_is_reported_once_and_the_rest_still_apply():
    result = load_sites(FIXTURES / "invalid" / "defaults_errors.yaml")
    assert len(result.issues) == 3  # one per bad default, none repeated per site
    assert [site.name for site in result.sites] == ["uses-defaults", "also"]
    for site in result.sites:
        assert site.timeout == 10.0  # the bad default is ignored
        assert site.retries == 3  # the good default applies


def test_defaults_are_applied_and_overridden():
    result = load_sites(FIXTURES / "valid" / "defaults.yaml")
    assert result.issues == []
    sites = by_name(result)
    inherits = sites["inherits"]
    assert inherits == Site(
        name="inherits",
        url="https://example.com/",
        schedule=timedelta(minutes=1),
        regex="(?i)welcome",
        timeout=2.0,
        headers={"User-Agent": "sitewatch-test"},
        tags=("team-a",),
        owner="ops",
        line=12,
    )
    overrides = sites["overrides"]
    assert overrides.schedule == timedelta(hours=1, minutes=30)
    assert overrides.regex is None  # null unsets the default pattern
    assert overrides.timeout == 0.5
    assert overrides.tags == ("team-b", "web")  # repeats dropped, order kept
    assert (overrides.owner, overrides.enabled) == ("web", False)
    post = sites["post-json"]
    assert post.method == "POST" and post.body == '{"ping": true}'
    assert dict(post.headers) == {"Content-Type": "application/json"}  # a mapping replaces
    assert (post.follow_redirects, post.verify_tls) == (False, False)
    assert (post.max_body_bytes, post.retries, post.retry_delay) == (1024, 0, timedelta(seconds=1))
    assert (post.max_response_ms, post.min_cert_days) == (1500, 0)


def test_defaults_apply_to_the_sites_whose_kind_takes_them():
    result = load_sites(FIXTURES / "valid" / "defaults_by_kind.yaml")
    assert (result.issues, result.warnings) == ([], [])
    sites = by_name(result)
    assert {site.schedule for site in sites.values()} == {timedelta(minutes=1)}
    http = ("headers", "regex", "follow_redirects", "max_body_bytes", "expect_status")
    tls = ("verify_tls", "min_cert_days", "tls_min_version")
    tcp = ("send", "reply_regex")

    def keys(site, names):
        return {name: getattr(site, name) for name in names}

    given = {
        "headers": {"User-Agent": "sitewatch-test"},
        "regex": "ok",
        "follow_redirects": False,
        "max_body_bytes": 2048,
        "expect_status": ((200, 200), (204, 204)),
        "verify_tls": False,
        "min_cert_days": 7,
        "tls_min_version": "1.3",
        "send": "PING\r\n",
        "reply_regex": "PONG",
    }
    builtin = {name: BUILTIN_DEFAULTS[name] for name in given}
    web, flow = sites["web"], sites["flow"]
    assert keys(web, (*http, *tls, *tcp)) == {**builtin, **keys_of(given, (*http, *tls))}
    assert (web.answers, flow.answers) == (None, None)
    # a flow takes the HTTP keys of the whole flow, not those of one request
    assert keys(flow, (*http, *tls, *tcp)) == {
        **builtin,
        **keys_of(given, ("follow_redirects", "max_body_bytes", "expect_status", *tls)),
    }
    cache, secure = sites["cache"], sites["secure-cache"]
    assert keys(cache, (*http, *tls, *tcp)) == {**builtin, **keys_of(given, tcp)}
    assert keys(secure, (*http, *tls, *tcp)) == {
        **builtin,
        **keys_of(given, (*tls, *tcp)),
        "send": "AUTH\r\n",  # its own wins
    }
    resolver = sites["resolver"]
    assert keys(resolver, (*http, *tls, *tcp)) == builtin
    assert (resolver.answers.values, resolver.answers.match) == (("192.0.2.1",), "any")


def keys_of(values: dict, names: tuple) -> dict:
    return {name: values[name] for name in names}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_refuses_exactly_the_keys_it_does_not_take(kind):
    """The one table (``Key.kinds``) decides: each key not every kind takes, set on a site of
    each kind (with its reference example), is an error on its line exactly when the kind does
    not take it."""
    where = {
        "http": "    url: https://example.org/\n",
        "flow": "    steps: [{name: ping, url: 'https://example.org/'}]\n",
        "tcp": "    url: tcp://example.org:25\n",
        "tls": "    url: tls://example.org:465\n",
        "dns": "    url: dns://192.0.2.53/example.org?type=A\n",
    }[kind]
    assert KIND_LIMITED  # and every key in it is a site key, declared with its kinds
    for name, kinds in KIND_LIMITED.items():
        example = KEYS[name].example
        value = "\n" + textwrap.indent(example, "      ") if "\n" in example else " " + example
        text = f"sites:\n  - name: one\n{where}    method: POST\n    {name}:{value}\n"
        if name == "method":
            text = text.replace("    method: POST\n", "", 1)
        result = load_text(text, "sites.yaml")
        refused = [i for i in result.issues if i.message.startswith(f"{name} is for ")]
        if kind in kinds:
            assert refused == [], (kind, name)
        else:
            line = text[: text.index(f"    {name}:")].count("\n") + 1
            assert [(i.line, i.field) for i in refused] == [(line, f"sites[0].{name}")], name


def test_a_default_no_site_takes_is_a_warning_and_costs_nothing():
    text = """\
defaults:
  send: "PING\\r\\n"
  headers: {X-Probe: "1"}
  answers: [192.0.2.1]
sites:
  - name: web
    url: https://example.org/
  - name: cache
    url: tcp://cache.example.org:6379
"""
    result = load_text(text, "sites.yaml")
    assert result.issues == [] and [site.name for site in result.sites] == ["web", "cache"]
    assert [str(warning) for warning in result.warnings] == [
        "sites.yaml:4: defaults.answers: applies to no site: it is for a dns:// check, and no"
        " site is one"
    ]


def test_schedules_parse_to_intervals_and_normalised_cron():
    result = load_sites(FIXTURES / "valid" / "schedules.yaml")
    assert result.issues == []
    assert {site.name: site.schedule for site in result.sites} == {
        "every-10s": timedelta(seconds=10),
        "every-30s": timedelta(seconds=30),
        "every-5m": timedelta(minutes=5),
        "every-1h": timedelta(hours=1),
        "every-1h30m": timedelta(hours=1, minutes=30),
        "every-2d": timedelta(days=2),
        "every-90000ms": timedelta(seconds=90),
        "cron-step": "*/15 * * * *",
        "cron-workdays": "0 9 * * MON-fri",
        "cron-lists": "0,30 8-18/2 1,15 jan,jul 0-6",
        "cron-sunday-7": "5 4 * * 7",
        "cron-default": timedelta(minutes=5),
    }


def test_accepted_cron_expressions_are_valid_for_croniter_too():
    croniter = pytest.importorskip("croniter")  # what Airflow schedules cron strings with
    for site in load_sites(FIXTURES / "valid" / "schedules.yaml").sites:
        if isinstance(site.schedule, str):
            assert croniter.croniter.is_valid(site.schedule), site.schedule


def test_expect_status_words_anchors_and_merge_keys():
    result = load_sites(FIXTURES / "valid" / "values.yaml")
    assert result.issues == []
    sites = by_name(result)
    assert sites["single-code"].expect_status == ((204, 204),)
    assert sites["range-string"].expect_status == ((200, 299),)
    assert sites["mixed-list"].expect_status == ((200, 200), (301, 301), (500, 503))
    # YAML 1.1 would turn these into booleans; here only true/false are booleans.
    assert sites["words"].tags == ("on", "off", "yes", "no")
    assert dict(sites["words"].headers) == {"X-Flag": "no", "Accept": "*/*"}
    merged = sites["merged"]
    assert (merged.url, merged.timeout, merged.retries) == ("https://example.com/", 3.0, 1)
    assert merged.expect_status == ((204, 204),)


def test_sites_keep_their_line_and_issues_come_in_file_order():
    result = load_sites(FIXTURES / "invalid" / "out_of_range.yaml")
    lines = [issue.line for issue in result.issues]
    assert lines == sorted(lines)
    valid = load_sites(FIXTURES / "valid" / "values.yaml")
    assert [site.line for site in valid.sites] == [3, 9, 12, 15, 21]


def test_shipped_files_validate():
    for name in ("sites.yaml", "sites.reference.yaml"):
        result = load_sites(REPO / "include" / name)
        assert result.issues == [], name
    shipped = by_name(load_sites(REPO / "include" / "sites.yaml"))
    assert shipped["nws-new-york"].regex is not None
    assert compile_pattern(shipped["nws-new-york"].regex).search("Last Update: 3:14 pm EST")
    assert compile_pattern(shipped["hacker-news"].regex).search("123 points by pg")


def test_reference_file_is_generated_from_the_key_declarations():
    committed = (REPO / "include" / "sites.reference.yaml").read_text(encoding="utf-8")
    assert committed == render(), (
        "regenerate: python -m sitewatch.config.reference > include/sites.reference.yaml"
    )
    first = yaml.safe_load(committed)["sites"][0]
    # every key shown with an example, in declaration order; a TCP check's in reference-tcp
    assert list(first) == [key for key in KEYS if key not in (*TCP_KEYS, *DNS_KEYS, "steps")]
    assert (TCP_KEYS, DNS_KEYS) == (("send", "reply_regex"), ("answers",))
    tcp, dns, flow = yaml.safe_load(committed)["sites"][2:5]
    assert tcp["name"] == "reference-tcp" and set(TCP_KEYS) <= set(tcp)
    assert dns["name"] == "reference-dns" and set(DNS_KEYS) <= set(dns)
    assert flow["name"] == "reference-flow" and len(flow["steps"]) == 4


def test_a_site_built_in_code_takes_the_declared_defaults():
    site = Site(name="a", url="https://a.test/")
    # offset's default, auto, and quorum's, majority, are resolved on construction
    assert {key: getattr(site, key) for key in BUILTIN_DEFAULTS} == BUILTIN_DEFAULTS | {
        "offset": auto_offset("a", BUILTIN_DEFAULTS["schedule"]),
        "quorum": 1,
    }


def test_site_built_in_code_freezes_its_collections():
    site = Site(name="a", url="https://a.test/", headers={"X": "1"}, tags=["t"])
    assert isinstance(site.headers, MappingProxyType)
    assert site.tags == ("t",)
    assert hash(site) == hash(Site(name="a", url="https://a.test/", tags=("t",)))
    with pytest.raises(TypeError):
        site.headers["Y"] = "2"


def test_missing_file_and_directory_are_single_issues(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert [str(i) for i in load_sites(missing).issues] == [
        f"{missing}:0: <file>: cannot read file: No such file or directory"
    ]
    assert [str(i) for i in load_sites(tmp_path).issues] == [
        f"{tmp_path}:0: <file>: cannot read file: Is a directory"
    ]


def test_default_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SITEWATCH_SITES_FILE", raising=False)
    assert default_sites_path() == REPO / "include" / "sites.yaml"
    monkeypatch.setenv("SITEWATCH_SITES_FILE", str(tmp_path / "mine.yaml"))
    assert default_sites_path() == tmp_path / "mine.yaml"
    assert load_sites().path == str(tmp_path / "mine.yaml")


def test_huge_body_is_rejected_with_its_size():
    body = "x" * (1024 * 1024 + 1)
    text = f"sites:\n  - name: big\n    url: https://a.test/\n    method: POST\n    body: {body}\n"
    assert [str(i) for i in load_text(text).issues] == [
        "<string>:5: sites[0].body: too long: 1048577 characters (at most 1048576)"
    ]


def test_bom_and_crlf_are_fine(tmp_path):
    path = tmp_path / "windows.yaml"
    path.write_bytes(b"\xef\xbb\xbfsites:\r\n  - name: a\r\n    url: https://a.test/\r\n")
    result = load_sites(path)
    assert result.issues == [] and result.sites[0].name == "a"


def test_issue_format():
    issue = ConfigIssue("include/sites.yaml", 12, "sites[3].regex", "bad")
    assert str(issue) == "include/sites.yaml:12: sites[3].regex: bad"


def test_site_for_url_derives_a_name_and_applies_overrides():
    site = site_for_url(
        "https://WWW.Example.com:8443/x?y", regex="ok", timeout="500ms", verify_tls=False
    )
    assert (site.name, site.regex, site.timeout, site.verify_tls) == (
        "www-example-com",
        "ok",
        0.5,
        False,
    )
    assert site.schedule == timedelta(minutes=5) and site.line == 0
    assert site_for_url("http://[::1]:8080/").name == "1"
    assert site_for_url("tcp://db.example.com:5432").name == "db-example-com"
    assert site_for_url("dns://9.9.9.9/shop.example.com?type=MX").name == "shop-example-com"


def test_an_internationalised_host_validates_and_names_the_site_by_its_idna_form():
    site = site_for_url("https://Bücher.example/straße?q=ü")
    assert (site.name, site.url) == ("xn--bcher-kva-example", "https://Bücher.example/straße?q=ü")
    loaded = load_text("sites:\n  - name: books\n    url: https://bücher.example/\n")
    assert loaded.issues == [] and loaded.sites[0].url == "https://bücher.example/"


@settings(derandomize=True, deadline=None, max_examples=300)
@given(
    st.sampled_from(["http://", "https://", "http://[", "https://[::1", ""]),
    st.text(alphabet=st.characters(max_codepoint=0x2FFFF), max_size=20),
    st.sampled_from(["", "/", ":80/", ":99999", "]:8/", "@x/"]),
)
def test_site_for_url_raises_nothing_but_config_error(scheme, host, tail):
    try:
        site = site_for_url(scheme + host + tail)
    except ConfigError as exc:
        assert exc.issues and all(issue.message for issue in exc.issues)
    else:
        assert site.name.isascii() and site.url == scheme + host + tail


def test_site_for_url_reports_an_unparsable_url_instead_of_raising():
    with pytest.raises(ConfigError) as caught:
        site_for_url("http://[::1")
    assert [str(issue) for issue in caught.value.issues] == [
        "<command line>:0: url: invalid URL 'http://[::1': invalid IPv6 URL"
    ]


def test_site_for_url_reports_every_problem():
    with pytest.raises(ConfigError) as caught:
        site_for_url("ftp://x", regex="a(", timeout="fast", retrys=3)
    assert [str(issue) for issue in caught.value.issues] == [
        "<command line>:0: url: invalid URL 'ftp://x': scheme must be http, https, tcp, tls or dns",
        "<command line>:0: regex: invalid regex at position 2: missing )",
        "<command line>:0: timeout: invalid duration 'fast': expected a duration like '30s', "
        "'5m', '1h30m' or '500ms'",
        "<command line>:0: retrys: unknown key 'retrys' (did you mean 'retries'?)",
    ]
    with pytest.raises(ConfigError, match="a body needs method POST"):
        site_for_url("https://a.test/", body="x")


def test_site_for_url_refuses_a_key_the_urls_kind_does_not_take():
    with pytest.raises(ConfigError) as caught:
        site_for_url("dns:///example.org", verify_tls=False, regex="x")
    assert [str(issue) for issue in caught.value.issues] == [
        "<command line>:0: regex: regex is for an http(s) check; this is a dns:// check",
        "<command line>:0: verify_tls: verify_tls is for an http(s) check, a flow (steps) or a"
        " tls:// check; this is a dns:// check",
    ]
    assert site_for_url("tls://example.org:465", verify_tls=False).verify_tls is False
    assert site_for_url("tcp://example.org:25", regex=None).regex is None  # None: not given


def test_site_for_url_applies_every_rule_between_keys():
    with pytest.raises(ConfigError, match="quorum: "):
        site_for_url("https://a.test/", locations=["eu", "us"], quorum=3)
    with pytest.raises(ConfigError, match="timeout: 1m is longer than the schedule's interval"):
        site_for_url("https://a.test/", schedule="30s", timeout="1m")


def test_compile_pattern_is_cached_and_names_the_position():
    assert compile_pattern(r"\d+") is compile_pattern(r"\d+")
    with pytest.raises(ValueError, match=r"^invalid regex at position 5: missing \)$"):
        compile_pattern("abc(d")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "5", "5 m", "1.5s", "m", "30m1h", "5s5s", "-5s", "366d"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_check_cron_normalises_whitespace_and_rejects_six_fields():
    assert check_cron(" 0   9 * *  1-5 ") == "0 9 * * 1-5"
    with pytest.raises(ValueError, match="expected 5 fields"):
        check_cron("0 0 9 * * 1-5")


@pytest.mark.parametrize(
    "text", ["0 0 29 2 *", "0 0 30 2 mon", "0 0 30 2 0-7", "0 0 31 4,5 *", "0 0 30/1 1 *"]
)
def test_a_rare_cron_that_fires_passes(text):
    assert check_cron(text) == text


@pytest.mark.parametrize("text", ["0 0 30 2 *", "0 0 31 2,4,6,9,11 *", "0 0 30/1 2 *"])
def test_a_cron_that_never_fires_is_refused(text):
    with pytest.raises(ValueError, match=r"never fires: none of its months has a day 3[01]$"):
        check_cron(text)


def test_never_fires_agrees_with_croniter_which_airflow_schedules_with():
    croniter = pytest.importorskip("croniter")
    from datetime import datetime

    days = ["*", "29", "30", "31", "30-31", "29/2", "1,31", "28-31/3", "31/5"]
    months = ["*", "2", "feb", "4,6", "2,4,6,9,11", "1-3", "4-6/2", "11/1"]
    weekdays = ["*", "mon", "0-7", "*/2"]
    for day, month, weekday in itertools.product(days, months, weekdays):
        text = f"0 0 {day} {month} {weekday}"
        try:
            check_cron(text)
            accepted = True
        except ValueError:
            accepted = False
        try:
            croniter.croniter(text, datetime(2026, 5, 1)).get_next(datetime)
            fires = True
        except croniter.CroniterBadDateError:
            fires = False
        assert accepted == fires, text
