"""Header values from the environment: ``Authorization: "Bearer ${SITEWATCH_SECRET_SHOP}"``.

Secrets never live in the sites file. A header value may name environment variables as
``${NAME}``; they are read when the check runs (on the worker), so the value is never parsed into
a DAG, shown on its page, or stored anywhere. ``$${`` writes a literal ``${``. Only variables
named ``SITEWATCH_SECRET_*`` may be read (``sitewatch.config.variables``): validation refuses
other names, and so does the expansion, for a ``Site`` built in code.

``expand_headers`` also returns ``Secrets``: which headers were expanded and with what values, so
the probe can keep them from another origin and out of what it records.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sitewatch.config.site import ConfigIssue, Site
from sitewatch.config.steps import references
from sitewatch.config.variables import REFERENCE, refusal
from sitewatch.errors import ConfigError

MASK = "***"
# As Airflow's [logging] min_length_masked_secret: shorter values are not worth the mangled text
# (masking "eu" would hit every URL with "eu" in it) and are guessable anyway.
MIN_MASKED = 5


@dataclass(frozen=True)
class Secrets:
    """What ``expand_headers`` put into a site's headers from the environment.

    headers: lower-cased names of the headers whose value came from a ``${NAME}``.
    values: the substituted values that ``redact`` masks (``MIN_MASKED`` characters or more).
    variables: for a flow, whose steps are expanded as they run (``sitewatch.probe.flow``): the
    value of each ``${NAME}`` its steps name. on_value: called with each value to be masked from
    then on (a flow's extracted values), as ``expand_headers`` called ``on_secret``.
    """

    headers: frozenset[str] = frozenset()
    values: tuple[str, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    on_value: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def adding(self, values: Iterable[str]) -> Secrets:
        """These secrets and ``values`` too (a flow's extracted values), each long enough to be
        masked (``MIN_MASKED``) passed to ``on_value``."""
        values = [value for value in values if len(value) >= MIN_MASKED]
        for value in values if self.on_value is not None else ():
            self.on_value(value)
        return dataclasses.replace(self, values=_longest_first({*self.values, *values}))

    def redact(self, text: str) -> str:
        """``text`` with each secret value, and each truncated copy of one, replaced by ``MASK``,
        in whatever form it was written (``_spelling``: URL-encoded, JSON-escaped, HTML-escaped).

        A truncated copy (details and URLs are cut to length) is the secret's first ``MIN_MASKED``
        characters or more. Trade-offs: a cut that keeps fewer than that leaves them visible; a
        transformed copy (base64, hashed) is not recognised.
        """
        for value in self.values:
            text = _mask(text, value)
        return text


NO_SECRETS = Secrets()


def _mask(text: str, value: str) -> str:
    head = _pattern("".join(_spelling(char) for char in value[:MIN_MASKED]))
    pieces: list[str] = []
    start = 0
    while (found := head.search(text, start)) is not None:
        end = found.end()
        for char in value[MIN_MASKED:]:
            more = _pattern(_spelling(char)).match(text, end)
            if more is None:
                break
            end = more.end()
        pieces += [text[start : found.start()], MASK]
        start = end
    return "".join(pieces) + text[start:] if pieces else text


# A backslash escape: each JSON or repr() layer around it doubles the backslash. Bounded (four
# layers) so that a run of backslashes costs linear time to search, not quadratic.
_ESCAPE = r"\\{1,16}"
_HTML_NAMES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}
_FORM_DECODED = {" ": r"\+", "+": " "}  # a query's space is "+"; form decoding reads "+" as " "


@functools.cache
def _spelling(char: str) -> str:
    """A regular expression for the ways one character of a secret can be written in text a site
    sends back: as itself; URL-encoded (``%2F`` in either case, again ``%252F`` for each layer,
    ``+`` for a space and a space for ``+`` as form decoding reads them); JSON- or
    JavaScript-escaped (``\\/``, ``\\u002f``, ``\\x2f``, with the backslash doubled by each
    further layer); as an HTML character reference (``&#47;``, ``&#x2f;``, ``&amp;``).

    Each alternative matches one character in one form, so a value written half in one form and
    half in another (``quote`` leaves ``/`` as is, ``quote_plus`` does not) is still found.
    """
    code = ord(char)
    raw = char.encode("utf-8", "surrogatepass")
    units = char.encode("utf-16-be", "surrogatepass")
    forms = [
        re.escape(char),
        "".join(f"%(?:25)*(?i:{byte:02x})" for byte in raw),
        "".join(f"{_ESCAPE}u(?i:{units[i : i + 2].hex()})" for i in range(0, len(units), 2)),
        f"&#(?:0*{code}|(?i:x0*{code:x}));",
    ]
    if code < 0x100:
        forms.append(f"{_ESCAPE}x(?i:{code:02x})")
    if char in "/\\\"'":
        forms.append(_ESCAPE + re.escape(char))
    if char in _HTML_NAMES:
        forms.append(f"&{_HTML_NAMES[char]};")
    if char in _FORM_DECODED:
        forms.append(_FORM_DECODED[char])
    return "(?:" + "|".join(forms) + ")"


@functools.lru_cache(maxsize=1024)
def _pattern(source: str) -> re.Pattern[str]:
    return re.compile(source)


def expand_headers(
    site: Site,
    environ: Mapping[str, str] | None = None,
    on_secret: Callable[[str], None] | None = None,
) -> tuple[Site, Secrets]:
    """Return ``site`` with every ``${NAME}`` in its header values replaced from ``environ``, and
    the ``Secrets`` that were substituted (``NO_SECRETS`` when there were none). A flow (a site
    with ``steps``) is returned unchanged: its steps are expanded as they run, from the
    ``Secrets``' ``variables``, and its extracted values masked through ``on_secret`` too.

    on_secret: called with each substituted value (the task passes Airflow's ``mask_secret`` so
    the value is redacted from task logs). Raises ConfigError naming the site, the header and
    every variable that is not set or may not be read (see ``variables.refusal``).
    """
    environ = os.environ if environ is None else environ
    if site.steps:
        return site, _flow_secrets(site, environ, on_secret)
    if not any("${" in value for value in site.headers.values()):
        return site, NO_SECRETS
    missing: list[ConfigIssue] = []
    names: set[str] = set()
    values: set[str] = set()
    headers = {}
    for name, value in site.headers.items():

        def substitute(match, header: str = name) -> str:
            if match.group(1) is None:
                return "${"
            var = match.group(1)
            problem = refusal(var) or (
                None if var in environ else f"environment variable {var} is not set"
            )
            if problem is not None:
                field = f"{site.name}.headers.{header}"
                missing.append(ConfigIssue("<environment>", site.line, field, problem))
                return ""
            if on_secret is not None:
                on_secret(environ[var])
            names.add(header.lower())
            values.add(environ[var])
            return environ[var]

        headers[name] = REFERENCE.sub(substitute, value)
    if missing:
        raise ConfigError(missing)
    secrets = Secrets(frozenset(names), _longest_first(values))
    return dataclasses.replace(site, headers=headers), secrets


def _longest_first(values: Iterable[str]) -> tuple[str, ...]:
    # Longest first: a value that contains a shorter one is masked whole, not in pieces.
    return tuple(sorted((v for v in values if len(v) >= MIN_MASKED), key=len, reverse=True))


def _flow_secrets(
    site: Site, environ: Mapping[str, str], on_secret: Callable[[str], None] | None
) -> Secrets:
    """The ``Secrets`` of a flow: every variable its steps name, read now (so a missing one fails
    the attempt before any request, as for headers); the steps are expanded as they run."""
    missing: list[ConfigIssue] = []
    variables: dict[str, str] = {}
    for step in site.steps:
        for where, text in step.texts():
            for name, value_name in references(text):
                if value_name is not None or name in variables:
                    continue
                problem = refusal(name) or (
                    None if name in environ else f"environment variable {name} is not set"
                )
                if problem is not None:
                    field_name = f"{site.name}.steps.{step.name}.{'.'.join(where)}"
                    missing.append(ConfigIssue("<environment>", site.line, field_name, problem))
                    continue
                variables[name] = environ[name]
                if on_secret is not None:
                    on_secret(environ[name])
    if missing:
        raise ConfigError(missing)
    return Secrets(
        values=_longest_first(variables.values()),
        variables=MappingProxyType(variables),
        on_value=on_secret,
    )
