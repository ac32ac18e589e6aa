"""What the probe tests share: a real ``Site`` to probe, and ``run``, which holds every probe to
its deadline and to a classified outcome."""

from __future__ import annotations

import time

from sitewatch.config.secrets import NO_SECRETS, Secrets
from sitewatch.config.site import Site
from sitewatch.probe.http import ERROR_KINDS, probe

MARGIN = 0.5  # seconds a probe may take past its timeout


def make_site(url: str, **fields) -> Site:
    """A real ``Site`` for ``url``, named ``test`` with a 5 s timeout unless ``fields`` say
    otherwise. Built directly, not validated, so a test can hand the probe what config rejects
    (credentials in the URL, a line break in a header)."""
    return Site(**{"name": "test", "url": url, "timeout": 5.0, **fields})


def run(site: Site, secrets: Secrets = NO_SECRETS, ca_bundle: str | None = None):
    """Probe ``site``; the call must return within its timeout plus ``MARGIN`` and say up, or
    down with one of ``ERROR_KINDS``."""
    started = time.monotonic()
    obs = probe(site, ca_bundle=ca_bundle, secrets=secrets)
    elapsed = time.monotonic() - started
    assert elapsed < site.timeout + MARGIN, f"probe took {elapsed:.2f} s"
    assert obs.error in ERROR_KINDS + (None,)
    assert obs.up is (obs.error is None)
    return obs


def fails(obs, kind: str, detail: str = ""):
    assert (obs.up, obs.error) == (False, kind), obs
    assert detail in obs.error_detail
