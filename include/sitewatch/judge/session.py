"""One alerting session per drain run, and the drain's hooks on it (``Judge``).

The drain's judges (``downs``, ``recoveries``, ``runs``, ``burn``) share a ``Session``: one alerting
connection, opened at first need, and one index of the sites by name, rebuilt only when the sites
file was read anew. A drain run so holds two PostgreSQL connections, its own and alerting's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sitewatch.config.loader import SitesFile, cached_sites
from sitewatch.config.site import Site
from sitewatch.judge.alerts import Send
from sitewatch.judge.burn import BurnAlerts
from sitewatch.judge.downs import Downs
from sitewatch.judge.recoveries import Recoveries
from sitewatch.judge.runs import Verdicts

log = logging.getLogger(__name__)


class Session:
    """What the drain's judges share for one run.

    connect: opens the alerting connection (the drain DAG's: ``results_connection`` on
    ``POSTGRES_ALERTING_CONN_ID``, whose role reads ``site_checks`` and writes ``site_verdicts``,
    ``site_alert_state`` and ``site_slo_alerts``). send: delivers a message (``alerts.Send``).
    sites: reads the sites file (default ``cached_sites``, a stat while the file is unchanged).
    log_url: ``log_url(site, run_id, attempt)``, the link to an attempt's log in the UI
    (``sitewatch.airflow.callbacks.log_url``; default: no link). Close it when the drain is done.
    """

    def __init__(
        self,
        connect: Callable[[], object],
        send: Send,
        sites: Callable[[], SitesFile] = cached_sites,
        log_url: Callable[[Site, str, int], str | None] = lambda site, run_id, attempt: None,
    ) -> None:
        self._connect, self.send, self._sites, self.log_url = connect, send, sites, log_url
        self._conn = None

    def connection(self):
        """The alerting connection, opened now if it is not open yet or broke (so a drain with
        nothing to judge never opens it). Raises what ``connect`` raises (StorageError)."""
        if self._conn is None or self._conn.closed:  # closed: also when it broke
            self._conn = self._connect()
        return self._conn

    def sites(self) -> dict[str, Site]:
        """The sites file's sites by name (``SitesFile.by_name``): the same dict while ``sites()``
        returns the same file (``cached_sites`` does while it is unchanged), so callers may cache
        what they derive from it by its identity. Read-only."""
        return self._sites().by_name

    def pages(self) -> tuple:
        """The sites file's valid status pages (``config.status_pages.StatusPage``), for the
        incidents a verdict opens or resolves (``sitewatch.judge.incidents``)."""
        return self._sites().status_pages

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Judge:
    """The drain's hooks on one ``Session``: pass ``on_stored`` and ``on_caught_up`` to
    ``sitewatch.pipeline.drain.drain``, and ``close()`` when it returns (it closes the session).

    Each judge runs on its own: one that raises (the alerting database unreachable, a query past
    its time limit) is logged and keeps neither the others nor the drain from their work.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._downs = Downs(self._session)
        self._ups = Recoveries(self._session)
        self._runs = Verdicts(self._session)
        self._burn = BurnAlerts(self._session)

    def on_stored(self, rows: Sequence[tuple]) -> None:
        """DOWN, then UP and DEGRADED, of the sites checked from one location; then the runs of
        those checked from several that this batch completed."""
        judges = {"downs": self._downs, "recoveries": self._ups, "runs": self._runs}
        _each("on_stored", judges, rows)

    def on_caught_up(self) -> None:
        """The runs whose deadline passed with a location missing, then the burn rates."""
        _each("on_caught_up", {"runs sweep": self._runs.sweep, "burn": self._burn})

    def close(self) -> None:
        self._session.close()


def _each(hook: str, judges: dict[str, Callable], *args) -> None:
    for name, judge in judges.items():
        try:
            judge(*args)
        except Exception:
            log.exception("judge: %s failed in %s", name, hook)
