"""The dashboard's FastAPI app: the Sites page (and its table's rows, which the page reads again
on its own), a site's page, the report download and the metrics, all read from storage, behind
the login of the platform that serves it.

Airflow mounts plugin apps without authentication, so every route here depends on
``authorized``: it resolves the caller with the host's ``user`` (Airflow's ``get_user``: the
``Authorization: Bearer`` JWT of API clients, or the ``_token`` cookie the UI sets at login,
which the browser also sends to this page in the UI's iframe or a tab of its own) and asks
``may_read`` whether that user may read DAGs: all DAGs for the listing, ``site_<name>`` for a
site's page. A browser without a valid token is redirected to the login page (and back here
after it); any other client gets 401. Airflow's side of it is ``sitewatch.airflow.web_app``.

An error (an unknown site, a bad parameter, a refused login) is a page in the dashboard's style
for a browser (a request that accepts ``text/html``) and FastAPI's ``{"detail": ...}`` JSON for
any other client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from sitewatch.dashboard import maintenance, render, report, report_cache
from sitewatch.dashboard import status as site_status
from sitewatch.dashboard.metrics import exposition
from sitewatch.errors import Busy, SettingError, StorageError
from sitewatch.judge.runs import HORIZON
from sitewatch.names import site_dag_id
from sitewatch.observation import SITE_NAME
from sitewatch.storage import metrics, queries
from sitewatch.storage.mutes import mutes_in_force, mutes_overlapping
from sitewatch.storage.schema import require_current
from sitewatch.storage.sla import report_timeout
from sitewatch.storage.verdicts import latest_verdicts
from sitewatch.web import metrics_page, slo_figures
from sitewatch.web.host import Host

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False)


class _LoginRequired(Exception):
    def __init__(self, login_url: str):
        self.login_url = login_url


class _Schema:
    """Whether this process already found the results schema current (see ``open_results``)."""

    current = False


def open_results(connect: Callable):
    """A connection from ``connect`` to a schema at least at this code's version.

    The page only reads: the drain's ``create_tables`` and the maintenance DAG migrate. Until one
    of them has run after an install or upgrade, this raises SchemaError, which the app shows as
    a page that says so. Checked until found current, then once per process.
    """
    conn = connect()
    if not _Schema.current:
        try:
            require_current(conn)
        except BaseException:
            conn.close()
            raise
        _Schema.current = True
    return conn


def configured_sites() -> dict:
    """``{site name: Site}`` of the enabled, valid sites of the sites file: each one's schedule
    (for staleness), locations and quorum, SLO and maintenance windows. Read through the
    validated-sites cache, so a page load costs a ``stat`` of the file while it is unchanged."""
    from sitewatch.config.loader import cached_sites

    return cached_sites().enabled_by_name


def sites_file_problems() -> int:
    """How many problems the sites file has (each drops its entry, or every site when the file
    cannot be read or parsed), through the validated-sites cache."""
    from sitewatch.config.loader import cached_sites

    return len(cached_sites().issues)


def report_objectives() -> dict:
    """``{site name: Slo or None}`` of every valid site of the sites file, disabled ones too (a
    month's report covers what they did while enabled), as ``sitewatch report`` reads them."""
    from sitewatch.config.loader import cached_sites

    return report.objectives(cached_sites().sites)


# A report's media type by format (``dashboard.report.FORMATS``).
_MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
# No mute lasts past this: "every mute not over yet" is every one that overlaps now..then.
_FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


def _several(site) -> bool:
    """Whether a configured site (None: not in the sites file) is checked from several
    locations, so that its state is its runs' verdict, not one location's check."""
    return site is not None and site.several_locations


def _report_period(month: str | None, fmt: str) -> tuple:
    """The UTC days (first, after) of ``month``; HTTP 400 naming the problem for a missing or
    malformed month or an unknown format."""
    if not month:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "month is required, like ?month=2026-11")
    if fmt not in report.FORMATS:
        expected = ", ".join(report.FORMATS)
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"format {fmt!r}: expected one of {expected}"
        )
    try:
        return report.month_days(month)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


def _listing_rows(
    names, configured: Mapping, summaries: Mapping, checks: Mapping, latest: Mapping, verdicts, now
):
    """The listing's (name, summary, state) rows of ``names`` (every configured or stored site,
    by name), each state ``site_status.site_state``'s, and the ``LocationsView`` of each site
    with several locations."""
    rows, views = [], {}
    for name in names:
        summary, site, verdict = summaries.get(name), configured.get(name), verdicts.get(name)
        if _several(site):
            views[name] = site_status.locations_view(
                site.locations, site.quorum, latest.get(name, {}), verdict, site.schedule, now
            )
        state, _ = site_status.site_state(site, checks.get(name, ()), verdict, False, now)
        rows.append((name, summary, state))
    return rows, views


