"""A DNS check's configuration: its URL (``dns://[resolver[:port]]/name?type=A``, RFC 4501's form)
and the ``answers`` it expects, with the one spelling of an answer both sides compare.

The probe (``sitewatch.probe.dns``) asks the resolver for the name and type of the URL and compares
``canonical`` forms: what the resolver sent against what the sites file expects.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sitewatch.config.values import describe, text
from sitewatch.config.yamltree import Invalid

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "PTR", "SOA", "CAA")
MAX_ANSWERS, MAX_ANSWER = 32, 512
_NAMES = frozenset({"CNAME", "NS", "PTR"})  # answers that are one domain name


@dataclass(frozen=True, slots=True)
class Answers:
    """What a DNS check expects: ``values`` (canonical) all present (``match`` all) or at least
    one of them (``any``). No ``Answers`` (the key's default) expects some answer of the type."""

    values: tuple[str, ...]
    match: str = "all"


@dataclass(frozen=True, slots=True)
class Query:
    """A DNS check's URL, taken apart: the resolver (None: the system's), the name, the type."""

    resolver: str | None
    port: int
    name: str
    type: str


def check_dns_url(url: str, parts) -> None:
    """Raise Invalid unless ``url`` (already split into ``parts``) is a DNS check's URL."""
    if not url.startswith("dns://"):
        raise Invalid(f"invalid URL {url!r}: write the scheme dns:// in lower case")
    if parts.netloc:
        try:
            ipaddress.ip_address(parts.hostname or "")
        except ValueError:
            raise Invalid(
                f"invalid URL {url!r}: the resolver must be an IP address (dns://9.9.9.9/name),"
                " or left out for the system's (dns:///name)"
            ) from None
        if parts.port == 0:
            raise Invalid(f"invalid URL {url!r}: resolver port out of range 1-65535")
    name = parts.path.lstrip("/")
    if not name or "/" in name or ".." in name or len(name) > 253:
        raise Invalid(f"invalid URL {url!r}: expected dns://[resolver]/name?type=A")
    if parts.fragment:
        raise Invalid(f"invalid URL {url!r}: a DNS check has no fragment")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if set(query) - {"type"}:
        raise Invalid(f"invalid URL {url!r}: the only query parameter is type")
    kind = query.get("type", "A")
    if kind not in RECORD_TYPES:
        raise Invalid(
            f"invalid URL {url!r}: record type {kind!r} is not one of {', '.join(RECORD_TYPES)}"
        )


def query_of(url: str) -> Query:
    """The parts of a validated DNS check's URL."""
    parts = urlsplit(url)
    kind = dict(parse_qsl(parts.query)).get("type", "A")
    return Query(parts.hostname, parts.port or 53, parts.path.lstrip("/"), kind)


def check_answers(value: Any) -> Answers | None:
    """``answers``: null (some answer), a list (all of them), or ``{all: [...]}`` / ``{any:
    [...]}``; each an answer as ``dig`` prints it (``10 mail.example.com.``)."""
    if value is None:
        return None
    match = "all"
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in ("all", "any"):
            raise Invalid(
                f"expected a list, or a mapping of all or any to a list, got {value!r:.80}"
            )
        match, value = next(iter(value.items()))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ANSWERS:
        raise Invalid(f"expected 1..{MAX_ANSWERS} answers, got {describe(value)}")
    answers = []
    for index, item in enumerate(value):
        try:
            answers.append(spelled(text(item, MAX_ANSWER)))
        except Invalid as exc:
            raise Invalid(exc.message, item=index) from None
    return Answers(tuple(answers), match)


def spelled(answer: str) -> str:
    """An expected answer as it is compared: whitespace collapsed, names without their final dot,
    an IP address in its compressed form; case is kept for TXT (``canonical`` folds the rest)."""
    words = answer.split()
    if len(words) == 1:
        try:
            return str(ipaddress.ip_address(words[0]))
        except ValueError:
            pass
    return " ".join(word.rstrip(".") if word != "." else word for word in words)


def canonical(kind: str, answer: str) -> str:
    """``answer`` (already ``spelled``) in the form compared for record type ``kind``: names are
    case-insensitive, a TXT record's text is not."""
    return answer if kind == "TXT" else answer.lower()


def answers_problem(values) -> str | None:
    """An IP address expected of an A or AAAA check is checked as one, of the right family."""
    answers: Answers | None = values.get("answers")
    url = values.get("url")
    if answers is None or url is None or not url.startswith("dns://"):
        return None
    kind = query_of(url).type
    if kind in ("A", "AAAA"):
        version = 4 if kind == "A" else 6
        for answer in answers.values:
            try:
                address = ipaddress.ip_address(answer)
            except ValueError:
                return f"{answer!r} is not an IP address, which an {kind} check answers"
            if address.version != version:
                return f"{answer!r} is not an IPv{version} address, which an {kind} check answers"
    if kind in _NAMES:
        for answer in answers.values:
            if " " in answer:
                return f"{answer!r} is not one domain name, which a {kind} check answers"
    return None
