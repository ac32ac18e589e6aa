"""Every hostile target at once, probed by one worker process: each probe ends within its deadline
with a classified error, and the worker's memory stays bounded.

``tests/unit/test_probe.py`` pins single behaviours in-process; this suite is the combined view:
all the targets of ``hostile.TARGETS`` (drips, silence, endless headers, 10 GiB gzip bombs, bombs
and floods in redirects, endless redirects, malformed Locations, charsets that break decoders,
broken TLS, invalid status lines, and flows: 10 MiB values to extract, a token redirected to
another origin, values that double at every step, answers that are not JSON) probed one after
another by a real worker process, whose peak RSS is compared with the same worker doing one
normal probe.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import report
import trustme

from sitewatch.probe.http import ERROR_KINDS
from tests import hostile

WORKER = Path(__file__).with_name("probe_worker.py")
MARGIN = 0.5  # seconds a probe may take past its timeout
MEMORY_SLACK = 64 * 2**20  # hostile peak RSS may exceed the baseline by this much, no more


def _work(probes: list[dict], ca_bundle: str) -> dict:
    job = json.dumps({"ca_bundle": ca_bundle, "probes": probes, "environ": hostile.SECRET_ENV})
    done = subprocess.run(
        [sys.executable, str(WORKER)], input=job, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every hostile server, run the worker over all of them and over one normal server."""
    ca = trustme.CA()
    ca_path = str(tmp_path_factory.mktemp("pki") / "ca.pem")
    ca.cert_pem.write_to_path(ca_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    servers = hostile.start_all(context)
    normal = hostile.HostileServer(hostile.well_behaved)
    try:
        probes = [
            {
                "name": t.name,
                "url": hostile.url_of(t, servers[t.name]),
                "timeout": hostile.TIMEOUT,
                "overrides": t.overrides,
                **({"steps": hostile.steps_of(t, servers)} if t.steps else {}),
            }
            for t in hostile.TARGETS
        ]
        hostile_run = _work(probes, ca_path)
        url = f"http://127.0.0.1:{normal.port}/"
        baseline = _work([{"name": "normal", "url": url, "timeout": hostile.TIMEOUT}], ca_path)
    finally:
        for server in [*servers.values(), normal]:
            server.stop()
    recorded = [r.decode("latin-1") for r in servers[hostile.RECORDER].behaviour.requests]
    results = {r["name"]: r for r in hostile_run["results"]}
    report.record(
        "hostile_targets",
        {
            "timeout_s": hostile.TIMEOUT_SECONDS,
            "targets": {
                name: {
                    "error": r["error"],
                    "error_detail": r["error_detail"],
                    "elapsed_s": round(r["elapsed"], 3),
                }
                for name, r in results.items()
            },
            "baseline_peak_rss_mib": round(baseline["peak_rss_bytes"] / 2**20, 1),
            "hostile_peak_rss_mib": round(hostile_run["peak_rss_bytes"] / 2**20, 1),
            "memory_bound_mib": round((baseline["peak_rss_bytes"] + MEMORY_SLACK) / 2**20, 1),
        },
    )
    return {"results": results, "baseline": baseline, "hostile": hostile_run, "recorded": recorded}


@pytest.mark.parametrize("target", hostile.TARGETS, ids=lambda t: t.name)
def test_hostile_target_ends_in_time_with_a_classified_error(runs, target):
    seen = runs["results"][target.name]
    assert seen["elapsed"] <= hostile.TIMEOUT_SECONDS + MARGIN, seen
    assert seen["up"] is False and seen["error"] in ERROR_KINDS, seen
    assert (seen["error"], target.detail in (seen["error_detail"] or "")) == (target.kind, True), (
        seen
    )


def test_no_secret_reaches_another_origin_or_the_record(runs):
    # the harvesting target answers 418 if a secret header followed its redirect to localhost
    assert runs["results"]["redirect_harvesting_secrets"]["status_code"] == 503
    # a flow's token (and secret) sent to a server that redirects to the recording server: its
    # log holds what arrived there, in none of the forms a request may write them
    assert runs["results"]["flow_token_redirected_to_another_origin"]["status_code"] == 503
    assert [request.split(" ", 2)[:2] for request in runs["recorded"]] == [["GET", "/collect"]]
    for request in runs["recorded"]:
        for value in (hostile.TOKEN, hostile.SECRET):
            assert value[:7] not in hostile.written_forms(request), request
    for name, seen in runs["results"].items():
        # the record: the observation's fields, its steps and the message stored
        for value in (hostile.SECRET, hostile.TOKEN):
            assert value not in json.dumps(seen), name
        # nor in the forms a site may write them in: percent-encoded, JSON-escaped
        for value in seen.values():
            if isinstance(value, str):
                assert hostile.SECRET[:5] not in hostile.written_forms(value), (name, value)
                assert hostile.TOKEN[:7] not in hostile.written_forms(value), (name, value)
    assert runs["results"]["echo_of_secret_encoded"]["final_url"].endswith("/login/***")


def test_bombs_stop_at_the_body_cap(runs):
    for name in (
        "gzip_bomb_10gib",
        "nested_gzip_bomb_10gib",
        "redirect_gzip_bomb_10gib_unfollowed",
        "redirect_huge_content_length_unfollowed",
    ):
        assert runs["results"][name]["body_bytes"] == 5 * 2**20


def test_hostile_redirects_keep_their_status(runs):
    """A redirect's hostile body or Location never costs the status of the response seen."""
    statuses = {name: runs["results"][name]["status_code"] for name in runs["results"]}
    assert statuses["redirect_gzip_bomb_10gib"] == statuses["redirect_huge_content_length"] == 503
    for name in ("malformed_location", "malformed_location_unfollowed"):
        assert statuses[name] == 302
    for name in (
        "redirect_gzip_bomb_10gib_unfollowed",
        "redirect_huge_content_length_unfollowed",
    ):
        assert statuses[name] == 302


def test_worker_memory_stays_bounded(runs):
    baseline = runs["baseline"]["peak_rss_bytes"]
    peak = runs["hostile"]["peak_rss_bytes"]
    assert runs["baseline"]["results"][0]["up"] is True
    assert peak < baseline + MEMORY_SLACK, f"peak {peak >> 20} MiB, baseline {baseline >> 20} MiB"


def test_the_bombs_are_what_they_claim():
    """The bomb streams are valid gzip: a small one decodes exactly; the big ones' sizes add up."""
    small = b"".join(hostile.gzip_repeated(b"head", b"\0" * 1000, 50, b"tail"))
    assert gzip.decompress(small) == b"head" + b"\0" * 50_000 + b"tail"
    bomb = hostile.gzip_bomb()
    units = hostile.BOMB_DECODED // (4 * 2**20)
    # header, the empty head's block, then the units: stop before the trailer's 10 GiB CRC pass
    wire = sum(len(piece) for piece in itertools.islice(bomb, 2 + units))
    assert wire < 12 * 10**6  # 10 GiB of zeros in about 10 MB
    inner = b"".join(itertools.islice(hostile.gzip_bomb(), 3))
    outer_head = b"".join(itertools.islice(hostile.nested_gzip_bomb(), 3))
    decoded_head = gzip.GzipFile(fileobj=io.BytesIO(outer_head)).read1(10**6)
    assert decoded_head.startswith(inner[:10])  # the outer layer wraps the inner bomb
