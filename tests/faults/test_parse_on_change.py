"""A change of the sites file on a real DAG processor with sitewatch's defaults (a day between
parses of an unchanged file, sitewatch.airflow.processor_preload): the change is parsed at once,
and only the shard files whose sites it touched are parsed again."""

from __future__ import annotations

import time
import uuid
from urllib.parse import quote

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


def unsettled_runs(stack: Stack, tag: str) -> list:
    """The site DAGs of ``tag`` with a run not ended, or marked at their run limit: a parse
    that counted a run just before it ended leaves that mark, which ``held_back`` clears by
    parsing the DAG's file again (at most 30 s later)."""
    with stack.metadata() as db:
        return db.execute(
            "SELECT dag_id FROM dag WHERE dag_id LIKE %s AND (exceeds_max_non_backfill OR EXISTS"
            " (SELECT FROM dag_run r WHERE r.dag_id = dag.dag_id"
            "  AND r.state IN ('queued', 'running')))",
            (f"site_%{tag}",),
        ).fetchall()


def processor_log(stack: Stack) -> str:
    """The end of the DAG processor's own log (its parse table shows each file's last parse)."""
    logs = sorted((stack.state / "airflow").glob("*dag-processor*.log")) or sorted(
        (stack.state / "airflow").glob("*.log")
    )
    texts = {p.name: p.read_text(errors="replace") for p in logs}
    said = [line for text in texts.values() for line in text.splitlines()
            if "held_back" in line or "reparse_when_sites_change" in line]  # fmt: skip
    tails = "\n".join(f"--- {name}\n{text[-4000:]}" for name, text in list(texts.items())[:2])
    return "\n".join(said[-20:]) + "\n" + tails


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
    # Each DAG's first run (DAILY's last tick) ends while the shards may be parsed: wait until
    # the runs are over and no parse is left to do for them.
    deadline = time.monotonic() + 120
    while left := unsettled_runs(stack, tag):
        assert time.monotonic() < deadline, f"runs not over after 120 s: {left}"
        time.sleep(2)
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
    assert again == {name for name in names if site_shard(name) == site_shard(edited)}, (
        f"{sorted(again)} parsed again; " + processor_log(stack)
    )


def runs(stack: Stack, dag_id: str) -> list[tuple]:
    """(run_id, state) of each run of ``dag_id``, by logical date."""
    with stack.metadata() as db:
        return db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = %s ORDER BY logical_date",
            (dag_id,),
        ).fetchall()


@pytest.mark.timeout(400)
def test_a_site_dag_left_at_its_run_limit_is_parsed_and_runs_again(
    private_airflow: Stack,  # noqa: F811
    web,
):
    """A run that ends where the scheduler does not see it (its DAG paused, "mark as failed" in
    the UI) leaves Airflow's ``exceeds_max_non_backfill`` as it was: set, when that run was at
    the DAG's limit (a site with locations allows two or three), and Airflow starts no run of
    the DAG until its file's next parse, a day away. The DAG processor finds it within 30 s and
    parses the file again."""
    stack, name = private_airflow, f"held-{uuid.uuid4().hex[:6]}"
    dag_id = site_dag_id(name)
    stack.set_sites(sites_file([name], web.url, schedule="1m", retries=0))
    stack.wait_dags({dag_id})
    deadline = time.monotonic() + 180
    while not any(state == "success" for _, state in runs(stack, dag_id)):
        assert time.monotonic() < deadline, f"no run of {dag_id}: {runs(stack, dag_id)}"
        time.sleep(2)

    stack.pause(dag_id)
    for run_id, state in runs(stack, dag_id):
        if state in ("queued", "running"):  # the scheduler looks at no paused DAG's runs
            path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
            stack.api("PATCH", path, {"state": "failed"})
    ended = runs(stack, dag_id)
    assert not [r for r in ended if r[1] in ("queued", "running")], ended
    with stack.metadata() as db:  # what that run leaves when it was the last the limit allowed
        db.execute("UPDATE dag SET exceeds_max_non_backfill = true WHERE dag_id = %s", (dag_id,))
    stack.unpause(dag_id)

    deadline = time.monotonic() + 150
    while len(now := runs(stack, dag_id)) == len(ended):
        assert time.monotonic() < deadline, (
            f"no run of {dag_id} 150 s after it was unpaused: {now}; {stack.diagnose()}; "
            + processor_log(stack)
        )
        time.sleep(2)
    logs = (stack.state / "airflow").glob("*.log")
    assert any("held_back: parsing again" in p.read_text(errors="replace") for p in logs)
