"""The text of ``include/sites.reference.yaml``, generated from the key declarations.

    python -m sitewatch.config.reference > include/sites.reference.yaml

The reference is a valid sites file that documents every key: its rules (``Key.doc``), its default
(``Key.default``, shown as written in a sites file) and an example value (``Key.example``). The
file is committed so people can read it without running anything; a unit test keeps it equal to
``render()``, so editing a key in ``keys`` means regenerating it.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from sitewatch.config.key_checks import DNS, HTTP, KINDS, TCP
from sitewatch.config.keys import KEYS, KIND_LIMITED, Key, kinds_text
from sitewatch.config.status_pages import COMPONENT_KEYS, PAGE_KEYS

_WIDTH = 100
_HEAD = """\
# sitewatch sites file, format v1: every key, its default and its rules.
# This file validates (sitewatch validate include/sites.reference.yaml); its sites are disabled.
# Generated from include/sitewatch/config/keys.py by `python -m sitewatch.config.reference`.
#
# Top level: `defaults` (optional), `sites` (required) and `status_pages` (optional, at the end).
# Any other key is an error.
# YAML notes: only `true` / `false` are booleans; `yes`, `no`, `on`, `off` are read as text, so
# `enabled: yes` is an error. Quote strings that look like numbers. Duplicate keys are errors.
# Anchors, aliases and merge keys (`<<: *base`) work; `defaults` is usually simpler.
# Durations: integers with units d, h, m, s, ms, largest first: 30s, 5m, 1h30m, 500ms.

# Any site key except `name`, `url` and `steps`. Each applies, under the site's own keys, to
# every site whose kind of check takes it: a default for an http(s) check only (headers,
# follow_redirects...) is not applied to tcp://, tls:// or dns:// sites, nor send to http(s)
# ones, while a site setting a key its kind does not take is an error. A bad default is reported
# once (as defaults.<key>) and ignored; one that no site's kind takes is a warning.
defaults:
  owner: sitewatch

sites:
"""
TCP_KEYS = tuple(k for k, kinds in KIND_LIMITED.items() if HTTP not in kinds and TCP in kinds)
"""The keys shown in reference-tcp: those a TCP check takes and the first entry, https, may not."""
DNS_KEYS = tuple(k for k, kinds in KIND_LIMITED.items() if HTTP not in kinds and DNS in kinds)
"""The keys shown in reference-dns, likewise."""
_TAIL = """
  # The smallest valid entry: everything else takes its default.
  - name: reference-minimal
    url: https://example.com/
    enabled: false
"""


def render() -> str:
    """The whole reference file: the fixed head, one entry showing every key, a minimal entry."""
    lines = []
    for index, key in enumerate(KEYS.values()):
        first = "  - # " if index == 0 else "    # "  # the first comment opens the list item
        lines += textwrap.wrap(
            _documentation(key),
            _WIDTH,
            initial_indent=first,
            subsequent_indent="    # ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        if key.name in TCP_KEYS:  # an https site may not set it: shown in reference-tcp
            lines.append(f"    # {key.name}: (tcp:// and tls:// only; see reference-tcp below)")
        elif key.name in DNS_KEYS:
            lines.append(f"    # {key.name}: (dns:// only; see reference-dns below)")
        elif key.name == "steps":  # instead of url: shown in reference-flow
            lines.append("    # steps: (instead of url; see reference-flow below)")
        elif "\n" in key.example:
            lines.append(f"    {key.name}:")
            lines.append(textwrap.indent(key.example, "      ").rstrip("\n"))
        else:
            lines.append(f"    {key.name}: {key.example}")
    return _HEAD + "\n".join(lines) + "\n" + _TAIL + _tcp() + _flow() + _status_pages()


def _tcp() -> str:
    """Entries showing a TCP and a DNS check, with the keys only they take."""
    lines = [
        "",
        "  # A TCP check: connect to host:port (tls:// also shakes hands, verified, with SNI),",
        "  # send a line and search the reply. No HTTP key (regex, headers, expect...) applies.",
        "  - name: reference-tcp",
        "    url: tcp://cache.example.com:6379",
        *(f"    {name}: {KEYS[name].example}" for name in TCP_KEYS),
        "    enabled: false",
        "",
        "  # A DNS check: ask a resolver (its IP address; dns:///name asks the system's) for a",
        "  # name and record type (A, AAAA, CNAME, MX, TXT, NS, SRV, PTR, SOA, CAA; default A).",
        "  - name: reference-dns",
        "    url: dns://192.0.2.53/www.example.com?type=A",
        *(f"    {name}: {{{KEYS[name].example.strip()}}}" for name in DNS_KEYS),
        "    enabled: false",
    ]
    return "\n".join(lines) + "\n"


def _flow() -> str:
    """An entry showing a flow: log in, create, read and clean up, with values between steps."""
    lines = [
        "",
        "  # A flow: steps instead of url, run in order within one timeout; up when every step",
        "  # passed. ${login.token} is the value step login extracted as token.",
        "  - name: reference-flow",
        "    timeout: 15s",
        "    steps:",
        textwrap.indent(KEYS["steps"].example, "      ").rstrip("\n"),
        "    enabled: false",
    ]
    return "\n".join(lines) + "\n"


def _status_pages() -> str:
    """The ``status_pages`` section: one page showing every page key, then every component key
    in comments (the example's components show them in use)."""
    lines = [
        "",
        "# Public status pages, published as static files (docs/status-page.md).",
        "status_pages:",
    ]
    for index, key in enumerate(PAGE_KEYS.values()):
        lines += _wrapped(_documentation(key), "  - # " if index == 0 else "    # ")
        if key.name == "components":
            lines.append("    # Each component:")
            for part in COMPONENT_KEYS.values():
                lines += _wrapped(f"{part.name}: {_documentation(part)}", "    #   ")
        if "\n" in key.example:
            lines.append(f"    {key.name}:")
            lines.append(textwrap.indent(key.example, "      ").rstrip("\n"))
        else:
            lines.append(f"    {key.name}: {key.example}")
    return "\n".join(lines) + "\n"


def _wrapped(text: str, first: str) -> list[str]:
    return textwrap.wrap(
        text,
        _WIDTH,
        initial_indent=first,
        subsequent_indent="    # " if first.startswith("  - ") else first.replace("-", " "),
        break_long_words=False,
        break_on_hyphens=False,
    )


def _documentation(key: Key) -> str:
    """``Default 5m. <doc>`` or ``Required. <doc>``, with ``For a dns:// check only.`` before the
    doc of a key that not every kind of check takes (``Key.kinds``; page keys leave them all)."""
    head = "Required" if key.required else f"Default {_shown(key.default)}"
    only = f" For {kinds_text(key.kinds)} only." if key.kinds != KINDS else ""
    return f"{head}.{only} {key.doc}"


def _shown(value: Any) -> str:
    """A default as a sites file writes it: ``none``, ``true``, ``[]``, ``5m``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value)  # JSON is YAML flow style
    return str(value)


if __name__ == "__main__":
    print(render(), end="")
