"""A probe worker in its own process, so its peak memory can be read on its own.

Reads ``{"ca_bundle": str | null, "probes": [{"name", "url", "timeout", "overrides"?,
"steps"?}]}`` as JSON on stdin (``overrides``: more site keys, in their sites-file form; ``steps``:
a flow's steps, as a sites file writes them, probed instead of ``url``; ``${VAR}`` in headers and
steps is expanded from ``"environ"`` as a task does), probes each in turn with
``sitewatch.probe.http.probe`` and prints one JSON object: each probe's error kind, detail, final
URL, elapsed seconds, steps and stored message, and the process's peak RSS in bytes (see
``peak_rss``).
"""

from __future__ import annotations

import json
import resource
import sys
import time

from sitewatch.config.loader import load_text, site_for_url
from sitewatch.config.secrets import expand_headers
from sitewatch.errors import ConfigError
from sitewatch.probe.http import probe


def main() -> None:
    job = json.load(sys.stdin)
    results = []
    for item in job["probes"]:
        site = _site(item)
        site, secrets = expand_headers(site, job.get("environ", {}))
        started = time.monotonic()
        obs = probe(site, ca_bundle=job["ca_bundle"], secrets=secrets)
        results.append(
            {
                "name": item["name"],
                "elapsed": time.monotonic() - started,
                "up": obs.up,
                "error": obs.error,
                "error_detail": obs.error_detail,
                "final_url": obs.final_url,
                "status_code": obs.status_code,
                "body_bytes": obs.body_bytes,
                "steps": obs.steps,
                "record": _stored(obs),
            }
        )
    json.dump({"results": results, "peak_rss_bytes": peak_rss()}, sys.stdout)


def _site(item: dict):
    """The site of a probe: ``url`` with the ``overrides``, or a flow of ``steps`` (with the
    ``overrides``) read as a sites file is."""
    overrides = item.get("overrides", {})
    if "steps" not in item:
        return site_for_url(item["url"], timeout=item["timeout"], **overrides)
    entry = {"name": "flow", "timeout": item["timeout"], **overrides, "steps": item["steps"]}
    loaded = load_text(json.dumps({"sites": [entry]}), "hostile.yaml")  # JSON is YAML
    if loaded.issues:
        raise ConfigError(loaded.issues)
    return loaded.sites[0]


def _stored(obs) -> str:
    """The observation as it is stored: the message the drain writes to the database."""
    obs.scheduled_at = obs.checked_at
    return obs.to_message().decode()


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would also count the memory of the
    (much larger) pytest process this worker was forked from.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


if __name__ == "__main__":
    main()
