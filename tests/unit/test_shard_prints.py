"""What the DAG processor compares to parse again only the shard files a change of the sites file
touched (sitewatch.airflow.factory.shard_prints; the processor's side is in
tests/unit/test_processor_preload.py)."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from sitewatch.airflow.factory import SHARDS, shard_file, shard_prints, site_dags, site_shard
from sitewatch.config.loader import load_sites
from sitewatch.config.site import Site
from tests.builders import sites_file

REFERENCE = Path(__file__).resolve().parents[2] / "include" / "sites.reference.yaml"


@pytest.mark.parametrize(
    ("name", "shard"),
    [("sites.py", 0), ("sites_1.py", 1), (f"sites_{SHARDS - 1}.py", SHARDS - 1)],
)
def test_each_shard_file_is_known_by_its_name(name, shard):
    assert shard_file(name) == shard


@pytest.mark.parametrize(
    "name", ["drain.py", f"sites_{SHARDS}.py", "sites_0.py", "sites_01.py", "sites_.py", "a.py"]
)
def test_any_other_file_is_no_shard(name):
    assert shard_file(name) is None


def test_every_key_of_a_site_but_its_line_is_in_the_print():
    assert [f.name for f in dataclasses.fields(Site) if not f.repr] == []
    site = load_sites(REFERENCE).sites[0]
    text = repr(dataclasses.replace(site, line=0))
    assert all(f"{f.name}=" in text for f in dataclasses.fields(Site))


def test_two_reads_of_the_same_file_give_the_same_prints():
    """No print may hold what differs between two loads (an object's address): the DAG processor
    would parse every shard at every change."""
    first, second = load_sites(REFERENCE), load_sites(REFERENCE)
    assert first.sites and first.sites is not second.sites
    assert shard_prints(first) == shard_prints(second)


def test_an_edit_of_one_site_changes_its_shard_print_only(tmp_path):
    names = [f"site-{n}" for n in range(60)]
    path = tmp_path / "sites.yaml"
    text = sites_file(names, "https://example.test/")
    path.write_text(text)
    before = shard_prints(load_sites(path))
    path.write_text(text.replace("name: site-7\n", "name: site-7\n    timeout: 3s\n"))
    edited = load_sites(path)
    assert edited.issues == [] and edited.by_name["site-7"].timeout == 3
    after = shard_prints(edited)
    changed = [shard for shard in range(SHARDS) if before[shard] != after[shard]]
    assert changed == [site_shard("site-7")]
    path.write_text(text.replace("name: site-7\n", "name: site-7\n    enabled: false\n"))
    assert [s for s in range(SHARDS) if shard_prints(load_sites(path))[s] != before[s]] == changed


def test_the_start_spread_is_in_every_print(tmp_path, monkeypatch):
    """More enabled sites than the start rate spread every site's first run: every DAG changes."""
    path = tmp_path / "sites.yaml"
    path.write_text(sites_file([f"site-{n}" for n in range(30)], "https://example.test/"))
    before = shard_prints(load_sites(path))
    monkeypatch.setenv("SITEWATCH_START_RATE", "10")
    after = shard_prints(load_sites(path))
    assert all(b != a for b, a in zip(before, after, strict=True))


def test_equal_prints_build_equal_dags(tmp_path):
    """The sites of the reference file (every key), enabled, then in reverse order (every site's
    line changes): the same prints, and every shard's DAGs serialize as before, which is what
    Airflow stores."""
    from airflow.serialization.serialized_objects import DagSerialization

    data = yaml.safe_load(REFERENCE.read_text())
    for site in data["sites"]:
        site["enabled"] = True
    files = []
    for name in ("sites.yaml", "reordered.yaml"):
        files.append(tmp_path / name)
        files[-1].write_text(yaml.safe_dump(data, sort_keys=False))
        data["sites"].reverse()
    original, moved = (load_sites(path) for path in files)
    assert original.issues == [] and len(original.sites) > 1
    assert [s.line for s in moved.sites] != [s.line for s in reversed(original.sites)]
    assert shard_prints(original) == shard_prints(moved)

    def stored(sites) -> dict:
        dags = site_dags(dataclasses.replace(sites, path=str(REFERENCE)))
        return {dag_id: DagSerialization.to_dict(dag) for dag_id, dag in dags.items()}

    dags = stored(original)
    assert len(dags) == len(original.sites)
    assert dags == stored(moved)