def page_auth(host: Host) -> Callable:
    """The dependency of every page route: the caller (``host.user``) may read DAGs
    (``host.may_read``), any DAG for the listing, ``site_<name>`` for a site page; 403 when not.
    Without a valid token a browser is redirected to ``host.login_url``, any other client gets
    401."""

    async def authorized(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ):
        try:
            user = await host.user(request, bearer)
        except HTTPException as exc:
            if exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", ""):
                raise _LoginRequired(host.login_url(str(request.url))) from exc
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, exc.detail) from exc
        name = request.path_params.get("name")
        dag_id = site_dag_id(name) if name else None
        # in the thread pool, as a plain ``def`` dependency was: an auth manager may block
        if not await run_in_threadpool(host.may_read, user, dag_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
        return user

    return authorized


def create_app(
    host: Host,
    sites: Callable[[], Mapping] = configured_sites,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    auth: Callable | None = None,
    objectives: Callable[[], Mapping] = report_objectives,
    lag: Callable | None = None,
    scrape_auth: Callable | None = None,
    problems: Callable[[], int] = sites_file_problems,
) -> FastAPI:
    """Build the app on ``host``: the database connection, the login and the permissions, the
    UI's base path and the Kafka lag reader of the platform that serves it.

    The other arguments exist for tests: the configured sites (``{name: Site}``: schedules for
    staleness, locations and quorums, SLOs and maintenance windows), the clock, the pages' auth
    dependency (default: ``page_auth(host)``), the SLO of every site for the report
    (``{name: Slo or None}``), the drain group's Kafka lag (a ``KafkaLag``; default: read with
    ``host.lag_reader``), the metrics' auth dependency (default: ``metrics_page.scrape_auth``)
    and the sites file's problem count.
    """
    connect, ui_base = host.connect, host.ui_base
    auth = auth or page_auth(host)
    scrape_auth = scrape_auth or metrics_page.scrape_auth(host)
    lag = lag or metrics_page.DrainLag(host.lag_reader).read
    # a month's figures may still change until the verdict sweep has judged its last runs
    reports = report_cache.MonthReports(lambda: open_results(connect), settle=HORIZON)
    app = FastAPI(title="sitewatch dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StorageError)
    async def _unavailable(request: Request, exc: StorageError) -> Response:
        log.warning("sites page: results unavailable: %s", exc)
        return HTMLResponse(render.unavailable(str(exc)), status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.exception_handler(StarletteHTTPException)
    async def _error(request: Request, exc: StarletteHTTPException) -> Response:
        # A browser (it asks for HTML) gets a page in the dashboard's style; scripts and API
        # clients keep FastAPI's JSON ``{"detail": ...}``.
        if "text/html" not in request.headers.get("accept", ""):
            return await http_exception_handler(request, exc)
        home = request.scope.get("root_path", "") + "/"
        text = render.error_page(exc.status_code, str(exc.detail), home)
        return HTMLResponse(text, exc.status_code, headers=exc.headers)

    @app.exception_handler(_LoginRequired)
    async def _to_login(request: Request, exc: _LoginRequired) -> Response:
        return RedirectResponse(exc.login_url, status_code=status.HTTP_303_SEE_OTHER)

    # Plain ``def`` routes: FastAPI runs them in its thread pool, so a slow query never blocks
    # the API server's event loop.
    def read_listing(sort: str, write: Callable[..., str]) -> str:
        """``write`` (``render.listing`` or ``render.listing_rows``) of every site's figures
        read now, in the order ``sort``; HTTP 400 for an unknown order."""
        if sort not in site_status.SORTS:
            expected = ", ".join(site_status.SORTS)
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"sort {sort!r}: expected one of {expected}"
            )
        now = clock()
        configured = sites()
        several = {name: s.locations for name, s in configured.items() if _several(s)}
        conn = open_results(connect)
        try:
            summaries = {s.site: s for s in queries.site_summaries(conn, now)}
            # the sites with several locations only: one query for all their locations' latest
            # checks, one for their latest verdicts
            latest = queries.latest_by_location(conn, several, now)
            verdicts = latest_verdicts(conn, list(several))
            names = sorted(set(summaries) | set(configured))
            checks = metrics.latest_by_site(conn, names)
            mutes = mutes_in_force(conn, names, now)
            budgets = slo_figures.budgets(conn, configured, now)
        finally:
            conn.close()
        rows, views = _listing_rows(names, configured, summaries, checks, latest, verdicts, now)
        in_maintenance = maintenance.in_maintenance(configured, names, mutes, now)
        return write(
            rows, now, ui_base(), views, budgets=budgets, maintenance=in_maintenance, sort=sort
        )

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(auth)])
    def listing(sort: str = "name") -> str:
        return read_listing(sort, render.listing)

    @app.get("/rows", response_class=HTMLResponse, dependencies=[Depends(auth)])
    def listing_rows(sort: str = "name") -> Response:
        """The Sites page's table body as of now (``render.listing_rows``), which the page's
        script reads every ``dashboard.refresh.EVERY_SECONDS``: never cached."""
        rows = read_listing(sort, render.listing_rows)
        return HTMLResponse(rows, headers={"Cache-Control": "no-store"})

    @app.get("/sites/{name}", response_class=HTMLResponse, dependencies=[Depends(auth)])
    def site(name: str) -> str:
        if not SITE_NAME.fullmatch(name):  # no site has it; PostgreSQL text cannot hold a NUL
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site named {name!r}")
        now = clock()
        configured = sites().get(name)
        several = _several(configured)
        verdict = None
        conn = open_results(connect)
        try:
            summary = queries.site_summary(conn, name, now)
            if summary is None and configured is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site named {name!r}")
            series = queries.response_series(conn, name, now - timedelta(hours=24), now)
            attempts = queries.recent_attempts(conn, name, now)
            checks = metrics.latest(conn, [name])
            if several:
                runs = queries.recent_runs(conn, name, now)
                verdict = latest_verdicts(conn, [name]).get(name)
            mutes = mutes_overlapping(conn, [name], now, _FOREVER).get(name, [])
            slo = configured.slo if configured else None
            objective = slo_figures.site_budget(conn, name, slo, now) if slo else None
        finally:
            conn.close()
        state, _ = site_status.site_state(configured, checks, verdict, False, now)
        where = None
        if several:
            where = site_status.SiteLocations(configured.locations, configured.quorum, runs)
        return render.site_page(
            name, summary, state, series, attempts, now, ui_base(), where,
            site=configured, objective=objective, mutes=mutes,
        )  # fmt: skip

    @app.get("/report", dependencies=[Depends(auth)])
    async def report_download(
        month: str | None = None, fmt: Annotated[str, Query(alias="format")] = "csv"
    ) -> Response:
        """``?month=YYYY-MM&format=csv|md|html``: what ``sitewatch report`` prints, as a file.

        Trade-off: a month's read can take minutes (``storage.sla``), so it goes through
        ``report_cache``: a closed month is read once and kept, a request for a month being
        read waits for that read (on the event loop, holding no thread), and a read past
        ``SITEWATCH_REPORT_CONCURRENCY`` is a 503 with Retry-After. Its statements stop after
        ``SITEWATCH_REPORT_TIMEOUT_SECONDS``: a 503 that says so.
        """
        first, after = _report_period(month, fmt)
        now = clock()
        try:
            limit, timeout = report_cache.concurrency(), report_timeout()
        except SettingError as exc:
            raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from exc
        try:
            future = await run_in_threadpool(
                reports.read, first, after, now, limit=limit, timeout=timeout
            )
        except Busy as exc:
            log.warning("sites page: report of %s refused: %s", month, exc)
            headers = {"Retry-After": str(exc.retry_after)}
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers) from exc
        read = await asyncio.wrap_future(future)
        text = await run_in_threadpool(lambda: report.render(read, objectives(), fmt))
        name = f"sitewatch-report-{first:%Y-%m}.{fmt}"
        return Response(
            text,
            media_type=_MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/metrics", dependencies=[Depends(scrape_auth)])
    def scrape(request: Request) -> Response:
        """What Prometheus scrapes (docs/metrics.md), as OpenMetrics when it asks for it."""
        started = time.perf_counter()
        now = clock()
        configured = sites()
        kafka = lag()
        conn = open_results(connect)
        try:
            snapshot = metrics_page.gather(conn, configured, now, kafka, started, problems())
        finally:
            conn.close()
        body, content_type = exposition(snapshot, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return app
