"""The ``depends_on`` site key: the sites whose outage explains a site's own (issue 17).

One entry's value is checked alone (``check_depends_on``: names, no repeats); what needs the
whole file is here too, for the reader to call once every entry is read: each name must be a site
of the file (``unknown_parents``) and no site may depend on itself through others
(``cycles``). A parent is any entry with that name, even one refused for another problem: its
own issue says what is wrong, and its children are not refused for it.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from sitewatch.config.key_checks import check_name
from sitewatch.config.values import distinct, entries

MAX_PARENTS = 20
MAX_HINTS = 20  # close-match hints per file: each compares the name with every site's
MAX_SHOWN = 16  # sites named in one cycle message
_LARGE_CYCLE = 16  # a cycle among more sites is reported as the group, not as one loop per site

Graph = Mapping[str, tuple[str, ...]]
"""Site name -> the names of its parents."""


def check_depends_on(value: Any) -> tuple[str, ...]:
    """``null`` or a list of up to ``MAX_PARENTS`` distinct site names. Raises Invalid naming
    the item."""
    return distinct(entries(value, check_name, MAX_PARENTS, "site names"))


def self_problem(name: str, parents: tuple[str, ...]) -> tuple[int, str] | None:
    """(index, message) when ``name`` lists itself as a parent."""
    if name not in parents:
        return None
    return parents.index(name), "a site cannot depend on itself"


class Hints:
    """Messages for names that are no site, with a close-match hint for the first ``MAX_HINTS``
    (a file of 10,000 sites with a typo in every entry stays fast)."""

    def __init__(self, names: Collection[str]):
        self.names, self.left = names, MAX_HINTS

    def unknown(self, parents: tuple[str, ...]) -> Iterator[tuple[int, str]]:
        """(index, message) for each of ``parents`` that is not one of the names."""
        for index, parent in enumerate(parents):
            if parent in self.names:
                continue
            message = f"no site named {parent!r} in this file"
            if self.left > 0:
                self.left -= 1
                close = difflib.get_close_matches(parent, self.names, n=1, cutoff=0.6)
                message += f" (did you mean {close[0]!r}?)" if close else ""
            yield index, message


def cycles(graph: Graph) -> dict[str, tuple[int | None, str]]:
    """For every site on a dependency cycle: (index of the parent that leads round, or None) and
    the message, like ``dependency cycle: a -> b -> c -> a`` (the shortest loop through that
    site). Among more than ``_LARGE_CYCLE`` sites that all reach each other, each is told it is
    one of them instead (finding a loop per site would cost their number squared). Linear in the
    size of the graph otherwise; parents missing from ``graph`` are ignored."""
    found: dict[str, tuple[int | None, str]] = {}
    for group in _strongly_connected(graph):
        if len(group) == 1:
            continue  # a site alone is on no cycle: depending on itself is refused earlier
        if len(group) > _LARGE_CYCLE:
            shown = ", ".join(sorted(group)[:MAX_SHOWN]) + (
                ", ..." if len(group) > MAX_SHOWN else ""
            )
            for name in group:
                found[name] = None, f"dependency cycle among {len(group)} sites ({shown})"
            continue
        members = set(group)
        for name in group:
            loop = _shortest_loop(graph, name, members)
            found[name] = graph[name].index(loop[1]), "dependency cycle: " + " -> ".join(loop)
    return found


def _shortest_loop(graph: Graph, start: str, members: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself within ``members`` (one exists)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for name in frontier:
            for parent in graph[name]:
                if parent == start:
                    path = [start]
                    while name != start:
                        path.append(name)
                        name = came_from[name]
                    return [start, *reversed(path[1:]), start]
                if parent in members and parent not in came_from:
                    came_from[parent] = name
                    following.append(parent)
        frontier = following
    raise AssertionError(f"{start} is on no loop within {sorted(members)}")


def _strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components, iterative (a 10,000-site chain would overflow
    Python's recursion). Edges to names missing from ``graph`` are skipped."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            name, parents = work[-1]
            for parent in parents:
                if parent not in graph:
                    continue
                if parent not in index:
                    index[parent] = low[parent] = len(index)
                    stack.append(parent)
                    on_stack.add(parent)
                    work.append((parent, iter(graph[parent])))
                    break
                if parent in on_stack:
                    low[name] = min(low[name], index[parent])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[name])
                if low[name] == index[name]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == name:
                            break
                    groups.append(group)
    return groups
