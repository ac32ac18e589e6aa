"""YAML reading for the sites file: composed nodes, so every value keeps its line number.

PyYAML's constructor throws line numbers away and silently keeps the last of two duplicate keys, so
the config loader composes the node tree and converts it here. The conversion is bounded: aliases
are expanded at most ``MAX_NODES`` times in total (a "billion laughs" file stops there) and nesting
stops at ``MAX_DEPTH`` (which also catches an alias that contains itself). Before any of that,
``compose`` refuses a document nested more than ``MAX_NESTING`` levels deep: libyaml's composer
recurses in C, so ``"[" * 100000`` would overflow the C stack and kill the process.

Scalars follow PyYAML's YAML 1.1 resolution with one change: only ``true`` and ``false`` are
booleans. ``yes``, ``no``, ``on`` and ``off`` stay strings, as in YAML 1.2, so ``enabled: yes`` is
reported instead of quietly meaning true, and a tag or header value ``no`` keeps its text.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from contextlib import contextmanager

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_NODES = 1_000_000
MAX_DEPTH = 20
# Safe for the C composer on any thread stack (it needs a few hundred bytes per level; an 8 MiB
# stack overflows near 30,000), far beyond any sites file.
MAX_NESTING = 2000
MAX_NUMBER = 100  # characters of an int or float; Python will not even print a 4301-digit int

_constructor = SafeConstructor()
_resolver = yaml.resolver.Resolver()
_T = "tag:yaml.org,2002:"
_STR, _SEQ, _MAP = _T + "str", _T + "seq", _T + "map"
_PLAIN = "sitewatch:plain"  # an unquoted, untagged scalar whose type is decided on first use
_RESOLVED_FIRST_CHARS = frozenset(_resolver.yaml_implicit_resolvers)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _LazyTypes:
    """Loader mixin: leave plain scalars unresolved during composition.

    PyYAML resolves every plain scalar, keys included, with a chain of regular expressions while
    composing; resolving only the values actually read, in ``scalar``, halves that work.
    """

    def resolve(self, kind, value, implicit):
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is SequenceNode else _MAP


class _FastLoader(_LazyTypes, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    pass


class _PyLoader(_LazyTypes, yaml.SafeLoader):
    pass


Problem = Callable[[str | None, str, int], None]  # (key or None, message, line)


class TooComplex(Exception):
    """The document expands to more than MAX_NODES nodes; nothing in it can be trusted."""


class Invalid(Exception):
    """A value is wrong.

    ``item`` names the list index or mapping key inside the value that is wrong (it becomes part of
    the field, ``tags[1]``); ``line`` overrides the line of the value being checked. ``also``
    holds more problems found in the same value (every bad header of a site, not the first).
    """

    def __init__(
        self,
        message: str,
        line: int | None = None,
        item: int | str | None = None,
        also: tuple[Invalid, ...] = (),
    ):
        super().__init__(message)
        self.message, self.line, self.item, self.also = message, line, item, also

    def all(self) -> tuple[Invalid, ...]:
        """This problem and those in ``also``."""
        return (self, *self.also)


def line_of(node: Node) -> int:
    """1-based line where ``node`` starts."""
    return node.start_mark.line + 1


@contextmanager
def no_gc():
    """Pause the cyclic garbage collector while building a large tree.

    Composing 10,000 entries allocates ~10^5 node objects, which triggers repeated full collections
    that cost several times the parse itself; none of these objects are cyclic garbage.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compose(text: str) -> Node | None:
    """Compose one YAML document; raise ``yaml.MarkedYAMLError`` with a readable message.

    The C parser is used for speed. When it fails the text is parsed again with the pure-Python
    parser, whose messages name the offending character and read the same on every install.
    """
    if _nesting_bound(text) > MAX_NESTING:
        _check_nesting(text)
    try:
        return yaml.compose(text, Loader=_FastLoader)
    except yaml.YAMLError:
        pass
    return yaml.compose(text, Loader=_PyLoader)


def _nesting_bound(text: str) -> int:
    """A cheap upper bound on how deeply ``text`` nests collections.

    Flow collections need a ``[`` or ``{`` per level. A block collection starts only after the
    leading spaces and indicators (``-``, ``?``, ``:``) of a line, and every two levels of block
    nesting need at least one more column, so twice the widest such prefix bounds them.
    """
    flow = text.count("[") + text.count("{")
    lines = text.splitlines()  # every YAML line break, and a few more
    widest = max(map(len, lines), default=0)
    if flow + 2 * widest + 2 > MAX_NESTING:  # long lines: measure their prefixes instead
        widest = max((len(line) - len(line.lstrip(" \t-?:")) for line in lines), default=0)
    return flow + 2 * widest + 2


def _check_nesting(text: str) -> None:
    """Raise ``yaml.MarkedYAMLError`` at the collection nested deeper than MAX_NESTING.

    The C parser's events come from an explicit stack, not recursion, and reading them stops at
    the culprit (libyaml's scanner is quadratic in nesting, so reading on would take minutes).
    Trade-off: a file this check cannot rule out cheaply (thousands of brackets) is parsed once
    more, about half the cost of composing it.
    """
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_FastLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    problem = f"collections nested more than {MAX_NESTING} levels deep"
                    raise yaml.composer.ComposerError(None, None, problem, event.start_mark)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.composer.ComposerError:
        raise
    except yaml.YAMLError:
        return  # a syntax error before the limit: composing stops there too, and reports it


