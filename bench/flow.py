"""Flow overhead: a 3-step flow through sitewatch side by side with the same requests on a bare
``requests.Session``.

    python bench/flow.py [--runs 5] [--flows 600]

The flows' JSON API (``common.serve_api``: the socket loop of the probe benchmark's server, in its
own process, so that neither its CPU nor ``http.server``'s parsing is counted) answers at once. The
flow logs in (the password from a secret), reads the item with the token and checks its id, and
deletes it (``common.flow_site``). sitewatch's way is what a site DAG's attempt calls:
``expand_headers`` then ``probe`` (``sitewatch.probe.http``, which runs ``sitewatch.probe.flow``);
the baseline makes the same three requests on a new ``requests.Session`` and checks the same
things (status, the token, the id, the 204). Each flow opens its connection, as every attempt
does. Per run: a warm-up of each way (discarded), then ``--flows`` of each, the two ways
alternating and taking turns going first. Reported per flow: wall time (perf_counter around the
call) median and p95, CPU time (``time.process_time``), sitewatch's own ``response_time_ms``, and
the ratio sitewatch / bare of the median and of the p95 (issue 26's target: at most 1.1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(__file__))
from common import (  # noqa: E402
    API,
    API_ITEM,
    API_PASSWORD,
    flow_site,
    loadavg,
    machine,
    median,
    percentile,
    save,
    start_server,
)

from sitewatch.config.loader import load_text  # noqa: E402
from sitewatch.config.secrets import expand_headers  # noqa: E402
from sitewatch.probe.http import probe  # noqa: E402

WARMUP = 20  # flows of each way per run, not counted
SECRETS = {"SITEWATCH_SECRET_BENCH_PASSWORD": API_PASSWORD}
KEYS = ("sitewatch", "sitewatch_cpu", "sitewatch_response", "bare", "bare_cpu")


def sitewatch_flow(site) -> float:
    """One attempt as a site DAG makes it; its ``response_time_ms``. Raises if it was down."""
    expanded, secrets = expand_headers(site, SECRETS)
    obs = probe(expanded, secrets=secrets)
    if not obs.up:
        raise RuntimeError(f"flow failed: {obs.error} {obs.error_detail}")
    return obs.response_time_ms


def bare_flow(base: str) -> None:
    """The same three requests and checks on a bare ``requests.Session``."""
    item = f"{base}{API}/items/{API_ITEM}"
    with requests.Session() as session:
        login = session.post(f"{base}{API}/login", json={"password": API_PASSWORD}, timeout=10)
        login.raise_for_status()
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        read = session.get(item, headers=auth, timeout=10)
        read.raise_for_status()
        if read.json()["id"] != API_ITEM:
            raise RuntimeError(f"read: unexpected {read.text}")
        if session.delete(item, headers=auth, timeout=10).status_code != 204:
            raise RuntimeError("delete: not 204")


def timed(call, *args) -> tuple[float, float, object]:
    """Wall ms, CPU ms and the result of ``call(*args)``."""
    c, t = time.process_time(), time.perf_counter()
    result = call(*args)
    return (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000, result


def one_run(site, base: str, flows: int) -> dict:
    for _ in range(WARMUP):  # imports, compiled paths, the server's first threads
        sitewatch_flow(site), bare_flow(base)
    out = {k: [] for k in KEYS}
    for i in range(flows):
        for way in ("sitewatch", "bare") if i % 2 == 0 else ("bare", "sitewatch"):
            if way == "sitewatch":
                wall, cpu, response_ms = timed(sitewatch_flow, site)
                out["sitewatch_response"].append(response_ms)
            else:
                wall, cpu, _ = timed(bare_flow, base)
            out[way].append(wall)
            out[f"{way}_cpu"].append(cpu)
    stats = {k: {"median": median(v), "p95": percentile(v, 95)} for k, v in out.items()}
    for stat in ("median", "p95"):
        stats[f"ratio_{stat}"] = stats["sitewatch"][stat] / stats["bare"][stat]
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--flows", type=int, default=600, help="of each way per run")
    args = parser.parse_args()
    proc, base = start_server("serve-api")
    loaded = load_text("sites:\n" + "\n".join(flow_site("bench-flow", base)) + "\n", "bench")
    if loaded.issues:
        sys.exit("\n".join(map(str, loaded.issues)))
    runs, loads = [], []
    try:
        for i in range(args.runs):
            runs.append(one_run(loaded.sites[0], base, args.flows))
            loads.append(loadavg())
            print(
                f"run {i + 1}/{args.runs}: sitewatch {runs[-1]['sitewatch']['median']:.2f} ms, "
                f"bare {runs[-1]['bare']['median']:.2f} ms, ratio {runs[-1]['ratio_median']:.2f}, "
                f"load {loads[-1]}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait()

    def agg(values: list[float]) -> dict:
        return {"median": median(values), "spread": f"{min(values):.2f}-{max(values):.2f}"}

    table = {k: {s: agg([r[k][s] for r in runs]) for s in ("median", "p95")} for k in KEYS}
    ratios = {s: agg([r[f"ratio_{s}"] for r in runs]) for s in ("median", "p95")}
    save(
        "flow",
        {
            "machine": machine(),
            "runs": args.runs,
            "flows": args.flows,
            "warmup": WARMUP,
            "load": loads,
            "table": table,
            "ratio": ratios,
        },
    )
    print(f"\n{'way':32s} {'ms per flow median':>19s} {'p95':>8s} {'CPU ms':>8s}")
    for key, label in (("sitewatch", "sitewatch probe (flow)"), ("bare", "bare requests.Session")):
        row = table[key]
        print(
            f"{label:32s} {row['median']['median']:>8.2f} ({row['median']['spread']:>9s}) "
            f"{row['p95']['median']:>8.2f} {table[f'{key}_cpu']['median']['median']:>8.2f}"
        )
    print(
        f"sitewatch / bare: median {ratios['median']['median']:.2f} "
        f"({ratios['median']['spread']}), p95 {ratios['p95']['median']:.2f} "
        f"({ratios['p95']['spread']}); target <= 1.1"
    )


if __name__ == "__main__":
    main()
