"""Checks of plain values and the wording of messages, shared by every site key's check.

This is the bottom of ``sitewatch.config`` (above only ``yamltree`` and ``schedule``): the key
checks in ``checks`` and ``notify`` and the document walk in ``reader`` all import it, and it
imports none of them, so messages read the same whichever module raises them.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any

from sitewatch.config.schedule import DURATION_HINT, format_duration, parse_duration
from sitewatch.config.yamltree import Invalid

_KINDS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}


def describe(value: Any) -> str:
    """``integer 5``, ``string 'yes'``: a value and its YAML type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    kind = _KINDS.get(type(value), "mapping" if isinstance(value, dict) else type(value).__name__)
    text = repr(value)
    return f"{kind} {text[:60]}{'...' if len(text) > 60 else ''}"


def unknown_key(key: str, choices: Collection[str]) -> str:
    """``unknown key 'regx' (did you mean 'regex'?)``; lists ``choices`` when none is close."""
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "valid keys: " + ", ".join(choices)
    return f"unknown key {key!r} ({hint})"


def text(value: Any, limit: int, what: str = "a string") -> str:
    """``value`` if it is a string of at most ``limit`` characters; raises Invalid naming ``what``
    was expected otherwise."""
    if not isinstance(value, str):
        raise Invalid(f"expected {what}, got {describe(value)}")
    if len(value) > limit:
        raise Invalid(f"too long: {len(value)} characters (at most {limit})")
    return value


# Characters that reorder the text around them on screen (Unicode's bidi formatting controls).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unsafe_character(value: str) -> str | None:
    """The message for the first character of ``value`` that free text must not hold, or None.

    Control characters (NUL ends a PostgreSQL text, ESC drives the terminal a log is read in),
    bidi controls (they reorder a line, so what is shown is not what is stored) and lone
    surrogates (no character at all).
    """
    for position, char in enumerate(value):
        kind = unicodedata.category(char)
        if kind in ("Cc", "Cs") or char in _BIDI:
            what = "a bidi control" if char in _BIDI else "a control character"
            return f"contains U+{ord(char):04X} ({what}) at position {position + 1}; remove it"
    return None


def free_text(value: Any, limit: int, what: str = "a string") -> str:
    """``text`` for what people write and others read (reasons, owners, tags, names of senders):
    also raises Invalid for a character ``unsafe_character`` refuses. The same rule for every
    such key, in the sites file and in the trigger forms."""
    checked_text = text(value, limit, what)
    if problem := unsafe_character(checked_text):
        raise Invalid(problem)
    return checked_text


def integer(value: Any, low: int, high: int) -> int:
    """``value`` if it is an integer (not a boolean) in ``low..high``; raises Invalid otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"expected an integer, got {describe(value)}")
    if not low <= value <= high:
        raise Invalid(f"must be between {low} and {high}, got {value}")
    return value


def duration(value: Any, low: timedelta, high: timedelta) -> timedelta:
    """A duration text (``"30s"``) in ``low..high``; raises Invalid, suggesting a unit for a bare
    number."""
    if not isinstance(value, str):
        hint = f" (add a unit: '{value}s')" if isinstance(value, int | float) else ""
        raise Invalid(f"expected {DURATION_HINT}, got {describe(value)}{hint}")
    try:
        result = parse_duration(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if result < low:
        raise Invalid(f"must be at least {format_duration(low)}, got {value!r}")
    if result > high:
        raise Invalid(f"must be at most {format_duration(high)}, got {value!r}")
    return result


def only_keys(entry: dict, keys: tuple[str, ...]) -> None:
    """Raise Invalid (``item`` the key) for the first key of ``entry`` not in ``keys``, naming the
    nearest valid one."""
    for key in entry:
        if key not in keys:
            raise Invalid(unknown_key(key, keys), item=key)


def checked(check: Callable[[Any], Any], entry: dict, key: str, default: Any = None) -> Any:
    """``check(entry[key])``, ``default`` when ``key`` is absent; an Invalid is raised with
    ``key`` in front of its ``item``, so it names the nested field (``slo.burn[0].factor``)."""
    if key not in entry:
        return default
    try:
        return check(entry[key])
    except Invalid as exc:
        exc.item = (key, *item_path(exc.item))
        raise


def entries(
    value: Any, check: Callable[[Any], Any], limit: int, noun: str, kinds: str = ""
) -> tuple:
    """A list key's entries, each ``check(entry)``: ``null`` or ``[]`` is none, else at most
    ``limit`` of them, as a tuple. ``noun`` names them in messages (``maintenance windows``),
    ``kinds`` may add what they may be (`` (webhook, email)``).

    Raises Invalid: "expected a list of <noun><kinds>, got ...", "too many <noun>: N (at most
    <limit>)", or an entry's own Invalid with its index put in front of ``item``, so it names the
    nested field (``maintenance[0].timezone``).
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Invalid(f"expected a list of {noun}{kinds}, got {describe(value)}")
    if len(value) > limit:
        raise Invalid(f"too many {noun}: {len(value)} (at most {limit})")
    found = []
    for index, entry in enumerate(value):
        try:
            found.append(check(entry))
        except Invalid as exc:
            exc.item = (index, *item_path(exc.item))
            raise
    return tuple(found)


def distinct(names: tuple[str, ...], noun: str = "") -> tuple[str, ...]:
    """``names`` (a list key's checked entries) when none is there twice.

    Raises Invalid "<noun>'x' is listed twice (first as item 0)" on the second place of the first
    repeat (``noun`` with its trailing space, ``"location "``, or none).
    """
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first:
            message = f"{noun}{name!r} is listed twice (first as item {first[name]})"
            raise Invalid(message, item=index)
        first[name] = index
    return names


def item_path(item: Any) -> tuple:
    """An Invalid's ``item`` as a path tuple: None -> (), ``"x"`` -> ``("x",)``."""
    return () if item is None else item if isinstance(item, tuple) else (item,)


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Let ``null`` unset an optional key (e.g. a site turning off a regex from ``defaults``)."""
    return lambda value: None if value is None else check(value)
