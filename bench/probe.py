"""Probe overhead: ``sitewatch.probe.http.probe`` side by side with a bare ``requests.get``.

    python bench/probe.py [--runs 5]

A minimal local HTTP server (``common.serve_plain``) in its own process, so that its CPU is not
counted, sleeps a fixed delay before answering. For each delay and run, probes and bare gets
alternate on the same server. Reported: the measured time minus the injected delay (probe: its
``response_time_ms``, and the probe call's whole wall time; requests: perf_counter around
``requests.get``), median and p95, and CPU time per call (``time.process_time`` deltas).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(__file__))
from common import loadavg, machine, median, percentile, save, start_server  # noqa: E402

from sitewatch.config.loader import site_for_url  # noqa: E402
from sitewatch.probe.http import probe  # noqa: E402

SAMPLES = {0: 200, 50: 60, 200: 30}  # per run and per way


def one_run(base: str, delay: int, count: int) -> dict:
    url = f"{base}?delay={delay}"
    site = site_for_url(url, regex="status: OK")
    probe(site), requests.get(url)  # warm both paths (imports, first connection)
    out = {k: [] for k in ("probe", "probe_call", "probe_cpu", "get", "get_cpu")}
    for _ in range(count):
        c, t = time.process_time(), time.perf_counter()
        obs = probe(site)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if not obs.up:
            raise RuntimeError(f"probe failed: {obs.error} {obs.error_detail}")
        out["probe"].append(obs.response_time_ms - delay)
        out["probe_call"].append(wall * 1000 - delay)
        out["probe_cpu"].append(cpu * 1000)
        c, t = time.process_time(), time.perf_counter()
        response = requests.get(url)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        response.raise_for_status()
        out["get"].append(wall * 1000 - delay)
        out["get_cpu"].append(cpu * 1000)
    return {k: {"median": median(v), "p95": percentile(v, 95)} for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    proc, base = start_server("serve-plain")
    results: dict = {d: [] for d in SAMPLES}
    loads = []
    try:
        for i in range(args.runs):
            for delay, count in SAMPLES.items():
                results[delay].append(one_run(base, delay, count))
            loads.append(loadavg())
            print(f"run {i + 1}/{args.runs} done, load {loads[-1]}", flush=True)
    finally:
        proc.terminate()
        proc.wait()

    def agg(delay, key, stat):
        values = [r[key][stat] for r in results[delay]]
        return {"median": median(values), "spread": f"{min(values):.2f}-{max(values):.2f}"}

    keys = ("probe", "probe_call", "get", "probe_cpu", "get_cpu")
    table = {d: {k: {s: agg(d, k, s) for s in ("median", "p95")} for k in keys} for d in SAMPLES}
    save("probe", {"machine": machine(), "samples": SAMPLES, "load": loads, "table": table})
    print()
    print(f"{'delay':>6s} {'way':26s} {'overhead ms median':>19s} {'p95':>8s} {'CPU ms/call':>12s}")
    ways = (
        ("probe", "probe: response_time_ms", "probe_cpu"),
        ("probe_call", "probe: whole call", "probe_cpu"),
        ("get", "requests.get (perf_counter)", "get_cpu"),
    )
    for delay in SAMPLES:
        for key, label, cpu in ways:
            row = table[delay][key]
            print(
                f"{delay:>4d}ms {label:26s} {row['median']['median']:>10.2f} "
                f"({row['median']['spread']:>9s}) {row['p95']['median']:>7.2f} "
                f"{table[delay][cpu]['median']['median']:>12.2f}"
            )


if __name__ == "__main__":
    main()
