"""Hostile sites files: whatever a file holds, ``sitewatch validate`` reports it, never crashes.

Hypothesis writes random documents (random shapes, keys near the valid ones, values of every type,
random unicode and tabs, and raw-text mutations of a valid file); YAML tricks (a billion laughs,
a 50 MB scalar, nesting 100,000 deep, binary and UTF-16 files; flows whose steps use each other's
values in a cycle or multiply one) must each give their exact error.
Every issue must read ``file:line: field: message`` on one line.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import report
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sitewatch.config.keys import FIELDS
from sitewatch.config.loader import load_sites, load_text

PATH = "sites.yaml"
ISSUE = re.compile(r"(?P<file>[^\n]+?):(?P<line>\d+): (?P<field>[^\n]+?): (?P<message>[^\n]+)")
SETTINGS = settings(
    derandomize=True,  # the same examples on every run: CI is repeatable
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
VALID = """\
defaults:
  timeout: 5s
  tags: [prod]
sites:
  - name: home
    url: https://example.com/
    regex: 'Welcome'
    expect_status: [200, '300-399']
  - name: api
    url: http://api.example.com/health
    method: POST
    body: '{}'
    headers: {Accept: application/json}
"""
TRIED = {"documents": 0, "mutations": 0, "raw_values": 0, "cli_files": 0}


def check(text: str) -> list:
    """Validate ``text``: it must not raise, and every issue must be well formed."""
    result = load_text(text, PATH)
    for issue in result.issues:
        line = str(issue)
        match = ISSUE.fullmatch(line)
        assert match, f"malformed issue {line!r}"
        assert match["file"] == PATH and issue.line >= 1, line
        assert issue.field and issue.message.strip(), line
    assert not (result.sites and not isinstance(result.sites, list))
    return result.issues


# --- random documents --------------------------------------------------------------------------

KEYS = sorted(FIELDS)


def _near(key: str) -> st.SearchStrategy[str]:
    """Typos of ``key``: a letter dropped, doubled or swapped, case changed, a space added."""
    edits = [key.upper(), key.title(), key + " ", " " + key, key.replace("_", "-")]
    edits += [key[:i] + key[i + 1 :] for i in range(len(key))]
    edits += [key[:i] + key[i] + key[i:] for i in range(len(key))]
    edits += [key[:i] + key[i + 1] + key[i] + key[i + 2 :] for i in range(len(key) - 1)]
    return st.sampled_from(edits)


key_text = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(KEYS).flatmap(_near),
    st.text(max_size=12),
    st.sampled_from(["<<", "sites", "defaults", "", "~", "null", "true", "1", "-", "?"]),
)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet="\t\n\r \\\"'#&*!%@`|>-:?[]{},", max_size=12),
    st.sampled_from(
        [
            "5m",
            "10s",
            "0s",
            "-1s",
            "1e9h",
            "*/5 * * * *",
            "* * *",
            "200-399",
            "399-200",
            "http://",
            "https://x",
            "ftp://x",
            "http://u:p@x/",
            "a(",
            "(a+)+$",
            "GET",
            "get",
            "yes",
            "no",
            "on",
            "0x1F",
            "1_000",
            "1:30",
            "2026-01-01",
            ".inf",
            ".nan",
        ]
    ),
)
value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(key_text, inner, max_size=4)
    ),
    max_leaves=12,
)
entry = st.dictionaries(key_text, value, max_size=8)
document = st.one_of(
    value,
    st.fixed_dictionaries(
        {"sites": st.one_of(st.lists(entry, max_size=4), value)},
        optional={"defaults": st.one_of(entry, value), "extra": value},
    ),
    st.dictionaries(key_text, value, max_size=4),
)


@SETTINGS
@given(document, st.booleans(), st.booleans())
def test_random_documents_are_validated_never_crash(doc, flow, unicode):
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=unicode, sort_keys=False)
    TRIED["documents"] += 1
    check(text)


# Values spliced into the "api" entry as raw text: YAML tags over any text, numbers of every size,
# double-quoted escapes (lone surrogates among them). Whatever they hold, "home" keeps its site.
TAGS = ["!!int", "!!float", "!!bool", "!!null", "!!str", "!!timestamp", "!!binary", "!!set"]
TAGS += ["!!omap", "!!pairs", "!!seq", "!!map", "!!merge", "!!value", "!!python/int", "!", "!x"]
number_text = st.one_of(
    st.text(alphabet="0123456789abcdefxob_.+-eE:~", max_size=14),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    st.sampled_from(["0x" + "f" * 5000, "0b" + "1" * 20000, "1_" * 3000, ".inf", "-.NaN", "0o17"]),
)
raw_value = st.one_of(
    st.tuples(st.sampled_from(TAGS), number_text).map(lambda t: f"{t[0]} {t[1]}"),
    st.tuples(st.sampled_from(TAGS), number_text).map(lambda t: f'{t[0]} "{t[1]}"'),
    number_text,
    st.text(alphabet=st.characters(max_codepoint=0x10FFFF), max_size=8).map(
        lambda text: '"' + "".join(f"\\U{ord(c):08x}" for c in text) + '"'
    ),
    st.sampled_from(['"\\ud800"', '"a\\udcff"', '"\\u202e"', "[!!int x, 1]", "{a: !!float x}"]),
)


@SETTINGS
@given(st.sampled_from(KEYS + ["x-key", "<<"]), raw_value, st.booleans())
def test_any_value_is_an_issue_and_the_other_sites_stay(key, raw, in_defaults):
    if in_defaults:
        text = VALID.replace("defaults:\n", f"defaults:\n  {key}: {raw}\n", 1)
    else:
        text = VALID + f"    {key}: {raw}\n"
    TRIED["raw_values"] += 1
    issues = check(text)
    # A value that is YAML syntax of its own ("-", ":") breaks the whole document, not one
    # entry: test_yaml_tricks_get_their_exact_errors covers those; here they are skipped.
    assume(not any(i.message.startswith("invalid YAML") for i in issues))
    if not in_defaults:  # a bad default applies to no site; a bad entry hides only itself
        names = [site.name for site in load_text(text, PATH).sites]
        assert "home" in names, (text, issues)


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(VALID)),
            st.integers(min_value=0, max_value=8),
            st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
            | st.sampled_from(["\t", "  ", "\n", ":", "- ", "&a ", "*a", "<<: *a", "[", "{", "'"])
            | st.sampled_from(["\ud800", "!!int x", "!!float ''", "9" * 4301, "\u202e"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_mutated_valid_file_is_validated_never_crash(edits):
    text = VALID
    for at, cut, insert in edits:
        at = min(at, len(text))
        text = text[:at] + insert + text[at + cut :]
    TRIED["mutations"] += 1
    check(text)


def test_random_files_through_the_cli(tmp_path):
    """A handful through ``python -m sitewatch.cli validate``: exit 0 or 1, no traceback."""
    cases = {
        "valid.yaml": VALID.encode(),
        "typo.yaml": VALID.replace("regex", "regx").encode(),
        "tabs.yaml": VALID.replace("  - name: api", "\t- name: api").encode(),
        "nested.yaml": b"[" * 100_000,
        "binary.yaml": bytes(range(256)) * 4,
        "nul.yaml": b"sites:\n  - name: a\x00\n",
        "utf16.yaml": VALID.encode("utf-16"),
        "empty.yaml": b"",
        "tagged.yaml": VALID.replace("5s", "!!float ''").encode(),
        "huge_int.yaml": VALID.replace("5s", "1" * 4301).encode(),
        "surrogate_key.yaml": VALID.replace("regex:", '"\\ud800":').encode(),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        done = subprocess.run(
            [sys.executable, "-m", "sitewatch.cli", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        TRIED["cli_files"] += 1
        assert done.returncode == (0 if name == "valid.yaml" else 1), (name, done)
        assert "Traceback" not in done.stderr, (name, done.stderr)
        for line in done.stdout.splitlines()[: 1 if done.returncode == 0 else None]:
            if done.returncode:
                match = ISSUE.fullmatch(line)
                assert match and match["file"] == str(path), (name, line)


# --- YAML tricks, each with its exact message -------------------------------------------------


def _laughs() -> str:
    text = "x-lol:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text + "defaults:\n  tags: *i\nsites: []\n"


def _flow(*steps: str) -> str:
    """A sites file of one flow whose steps are ``steps``, each one line of YAML (a mapping)."""
    return "sites:\n  - name: api\n    steps:\n" + "".join(f"      - {step}\n" for step in steps)


def _using(name: str, uses: str) -> str:
    """A step ``name`` whose URL uses the value ``uses`` (``${uses}``) and that extracts ``v``."""
    return f"{{name: {name}, url: 'http://a/?v=${{{uses}}}', extract: {{v: {{header: X}}}}}}"


# steps 0..19 in a ring, each using the next one's value (the last the first's, which is fine)
RING = [_using(f"s{i}", f"s{(i + 1) % 20}.v") for i in range(20)]
FLOW_TRICKS = {
    "steps using each other's values in a cycle of three": (
        _flow(_using("a", "c.v"), _using("b", "a.v"), _using("c", "b.v")),
        [
            "sites.yaml:4: sites[0].steps[0].url: ${c.v}: used before step c extracts it"
            " (steps run in the order listed)"
        ],
    ),
    "a ring of 20 steps, each using the next one's value": (
        _flow(*RING),
        [
            f"sites.yaml:{4 + i}: sites[0].steps[{i}].url: ${{s{i + 1}.v}}: used before step"
            f" s{i + 1} extracts it (steps run in the order listed)"
            for i in range(19)
        ],
    ),
    "a step that is an alias of the one before, using its own value": (
        "sites:\n  - name: api\n    steps:\n      - &a " + _using("a", "a.v") + "\n      - *a\n",
        [
            "sites.yaml:4: sites[0].steps[1].name: duplicate step name 'a' (first at steps[0])",
            "sites.yaml:4: sites[0].steps[0].url: ${a.v}: step a uses its own value, which exists"
            " only after its request",
            "sites.yaml:4: sites[0].steps[1].url: ${a.v}: step a uses its own value, which exists"
            " only after its request",
        ],
    ),
    # a value may be 8192 characters: 8,000 uses would send 65 MB, 170,000 (a 1 MiB body) 1.4 GB
    "a step whose body uses a value 8,000 times": (
        _flow(
            "{name: a, url: 'http://a/', extract: {v: {json: $.v}}}",
            "{name: b, method: POST, url: 'http://a/', body: '" + "${a.v}" * 8000 + "'}",
        ),
        [
            "sites.yaml:5: sites[0].steps[1].body: step b uses extracted values more than 64"
            " times (each may be 8192 characters long)"
        ],
    ),
    "a step whose 100 headers use a value 1,000 times": (
        _flow(
            "{name: a, url: 'http://a/', extract: {v: {json: $.v}}}",
            "{name: b, url: 'http://a/', headers: {"
            + ", ".join(f"X-{i}: '" + "${a.v}" * 10 + "'" for i in range(100))
            + "}}",
        ),
        [
            "sites.yaml:5: sites[0].steps[1].headers.X-6: step b uses extracted values more than"
            " 64 times (each may be 8192 characters long)"
        ],
    ),
}

TRICKS = {
    "billion laughs": (
        _laughs(),
        ["sites.yaml:1: <file>: document too complex: more than 1000000 nodes after aliases"],
    ),
    "duplicate keys": (
        "sites:\n  - name: a\n    url: http://a/\n    url: http://b/\n",
        ["sites.yaml:4: sites[0].url: duplicate key 'url' (first at line 3)"],
    ),
    "tab indent": (
        "sites:\n  - name: a\n\turl: http://a/\n",
        [
            "sites.yaml:3: <file>: invalid YAML: while scanning for the next token, found "
            "character '\\t' that cannot start any token (tabs cannot indent YAML; use spaces)"
        ],
    ),
    "nested flow sequences": (
        "[" * 100_000,
        ["sites.yaml:1: <file>: invalid YAML: collections nested more than 2000 levels deep"],
    ),
    "nested block sequences": (
        "sites:\n  - " + "- " * 100_000 + "x\n",
        ["sites.yaml:2: <file>: invalid YAML: collections nested more than 2000 levels deep"],
    ),
    "a mapping that merges itself": (
        "sites:\n  - &a {name: a, url: 'http://a/', <<: *a}\n",
        ["sites.yaml:2: sites[0]: '<<' merges nested too deeply (a mapping that merges itself?)"],
    ),
    "5 MB regex": (
        "sites:\n  - name: a\n    url: http://a/\n    regex: " + "x" * 5_000_000 + "\n",
        ["sites.yaml:4: sites[0].regex: too long: 5000000 characters (at most 1000)"],
    ),
    "NUL character": (
        "sites:\n  - name: a\x00\n",
        [
            "sites.yaml:2: <file>: invalid YAML: unacceptable character #x0000: "
            "special characters are not allowed"
        ],
    ),
    "empty text": (
        "",
        ["sites.yaml:1: <file>: empty document: expected a mapping with a 'sites' list"],
    ),
    "4,301-digit integer": (
        "sites:\n  - name: a\n    url: http://a/\n    retries: " + "1" * 4301 + "\n",
        ["sites.yaml:4: sites[0].retries: too long for a number: 4301 characters (at most 100)"],
    ),
    "!!int abc in a name": (
        "sites:\n  - name: !!int abc\n    url: http://a/\n",
        ["sites.yaml:2: sites[0].name: not a valid !!int: 'abc'"],
    ),
    "!!float '' as defaults": (
        "defaults: !!float ''\nsites: []\n",
        [
            "sites.yaml:1: defaults: expected a mapping of site keys, got an unreadable value"
            " (not a valid !!float: '')"
        ],
    ),
    "a huge hex integer as the sites list": (
        "sites: 0x" + "f" * 4000 + "\n",
        [
            "sites.yaml:1: sites: expected a list of sites, got an unreadable value"
            " (too long for a number: 4002 characters (at most 100))"
        ],
    ),
    "!!int abc as the document": (
        "!!int abc\n",
        [
            "sites.yaml:1: <file>: expected a mapping with 'sites', got an unreadable value"
            " (not a valid !!int: 'abc')"
        ],
    ),
    "a lone surrogate in the text": (
        "sites:\n  - name: a\ud800\n",
        ["sites.yaml:2: <file>: not text: '\\ud800' is no character"],
    ),
    "a header that would send Airflow's database URL to the site": (
        "sites:\n  - name: a\n    url: http://a/\n    headers:\n"
        '      X-Leak: "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}"\n',
        [
            "sites.yaml:5: sites[0].headers.X-Leak: header values may not name "
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: Airflow's own settings hold its database "
            "password and keys; use a variable that starts with SITEWATCH_SECRET_"
        ],
    ),
    "a right-to-left override in a URL": (
        'sites:\n  - name: a\n    url: "http://a/\u202egnp.exe"\n',
        [
            "sites.yaml:3: sites[0].url: invalid URL 'http://a/\\u202egnp.exe': contains "
            "invisible format character U+202E (RIGHT-TO-LEFT OVERRIDE)"
        ],
    ),
    "a cron that never fires": (
        "sites:\n  - name: a\n    url: http://a/\n    schedule: 0 0 30 2 *\n",
        [
            "sites.yaml:4: sites[0].schedule: invalid cron expression '0 0 30 2 *': "
            "never fires: none of its months has a day 30"
        ],
    ),
    "a 5,000-digit duration": (
        "sites:\n  - name: a\n    url: http://a/\n    timeout: " + "9" * 5000 + "s\n",
        ["sites.yaml:4: sites[0].timeout: too long for a duration: 5001 characters (at most 40)"],
    ),
    # flows whose steps loop through their values: rejected, each reference on its line
    **FLOW_TRICKS,
}


def test_yaml_tricks_get_their_exact_errors():
    for name, (text, expected) in TRICKS.items():
        assert [str(issue) for issue in check(text)] == expected, name


FILE_TRICKS = {
    "50 MB scalar": (
        b"sites:\n  - name: a\n    url: http://a/\n    body: " + b"x" * 50_000_000 + b"\n",
        "{path}:0: <file>: file is larger than 32 MiB",
    ),
    "binary": (bytes(range(256)), "{path}:2: <file>: not UTF-8 text: cannot decode byte 0x80"),
    "UTF-16 with BOM": (
        VALID.encode("utf-16"),
        "{path}:1: <file>: not UTF-8 text: the file is UTF-16; save it as UTF-8",
    ),
    "empty": (b"", "{path}:1: <file>: empty document: expected a mapping with a 'sites' list"),
    "UTF-8 with BOM": (b"\xef\xbb\xbf" + VALID.encode(), None),
}


def test_file_tricks_get_their_exact_errors(tmp_path):
    for name, (data, expected) in FILE_TRICKS.items():
        path = tmp_path / "sites.yaml"
        path.write_bytes(data)
        issues = [str(issue) for issue in load_sites(path).issues]
        assert issues == ([expected.format(path=path)] if expected else []), name


# --- size ---------------------------------------------------------------------------------------


def test_ten_thousand_sites_validate(tmp_path):
    lines = ["defaults:", "  schedule: 5m", "  timeout: 10s", "sites:"]
    for i in range(10_000):
        lines += [
            f"  - name: site-{i:05d}",
            f"    url: https://s{i}.example.com/health?probe={i}",
            "    regex: 'status: (ok|healthy)'",
            "    max_response_ms: 5000",
        ]
    path = tmp_path / "sites.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    result = load_sites(path)
    seconds = time.perf_counter() - started
    assert (len(result.sites), result.issues) == (10_000, [])
    report.record(
        "hostile_sites_files",
        {
            "random_documents_tried": TRIED["documents"],
            "mutated_files_tried": TRIED["mutations"],
            "raw_values_tried": TRIED["raw_values"],
            "cli_files_tried": TRIED["cli_files"],
            "yaml_tricks": sorted(TRICKS) + sorted(FILE_TRICKS),
            "sites_10k_validate_s": round(seconds, 3),
            "sites_10k_file_bytes": path.stat().st_size,
        },
    )
