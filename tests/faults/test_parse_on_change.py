"""A change of the sites file on a real DAG processor with sitewatch's defaults (a day between
parses of an unchanged file, sitewatch.airflow.processor_preload): the change is parsed at once,
and only the shard files whose sites it touched are parsed again."""

from __future__ import annotations

import time
import uuid

import pytest

from sitewatch.airflow.factory import SHARDS, site_shard
from sitewatch.names import site_dag_id
from tests.builders import DAILY, sites_file
from tests.faults.stack import Stack, private_airflow, private_stack  # noqa: F401


def parsed_at(stack: Stack, tag: str) -> dict:
    """``{dag_id: last_parsed_time}`` of the site DAGs of ``tag``."""
    with stack.metadata() as db:
        rows = db.execute(
            "SELECT dag_id, last_parsed_time FROM dag WHERE dag_id LIKE %s AND is_stale = false",
            (f"site_%{tag}",),
        ).fetchall()
    return dict(rows)


def processor_log(stack: Stack) -> str:
    """The end of the DAG processor's own log (its parse table shows each file's last parse)."""
    logs = sorted((stack.state / "airflow").glob("*dag-processor*.log")) or sorted(
        (stack.state / "airflow").glob("*.log")
    )
    return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in logs[:2])


def settled(stack: Stack, tag: str, quiet: float = 6, timeout: float = 120) -> dict:
    """``parsed_at`` once no DAG of ``tag`` was parsed for ``quiet`` seconds (a shard file whose
    parse began within a second of the change is parsed once more)."""
    deadline, last = time.monotonic() + timeout, parsed_at(stack, tag)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = parsed_at(stack, tag)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the DAGs of {tag} kept being parsed for {timeout:.0f} s")


def doc(stack: Stack, name: str) -> str:
    return stack.api("GET", f"/api/v2/dags/{site_dag_id(name)}/details")["doc_md"] or ""


@pytest.mark.timeout(400)
def test_an_edit_parses_its_shard_at_once_and_no_other(private_airflow: Stack, web):  # noqa: F811
    stack, tag = private_airflow, uuid.uuid4().hex[:6]
    names = [f"s{n}-{tag}" for n in range(3 * SHARDS)]
    assert len({site_shard(name) for name in names}) > 2
    text = sites_file(names, web.url, schedule=DAILY, retries=0)
    stack.set_sites(text)
    stack.wait_dags({site_dag_id(name) for name in names})
    before = settled(stack, tag)
    assert set(before) == {site_dag_id(name) for name in names}

    edited = names[5]
    stack.set_sites(text.replace(f"name: {edited}\n", f"name: {edited}\n    timeout: 3s\n"))
    deadline = time.monotonic() + 60
    while "| timeout | `3s` |" not in (text_now := doc(stack, edited)):
        assert time.monotonic() < deadline, (
            f"the edit was not parsed within 60 s: {text_now!r}; last parses "
            f"{sorted(parsed_at(stack, tag).items())[:6]}; {stack.diagnose()}; "
            + processor_log(stack)
        )
        time.sleep(1)
    time.sleep(10)  # longer than the 5 s between parses the suite used to set

    after = parsed_at(stack, tag)
    again = {name for name in names if after[site_dag_id(name)] != before[site_dag_id(name)]}
    assert again == {name for name in names if site_shard(name) == site_shard(edited)}
