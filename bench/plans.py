"""EXPLAIN (ANALYZE, BUFFERS) of a benchmark's queries: what ``metrics.py`` and ``status_page.py``
print beside their timings, and whether a plan reads the raw checks."""

from __future__ import annotations

import json
import re


def raw_tables(conn) -> set[str]:
    """``site_checks`` and its partitions: a plan reading one of them reads the raw checks."""
    partitions = conn.execute(
        "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'site_checks'::regclass"
    )
    return {"site_checks"} | {row[0] for row in partitions}


def explain(conn, statement: str, params, raw: set[str]) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS) of ``statement`` with ``params``, run twice (for the text and as
    JSON) in ``conn``'s transaction, after whatever settings it made: the execution and planning
    ms, shared buffers hit and read, the relations the plan reads, whether one of ``raw``
    (``raw_tables``) is among them, and the text, an array parameter's names as first,…,last."""
    lines = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).fetchall()
    tree = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params)
    tree = tree.fetchone()[0]
    tree = (json.loads(tree) if isinstance(tree, str) else tree)[0]
    relations = sorted(relation_names(tree["Plan"]))
    return {
        "execution_ms": tree["Execution Time"],
        "planning_ms": tree["Planning Time"],
        "shared_hit": tree["Plan"].get("Shared Hit Blocks", 0),
        "shared_read": tree["Plan"].get("Shared Read Blocks", 0),
        "relations": relations,
        "reads_site_checks": bool(raw & set(relations)),
        "text": re.sub(
            r"'\{([^,}]*),[^}]*,([^,}]*)\}'", r"'{\1,…,\2}'", "\n".join(row[0] for row in lines)
        ),
    }


def relation_names(node: dict) -> set[str]:
    """The relations a plan node (EXPLAIN's JSON) and the nodes below it read."""
    found = {node["Relation Name"]} if "Relation Name" in node else set()
    for child in node.get("Plans", ()):
        found |= relation_names(child)
    return found