class Walker:
    """Turns nodes into plain Python values while counting every node visited (aliases included)."""

    def __init__(self) -> None:
        self.visited = 0

    def count(self, nodes: int = 1) -> None:
        self.visited += nodes
        if self.visited > MAX_NODES:
            raise TooComplex(f"document too complex: more than {MAX_NODES} nodes after aliases")

    def pairs(
        self, node: MappingNode, problem: Problem, depth: int = 0
    ) -> list[tuple[str, Node, Node]]:
        """The (key, key node, value node) pairs of a mapping, merge keys (``<<``) applied.

        Keys are their source text. A pair that cannot be used is skipped after calling
        ``problem(key or None, message, line)``: a key given twice (the later value is dropped),
        a key that is not a scalar, a ``<<`` whose value is not mappings, merges nested deeper
        than MAX_DEPTH (a mapping that merges itself). Keys brought in by ``<<`` are overridden
        silently by the mapping's own keys, as YAML specifies.
        """
        own: dict[str, tuple[str, Node, Node]] = {}
        merged: dict[str, tuple[str, Node, Node]] = {}
        for key_node, value_node in node.value:
            self.count()
            if not isinstance(key_node, ScalarNode):
                problem(None, "keys must be plain strings", line_of(key_node))
                continue
            key = key_node.value
            if key == "<<" and key_node.tag == _PLAIN:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                if not all(isinstance(source, MappingNode) for source in sources):
                    problem(
                        key, "'<<' must merge a mapping or a list of mappings", line_of(key_node)
                    )
                    continue
                if depth >= MAX_DEPTH:
                    message = "'<<' merges nested too deeply (a mapping that merges itself?)"
                    problem(key, message, line_of(key_node))
                    continue
                for source in sources:
                    for item in self.pairs(source, problem, depth + 1):
                        merged.setdefault(item[0], item)
            elif key in own:
                first = line_of(own[key][1])
                problem(key, f"duplicate key {key!r} (first at line {first})", line_of(key_node))
            else:
                own[key] = (key, key_node, value_node)
        return [*(v for k, v in merged.items() if k not in own), *own.values()]

    def value(self, node: Node, depth: int = 0):
        """Convert ``node`` to dict / list / str / int / float / bool / None.

        Raises Invalid (with the line of the culprit) for duplicate keys, unsupported tags and
        nesting deeper than MAX_DEPTH; raises TooComplex past the node budget.
        """
        self.count()
        if depth > MAX_DEPTH:
            raise Invalid("value nested too deeply (an alias that contains itself?)", line_of(node))
        if isinstance(node, ScalarNode):
            return scalar(node)
        if isinstance(node, SequenceNode):
            return [self.value(item, depth + 1) for item in node.value]

        def problem(key: str | None, message: str, line: int) -> None:
            raise Invalid(message, line)

        return {k: self.value(v, depth + 1) for k, _, v in self.pairs(node, problem)}


def scalar(node: ScalarNode):
    """Convert one scalar node (YAML 1.1 types, but only true/false are booleans)."""
    tag = node.tag
    if tag == _PLAIN:
        if node.value and node.value[0] not in _RESOLVED_FIRST_CHARS:
            return node.value  # fast path: URLs, names, words
        tag = _resolver.resolve(ScalarNode, node.value, (True, False))
    if tag == _STR:
        return _text(node)
    if tag == _T + "null":
        return None
    if tag == _T + "bool":
        word = node.value.lower()
        return word == "true" if word in ("true", "false") else _text(node)
    if tag in (_T + "int", _T + "float"):
        return _number(node, tag)
    if tag in (_T + "timestamp", _T + "value", _T + "yaml") and node.tag == _PLAIN:
        return node.value  # e.g. a date: only ever text here; the field's own check judges it
    raise Invalid(f"unsupported YAML tag {tag.replace(_T, '!!')!r}", line_of(node))


def _text(node: ScalarNode) -> str:
    """A string scalar, refused if it holds a lone surrogate.

    Only a ``\\uD800``-style escape in double quotes makes one (UTF-8 text cannot): it is no
    character, so printing, storing or sending the value would raise far from this file.
    """
    text = node.value
    if not text.isascii() and (half := _SURROGATE.search(text)):
        message = f"contains {half.group()!r}, half of a UTF-16 surrogate pair, not a character"
        raise Invalid(message, line_of(node))
    return text


def _number(node: ScalarNode, tag: str) -> int | float | str:
    """An ``!!int`` or ``!!float`` scalar, implicit or tagged.

    PyYAML's converters raise a bare ValueError or IndexError for text that only claims to be a
    number (``!!int abc``, ``!!float ""``, a plain ``0b_``), and Python refuses to convert or print
    integers past 4300 digits; each would escape the loader without a line. A plain scalar that
    does not convert stays text, so the key's own check names what it expected; a tagged one is
    reported here. ``MAX_NUMBER`` characters is far beyond any number a sites file needs.
    """
    if ":" in node.value:
        return node.value  # "1:30" is base-60 in YAML 1.1 (90); nobody means that in a sites file
    if len(node.value) > MAX_NUMBER:
        raise Invalid(
            f"too long for a number: {len(node.value)} characters (at most {MAX_NUMBER})",
            line_of(node),
        )
    convert = (
        _constructor.construct_yaml_int if tag == _T + "int" else _constructor.construct_yaml_float
    )
    try:
        return convert(node)
    except (ValueError, IndexError):
        if node.tag == _PLAIN:
            return node.value
        raise Invalid(
            f"not a valid {tag.replace(_T, '!!')}: {node.value!r}", line_of(node)
        ) from None
